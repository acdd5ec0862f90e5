//! Where a secret value comes from, and the one place it is read.
//!
//! Secrets granted to jobs, the repository password and the daemon's API
//! token are all a [`SecretSource`]: an environment variable or a file.

use std::path::PathBuf;

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of the host process.
    Env(String),
    /// A file; a trailing newline is not part of the value.
    File(PathBuf),
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretReadError {
    /// The environment variable is not set (or not Unicode).
    #[error("environment variable `{0}` is not set")]
    Unset(String),
    /// The file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl SecretSource {
    /// The value: the variable's value, or the file's text without its
    /// trailing newline (`\n` or `\r\n`).
    ///
    /// # Errors
    /// An unset variable or an unreadable file.
    pub fn read(&self) -> Result<String, SecretReadError> {
        match self {
            Self::Env(var) => std::env::var(var).map_err(|_| SecretReadError::Unset(var.clone())),
            Self::File(path) => std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|source| SecretReadError::Unreadable {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_loses_its_trailing_newline_and_a_missing_one_names_itself() {
        let dir = std::env::temp_dir().join(format!("cairn-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\r\n").unwrap();
        assert_eq!(SecretSource::File(file.clone()).read().unwrap(), "s3cret");
        std::fs::remove_file(&file).unwrap();
        let err = SecretSource::File(file.clone()).read().unwrap_err();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        let err = SecretSource::Env("CAIRN_TEST_SURELY_UNSET_VARIABLE".into())
            .read()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable `CAIRN_TEST_SURELY_UNSET_VARIABLE` is not set"
        );
        let _ = std::fs::remove_dir(&dir);
    }
}
