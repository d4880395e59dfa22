//! Scripts of one definition, compiled once, and their evaluation.

use std::collections::HashMap;
use std::sync::Arc;

use rhai::{AST, CallFnOptions, Dynamic, Engine, Scope};
use serde_json::{Map, Value};

use super::decision::RuleDecision;
use super::error::{RuleError, RuleFailure, classify};
use super::reads::{CONTEXT_NAMES, Reads};
use super::sandbox::{Limits, build_engine};
use crate::clock::Clock;
use crate::definition::{Definition, DefinitionError, Position, Script, ScriptRef, YamlPath};

/// What a rule sees of the instance and the step being taken.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Instance id.
    pub instance_id: &'a str,
    /// Process id.
    pub process: &'a str,
    /// The state the instance is in while the rule runs.
    pub state: &'a str,
    /// Who takes the step.
    pub actor: &'a str,
    /// The actor's roles.
    pub roles: &'a [String],
    /// Instance data with this step's input applied.
    pub data: &'a Map<String, Value>,
    /// The data given with this step.
    pub input: &'a Map<String, Value>,
    /// Linked instances: link field → list of `{id, process, state}`.
    pub links: &'a Value,
    /// Instances the process file's `lookups:` name, for timer rules: lookup name → list
    /// of `{id, state, data}` (an empty map elsewhere).
    pub lookups: &'a Value,
}

/// The sandboxed Rhai engine shared by every definition.
#[derive(Debug)]
pub struct RuleEngine {
    engine: Engine,
    limits: Limits,
}

