//! What an inline script reads, worked out from its text once when it is compiled, so
//! that each run makes only those values: every guard of every step builds its context.
//!
//! A script reaches a variable only by its name (`eval` is disabled, and functions it
//! calls do not see its variables), so one that never spells a name, even in a comment or
//! a string, cannot read it. Where the text leaves any doubt, the script is given all.

/// Names visible to inline scripts, and the keys of the map passed to rule functions.
pub(super) const CONTEXT_NAMES: [&str; 10] = [
    "data", "input", "state", "actor", "roles", "instance", "tables", "process", "links", "lookups",
];

/// What a script is given of its context.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reads {
    /// Which of [`CONTEXT_NAMES`] it spells.
    pub(super) names: [bool; CONTEXT_NAMES.len()],
    /// The fields of `data` it reads; `None`: any of them.
    pub(super) data: Option<Box<[String]>>,
}

impl Reads {
    /// Everything: what rule functions are given.
    pub(super) fn all() -> Reads {
        Reads {
            names: [true; CONTEXT_NAMES.len()],
            data: None,
        }
    }

    /// What the inline script `source` reads.
    pub(super) fn of(source: &str) -> Reads {
        Reads {
            names: names_used(source),
            data: data_fields(source),
        }
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Where `name` stands in `source` as a word of its own, with the text after it.
fn spelled<'s>(source: &'s str, name: &'s str) -> impl Iterator<Item = (usize, &'s str)> + 's {
    source.match_indices(name).filter_map(move |(at, _)| {
        let before = source[..at].chars().next_back();
        let rest = &source[at + name.len()..];
        let alone = !before.is_some_and(is_word) && !rest.chars().next().is_some_and(is_word);
        alone.then_some((at, rest))
    })
}

/// Which of [`CONTEXT_NAMES`] `source` spells.
fn names_used(source: &str) -> [bool; CONTEXT_NAMES.len()] {
    CONTEXT_NAMES.map(|name| spelled(source, name).next().is_some())
}

/// The fields of `data` that `source` reads, when every `data` it spells (other than as a
/// property of something else, `x.data`) is followed at once by `.field` and that is not
/// a method call (`data.keys()`). A `data` anywhere else (passed whole, indexed, spaced,
/// in a map literal, in a comment) leaves any field readable: `None`. A `data.field` in a
/// string or a comment only adds a field.
fn data_fields(source: &str) -> Option<Box<[String]>> {
    let mut fields = Vec::new();
    for (at, rest) in spelled(source, "data") {
        if source[..at].ends_with('.') {
            continue;
        }
        let after_dot = rest.strip_prefix('.')?;
        let len = after_dot
            .find(|c: char| !is_word(c))
            .unwrap_or(after_dot.len());
        let (field, tail) = after_dot.split_at(len);
        if field.is_empty() || tail.trim_start().starts_with('(') {
            return None;
        }
        fields.push(field.to_owned());
    }
    fields.sort_unstable();
    fields.dedup();
    Some(fields.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(source: &str) -> Vec<&'static str> {
        CONTEXT_NAMES
            .iter()
            .zip(names_used(source))
            .filter(|(_, u)| *u)
            .map(|(n, _)| *n)
            .collect()
    }

    #[test]
    fn an_inline_script_is_given_the_context_names_it_spells_and_only_those() {
        assert_eq!(used(r#"data.tier == "L1""#), ["data"]);
        assert_eq!(used("#{ pending_reason: () }"), Vec::<&str>::new());
        assert_eq!(
            used("input.x + tables.p[state]"),
            ["input", "state", "tables"]
        );
        // Parts of longer words are not names; strings and comments count (to be safe).
        assert_eq!(used("metadata.x + data_2 + my_roles"), Vec::<&str>::new());
        assert_eq!(used(r#"`${actor}` // roles"#), ["actor", "roles"]);
    }

    /// The fields given, comma-separated.
    fn fields(source: &str) -> Option<String> {
        data_fields(source).map(|f| f.join(","))
    }

    #[test]
    fn a_script_that_only_reads_named_fields_of_data_is_given_those_fields() {
        let given = |s: &str| Some(s.to_owned());
        assert_eq!(fields(r#"data.tier == "L1""#), given("tier"));
        assert_eq!(
            fields("data.impact == \"high\" && data.urgency != data.impact || input.data"),
            given("impact,urgency")
        );
        assert_eq!(fields("data.list[0] + data.text.len()"), given("list,text"));
        assert_eq!(fields("metadata.x + input.y"), given(""));
    }

    #[test]
    fn a_script_that_may_read_data_otherwise_is_given_all_of_it() {
        for source in [
            "data",
            "count(data)",
            "data[\"tier\"]",
            "data .tier",
            "data?.tier",
            "data.keys()",
            "data.contains (\"tier\")",
            "let d = data; d.tier",
            "#{ data: 1 }",
            "// reads data\ntrue",
        ] {
            assert_eq!(fields(source), None, "{source}");
        }
    }
}
