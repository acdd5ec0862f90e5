//! The configuration's behaviour as users see it: what loads, what is
//! reported, and where.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::check::grant_program;
use super::*;
use crate::builtins;
use crate::model::{Access, Location, ModuleKind, SecretGrant};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cairn-config-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(std::fs::canonicalize(dir)?))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, "test.toml", Path::new("/srv/cairn")) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(err) => err.problems,
    }
}

/// The one problem whose location and message contain all of `needles`.
fn find<'a>(problems: &'a [Problem], needles: &[&str]) -> &'a Problem {
    problems
        .iter()
        .find(|p| {
            let text = p.to_string();
            needles.iter().all(|n| text.contains(n))
        })
        .unwrap_or_else(|| panic!("no problem with {needles:?} in {problems:#?}"))
}

#[test]
fn every_problem_in_the_file_is_reported_together() {
    let text = r#"
[jobs.search-index]
task = "builtin:command"
allow.http = ["http://127.0.0.1:9200", "ftp://backup.example.com"]

[jobs.db]
task = "builtin:command"
tiemout = "2h"

[jobs.web]
task = "builtin:command"
timeout = "5 fortnights"

[jobs.mystery]
task = "builtin:no-such-task"

[jobs.vault]
task = "builtin:command"
allow.readable-secrets = ["GOOD_NAME", "bad-name"]
"#;
    let err = parse(text, "cairn.toml", Path::new("/srv/cairn")).unwrap_err();
    let problems = &err.problems;
    assert_eq!(problems.len(), 5, "{problems:#?}");

    let origin = find(
        problems,
        &["job `search-index`, key `allow.http[1]`", "ftp"],
    );
    assert!(origin.location.contains("line 4"), "{origin}");
    let unknown = find(problems, &["job `db`", "unknown key `tiemout`"]);
    assert!(
        unknown.message.starts_with(
            "unknown key `tiemout`; did you mean `timeout`? (expected one of task, sha256"
        ),
        "{unknown}"
    );
    assert!(unknown.location.contains("line 8, column 1"), "{unknown}");
    find(
        problems,
        &["job `web`, key `timeout`", "unknown unit `fortnights`"],
    );
    let builtin = find(
        problems,
        &[
            "job `mystery`, key `task`",
            "no builtin task `no-such-task`",
        ],
    );
    assert!(builtin.message.contains("builtin tasks: ") && builtin.message.contains("command"));
    find(
        problems,
        &["job `vault`, key `allow.readable-secrets[1]`", "`bad-name`"],
    );

    // File order, and the summary counts them.
    let lines = problems
        .iter()
        .map(|p| line_column_of(&p.location))
        .collect::<Vec<_>>();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    assert!(
        err.to_string().starts_with("cairn.toml has 5 problems:"),
        "{err}"
    );
}

fn line_column_of(location: &str) -> usize {
    let rest = location.split("line ").nth(1).expect("location has a line");
    rest.split(',').next().unwrap().parse().unwrap()
}

#[test]
fn syntax_error_gives_line_and_column() {
    let problems = problems("[jobs.db]\ntask = \"builtin:command\"\ntimeout = = 3\n");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].location, "line 3, column 11");
}

#[test]
fn duplicate_keys_are_syntax_errors_naming_the_key() {
    let problems = problems("[jobs.db]\ntask = \"a\"\ntask = \"b\"\n");
    assert_eq!(problems[0].location, "line 3, column 1");
    assert!(
        problems[0].message.contains("duplicate key `task`"),
        "{problems:#?}"
    );
}

#[test]
fn unknown_top_level_key_is_rejected() {
    let problems = problems("[jbos.db]\ntask = \"builtin:command\"\n");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].location, "line 1, column 2");
    assert!(problems[0].message.contains("unknown key `jbos`"));
    assert!(problems[0].message.contains("did you mean `jobs`?"));
}

