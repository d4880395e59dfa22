//! Event logs to replay: a CSV file or an XES file (gzipped or not) read through a
//! mapping, or the traces an opsflow store holds.

use std::io::BufRead;
use std::path::Path;

use indexmap::IndexMap;

use super::ConformError;
use super::mapping::Mapping;
use crate::engine::CaseTrace;
use crate::store::TraceKind;

/// One event of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// The source activity (several columns joined by `|`).
    pub activity: String,
    /// When, ms since the epoch.
    pub at: i64,
    /// The state the event left the case in, when the log knows it (opsflow traces).
    pub to: Option<String>,
}

/// A case: its id and its events, by time (file order breaks ties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCase {
    /// The case id.
    pub id: String,
    /// Its events.
    pub events: Vec<LogEvent>,
}

/// Reads `path` as CSV, or as XES when its name ends in `.xes` or `.xes.gz`.
pub fn read_log(path: &Path, mapping: &Mapping) -> Result<Vec<LogCase>, ConformError> {
    let name = path.to_string_lossy();
    let io = |e: std::io::Error| ConformError::Read(format!("{name}: {e}"));
    let file = std::fs::File::open(path).map_err(io)?;
    let reader: Box<dyn std::io::Read> = if name.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let reader = std::io::BufReader::with_capacity(1 << 16, reader);
    if name.ends_with(".xes") || name.ends_with(".xes.gz") {
        read_xes(&name, reader, mapping)
    } else {
        read_csv(&name, reader, mapping)
    }
}

/// Groups events by case, keeping the order cases first appear in, and sorts each case's
/// events by time, stably.
struct Cases(IndexMap<String, Vec<LogEvent>>);

impl Cases {
    fn push(&mut self, case: String, event: LogEvent) {
        self.0.entry(case).or_default().push(event);
    }

    fn finish(self) -> Vec<LogCase> {
        self.0
            .into_iter()
            .map(|(id, mut events)| {
                events.sort_by_key(|e| e.at);
                LogCase { id, events }
            })
            .collect()
    }
}

/// Parses times as the mapping says: RFC 3339, or a chrono format (UTC unless it has an
/// offset).
fn time_parser(format: &str) -> impl Fn(&str) -> Option<i64> + '_ {
    move |text: &str| {
        if format == "rfc3339" {
            return crate::clock::parse_ms(text);
        }
        chrono::DateTime::parse_from_str(text, format)
            .map(|t| t.timestamp_millis())
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(text, format)
                    .map(|t| t.and_utc().timestamp_millis())
            })
            .ok()
    }
}

fn read_csv(
    name: &str,
    reader: impl std::io::Read,
    mapping: &Mapping,
) -> Result<Vec<LogCase>, ConformError> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| ConformError::Read(format!("{name}: {e}")))?
        .clone();
    let column = |wanted: &str| {
        headers
            .iter()
            .position(|h| h == wanted)
            .ok_or_else(|| ConformError::Column {
                file: name.to_owned(),
                column: wanted.to_owned(),
                available: headers.iter().map(str::to_owned).collect(),
            })
    };
    let case = column(&mapping.case)?;
    let time = column(&mapping.time)?;
    let activity: Vec<usize> = mapping
        .activity
        .iter()
        .map(|a| column(a))
        .collect::<Result<_, _>>()?;
    let parse_time = time_parser(&mapping.time_format);
    let mut cases = Cases(IndexMap::new());
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(ConformError::Read(format!("{name}: {e}"))),
        }
        let line = record.position().map_or(0, |p| p.line());
        let at_text = &record[time];
        let at = parse_time(at_text).ok_or_else(|| ConformError::Time {
            place: format!("{name}:{line}"),
            text: at_text.to_owned(),
            format: mapping.time_format.clone(),
        })?;
        let activity = activity
            .iter()
            .map(|i| &record[*i])
            .collect::<Vec<_>>()
            .join("|");
        cases.push(
            record[case].to_owned(),
            LogEvent {
                activity,
                at,
                to: None,
            },
        );
    }
    Ok(cases.finish())
}

/// Where an XES attribute stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Element {
    Trace,
    Event,
    Other,
}

