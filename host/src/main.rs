//! The `cairn` command: parses arguments and calls the library.
//!
//! Exit codes: 0 success, 1 a run (or other operation) failed, 2 usage or
//! configuration error, 12 wrong repository password (as restic).

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
            ExitCode::from(cli::exit_code(&err))
        }
    }
}
