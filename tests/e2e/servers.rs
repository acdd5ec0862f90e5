//! Real repository servers for the backend tests, started once per test
//! binary on loopback ports and killed when it exits:
//!
//! - S3: garage 2.5.0, single node, sqlite metadata (`.ci/run` installs it
//!   into `~/.cache/cairn-tools/garage`; `CAIRN_GARAGE` names another binary);
//! - REST: Debian's `rclone serve restic`.
//!
//! A missing tool fails the test that needs it, saying how to install it.
//! Each test gets its own bucket prefix or REST path, so tests share the
//! servers without seeing each other's repositories.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The bucket every S3 test uses (under its own prefix).
pub const BUCKET: &str = "cairn-tests";
/// The environment variables the S3 credentials are in (what the configs name).
pub const S3_KEY_ENV: &str = "CAIRN_TEST_S3_KEY_ID";
pub const S3_SECRET_ENV: &str = "CAIRN_TEST_S3_SECRET";
/// garage's region.
pub const S3_REGION: &str = "garage";

/// A free loopback port (bound and released; the server binds it next).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Wait until `addr` accepts a connection.
fn wait_for_port(
    addr: SocketAddr,
    child: &mut Child,
    what: &str,
    log: &Path,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited ({status}) before listening on {addr}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on {addr} within 60 s")
}

/// Start `command` from a thread that lives as long as the test binary,
/// with SIGKILL as its parent-death signal: the server dies with the tests.
fn spawn_for_life(mut command: Command) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: prctl in the child before exec; no allocation.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let _ = tx.send(command.spawn());
        loop {
            std::thread::park();
        }
    });
    Ok(rx.recv()??)
}

fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("cairn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The running garage.
pub struct Garage {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Access key id and secret.
    pub key_id: String,
    pub secret: String,
    bin: PathBuf,
    config: PathBuf,
    _child: Child,
}

/// The garage binary: `CAIRN_GARAGE`, the cached install, or `PATH`.
pub fn garage_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CAIRN_GARAGE") {
        return Ok(PathBuf::from(path));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cached = Path::new(&home).join(".cache/cairn-tools/garage/bin/garage");
        if cached.is_file() {
            return Ok(cached);
        }
    }
    if Command::new("garage").arg("--version").output().is_ok() {
        return Ok(PathBuf::from("garage"));
    }
    bail!(
        "garage (the S3 server of the S3 backend tests) is not installed: run .ci/run, or \
         `cargo install garage --version 2.5.0 --locked --root ~/.cache/cairn-tools/garage` \
         (about 12 minutes), or set CAIRN_GARAGE"
    )
}