impl RuleEngine {
    /// An engine with the given limits, reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>, limits: Limits) -> Self {
        Self {
            engine: build_engine(clock, limits),
            limits,
        }
    }

    /// The limits scripts run under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles a definition's rule modules and scripts, checking that every named rule
    /// function exists. All problems are returned together.
    pub fn compile(&self, def: &Definition) -> Result<CompiledRules, Vec<DefinitionError>> {
        let mut errors = Vec::new();
        let mut functions = AST::empty();
        let mut owner: HashMap<(String, usize), String> = HashMap::new();
        // Rule function → (its module, the SHA-256 of the module's source).
        let mut homes: HashMap<String, (String, String)> = HashMap::new();
        for (module_name, module) in &def.source.rules {
            match self.engine.compile(&module.source) {
                Ok(ast) => {
                    let module_hash = sha256_hex(&module.source);
                    for f in ast.iter_functions() {
                        homes.insert(
                            f.name.to_owned(),
                            (module_name.clone(), module_hash.clone()),
                        );
                        let key = (f.name.to_owned(), f.params.len());
                        if let Some(other) = owner.insert(key, module.file.clone()) {
                            errors.push(DefinitionError::new(
                                module.file.clone(),
                                Position { line: 1, column: 1 },
                                format!(
                                    "function `{}` with {} parameter(s) is also defined in {other}",
                                    f.name,
                                    f.params.len()
                                ),
                            ));
                        }
                    }
                    functions = functions.merge(&ast.clone_functions_only());
                }
                Err(e) => {
                    let pos = e.position();
                    errors.push(DefinitionError::new(
                        module.file.clone(),
                        Position {
                            line: pos.line().unwrap_or(1),
                            column: pos.position().unwrap_or(1),
                        },
                        format!("Rhai syntax error: {}", e.err_type()),
                    ));
                }
            }
        }

        let template = scope_template();
        let mut scripts = foldhash::HashMap::default();
        let mut labels = foldhash::HashMap::default();
        let mut origins = foldhash::HashMap::default();
        for (label, script) in def.scripts() {
            let at = def.source_map.value_position(&script.path);
            labels.insert(
                script.path.clone(),
                format!("{label} at {}:{}:{}", def.source.file, at.line, at.column),
            );
            let (module, source_hash) = match &script.script {
                ScriptRef::Function(name) => homes.get(name).cloned().unwrap_or_default(),
                // The process file by name: where it was loaded from is the machine's matter.
                ScriptRef::Inline(source) => (
                    std::path::Path::new(&def.source.file)
                        .file_name()
                        .map_or_else(|| def.source.file.clone(), |n| n.to_string_lossy().into()),
                    sha256_hex(source),
                ),
            };
            origins.insert(
                script.path.clone(),
                Origin {
                    rule: script.path.to_string(),
                    module,
                    function: match &script.script {
                        ScriptRef::Function(name) => Some(name.clone()),
                        ScriptRef::Inline(_) => None,
                    },
                    source_hash,
                },
            );
            match &script.script {
                ScriptRef::Function(name) => {
                    let known: Vec<_> = functions
                        .iter_functions()
                        .map(|f| (f.name, f.params.len()))
                        .collect();
                    if known.iter().any(|(n, p)| *n == name && *p == 1) {
                        scripts.insert(script.path.clone(), Compiled::Function(name.clone()));
                    } else if known.iter().any(|(n, _)| *n == name) {
                        errors.push(def.error_at(
                            &script.path,
                            format!("{label}: rule function `{name}` must take exactly one parameter (the context map)"),
                        ));
                    } else {
                        let modules: Vec<_> = def.source.rules.keys().cloned().collect();
                        let hint = crate::definition::closest(name, known.iter().map(|(n, _)| *n))
                            .map(|f| format!("; did you mean `{f}`?"))
                            .unwrap_or_default();
                        errors.push(def.error_at(
                            &script.path,
                            format!(
                                "{label}: unknown rule function `{name}` (rule modules: {}){hint}",
                                if modules.is_empty() {
                                    "none".to_owned()
                                } else {
                                    modules.join(", ")
                                }
                            ),
                        ));
                    }
                }
                ScriptRef::Inline(source) => {
                    match self.engine.compile_with_scope(&template, source) {
                        Ok(ast) => {
                            scripts.insert(
                                script.path.clone(),
                                Compiled::Inline(functions.merge(&ast), Reads::of(source)),
                            );
                        }
                        Err(e) => {
                            let pos = e.position();
                            errors.push(def.error_at(
                                &script.path,
                                format!(
                                    "{label} does not compile: {} (script line {}, column {})",
                                    e.err_type(),
                                    pos.line().unwrap_or(1),
                                    pos.position().unwrap_or(1)
                                ),
                            ));
                        }
                    }
                }
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        // Shared (a clone per evaluation is a reference count) and read-only (no script
        // can change what the next one reads).
        let tables = rhai::serde::to_dynamic(&def.tables)
            .unwrap_or(Dynamic::UNIT)
            .into_read_only()
            .into_shared();
        Ok(CompiledRules {
            functions,
            scripts,
            labels,
            origins,
            tables,
        })
    }

    /// Runs a guard; it must return a boolean.
    pub fn guard(
        &self,
        rules: &CompiledRules,
        script: &Script,
        ctx: &Context<'_>,
    ) -> Result<bool, RuleError> {
        let result = self.run(rules, script, ctx)?;
        result.as_bool().map_err(|got| RuleError {
            rule: rules.describe(script),
            function: None,
            failure: RuleFailure::WrongType {
                expected: "a boolean (true or false)",
                got: got.to_owned(),
            },
        })
    }

    /// Runs a rule that computes a count (such as a quorum); it must return a positive integer.
    pub fn count(
        &self,
        rules: &CompiledRules,
        script: &Script,
        ctx: &Context<'_>,
    ) -> Result<u32, RuleError> {
        let result = self.run(rules, script, ctx)?;
        match result.as_int() {
            Ok(n) if n >= 1 => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
            Ok(n) => Err(RuleError {
                rule: rules.describe(script),
                function: None,
                failure: RuleFailure::WrongType {
                    expected: "a count of at least 1",
                    got: n.to_string(),
                },
            }),
            Err(got) => Err(RuleError {
                rule: rules.describe(script),
                function: None,
                failure: RuleFailure::WrongType {
                    expected: "an integer",
                    got: got.to_owned(),
                },
            }),
        }
    }

    /// Runs a rule giving a duration: ms (an integer above 0), text such as `4h` or
    /// `1h30m`, or nothing (`None`: the caller's default).
    pub fn duration(
        &self,
        rules: &CompiledRules,
        script: &Script,
        ctx: &Context<'_>,
    ) -> Result<Option<i64>, RuleError> {
        let result = self.run(rules, script, ctx)?;
        if result.is_unit() {
            return Ok(None);
        }
        let ms = match (result.as_int(), result.clone().into_string()) {
            (Ok(n), _) => Some(n),
            (_, Ok(text)) => crate::definition::duration_ms(&text),
            _ => None,
        };
        match ms {
            Some(ms) if ms > 0 => Ok(Some(ms)),
            _ => Err(RuleError {
                rule: rules.describe(script),
                function: None,
                failure: RuleFailure::WrongType {
                    expected: "a duration: ms above 0, or text such as `4h`",
                    got: result.to_string(),
                },
            }),
        }
    }

    /// Runs an action; it may return nothing (`()`) or a map of fields to set.
    pub fn action(
        &self,
        rules: &CompiledRules,
        script: &Script,
        ctx: &Context<'_>,
    ) -> Result<Map<String, Value>, RuleError> {
        let result = self.run(rules, script, ctx)?;
        if result.is_unit() {
            return Ok(Map::new());
        }
        let wrong = |got: String| RuleError {
            rule: rules.describe(script),
            function: None,
            failure: RuleFailure::WrongType {
                expected: "a map of fields to set, or nothing",
                got,
            },
        };
        if !result.is_map() {
            return Err(wrong(result.type_name().to_owned()));
        }
        match rhai::serde::from_dynamic::<Value>(&result) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(wrong(other.to_string())),
            Err(e) => Err(wrong(e.to_string())),
        }
    }

    fn run(
        &self,
        rules: &CompiledRules,
        script: &Script,
        ctx: &Context<'_>,
    ) -> Result<Dynamic, RuleError> {
        let fail = |err: &rhai::EvalAltResult| {
            let (failure, function) = classify(err);
            RuleError {
                rule: rules.describe(script),
                function,
                failure,
            }
        };
        match rules.scripts.get(&script.path) {
            Some(Compiled::Inline(ast, reads)) => {
                let values = context_values(ctx, &rules.tables, reads);
                let mut scope = Scope::with_capacity(CONTEXT_NAMES.len());
                for ((name, value), used) in CONTEXT_NAMES.iter().zip(values).zip(&reads.names) {
                    if *used {
                        scope.push_dynamic(*name, value);
                    }
                }
                self.engine
                    .eval_ast_with_scope::<Dynamic>(&mut scope, ast)
                    .map_err(|e| fail(&e))
            }
            Some(Compiled::Function(name)) => {
                let values = context_values(ctx, &rules.tables, &Reads::all());
                let mut map = rhai::Map::new();
                for (key, value) in CONTEXT_NAMES.iter().zip(values) {
                    map.insert((*key).into(), value);
                }
                let options = CallFnOptions::new().eval_ast(false);
                self.engine
                    .call_fn_with_options::<Dynamic>(
                        options,
                        &mut Scope::new(),
                        &rules.functions,
                        name,
                        (Dynamic::from_map(map),),
                    )
                    .map_err(|e| {
                        let mut err = fail(&e);
                        err.function.get_or_insert_with(|| name.clone());
                        err
                    })
            }
            None => Err(RuleError {
                rule: rules.describe(script),
                function: None,
                failure: RuleFailure::Runtime(
                    "script was not compiled with this definition".into(),
                ),
            }),
        }
    }
}

