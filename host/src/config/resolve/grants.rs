//! What a job may do: its `allow` table (paths, programs, origins, secrets
//! and where each may go, functions), TLS per origin, limits and webhooks.

use super::*;

impl Checker<'_, '_> {
    /// Validate the job's `notify` webhooks against its HTTP grants.
    pub(super) fn webhooks(
        &mut self,
        job: &JobFile,
        webhook_origins: &[OriginPattern],
        at: &dyn Fn(&[&str]) -> Vec<Seg>,
    ) -> Vec<Webhook> {
        let mut webhooks = Vec::new();
        for (i, file) in job.notify.targets.iter().enumerate() {
            match check::webhook(file, webhook_origins) {
                Ok(webhook) => webhooks.push(webhook),
                Err(problems) => {
                    for (field, message) in problems {
                        let mut path = at(&["notify"]);
                        if job.notify.is_list {
                            path.push(Seg::Index(i));
                        }
                        path.extend(key_path_segs(&field));
                        self.report(&path, message);
                    }
                }
            }
        }
        webhooks
    }

    /// The job's `tls` table: each key an `https` origin its `allow.http`
    /// grants, each file readable and usable.
    pub(super) fn tls(
        &mut self,
        job: &JobFile,
        granted: &[OriginPattern],
        at: &dyn Fn(&[&str]) -> Vec<Seg>,
    ) -> Vec<TlsOrigin> {
        let mut out = Vec::new();
        for (origin_text, file) in &job.tls {
            let here = |field: Option<&str>| {
                let mut keys = vec!["tls", origin_text.as_str()];
                keys.extend(field);
                at(&keys)
            };
            let origin = match OriginPattern::parse(origin_text) {
                Ok(origin) if origin.scheme() != "https" => {
                    self.report(
                        &here(None),
                        format!("`{origin_text}` is not an https origin; TLS settings apply to `https://` origins"),
                    );
                    continue;
                }
                Ok(origin) if !granted.contains(&origin) => {
                    self.report(
                        &here(None),
                        format!(
                            "TLS settings for {origin}, which `allow.http` does not grant; \
                             grant it there (as written here) or remove these settings"
                        ),
                    );
                    continue;
                }
                Ok(origin) => origin,
                Err(message) => {
                    self.report(&here(None), message);
                    continue;
                }
            };
            let mut trusts = Vec::new();
            if let Some(path) = &file.ca_file {
                trusts.push(("ca-file", Some(ServerTrust::CaFile(self.resolve(path)))));
            }
            if let Some(text) = &file.ca_fingerprint {
                match tls::parse_fingerprint(text) {
                    Ok(pin) => trusts.push(("ca-fingerprint", Some(ServerTrust::Fingerprint(pin)))),
                    Err(message) => {
                        self.report(&here(Some("ca-fingerprint")), message);
                        trusts.push(("ca-fingerprint", None));
                    }
                }
            }
            if file.insecure {
                trusts.push(("insecure", Some(ServerTrust::Insecure)));
            }
            if trusts.len() > 1 {
                let names: Vec<&str> = trusts.iter().map(|(name, _)| *name).collect();
                self.report(
                    &here(None),
                    format!(
                        "sets {}: choose one way to verify the server",
                        names.join(" and ")
                    ),
                );
                continue;
            }
            let trust = match trusts.pop() {
                Some((_, None)) => continue,
                Some((_, Some(trust))) => Some(trust),
                None => None,
            };
            let client = match (&file.client_cert, &file.client_key) {
                (Some(cert), Some(key)) => Some(ClientIdentity {
                    cert: self.resolve(cert),
                    key: self.resolve(key),
                }),
                (None, None) => None,
                (Some(_), None) => {
                    self.report(
                        &here(Some("client-cert")),
                        "needs `client-key` too (the PEM file of its private key)",
                    );
                    continue;
                }
                (None, Some(_)) => {
                    self.report(
                        &here(Some("client-key")),
                        "needs `client-cert` too (the PEM file of the certificate)",
                    );
                    continue;
                }
            };
            if trust.is_none() && client.is_none() {
                self.report(
                    &here(None),
                    "sets nothing: give `ca-file`, `ca-fingerprint`, `client-cert` and \
                     `client-key`, or `insecure = true`",
                );
                continue;
            }
            let settings = TlsOrigin {
                origin,
                trust,
                client,
            };
            if let Err(e) = crate::capabilities::tls::check(&settings) {
                let field = match &e {
                    crate::capabilities::tls::TlsError::Read { what, .. }
                    | crate::capabilities::tls::TlsError::Pem { what, .. } => match *what {
                        "CA file" => Some("ca-file"),
                        "client certificate" => Some("client-cert"),
                        _ => Some("client-key"),
                    },
                    crate::capabilities::tls::TlsError::Config { .. } => None,
                };
                self.report(&here(field), e.to_string());
                continue;
            }
            out.push(settings);
        }
        out
    }

