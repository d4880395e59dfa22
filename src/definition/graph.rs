//! The state graph (petgraph): built once per definition, checked, then only read.
//!
//! Node indices stay inside this module; callers speak of states by name.

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Bfs, Reversed};

use super::model::{Definition, Named, State};
use super::source_map::YamlPath;

/// Output formats for the state graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphFormat {
    /// Mermaid `stateDiagram-v2`.
    Mermaid,
    /// Graphviz `digraph`.
    Dot,
}

/// The sealed graph of a definition: states as nodes, one edge per (transition, from state).
#[derive(Debug, Clone)]
pub(crate) struct StateGraph {
    graph: DiGraph<String, String>,
    initial: String,
}

/// A graph problem and the YAML path it concerns.
pub(crate) type GraphProblem = (YamlPath, String);

/// What the graph needs of a transition. While a file has errors, edges may come from
/// transitions that did not fully parse, or point at the state a misspelt name most likely
/// meant, so that one typo is reported once and not again as unreachable states.
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub(crate) name: String,
    pub(crate) from: Vec<String>,
    pub(crate) to: String,
}

impl StateGraph {
    /// Builds the graph and checks its shape: exactly one initial state, every state
    /// reachable from it, a final state reachable from every state, nothing leaving a final
    /// state. All problems are returned at once. Transitions naming unknown states are
    /// skipped here; they are reported by the caller.
    pub(crate) fn build(states: &Named<State>, edges: &[Edge]) -> Result<Self, Vec<GraphProblem>> {
        let mut problems = Vec::new();
        let mut graph = DiGraph::new();
        let index: HashMap<&str, NodeIndex> = states
            .keys()
            .map(|name| (name.as_str(), graph.add_node(name.clone())))
            .collect();
        for t in edges {
            let Some(&to) = index.get(t.to.as_str()) else {
                continue;
            };
            for from in &t.from {
                if let Some(&from_ix) = index.get(from.as_str()) {
                    graph.add_edge(from_ix, to, t.name.clone());
                }
                if states.get(from).is_some_and(|s| s.is_final) {
                    problems.push((
                        YamlPath::root().key("transitions").key(&t.name).key("from"),
                        format!("transition `{}` leaves final state `{from}`", t.name),
                    ));
                }
            }
        }

        let initials: Vec<&State> = states.values().filter(|s| s.initial).collect();
        let states_path = YamlPath::root().key("states");
        match initials.as_slice() {
            [] => problems.push((
                states_path.clone(),
                "no initial state: mark one state with `initial: true`".to_owned(),
            )),
            [_] => {}
            [_, rest @ ..] => {
                for s in rest {
                    problems.push((
                        states_path.key(&s.name),
                        format!(
                            "several initial states (`{}` and `{}`); a process has exactly one",
                            initials[0].name, s.name
                        ),
                    ));
                }
            }
        }
        if !states.values().any(|s| s.is_final) {
            problems.push((
                states_path.clone(),
                "no final state: mark at least one state with `final: true`".to_owned(),
            ));
        }

        if let Some(initial) = initials.first() {
            let start = index[initial.name.as_str()];
            let mut reached = vec![false; graph.node_count()];
            let mut bfs = Bfs::new(&graph, start);
            while let Some(n) = bfs.next(&graph) {
                reached[n.index()] = true;
            }
            for (name, ix) in &index {
                if !reached[ix.index()] {
                    problems.push((
                        states_path.key(*name),
                        format!(
                            "state `{name}` is unreachable: no transition leads to it from the initial state `{}`",
                            initial.name
                        ),
                    ));
                }
            }
        }

        let mut can_finish = vec![false; graph.node_count()];
        let reversed = Reversed(&graph);
        for s in states.values().filter(|s| s.is_final) {
            let mut bfs = Bfs::new(reversed, index[s.name.as_str()]);
            while let Some(n) = bfs.next(reversed) {
                can_finish[n.index()] = true;
            }
        }
        if states.values().any(|s| s.is_final) {
            for (name, ix) in &index {
                if !can_finish[ix.index()] {
                    problems.push((
                        states_path.key(*name),
                        format!("no final state can be reached from state `{name}`"),
                    ));
                }
            }
        }

        // Report in file order, not hash order.
        problems.sort_by_key(|(path, _)| {
            states
                .keys()
                .position(|k| *path == states_path.key(k))
                .unwrap_or(usize::MAX)
        });

        if problems.is_empty() {
            Ok(Self {
                graph,
                initial: initials[0].name.clone(),
            })
        } else {
            Err(problems)
        }
    }

    pub(crate) fn initial(&self) -> &str {
        &self.initial
    }

    fn edges(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.graph.edge_indices().filter_map(|e| {
            let (a, b) = self.graph.edge_endpoints(e)?;
            Some((
                self.graph[a].as_str(),
                self.graph[b].as_str(),
                self.graph[e].as_str(),
            ))
        })
    }

    fn outgoing_count(&self, state: &str) -> usize {
        self.graph
            .node_indices()
            .find(|n| self.graph[*n] == state)
            .map(|n| self.graph.edges_directed(n, Direction::Outgoing).count())
            .unwrap_or(0)
    }
}

pub(crate) fn render(def: &Definition, format: GraphFormat) -> String {
    let g = &def.graph;
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("stateDiagram-v2\n");
            out.push_str(&format!("    [*] --> {}\n", g.initial()));
            for (from, to, name) in g.edges() {
                let note = edge_note(def, name, to);
                out.push_str(&format!("    {from} --> {to}: {name}{note}\n"));
            }
            for s in def.states.values().filter(|s| s.is_final) {
                out.push_str(&format!("    {} --> [*]\n", s.name));
            }
        }
        GraphFormat::Dot => {
            out.push_str(&format!("digraph \"{}\" {{\n", def.id));
            out.push_str("    rankdir=LR;\n");
            for s in def.states.values() {
                let shape = if s.is_final {
                    "doublecircle"
                } else if s.initial {
                    "circle, style=bold"
                } else if g.outgoing_count(&s.name) > 0
                    && def.transitions_from(&s.name).all(|t| t.auto)
                {
                    "diamond"
                } else {
                    "box, style=rounded"
                };
                out.push_str(&format!("    \"{}\" [shape={shape}];\n", s.name));
            }
            for (from, to, name) in g.edges() {
                let style = if def.transitions[name].auto {
                    ", style=dashed"
                } else {
                    ""
                };
                let note = edge_note(def, name, to);
                out.push_str(&format!(
                    "    \"{from}\" -> \"{to}\" [label=\"{name}{note}\"{style}];\n"
                ));
            }
            out.push_str("}\n");
        }
    }
    out
}

/// What an edge's label adds to the transition name: automatic, or an approval's outcome.
fn edge_note(def: &Definition, transition: &str, to: &str) -> &'static str {
    let t = &def.transitions[transition];
    match &t.approval {
        _ if t.auto => " (auto)",
        Some(a) if a.reject_to == to && t.to != to => " (rejected)",
        Some(_) => " (approved)",
        None => "",
    }
}
