//! `cairn::config::parse` on arbitrary text (the bytes converted lossily to
//! UTF-8), with relative paths resolved against `/srv/cairn`.
//!
//! Checks: it never panics; an `Err` lists at least one problem, and every
//! problem has a non-empty message; the error's and a valid config's
//! rendering (`Display`, `Debug`, `config::warnings`) never panic.
//!
//! Notes: `parse` reads the file system the way loading a config does (it
//! stats module and program paths and reads `*.toml` pipeline files the
//! text names); it never writes. Built with `CAIRN_SKIP_TASKS=1`, there are
//! no built-in task/function modules, so `builtin:NAME` modules do not
//! resolve (built-in *pipelines* do).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match cairn::config::parse(&text, "fuzz.toml", Path::new("/srv/cairn")) {
        Ok(config) => {
            let _ = format!("{config:?}");
            let _ = cairn::config::warnings(&config);
        }
        Err(error) => {
            assert!(
                !error.problems.is_empty(),
                "an Err without problems for {text:?}"
            );
            for problem in &error.problems {
                assert!(
                    !problem.message.trim().is_empty(),
                    "a problem without a message ({problem:?}) for {text:?}"
                );
            }
            let _ = error.to_string();
        }
    }
});
