//! Replays cases on a process's state graph. Guards, roles and data are not known for an
//! external log, so a move fits when the process allows its transition from where the
//! case stands, or from a state the case reaches by automatic transitions alone (those
//! are silent moves).

use std::collections::{HashMap, VecDeque};

use indexmap::IndexMap;
use serde::Serialize;

use super::log::LogCase;
use super::mapping::{IGNORE, Mapping};
use crate::definition::{Definition, Transition};

/// What went against the process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Deviation {
    /// The transition cannot be taken from where the case stands.
    NotAllowed {
        /// The transition.
        transition: String,
        /// Where the case stood.
        state: String,
    },
    /// The case moved past an approval it never had.
    SkippedApproval {
        /// The transition taken.
        transition: String,
        /// Where the case stood.
        state: String,
        /// The approval transition on the way.
        approval: String,
    },
    /// An activity the mapping does not name.
    Unmapped {
        /// The source activity.
        activity: String,
    },
    /// The case ended without reaching a final state.
    Unfinished {
        /// Where it ended.
        state: String,
    },
}

impl std::fmt::Display for Deviation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Deviation::NotAllowed { transition, state } => {
                write!(f, "`{transition}` is not allowed from `{state}`")
            }
            Deviation::SkippedApproval {
                transition,
                state,
                approval,
            } => write!(
                f,
                "`{transition}` from `{state}` skips the approval `{approval}`"
            ),
            Deviation::Unmapped { activity } => {
                write!(f, "activity `{activity}` is not in the mapping")
            }
            Deviation::Unfinished { state } => {
                write!(f, "ended in `{state}`, never reaching a final state")
            }
        }
    }
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    /// The case id.
    pub case: String,
    /// Its events.
    pub events: usize,
    /// Whether it fits the process.
    pub fits: bool,
    /// The first deviation, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_deviation: Option<String>,
    /// The event (1-based) where it happened; none for an unfinished case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_event: Option<usize>,
    /// The source activity of that event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    /// Where the case ended.
    pub state: String,
}

/// How often a transition was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TransitionCount {
    /// An automatic transition: an external log's silent moves are not counted, since
    /// which of several the engine would have taken depends on data the log lacks.
    pub automatic: bool,
    /// Moves that fit.
    pub fitting: usize,
    /// Moves that deviated (the replay then follows the log).
    pub deviating: usize,
}

/// A replay of a whole log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The process replayed against.
    pub process: String,
    /// The definition version.
    pub definition_hash: String,
    /// Cases replayed.
    pub cases: usize,
    /// Cases without a deviation.
    pub fitting: usize,
    /// `fitting / cases` (1 for an empty log).
    pub fitness: f64,
    /// Events read.
    pub events: usize,
    /// Events the mapping ignores.
    pub ignored: usize,
    /// Every deviation with its count, the most frequent first.
    pub deviations: Vec<(String, usize)>,
    /// Per transition of the process, in file order.
    pub transitions: IndexMap<String, TransitionCount>,
    /// Per case, in the order cases first appear.
    pub case_results: Vec<CaseResult>,
}