#[test]
fn unknown_keys_and_wrong_types_in_one_job_are_all_reported() {
    let problems = problems(
        r#"
[jobs.db]
task = "builtin:command"
memory = 5
timeout = "0s"
allow.htpp = ["http://x"]
allow.paths = { "/srv" = "write" }

[runtime]
cache_dir = "/tmp"
"#,
    );
    assert_eq!(problems.len(), 5, "{problems:#?}");
    find(
        problems.as_slice(),
        &["job `db`, key `memory`", "invalid type: integer `5`"],
    );
    find(&problems, &["job `db`, key `timeout`", "longer than zero"]);
    find(
        &problems,
        &[
            "job `db` (line 6",
            "unknown key `htpp` in `allow`",
            "did you mean `http`?",
        ],
    );
    find(
        &problems,
        &[
            "job `db`, key `allow.paths.\"/srv\"`",
            "unknown variant `write`",
        ],
    );
    find(
        &problems,
        &[
            "line 10, column 1",
            "unknown key `cache_dir` in `runtime`",
            "`cache-dir`?",
        ],
    );
}

#[test]
fn tables_written_as_other_types_are_reported() {
    let problems = problems(
        r#"
state = "cairn.db"

[[jobs.arr]]
task = "builtin:command"

[jobs.db]
task = "builtin:command"
allow = ["sh"]
"#,
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
    find(
        &problems,
        &["key `state` (line 2", "must be a table, not a string"],
    );
    find(
        &problems,
        &[
            "job `arr`",
            "write `[jobs.arr]` (one pair of brackets), not `[[jobs.arr]]`",
        ],
    );
    find(
        &problems,
        &["job `db`, key `allow`", "must be a table, not an array"],
    );
}

#[test]
fn missing_task_is_reported_on_the_job() {
    let problems = problems("[jobs.db]\nschedule = \"@daily\"\n");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].location, "job `db` (line 1, column 1)");
    assert_eq!(problems[0].message, "missing key `task`");
}

#[test]
fn defaults_are_applied() -> anyhow::Result<()> {
    let config = parse(
        "[jobs.db]\ntask = \"builtin:command\"\n",
        "test.toml",
        Path::new("/srv/cairn"),
    )?;
    assert_eq!(config.source, None);
    assert_eq!(config.base_dir, Path::new("/srv/cairn"));
    assert_eq!(config.state_path, Path::new("/srv/cairn/.cairn/state.db"));
    let expected_cache = crate::sys::default_cache_dir(
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
        Path::new("/srv/cairn"),
    );
    assert_eq!(config.cache_dir, expected_cache);
    assert!(config.repository.is_none());
    let job = config.job("db")?;
    assert_eq!(job.task, ModuleRef::builtin("command"));
    assert_eq!(job.limits, Limits::default());
    assert_eq!(job.grants, Grants::default());
    assert!(job.params.is_empty());
    assert_eq!(job.schedule, None);
    Ok(())
}

#[test]
fn relative_paths_resolve_against_the_config_directory() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let base = dir.0.join("etc");
    std::fs::create_dir_all(base.join("tasks"))?;
    std::fs::write(base.join("tasks/es.wasm"), b"\0asm")?;
    std::fs::create_dir_all(dir.0.join("data"))?;
    let text = r#"
[repository]
path = "../repo"
password-file = "repo.pass"

[state]
path = "state/cairn.db"

[runtime]
cache-dir = "./cache"

[secrets.ES_TOKEN]
file = "secrets/es"

[functions.snapshot]
module = "tasks/../tasks/es.wasm"
sha256 = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"