impl Garage {
    fn start() -> anyhow::Result<Self> {
        let bin = garage_binary()?;
        let dir = scratch("garage")?;
        let (rpc, s3) = (free_port()?, free_port()?);
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("{e}"))?;
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = {meta:?}\ndata_dir = {data:?}\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
                 [s3_api]\ns3_region = \"{S3_REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                meta = dir.join("meta").display().to_string(),
                data = dir.join("data").display().to_string(),
                secret = hex::encode(secret),
            ),
        )?;
        let log = dir.join("server.log");
        let mut command = Command::new(&bin);
        command
            .arg("-c")
            .arg(&config)
            .arg("server")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.join("server.err"))?);
        let mut child = spawn_for_life(command)?;
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], s3)),
            &mut child,
            "garage",
            &log,
        )?;
        let cli = |args: &[&str]| -> anyhow::Result<String> {
            let out = Command::new(&bin)
                .arg("-c")
                .arg(&config)
                .args(args)
                .output()?;
            if !out.status.success() {
                bail!(
                    "garage {args:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        // The node answers its CLI once its RPC is up.
        let deadline = Instant::now() + Duration::from_secs(60);
        let node = loop {
            if let Ok(status) = cli(&["status"])
                && let Some(id) = status
                    .lines()
                    .find(|l| l.contains("NO ROLE ASSIGNED"))
                    .and_then(|l| l.split_whitespace().next())
            {
                break id.to_owned();
            }
            if Instant::now() > deadline {
                bail!(
                    "garage's node did not come up: {}",
                    cli(&["status"]).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        cli(&["layout", "assign", "-z", "dc1", "-c", "10G", &node])?;
        cli(&["layout", "apply", "--version", "1"])?;
        cli(&["bucket", "create", BUCKET])?;
        let key = cli(&["key", "create", "cairn-tests"])?;
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .with_context(|| format!("no `{name}` in garage's key output: {key}"))
        };
        let key_id = field("Key ID:")?;
        let secret = field("Secret key:")?;
        cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            BUCKET,
            "--key",
            "cairn-tests",
        ])?;
        // SAFETY: set once, before any test reads them, to the same values.
        unsafe {
            std::env::set_var(S3_KEY_ENV, &key_id);
            std::env::set_var(S3_SECRET_ENV, &secret);
        }
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{s3}"),
            key_id,
            secret,
            bin,
            config,
            _child: child,
        })
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("garage {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A key that may only read the test bucket: (key id, secret).
///
/// # Errors
/// When garage refuses to make it.
pub fn read_only_key() -> anyhow::Result<(String, String)> {
    static KEY: OnceLock<Result<(String, String), String>> = OnceLock::new();
    KEY.get_or_init(|| {
        let g = garage();
        (|| -> anyhow::Result<(String, String)> {
            let key = g.cli(&["key", "create", "cairn-tests-ro"])?;
            let field = |name: &str| {
                key.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
                    .with_context(|| format!("no `{name}` in garage's key output: {key}"))
            };
            let pair = (field("Key ID:")?, field("Secret key:")?);
            g.cli(&[
                "bucket",
                "allow",
                "--read",
                BUCKET,
                "--key",
                "cairn-tests-ro",
            ])?;
            Ok(pair)
        })()
        .map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

/// The shared garage, started on first use.
///
/// # Panics
/// When it cannot be started (the message says why and how to install it).
pub fn garage() -> &'static Garage {
    static GARAGE: OnceLock<Result<Garage, String>> = OnceLock::new();
    match GARAGE.get_or_init(|| Garage::start().map_err(|e| format!("{e:#}"))) {
        Ok(g) => g,
        Err(e) => panic!("cannot start garage: {e}"),
    }
}

/// The running `rclone serve restic`.
pub struct Rclone {
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    _child: Child,
}

impl Rclone {
    fn start() -> anyhow::Result<Self> {
        if Command::new("rclone").arg("version").output().is_err() {
            bail!(
                "rclone (the REST server of the REST backend tests) is not installed: \
                 `apt-get install rclone` (.ci/run does)"
            );
        }
        let dir = scratch("rclone")?;
        let port = free_port()?;
        let log = dir.join("rclone.log");
        let mut command = Command::new("rclone");
        command
            .args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")])
            .arg(dir.join("repos"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let mut child = spawn_for_life(command)?;
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            &mut child,
            "rclone",
            &log,
        )?;
        Ok(Self {
            url: format!("http://127.0.0.1:{port}/"),
            _child: child,
        })
    }
}

/// The shared REST server, started on first use.
///
/// # Panics
/// When it cannot be started.
pub fn rclone() -> &'static Rclone {
    static RCLONE: OnceLock<Result<Rclone, String>> = OnceLock::new();
    match RCLONE.get_or_init(|| Rclone::start().map_err(|e| format!("{e:#}"))) {
        Ok(r) => r,
        Err(e) => panic!("cannot start rclone: {e}"),
    }
}

/// A name no other test of this binary uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The three places a repository can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
    Rest,
}

impl Backend {
    /// A fresh, unused repository URL of this backend (`dir` holds a local one).
    pub fn fresh_url(self, dir: &Path) -> String {
        match self {
            Self::Local => dir.join(unique("repo")).display().to_string(),
            Self::S3 => format!("s3:{}/{BUCKET}/{}", garage().endpoint, unique("repo")),
            Self::Rest => format!("rest:{}{}/", rclone().url, unique("repo")),
        }
    }

    /// The `[repository]` lines of a config for `url` (password from `password_env`).
    pub fn config(self, url: &str, password_env: &str) -> String {
        let mut out = format!("[repository]\nurl = {url:?}\npassword-env = {password_env:?}\n");
        if self == Self::S3 {
            out.push_str(&format!(
                "\n[repository.s3]\nregion = {S3_REGION:?}\naccess-key-id-env = {S3_KEY_ENV:?}\n\
                 secret-access-key-env = {S3_SECRET_ENV:?}\n"
            ));
        }
        out
    }

    /// The location for the library API.
    pub fn location(self, url: &str) -> cairn::model::Location {
        use cairn::model::{Location, ParsedLocation, RestLocation, S3Location, SecretSource};
        match cairn::model::parse_location(url).expect("a test URL parses") {
            ParsedLocation::Local(path) => Location::Local(path),
            ParsedLocation::S3 {
                endpoint,
                bucket,
                prefix,
            } => Location::S3(S3Location {
                endpoint,
                bucket,
                prefix,
                region: S3_REGION.into(),
                access_key_id: SecretSource::Env(S3_KEY_ENV.into()),
                secret_access_key: SecretSource::Env(S3_SECRET_ENV.into()),
            }),
            ParsedLocation::Rest { url, .. } => Location::Rest(RestLocation {
                url,
                credentials: None,
            }),
        }
    }

    /// What `restic -r` and its environment need for `url`.
    pub fn restic(self, url: &str, password: &str) -> Command {
        let mut command = Command::new("restic");
        command
            .arg("--no-cache")
            .arg("-r")
            .arg(url)
            .env("RESTIC_PASSWORD", password);
        if self == Self::S3 {
            let g = garage();
            command
                .env("AWS_ACCESS_KEY_ID", &g.key_id)
                .env("AWS_SECRET_ACCESS_KEY", &g.secret)
                .env("AWS_DEFAULT_REGION", S3_REGION);
        }
        command
    }
}
