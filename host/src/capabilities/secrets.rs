//! `cairn:plugin/secrets` and `{{secret:NAME}}` substitution.
//!
//! Secret values come from `[secrets.NAME]` in the config (an environment
//! variable or a file) or, by default, from the environment variable `NAME`.
//! Each secret a job grants is bound to where the host may put it
//! (`allow.secrets.NAME = { header, origins }` and/or `{ env, programs }`):
//! the host substitutes it into that header of requests to those origins, or
//! that environment variable of those programs, and refuses any other
//! destination. A module reads a value itself only when the binding says
//! `readable = true` (or the job lists it in `allow.readable-secrets`).
//!
//! Placeholders:
//!
//! - `{{secret:NAME}}`: the value itself.
//! - `{{secret-base64:NAME}}`: the value in standard, padded base64.
//! - `{{secret-basic:USER:NAME}}`: `USER:value` in standard, padded base64,
//!   as HTTP basic authentication wants it:
//!   `Authorization: Basic {{secret-basic:elastic:ES_PASSWORD}}`. `USER` is
//!   literal text (RFC 7617: it cannot contain `:`).
//!
//! Every form of every value is removed from what flows back to the module
//! or is stored ([`super::redact`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use url::Url;
use wasmtime::component::{HasSelf, Linker};

use super::bindings::interfaces::secrets::{self, Host};
use super::redact::{Alphabet, Redactor, base64};
use super::{Capability, HostResult, HostShared, RunContext, WitError};
use crate::model::{SecretGrant, SecretSource};

/// Where a substituted secret is about to go.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// Header `name` of a request to `url`.
    Header {
        /// The request's URL.
        url: &'a Url,
        /// The header.
        name: &'a str,
    },
    /// Environment variable `var` of granted program `program`.
    Env {
        /// The program, as granted.
        program: &'a str,
        /// The variable.
        var: &'a str,
    },
}

impl std::fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header { url, name } => write!(
                f,
                "header `{name}` of a request to {}",
                crate::model::origin_of(url)
            ),
            Self::Env { program, var } => write!(f, "environment variable `{var}` of `{program}`"),
        }
    }
}

/// The values of the secrets granted to one job, resolved when its run
/// starts, with where each may go.
#[derive(Debug, Default)]
pub struct SecretValues {
    grants: BTreeMap<String, SecretGrant>,
    values: BTreeMap<String, Result<String, String>>,
}

impl SecretValues {
    /// Resolve each secret in `granted` from `sources` (a secret without a
    /// source is read from the environment variable of its name).
    pub fn resolve(
        job: &str,
        granted: &BTreeMap<String, SecretGrant>,
        sources: &BTreeMap<String, SecretSource>,
    ) -> Self {
        let values = granted
            .keys()
            .map(|name| (name.clone(), read_secret(job, name, sources.get(name))))
            .collect();
        Self {
            grants: granted.clone(),
            values,
        }
    }

    /// Every resolved value (the redactor derives their encoded forms).
    pub fn all_values(&self) -> impl Iterator<Item = String> + '_ {
        self.values
            .values()
            .filter_map(|v| v.as_ref().ok())
            .cloned()
    }

    /// A redactor for every value.
    #[must_use]
    pub fn redactor(&self) -> Redactor {
        Redactor::new(self.all_values())
    }

    /// Value of secret `name`, about to go to `to` (`None`: the module
    /// reads it itself).
    ///
    /// # Errors
    /// `denied` when the job does not grant `name` or does not bind it to
    /// `to`; `not-found` when it has no value.
    pub fn value(
        &self,
        job: &str,
        name: &str,
        to: Option<Destination<'_>>,
    ) -> Result<&str, WitError> {
        let Some(grant) = self.grants.get(name) else {
            return Err(WitError::Denied(format!(
                "secret `{name}` is not granted to job `{job}`: bind it in `allow.secrets.{name}`"
            )));
        };
        let allowed = match to {
            None => grant.readable,
            Some(Destination::Header { url, name: header }) => grant.allows_header(url, header),
            Some(Destination::Env { program, var }) => grant.allows_env(program, var),
        };
        if !allowed {
            let wanted = to.map_or_else(|| "the module itself".to_owned(), |d| d.to_string());
            return Err(WitError::Denied(format!(
                "secret `{name}` may not go to {wanted}: job `{job}` binds it to {} \
                 (`allow.secrets.{name}`)",
                grant.destinations()
            )));
        }
        match self.values.get(name) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(WitError::NotFound(e.clone())),
            None => Err(WitError::NotFound(format!("secret `{name}` has no value"))),
        }
    }

    /// Replace each `{{secret:NAME}}` in `text`, about to go to `to`, with
    /// the secret's value, each `{{secret-base64:NAME}}` with its base64
    /// encoding and each `{{secret-basic:USER:NAME}}` with the base64
    /// encoding of `USER:value`. Other text, including other `{{…}}`, is
    /// kept as it is. Returns the text and whether it holds a secret.
    ///
    /// # Errors
    /// As [`SecretValues::value`], or `invalid` for an unterminated
    /// placeholder or a `secret-basic` placeholder without a user.
    pub fn substitute(
        &self,
        job: &str,
        text: &str,
        to: Destination<'_>,
    ) -> Result<(String, bool), WitError> {
        const PLAIN: &str = "{{secret:";
        const BASE64: &str = "{{secret-base64:";
        const BASIC: &str = "{{secret-basic:";
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut used = false;
        while let Some(start) = rest.find("{{secret") {
            out.push_str(&rest[..start]);
            let here = &rest[start..];
            let Some(open) = [PLAIN, BASE64, BASIC]
                .into_iter()
                .find(|o| here.starts_with(o))
            else {
                // Not a placeholder (e.g. `{{secrets}}`): keep it.
                out.push_str("{{secret");
                rest = &here["{{secret".len()..];
                continue;
            };
            let after = &here[open.len()..];
            let end = after.find("}}").ok_or_else(|| {
                WitError::Invalid(format!(
                    "unterminated `{open}` placeholder (expected `}}}}`)"
                ))
            })?;
            let inner = &after[..end];
            match open {
                PLAIN => out.push_str(self.value(job, inner.trim(), Some(to))?),
                BASE64 => out.push_str(&base64(
                    self.value(job, inner.trim(), Some(to))?.as_bytes(),
                    Alphabet::Standard,
                )),
                _ => {
                    let (user, name) = inner.rsplit_once(':').ok_or_else(|| {
                        WitError::Invalid(format!(
                            "`{BASIC}{inner}}}}}` names no user: write `{BASIC}USER:NAME}}}}`"
                        ))
                    })?;
                    let value = self.value(job, name.trim(), Some(to))?;
                    out.push_str(&base64(
                        format!("{user}:{value}").as_bytes(),
                        Alphabet::Standard,
                    ));
                }
            }
            used = true;
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok((out, used))
    }
}

