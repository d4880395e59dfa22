//! A service report as its readers get it: Markdown, or one self-contained HTML page with
//! the SLA attainment table and inline-SVG charts (no script, no external file).

use std::fmt::Write as _;

use super::{ReportView, SlaRow, Snapshot};
use crate::kpi::{KpiReport, bar_chart, escape, html_body, markdown_body, page};

fn hours(t: Option<(f64, f64)>) -> String {
    match t {
        None => "–".into(),
        Some((lo, hi)) if lo == hi => format!("{lo} h"),
        Some((lo, hi)) => format!("{lo}–{hi} h"),
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v}%"))
}

const SLA_COLUMNS: [&str; 9] = [
    "process",
    "metric",
    "priority",
    "target",
    "measured",
    "met",
    "missed",
    "open (breached)",
    "attainment",
];

fn sla_cells(r: &SlaRow) -> [String; 9] {
    [
        r.process.clone(),
        r.metric.clone(),
        r.priority.clone(),
        hours(r.target_hours),
        r.measured.to_string(),
        r.met.to_string(),
        r.missed.to_string(),
        format!("{} ({})", r.open, r.open_breached),
        percent(r.attainment),
    ]
}

/// The SLA attainment table as Markdown (also written into the report's `sla_attainment`).
pub(crate) fn sla_table_markdown(rows: &[SlaRow]) -> String {
    if rows.is_empty() {
        return "No SLA clocks ran in the period.\n".into();
    }
    let mut out = format!("| {} |\n", SLA_COLUMNS.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(SLA_COLUMNS.len()));
    for r in rows {
        let _ = writeln!(out, "| {} |", sla_cells(r).join(" | ").replace('\n', " "));
    }
    out
}

/// One paragraph on the figures (written into the report's `data_summary`).
pub(crate) fn summary(s: &Snapshot) -> String {
    let k = &s.kpis;
    let count = |v: &str| k.kpis.iter().filter(|f| f.figure.verdict == v).count();
    let measured: usize = s.sla_attainment.iter().map(|r| r.measured).sum();
    let met: usize = s.sla_attainment.iter().map(|r| r.met).sum();
    let attainment = if measured == 0 {
        "no SLA clock stopped".to_owned()
    } else {
        format!(
            "{met} of {measured} SLA clocks met their target ({:.1}%)",
            100.0 * met as f64 / measured as f64
        )
    };
    format!(
        "{} to {}: {} instance(s); {} KPI(s): {} met, {} missed, {} without data, {} without a target; {attainment}.",
        s.from,
        s.to,
        k.instances,
        k.kpis.len(),
        count("met"),
        count("missed"),
        count("no_data"),
        count("no_target"),
    )
}

fn title(v: &ReportView) -> String {
    let name = v
        .fields
        .iter()
        .find(|f| f.name == "title")
        .map_or(v.instance.id.as_str(), |f| f.text.as_str());
    format!("Service report: {name}")
}

/// What the report rests on, as (label, text) lines.
fn provenance(v: &ReportView) -> Vec<(&'static str, String)> {
    let s = &v.snapshot;
    let k: &KpiReport = &s.kpis;
    let mut lines = vec![
        ("Report", v.instance.id.clone()),
        ("State", v.instance.state.clone()),
        ("Period", format!("{} to {}", s.from, s.period_end)),
    ];
    if s.to != s.period_end {
        lines.push(("Traces read as of", s.to.clone()));
    }
    if let Some(sla) = &s.sla {
        let mut text = sla.title.clone().unwrap_or_else(|| sla.id.clone());
        if let Some(c) = &sla.customer {
            let _ = write!(text, " (customer {c})");
        }
        lines.push(("SLA", text));
    }
    lines.push((
        "Collected",
        format!("{} by {}", s.collected_at, s.collected_by),
    ));
    lines.push((
        "KPI files",
        format!(
            "version {} ({})",
            k.kpi_version.map_or("–".into(), |n| n.to_string()),
            k.kpi_hash
        ),
    ));
    let defs: Vec<String> = s
        .definitions
        .iter()
        .map(|d| {
            format!(
                "{} v{} ({})",
                d.process,
                d.version.map_or("?".into(), |n| n.to_string()),
                d.hash.get(..12).unwrap_or_default()
            )
        })
        .collect();
    lines.push(("Definitions", defs.join(", ")));
    lines.push((
        "Snapshot",
        format!(
            "{} ({})",
            v.hash,
            if v.intact {
                "intact"
            } else {
                "ALTERED: the body no longer matches its hash"
            }
        ),
    ));
    lines
}

