//! `cairn:plugin/secrets` and `{{secret:NAME}}` substitution.
//!
//! Secret values come from `[secrets.NAME]` in the config (an environment
//! variable or a file) or, by default, from the environment variable `NAME`.
//! The host substitutes them into HTTP header values and command environment
//! for secrets listed in `allow.secrets`; a module reads a value itself only
//! when the job lists it in `allow.readable-secrets`.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::SecretSource;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::task::cairn::plugin::secrets::Host;

/// The values of the secrets granted to one job, resolved when its run starts.
#[derive(Debug, Default)]
pub struct SecretValues {
    granted: BTreeSet<String>,
    readable: BTreeSet<String>,
    values: BTreeMap<String, Result<String, String>>,
}

impl SecretValues {
    /// Resolve each granted secret from `sources` (or the environment).
    pub fn resolve(
        job: &str,
        granted: &BTreeSet<String>,
        readable: &BTreeSet<String>,
        sources: &BTreeMap<String, SecretSource>,
    ) -> Self {
        let values = granted
            .iter()
            .map(|name| (name.clone(), read_secret(job, name, sources.get(name))))
            .collect();
        Self {
            granted: granted.clone(),
            readable: readable.clone(),
            values,
        }
    }

    /// Every resolved value (for redaction).
    pub fn all_values(&self) -> impl Iterator<Item = String> + '_ {
        self.values
            .values()
            .filter_map(|v| v.as_ref().ok().cloned())
    }

    /// Value of a granted secret, for host-side injection.
    ///
    /// # Errors
    /// `denied` when the job does not grant `name`; `not-found` when it has no value.
    pub fn value(&self, job: &str, name: &str) -> Result<&str, WitError> {
        if !self.granted.contains(name) {
            return Err(WitError::Denied(format!(
                "secret `{name}` is not granted to job `{job}`: add it to `allow.secrets`"
            )));
        }
        match self.values.get(name) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(WitError::NotFound(e.clone())),
            None => Err(WitError::NotFound(format!("secret `{name}` has no value"))),
        }
    }

    /// Replace each `{{secret:NAME}}` in `text` with the secret's value.
    ///
    /// # Errors
    /// As [`SecretValues::value`], or `invalid` for an unterminated placeholder.
    pub fn substitute(&self, job: &str, text: &str) -> Result<String, WitError> {
        const OPEN: &str = "{{secret:";
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(OPEN) {
            out.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let end = after.find("}}").ok_or_else(|| {
                WitError::Invalid(format!(
                    "unterminated `{OPEN}` placeholder (expected `}}}}`)"
                ))
            })?;
            out.push_str(self.value(job, after[..end].trim())?);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn read_secret(job: &str, name: &str, source: Option<&SecretSource>) -> Result<String, String> {
    match source {
        Some(SecretSource {
            file: Some(path), ..
        }) => std::fs::read_to_string(path)
            .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| {
                format!(
                    "secret `{name}` (job `{job}`): cannot read {}: {e}",
                    path.display()
                )
            }),
        Some(SecretSource { env: Some(var), .. }) => std::env::var(var).map_err(|_| {
            format!("secret `{name}` (job `{job}`): environment variable `{var}` is not set")
        }),
        _ => std::env::var(name).map_err(|_| {
            format!(
                "secret `{name}` (job `{job}`): environment variable `{name}` is not set \
                 (or configure `[secrets.{name}]` with `env` or `file`)"
            )
        }),
    }
}

/// The `secrets` capability of one store.
pub struct SecretsCap {
    job: String,
    values: std::sync::Arc<SecretValues>,
}

impl SecretsCap {
    /// Secrets of `job`.
    pub fn new(job: &str, values: std::sync::Arc<SecretValues>) -> Self {
        Self {
            job: job.to_string(),
            values,
        }
    }
}

impl Host for SecretsCap {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, WitError>> {
        if !self.values.readable.contains(&name) {
            return Ok(Err(WitError::Denied(format!(
                "reading secret `{name}` is not granted to job `{}`: add it to `allow.readable-secrets` \
                 (or let the host inject it with `{{{{secret:{name}}}}}`)",
                self.job
            ))));
        }
        Ok(self.values.value(&self.job, &name).map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> SecretValues {
        let mut sources = BTreeMap::new();
        sources.insert(
            "TOKEN".to_string(),
            SecretSource {
                env: Some("CAIRN_TEST_SECRET_THAT_IS_SET".into()),
                file: None,
            },
        );
        // SAFETY: tests in this module only read this variable.
        unsafe { std::env::set_var("CAIRN_TEST_SECRET_THAT_IS_SET", "t0k3n") };
        let granted: BTreeSet<String> = ["TOKEN".to_string(), "MISSING_X".to_string()].into();
        SecretValues::resolve("j", &granted, &BTreeSet::new(), &sources)
    }

    #[test]
    fn placeholders_are_substituted_only_for_granted_secrets() {
        let v = values();
        assert_eq!(
            v.substitute("j", "Bearer {{secret:TOKEN}}").unwrap(),
            "Bearer t0k3n"
        );
        assert!(matches!(
            v.substitute("j", "{{secret:OTHER}}"),
            Err(WitError::Denied(_))
        ));
        assert!(matches!(
            v.substitute("j", "{{secret:MISSING_X}}"),
            Err(WitError::NotFound(_))
        ));
        assert!(matches!(
            v.substitute("j", "{{secret:TOKEN"),
            Err(WitError::Invalid(_))
        ));
        assert_eq!(v.substitute("j", "plain").unwrap(), "plain");
    }
}