fn scope_template() -> Scope<'static> {
    let mut scope = Scope::new();
    for name in CONTEXT_NAMES {
        scope.push_dynamic(name, Dynamic::UNIT);
    }
    scope
}

/// The values of [`CONTEXT_NAMES`]; those not read are left `()`, and `data` holds only
/// the fields read.
fn context_values(
    ctx: &Context<'_>,
    tables: &Dynamic,
    reads: &Reads,
) -> [Dynamic; CONTEXT_NAMES.len()] {
    let make = |i: usize| -> Dynamic {
        match i {
            0 => match &reads.data {
                None => map_to_dynamic(ctx.data),
                Some(fields) => Dynamic::from_map(
                    fields
                        .iter()
                        .filter_map(|f| Some((f.as_str().into(), to_dynamic(ctx.data.get(f)?))))
                        .collect(),
                ),
            },
            1 => map_to_dynamic(ctx.input),
            2 => ctx.state.into(),
            3 => ctx.actor.into(),
            4 => ctx
                .roles
                .iter()
                .map(|r| Dynamic::from(r.clone()))
                .collect::<rhai::Array>()
                .into(),
            5 => {
                let mut instance = rhai::Map::new();
                instance.insert("id".into(), ctx.instance_id.into());
                instance.insert("process".into(), ctx.process.into());
                instance.insert("state".into(), ctx.state.into());
                instance.into()
            }
            6 => tables.clone(),
            7 => ctx.process.into(),
            8 => to_dynamic(ctx.links),
            _ => to_dynamic(ctx.lookups),
        }
    };
    std::array::from_fn(|i| {
        if reads.names[i] {
            make(i)
        } else {
            Dynamic::UNIT
        }
    })
}