[jobs.es]
task = "./tasks/es.wasm"
allow.paths = { "../data" = "read-write", "missing/dir" = "read" }
allow.functions = ["snapshot", "http-request"]
"#;
    let config = parse(text, "cairn.toml", &base)?;
    let repository = config.repository.as_ref().expect("repository");
    assert_eq!(repository.location, Location::Local(dir.0.join("repo")));
    assert_eq!(
        repository.password,
        Some(SecretSource::File(base.join("repo.pass")))
    );
    assert_eq!(config.state_path, base.join("state/cairn.db"));
    assert_eq!(config.cache_dir, base.join("cache"));
    assert_eq!(
        config.secrets["ES_TOKEN"],
        SecretSource::File(base.join("secrets/es"))
    );

    let es_wasm = base.join("tasks/es.wasm");
    let ModuleRef::File { path, sha256 } = &config.functions["snapshot"] else {
        panic!("a file: {:?}", config.functions["snapshot"]);
    };
    assert_eq!(path, &es_wasm);
    let pin = sha256.expect("pinned");
    assert_eq!((pin[0], pin[1], pin[31]), (0x00, 0x11, 0xff));

    let job = config.job("es")?;
    assert_eq!(job.task, ModuleRef::file(es_wasm));
    let paths = job.grants.paths.iter().collect::<Vec<_>>();
    assert_eq!(
        paths,
        [
            (&base.join("missing/dir"), &Access::Read),
            (&dir.0.join("data"), &Access::ReadWrite),
        ]
        .into_iter()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(
        job.grants.functions,
        BTreeSet::from(["http-request".to_owned(), "snapshot".to_owned()])
    );
    Ok(())
}

#[test]
fn missing_module_file_names_the_resolved_path() {
    let problems = problems("[jobs.db]\ntask = \"tasks/db.wasm\"\n");
    let problem = find(
        &problems,
        &[
            "job `db`, key `task`",
            "file not found: /srv/cairn/tasks/db.wasm",
        ],
    );
    assert!(problem.message.contains("builtin:NAME"), "{problem}");
}

#[test]
fn a_task_and_a_function_may_share_a_builtin_name() -> anyhow::Result<()> {
    let config = parse(
        "[functions.run]\nmodule = \"builtin:command\"\n\n\
         [jobs.db]\ntask = \"builtin:command\"\nallow.functions = [\"command\", \"run\"]\n",
        "test.toml",
        Path::new("/srv/cairn"),
    )?;
    let job = config.job("db")?;
    let task = builtins::find_kind("command", ModuleKind::Task).unwrap();
    let function = builtins::find_kind("command", ModuleKind::Function).unwrap();
    assert_ne!(task.id, function.id);
    assert_eq!(job.task, task.module());
    assert_eq!(config.functions["run"], function.module());
    assert!(job.grants.functions.contains("command"));
    Ok(())
}

#[test]
fn builtins_of_the_wrong_kind_are_rejected() {
    let problems = problems(
        r#"
[functions.mine]
module = "builtin:directory"

[jobs.db]
task = "builtin:http-request"
allow.functions = ["directory", "mine", "nope"]
"#,
    );
    assert_eq!(problems.len(), 4, "{problems:#?}");
    find(
        &problems,
        &["function `mine`, key `module`", "is a task, not a function"],
    );
    find(
        &problems,
        &["job `db`, key `task`", "is a function, not a task"],
    );
    find(
        &problems,
        &[
            "job `db`, key `allow.functions[0]`",
            "builtin task, not a function",
        ],
    );
    find(
        &problems,
        &[
            "job `db`, key `allow.functions[2]`",
            "no function `nope`",
            "mine",
        ],
    );
}

#[test]
fn command_found_in_path_is_absolute_and_a_missing_one_is_only_a_warning() -> anyhow::Result<()> {
    let config = parse(
        r#"
[jobs.db]
task = "builtin:command"
allow.commands = ["sh", "cairn-no-such-program"]
"#,
        "test.toml",
        Path::new("/srv/cairn"),
    )?;
    let commands = &config.job("db")?.grants.programs;
    let sh = commands["sh"].path.as_ref().expect("sh is installed");
    assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
    assert_eq!(commands["cairn-no-such-program"].path, None);

    let warnings = warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0].location, "job `db`, key `allow.commands`");
    assert!(
        warnings[0]
            .message
            .contains("`cairn-no-such-program` is granted but not installed")
    );
    Ok(())
}