/// The value of secret `name` of `job` from `source`, or why there is none.
fn read_secret(job: &str, name: &str, source: Option<&SecretSource>) -> Result<String, String> {
    let hint = if source.is_none() {
        format!(" (or configure `[secrets.{name}]` with `env` or `file`)")
    } else {
        String::new()
    };
    let default = SecretSource::Env(name.to_owned());
    source
        .unwrap_or(&default)
        .read()
        .map_err(|e| format!("secret `{name}` (job `{job}`): {e}{hint}"))
}

/// The `secrets` capability of one store.
pub struct SecretsCap {
    job: String,
    values: Arc<SecretValues>,
}

impl Capability for SecretsCap {
    const INTERFACE: &'static str = "cairn:plugin/secrets";

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()> {
        secrets::add_to_linker::<T, HasSelf<Self>>(linker, get)
    }

    /// The secrets granted to the run's job.
    fn prepare(run: &RunContext, _host: &HostShared) -> anyhow::Result<Self> {
        Ok(Self {
            job: run.job.clone(),
            values: run.secrets.clone(),
        })
    }
}

impl Host for SecretsCap {
    async fn get(&mut self, name: String) -> HostResult<String> {
        if !self.values.grants.get(&name).is_some_and(|g| g.readable) {
            return Err(WitError::Denied(format!(
                "reading secret `{name}` is not granted to job `{}`: add `readable = true` to \
                 `allow.secrets.{name}` (or let the host inject it with `{{{{secret:{name}}}}}`)",
                self.job
            ))
            .into());
        }
        Ok(self.values.value(&self.job, &name, None)?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OriginPattern;

    fn header_grant(origin: &str) -> SecretGrant {
        SecretGrant {
            headers: ["authorization".to_owned()].into(),
            origins: vec![OriginPattern::parse(origin).unwrap()],
            ..SecretGrant::default()
        }
    }

    fn values() -> SecretValues {
        let mut sources = BTreeMap::new();
        sources.insert(
            "TOKEN".to_string(),
            SecretSource::Env("CAIRN_TEST_SECRET_THAT_IS_SET".into()),
        );
        // SAFETY: tests in this module only read this variable.
        unsafe { std::env::set_var("CAIRN_TEST_SECRET_THAT_IS_SET", "t0k3n") };
        let granted = BTreeMap::from([
            ("TOKEN".to_owned(), header_grant("http://es:9200")),
            ("MISSING_X".to_owned(), header_grant("http://es:9200")),
        ]);
        SecretValues::resolve("j", &granted, &sources)
    }

    fn es() -> Url {
        Url::parse("http://es:9200/_cat").unwrap()
    }

    fn to_es(url: &Url) -> Destination<'_> {
        Destination::Header {
            url,
            name: "Authorization",
        }
    }

    #[test]
    fn placeholders_are_substituted_only_where_the_binding_allows() {
        let v = values();
        let url = es();
        assert_eq!(
            v.substitute("j", "Bearer {{secret:TOKEN}}", to_es(&url))
                .unwrap(),
            ("Bearer t0k3n".to_owned(), true)
        );
        assert!(matches!(
            v.substitute("j", "{{secret:OTHER}}", to_es(&url)),
            Err(WitError::Denied(_))
        ));
        let elsewhere = Url::parse("http://evil:80/").unwrap();
        let Err(WitError::Denied(message)) =
            v.substitute("j", "{{secret:TOKEN}}", to_es(&elsewhere))
        else {
            panic!("a secret sent to another origin");
        };
        assert!(
            message.contains("binds it to header authorization of http://es:9200"),
            "{message}"
        );
        let other_header = Destination::Header {
            url: &url,
            name: "X-Debug",
        };
        assert!(matches!(
            v.substitute("j", "{{secret:TOKEN}}", other_header),
            Err(WitError::Denied(_))
        ));
        let env = Destination::Env {
            program: "curl",
            var: "TOKEN",
        };
        assert!(matches!(
            v.substitute("j", "{{secret:TOKEN}}", env),
            Err(WitError::Denied(_))
        ));
        assert!(matches!(
            v.substitute("j", "{{secret:MISSING_X}}", to_es(&url)),
            Err(WitError::NotFound(_))
        ));
        assert!(matches!(
            v.substitute("j", "{{secret:TOKEN", to_es(&url)),
            Err(WitError::Invalid(_))
        ));
        assert_eq!(
            v.substitute("j", "plain", to_es(&url)).unwrap(),
            ("plain".to_owned(), false)
        );
        assert!(matches!(
            v.value("j", "TOKEN", None),
            Err(WitError::Denied(_))
        ));
    }

    #[test]
    fn encoded_placeholders_substitute_base64_forms() {
        let v = values();
        let url = es();
        assert_eq!(
            v.substitute("j", "{{secret-base64:TOKEN}}", to_es(&url))
                .unwrap()
                .0,
            base64(b"t0k3n", Alphabet::Standard)
        );
        // The RFC 7617 example: Aladdin / open sesame.
        // SAFETY: only this test reads this variable.
        unsafe { std::env::set_var("CAIRN_TEST_SESAME", "open sesame") };
        let granted = BTreeMap::from([(
            "CAIRN_TEST_SESAME".to_owned(),
            header_grant("http://es:9200"),
        )]);
        let sesame = SecretValues::resolve("j", &granted, &BTreeMap::new());
        assert_eq!(
            sesame
                .substitute(
                    "j",
                    "Basic {{secret-basic:Aladdin:CAIRN_TEST_SESAME}}",
                    to_es(&url)
                )
                .unwrap()
                .0,
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert!(matches!(
            v.substitute("j", "{{secret-basic:TOKEN}}", to_es(&url)),
            Err(WitError::Invalid(_))
        ));
        assert_eq!(
            v.substitute("j", "{{secrets}} {{secret-other:x}}", to_es(&url))
                .unwrap()
                .0,
            "{{secrets}} {{secret-other:x}}"
        );
    }

    #[test]
    fn redaction_covers_encoded_secrets_whatever_precedes_them() {
        let password = "correct-horse-battery";
        // SAFETY: only this test reads this variable.
        unsafe { std::env::set_var("CAIRN_TEST_REDACT_PW", password) };
        let granted = BTreeMap::from([(
            "CAIRN_TEST_REDACT_PW".to_owned(),
            header_grant("http://es:9200"),
        )]);
        let v = SecretValues::resolve("j", &granted, &BTreeMap::new());
        let redactor = v.redactor();
        let url = es();
        for user in ["", "a", "ab", "elastic", "kibana_system", "u:"] {
            let header = v
                .substitute(
                    "j",
                    &format!("Basic {{{{secret-basic:{user}:CAIRN_TEST_REDACT_PW}}}}"),
                    to_es(&url),
                )
                .unwrap()
                .0;
            let encoded = header.strip_prefix("Basic ").unwrap();
            let echoed = format!("server saw {header} from us");
            let redacted = redactor.redact(&echoed);
            assert!(!redacted.contains(encoded), "user {user:?}: {redacted}");
            assert!(redacted.contains("***"), "user {user:?}: {redacted}");
            // What stays visible is at most the groups shared with the user
            // part and one group at the end.
            let visible = redacted.len() - "server saw Basic  from us".len() - 3;
            let user_groups = (user.len() + 1).div_ceil(3) * 4;
            assert!(visible <= user_groups + 4, "user {user:?}: {redacted}");
        }
        let plain = v
            .substitute("j", "{{secret-base64:CAIRN_TEST_REDACT_PW}}", to_es(&url))
            .unwrap()
            .0;
        assert_eq!(redactor.redact(&format!("x{plain}y")), "x***y");
        assert_eq!(redactor.redact(&format!("[{password}]")), "[***]");
        assert_eq!(
            redactor.redact("q=correct-horse-battery&u=correct%2Dhorse"),
            "q=***&u=correct%2Dhorse"
        );
    }
}
