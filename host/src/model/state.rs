//! Where run history and job state are kept: an embedded SQLite file (one
//! node) or a PostgreSQL database shared by several daemons.

use std::path::PathBuf;

use super::secret::SecretSource;

/// `[state]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// A SQLite database file (absolute path).
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(PostgresState),
}

/// A PostgreSQL state database: `[state] url` (without a password) and where
/// its password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresState {
    /// `postgres://user@host:port/database?…`, never with a password.
    pub url: String,
    /// The password (`[state] password-env` / `password-file`), if the
    /// server asks for one.
    pub password: Option<SecretSource>,
}

/// Whether `s` is a node name, or a label's key or value: letters, digits,
/// `-`, `_` and `.`, starting with a letter or digit.
fn is_node_word(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Check a daemon's node name (`cairn daemon --node NAME`).
///
/// # Errors
/// What is wrong with it.
pub fn check_node_name(name: &str) -> Result<(), String> {
    if is_node_word(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid node name: start with a letter or digit, then use letters, \
             digits, `-`, `_` or `.` (e.g. `backup-1`)"
        ))
    }
}

/// Check a node label (`cairn daemon --labels`, a job's `node-labels`): a
/// word (`has-data`) or `key=value` (`site=paris`), each part made of
/// letters, digits, `-`, `_` and `.`, starting with a letter or digit.
/// Labels match as whole strings: `site=paris` is not `site=lyon`.
///
/// # Errors
/// What is wrong with it.
pub fn check_node_label(label: &str) -> Result<(), String> {
    let ok = match label.split_once('=') {
        Some((key, value)) => is_node_word(key) && is_node_word(value),
        None => is_node_word(label),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{label}` is not a valid node label: write a word or `key=value`, each made of \
             letters, digits, `-`, `_` or `.` and starting with a letter or digit (e.g. \
             `has-data`, `site=paris`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_and_labels() {
        for good in ["a", "backup-1", "node_2.example"] {
            check_node_name(good).unwrap();
            check_node_label(good).unwrap();
        }
        for good in ["site=paris", "disk=ssd-1", "zone=eu.west"] {
            check_node_label(good).unwrap();
            assert!(check_node_name(good).is_err(), "{good}");
        }
        for bad in ["", "-a", "no spaces", "a/b", "é"] {
            assert!(check_node_name(bad).is_err(), "{bad}");
            assert!(check_node_label(bad).is_err(), "{bad}");
        }
        for bad in ["=x", "x=", "a=b=c", "site = paris"] {
            let err = check_node_label(bad).unwrap_err();
            assert!(err.contains("not a valid node label"), "{err}");
        }
    }
}
