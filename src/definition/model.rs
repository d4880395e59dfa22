//! The checked model of a process: what the engine runs.

use indexmap::IndexMap;
use serde::Serialize;

use super::field::Field;
use super::graph::StateGraph;
use super::source_map::{SourceMap, YamlPath};

/// A Rhai script attached to a transition: an inline script, or the name of a function of the
/// process's rule modules (a bare identifier such as `classify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", content = "source", rename_all = "snake_case")]
pub enum ScriptRef {
    /// A script written in the process file.
    Inline(String),
    /// A function of one of the process's rule modules, called with the context map.
    Function(String),
}

impl ScriptRef {
    /// Reads the YAML text of a guard or action.
    pub fn from_text(text: &str) -> Self {
        let t = text.trim();
        let is_identifier = t
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && t != "true"
            && t != "false";
        if is_identifier {
            ScriptRef::Function(t.to_owned())
        } else {
            ScriptRef::Inline(text.to_owned())
        }
    }
}

/// A script together with where it was written, for error messages.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Script {
    /// What runs.
    #[serde(flatten)]
    pub script: ScriptRef,
    /// Where it stands in the process file (`transitions.classify.guard`).
    #[serde(skip)]
    pub path: YamlPath,
}

/// One state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct State {
    /// Its name.
    pub name: String,
    /// A human title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What happens in this state, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Instances start here.
    pub initial: bool,
    /// Instances end here; no transition leaves a final state.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Fields that must hold a value for an instance to enter this state.
    pub requires: Vec<String>,
    /// Fields no caller may change while an instance is in this state.
    pub read_only: Vec<String>,
}

/// How many approvals a transition needs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Quorum {
    /// A fixed count.
    Count(u32),
    /// A rule that returns the count for the instance (e.g. from its risk).
    Rule(Script),
}

/// Votes a transition needs: it happens once `quorum` voters with one of `roles` approved,
/// and goes to `reject_to` once `rejections` of them rejected.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Approval {
    /// Roles whose holders may vote.
    pub roles: Vec<String>,
    /// Approvals needed.
    pub quorum: Quorum,
    /// Rejections that end the vote (1 unless set).
    pub rejections: u32,
    /// The state a rejected vote leads to.
    pub reject_to: String,
}

/// One transition.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Transition {
    /// Its name, used to fire it.
    pub name: String,
    /// A human title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The states it may be fired from.
    pub from: Vec<String>,
    /// The state it leads to.
    pub to: String,
    /// Roles allowed to fire it (any one suffices). Empty for automatic transitions.
    pub roles: Vec<String>,
    /// Fields that must hold a value once the transition's input is applied.
    pub requires: Vec<String>,
    /// Fired by the engine, not by a caller, when its guard holds.
    pub auto: bool,
    /// Must return `true` for the transition to happen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<Script>,
    /// Runs when the transition happens; may return a map of fields to set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Script>,
    /// Votes needed before the transition happens; callers fire it to vote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Instances of other processes this transition creates and links.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub creates: Vec<Create>,
    /// Roles told (through the outbox) when it is taken.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

/// An instance a transition creates in another process, linked through a field.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Create {
    /// The process of the new instance.
    pub process: String,
    /// The `link` or `links` field of this instance that receives the new id.
    pub link: String,
    /// Creates only when this returns true (always when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Script>,
    /// Returns the new instance's data (a map).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Script>,
}

impl Transition {
    /// Roles that may fire (or vote on) this transition.
    pub fn callers(&self) -> &[String] {
        match &self.approval {
            Some(a) => &a.roles,
            None => &self.roles,
        }
    }
}

/// Who may start an instance, and the action that runs when one starts.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct Start {
    /// Roles allowed to create instances. Empty means any role of the process.
    pub roles: Vec<String>,
    /// Runs on creation; may return a map of fields to set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Script>,
}

/// In a process's `read:` list: the actor who created an instance may read it.
pub const CREATOR: &str = "creator";

/// What a caller may read of a process's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readable {
    /// Every instance.
    All,
    /// Those the caller created.
    Own,
    /// None.
    None,
}

impl Definition {
    /// What a caller holding `roles` may read of this process's instances.
    pub fn readable_by(&self, roles: &[String]) -> Readable {
        match &self.read {
            None => Readable::All,
            Some(read) if roles.iter().any(|r| read.contains(r)) => Readable::All,
            Some(read) if read.iter().any(|r| r == CREATOR) => Readable::Own,
            Some(_) => Readable::None,
        }
    }
}

/// The texts a definition was built from.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Source {
    /// The process file's name, for messages (`processes/event.yaml`).
    pub file: String,
    /// The YAML text.
    pub yaml: String,
    /// The rule modules it uses, by name, with their file names and sources.
    pub rules: IndexMap<String, RuleSource>,
}

/// One Rhai module's text.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RuleSource {
    /// The module's file name, for messages (`rules/event.rhai`).
    pub file: String,
    /// The Rhai text.
    pub source: String,
}

/// Parts of a definition by name, in file order. Every step looks some up by name (its
/// transition, the states it enters, the fields it writes), so they are hashed by foldhash,
/// not SipHash: the names come from the process file, and the lookups only read.
pub type Named<T> = IndexMap<String, T, foldhash::fast::RandomState>;

