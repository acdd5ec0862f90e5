//! Child processes started for a module, and the whole tree each one grows.
//!
//! Every command runs in its own process group and, where the host can make
//! one, its own cgroup (v2): killing the cgroup (`cgroup.kill`) kills every
//! descendant, including one that left the process group with `setsid` or
//! double-forked. Where no cgroup can be made (no cgroup2 mount, no
//! permission), the host makes itself a child subreaper, marks each command
//! with an environment variable, and kills the process group plus every
//! process that carries the command's mark; a descendant that drops its
//! environment and leaves its session then escapes (see SECURITY.md).
//!
//! The working directory is set with `fchdir` on a handle the host opened
//! beneath the grant (see [`super::fs`]), in the child before `exec`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The environment variable that marks a command's processes (subreaper mode).
pub const MARK: &str = "CAIRN_COMMAND";

/// How commands' trees are kept.
#[derive(Debug)]
enum Mode {
    /// A cgroup per command, under this directory (ours).
    Cgroup(PathBuf),
    /// The host is a child subreaper; trees are found by their mark.
    Subreaper,
}

/// The mode of this process, found once: `CAIRN_CONTAINMENT=subreaper`
/// forces the fallback (for tests).
fn mode() -> &'static Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    MODE.get_or_init(|| {
        let forced = std::env::var("CAIRN_CONTAINMENT").is_ok_and(|v| v == "subreaper");
        match (forced, own_cgroup()) {
            (false, Some(dir)) if probe(&dir) => {
                tracing::debug!("commands run in cgroups under {}", dir.display());
                Mode::Cgroup(dir)
            }
            _ => {
                // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers.
                let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
                if rc != 0 {
                    tracing::warn!(
                        "cannot become a child subreaper ({}); escaped descendants of commands may survive",
                        std::io::Error::last_os_error()
                    );
                }
                tracing::debug!("commands are contained by process group and subreaper");
                Mode::Subreaper
            }
        }
    })
}

/// Whether commands' trees are kept in cgroups (else by subreaper).
#[must_use]
pub fn uses_cgroups() -> bool {
    matches!(mode(), Mode::Cgroup(_))
}

/// The directory of this process's cgroup v2, if cgroup2 is mounted.
fn own_cgroup() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in mountinfo.lines() {
        let (fields, fs) = line.split_once(" - ")?;
        if !fs.starts_with("cgroup2 ") {
            continue;
        }
        let fields: Vec<&str> = fields.split(' ').collect();
        let (root, mount) = (fields.get(3)?, fields.get(4)?);
        let relative = path
            .strip_prefix(root)
            .unwrap_or(path)
            .trim_start_matches('/');
        return Some(PathBuf::from(mount).join(relative));
    }
    None
}

/// Whether a child cgroup can be made (and removed) under `dir`.
fn probe(dir: &std::path::Path) -> bool {
    let probe = dir.join(format!("cairn-{}-probe", std::process::id()));
    let made = std::fs::create_dir(&probe).is_ok() && probe.join("cgroup.procs").exists();
    let _ = std::fs::remove_dir(&probe);
    made
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The tree of one command: kills it all when told to or when dropped.
#[derive(Debug)]
pub struct Tree {
    id: String,
    cgroup: Option<PathBuf>,
    pgid: Option<i32>,
    done: bool,
}

impl Tree {
    /// Contain `cmd` (about to be spawned): its own process group, its own
    /// cgroup or mark, and `cwd` as its working directory when given.
    ///
    /// # Errors
    /// When the cgroup cannot be made.
    pub fn contain(
        cmd: &mut tokio::process::Command,
        cwd: Option<OwnedFd>,
    ) -> std::io::Result<Self> {
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        cmd.process_group(0).kill_on_drop(true);
        let mut tree = Self {
            id: id.clone(),
            cgroup: None,
            pgid: None,
            done: false,
        };
        let procs = match mode() {
            Mode::Cgroup(base) => {
                let dir = base.join(format!("cairn-{id}"));
                std::fs::create_dir(&dir)?;
                tree.cgroup = Some(dir.clone());
                Some(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(dir.join("cgroup.procs"))?,
                )
            }
            Mode::Subreaper => {
                cmd.env(MARK, &id);
                None
            }
        };
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls async-signal-safe functions (write, fchdir) on file
        // descriptors opened before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(procs) = &procs {
                    // Joining writes "0": this process.
                    if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(dir) = &cwd
                    && libc::fchdir(dir.as_raw_fd()) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(tree)
    }

    /// The child started as process `pid` (leader of its group).
    pub fn started(&mut self, pid: Option<u32>) {
        self.pgid = pid.and_then(|p| i32::try_from(p).ok());
    }

    /// Kill the whole tree now (also when the command finished: stragglers
    /// go too).
    pub fn kill(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) with a negative pid signals a process group we created.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        match &self.cgroup {
            Some(dir) => kill_cgroup(dir.clone()),
            None => kill_marked(&self.id),
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kill every process of cgroup `dir` and remove it (in the background:
/// killed processes leave it as they are reaped).
fn kill_cgroup(dir: PathBuf) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
        // Kernels before 5.14: kill them one by one.
        for _ in 0..10 {
            let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
                break;
            };
            if procs.trim().is_empty() {
                break;
            }
            for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                // SAFETY: plain kill(2) of a pid in our command's cgroup.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    if std::fs::remove_dir(&dir).is_ok() {
        return;
    }
    std::thread::spawn(move || {
        for attempt in 0..100 {
            if std::fs::remove_dir(&dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10 * (attempt + 1).min(10)));
        }
        tracing::warn!("cannot remove cgroup {}", dir.display());
    });
}

/// Kill every process whose environment carries command mark `id`, and reap
/// those that were reparented to this process.
fn kill_marked(id: &str) {
    let needle = format!("{MARK}={id}\0");
    let me = std::process::id();
    for _ in 0..5 {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if u32::try_from(pid).ok() == Some(me) {
                continue;
            }
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(pid);
            }
        }
        if found.is_empty() {
            return;
        }
        for pid in &found {
            // SAFETY: plain kill(2) and a non-blocking waitpid(2) of a pid we found.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
                let mut status = 0;
                libc::waitpid(*pid, &mut status, libc::WNOHANG);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        for pid in &found {
            // SAFETY: as above; reaps a killed orphan reparented to us.
            unsafe {
                let mut status = 0;
                libc::waitpid(*pid, &mut status, libc::WNOHANG);
            }
        }
    }
}