/// Replays `cases` with `mapping` against `def`.
pub fn replay(def: &Definition, mapping: &Mapping, cases: &[LogCase]) -> Report {
    let graph = Graph::new(def);
    let mut report = Report {
        process: def.id.clone(),
        definition_hash: def.hash.clone(),
        cases: cases.len(),
        fitting: 0,
        fitness: 1.0,
        events: 0,
        ignored: 0,
        deviations: Vec::new(),
        transitions: def
            .transitions
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    TransitionCount {
                        automatic: t.auto,
                        ..TransitionCount::default()
                    },
                )
            })
            .collect(),
        case_results: Vec::with_capacity(cases.len()),
    };
    let mut tally: HashMap<Deviation, usize> = HashMap::new();
    for case in cases {
        let mut state = def.initial_state().to_owned();
        let mut first: Option<(Deviation, Option<usize>, Option<String>)> = None;
        let mut deviate = |d: Deviation, at: Option<usize>, activity: Option<&str>| {
            *tally.entry(d.clone()).or_default() += 1;
            if first.is_none() {
                first = Some((d, at, activity.map(str::to_owned)));
            }
        };
        for (i, e) in case.events.iter().enumerate() {
            report.events += 1;
            match graph.choose(mapping, &state, &e.activity) {
                Move::Unmapped => deviate(
                    Deviation::Unmapped {
                        activity: e.activity.clone(),
                    },
                    Some(i + 1),
                    Some(&e.activity),
                ),
                Move::Ignored => report.ignored += 1,
                Move::Fits(t) => {
                    report.transitions[&t.name].fitting += 1;
                    state = e.to.clone().unwrap_or_else(|| t.to.clone());
                }
                Move::Deviates(t) => {
                    report.transitions[&t.name].deviating += 1;
                    let d = match graph.approval_on_the_way(&state, t) {
                        Some(approval) => Deviation::SkippedApproval {
                            transition: t.name.clone(),
                            state: state.clone(),
                            approval,
                        },
                        None => Deviation::NotAllowed {
                            transition: t.name.clone(),
                            state: state.clone(),
                        },
                    };
                    deviate(d, Some(i + 1), Some(&e.activity));
                    state = e.to.clone().unwrap_or_else(|| t.to.clone());
                }
            }
        }
        if !graph.silently_finishes(&state) {
            deviate(
                Deviation::Unfinished {
                    state: state.clone(),
                },
                None,
                None,
            );
        }
        let fits = first.is_none();
        if fits {
            report.fitting += 1;
        }
        let (first_deviation, at_event, activity) = match first {
            Some((d, at, activity)) => (Some(d.to_string()), at, activity),
            None => (None, None, None),
        };
        report.case_results.push(CaseResult {
            case: case.id.clone(),
            events: case.events.len(),
            fits,
            first_deviation,
            at_event,
            activity,
            state,
        });
    }
    if report.cases > 0 {
        report.fitness = report.fitting as f64 / report.cases as f64;
    }
    let mut deviations: Vec<(Deviation, usize)> = tally.into_iter().collect();
    deviations.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    report.deviations = deviations
        .into_iter()
        .map(|(d, n)| (d.to_string(), n))
        .collect();
    report
}

/// What one event of a log means where the case stands.
enum Move<'d> {
    /// The mapping does not name its activity.
    Unmapped,
    /// Not a move of the process.
    Ignored,
    /// A transition the process allows from there (or after silent moves).
    Fits(&'d Transition),
    /// The transition the event meant, which the process does not allow from there: the
    /// replay follows the log.
    Deviates(&'d Transition),
}

/// Every case of a log as the trace the engine would have written of its moves: a
/// creation at the first event, then one record per move, fitting or not (the case
/// following the log), at the event's time. Silent automatic moves are not recorded, and
/// a log carries no data, so only facts of times, states and transitions come out of it.
pub fn case_traces(
    def: &Definition,
    mapping: &Mapping,
    cases: &[LogCase],
) -> Vec<(String, Vec<crate::store::TraceRecord>)> {
    use crate::store::{Channel, TraceKind, TraceRecord};
    let graph = Graph::new(def);
    let record =
        |case: &str, seq: i64, at: i64, t: Option<&Transition>, from: Option<&str>, to: &str| {
            TraceRecord {
                instance_id: case.to_owned(),
                seq,
                at,
                actor: "log".into(),
                roles: std::sync::Arc::default(),
                channel: Channel::System,
                kind: if t.is_some() {
                    TraceKind::Transition
                } else {
                    TraceKind::Created
                },
                transition: t.map(|t| t.name.clone()),
                from: from.map(str::to_owned),
                to: to.to_owned(),
                data: serde_json::Map::new(),
                before: serde_json::Map::new(),
                rules: Vec::new(),
                comment: None,
                definition_hash: def.hash.clone(),
                prev_hash: String::new(),
                hash: String::new(),
            }
        };
    cases
        .iter()
        .filter_map(|case| {
            let first = case.events.first()?;
            let mut state = def.initial_state().to_owned();
            let mut records = vec![record(&case.id, 1, first.at, None, None, &state)];
            for e in &case.events {
                let t = match graph.choose(mapping, &state, &e.activity) {
                    Move::Fits(t) | Move::Deviates(t) => t,
                    Move::Unmapped | Move::Ignored => continue,
                };
                let to = e.to.clone().unwrap_or_else(|| t.to.clone());
                let seq = records.len() as i64 + 1;
                records.push(record(&case.id, seq, e.at, Some(t), Some(&state), &to));
                state = to;
            }
            Some((case.id.clone(), records))
        })
        .collect()
}

/// The state graph as the replay walks it.
struct Graph<'d> {
    def: &'d Definition,
    /// State → the states automatic transitions alone reach from it (itself first).
    silent: HashMap<&'d str, Vec<&'d str>>,
}