#[test]
fn programs_are_looked_up_only_in_absolute_path_directories() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let tool = dir.0.join("tool");
    std::fs::write(&tool, "#!/bin/sh\n")?;
    let search_path = std::env::join_paths([dir.0.as_path(), Path::new("relative")])?;
    assert_eq!(
        grant_program("tool", Some(&search_path))
            .map_err(anyhow::Error::msg)?
            .path,
        None,
        "not executable"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755))?;
        assert_eq!(
            grant_program("tool", Some(&search_path))
                .map_err(anyhow::Error::msg)?
                .path,
            Some(tool.clone())
        );
        assert_eq!(
            grant_program(&tool.to_string_lossy(), None)
                .map_err(anyhow::Error::msg)?
                .path,
            Some(tool.clone())
        );
    }
    Ok(())
}

#[test]
fn bad_command_grants_are_errors() {
    let problems = problems(
        r#"
[jobs.db]
task = "builtin:command"
allow.commands = ["bin/pg_dump", "/nonexistent/pg_dump", "pg_dump --verbose", "/"]
"#,
    );
    assert_eq!(problems.len(), 4, "{problems:#?}");
    find(&problems, &["allow.commands[0]", "relative path"]);
    find(
        &problems,
        &["allow.commands[1]", "/nonexistent/pg_dump does not exist"],
    );
    find(&problems, &["allow.commands[2]", "without arguments"]);
    find(&problems, &["allow.commands[3]", "not an executable file"]);
}

#[test]
fn secrets_are_bound_to_where_they_may_go() -> anyhow::Result<()> {
    let config = parse(
        r#"
[secrets.PGPASSWORD]
env = "DB_PASSWORD"

[jobs.db]
task = "builtin:command"
allow.http = ["http://127.0.0.1:9200"]
allow.commands = ["sh"]
allow.readable-secrets = ["API_KEY"]

[jobs.db.allow.secrets]
ES_TOKEN = { header = "Authorization", origins = ["http://127.0.0.1:9200"] }
PGPASSWORD = { env = "PGPASSWORD", programs = ["sh"], readable = true }
"#,
        "test.toml",
        Path::new("/srv/cairn"),
    )?;
    let grants = &config.job("db")?.grants;
    let es = &grants.secrets["ES_TOKEN"];
    assert_eq!(es.headers, BTreeSet::from(["authorization".to_owned()]));
    assert_eq!(es.origins[0].to_string(), "http://127.0.0.1:9200");
    assert!(!es.readable && es.env.is_empty());
    let pg = &grants.secrets["PGPASSWORD"];
    assert!(pg.readable && pg.allows_env("sh", "PGPASSWORD") && !pg.allows_env("sh", "X"));
    assert_eq!(grants.env_of("sh"), BTreeSet::from(["PGPASSWORD"]));
    assert_eq!(
        grants.secrets["API_KEY"],
        SecretGrant {
            readable: true,
            ..SecretGrant::default()
        }
    );
    assert_eq!(
        config.secrets["PGPASSWORD"],
        SecretSource::Env("DB_PASSWORD".into())
    );
    Ok(())
}

