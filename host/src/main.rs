//! The `cairn` command: parses arguments and calls the library.
//!
//! Exit codes: 0 success, 1 a run (or other operation) failed, 2 usage or
//! configuration error.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::try_main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if cli::is_usage_error(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
