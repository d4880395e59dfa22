//! A KPI report as a reader sees it: Markdown, or a self-contained HTML page whose charts
//! are inline SVG (no script, no external file), which opens in any browser.

use std::fmt::Write as _;

use super::{KpiFigure, KpiReport, Target};

fn number(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v}"))
}

fn target(k: &KpiFigure) -> String {
    k.target
        .map_or("–".into(), |t| format!("{} {}", t.op, t.value))
}

/// The report's period in words.
pub(crate) fn period(r: &KpiReport) -> String {
    match (&r.from, &r.to) {
        (None, None) => "all time".into(),
        (f, t) => format!(
            "{} to {}",
            f.as_deref().unwrap_or("the start"),
            t.as_deref().unwrap_or("now")
        ),
    }
}

fn label(k: &KpiFigure) -> &str {
    k.title.as_deref().unwrap_or(&k.name)
}

/// The report as Markdown: a table of every KPI, then each KPI's groups.
pub fn markdown(r: &KpiReport) -> String {
    format!("# KPIs, {}\n\n{}", period(r), markdown_body(r, "##"))
}

/// The report's tables as Markdown, its group sections headed at `level` (`##`).
pub(crate) fn markdown_body(r: &KpiReport, level: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} instance(s); KPI files version {} (`{}`).\n",
        r.instances,
        r.kpi_version.map_or("–".into(), |v| v.to_string()),
        r.kpi_hash.get(..12).unwrap_or_default()
    );
    let _ = writeln!(out, "| KPI | value | unit | target | verdict | instances |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for k in &r.kpis {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            label(k).replace('|', "/"),
            number(k.figure.value),
            k.unit.as_deref().unwrap_or(""),
            target(k),
            k.figure.verdict,
            k.figure.count
        );
    }
    if let Some(by) = &r.group_by {
        for k in r.kpis.iter().filter(|k| !k.groups.is_empty()) {
            let _ = writeln!(out, "\n{level} {} by {by}\n", label(k));
            let _ = writeln!(out, "| {by} | value | verdict | instances |");
            let _ = writeln!(out, "|---|---|---|---|");
            for g in &k.groups {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    g.key.replace('|', "/"),
                    number(g.figure.value),
                    g.figure.verdict,
                    g.figure.count
                );
            }
        }
    }
    out
}

/// `text` safe inside HTML text and attributes.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart of a KPI's groups (or its one figure), with its target as a line.
fn chart(k: &KpiFigure) -> String {
    let bars: Vec<(String, f64)> = if k.groups.is_empty() {
        vec![("all".into(), k.figure.value.unwrap_or(0.0))]
    } else {
        k.groups
            .iter()
            .map(|g| (g.key.clone(), g.figure.value.unwrap_or(0.0)))
            .collect()
    };
    bar_chart(label(k), &bars, k.target)
}

/// An inline-SVG horizontal bar chart named `name`: one labelled bar per entry, with the
/// value written after it, and `target` as a dashed line.
pub(crate) fn bar_chart(name: &str, bars: &[(String, f64)], target: Option<Target>) -> String {
    let top = bars
        .iter()
        .map(|(_, v)| *v)
        .chain(target.map(|t| t.value))
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    // Room on the right for the value written after the longest bar.
    let (width, row, left, right) = (480.0, 22.0, 110.0, 70.0);
    let height = row * bars.len() as f64 + 10.0;
    let x = |v: f64| left + (width - left - right) * v / top;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{}">"#,
        escape(name)
    );
    for (i, (key, v)) in bars.iter().enumerate() {
        let y = 5.0 + row * i as f64;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text><rect x="{left}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#4a7ab5"/><text x="{:.1}" y="{:.1}" font-size="11">{v}</text>"##,
            left - 6.0,
            y + 14.0,
            escape(key),
            (x(*v) - left).max(0.0),
            row - 6.0,
            x(*v) + 4.0,
            y + 13.0
        );
    }
    if let Some(t) = target {
        let tx = x(t.value);
        let _ = write!(
            svg,
            r##"<line x1="{tx:.1}" y1="0" x2="{tx:.1}" y2="{height}" stroke="#c0392b" stroke-dasharray="4 3"><title>target {} {}</title></line>"##,
            escape(t.op),
            t.value
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The style of opsflow's HTML pages.
const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:60em}\
    table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
    .met{color:#1e7d32}.missed{color:#c0392b;font-weight:bold}figure{margin:1em 0}\
    pre{white-space:pre-wrap;background:#f6f6f6;padding:.6em}";

/// One self-contained HTML page: `title` and `body` (HTML).
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body>\n{body}</body></html>\n",
        escape(title)
    )
}

/// The report as one self-contained HTML page: the KPI table and a chart per KPI.
pub fn html(r: &KpiReport) -> String {
    let title = format!("KPIs, {}", period(r));
    page(
        &title,
        &format!("<h1>{}</h1>\n{}", escape(&title), html_body(r)),
    )
}

/// The report's table and charts as HTML.
pub(crate) fn html_body(r: &KpiReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<p>{} instance(s); KPI files version {} (<code>{}</code>).</p>",
        r.instances,
        r.kpi_version.map_or("–".into(), |v| v.to_string()),
        escape(r.kpi_hash.get(..12).unwrap_or_default())
    );
    out.push_str("<table><tr><th>KPI</th><th>value</th><th>unit</th><th>target</th><th>verdict</th><th>instances</th></tr>\n");
    for k in &r.kpis {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            escape(label(k)),
            number(k.figure.value),
            escape(k.unit.as_deref().unwrap_or("")),
            escape(&target(k)),
            k.figure.verdict,
            k.figure.verdict,
            k.figure.count
        );
    }
    out.push_str("</table>\n");
    for k in r.kpis.iter().filter(|k| k.figure.value.is_some()) {
        let _ = writeln!(
            out,
            "<figure><figcaption>{}{}</figcaption>{}</figure>",
            escape(label(k)),
            r.group_by
                .as_ref()
                .map(|b| format!(" by {}", escape(b)))
                .unwrap_or_default(),
            chart(k)
        );
    }
    out
}
