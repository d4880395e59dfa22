//! The configuration file of `opsflow serve` (`--config FILE`, `OPSFLOW_CONFIG`): TOML
//! whose keys are the settings' names (`group_commit_max = 64`). A key is used only where
//! neither its flag nor its environment variable is given, so the order is: flag,
//! environment, file, default. Each value is checked as its flag would be, and a problem is
//! reported as `file:line:col: message`; a secret's value is never shown.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory as _};

use super::Cli;

/// `args` with the configuration file's settings added as flags, for those not given on
/// the command line or in the environment. Arguments that do not parse are handed back as
/// they are, for clap to report.
pub(super) fn with_file(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let command = Cli::command();
    let Ok(matches) = command.clone().try_get_matches_from(&args) else {
        return Ok(args);
    };
    let Some(("serve", serve_matches)) = matches.subcommand() else {
        return Ok(args);
    };
    let Some(path) = serve_matches.get_one::<std::path::PathBuf>("config") else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    let serve = command
        .find_subcommand("serve")
        .ok_or("the serve command is missing")?
        .clone();
    let mut extra = Vec::new();
    for setting in settings(path, &text)? {
        let Setting { key, at, value } = setting;
        let here = format!("{}:{}:{}", path.display(), at.0, at.1);
        if key == "config" {
            return Err(format!(
                "{here}: `config` names this file; it cannot be set inside it"
            ));
        }
        let arg = serve
            .get_arguments()
            .find(|a| a.get_id().as_str() == key && a.get_long().is_some())
            .ok_or_else(|| {
                let known: Vec<&str> = serve
                    .get_arguments()
                    .map(|a| a.get_id().as_str())
                    .filter(|id| *id != "config" && *id != "help")
                    .collect();
                format!(
                    "{here}: unknown setting `{key}`; the settings are {}",
                    known.join(", ")
                )
            })?;
        let long = arg.get_long().unwrap_or(&key).to_owned();
        let secret = arg.is_hide_env_values_set();
        let flag = matches!(arg.get_action(), ArgAction::SetTrue);
        let text = match (&value, flag) {
            (Value::Bool(b), true) => b.to_string(),
            (_, true) => {
                return Err(format!("{here}: `{key}` must be true or false"));
            }
            (Value::Bool(b), false) => b.to_string(),
            (Value::Text(t), false) => t.clone(),
        };
        if !flag {
            let alone = [
                OsString::from("opsflow"),
                OsString::from("serve"),
                OsString::from(format!("--{long}={text}")),
            ];
            if let Err(e) = command.clone().try_get_matches_from(alone) {
                return Err(if secret {
                    format!("{here}: `{key}` has an invalid value")
                } else {
                    let why = e.to_string();
                    let why = why
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim_start_matches("error: ");
                    format!("{here}: `{key}`: {why}")
                });
            }
        }
        let given = matches!(
            serve_matches.value_source(&key),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if given {
            continue;
        }
        if flag {
            if text == "true" {
                extra.push(OsString::from(format!("--{long}")));
            }
        } else {
            extra.push(OsString::from(format!("--{long}={text}")));
        }
    }
    let mut args = args;
    args.extend(extra);
    Ok(args)
}

/// A value as a flag takes it.
enum Value {
    Bool(bool),
    Text(String),
}

struct Setting {
    key: String,
    /// Line and column of the key, from 1.
    at: (usize, usize),
    value: Value,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// The file's top-level keys with their positions and values.
fn settings(path: &Path, text: &str) -> Result<Vec<Setting>, String> {
    let table = toml::de::DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or((1, 1), |s| line_col(text, s.start));
        format!(
            "{}:{}:{}: {}",
            path.display(),
            at.0,
            at.1,
            e.message().trim()
        )
    })?;
    let values: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{}: {}", path.display(), e.message()))?;
    let mut out = Vec::new();
    for (key, _) in table.get_ref().iter() {
        let name = key.get_ref().to_string();
        let at = line_col(text, key.span().start);
        let here = format!("{}:{}:{}", path.display(), at.0, at.1);
        let value = match values.get(&name) {
            Some(toml::Value::Boolean(b)) => Value::Bool(*b),
            Some(toml::Value::String(s)) => Value::Text(s.clone()),
            Some(toml::Value::Integer(i)) => Value::Text(i.to_string()),
            Some(toml::Value::Float(f)) => Value::Text(f.to_string()),
            Some(toml::Value::Array(items)) => {
                let mut parts = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(s) => parts.push(s.clone()),
                        toml::Value::Integer(i) => parts.push(i.to_string()),
                        _ => return Err(format!("{here}: `{name}` lists strings only")),
                    }
                }
                Value::Text(parts.join(","))
            }
            _ => {
                return Err(format!(
                    "{here}: `{name}` must be a string, a number, true or false, or a list of strings"
                ));
            }
        };
        out.push(Setting {
            key: name,
            at,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn offsets_become_lines_and_columns_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 9), (2, 4));
    }
}
