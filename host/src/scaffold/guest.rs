//! `cairn plugin new --lang python|js`: a task project in Python or
//! JavaScript.
//!
//! The project gets the language's template (`guest-sdk/python/template`,
//! `guest-sdk/js/template`: the task, `build.sh`, a README and a
//! `.gitignore`, rendered as `guest-sdk/TEMPLATES.md` says) and, unless an
//! SDK directory is given, a copy of the SDK it builds with in `cairn-sdk/`:
//! the language's SDK, Cairn's WIT and the tool installer, laid out as in
//! the repository (`cairn-sdk/guest-sdk/python`, `cairn-sdk/wit`,
//! `cairn-sdk/guest-sdk/install-tools.sh`). The files are embedded in the
//! binary when it is built (`host/build.rs`), so the project matches the
//! host that made it and builds anywhere, with no checkout of Cairn.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// One file embedded by `host/build.rs`: its path in the repository.
pub(crate) struct EmbeddedFile {
    pub(crate) path: &'static str,
    pub(crate) text: &'static str,
    pub(crate) executable: bool,
}

include!(concat!(env!("OUT_DIR"), "/guest_sdks.rs"));

/// The directory of a project that holds its copy of the SDK.
pub const VENDORED_DIR: &str = "cairn-sdk";

/// A guest language other than Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestLang {
    /// Python, built with componentize-py.
    Python,
    /// JavaScript (ES modules), built with componentize-js.
    Js,
}

impl GuestLang {
    /// The name people read: `Python`, `JavaScript`.
    pub fn display_name(self) -> &'static str {
        match self {
            GuestLang::Python => "Python",
            GuestLang::Js => "JavaScript",
        }
    }

    /// The SDK's directory in the repository (and under `cairn-sdk/`).
    fn sdk_dir(self) -> &'static str {
        match self {
            GuestLang::Python => "guest-sdk/python",
            GuestLang::Js => "guest-sdk/js",
        }
    }

    fn sdk_files(self) -> &'static [EmbeddedFile] {
        match self {
            GuestLang::Python => PYTHON_SDK,
            GuestLang::Js => JS_SDK,
        }
    }

    fn template(self) -> &'static [EmbeddedFile] {
        match self {
            GuestLang::Python => PYTHON_TEMPLATE,
            GuestLang::Js => JS_TEMPLATE,
        }
    }
}

/// Where a project gets its SDK from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestSdk {
    /// A copy in the project's `cairn-sdk/`, written from this binary.
    Vendored,
    /// The language's SDK directory of a checkout (`…/guest-sdk/python`),
    /// used in place; nothing is copied.
    Path(PathBuf),
}

/// What [`scaffold_guest`] wrote.
#[derive(Debug)]
pub struct GuestProject {
    /// The project's own files (the task, `build.sh`, README, …).
    pub files: Vec<PathBuf>,
    /// The SDK files copied into `cairn-sdk/` (empty with [`GuestSdk::Path`]).
    pub sdk_files: Vec<PathBuf>,
    /// The command that builds it, run in the project's directory.
    pub build_command: &'static str,
    /// The component the build writes, relative to the project.
    pub component: String,
}

