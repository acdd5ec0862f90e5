//! Restore path handling: `repository::check_entry_path` (entry names read
//! from a snapshot), `capabilities::fs::is_plain_name`, and host-side access
//! beneath a path grant (`capabilities::fs::Beneath`), which must never
//! leave the granted directory or follow a symlink.
//!
//! A fixed tree is created once per process in a temporary directory:
//!
//! ```text
//! granted/              (the grant, read-write)
//!   file.txt
//!   sub/file.txt  sub/deeper/  sub/escape -> ../../outside/secret
//!   to-root -> /   to-parent -> ..   to-outside -> <tmp>/outside
//!   to-sub -> sub  (a symlink that stays inside is refused too)
//! outside/secret
//! ```
//!
//! The input bytes are the path: as an entry path and a name, and, lossily
//! converted to UTF-8, appended to the grant (`<grant>/<input>`) and, when
//! absolute, as given. `open(p, Read)` and `directory(p, ReadWrite,
//! create = false)` are called (never `create = true`: nothing is written).
//!
//! Checks: an entry path accepted by `check_entry_path` is relative, has no
//! NUL and stays beneath any base it is joined to; a plain name is one
//! normal component and an accepted entry path; an `Ok` from `Beneath` has
//! a `path` beneath the grant, and its handle's real path
//! (`/proc/self/fd/N`) is that same path: beneath the grant, reached
//! without following any symlink.
#![no_main]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

use cairn::capabilities::fs::{Beneath, Resolved, is_plain_name};
use cairn::model::Access;
use cairn::repository::check_entry_path;

struct Tree {
    /// Kept for the process's lifetime; removed at exit (an `atexit`
    /// handler: statics are not dropped), left behind only by a crash.
    dir: tempfile::TempDir,
    grant: PathBuf,
    grants: BTreeMap<PathBuf, Access>,
}

static TREE: OnceLock<Tree> = OnceLock::new();

extern "C" fn remove_tree() {
    if let Some(tree) = TREE.get() {
        let _ = std::fs::remove_dir_all(tree.dir.path());
    }
}

fn tree() -> &'static Tree {
    TREE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("cairn-fuzz-restore-paths-")
            .tempdir()
            .expect("temporary directory");
        // Canonical, so that real paths compare equal (TMPDIR may be a symlink).
        let root = dir.path().canonicalize().expect("canonical tmp");
        let grant = root.join("granted");
        let outside = root.join("outside");
        let mk = |p: &Path| std::fs::create_dir_all(p).expect("mkdir");
        mk(&grant.join("sub/deeper"));
        mk(&outside);
        std::fs::write(outside.join("secret"), "secret").expect("write");
        std::fs::write(grant.join("file.txt"), "x").expect("write");
        std::fs::write(grant.join("sub/file.txt"), "x").expect("write");
        let link = |to: &Path, at: &str| std::os::unix::fs::symlink(to, grant.join(at)).expect("symlink");
        link(Path::new("/"), "to-root");
        link(Path::new(".."), "to-parent");
        link(&outside, "to-outside");
        link(Path::new("sub"), "to-sub");
        link(Path::new("../../outside/secret"), "sub/escape");
        let grants = BTreeMap::from([(grant.clone(), Access::ReadWrite)]);
        // SAFETY: registers a plain function; nothing else to uphold.
        unsafe { libc::atexit(remove_tree) };
        Tree {
            dir,
            grant,
            grants,
        }
    })
}

fn check_resolved(tree: &Tree, asked: &str, resolved: &Resolved) {
    assert!(
        resolved.path.starts_with(&tree.grant),
        "{asked:?} resolved to {} outside the grant",
        resolved.path.display()
    );
    let real = std::fs::read_link(format!("/proc/self/fd/{}", resolved.fd.as_raw_fd()))
        .expect("readlink /proc/self/fd");
    assert!(
        real.starts_with(&tree.grant),
        "{asked:?} opened {} outside the grant",
        real.display()
    );
    assert_eq!(
        real, resolved.path,
        "{asked:?}: the handle is not on the path asked for (a symlink was followed?)"
    );
}

fn beneath(tree: &Tree, path: &str) {
    let b = Beneath {
        grants: &tree.grants,
        job: "fuzz",
    };
    if let Ok(resolved) = b.open(path, Access::Read) {
        check_resolved(tree, path, &resolved);
    }
    if let Ok(resolved) = b.directory(path, Access::ReadWrite, false) {
        check_resolved(tree, path, &resolved);
    }
}

fuzz_target!(|data: &[u8]| {
    let tree = tree();

    let entry = Path::new(OsStr::from_bytes(data));
    if check_entry_path(entry).is_ok() {
        assert!(!data.contains(&0), "accepted an entry with NUL: {data:?}");
        assert!(!entry.is_absolute(), "accepted an absolute entry: {data:?}");
        assert!(
            entry
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
            "accepted an entry with `..` or a root: {data:?}"
        );
        let base = Path::new("/restore/target");
        assert!(
            cairn::sys::normalize(&base.join(entry)).starts_with(base),
            "entry {data:?} leaves its base"
        );
    }
    if is_plain_name(data) {
        let mut components = entry.components();
        assert!(
            matches!(components.next(), Some(Component::Normal(n)) if n.as_bytes() == data)
                && components.next().is_none(),
            "plain name {data:?} is not one normal component"
        );
        assert!(check_entry_path(entry).is_ok(), "plain name {data:?} refused as an entry");
    }

    let text = String::from_utf8_lossy(data);
    beneath(tree, &format!("{}/{text}", tree.grant.display()));
    if text.starts_with('/') {
        beneath(tree, &text);
    }
});