    pub(super) fn limits(&mut self, job: &JobFile, at: &dyn Fn(&[&str]) -> Vec<Seg>) -> Limits {
        let mut limits = Limits::default();
        if let Some(text) = &job.timeout {
            match parse_duration(text) {
                Ok(timeout) if timeout.is_zero() => {
                    self.report(&at(&["timeout"]), "must be longer than zero (e.g. `30m`)");
                }
                Ok(timeout) => limits.timeout = timeout,
                Err(message) => self.report(&at(&["timeout"]), message),
            }
        }
        if let Some(text) = &job.memory {
            match parse_size(text) {
                Ok(memory) if memory < MIN_MEMORY => self.report(
                    &at(&["memory"]),
                    format!(
                        "`{text}` is below the minimum of {} (e.g. `256MiB`)",
                        format_size(MIN_MEMORY)
                    ),
                ),
                Ok(memory) if memory > MAX_MEMORY => self.report(
                    &at(&["memory"]),
                    format!(
                        "`{text}` is above the maximum of {} (e.g. `4GiB`)",
                        format_size(MAX_MEMORY)
                    ),
                ),
                Ok(memory) => limits.memory = memory,
                Err(message) => self.report(&at(&["memory"]), message),
            }
        }
        for (field, text, slot) in [
            ("output-limit", &job.output_limit, &mut limits.output),
            (
                "http-body-limit",
                &job.http_body_limit,
                &mut limits.http_body,
            ),
            ("log-line-limit", &job.log_line_limit, &mut limits.log_line),
            ("log-limit", &job.log_limit, &mut limits.log_bytes),
            ("state-limit", &job.state_limit, &mut limits.state_bytes),
            ("result-limit", &job.result_limit, &mut limits.result),
        ] {
            if let Some(text) = text {
                match parse_size(text) {
                    Ok(0) => self.report(&at(&[field]), "must be more than zero bytes"),
                    Ok(bytes) => *slot = bytes,
                    Err(message) => self.report(&at(&[field]), message),
                }
            }
        }
        if limits.log_line < 80 {
            self.report(
                &at(&["log-line-limit"]),
                "must be at least 80 bytes, so that a cut line still says something",
            );
        }
        match job.state_keys {
            Some(0) => self.report(&at(&["state-keys"]), "must be at least 1"),
            Some(n) => limits.state_keys = n,
            None => {}
        }
        match job.open_streams {
            Some(0) => self.report(&at(&["open-streams"]), "must be at least 1"),
            Some(n) => limits.open_streams = n,
            None => {}
        }
        limits
    }

    pub(super) fn grants(
        &mut self,
        allow: &AllowFile,
        owner: &[Seg],
        custom_functions: &BTreeMap<String, FunctionFile>,
    ) -> Grants {
        let at = |field: &str, index: Option<usize>| {
            let mut path = owner.to_vec();
            path.push(key("allow"));
            path.push(key(field));
            if let Some(index) = index {
                path.push(Seg::Index(index));
            }
            path
        };
        let mut grants = Grants::default();

        for (i, origin) in allow.http.iter().enumerate() {
            match OriginPattern::parse(origin) {
                Ok(pattern) => grants.http.push(pattern),
                Err(message) => self.report(&at("http", Some(i)), message),
            }
        }

        let search_path = std::env::var_os("PATH");
        for (i, (command, rules)) in allow.commands.programs.iter().enumerate() {
            let here = if allow.commands.is_list {
                at("commands", Some(i))
            } else {
                let mut path = at("commands", None);
                path.push(key(command));
                path
            };
            let mut program = match grant_program(command, search_path.as_ref()) {
                Ok(program) => program,
                Err(message) => {
                    self.report(&here, message);
                    continue;
                }
            };
            for (j, var) in rules.env.iter().enumerate() {
                let mut path = here.clone();
                path.extend([key("env"), Seg::Index(j)]);
                match check_env_name(var) {
                    Ok(()) => {
                        program.env.insert(var.clone());
                    }
                    Err(message) => self.report(&path, message),
                }
            }
            for (field, patterns) in [
                ("deny-args", Some(&rules.deny_args)),
                ("allow-args", rules.allow_args.as_ref()),
            ] {
                for (j, pattern) in patterns.into_iter().flatten().enumerate() {
                    if pattern.is_empty() {
                        let mut path = here.clone();
                        path.extend([key(field), Seg::Index(j)]);
                        self.report(&path, "is empty: write a pattern such as `--to-command*`");
                    }
                }
            }
            program.args = ArgPolicy {
                deny: rules.deny_args.clone(),
                allow: rules.allow_args.clone(),
            };
            grants.programs.insert(command.clone(), program);
        }

        for (path, access) in &allow.paths {
            let resolved = self.resolve(path);
            let resolved = std::fs::canonicalize(&resolved).unwrap_or(resolved);
            if let Some(previous) = grants.paths.insert(resolved.clone(), *access) {
                if previous != *access {
                    let mut location = at("paths", None);
                    location.push(key(path.to_string_lossy()));
                    self.report(
                        &location,
                        format!(
                            "{} is granted twice, with different access; grant it once",
                            resolved.display()
                        ),
                    );
                }
            }
        }

        for (name, binding) in &allow.secrets.0 {
            let mut here = at("secrets", None);
            here.push(key(name));
            if let Err(message) = check_secret_name(name) {
                self.report(&here, message);
                continue;
            }
            let grant = self.secret_binding(&here, binding, &grants);
            grants.secrets.insert(name.clone(), grant);
        }
        for (i, name) in allow.readable_secrets.iter().enumerate() {
            match check_secret_name(name) {
                Ok(()) => grants.secrets.entry(name.clone()).or_default().readable = true,
                Err(message) => self.report(&at("readable-secrets", Some(i)), message),
            }
        }

        for (i, function) in allow.functions.iter().enumerate() {
            let builtin = builtins::find_kind(function, ModuleKind::Function)
                .or_else(|| builtins::find(function));
            let known = match builtin {
                Some(b) => b.kind == ModuleKind::Function,
                None => custom_functions.contains_key(function),
            };
            if known {
                grants.functions.insert(function.clone());
                continue;
            }
            let available = builtins::all()
                .iter()
                .filter(|b| b.kind == ModuleKind::Function)
                .map(|b| b.name)
                .chain(custom_functions.keys().map(String::as_str))
                .collect::<Vec<_>>();
            let available_list = if available.is_empty() {
                "there are no functions (define one in `[functions.NAME]`)".to_owned()
            } else {
                format!("functions: {}", available.join(", "))
            };
            let message = if builtin.is_some() {
                format!("`{function}` is a builtin task, not a function; {available_list}")
            } else {
                let hint = did_you_mean(function, available.iter().copied());
                format!("no function `{function}`{hint}; {available_list}")
            };
            self.report(&at("functions", Some(i)), message);
        }

        grants
    }

