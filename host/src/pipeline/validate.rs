//! A pipeline as written, checked and resolved: step names, the module each
//! step calls, timeouts, and every template reference.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::file::{PhaseFile, PipelineFile};
use super::template::{check_reference, references};
use super::{ParamDecl, Phase, Pipeline, Step};
use crate::builtins;
use crate::model::{ModuleKind, ModuleRef};
use crate::units::{parse_duration, toml_to_json};

/// Validate `file` as pipeline `name`. `function` resolves a function name to
/// its module, `task` a task reference (or says why not). Each problem is
/// `(key path, message)`, the key path relative to the pipeline
/// (`backup.steps[1].function`).
pub fn validate(
    name: &str,
    file: &PipelineFile,
    function: &dyn Fn(&str) -> Result<ModuleRef, String>,
    task: &dyn Fn(&str) -> Result<ModuleRef, String>,
) -> Result<Pipeline, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut params = BTreeMap::new();
    for (param, decl) in &file.params {
        let default = match decl.default.as_ref().map(toml_to_json) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(m)) => {
                problems.push((format!("params.{param}.default"), m));
                None
            }
        };
        params.insert(
            param.clone(),
            ParamDecl {
                description: decl.description.clone(),
                required: decl.required,
                default,
            },
        );
    }
    if file.backup.is_none() && file.restore.is_none() {
        problems.push((
            String::new(),
            "has neither `backup` nor `restore` steps: add `[[…backup.steps]]`".into(),
        ));
    }
    let phase = |key: &str, phase: &Option<PhaseFile>, problems: &mut Vec<(String, String)>| {
        let phase = phase.as_ref()?;
        let mut names = BTreeSet::new();
        if phase.steps.is_empty() && phase.finally.is_empty() {
            problems.push((key.to_string(), "has no steps".into()));
        }
        // Names are unique within a phase; references must point
        // to steps of the same phase that run earlier (`finally` steps run
        // after every main step).
        let mut earlier: Vec<String> = Vec::new();
        let mut out = Phase::default();
        for (list, finally) in [(&phase.steps, false), (&phase.finally, true)] {
            for (i, step) in list.iter().enumerate() {
                let at = format!("{key}.{}[{i}]", if finally { "finally" } else { "steps" });
                if step.name.is_empty()
                    || !step
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    problems.push((
                        format!("{at}.name"),
                        format!(
                            "`{}` is not a step name: use letters, digits, `-` and `_`",
                            step.name
                        ),
                    ));
                }
                if !names.insert(step.name.clone()) {
                    problems.push((
                        format!("{at}.name"),
                        format!("another step is already called `{}`", step.name),
                    ));
                }
                let (module, calls, is_task) = match (&step.function, &step.task) {
                    (Some(f), None) => (
                        function(f).map_err(|m| (format!("{at}.function"), m)),
                        format!("function `{f}`"),
                        false,
                    ),
                    (None, Some(t)) => (
                        task(t).map_err(|m| (format!("{at}.task"), m)),
                        format!("task `{t}`"),
                        true,
                    ),
                    _ => (
                        Err((
                            at.clone(),
                            "set either `function = \"NAME\"` or `task = \"builtin:NAME\"`".into(),
                        )),
                        String::new(),
                        false,
                    ),
                };
                let module = match module {
                    Ok(m) => Some(m),
                    Err(problem) => {
                        problems.push(problem);
                        None
                    }
                };
                let timeout = match step.timeout.as_deref().map(parse_duration) {
                    None => None,
                    Some(Ok(d)) if !d.is_zero() => Some(d),
                    Some(Ok(_)) => {
                        problems.push((format!("{at}.timeout"), "must be longer than zero".into()));
                        None
                    }
                    Some(Err(m)) => {
                        problems.push((format!("{at}.timeout"), m));
                        None
                    }
                };
                let params_json = match toml_to_json(&toml::Value::Table(step.params.clone())) {
                    Ok(v) => v,
                    Err(m) => {
                        problems.push((format!("{at}.params"), m));
                        Value::Null
                    }
                };
                for reference in references(&params_json) {
                    if let Err(m) = check_reference(&reference, &params, &earlier, finally) {
                        problems.push((format!("{at}.params"), m));
                    }
                }
                earlier.push(step.name.clone());
                if let Some(module) = module {
                    let step = Step {
                        name: step.name.clone(),
                        calls,
                        is_task,
                        module,
                        params: params_json,
                        timeout,
                    };
                    if finally {
                        out.finally.push(step);
                    } else {
                        out.steps.push(step);
                    }
                }
            }
        }
        Some(out)
    };
    let backup = phase("backup", &file.backup, &mut problems);
    let restore = phase("restore", &file.restore, &mut problems);
    if problems.is_empty() {
        Ok(Pipeline {
            name: name.to_string(),
            description: file.description.clone().unwrap_or_default(),
            params,
            backup,
            restore,
        })
    } else {
        Err(problems)
    }
}

