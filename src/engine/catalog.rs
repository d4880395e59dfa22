//! The set of process definitions the engine serves, loaded from the process and rule
//! folders, each with its compiled rules.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

use super::offers::Offers;
use crate::definition::{
    self, Calendar, Definition, DefinitionError, Position, RuleSource, Source, YamlPath,
    parse_calendar,
};
use crate::rules::{CompiledRules, RuleEngine};

/// A definition version ready to run: the checked model and its compiled scripts.
#[derive(Debug)]
pub struct Loaded {
    /// The definition.
    pub definition: Definition,
    /// Its compiled scripts.
    pub rules: CompiledRules,
    /// What each of its states offers callers.
    pub(crate) offers: Offers,
}

impl Loaded {
    /// Parses and compiles one process file against a library of rule modules.
    pub fn build(
        rules: &RuleEngine,
        file: &str,
        yaml: &str,
        library: &IndexMap<String, RuleSource>,
    ) -> Result<Self, Vec<DefinitionError>> {
        let definition = definition::parse(file, yaml, library)?;
        let compiled = rules.compile(&definition)?;
        Ok(Self {
            offers: Offers::new(&definition),
            definition,
            rules: compiled,
        })
    }

    /// Rebuilds a stored version from its source bundle.
    pub fn from_source(rules: &RuleEngine, source: &Source) -> Result<Self, Vec<DefinitionError>> {
        Self::build(rules, &source.file, &source.yaml, &source.rules)
    }
}

/// The current definitions, by process id.
#[derive(Debug, Default)]
pub struct Catalog {
    processes: IndexMap<String, Arc<Loaded>>,
    /// Business calendars timers count in, by id.
    calendars: BTreeMap<String, Arc<Calendar>>,
}

impl Catalog {
    /// Loads every `*.yaml`/`*.yml` file of `processes` (a folder or a file) with the rule
    /// modules (`*.rhai`) of `rules_dir`. Every problem of every file is returned at once.
    pub fn load(
        rules: &RuleEngine,
        processes: &[PathBuf],
        rules_dir: &Path,
    ) -> Result<Self, Vec<DefinitionError>> {
        let mut errors = Vec::new();
        let library = read_rule_library(rules_dir, &mut errors);
        let mut files = Vec::new();
        for p in processes {
            collect_process_files(p, &mut files, &mut errors);
        }
        let mut catalog = Catalog::default();
        let mut origin: HashMap<String, String> = HashMap::new();
        // Processes whose file has problems still exist: links to them are not errors too.
        let mut broken: Vec<String> = Vec::new();
        for path in files {
            let file = path.display().to_string();
            let yaml = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(file_error(&file, format!("cannot read: {e}")));
                    continue;
                }
            };
            match Loaded::build(rules, &file, &yaml, &library) {
                Ok(loaded) => {
                    let id = loaded.definition.id.clone();
                    if let Some(first) = origin.insert(id.clone(), file.clone()) {
                        errors.push(file_error(
                            &file,
                            format!("process `{id}` is already defined in {first}"),
                        ));
                    } else {
                        catalog.processes.insert(id, Arc::new(loaded));
                    }
                }
                Err(mut e) => {
                    broken.extend(declared_id(&yaml));
                    errors.append(&mut e);
                }
            }
        }
        // A file given alone may link to processes defined beside it.
        let mut known: std::collections::HashSet<String> =
            catalog.processes.keys().cloned().collect();
        known.extend(broken);
        for p in processes.iter().filter(|p| p.is_file()) {
            let mut siblings = Vec::new();
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                collect_process_files(dir, &mut siblings, &mut Vec::new());
            } else {
                collect_process_files(Path::new("."), &mut siblings, &mut Vec::new());
            }
            for s in siblings {
                if let Ok(yaml) = std::fs::read_to_string(&s)
                    && let Ok(d) = definition::parse(&s.display().to_string(), &yaml, &library)
                {
                    known.insert(d.id);
                }
            }
        }
        errors.extend(catalog.cross_process_problems(&known));
        if errors.is_empty() {
            Ok(catalog)
        } else {
            Err(errors)
        }
    }

    /// Link fields and `creates:` entries that name a process not in this catalog.
    fn cross_process_problems(
        &self,
        known: &std::collections::HashSet<String>,
    ) -> Vec<DefinitionError> {
        let mut errors = Vec::new();
        for l in self.iter() {
            let d = &l.definition;
            let unknown = |p: &str| format!("unknown process `{p}`: no process file defines it");
            for f in d.fields.values() {
                if let Some(p) = f.field_type.linked_process()
                    && !known.contains(p)
                {
                    let path = YamlPath::root().key("fields").key(&f.name).key("process");
                    errors.push(d.error_at(&path, unknown(p)));
                }
            }
            for l in d.lookups.values() {
                let path = YamlPath::root().key("lookups").key(&l.name);
                let Some(other) = self.get(&l.process) else {
                    errors.push(d.error_at(&path.key("process"), unknown(&l.process)));
                    continue;
                };
                for (i, s) in l.states.iter().enumerate() {
                    if !other.definition.states.contains_key(s) {
                        let message = format!("process `{}` has no state `{s}`", l.process);
                        errors.push(d.error_at(&path.key("in").index(i), message));
                    }
                }
            }
            for t in d.transitions.values() {
                for (i, c) in t.creates.iter().enumerate() {
                    if !known.contains(&c.process) {
                        let path = YamlPath::root()
                            .key("transitions")
                            .key(&t.name)
                            .key("creates")
                            .index(i)
                            .key("process");
                        errors.push(d.error_at(&path, unknown(&c.process)));
                    }
                }
            }
        }
        errors
    }

    /// A catalog of already built definitions (tests, benchmarks).
    pub fn from_loaded(items: impl IntoIterator<Item = Loaded>) -> Self {
        Self {
            processes: items
                .into_iter()
                .map(|l| (l.definition.id.clone(), Arc::new(l)))
                .collect(),
            calendars: BTreeMap::new(),
        }
    }

    /// The catalog with the business calendars its timers count in; every timer naming a
    /// calendar that is not among them is reported at its place.
    pub fn with_calendars(
        mut self,
        calendars: BTreeMap<String, Calendar>,
    ) -> Result<Self, Vec<DefinitionError>> {
        let errors: Vec<DefinitionError> = self
            .iter()
            .flat_map(|l| unknown_calendars(&l.definition, calendars.keys()))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        self.calendars = calendars
            .into_iter()
            .map(|(id, c)| (id, Arc::new(c)))
            .collect();
        Ok(self)
    }

    /// Timers of `definition` naming a calendar this catalog does not have.
    pub fn unknown_calendars(&self, definition: &Definition) -> Vec<DefinitionError> {
        unknown_calendars(definition, self.calendars.keys())
    }

    /// A business calendar by id.
    pub fn calendar(&self, id: &str) -> Option<&Calendar> {
        self.calendars.get(id).map(|c| c.as_ref())
    }

    /// The current definition of a process.
    pub fn get(&self, process: &str) -> Option<&Arc<Loaded>> {
        self.processes.get(process)
    }

    /// All current definitions, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Loaded>> {
        self.processes.values()
    }
}

