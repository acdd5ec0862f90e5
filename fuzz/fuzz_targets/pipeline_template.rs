//! Pipelines written in TOML: the input (lossily UTF-8) is parsed as a
//! `cairn::pipeline::PipelineFile`, validated with resolvers that accept
//! every function and task name, and every step's params of a valid
//! pipeline are expanded (`Scope::expand`) with a scope holding every
//! declared param (its default, else a string), a few undeclared ones, a
//! JSON result for every step of the phase, and in `finally` steps a run
//! outcome.
//!
//! Checks: nothing panics; every validation problem has a non-empty
//! message; an expansion error is a non-empty message; a value without any
//! `{{` in its strings and keys expands to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

use cairn::model::ModuleRef;
use cairn::pipeline::{Phase, PipelineFile, Scope, validate};

fn accept(name: &str) -> Result<ModuleRef, String> {
    Ok(ModuleRef::builtin(name))
}

/// Whether any string or key in `value` contains `{{`.
fn has_template(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("{{"),
        Value::Array(items) => items.iter().any(has_template),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains("{{") || has_template(v)),
        _ => false,
    }
}

fn expand_phase(phase: &Phase, params: &Map<String, Value>, restoring: bool) {
    let mut steps = Map::new();
    for step in phase.steps.iter().chain(&phase.finally) {
        steps.insert(
            step.name.clone(),
            json!({"status": 200, "ok": true, "hits": [{"_id": "x", "n": 1.5}], "text": "{{params.url}}"}),
        );
    }
    let mut scope = Scope {
        params: params.clone(),
        steps,
        job: "fuzz-job".into(),
        run_id: "01FUZZRUN".into(),
        snapshot: Some("0123abcd".into()),
        outcome: None,
        restoring,
    };
    for (list, finally) in [(&phase.steps, false), (&phase.finally, true)] {
        scope.outcome = finally.then(|| ("failed".to_owned(), "step `a` failed".to_owned()));
        for step in list {
            match scope.expand(&step.params) {
                Ok(expanded) => {
                    if !has_template(&step.params) {
                        assert_eq!(expanded, step.params, "a value without templates changed");
                    }
                }
                Err(message) => assert!(!message.is_empty(), "an empty expansion error"),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(file) = toml::from_str::<PipelineFile>(&text) else {
        return;
    };
    let pipeline = match validate("fuzz", &file, &accept, &accept) {
        Ok(p) => p,
        Err(problems) => {
            assert!(!problems.is_empty(), "an Err without problems");
            for (key, message) in &problems {
                assert!(!message.is_empty(), "a problem at `{key}` without a message");
            }
            return;
        }
    };
    let mut params = Map::new();
    for (name, value) in [
        ("url", json!("http://127.0.0.1:9200")),
        ("n", json!(3)),
        ("list", json!(["a", "b"])),
        ("obj", json!({"k": "v", "nested": {"0": [null]}})),
    ] {
        params.insert(name.to_owned(), value);
    }
    for (name, decl) in &pipeline.params {
        let value = decl.default.clone().unwrap_or_else(|| json!(format!("value-of-{name}")));
        params.insert(name.clone(), value);
    }
    if let Some(phase) = &pipeline.backup {
        expand_phase(phase, &params, false);
    }
    if let Some(phase) = &pipeline.restore {
        expand_phase(phase, &params, true);
    }
});