#[test]
fn a_secret_binding_must_name_granted_places() {
    let problems = problems(
        r#"
[jobs.db]
task = "builtin:command"
allow.http = ["http://127.0.0.1:9200"]
allow.commands = ["sh"]

[jobs.db.allow.secrets]
A = { header = "Authorization", origins = ["http://evil.example.com"] }
B = { env = "PGPASSWORD", programs = ["curl"] }
C = { header = "Host", origins = ["http://127.0.0.1:9200"] }
D = { env = "LD_PRELOAD", programs = ["sh"] }
E = { header = "Authorization" }
F = {}
"#,
    );
    find(
        &problems,
        &[
            "allow.secrets.A.origins[0]",
            "which `allow.http` does not grant",
        ],
    );
    find(
        &problems,
        &[
            "allow.secrets.B.programs[0]",
            "which `allow.commands` does not grant",
        ],
    );
    find(
        &problems,
        &["allow.secrets.C.header", "cannot carry a secret"],
    );
    find(
        &problems,
        &["allow.secrets.D.env", "never passed to a program"],
    );
    find(&problems, &["allow.secrets.E.header", "say which origins"]);
    find(&problems, &["allow.secrets.F", "binds the secret nowhere"]);
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

#[test]
fn a_list_of_secret_names_says_how_to_bind_them() {
    let problems =
        problems("[jobs.db]\ntask = \"builtin:command\"\nallow.secrets = [\"ES_PASSWORD\"]\n");
    let problem = find(&problems, &["job `db`", "no longer grants anything"]);
    assert!(problem.message.contains("origins"), "{problem}");
    assert!(problem.location.contains("line 3"), "{problem}");
}

#[test]
fn programs_may_declare_their_environment_and_argument_rules() -> anyhow::Result<()> {
    let config = parse(
        r#"
[jobs.files.allow.commands]
sh = { env = ["TZ", "PGHOST"], deny-args = ["--to-command*"], allow-args = ["-*"] }
"/bin/sh" = {}

[jobs.files]
task = "builtin:command"
"#,
        "test.toml",
        Path::new("/srv/cairn"),
    )?;
    let sh = &config.job("files")?.grants.programs["sh"];
    assert_eq!(
        sh.env,
        BTreeSet::from(["PGHOST".to_owned(), "TZ".to_owned()])
    );
    assert_eq!(sh.args.deny, vec!["--to-command*".to_owned()]);
    assert_eq!(sh.args.allow, Some(vec!["-*".to_owned()]));
    let problems = problems(
        r#"
[jobs.files]
task = "builtin:command"
allow.commands = { sh = { env = ["LD_PRELOAD", "BASH_FUNC_x%%", "9BAD"], deny-args = [""], shell = true } }
"#,
    );
    find(
        &problems,
        &["allow.commands.sh.env[0]", "never passed to a program"],
    );
    find(
        &problems,
        &[
            "allow.commands.sh.env[1]",
            "not an environment variable name",
        ],
    );
    find(
        &problems,
        &[
            "allow.commands.sh.env[2]",
            "not an environment variable name",
        ],
    );
    find(&problems, &["allow.commands.sh.deny-args[0]", "is empty"]);
    find(&problems, &["unknown key `shell`"]);
    Ok(())
}

#[test]
fn no_grant_reaches_the_hosts_private_files() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let base = dir.0.join("etc");
    std::fs::create_dir_all(base.join("data"))?;
    let text = format!(
        r#"
[runtime]
cache-dir = "{base}/cache"

[repository]
path = "{base}/repo"
password-file = "{base}/secrets/repo.pass"

[jobs.everything]
task = "builtin:command"
allow.paths = {{ "{base}" = "read" }}

[jobs.inside]
task = "builtin:command"
allow.paths = {{ "{base}/cache/sub" = "read-write" }}

[jobs.fine]
task = "builtin:command"
allow.paths = {{ "{base}/data" = "read-write" }}
"#,
        base = base.display()
    );
    std::fs::write(base.join("cairn.toml"), &text)?;
    let err = load(&base.join("cairn.toml")).unwrap_err();
    let problems = &err.problems;
    for what in [
        "compile cache (",
        "compile cache key",
        "state database",
        "configuration file",
        "repository (",
        "repository password file",
    ] {
        find(problems, &["job `everything`, key `allow.paths", what]);
    }
    find(problems, &["job `inside`", "lies inside the compile cache"]);
    assert!(
        problems.iter().all(|p| !p.location.contains("`fine`")),
        "{problems:#?}"
    );
    Ok(())
}

