//! `opsflow schema`: the JSON Schema editors use to check process files while typing.

use serde_json::Value;

use crate::cli::opsflow;
use crate::helpers::{processes_copy, repo_path};

const HEADER: &str = "# yaml-language-server: $schema=../schemas/process.schema.json";

fn printed_schema() -> Value {
    let out = opsflow(&["schema"], &repo_path("."));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&printed_schema()).expect("the schema is a valid draft-07 schema")
}

/// A process file as the JSON a YAML language server checks.
fn as_json(yaml: &str) -> Value {
    serde_yaml::from_str(yaml).expect("YAML")
}

fn schema_problems(v: &jsonschema::Validator, yaml: &str) -> Vec<String> {
    v.iter_errors(&as_json(yaml))
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn shipped() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(repo_path("processes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 6, "the shipped processes are there");
    files
}

#[test]
fn the_printed_schema_is_the_committed_one_every_shipped_file_names_on_its_first_line() {
    let committed = std::fs::read_to_string(repo_path("schemas/process.schema.json")).unwrap();
    let committed: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(
        printed_schema(),
        committed,
        "schemas/process.schema.json is stale: run `opsflow schema > schemas/process.schema.json`"
    );
    for (name, text) in shipped() {
        assert_eq!(text.lines().next(), Some(HEADER), "{name}");
    }
}

#[test]
fn every_shipped_process_file_passes_the_schema() {
    let v = validator();
    for (name, text) in shipped() {
        assert_eq!(schema_problems(&v, &text), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn a_misspelt_key_fails_the_schema_at_its_place_as_it_fails_validation() {
    let v = validator();
    for (from, to, misspelt, place) in [
        ("\nfields:\n", "\nfeilds:\n", "feilds", ""),
        ("    action: ", "    acton: ", "acton", "/transitions/"),
        (
            "    approval: { roles: [cab_member]",
            "    aproval: { roles: [cab_member]",
            "aproval",
            "/transitions/cab_approve",
        ),
        (
            "    initial: true",
            "    inital: true",
            "inital",
            "/states/",
        ),
    ] {
        let (_dir, processes) = processes_copy("change.yaml", |t| t.replacen(from, to, 1));
        let text = std::fs::read_to_string(processes.join("change.yaml")).unwrap();
        assert!(text.contains(to), "the edit `{to}` applies");
        let problems = schema_problems(&v, &text);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(place) && p.contains(&format!("'{misspelt}'"))),
            "`{misspelt}`: {problems:?}"
        );
        let out = opsflow(
            &["validate", processes.join("change.yaml").to_str().unwrap()],
            &repo_path("."),
        );
        assert!(
            !out.status.success(),
            "`opsflow validate` refuses `{to}` too"
        );
    }
}

#[test]
fn a_wrong_value_shape_fails_the_schema() {
    let v = validator();
    for (from, to) in [
        ("after: 2h", "after: two hours"),
        ("warn: { at: 75%", "warn: { at: most"),
        (
            "{ type: enum, values: [incident, service_request]",
            "{ type: enumeration, values: [incident, service_request]",
        ),
    ] {
        let (_dir, processes) = processes_copy("event.yaml", |t| t.replacen(from, to, 1));
        let text = std::fs::read_to_string(processes.join("event.yaml")).unwrap();
        assert!(text.contains(to), "the edit `{to}` applies");
        assert!(
            !schema_problems(&v, &text).is_empty(),
            "`{to}` passes the schema"
        );
    }
}
