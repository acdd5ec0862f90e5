//! Checks of single values: names, pins, granted programs, webhooks. Each
//! returns what is wrong in the config's own words; [`super::resolve`] reports
//! it at the key it came from.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use url::Url;

use super::file::NotifyFile;
use crate::model::grants::unsafe_env;
use crate::model::{
    Digest, Event, GrantedProgram, OriginPattern, Template, Webhook, reserved_header,
};
use crate::sys::normalize;

/// Smallest accepted `memory` limit.
pub(super) const MIN_MEMORY: u64 = 1 << 20;
/// Largest accepted `memory` limit.
pub(super) const MAX_MEMORY: u64 = 64 << 30;

/// Job and function names: a letter or digit, then letters, digits, `-`, `_`, `.`.
pub(super) fn check_name(name: &str, what: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid {what} name: start with a letter or digit, then use \
             letters, digits, `-`, `_` or `.` (e.g. `db-nightly`)"
        ))
    }
}

/// Secret names: `[A-Za-z_][A-Za-z0-9_]*`.
pub(super) fn check_secret_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid secret name: use letters, digits and `_`, not starting \
             with a digit (e.g. `PGPASSWORD`)"
        ))
    }
}

/// 64 hex digits (optionally prefixed `sha256:`) → digest.
pub(super) fn parse_sha256(text: &str) -> Result<Digest, String> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    let bad = || {
        format!("`{text}` is not a sha256: expected 64 hex digits, as printed by `sha256sum FILE`")
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(digest)
}

/// A granted command: a bare name looked up in `search_path` (not installed is
/// not an error), or an absolute path that must be an executable file.
pub(super) fn grant_program(
    command: &str,
    search_path: Option<&OsString>,
) -> Result<GrantedProgram, String> {
    if command.is_empty() {
        return Err("empty program name; grant a name like `pg_dump` or an absolute path".into());
    }
    if command.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{command}`: grant a program name alone, without arguments (e.g. `pg_dump`)"
        ));
    }
    if !command.contains('/') {
        return Ok(GrantedProgram::new(
            command,
            search_path.and_then(|p| find_in_path(command, p)),
        ));
    }
    let path = Path::new(command);
    if !path.is_absolute() {
        return Err(format!(
            "`{command}` is a relative path; grant a program name (looked up in PATH) or an \
             absolute path"
        ));
    }
    let path = normalize(path);
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    if !is_executable(&path) {
        return Err(format!("{} is not an executable file", path.display()));
    }
    Ok(GrantedProgram::new(command, Some(path)))
}

/// First executable `name` in the absolute directories of `search_path`. The
/// path is kept as found (not canonicalized), so multi-call binaries that look
/// at their own name keep working.
fn find_in_path(name: &str, search_path: &OsString) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| normalize(&dir.join(name)))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

/// Names a module may give an environment variable: `[A-Za-z_][A-Za-z0-9_]*`,
/// and none that changes how programs or their loader behave.
pub(super) fn check_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "`{name}` is not an environment variable name: use letters, digits and `_`, not \
             starting with a digit (e.g. `PGHOST`)"
        ));
    }
    if let Some(why) = unsafe_env(name) {
        return Err(format!(
            "`{name}` is never passed to a program: {why} (see SECURITY.md)"
        ));
    }
    Ok(())
}

/// Header names a secret may be bound to: a token, and not one the host
/// owns (`Host`, the framing headers).
pub(super) fn check_header_name(name: &str) -> Result<(), String> {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!(
            "`{name}` is not an HTTP header name (e.g. `Authorization`)"
        ));
    }
    if let Some(why) = reserved_header(name) {
        return Err(format!("`{name}` cannot carry a secret: {why}"));
    }
    Ok(())
}

/// A problem with one webhook: the key inside its entry (`url`, `on[1]`,
/// `template`) and what is wrong.
pub type WebhookProblem = (String, String);

/// Validate a webhook, given the origins webhooks may go to (`[daemon]
/// webhook-origins`): its URL is on one of them, its events are known, its
/// template fills in to JSON.
///
/// # Errors
/// Every problem found, each with the key at fault.
pub fn webhook(
    file: &NotifyFile,
    granted: &[OriginPattern],
) -> Result<Webhook, Vec<WebhookProblem>> {
    let mut problems = Vec::new();
    let url = match Url::parse(&file.url) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            problems.push((
                "url".to_owned(),
                format!("scheme `{}` is not http or https", url.scheme()),
            ));
            None
        }
        Ok(url) if !granted.iter().any(|p| p.matches(&url)) => {
            let origin = url.origin().ascii_serialization();
            problems.push((
                "url".to_owned(),
                format!(
                    "webhook origin {origin} is not allowlisted: add \"{origin}\" to \
                     `[daemon] webhook-origins` (notifications go only to the origins listed there)"
                ),
            ));
            None
        }
        Ok(url) => Some(url),
        Err(err) => {
            problems.push((
                "url".to_owned(),
                format!("not a URL ({err}): write it in full, e.g. `https://hooks.example.com/…`"),
            ));
            None
        }
    };

    let mut on = BTreeSet::new();
    match &file.on {
        None => {
            on.insert(Event::Failure);
        }
        Some(names) if names.is_empty() => problems.push((
            "on".to_owned(),
            "is empty, so nothing would be sent: list `failure`, `success` or `skipped`, or \
             remove the webhook"
                .to_owned(),
        )),
        Some(names) => {
            for (i, name) in names.iter().enumerate() {
                match Event::ALL.into_iter().find(|e| e.as_str() == name) {
                    Some(event) => {
                        on.insert(event);
                    }
                    None => problems.push((
                        format!("on[{i}]"),
                        format!(
                            "unknown event `{name}`; expected `failure`, `success` or `skipped`"
                        ),
                    )),
                }
            }
        }
    }

    let template = match file.template.as_deref().map(Template::parse) {
        None => None,
        Some(Ok(template)) => Some(template),
        Some(Err(message)) => {
            problems.push(("template".to_owned(), message));
            None
        }
    };

    match url {
        Some(url) if problems.is_empty() => Ok(Webhook { url, on, template }),
        _ => Err(problems),
    }
}
