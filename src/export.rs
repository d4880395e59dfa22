//! Event-log exports of traces: JSON Lines, CSV and XES (IEEE 1849), for auditors and
//! process-mining tools. Every record keeps its hashes, so an export can be checked
//! against the chain.

use serde_json::{Value, json};

use ed25519_dalek::SigningKey;

use crate::clock::format_ms;
use crate::engine::{AuditQuery, CaseTrace};
use crate::evidence::{Bundle, Scope};
use crate::store::{Store, StoreError, TraceKind, TraceRecord};

/// The formats an export is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object per record.
    Jsonl,
    /// One line per record, with a header.
    Csv,
    /// IEEE 1849 XES: a trace per instance, an event per step (SLA records left out).
    Xes,
    /// An evidence bundle: the instances' whole traces, the definitions they ran under,
    /// a digest and, with a key configured, a signature (see [`crate::evidence`]).
    Bundle,
}

impl ExportFormat {
    /// The media type of the output.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "application/x-ndjson",
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Xes => "application/xml",
            ExportFormat::Bundle => "application/json",
        }
    }

    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
            ExportFormat::Xes => "xes",
            ExportFormat::Bundle => "evidence.json",
        }
    }
}

/// `cases` (the records `query` selected) in `format`. A bundle holds the cases' whole
/// traces and the definitions they ran under, read from `store`, signed with `key` if any.
pub async fn render(
    store: &dyn Store,
    query: &AuditQuery,
    cases: &[CaseTrace],
    format: ExportFormat,
    now_ms: i64,
    key: Option<&SigningKey>,
) -> Result<String, StoreError> {
    Ok(match format {
        ExportFormat::Jsonl => jsonl(cases),
        ExportFormat::Csv => csv(cases),
        ExportFormat::Xes => xes(cases),
        ExportFormat::Bundle => {
            let ids: Vec<String> = cases.iter().map(|c| c.instance_id.clone()).collect();
            let scope = Scope {
                instance: query.instance.clone(),
                process: query.process.clone(),
                from: query.from.map(format_ms),
                to: query.to.map(format_ms),
            };
            let bundle = Bundle::build(store, &ids, scope, now_ms, key).await?;
            let mut text = serde_json::to_string_pretty(&bundle)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            text.push('\n');
            text
        }
    })
}

fn jsonl(cases: &[CaseTrace]) -> String {
    let mut out = String::new();
    for c in cases {
        for r in &c.records {
            let mut line = serde_json::to_value(r).unwrap_or(Value::Null);
            line["process"] = json!(c.process);
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    out
}

/// The CSV header of trace records (`with_case`: preceded by process and instance).
fn csv_header(with_case: bool) -> &'static str {
    if with_case {
        "process,instance_id,seq,at,actor,roles,channel,kind,transition,from,to,data,before,rules,comment,definition_hash,prev_hash,hash\n"
    } else {
        "seq,at,actor,roles,channel,kind,transition,from,to,data,before,rules,comment,definition_hash,prev_hash,hash\n"
    }
}

fn csv_cells(r: &TraceRecord) -> Vec<String> {
    vec![
        r.seq.to_string(),
        format_ms(r.at),
        r.actor.clone(),
        r.roles.join(" "),
        r.channel.as_str().to_owned(),
        r.kind.as_str().to_owned(),
        r.transition.clone().unwrap_or_default(),
        r.from.clone().unwrap_or_default(),
        r.to.clone(),
        Value::Object(r.data.clone()).to_string(),
        if r.before.is_empty() {
            String::new()
        } else {
            Value::Object(r.before.clone()).to_string()
        },
        if r.rules.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&r.rules).unwrap_or_default()
        },
        r.comment.clone().unwrap_or_default(),
        r.definition_hash.clone(),
        r.prev_hash.clone(),
        r.hash.clone(),
    ]
}

fn csv_line(out: &mut String, cells: &[String]) {
    let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
    out.push_str(&line.join(","));
    out.push('\n');
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// One instance's trace as CSV.
pub fn trace_csv(records: &[TraceRecord]) -> String {
    let mut out = String::from(csv_header(false));
    for r in records {
        csv_line(&mut out, &csv_cells(r));
    }
    out
}

fn csv(cases: &[CaseTrace]) -> String {
    let mut out = String::from(csv_header(true));
    for c in cases {
        for r in &c.records {
            let mut cells = vec![c.process.clone(), c.instance_id.clone()];
            cells.extend(csv_cells(r));
            csv_line(&mut out, &cells);
        }
    }
    out
}

/// The activity an event log names a record by: its transition, else its kind.
fn activity(r: &TraceRecord) -> &str {
    r.transition.as_deref().unwrap_or(r.kind.as_str())
}

fn xes(cases: &[CaseTrace]) -> String {
    let mut out = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1849-2016" xes.features="nested-attributes" xmlns="http://www.xes-standard.org/">
  <extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
  <extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
  <extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>
  <extension name="Lifecycle" prefix="lifecycle" uri="http://www.xes-standard.org/lifecycle.xesext"/>
  <global scope="trace">
    <string key="concept:name" value="__INVALID__"/>
  </global>
  <global scope="event">
    <string key="concept:name" value="__INVALID__"/>
    <date key="time:timestamp" value="1970-01-01T00:00:00.000Z"/>
  </global>
  <classifier name="Activity" keys="concept:name"/>
  <string key="concept:name" value="opsflow"/>
"#,
    );
    for c in cases {
        out.push_str("  <trace>\n");
        attr(&mut out, 4, "string", "concept:name", &c.instance_id);
        attr(&mut out, 4, "string", "opsflow:process", &c.process);
        for r in c.records.iter().filter(|r| r.kind != TraceKind::Sla) {
            out.push_str("    <event>\n");
            attr(&mut out, 6, "string", "concept:name", activity(r));
            attr(&mut out, 6, "date", "time:timestamp", &format_ms(r.at));
            attr(&mut out, 6, "string", "org:resource", &r.actor);
            attr(&mut out, 6, "string", "lifecycle:transition", "complete");
            attr(&mut out, 6, "string", "opsflow:kind", r.kind.as_str());
            attr(&mut out, 6, "int", "opsflow:seq", &r.seq.to_string());
            if let Some(from) = &r.from {
                attr(&mut out, 6, "string", "opsflow:from", from);
            }
            attr(&mut out, 6, "string", "opsflow:to", &r.to);
            attr(&mut out, 6, "string", "opsflow:hash", &r.hash);
            out.push_str("    </event>\n");
        }
        out.push_str("  </trace>\n");
    }
    out.push_str("</log>\n");
    out
}

fn attr(out: &mut String, indent: usize, kind: &str, key: &str, value: &str) {
    out.push_str(&format!(
        "{:indent$}<{kind} key=\"{}\" value=\"{}\"/>\n",
        "",
        xml_escape(key),
        xml_escape(value)
    ));
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    out
}
