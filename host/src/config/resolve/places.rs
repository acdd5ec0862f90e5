//! Where things are kept and where secrets come from: `[state]`,
//! `[repository]`/`[repositories.*]` (locations, passwords, S3 and REST
//! credentials), `[secrets]`, and the host's private files no grant may reach.

use super::*;

impl Checker<'_, '_> {
    /// `[state] url` and its password: a PostgreSQL database instead of the
    /// SQLite file.
    pub(super) fn state_postgres(
        &mut self,
        file: &crate::config::file::StateFile,
    ) -> Option<crate::model::PostgresState> {
        let at = |k: &str| [key("state"), key(k)];
        let password = match (&file.password_env, &file.password_file) {
            (Some(_), Some(_)) => {
                self.report(
                    &at("password-file"),
                    "and `password-env` are both set: give one",
                );
                None
            }
            (Some(var), None) => Some(SecretSource::Env(var.clone())),
            (None, Some(path)) => Some(SecretSource::File(self.resolve(path))),
            (None, None) => None,
        };
        let Some(url) = &file.url else {
            if password.is_some() {
                self.report(
                    &at("url"),
                    "is not set, but a password is: the password is for `url = \"postgres://…\"`",
                );
            }
            return None;
        };
        if file.path.is_some() {
            self.report(
                &at("url"),
                "and `path` are both set: `path` is a SQLite file, `url` a PostgreSQL \
                 database; give one",
            );
            return None;
        }
        if let Err(message) = crate::state::postgres::check_url(url) {
            self.report(&at("url"), message);
            return None;
        }
        Some(crate::model::PostgresState {
            url: url.clone(),
            password,
        })
    }

