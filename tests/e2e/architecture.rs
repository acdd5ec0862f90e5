//! The host's layers, kept true (in the spirit of rust-analyzer's tidy
//! tests): every `crate::MODULE` a top-level module of `host/src` names must
//! be in a lower layer than its own. Test modules (`#[cfg(test)]`) may reach
//! anywhere; comments do not count. `ARCHITECTURE.md` documents the same
//! order.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The layers, bottom first. A module imports only from layers below its
/// own; modules of one layer do not import each other.
pub const LAYERS: &[&[&str]] = &[
    &["model", "units", "sys", "scaffold"],
    &["builtins"],
    &["state", "repository"],
    &["capabilities"],
    &["runtime"],
    &["pipeline"],
    &["config"],
    &["runner"],
    &["daemon"],
];

/// The layer of top-level module `name`, if it is one of [`LAYERS`].
fn layer_of(name: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&name))
}

/// One import that breaks the layering.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UpwardEdge {
    /// The file (relative to `host/src`) that imports.
    pub file: String,
    /// Its top-level module.
    pub from: String,
    /// The module it names.
    pub to: String,
}

impl std::fmt::Display for UpwardEdge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: `{}` imports `crate::{}`, which is not in a lower layer",
            self.file, self.from, self.to
        )
    }
}

/// Every upward (or sideways) edge in the sources under `src`.
///
/// # Errors
/// When a file cannot be read, or a top-level module is in no layer.
pub fn upward_edges(src: &Path) -> anyhow::Result<Vec<UpwardEdge>> {
    let mut edges = BTreeSet::new();
    for file in rust_files(src)? {
        let rel = file.strip_prefix(src)?.to_string_lossy().replace('\\', "/");
        let top = rel
            .split('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_owned();
        if matches!(top.as_str(), "lib" | "main" | "cli") || is_test_module(&file)? {
            continue;
        }
        let from_layer = layer_of(&top)
            .with_context(|| format!("top-level module `{top}` ({rel}) is in no layer"))?;
        let text = std::fs::read_to_string(&file)?;
        for to in crate_references(&without_tests(&without_comments(&text))) {
            if to == top {
                continue;
            }
            let to_layer = layer_of(&to)
                .with_context(|| format!("{rel} names `crate::{to}`, which is in no layer"))?;
            if to_layer >= from_layer {
                edges.insert(UpwardEdge {
                    file: rel.clone(),
                    from: top.clone(),
                    to,
                });
            }
        }
    }
    Ok(edges.into_iter().collect())
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `file` is a module its parent declares under `#[cfg(test)]`.
fn is_test_module(file: &Path) -> anyhow::Result<bool> {
    let Some(stem) = file.file_stem().and_then(|s| s.to_str()) else {
        return Ok(false);
    };
    let Some(dir) = file.parent() else {
        return Ok(false);
    };
    let parent = dir.join("mod.rs");
    if !parent.exists() || stem == "mod" {
        return Ok(false);
    }
    let text = std::fs::read_to_string(&parent)?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    Ok(lines.windows(2).any(|w| {
        w[0] == "#[cfg(test)]"
            && (w[1] == format!("mod {stem};") || w[1] == format!("pub mod {stem};"))
    }))
}

/// `text` without `//` and `/* */` comments (string literals are kept; a
/// `//` inside one is rare enough in this code base not to matter).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let line = rest.find("//");
        let block = rest.find("/*");
        match (line, block) {
            (None, None) => {
                out.push_str(rest);
                return out;
            }
            (Some(l), b) if b.is_none_or(|b| l < b) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |n| &rest[l + n..]);
            }
            (_, b) => {
                let b = b.expect("a block comment comes first");
                out.push_str(&rest[..b]);
                rest = rest[b..].find("*/").map_or("", |e| &rest[b + e + 2..]);
            }
        }
    }
}

/// `text` without the bodies of `#[cfg(test)] mod NAME { … }`.
fn without_tests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_inline_mod = (trimmed.starts_with("mod ") || trimmed.starts_with("pub mod "))
            && trimmed
                .find(['{', ';'])
                .is_some_and(|i| trimmed.as_bytes()[i] == b'{');
        if !is_inline_mod {
            rest = after;
            continue;
        }
        let open = after.find('{').expect("checked above");
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The top-level modules `text` names as `crate::MODULE`.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `$crate::` in macros and `some_crate::` are not this crate.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            && !name.is_empty()
        {
            out.insert(name);
        }
        rest = after;
    }
    out
}

fn host_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn top_level_modules_import_only_lower_layers() -> anyhow::Result<()> {
    let edges = upward_edges(&host_src())?;
    anyhow::ensure!(
        edges.is_empty(),
        "{} import(s) point up or sideways in the layers ({:?}):\n{}",
        edges.len(),
        LAYERS,
        edges
            .iter()
            .map(|e| format!("  - {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

#[test]
fn an_upward_import_is_named_with_its_file() -> anyhow::Result<()> {
    // A copy of `host/src` with one upward import added to the vocabulary.
    let copy = tempfile::Builder::new()
        .prefix("cairn-architecture-")
        .tempdir()?;
    let src = copy.path().join("src");
    for file in rust_files(&host_src())? {
        let rel = file.strip_prefix(host_src())?;
        let target = src.join(rel);
        std::fs::create_dir_all(target.parent().expect("a file has a directory"))?;
        std::fs::copy(&file, &target)?;
    }
    let limits = src.join("model/limits.rs");
    let mut text = std::fs::read_to_string(&limits)?;
    text.push_str("\n#[allow(unused_imports)]\nuse crate::runner::Runner;\n");
    std::fs::write(&limits, text)?;

    let edges = upward_edges(&src)?;
    assert_eq!(
        edges,
        vec![UpwardEdge {
            file: "model/limits.rs".into(),
            from: "model".into(),
            to: "runner".into(),
        }]
    );
    assert_eq!(
        edges[0].to_string(),
        "model/limits.rs: `model` imports `crate::runner`, which is not in a lower layer"
    );
    Ok(())
}

#[test]
fn comments_and_test_modules_are_not_imports() {
    let text = "use crate::model::X; // see crate::runner\n/* crate::daemon */\n\
                #[cfg(test)]\nmod tests {\n    use crate::config::parse;\n    fn f() { {} }\n}\n\
                fn g() -> $crate::x::Y {}\n";
    let refs = crate_references(&without_tests(&without_comments(text)));
    assert_eq!(refs, BTreeSet::from(["model".to_owned()]));
}
