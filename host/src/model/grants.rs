//! Grants: what a job's modules may reach. Everything not granted is denied.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::origin::OriginPattern;

/// Access granted to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read only.
    Read,
    /// Read and write.
    ReadWrite,
}

impl Access {
    /// Whether this grant covers `need`.
    #[must_use]
    pub fn covers(self, need: Self) -> bool {
        need == Self::Read || self == Self::ReadWrite
    }

    /// `read` or `read-write`, as the config writes it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::ReadWrite => "read-write",
        }
    }
}

/// A program granted to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedProgram {
    /// As written in the grant.
    pub name: String,
    /// Absolute path found at load time, or `None` if it is not installed.
    pub path: Option<PathBuf>,
    /// Environment variables a module may set for it (besides those a
    /// secret binding names for it).
    pub env: BTreeSet<String>,
    /// Which arguments it may be given.
    pub args: ArgPolicy,
}

impl GrantedProgram {
    /// A grant of `name` at `path` with no environment and any arguments.
    #[must_use]
    pub fn new(name: &str, path: Option<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            path,
            env: BTreeSet::new(),
            args: ArgPolicy::default(),
        }
    }
}

/// Argument rules of a granted program; patterns are text with `*` for any
/// text (`--to-command*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgPolicy {
    /// An argument matching one of these is refused.
    pub deny: Vec<String>,
    /// When set, every argument must match one of these.
    pub allow: Option<Vec<String>>,
}

impl ArgPolicy {
    /// The first argument of `args` the policy refuses, with the pattern
    /// that refuses it (`None` for "matches no allowed pattern").
    #[must_use]
    pub fn refused<'a>(&self, args: &'a [String]) -> Option<(&'a str, Option<&str>)> {
        for arg in args {
            if let Some(p) = self.deny.iter().find(|p| glob_match(p, arg)) {
                return Some((arg, Some(p)));
            }
            if let Some(allow) = &self.allow
                && !allow.iter().any(|p| glob_match(p, arg))
            {
                return Some((arg, None));
            }
        }
        None
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any text.
#[must_use]
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// A secret granted to a job, and where it may go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretGrant {
    /// Whether the module may read the value itself (`secrets.get`).
    pub readable: bool,
    /// Environment variables it may be put in …
    pub env: BTreeSet<String>,
    /// … of these programs (granted names).
    pub programs: BTreeSet<String>,
    /// Request headers it may be put in (lower case) …
    pub headers: BTreeSet<String>,
    /// … of requests to these origins.
    pub origins: Vec<OriginPattern>,
}

impl SecretGrant {
    /// Whether the host may put it in variable `var` of `program`.
    #[must_use]
    pub fn allows_env(&self, program: &str, var: &str) -> bool {
        self.programs.contains(program) && self.env.contains(var)
    }

    /// Whether the host may put it in header `header` of a request to `url`.
    #[must_use]
    pub fn allows_header(&self, url: &url::Url, header: &str) -> bool {
        self.headers.contains(&header.to_ascii_lowercase())
            && self.origins.iter().any(|o| o.matches(url))
    }

    /// Where it may go, for messages: `header authorization of
    /// http://a:1, env PGPASSWORD of pg_dump`, or `nowhere`.
    #[must_use]
    pub fn destinations(&self) -> String {
        let mut out = Vec::new();
        if !self.headers.is_empty() {
            let headers: Vec<&str> = self.headers.iter().map(String::as_str).collect();
            let origins: Vec<String> = self.origins.iter().map(ToString::to_string).collect();
            out.push(format!(
                "header {} of {}",
                headers.join("/"),
                origins.join(", ")
            ));
        }
        if !self.env.is_empty() {
            let vars: Vec<&str> = self.env.iter().map(String::as_str).collect();
            let programs: Vec<&str> = self.programs.iter().map(String::as_str).collect();
            out.push(format!("env {} of {}", vars.join("/"), programs.join(", ")));
        }
        if out.is_empty() {
            "nowhere (it is only readable)".to_owned()
        } else {
            out.join("; ")
        }
    }
}

/// What a job may reach. Everything else is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// HTTP origins.
    pub http: Vec<OriginPattern>,
    /// How TLS is spoken to some of those origins (`[jobs.NAME.tls]`).
    pub tls: Vec<super::TlsOrigin>,
    /// Programs, by granted name.
    pub programs: BTreeMap<String, GrantedProgram>,
    /// Paths (absolute) and their access.
    pub paths: BTreeMap<PathBuf, Access>,
    /// Secrets, by name.
    pub secrets: BTreeMap<String, SecretGrant>,
    /// Functions a task may call.
    pub functions: BTreeSet<String>,
}

impl Grants {
    /// Whether the module may read secret `name` itself.
    #[must_use]
    pub fn may_read_secret(&self, name: &str) -> bool {
        self.secrets.get(name).is_some_and(|g| g.readable)
    }

    /// The environment variables a module may set for `program`: those the
    /// grant declares and those a secret binding names for it.
    #[must_use]
    pub fn env_of(&self, program: &str) -> BTreeSet<&str> {
        let mut vars: BTreeSet<&str> = self
            .programs
            .get(program)
            .map(|p| p.env.iter().map(String::as_str).collect())
            .unwrap_or_default();
        for grant in self.secrets.values() {
            if grant.programs.contains(program) {
                vars.extend(grant.env.iter().map(String::as_str));
            }
        }
        vars
    }
}