/// Create a task project called `name` in `dir` (which must not exist or
/// be empty) in `lang`, with its SDK from `sdk`.
///
/// # Errors
///
/// As [`super::scaffold`]: a bad name, a non-empty directory, a file that
/// cannot be written.
pub fn scaffold_guest(
    lang: GuestLang,
    name: &str,
    dir: &Path,
    sdk: &GuestSdk,
) -> anyhow::Result<GuestProject> {
    super::validate_name(name)?;
    super::check_target_dir(name, dir)?;
    let module = name.replace('-', "_");
    let class = super::type_name(name);
    let (sdk_value, sdk_about) = match sdk {
        GuestSdk::Vendored => {
            let at = format!("{VENDORED_DIR}/{}", lang.sdk_dir());
            let about = format!(
                "The SDK it builds with is in `{VENDORED_DIR}/`, as shipped with the `cairn` \
                 that made this project (version {}): the {} SDK in `{at}`, Cairn's WIT in \
                 `{VENDORED_DIR}/wit` and the tool installer \
                 `{VENDORED_DIR}/guest-sdk/install-tools.sh`. Commit it with your code. After \
                 upgrading Cairn, replace `{VENDORED_DIR}/` with the one a new \
                 `cairn plugin new --lang {}` writes.",
                env!("CARGO_PKG_VERSION"),
                lang.display_name(),
                match lang {
                    GuestLang::Python => "python",
                    GuestLang::Js => "js",
                }
            );
            (at, about)
        }
        GuestSdk::Path(path) => {
            let path = path.display().to_string();
            let about = format!(
                "The SDK it builds with is `{path}` (with Cairn's WIT two directories up, \
                 in `wit/`), as `cairn plugin new --sdk-path` said."
            );
            (path, about)
        }
    };
    let render = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{module}}", &module)
            .replace("{{class}}", &class)
            .replace("{{sdk_about}}", &sdk_about)
            .replace("{{sdk}}", &sdk_value)
    };
    let prefix = format!("{}/template/", lang.sdk_dir());
    let mut files = Vec::new();
    for file in lang.template() {
        let relative = file
            .path
            .strip_prefix(&prefix)
            .with_context(|| format!("template file {} is outside {prefix}", file.path))?;
        files.push(write(dir, relative, &render(file.text), file.executable)?);
    }
    let mut sdk_files = Vec::new();
    if *sdk == GuestSdk::Vendored {
        for file in COMMON.iter().chain(lang.sdk_files()) {
            let relative = format!("{VENDORED_DIR}/{}", file.path);
            sdk_files.push(write(dir, &relative, file.text, file.executable)?);
        }
    }
    Ok(GuestProject {
        files,
        sdk_files,
        build_command: "./build.sh",
        component: format!("build/{module}.wasm"),
    })
}