    /// `[repository]`: where it is (exactly one of `path` and `url`), its
    /// password, and the credentials of a remote one.
    pub(super) fn repository(
        &mut self,
        base: &[Seg],
        file: RepositoryFile,
    ) -> Option<RepositorySettings> {
        let at = |keys: &[&str]| {
            let mut path = base.to_vec();
            path.extend(keys.iter().map(|k| key(*k)));
            path
        };
        let password = self.secret_pair(
            file.password_env,
            file.password_file,
            &at(&["password-file"]),
            "password-env",
        );
        let parsed = match (&file.path, &file.url) {
            (Some(path), None) => ParsedLocation::Local(path.clone()),
            (None, Some(url)) => match parse_location(url) {
                Ok(parsed) => parsed,
                Err(message) => {
                    self.report(&at(&["url"]), message);
                    return None;
                }
            },
            (Some(_), Some(_)) => {
                self.report(
                    &at(&[]),
                    "sets both `path` and `url`: give one (`url` also takes a local path)",
                );
                return None;
            }
            (None, None) => {
                self.report(
                    &at(&[]),
                    "says nowhere: set `path = \"/var/backups/cairn\"` or \
                     `url = \"s3:http://host:port/bucket/prefix\"`",
                );
                return None;
            }
        };
        let is_s3 = matches!(parsed, ParsedLocation::S3 { .. });
        let is_rest = matches!(parsed, ParsedLocation::Rest { .. });
        if file.s3.is_some() && !is_s3 {
            self.report(&at(&["s3"]), "is for `s3:` repositories; this one is not");
        }
        if file.rest.is_some() && !is_rest {
            self.report(
                &at(&["rest"]),
                "is for `rest:` repositories; this one is not",
            );
        }
        let location = match parsed {
            ParsedLocation::Local(path) => Location::Local(self.resolve(&path)),
            ParsedLocation::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                let s3 = file.s3.unwrap_or_default();
                let access_key_id = self
                    .secret_pair(
                        s3.access_key_id_env,
                        s3.access_key_id_file,
                        &at(&["s3", "access-key-id-file"]),
                        "access-key-id-env",
                    )
                    .unwrap_or_else(|| SecretSource::Env("AWS_ACCESS_KEY_ID".into()));
                let secret_access_key = self
                    .secret_pair(
                        s3.secret_access_key_env,
                        s3.secret_access_key_file,
                        &at(&["s3", "secret-access-key-file"]),
                        "secret-access-key-env",
                    )
                    .unwrap_or_else(|| SecretSource::Env("AWS_SECRET_ACCESS_KEY".into()));
                Location::S3(S3Location {
                    endpoint,
                    bucket,
                    prefix,
                    region: s3.region.unwrap_or_else(|| "us-east-1".into()),
                    access_key_id,
                    secret_access_key,
                })
            }
            ParsedLocation::Rest { url, user } => {
                let rest = file.rest.unwrap_or_default();
                let password = self.secret_pair(
                    rest.password_env,
                    rest.password_file,
                    &at(&["rest", "password-file"]),
                    "password-env",
                );
                let user = match (rest.username, user) {
                    (Some(a), Some(b)) if a != b => {
                        self.report(
                            &at(&["rest", "username"]),
                            format!("is `{a}`, but the URL says `{b}`: give it once"),
                        );
                        None
                    }
                    (a, b) => a.or(b),
                };
                let credentials = match (user, password) {
                    (Some(user), Some(password)) => Some((user, password)),
                    (None, None) => None,
                    (Some(_), None) => {
                        self.report(
                            &at(&["rest"]),
                            "names a user but no password: set `password-env` or `password-file`",
                        );
                        None
                    }
                    (None, Some(_)) => {
                        self.report(&at(&["rest"]), "has a password but no `username`");
                        None
                    }
                };
                Location::Rest(RestLocation { url, credentials })
            }
        };
        Some(RepositorySettings { location, password })
    }

    /// A secret given as `NAME-env` or `NAME-file` (at most one).
    pub(super) fn secret_pair(
        &mut self,
        env: Option<String>,
        file: Option<PathBuf>,
        file_key: &[Seg],
        env_key: &str,
    ) -> Option<SecretSource> {
        match (env, file) {
            (Some(_), Some(_)) => {
                self.report(file_key, format!("and `{env_key}` are both set: give one"));
                None
            }
            (Some(var), None) => Some(SecretSource::Env(var)),
            (None, Some(path)) => Some(SecretSource::File(self.resolve(&path))),
            (None, None) => None,
        }
    }

    pub(super) fn secret_source(&mut self, name: &str, source: SecretFile) -> Option<SecretSource> {
        let path = [key("secrets"), key(name)];
        if let Err(message) = check_secret_name(name) {
            self.report(&path, message);
        }
        match (&source.env, &source.file) {
            (Some(_), Some(_)) => {
                self.report(
                    &path,
                    "set either `env` or `file`, not both (e.g. `env = \"PGPASSWORD\"`)",
                );
                None
            }
            (None, None) => {
                self.report(
                    &path,
                    "say where the value comes from: `env = \"VARIABLE\"` or `file = \"path\"`",
                );
                None
            }
            (Some(env), None) => {
                if env.is_empty() || env.contains('=') || env.contains('\0') {
                    self.report(
                        &[key("secrets"), key(name), key("env")],
                        format!("`{env}` is not an environment variable name (e.g. `PGPASSWORD`)"),
                    );
                }
                Some(SecretSource::Env(env.clone()))
            }
            (None, Some(file)) => Some(SecretSource::File(self.resolve(file))),
        }
    }

    /// Report every path grant that reaches one of the host's private files
    /// (compile cache and its key, state database, repository, this file,
    /// secret, password and token files), or lies inside one.
    pub(in crate::config) fn private_paths(&mut self, config: &Config) {
        let mut private: Vec<(String, PathBuf)> = vec![
            ("compile cache".into(), config.cache_dir.clone()),
            (
                "compile cache key".into(),
                sys::cache_key_path(&config.cache_dir),
            ),
            ("state database".into(), config.state_path.clone()),
        ];
        if let Some(source) = &config.source {
            private.push(("configuration file".into(), source.clone()));
        }
        let named = config
            .repositories
            .iter()
            .map(|(n, r)| (format!("repository `{n}`"), r));
        for (label, repository) in config
            .repository
            .iter()
            .map(|r| ("repository".to_owned(), r))
            .chain(named)
        {
            if let Location::Local(path) = &repository.location {
                private.push((label.clone(), path.clone()));
            }
            let mut secrets = vec![("password file", repository.password.as_ref())];
            match &repository.location {
                Location::S3(s3) => {
                    secrets.push(("S3 access key id file", Some(&s3.access_key_id)));
                    secrets.push(("S3 secret access key file", Some(&s3.secret_access_key)));
                }
                Location::Rest(rest) => {
                    secrets.push((
                        "REST password file",
                        rest.credentials.as_ref().map(|c| &c.1),
                    ));
                }
                Location::Local(_) => {}
            }
            for (what, source) in secrets {
                if let Some(SecretSource::File(file)) = source {
                    private.push((format!("{label} {what}"), file.clone()));
                }
            }
        }
        if let Some(SecretSource::File(file)) = &config.daemon.token {
            private.push(("API token file".into(), file.clone()));
        }
        for job in config.jobs.values() {
            for settings in &job.grants.tls {
                if let Some(identity) = &settings.client {
                    private.push((
                        format!("TLS client key of job `{}`", job.name),
                        identity.key.clone(),
                    ));
                }
            }
        }
        for (name, source) in &config.secrets {
            if let SecretSource::File(file) = source {
                private.push((format!("file of secret `{name}`"), file.clone()));
            }
        }
        let private: Vec<(String, PathBuf)> = private
            .into_iter()
            .map(|(what, path)| (what, sys::canonical_lossy(&path)))
            .collect();
        for job in config.jobs.values() {
            for granted in job.grants.paths.keys() {
                for (what, path) in &private {
                    let message = if path.starts_with(granted) {
                        format!(
                            "grants {}, which holds the {what} ({}): a module could read or \
                             change it; grant a narrower directory, or keep the {what} elsewhere",
                            granted.display(),
                            path.display()
                        )
                    } else if granted.starts_with(path) {
                        format!(
                            "grants {}, which lies inside the {what} ({}); grant a directory \
                             outside it",
                            granted.display(),
                            path.display()
                        )
                    } else {
                        continue;
                    };
                    let written = self.granted_as_written(&job.name, granted);
                    let mut at = vec![key("jobs"), key(&job.name), key("allow"), key("paths")];
                    if let Some(written) = written {
                        at.push(key(written));
                    }
                    self.report(&at, message);
                }
            }
        }
    }

    /// The key of `allow.paths` in job `job` that resolved to `granted`.
    pub(super) fn granted_as_written(&self, job: &str, granted: &Path) -> Option<String> {
        let jobs = self.document.get("jobs")?.get_ref().as_table()?;
        let job = jobs.get(job)?.get_ref().as_table()?;
        let paths = job
            .get("allow")?
            .get_ref()
            .as_table()?
            .get("paths")?
            .get_ref()
            .as_table()?;
        paths
            .iter()
            .map(|(k, _)| k.get_ref().to_string())
            .find(|k| {
                let resolved = self.resolve(Path::new(k));
                sys::canonical_lossy(&resolved) == granted
            })
    }
}