/// The module of function `name`: one from `[functions]`, else a built-in
/// Function.
///
/// # Errors
/// No such function, or `name` is a task.
pub fn resolve_function(
    name: &str,
    declared: &BTreeMap<String, ModuleRef>,
) -> Result<ModuleRef, String> {
    if let Some(m) = declared.get(name) {
        return Ok(m.clone());
    }
    let functions = builtins::all()
        .iter()
        .filter(|b| b.kind == ModuleKind::Function)
        .collect::<Vec<_>>();
    if let Some(b) = functions.iter().find(|b| b.name == name) {
        return Ok(b.module());
    }
    let mut available = functions.iter().map(|b| b.name).collect::<Vec<_>>();
    available.extend(declared.keys().map(String::as_str));
    Err(format!(
        "no function `{name}`: built-in and declared functions are {}",
        available.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> PipelineFile {
        toml::from_str(text).unwrap()
    }

    fn resolve(name: &str) -> Result<ModuleRef, String> {
        if name == "nope" {
            Err("no function `nope`".into())
        } else {
            Ok(ModuleRef::builtin(name))
        }
    }

    #[test]
    fn references_are_checked_at_load() {
        let f = file(
            r#"
            params.url = { required = true }
            [[backup.steps]]
            name = "a"
            function = "http-request"
            params = { url = "{{params.url}}", x = "{{steps.b}}", y = "{{params.typo}}", z = "{{run.status}}" }
            [[backup.steps]]
            name = "b"
            function = "nope"
            [[backup.finally]]
            name = "c"
            function = "http-request"
            params = { s = "{{run.status}} {{run.error}} {{steps.a}} {{steps.b}}" }
            [[backup.finally]]
            name = "a"
            function = "http-request"
            "#,
        );
        let problems = validate("p", &f, &resolve, &resolve).unwrap_err();
        let text = problems
            .iter()
            .map(|(k, m)| format!("{k}: {m}"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("backup.steps[0].params: `{{steps.b}}` refers to step `b`, which does not run before"), "{text}");
        assert!(
            text.contains("param `typo`, which the pipeline does not declare"),
            "{text}"
        );
        assert!(
            text.contains("`{{run.status}}` is only known in `finally` steps"),
            "{text}"
        );
        assert!(
            text.contains("backup.steps[1].function: no function `nope`"),
            "{text}"
        );
        assert!(
            text.contains("backup.finally[1].name: another step is already called `a`"),
            "{text}"
        );
        // Finally steps may refer to any main step and to run.status/error.
        assert!(!text.contains("backup.finally[0].params"), "{text}");
        assert_eq!(problems.len(), 5, "{text}");
    }

    #[test]
    fn a_pipeline_needs_steps() {
        let problems = validate("p", &file("description = \"x\""), &resolve, &resolve).unwrap_err();
        assert!(problems[0].1.contains("neither `backup` nor `restore`"));
    }

    #[test]
    fn builtin_pipelines_parse_and_validate() {
        for name in super::super::builtin_names() {
            let f = super::super::builtin(name).unwrap();
            validate(name, &f, &resolve, &resolve).unwrap();
        }
    }
}