#[test]
fn tls_settings_are_checked_at_their_keys() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let base = &dir.0;
    std::fs::write(base.join("not-pem.txt"), "hello")?;
    let text = format!(
        r#"
[jobs.es]
task = "builtin:command"
allow.http = ["https://es:9200", "http://plain:80", "https://a:1", "https://b:2", "https://c:3", "https://d:4", "https://e:5"]

[jobs.es.tls."https://elsewhere:9200"]
ca-file = "ca.pem"

[jobs.es.tls."http://plain:80"]
insecure = true

[jobs.es.tls."https://es:9200"]
ca-file = "ca.pem"
insecure = true

[jobs.es.tls."https://a:1"]
client-cert = "client.pem"

[jobs.es.tls."https://b:2"]
ca-file = "{base}/missing.pem"

[jobs.es.tls."https://c:3"]
ca-file = "not-pem.txt"

[jobs.es.tls."https://d:4"]
ca-fingerprint = "sha256:abcd"

[jobs.es.tls."https://e:5"]

[jobs.es.tls."https://es:9200/"]
ca-path = "ca.pem"
"#,
        base = base.display()
    );
    std::fs::write(base.join("cairn.toml"), &text)?;
    let err = load(&base.join("cairn.toml")).unwrap_err();
    let problems = &err.problems;
    find(
        problems,
        &["elsewhere", "which `allow.http` does not grant"],
    );
    find(problems, &["http://plain:80", "not an https origin"]);
    find(
        problems,
        &["https://es:9200\"", "ca-file and insecure: choose one way"],
    );
    find(problems, &["client-cert", "needs `client-key` too"]);
    find(
        problems,
        &["ca-file", "cannot read the CA file", "missing.pem"],
    );
    find(problems, &["ca-file", "not-pem.txt holds no certificate"]);
    find(problems, &["ca-fingerprint", "64 hex digits"]);
    find(problems, &["https://e:5", "sets nothing"]);
    find(problems, &["ca-path"]);
    Ok(())
}

#[test]
fn a_tls_client_key_is_private() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let base = &dir.0;
    std::fs::create_dir_all(base.join("pki"))?;
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["cairn".to_owned()])?.self_signed(&key)?;
    std::fs::write(base.join("pki/client.pem"), cert.pem())?;
    std::fs::write(base.join("pki/client.key"), key.serialize_pem())?;
    let job = |paths: &str| {
        format!(
            r#"
[jobs.es]
task = "builtin:command"
allow.http = ["https://es:9200"]
allow.paths = {{ "{base}/{paths}" = "read" }}

[jobs.es.tls."https://es:9200"]
client-cert = "pki/client.pem"
client-key = "pki/client.key"
"#,
            base = base.display()
        )
    };
    std::fs::write(base.join("cairn.toml"), job("pki"))?;
    let err = load(&base.join("cairn.toml")).unwrap_err();
    find(
        &err.problems,
        &["allow.paths", "holds the TLS client key of job `es`"],
    );

    std::fs::create_dir_all(base.join("data"))?;
    std::fs::write(base.join("cairn.toml"), job("data"))?;
    let config = load(&base.join("cairn.toml"))?;
    let tls = &config.jobs["es"].grants.tls;
    assert_eq!(tls.len(), 1, "{tls:?}");
    assert_eq!(
        tls[0].client.as_ref().map(|c| c.key.clone()),
        Some(base.join("pki/client.key"))
    );
    assert!(warnings(&config).is_empty());
    Ok(())
}

