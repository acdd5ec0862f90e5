// Shared by the shims' build scripts (`include!`d): compiles a crate of this
// repository from its UNMODIFIED sources with its private modules made
// public, so fuzz targets can call the `pub` functions inside them.
//
// It writes `$OUT_DIR/exposed.rs`: the crate's `lib.rs` with
// - its inner doc comments (`//!`) blanked (an `include!`d file may not have
//   inner attributes), and
// - every top-level `mod NAME;` rewritten as
//   `#[path = "<src>/NAME.rs"] pub mod NAME;` (absolute path).
// The shim's own `lib.rs` then `include!`s it at its crate root, so the
// crate's `crate::…` paths resolve as they do in the original.
//
// It fails loudly on anything it cannot carry over (`#![…]` inner
// attributes, `/*! … */` doc comments): change this script, not the crate.
// Nested file modules (`mod x;` inside a module file) are not supported
// either: `#[path]` files resolve them next to themselves. It also fails
// when the crate's `[dependencies]` name one the shim's Cargo.toml lacks.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

/// `src_dir` is relative to the shim's manifest directory.
fn expose(src_dir: &str) {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let src = manifest_dir
        .join(src_dir)
        .canonicalize()
        .unwrap_or_else(|e| panic!("{src_dir}: {e}"));
    // A directory: cargo re-runs this script when any file under it changes.
    println!("cargo:rerun-if-changed={}", src.display());
    check_dependencies(&src.parent().expect("src has a parent").join("Cargo.toml"), &manifest_dir.join("Cargo.toml"));
    let lib = src.join("lib.rs");
    let text = fs::read_to_string(&lib).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
    let mut out = String::new();
    let mut modules = 0;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//!") {
            out.push('\n'); // keep line numbers for messages
            continue;
        }
        assert!(
            !trimmed.starts_with("#![") && !trimmed.starts_with("/*!"),
            "{}:{}: inner attributes/doc comments are not supported by fuzz/shims/expose.rs",
            lib.display(),
            n + 1
        );
        let module = line
            .strip_prefix("mod ")
            .or_else(|| line.strip_prefix("pub mod "))
            .or_else(|| line.strip_prefix("pub(crate) mod "))
            .and_then(|rest| rest.trim_end().strip_suffix(';'))
            .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        match module {
            Some(name) => {
                let file = [src.join(format!("{name}.rs")), src.join(name).join("mod.rs")]
                    .into_iter()
                    .find(|p| p.is_file())
                    .unwrap_or_else(|| panic!("{}: no file for `mod {name};`", lib.display()));
                writeln!(out, "#[path = {:?}] pub mod {name};", file.display().to_string()).unwrap();
                modules += 1;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(modules > 0, "{}: found no `mod NAME;` to expose", lib.display());
    let dest = PathBuf::from(env::var("OUT_DIR").unwrap()).join("exposed.rs");
    fs::write(&dest, out).unwrap();
}

/// The names under `[dependencies]` of the manifest at `path`.
fn dependency_names(path: &std::path::Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip_while(|l| l.trim() != "[dependencies]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter_map(|l| {
            let (name, _) = l.split_once('=')?;
            // `serde.workspace = true` is `serde`
            let name = name.trim().split('.').next().unwrap_or_default();
            (!name.is_empty() && !name.starts_with('#')).then(|| name.to_owned())
        })
        .collect()
}

/// Fail, naming them, when the original crate depends on crates the shim
/// does not.
fn check_dependencies(original: &std::path::Path, shim: &std::path::Path) {
    println!("cargo:rerun-if-changed={}", original.display());
    let have = dependency_names(shim);
    let missing: Vec<_> = dependency_names(original)
        .into_iter()
        .filter(|d| !have.contains(d))
        .collect();
    assert!(
        missing.is_empty(),
        "{} depends on {} but {} does not: copy the dependencies over",
        original.display(),
        missing.join(", "),
        shim.display()
    );
}
