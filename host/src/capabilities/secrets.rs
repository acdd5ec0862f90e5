//! `cairn:plugin/secrets` and `{{secret:NAME}}` substitution.
//!
//! Secret values come from `[secrets.NAME]` in the config (an environment
//! variable or a file) or, by default, from the environment variable `NAME`.
//! The host substitutes them into HTTP header values and command environment
//! for secrets listed in `allow.secrets`; a module reads a value itself only
//! when the job lists it in `allow.readable-secrets`.
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
//! Encoded forms are a new way for a secret to leak (a server echoing the
//! header, a module logging the response), so [`SecretValues::all_values`]
//! also yields them for redaction: the encoding of the value alone, and for
//! each of the three alignments the value can have after a prefix (`USER:`)
//! the run of base64 characters that depends on the value only. At most the
//! one or two characters where the value meets the surrounding text stay
//! visible, which reveal at most two bytes at each end of the value.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::bindings::interfaces::secrets::{self, Host};
use super::{Capability, HostResult, HostShared, RunContext, WitError};
use crate::model::{SecretGrant, SecretSource};

/// The values of the secrets granted to one job, resolved when its run starts.
#[derive(Debug, Default)]
pub struct SecretValues {
    granted: BTreeSet<String>,
    readable: BTreeSet<String>,
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
            granted: granted.keys().cloned().collect(),
            readable: granted
                .iter()
                .filter(|(_, g)| g.readable)
                .map(|(name, _)| name.clone())
                .collect(),
            values,
        }
    }

    /// Every resolved value and its base64 forms (for redaction; see the
    /// [module docs](self)).
    pub fn all_values(&self) -> impl Iterator<Item = String> + '_ {
        self.values
            .values()
            .filter_map(|v| v.as_ref().ok())
            .flat_map(|v| std::iter::once(v.clone()).chain(base64_forms(v)))
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

    /// Replace each `{{secret:NAME}}` in `text` with the secret's value,
    /// each `{{secret-base64:NAME}}` with its base64 encoding and each
    /// `{{secret-basic:USER:NAME}}` with the base64 encoding of
    /// `USER:value`. Other text, including other `{{…}}`, is kept as it is.
    ///
    /// # Errors
    /// As [`SecretValues::value`], or `invalid` for an unterminated
    /// placeholder or a `secret-basic` placeholder without a user.
    pub fn substitute(&self, job: &str, text: &str) -> Result<String, WitError> {
        const PLAIN: &str = "{{secret:";
        const BASE64: &str = "{{secret-base64:";
        const BASIC: &str = "{{secret-basic:";
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
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
                PLAIN => out.push_str(self.value(job, inner.trim())?),
                BASE64 => out.push_str(&base64(self.value(job, inner.trim())?.as_bytes())),
                _ => {
                    let (user, name) = inner.rsplit_once(':').ok_or_else(|| {
                        WitError::Invalid(format!(
                            "`{BASIC}{inner}}}}}` names no user: write `{BASIC}USER:NAME}}}}`"
                        ))
                    })?;
                    let value = self.value(job, name.trim())?;
                    out.push_str(&base64(format!("{user}:{value}").as_bytes()));
                }
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Standard base64 (RFC 4648, section 4) with `=` padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The base64 forms of `value` worth redacting: its whole encoding, and for
/// each alignment (0, 1 or 2 bytes of any prefix before it) the characters
/// of the 3-byte groups made of the value's bytes only, which are the same
/// whatever text surrounds the value.
fn base64_forms(value: &str) -> impl Iterator<Item = String> + '_ {
    let bytes = value.as_bytes();
    let whole = (!bytes.is_empty()).then(|| base64(bytes));
    let aligned = (0..3usize).filter_map(move |offset| {
        // The value occupies bytes offset..offset+len of the encoded stream;
        // group g (bytes 3g..3g+3) is the value's alone when it lies inside.
        let first = offset.div_ceil(3);
        let end = (offset + bytes.len()) / 3;
        if end <= first {
            return None;
        }
        let from = first * 3 - offset;
        let to = end * 3 - offset;
        Some(base64(&bytes[from..to]))
    });
    whole.into_iter().chain(aligned)
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
        if !self.values.readable.contains(&name) {
            return Err(WitError::Denied(format!(
                "reading secret `{name}` is not granted to job `{}`: add it to `allow.readable-secrets` \
                 (or let the host inject it with `{{{{secret:{name}}}}}`)",
                self.job
            ))
            .into());
        }
        Ok(self.values.value(&self.job, &name)?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(names: &[&str]) -> BTreeMap<String, SecretGrant> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), SecretGrant::default()))
            .collect()
    }

    fn values() -> SecretValues {
        let mut sources = BTreeMap::new();
        sources.insert(
            "TOKEN".to_string(),
            SecretSource::Env("CAIRN_TEST_SECRET_THAT_IS_SET".into()),
        );
        // SAFETY: tests in this module only read this variable.
        unsafe { std::env::set_var("CAIRN_TEST_SECRET_THAT_IS_SET", "t0k3n") };
        SecretValues::resolve("j", &granted(&["TOKEN", "MISSING_X"]), &sources)
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

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "base64({plain:?})");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn encoded_placeholders_substitute_base64_forms() {
        let v = values();
        assert_eq!(
            v.substitute("j", "{{secret-base64:TOKEN}}").unwrap(),
            base64(b"t0k3n")
        );
        // The RFC 7617 example: Aladdin / open sesame.
        // SAFETY: only this test reads this variable.
        unsafe { std::env::set_var("CAIRN_TEST_SESAME", "open sesame") };
        let sesame = SecretValues::resolve("j", &granted(&["CAIRN_TEST_SESAME"]), &BTreeMap::new());
        assert_eq!(
            sesame
                .substitute("j", "Basic {{secret-basic:Aladdin:CAIRN_TEST_SESAME}}")
                .unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert!(matches!(
            v.substitute("j", "{{secret-basic:TOKEN}}"),
            Err(WitError::Invalid(_))
        ));
        assert!(matches!(
            v.substitute("j", "{{secret-basic:elastic:OTHER}}"),
            Err(WitError::Denied(_))
        ));
        assert!(matches!(
            v.substitute("j", "{{secret-base64:TOKEN"),
            Err(WitError::Invalid(_))
        ));
        assert_eq!(
            v.substitute("j", "{{secrets}} {{secret-other:x}}").unwrap(),
            "{{secrets}} {{secret-other:x}}"
        );
    }

    #[test]
    fn redaction_covers_encoded_secrets_whatever_precedes_them() {
        let password = "correct-horse-battery";
        // SAFETY: only this test reads this variable.
        unsafe { std::env::set_var("CAIRN_TEST_REDACT_PW", password) };
        let v = SecretValues::resolve("j", &granted(&["CAIRN_TEST_REDACT_PW"]), &BTreeMap::new());
        let redactor = crate::capabilities::log::Redactor::new(v.all_values());
        for user in ["", "a", "ab", "elastic", "kibana_system", "u:"] {
            let header = v
                .substitute(
                    "j",
                    &format!("Basic {{{{secret-basic:{user}:CAIRN_TEST_REDACT_PW}}}}"),
                )
                .unwrap();
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
            .substitute("j", "{{secret-base64:CAIRN_TEST_REDACT_PW}}")
            .unwrap();
        assert_eq!(redactor.redact(&format!("x{plain}y")), "x***y");
        assert_eq!(redactor.redact(&format!("[{password}]")), "[***]");
    }
}
