//! What each state of a definition version offers callers: the transitions they may fire
//! there, as answered in every instance view. Built once per version, so that answering a
//! step shares a list instead of copying every transition's name, title and fields.

use std::sync::Arc;

use super::Actor;
use super::view::AllowedTransition;
use crate::definition::Definition;

/// States with at most this many transitions callers fire have every subset of them
/// built ahead (64 lists at most); a state with more builds its list for each answer.
const PREBUILT_UP_TO: usize = 6;

/// The transitions each state offers, by state.
#[derive(Debug, Default)]
pub(crate) struct Offers {
    by_state: foldhash::HashMap<String, StateOffers>,
    none: Arc<[AllowedTransition]>,
}

#[derive(Debug)]
struct StateOffers {
    /// The transitions leaving the state that callers fire, in file order, each with the
    /// roles that may fire it.
    candidates: Vec<(AllowedTransition, Vec<String>)>,
    /// When there are at most [`PREBUILT_UP_TO`] candidates: the list for each subset of
    /// them, indexed by the subset's bits (bit `i` is candidate `i`).
    subsets: Vec<Arc<[AllowedTransition]>>,
}

impl Offers {
    /// The offers of `def`'s states.
    pub(crate) fn new(def: &Definition) -> Self {
        let by_state = def
            .states
            .keys()
            .map(|state| {
                let candidates: Vec<_> = def
                    .transitions_from(state)
                    .filter(|t| !t.auto)
                    .map(|t| {
                        let allowed = AllowedTransition {
                            name: t.name.clone(),
                            title: t.title.clone(),
                            to: t.to.clone(),
                            requires: t.requires.clone(),
                            guarded: t.guard.is_some(),
                            approval: t.approval.is_some(),
                        };
                        (allowed, t.callers().to_vec())
                    })
                    .collect();
                let subsets = if candidates.len() <= PREBUILT_UP_TO {
                    (0..1u64 << candidates.len())
                        .map(|bits| pick(&candidates, |i, _| bits & (1u64 << i) != 0))
                        .collect()
                } else {
                    Vec::new()
                };
                let offers = StateOffers {
                    candidates,
                    subsets,
                };
                (state.clone(), offers)
            })
            .collect();
        Self {
            by_state,
            none: Arc::new([]),
        }
    }

    /// The transitions `actor` may fire in `state`, in file order.
    pub(crate) fn allowed(&self, state: &str, actor: &Actor) -> Arc<[AllowedTransition]> {
        let Some(s) = self.by_state.get(state) else {
            return self.none.clone();
        };
        if s.subsets.is_empty() {
            return pick(&s.candidates, |_, callers| actor.has_any_role(callers));
        }
        let bits = s
            .candidates
            .iter()
            .enumerate()
            .filter(|(_, (_, callers))| actor.has_any_role(callers))
            .fold(0usize, |bits, (i, _)| bits | (1 << i));
        s.subsets[bits].clone()
    }
}

/// The candidates `keep` (given each one's position and roles) keeps, in order.
fn pick(
    candidates: &[(AllowedTransition, Vec<String>)],
    keep: impl Fn(usize, &[String]) -> bool,
) -> Arc<[AllowedTransition]> {
    candidates
        .iter()
        .enumerate()
        .filter(|(i, (_, callers))| keep(*i, callers))
        .map(|(_, (allowed, _))| allowed.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process whose `open` state has 8 transitions callers fire (more than are built
    /// ahead) and `new` has 3, each fired by other roles, plus an automatic one.
    fn definition() -> Definition {
        let mut yaml = String::from(
            "process: o\nroles: [a, b, c]\nstart: { roles: [a] }\nstates:\n  new: { initial: true }\n  open: {}\n  done: { final: true }\ntransitions:\n  take: { from: new, to: open, roles: [a] }\n  skip: { from: new, to: done, roles: [b, c] }\n  drop: { from: new, to: done, roles: [c] }\n  tidy: { from: new, to: done, auto: true, guard: 'false' }\n",
        );
        for i in 0..8 {
            let roles = ["a", "b", "c"][i % 3];
            yaml.push_str(&format!(
                "  t{i}: {{ from: open, to: done, roles: [{roles}] }}\n"
            ));
        }
        crate::definition::parse("o.yaml", &yaml, &Default::default())
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn names(list: &[AllowedTransition]) -> Vec<&str> {
        list.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn each_actor_is_offered_the_transitions_its_roles_fire_in_file_order() {
        let def = definition();
        let offers = Offers::new(&def);
        let actors = [
            Actor::new("x", ["a"]),
            Actor::new("x", ["b", "c"]),
            Actor::new("x", ["c", "a", "b"]),
            Actor::new("x", ["other"]),
            Actor::new("x", Vec::<String>::new()),
        ];
        for state in ["new", "open", "done", "no_such_state"] {
            for actor in &actors {
                let expected: Vec<&str> = def
                    .transitions_from(state)
                    .filter(|t| !t.auto && actor.has_any_role(t.callers()))
                    .map(|t| t.name.as_str())
                    .collect();
                let offered = offers.allowed(state, actor);
                assert_eq!(names(&offered), expected, "{state} for {:?}", actor.roles);
            }
        }
        let desk = Actor::new("x", ["b", "c"]);
        assert_eq!(names(&offers.allowed("new", &desk)), ["skip", "drop"]);
        assert_eq!(
            names(&offers.allowed("open", &desk)),
            ["t1", "t2", "t4", "t5", "t7"]
        );
    }

    #[test]
    fn an_offered_transition_says_what_it_needs() {
        let yaml = "process: o\nroles: [a]\nfields:\n  why: { type: string }\nstates:\n  new: { initial: true }\n  done: { final: true }\ntransitions:\n  close: { from: new, to: done, title: Close it, roles: [a], requires: [why], guard: 'true' }\n";
        let def = crate::definition::parse("o.yaml", yaml, &Default::default())
            .unwrap_or_else(|e| panic!("{e:?}"));
        let offered = Offers::new(&def).allowed("new", &Actor::new("x", ["a"]));
        assert_eq!(
            offered.to_vec(),
            [AllowedTransition {
                name: "close".into(),
                title: Some("Close it".into()),
                to: "done".into(),
                requires: vec!["why".into()],
                guarded: true,
                approval: false,
            }]
        );
    }
}