impl<'d> Graph<'d> {
    fn new(def: &'d Definition) -> Self {
        let silent = def
            .states
            .keys()
            .map(|s| {
                let reach = bfs(def, s, |t| t.auto)
                    .into_iter()
                    .map(|(state, _)| state)
                    .collect();
                (s.as_str(), reach)
            })
            .collect();
        Self { def, silent }
    }

    /// What an event of `activity` means where the case stands (`state`).
    fn choose(&self, mapping: &Mapping, state: &str, activity: &str) -> Move<'d> {
        let Some(meaning) = mapping.activities.get(activity) else {
            return Move::Unmapped;
        };
        let chosen = meaning.iter().find_map(|m| {
            if m == IGNORE {
                return Some(None);
            }
            let t = &self.def.transitions[m];
            self.silently_reaches(state, t).then_some(Some(t))
        });
        match chosen {
            Some(None) => Move::Ignored,
            Some(Some(t)) => Move::Fits(t),
            // The first transition meant: the log is followed from there on. (Nothing
            // matched, so the meaning holds no `ignore`; an empty one is refused when the
            // mapping is read, and counts as ignored.)
            None => meaning
                .iter()
                .find(|m| *m != IGNORE)
                .map_or(Move::Ignored, |m| Move::Deviates(&self.def.transitions[m])),
        }
    }

    /// Whether `t` can be taken from `state` or from a state automatic transitions reach.
    fn silently_reaches(&self, state: &str, t: &Transition) -> bool {
        self.silent
            .get(state)
            .is_some_and(|reach| reach.iter().any(|s| t.from.iter().any(|f| f == s)))
    }

    /// Whether `state` is final or automatic transitions alone lead to a final state.
    fn silently_finishes(&self, state: &str) -> bool {
        self.silent.get(state).is_some_and(|reach| {
            reach
                .iter()
                .any(|s| self.def.states.get(*s).is_some_and(|st| st.is_final))
        })
    }

    /// The first approval transition on the shortest way from `state` to a state `t`
    /// leaves from.
    fn approval_on_the_way(&self, state: &str, t: &Transition) -> Option<String> {
        let ways = bfs(self.def, state, |_| true);
        let (_, way) = ways
            .into_iter()
            .find(|(s, _)| t.from.iter().any(|f| f == s))?;
        way.into_iter()
            .find(|name| self.def.transitions[*name].approval.is_some())
            .map(str::to_owned)
    }
}

/// Breadth-first from `start` over transitions `follow` accepts: each state reached
/// (start first) with the transitions on the shortest way to it.
fn bfs<'d>(
    def: &'d Definition,
    start: &'d str,
    follow: impl Fn(&Transition) -> bool,
) -> Vec<(&'d str, Vec<&'d str>)> {
    let mut seen: Vec<(&'d str, Vec<&'d str>)> = vec![(start, Vec::new())];
    let mut queue = VecDeque::from([0usize]);
    while let Some(i) = queue.pop_front() {
        let (state, way) = seen[i].clone();
        for t in def.transitions.values() {
            if !follow(t) || !t.from.iter().any(|f| f == state) {
                continue;
            }
            if seen.iter().any(|(s, _)| *s == t.to) {
                continue;
            }
            let mut next = way.clone();
            next.push(t.name.as_str());
            seen.push((t.to.as_str(), next));
            queue.push_back(seen.len() - 1);
        }
    }
    seen
}