/// Timers of `d` naming a calendar not among `known`, each at its place.
fn unknown_calendars<'k>(
    d: &Definition,
    known: impl Iterator<Item = &'k String> + Clone,
) -> Vec<DefinitionError> {
    let mut errors = Vec::new();
    for t in d.timers.values() {
        let Some(c) = t.calendar.as_deref() else {
            continue;
        };
        if known.clone().any(|k| k == c) {
            continue;
        }
        let hint = crate::definition::closest(c, known.clone().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        let path = YamlPath::root().key("timers").key(&t.name).key("calendar");
        errors.push(d.error_at(
            &path,
            format!("unknown calendar `{c}`: no file in the calendars folder defines it{hint}"),
        ));
    }
    errors
}

/// The `process:` id a file declares, when it can be read that far.
fn declared_id(yaml: &str) -> Option<String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).ok()?;
    doc.get("process")?.as_str().map(str::to_owned)
}

fn file_error(file: &str, message: String) -> DefinitionError {
    DefinitionError::new(file, Position { line: 1, column: 1 }, message)
}

fn collect_process_files(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<DefinitionError>) {
    if path.is_dir() {
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.is_file()
                            && matches!(
                                p.extension().and_then(|e| e.to_str()),
                                Some("yaml" | "yml")
                            )
                    })
                    .collect();
                found.sort();
                files.extend(found);
            }
            Err(e) => errors.push(file_error(
                &path.display().to_string(),
                format!("cannot read folder: {e}"),
            )),
        }
    } else if path.is_file() {
        files.push(path.to_path_buf());
    } else {
        errors.push(file_error(
            &path.display().to_string(),
            "no such file or folder".into(),
        ));
    }
}

/// Reads every `*.rhai` file of a folder, keyed by file stem. A missing folder is an empty
/// library (processes that name no rule modules still load).
pub fn read_rule_library(
    dir: &Path,
    errors: &mut Vec<DefinitionError>,
) -> IndexMap<String, RuleSource> {
    let mut library = IndexMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return library;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("rhai"))
        .collect();
    paths.sort();
    for path in paths {
        let file = path.display().to_string();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        match std::fs::read_to_string(&path) {
            Ok(source) => {
                library.insert(name.to_owned(), RuleSource { file, source });
            }
            Err(e) => errors.push(file_error(&file, format!("cannot read: {e}"))),
        }
    }
    library
}

/// Reads and checks every calendar file (`*.yaml`) of a folder, keyed by calendar id. A
/// missing folder holds no calendars; every problem of every file is reported.
pub fn load_calendars(dir: &Path) -> Result<BTreeMap<String, Calendar>, Vec<DefinitionError>> {
    let mut calendars = BTreeMap::new();
    let mut errors = Vec::new();
    if !dir.exists() {
        return Ok(calendars);
    }
    let mut files = Vec::new();
    collect_process_files(dir, &mut files, &mut errors);
    for path in files {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                errors.push(file_error(&file, format!("cannot read: {e}")));
                continue;
            }
        };
        match parse_calendar(&file, &text) {
            Ok(calendar) => {
                if calendars.contains_key(&calendar.id) {
                    errors.push(file_error(
                        &file,
                        format!("another file already defines calendar `{}`", calendar.id),
                    ));
                } else {
                    calendars.insert(calendar.id.clone(), calendar);
                }
            }
            Err(problems) => errors.extend(problems),
        }
    }
    if errors.is_empty() {
        Ok(calendars)
    } else {
        Err(errors)
    }
}