/// The report as Markdown: what it rests on, its fields, the SLA attainment table, its
/// texts, then the KPIs.
pub fn markdown(v: &ReportView) -> String {
    let mut out = format!("# {}\n\n", title(v));
    for (label, text) in provenance(v) {
        let _ = writeln!(out, "- **{label}:** {text}");
    }
    out.push('\n');
    let short: Vec<_> = v.fields.iter().filter(|f| !f.long).collect();
    if !short.is_empty() {
        out.push_str("| field | value |\n|---|---|\n");
        for f in short {
            let _ = writeln!(
                out,
                "| {} | {} |",
                f.label.replace('|', "/"),
                f.text.replace('|', "/").replace('\n', " ")
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "## SLA attainment\n\n{}",
        sla_table_markdown(&v.snapshot.sla_attainment)
    );
    for f in v
        .fields
        .iter()
        .filter(|f| f.long && f.name != "sla_attainment")
    {
        let _ = writeln!(out, "## {}\n\n{}\n", f.label, f.text);
    }
    let _ = write!(out, "## KPIs\n\n{}", markdown_body(&v.snapshot.kpis, "###"));
    out
}

/// The report as one self-contained HTML page.
pub fn html(v: &ReportView) -> String {
    let title = title(v);
    let mut body = format!("<h1>{}</h1>\n<table>\n", escape(&title));
    for (label, text) in provenance(v) {
        let _ = writeln!(body, "<tr><th>{label}</th><td>{}</td></tr>", escape(&text));
    }
    for f in v.fields.iter().filter(|f| !f.long) {
        let _ = writeln!(
            body,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(&f.label),
            escape(&f.text)
        );
    }
    body.push_str("</table>\n<h2>SLA attainment</h2>\n");
    body.push_str(&sla_table_html(&v.snapshot.sla_attainment));
    for f in v
        .fields
        .iter()
        .filter(|f| f.long && f.name != "sla_attainment")
    {
        let _ = writeln!(
            body,
            "<h2>{}</h2>\n<pre>{}</pre>",
            escape(&f.label),
            escape(&f.text)
        );
    }
    body.push_str("<h2>KPIs</h2>\n");
    body.push_str(&html_body(&v.snapshot.kpis));
    page(&title, &body)
}

fn sla_table_html(rows: &[SlaRow]) -> String {
    if rows.is_empty() {
        return "<p>No SLA clocks ran in the period.</p>\n".into();
    }
    let mut out = String::from("<table class=\"sla\"><tr>");
    for c in SLA_COLUMNS {
        let _ = write!(out, "<th>{c}</th>");
    }
    out.push_str("</tr>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in sla_cells(r) {
            let _ = write!(out, "<td>{}</td>", escape(&c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    let mut metrics: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.process.as_str(), r.metric.as_str()))
        .collect();
    metrics.dedup();
    for (process, metric) in metrics {
        let bars: Vec<(String, f64)> = rows
            .iter()
            .filter(|r| r.process == process && r.metric == metric)
            .filter_map(|r| Some((r.priority.clone(), r.attainment?)))
            .collect();
        if bars.is_empty() {
            continue;
        }
        let name = format!("{process} {metric} attainment (%) by priority");
        let _ = writeln!(
            out,
            "<figure><figcaption>{}</figcaption>{}</figure>",
            escape(&name),
            bar_chart(&name, &bars, None)
        );
    }
    out
}
