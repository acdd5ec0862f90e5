//! Templates in step params: `{{params.NAME}}`, `{{steps.STEP.field}}`,
//! `{{job}}`, `{{run.id}}`, `{{run.snapshot}}`, and in `finally` steps
//! `{{run.status}}` and `{{run.error}}`. Checked when the configuration
//! loads ([`check_reference`]) and filled in when a step runs ([`Scope`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ParamDecl;

/// One `{{…}}` reference, as written between the braces (trimmed).
pub(super) fn references(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_strings(value, &mut |s| {
        for piece in pieces(s) {
            if let Piece::Ref(r) = piece {
                out.push(r.to_string());
            }
        }
    });
    out
}

fn walk_strings(value: &Value, f: &mut dyn FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|v| walk_strings(v, f)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            f(k);
            walk_strings(v, f);
        }),
        _ => {}
    }
}

#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Ref(&'a str),
}

/// Split a string into text and `{{ref}}` pieces. `{{secret:…}}` stays text
/// (the host's HTTP capability substitutes it).
fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + 2 + len].trim();
        if inner.starts_with("secret:") || inner.starts_with("secret-") {
            out.push(Piece::Text(&rest[..start + 4 + len]));
        } else {
            if start > 0 {
                out.push(Piece::Text(&rest[..start]));
            }
            out.push(Piece::Ref(inner));
        }
        rest = &rest[start + 4 + len..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

/// Check a reference when the configuration loads.
pub(super) fn check_reference(
    reference: &str,
    params: &BTreeMap<String, ParamDecl>,
    earlier: &[String],
    finally: bool,
) -> Result<(), String> {
    let mut parts = reference.split('.');
    let head = parts.next().unwrap_or_default();
    match head {
        "job" if reference == "job" => Ok(()),
        "run" => match parts.next() {
            Some("id" | "snapshot") => Ok(()),
            Some("status" | "error") if finally => Ok(()),
            Some("status" | "error") => Err(format!(
                "`{{{{{reference}}}}}` is only known in `finally` steps"
            )),
            _ => Err(format!(
                "`{{{{{reference}}}}}`: `run` has `id`, `snapshot`, and in finally steps `status` and `error`"
            )),
        },
        "params" => {
            let Some(name) = parts.next() else {
                return Err("`{{params}}` needs a param name: `{{params.NAME}}`".into());
            };
            if params.is_empty() || params.contains_key(name) {
                Ok(())
            } else {
                Err(format!(
                    "`{{{{{reference}}}}}` refers to param `{name}`, which the pipeline does not declare (declared: {})",
                    params.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        }
        "steps" => {
            let Some(name) = parts.next() else {
                return Err("`{{steps}}` needs a step name: `{{steps.NAME}}`".into());
            };
            if earlier.iter().any(|e| e == name) {
                Ok(())
            } else {
                Err(format!(
                    "`{{{{{reference}}}}}` refers to step `{name}`, which does not run before this step{}",
                    if earlier.is_empty() {
                        String::new()
                    } else {
                        format!(" (earlier steps: {})", earlier.join(", "))
                    }
                ))
            }
        }
        _ => Err(format!(
            "unknown reference `{{{{{reference}}}}}`: use `params.NAME`, `steps.NAME`, `job`, or `run.id`"
        )),
    }
}

/// What templates can refer to while a phase runs.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `params.*`.
    pub params: Map<String, Value>,
    /// `steps.*`: results of the steps that succeeded.
    pub steps: Map<String, Value>,
    /// `job`.
    pub job: String,
    /// `run.id`.
    pub run_id: String,
    /// `run.snapshot`.
    pub snapshot: Option<String>,
    /// `run.status` and `run.error`, in `finally` steps.
    pub outcome: Option<(String, String)>,
    /// Whether this is a restore (task steps run `restore`, else `backup`).
    pub restoring: bool,
}

impl Scope {
    fn lookup(&self, reference: &str) -> Result<Value, String> {
        let mut parts = reference.split('.');
        let head = parts.next().unwrap_or_default();
        let (root, what) = match head {
            "job" => return Ok(Value::String(self.job.clone())),
            "run" => {
                return match parts.next() {
                    Some("id") => Ok(Value::String(self.run_id.clone())),
                    Some("snapshot") => {
                        Ok(self.snapshot.clone().map_or(Value::Null, Value::String))
                    }
                    Some("status") => Ok(Value::String(self.outcome.clone().unwrap_or_default().0)),
                    Some("error") => Ok(Value::String(self.outcome.clone().unwrap_or_default().1)),
                    _ => Err(format!("unknown reference `{{{{{reference}}}}}`")),
                };
            }
            "params" => (&self.params, "param"),
            "steps" => (&self.steps, "step"),
            _ => return Err(format!("unknown reference `{{{{{reference}}}}}`")),
        };
        let name = parts.next().unwrap_or_default();
        let mut value = root.get(name).ok_or_else(|| match what {
            "param" => format!("`{{{{{reference}}}}}`: the job has no param `{name}`"),
            _ => format!(
                "`{{{{{reference}}}}}`: step `{name}` has no result (it did not run or failed)"
            ),
        })?;
        let mut path = vec![name];
        for part in parts {
            path.push(part);
            let next = match value {
                Value::Object(m) => m.get(part),
                Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            value = next.ok_or_else(|| {
                format!(
                    "`{{{{{reference}}}}}`: `{}` has no `{part}`",
                    path[..path.len() - 1].join(".")
                )
            })?;
        }
        Ok(value.clone())
    }

    /// `value` with every reference substituted.
    ///
    /// # Errors
    /// A reference to something that is not there.
    pub fn expand(&self, value: &Value) -> Result<Value, String> {
        Ok(match value {
            Value::String(s) => self.expand_str(s)?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.expand(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let key = match self.expand_str(k)? {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        Ok((key, self.expand(v)?))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }

    fn expand_str(&self, s: &str) -> Result<Value, String> {
        let pieces = pieces(s);
        if let [Piece::Ref(r)] = pieces.as_slice() {
            return self.lookup(r);
        }
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Ref(r) => match self.lookup(r)? {
                    Value::String(v) => out.push_str(&v),
                    Value::Null => {}
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(Value::String(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope {
            params: json!({"url": "http://es:9200", "n": 3, "list": ["a", "b"]})
                .as_object()
                .unwrap()
                .clone(),
            steps: json!({"get": {"hits": [{"id": "x"}], "ok": true}})
                .as_object()
                .unwrap()
                .clone(),
            job: "j".into(),
            run_id: "R1".into(),
            snapshot: None,
            outcome: None,
            restoring: false,
        }
    }

    #[test]
    fn whole_references_keep_their_type_and_embedded_ones_become_text() {
        let s = scope();
        let v = s
            .expand(&json!({
                "n": "{{params.n}}",
                "list": "{{ params.list }}",
                "url": "{{params.url}}/_all/_settings",
                "id": "{{steps.get.hits.0.id}}",
                "text": "n={{params.n}} ok={{steps.get.ok}} run {{run.id}} of {{job}}",
                "auth": "Basic {{secret-base64:ES}} {{secret:X}}",
            }))
            .unwrap();
        assert_eq!(
            v,
            json!({
                "n": 3,
                "list": ["a", "b"],
                "url": "http://es:9200/_all/_settings",
                "id": "x",
                "text": "n=3 ok=true run R1 of j",
                "auth": "Basic {{secret-base64:ES}} {{secret:X}}",
            })
        );
    }

    #[test]
    fn missing_values_are_errors_naming_the_reference() {
        let s = scope();
        let e = s.expand(&json!("{{params.nope}}")).unwrap_err();
        assert!(e.contains("no param `nope`"), "{e}");
        let e = s.expand(&json!("{{steps.get.hits.5.id}}")).unwrap_err();
        assert!(e.contains("`get.hits` has no `5`"), "{e}");
        let e = s.expand(&json!("x {{steps.later}}")).unwrap_err();
        assert!(e.contains("step `later` has no result"), "{e}");
    }
}