/// A JSON value as scripts see it; the same as `rhai::serde::to_dynamic`, built directly:
/// `null` is `()`, integers that fit are `INT`, other numbers `FLOAT`.
pub(crate) fn to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Object(m) => map_to_dynamic(m),
    }
}

fn map_to_dynamic(m: &Map<String, Value>) -> Dynamic {
    Dynamic::from_map(
        m.iter()
            .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
            .collect(),
    )
}

enum Compiled {
    /// An inline script, and which context names it uses.
    Inline(AST, Reads),
    Function(String),
}

/// The compiled scripts of one definition version.
pub struct CompiledRules {
    functions: AST,
    /// By place in the process file, hashed by foldhash (looked up for every script run;
    /// the keys come from process files, not from callers).
    scripts: foldhash::HashMap<YamlPath, Compiled>,
    /// Each script in words with its position (`transition `close` guard at event.yaml:9:5`).
    labels: foldhash::HashMap<YamlPath, String>,
    /// Where each script comes from, for the rule decisions of trace records.
    origins: foldhash::HashMap<YamlPath, Origin>,
    tables: Dynamic,
}

/// Where a script comes from: its place in the process file, its module and function, and
/// the hash of its source.
#[derive(Debug, Clone)]
struct Origin {
    rule: String,
    module: String,
    function: Option<String>,
    source_hash: String,
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

impl std::fmt::Debug for CompiledRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRules")
            .field("scripts", &self.scripts.len())
            .finish()
    }
}

impl CompiledRules {
    /// The decision `script` took when it gave `result`, for a trace record.
    pub fn decision(&self, script: &Script, result: Value) -> RuleDecision {
        match self.origins.get(&script.path) {
            Some(o) => RuleDecision {
                rule: o.rule.clone(),
                module: o.module.clone(),
                function: o.function.clone(),
                source_hash: o.source_hash.clone(),
                result,
            },
            None => RuleDecision {
                rule: script.path.to_string(),
                module: String::new(),
                function: None,
                source_hash: String::new(),
                result,
            },
        }
    }

    /// The script in words, for errors: what it is, where it is written and, for a rule
    /// function, its name.
    pub(crate) fn describe(&self, script: &Script) -> String {
        let label = self
            .labels
            .get(&script.path)
            .cloned()
            .unwrap_or_else(|| script.path.to_string());
        match &script.script {
            ScriptRef::Function(name) => format!("{label} (rule function `{name}`)"),
            ScriptRef::Inline(_) => label,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn json_values_reach_scripts_as_rhai_serde_would_convert_them() {
        let value = json!({
            "s": "text", "n": null, "t": true, "f": false,
            "i": -42, "big": u64::MAX, "x": 1.25,
            "list": [1, "a", null, [2.5], {"k": "v"}],
            "map": {"inner": {"deep": [true]}, "empty": {}},
        });
        let direct = super::to_dynamic(&value);
        let through_serde = rhai::serde::to_dynamic(&value).expect("converts");
        assert_eq!(format!("{direct:?}"), format!("{through_serde:?}"));
        assert_eq!(direct.type_name(), through_serde.type_name());
    }
}