    /// Where secret binding `file` (at `here`) lets the host put the
    /// secret, checked against the job's HTTP and program grants.
    pub(super) fn secret_binding(
        &mut self,
        here: &[Seg],
        file: &SecretUseFile,
        grants: &Grants,
    ) -> SecretGrant {
        let at = |k: &str| {
            let mut path = here.to_vec();
            path.push(key(k));
            path
        };
        let mut grant = SecretGrant {
            readable: file.readable,
            ..SecretGrant::default()
        };
        let headers = file
            .header
            .as_ref()
            .map(OneOrMany::to_vec)
            .unwrap_or_default();
        for header in &headers {
            match check_header_name(header) {
                Ok(()) => {
                    grant.headers.insert(header.to_ascii_lowercase());
                }
                Err(message) => self.report(&at("header"), message),
            }
        }
        for (i, origin) in file.origins.iter().enumerate() {
            let mut path = at("origins");
            path.push(Seg::Index(i));
            match OriginPattern::parse(origin) {
                Ok(pattern) if grants.http.contains(&pattern) => grant.origins.push(pattern),
                Ok(pattern) => self.report(
                    &path,
                    format!(
                        "binds the secret to {pattern}, which `allow.http` does not grant; grant \
                         the origin too, or remove it here"
                    ),
                ),
                Err(message) => self.report(&path, message),
            }
        }
        match (headers.is_empty(), file.origins.is_empty()) {
            (false, true) => self.report(
                &at("header"),
                "say which origins may receive it: `origins = [\"https://host:port\"]`",
            ),
            (true, false) => self.report(
                &at("origins"),
                "say which header carries it: `header = \"Authorization\"`",
            ),
            _ => {}
        }
        let vars = file.env.as_ref().map(OneOrMany::to_vec).unwrap_or_default();
        for var in &vars {
            match check_env_name(var) {
                Ok(()) => {
                    grant.env.insert(var.clone());
                }
                Err(message) => self.report(&at("env"), message),
            }
        }
        for (i, program) in file.programs.iter().enumerate() {
            if grants.programs.contains_key(program) {
                grant.programs.insert(program.clone());
            } else {
                let mut path = at("programs");
                path.push(Seg::Index(i));
                self.report(
                    &path,
                    format!(
                        "binds the secret to program `{program}`, which `allow.commands` does not \
                         grant; grant the program too, or remove it here"
                    ),
                );
            }
        }
        match (vars.is_empty(), file.programs.is_empty()) {
            (false, true) => self.report(
                &at("env"),
                "say which programs may receive it: `programs = [\"pg_dump\"]`",
            ),
            (true, false) => self.report(
                &at("programs"),
                "say which environment variable carries it: `env = \"PGPASSWORD\"`",
            ),
            _ => {}
        }
        if headers.is_empty() && vars.is_empty() && !file.readable {
            self.report(
                here,
                "binds the secret nowhere: give `header` and `origins`, `env` and `programs`, or \
                 `readable = true`",
            );
        }
        grant
    }
}