const ATTRIBUTE_TAGS: [&[u8]; 7] = [
    b"string", b"date", b"int", b"float", b"boolean", b"id", b"list",
];

fn read_xes(
    name: &str,
    reader: impl BufRead,
    mapping: &Mapping,
) -> Result<Vec<LogCase>, ConformError> {
    use quick_xml::events::Event;
    let mut xml = quick_xml::Reader::from_reader(reader);
    let parse_time = time_parser(&mapping.time_format);
    let mut cases = Cases(IndexMap::new());
    let mut stack: Vec<Element> = Vec::new();
    let mut trace_attrs: IndexMap<String, String> = IndexMap::new();
    let mut event_attrs: IndexMap<String, String> = IndexMap::new();
    let mut events: Vec<IndexMap<String, String>> = Vec::new();
    let mut buf = Vec::new();
    let bad =
        |e: &dyn std::fmt::Display, at: u64| ConformError::Read(format!("{name}: byte {at}: {e}"));
    loop {
        let at = xml.buffer_position();
        let event = xml.read_event_into(&mut buf).map_err(|e| bad(&e, at))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let tag = e.local_name();
                let tag = tag.as_ref();
                let parent = stack.last().copied();
                if ATTRIBUTE_TAGS.contains(&tag)
                    && matches!(parent, Some(Element::Trace | Element::Event))
                {
                    let (mut key, mut value) = (None, None);
                    for a in e.attributes() {
                        let a = a.map_err(|e| bad(&e, at))?;
                        let text = a.unescape_value().map_err(|e| bad(&e, at))?.into_owned();
                        match a.key.local_name().as_ref() {
                            b"key" => key = Some(text),
                            b"value" => value = Some(text),
                            _ => {}
                        }
                    }
                    if let (Some(k), Some(v)) = (key, value) {
                        if parent == Some(Element::Trace) {
                            trace_attrs.insert(format!("case:{k}"), v);
                        } else {
                            event_attrs.insert(k, v);
                        }
                    }
                }
                if !empty {
                    stack.push(match tag {
                        b"trace" => {
                            trace_attrs.clear();
                            events.clear();
                            Element::Trace
                        }
                        b"event" => {
                            event_attrs.clear();
                            Element::Event
                        }
                        _ => Element::Other,
                    });
                }
            }
            Event::End(_) => match stack.pop() {
                Some(Element::Event) => events.push(std::mem::take(&mut event_attrs)),
                Some(Element::Trace) => {
                    for attrs in events.drain(..) {
                        let get = |column: &str| {
                            attrs
                                .get(column)
                                .or_else(|| trace_attrs.get(column))
                                .or_else(|| trace_attrs.get(&format!("case:{column}")))
                                .cloned()
                                .ok_or_else(|| ConformError::Column {
                                    file: name.to_owned(),
                                    column: column.to_owned(),
                                    available: attrs
                                        .keys()
                                        .chain(trace_attrs.keys())
                                        .cloned()
                                        .collect(),
                                })
                        };
                        let case = get(&mapping.case)?;
                        let at_text = get(&mapping.time)?;
                        let at = parse_time(&at_text).ok_or_else(|| ConformError::Time {
                            place: format!("{name}: case {case}"),
                            text: at_text.clone(),
                            format: mapping.time_format.clone(),
                        })?;
                        let activity = mapping
                            .activity
                            .iter()
                            .map(|a| get(a))
                            .collect::<Result<Vec<_>, _>>()?
                            .join("|");
                        cases.push(
                            case,
                            LogEvent {
                                activity,
                                at,
                                to: None,
                            },
                        );
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(cases.finish())
}

/// The moves of stored traces: transition and automatic records (a rejected approval
/// keeps its transition's name and the state it went to).
pub fn from_traces(traces: &[CaseTrace]) -> Vec<LogCase> {
    traces
        .iter()
        .map(|c| LogCase {
            id: c.instance_id.clone(),
            events: c
                .records
                .iter()
                .filter(|r| matches!(r.kind, TraceKind::Transition | TraceKind::Automatic))
                .filter_map(|r| {
                    Some(LogEvent {
                        activity: r.transition.clone()?,
                        at: r.at,
                        to: Some(r.to.clone()),
                    })
                })
                .collect(),
        })
        .collect()
}