/// Why an environment variable is never passed to a program, or `None`:
/// names that change how a program, its loader or its interpreter behave,
/// or where it finds configuration and helper commands. The host sets
/// `PATH` and `LANG` itself.
#[must_use]
pub fn unsafe_env(name: &str) -> Option<&'static str> {
    const PREFIXES: &[(&str, &str)] = &[
        ("LD_", "it changes how the dynamic loader loads the program"),
        (
            "DYLD_",
            "it changes how the dynamic loader loads the program",
        ),
        ("BASH_FUNC_", "it defines shell functions"),
        ("MALLOC_", "it changes the C library's allocator"),
        (
            "GIT_",
            "it changes which commands and configuration git uses",
        ),
        ("PYTHON", "it changes how Python starts"),
        ("PERL", "it changes how Perl starts"),
        ("RUBY", "it changes how Ruby starts"),
        ("NODE_", "it changes how Node.js starts"),
        ("JAVA_", "it changes how the JVM starts"),
        ("_JAVA_", "it changes how the JVM starts"),
        ("JDK_", "it changes how the JVM starts"),
        ("LC_", "the host sets the locale"),
        ("XDG_", "it moves where programs read configuration"),
    ];
    const NAMES: &[(&str, &str)] = &[
        ("PATH", "the host sets it"),
        ("LANG", "the host sets it"),
        ("LANGUAGE", "the host sets the locale"),
        ("HOME", "programs read configuration (and commands) from it"),
        ("SHELL", "programs run it as a shell"),
        ("ENV", "shells run the file it names"),
        ("BASH_ENV", "shells run the file it names"),
        ("SHELLOPTS", "it changes how shells behave"),
        ("BASHOPTS", "it changes how shells behave"),
        ("PS4", "shells evaluate it"),
        ("PROMPT_COMMAND", "shells run it"),
        ("IFS", "it changes how shells split words"),
        ("CDPATH", "it changes how shells find directories"),
        ("GLOBIGNORE", "it changes how shells expand patterns"),
        ("GCONV_PATH", "it makes the C library load code"),
        ("GLIBC_TUNABLES", "it changes the C library's behaviour"),
        ("LOCPATH", "it makes the C library load locale files"),
        ("NLSPATH", "it makes the C library load message files"),
        ("HOSTALIASES", "it changes name resolution"),
        ("RES_OPTIONS", "it changes name resolution"),
        ("LOCALDOMAIN", "it changes name resolution"),
        ("TZDIR", "it makes the C library load zone files"),
        ("CLASSPATH", "it changes which code the JVM loads"),
        ("EDITOR", "programs run it"),
        ("VISUAL", "programs run it"),
        ("PAGER", "programs run it"),
        ("PSQL_PAGER", "psql runs it"),
        ("MANPAGER", "programs run it"),
        ("BROWSER", "programs run it"),
        ("SSH_ASKPASS", "programs run it"),
        ("SUDO_ASKPASS", "programs run it"),
        ("GIT_SSH_COMMAND", "git runs it"),
        ("PSQLRC", "psql runs the commands in the file it names"),
        ("MYSQL_HOME", "mysql and mariadb read configuration from it"),
        (
            "PGSERVICEFILE",
            "it moves where libpq reads connection settings",
        ),
        ("PGSYSCONFDIR", "it moves where libpq reads configuration"),
        (
            "TMPDIR",
            "the host does not let a module choose where programs write temporary files",
        ),
    ];
    let upper = name.to_ascii_uppercase();
    NAMES
        .iter()
        .find(|(n, _)| *n == upper)
        .or_else(|| PREFIXES.iter().find(|(p, _)| upper.starts_with(p)))
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns_match_any_text_at_their_stars() {
        assert!(glob_match("--to-command*", "--to-command=sh -c id"));
        assert!(!glob_match("--to-command*", "-v"));
        assert!(glob_match("*\\!*", "\\! rm -rf /"));
        assert!(glob_match("-I*", "-I"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxcyyb"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exactly"));
        let policy = ArgPolicy {
            deny: vec!["--to-command*".into()],
            allow: Some(vec!["-*".into(), "/srv/*".into()]),
        };
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(policy.refused(&args(&["-c", "/srv/data"])), None);
        assert_eq!(
            policy.refused(&args(&["-c", "--to-command=sh"])),
            Some(("--to-command=sh", Some("--to-command*")))
        );
        assert_eq!(policy.refused(&args(&["/etc"])), Some(("/etc", None)));
    }

    #[test]
    fn loader_and_shell_variables_are_never_passed() {
        for name in [
            "LD_PRELOAD",
            "ld_library_path",
            "BASH_FUNC_ls%%",
            "SHELLOPTS",
            "PS4",
            "PERL5OPT",
            "PYTHONPATH",
            "NODE_OPTIONS",
            "GCONV_PATH",
            "HOME",
            "PSQLRC",
        ] {
            assert!(unsafe_env(name).is_some(), "{name}");
        }
        for name in ["PGPASSWORD", "MYSQL_PWD", "PGHOST", "TZ", "AWS_REGION"] {
            assert_eq!(unsafe_env(name), None, "{name}");
        }
    }
}