#[test]
fn secret_sources_need_exactly_one_of_env_or_file() {
    let problems = problems(
        r#"
[secrets.BOTH]
env = "X"
file = "x"

[secrets.NEITHER]

[secrets.bad-name]
env = "X"
"#,
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
    find(&problems, &["secret `BOTH`", "not both"]);
    find(
        &problems,
        &[
            "secret `NEITHER`",
            "`env = \"VARIABLE\"` or `file = \"path\"`",
        ],
    );
    find(&problems, &["secret `bad-name`", "not a valid secret name"]);
}

#[test]
fn limits_parse_and_are_bounded() -> anyhow::Result<()> {
    let config = parse(
        r#"
[jobs.db]
task = "builtin:command"
timeout = "1h30m"
memory = "256MiB"
output-limit = "4MiB"
http-body-limit = "10MB"
"#,
        "test.toml",
        Path::new("/srv/cairn"),
    )?;
    let limits = &config.job("db")?.limits;
    assert_eq!(limits.timeout, Duration::from_secs(5400));
    assert_eq!(limits.memory, 256 << 20);
    assert_eq!(limits.output, 4 << 20);
    assert_eq!(limits.http_body, 10_000_000);

    let problems = problems(
        r#"
[jobs.small]
task = "builtin:command"
memory = "512KiB"

[jobs.big]
task = "builtin:command"
memory = "65GiB"
output-limit = "lots"
"#,
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
    find(
        &problems,
        &["job `small`, key `memory`", "below the minimum of 1 MiB"],
    );
    find(
        &problems,
        &["job `big`, key `memory`", "above the maximum of 64 GiB"],
    );
    find(&problems, &["job `big`, key `output-limit`", "`lots`"]);
    Ok(())
}

#[test]
fn sha256_pins_must_be_64_hex_digits() {
    let problems = problems("[jobs.db]\ntask = \"builtin:command\"\nsha256 = \"abc\"\n");
    find(
        &problems,
        &["job `db`, key `sha256` (line 3", "expected 64 hex digits"],
    );
}

#[test]
fn params_become_json_with_datetimes_as_strings() -> anyhow::Result<()> {
    let config = parse(
        r#"
[jobs.db]
task = "builtin:command"
schedule = "0 3 * * *"

[jobs.db.params]
database = "shop"
port = 5432
ratio = 0.5
verbose = true
since = 2024-05-01T03:00:00Z
tables = ["a", "b"]
nested = { depth = 2 }
"#,
        "test.toml",
        Path::new("/srv/cairn"),
    )?;
    let job = config.job("db")?;
    assert_eq!(job.schedule.as_deref(), Some("0 3 * * *"));
    let expected = serde_json::json!({
        "database": "shop",
        "port": 5432,
        "ratio": 0.5,
        "verbose": true,
        "since": "2024-05-01T03:00:00Z",
        "tables": ["a", "b"],
        "nested": { "depth": 2 },
    });
    assert_eq!(serde_json::Value::Object(job.params.clone()), expected);
    Ok(())
}

#[test]
fn job_names_must_start_with_a_letter_or_digit() {
    let problems = problems("[jobs.\"-db\"]\ntask = \"builtin:command\"\n");
    find(&problems, &["job `-db`", "not a valid job name"]);
}

#[test]
fn unknown_job_lookup_lists_the_jobs() -> anyhow::Result<()> {
    let config = parse(
        "[jobs.db]\ntask = \"builtin:command\"\n[jobs.web]\ntask = \"builtin:command\"\n",
        "test.toml",
        Path::new("/srv/cairn"),
    )?;
    let message = config.job("dv").unwrap_err().to_string();
    assert_eq!(
        message,
        "no job `dv` in the configuration (did you mean `db`?); jobs: db, web"
    );
    Ok(())
}

#[test]
fn load_reports_a_missing_file_and_suggests_dash_c() {
    let err = load(Path::new("/nonexistent/cairn.toml")).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.problems[0].location, "/nonexistent/cairn.toml");
    assert!(err.problems[0].message.contains("file not found"));
    assert!(err.problems[0].message.contains("`-c PATH`"));
}

#[test]
fn load_resolves_against_the_files_directory() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let file = dir.0.join("cairn.toml");
    std::fs::write(&file, "[repository]\npath = \"repo\"\n")?;
    let config = load(&file)?;
    assert_eq!(config.source.as_deref(), Some(file.as_path()));
    assert_eq!(config.base_dir, dir.0);
    assert_eq!(
        config.repository.as_ref().map(|r| r.location.clone()),
        Some(Location::Local(dir.0.join("repo")))
    );
    assert!(
        config
            .job("db")
            .unwrap_err()
            .to_string()
            .contains("defines no jobs")
    );
    Ok(())
}