/// Write `text` to `dir/relative`, creating directories, mode 0755 when
/// `executable`.
fn write(dir: &Path, relative: &str, text: &str, executable: bool) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    if executable {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relative(dir: &Path, files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .map(|f| f.strip_prefix(dir).unwrap().display().to_string())
            .collect()
    }

    /// The repository root (`host/..`).
    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn a_python_project_has_the_template_and_a_copy_of_the_sdk() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let project = dir.path().join("nightly-dump");
        let made = scaffold_guest(
            GuestLang::Python,
            "nightly-dump",
            &project,
            &GuestSdk::Vendored,
        )?;
        let mut files = relative(&project, &made.files);
        files.sort();
        assert_eq!(files, [".gitignore", "README.md", "build.sh", "src/app.py"]);
        assert_eq!(made.component, "build/nightly_dump.wasm");
        // The rendered templates keep no placeholder (the SDK's own files are
        // copied as they are: its docs may show `{{secret-…}}` header syntax).
        for file in &made.files {
            let text = fs::read_to_string(file)?;
            assert!(
                !text.contains("{{"),
                "{} keeps a placeholder",
                file.display()
            );
        }
        let app = fs::read_to_string(project.join("src/app.py"))?;
        assert!(app.contains("class NightlyDump(cairn.Task):"), "{app}");
        assert!(app.contains("Description(\"nightly-dump\""), "{app}");
        let build = fs::read_to_string(project.join("build.sh"))?;
        assert!(
            build.contains("CAIRN_PYTHON_SDK:-cairn-sdk/guest-sdk/python}"),
            "{build}"
        );
        assert!(build.contains("build/nightly_dump.wasm"), "{build}");
        use std::os::unix::fs::PermissionsExt as _;
        for exec in [
            "build.sh",
            "cairn-sdk/guest-sdk/python/build.sh",
            "cairn-sdk/guest-sdk/install-tools.sh",
        ] {
            let mode = fs::metadata(project.join(exec))?.permissions().mode();
            assert_eq!(mode & 0o111, 0o111, "{exec} is not executable");
        }
        let readme = fs::read_to_string(project.join("README.md"))?;
        for needle in [
            "./build.sh",
            "task = \"build/nightly_dump.wasm\"",
            "cairn backup nightly-dump",
            "`cairn-sdk/`",
        ] {
            assert!(readme.contains(needle), "{needle}: {readme}");
        }
        // The copy is the repository's SDK, its WIT and installer; no tests,
        // no templates, no JavaScript.
        let sdk = relative(&project, &made.sdk_files);
        for expected in [
            "cairn-sdk/wit/worlds.wit",
            "cairn-sdk/guest-sdk/install-tools.sh",
            "cairn-sdk/guest-sdk/python/build.sh",
            "cairn-sdk/guest-sdk/python/cairn_guest/__init__.py",
            "cairn-sdk/guest-sdk/python/cairn_guest/py.typed",
        ] {
            assert!(
                sdk.iter().any(|f| f == expected),
                "{expected} not in {sdk:?}"
            );
        }
        assert!(
            sdk.iter()
                .all(|f| !f.contains("/tests/") && !f.contains("template") && !f.contains("/js/")),
            "{sdk:?}"
        );
        for file in &sdk {
            let original = root().join(file.strip_prefix("cairn-sdk/").unwrap());
            assert_eq!(
                fs::read(project.join(file))?,
                fs::read(&original)?,
                "{file}"
            );
        }
        Ok(())
    }

    #[test]
    fn every_sdk_source_file_is_embedded() -> anyhow::Result<()> {
        // What the build script embeds is what the repository holds: a new
        // SDK module is not forgotten.
        for (lang, dir, exts) in [
            (
                GuestLang::Python,
                "guest-sdk/python/cairn_guest",
                &[".py"][..],
            ),
            (GuestLang::Js, "guest-sdk/js/src", &[".js", ".d.ts"][..]),
        ] {
            for entry in fs::read_dir(root().join(dir))? {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if exts.iter().any(|e| name.ends_with(e)) {
                    let path = format!("{dir}/{name}");
                    assert!(
                        lang.sdk_files().iter().any(|f| f.path == path),
                        "{path} is not embedded"
                    );
                }
            }
        }
        for entry in fs::read_dir(root().join("wit"))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wit") {
                let path = format!("wit/{name}");
                assert!(
                    COMMON.iter().any(|f| f.path == path),
                    "{path} is not embedded"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn a_js_project_with_an_sdk_path_copies_nothing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let project = dir.path().join("p");
        let sdk = PathBuf::from("/src/cairn/guest-sdk/js");
        let made = scaffold_guest(GuestLang::Js, "task", &project, &GuestSdk::Path(sdk))?;
        assert!(made.sdk_files.is_empty());
        assert!(!project.join(VENDORED_DIR).exists());
        let index = fs::read_to_string(project.join("src/index.js"))?;
        // `Task` is imported by the template: the class gets another name.
        assert!(index.contains("class TaskTask extends Task"), "{index}");
        let jsconfig = fs::read_to_string(project.join("jsconfig.json"))?;
        assert!(
            jsconfig.contains("\"/src/cairn/guest-sdk/js/src/index.d.ts\""),
            "{jsconfig}"
        );
        let build = fs::read_to_string(project.join("build.sh"))?;
        assert!(
            build.contains("CAIRN_JS_SDK:-/src/cairn/guest-sdk/js}"),
            "{build}"
        );
        Ok(())
    }

    #[test]
    fn a_bad_name_or_a_busy_directory_writes_nothing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let err = scaffold_guest(
            GuestLang::Js,
            "Bad_Name",
            &dir.path().join("x"),
            &GuestSdk::Vendored,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("invalid task name `Bad_Name`"),
            "{err}"
        );
        assert!(!dir.path().join("x").exists());
        fs::write(dir.path().join("keep.txt"), "mine")?;
        let err =
            scaffold_guest(GuestLang::Python, "ok", dir.path(), &GuestSdk::Vendored).unwrap_err();
        assert!(err.to_string().contains("is not empty"), "{err}");
        assert_eq!(fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }
}