/// A validated process definition.
#[derive(Debug, Clone)]
pub struct Definition {
    /// The process id (`event`).
    pub id: String,
    /// A human title.
    pub title: Option<String>,
    /// A longer description.
    pub description: Option<String>,
    /// SHA-256 (hex) of the YAML and the rule sources: identifies this version.
    pub hash: String,
    /// Declared roles.
    pub roles: Vec<String>,
    /// Who may read its instances (`read:`): holders of these roles, and with
    /// [`CREATOR`] in the list, an instance's creator; `None`: every caller.
    pub read: Option<Vec<String>>,
    /// Who may start an instance.
    pub start: Start,
    /// Instance data fields, in file order.
    pub fields: Named<Field>,
    /// States, in file order.
    pub states: Named<State>,
    /// Transitions, in file order (automatic transitions are tried in this order).
    pub transitions: Named<Transition>,
    /// For each state, the positions in `transitions` of those that may leave it, in file
    /// order: every step asks, some several times (so hashed by foldhash; the names come
    /// from the process file).
    pub(crate) outgoing: foldhash::HashMap<String, Vec<usize>>,
    /// The positions in `fields` of those that link to instances of another process: every
    /// step compares their values before and after it, and most processes have one or none
    /// among many fields.
    pub(crate) link_positions: Vec<usize>,
    /// Timers, in file order.
    pub timers: Named<super::timer::Timer>,
    /// Instances of other processes its timer rules read.
    pub lookups: Named<super::lookup::Lookup>,
    /// Data tables for the rules (`ctx.tables` in scripts), such as a priority matrix.
    pub tables: serde_json::Value,
    /// The source texts.
    pub source: Source,
    /// Positions in the YAML text, for errors found after parsing.
    pub source_map: SourceMap,
    pub(crate) graph: StateGraph,
}

/// The positions of the transitions that may leave each state (see
/// [`Definition::outgoing`]).
pub(crate) fn outgoing(transitions: &Named<Transition>) -> foldhash::HashMap<String, Vec<usize>> {
    let mut outgoing: foldhash::HashMap<String, Vec<usize>> = foldhash::HashMap::default();
    for (i, t) in transitions.values().enumerate() {
        for state in &t.from {
            let positions = outgoing.entry(state.clone()).or_default();
            // A state listed twice in one `from` still yields the transition once.
            if positions.last() != Some(&i) {
                positions.push(i);
            }
        }
    }
    outgoing
}

/// The positions of the fields that link to instances of another process (see
/// [`Definition::link_positions`]).
pub(crate) fn link_positions(fields: &Named<super::field::Field>) -> Vec<usize> {
    (fields.values().enumerate())
        .filter(|(_, f)| f.field_type.linked_process().is_some())
        .map(|(i, _)| i)
        .collect()
}

impl Definition {
    /// Some field links to other instances.
    pub fn has_link_fields(&self) -> bool {
        !self.link_positions.is_empty()
    }

    /// Its fields that link to instances of another process, in file order.
    pub fn link_fields(&self) -> impl Iterator<Item = &super::field::Field> {
        (self.link_positions.iter()).filter_map(|&i| self.fields.get_index(i).map(|(_, f)| f))
    }

    /// The initial state's name.
    pub fn initial_state(&self) -> &str {
        self.graph.initial()
    }

    /// Transitions that may leave `state`, in file order (borrowed from the definition
    /// only, not from `state`).
    pub fn transitions_from<'a>(
        &'a self,
        state: &str,
    ) -> impl Iterator<Item = &'a Transition> + use<'a> {
        self.outgoing
            .get(state)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.transitions.get_index(i).map(|(_, t)| t))
    }

    /// The state graph as Mermaid or Graphviz text.
    pub fn render_graph(&self, format: super::GraphFormat) -> String {
        super::graph::render(self, format)
    }

    /// Every script of the definition, with a label for messages (`transition classify guard`).
    pub fn scripts(&self) -> impl Iterator<Item = (String, &Script)> {
        let start = self
            .start
            .action
            .iter()
            .map(|s| ("start action".to_owned(), s));
        let transitions = self.transitions.values().flat_map(|t| {
            t.guard
                .iter()
                .map(move |s| (format!("transition `{}` guard", t.name), s))
                .chain(
                    t.action
                        .iter()
                        .map(move |s| (format!("transition `{}` action", t.name), s)),
                )
                .chain(t.approval.iter().filter_map(move |a| match &a.quorum {
                    Quorum::Rule(s) => Some((format!("transition `{}` quorum", t.name), s)),
                    Quorum::Count(_) => None,
                }))
                .chain(t.creates.iter().flat_map(move |c| {
                    c.when
                        .iter()
                        .map(move |s| {
                            (
                                format!("transition `{}` creates {} when", t.name, c.process),
                                s,
                            )
                        })
                        .chain(c.data.iter().map(move |s| {
                            (
                                format!("transition `{}` creates {} data", t.name, c.process),
                                s,
                            )
                        }))
                }))
        });
        let timers = self.timers.values().filter_map(|t| {
            t.after_rule
                .as_ref()
                .map(|s| (format!("timer `{}` after_rule", t.name), s))
        });
        start.chain(transitions).chain(timers)
    }
}