#[test]
fn state_url_selects_postgres_with_a_password_from_a_secret() {
    let text = r#"
[state]
url = "postgres://cairn@db.internal:5432/cairn"
password-file = "secrets/pg"

[jobs.files]
task = "builtin:command"
params = { command = ["true"] }
node-labels = ["has-data", "site=paris"]
"#;
    let config = parse(text, "test.toml", Path::new("/srv/cairn")).unwrap();
    match config.state_location() {
        crate::model::StateLocation::Postgres(pg) => {
            assert_eq!(pg.url, "postgres://cairn@db.internal:5432/cairn");
            assert_eq!(
                pg.password,
                Some(SecretSource::File(PathBuf::from("/srv/cairn/secrets/pg")))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(config.jobs["files"].node_labels, ["has-data", "site=paris"]);
    // Without `url`, the SQLite file is the default.
    let config = parse("", "test.toml", Path::new("/srv/cairn")).unwrap();
    assert_eq!(
        config.state_location(),
        crate::model::StateLocation::Sqlite(PathBuf::from("/srv/cairn/.cairn/state.db"))
    );
}

#[test]
fn bad_state_urls_are_reported_at_their_key_without_the_password() {
    let found = problems(
        r#"
[state]
url = "postgres://cairn:hunter2@db:5432/cairn"
"#,
    );
    let p = find(&found, &["url", "holds a password", "password-env"]);
    assert!(!p.to_string().contains("hunter2"), "{p}");
    let found = problems(
        r#"
[state]
url = "postgres://cairn@db/cairn"
path = "state.db"
password-env = "PG"
password-file = "pg"

[jobs.x]
task = "builtin:command"
node-labels = ["no spaces", "site=", "ok=fine"]
"#,
    );
    find(&found, &["url", "and `path` are both set"]);
    find(
        &found,
        &["password-file", "and `password-env` are both set"],
    );
    find(
        &found,
        &[
            "node-labels",
            "`no spaces` is not a valid node label",
            "line 10",
        ],
    );
    find(
        &found,
        &["node-labels", "`site=` is not a valid node label"],
    );
    assert!(
        !found.iter().any(|p| p.to_string().contains("`ok=fine`")),
        "{found:#?}"
    );
}

#[test]
fn copy_destinations_must_be_named_repositories_with_a_location() -> anyhow::Result<()> {
    let found = problems(
        r#"
[repository]
path = "repo"
password-env = "PW"

[repositories.offsite]
url = "s3:http://127.0.0.1:3900/backups/cairn"
password-env = "PW"

[repositories.nowhere]
password-env = "PW"

[jobs.x]
task = "builtin:command"
copy-to = ["offsite", "elsewhere"]
"#,
    );
    find(&found, &["repositories.nowhere", "says nowhere"]);
    find(
        &found,
        &[
            "copy-to",
            "names `elsewhere`, not one of [repositories.*]: offsite",
        ],
    );
    assert!(
        !found.iter().any(|p| p.to_string().contains("`offsite`,")),
        "{found:#?}"
    );

    let config = parse(
        "[repositories.offsite]\nurl = \"rest:http://127.0.0.1:8000/cairn/\"\n\
         password-env = \"PW\"\n\n[jobs.x]\ntask = \"builtin:command\"\ncopy-to = [\"offsite\"]\n",
        "test.toml",
        Path::new("/srv/cairn"),
    )?;
    assert_eq!(config.jobs["x"].copy_to, ["offsite"]);
    assert_eq!(
        config.repositories["offsite"].location.to_string(),
        "rest:http://127.0.0.1:8000/cairn/"
    );
    Ok(())
}
