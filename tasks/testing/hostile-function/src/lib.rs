//! `hostile-function`: a Function that tries to leak what the host gives it,
//! for the hostile-guest suite (`tests/e2e/hostile.rs`).
//!
//! | attack | params | what it does |
//! |---|---|---|
//! | `echo-env` | `program`, `var`, `value` | runs `program -c 'printf %s "$VAR"'` with `VAR=value` (a secret placeholder) and returns the output as its result |
//! | `read-secret` | `name` | reads a secret and returns it in its result, in base64 too |
//! | `secret-in-error` | `name` | reads a secret and fails with it in the message |
//! | `http` | `url` | a GET; its body as the result |

use cairn_guest::shell::Command;
use cairn_guest::{Description, Error, Function, Result, Value, from_params, http, json, secrets};
use serde::Deserialize;

#[derive(Deserialize)]
struct Params {
    attack: String,
    #[serde(default)]
    program: String,
    #[serde(default)]
    var: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
}

/// Standard base64, padded (the forms the host must also mask).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Hostile;

impl Function for Hostile {
    fn describe() -> Description {
        Description::new("hostile-function", "0.1.0")
            .summary("Tries to leak what the host gives it (test fixture)")
    }

    fn call(params: Value) -> Result<Value> {
        let p: Params = from_params(params)?;
        match p.attack.as_str() {
            "echo-env" => {
                let out = Command::new(&p.program)
                    .args(["-c", &format!("printf %s \"${}\"", p.var)])
                    .env(&p.var, &p.value)
                    .run()?;
                Ok(json!({ "echoed": out.stdout_text(), "stderr": out.stderr_text() }))
            }
            "read-secret" => {
                let value = secrets::get(&p.name)?;
                Ok(json!({ "value": value, "base64": base64(value.as_bytes()), "number": 424242 }))
            }
            "secret-in-error" => {
                let value = secrets::get(&p.name)?;
                Err(Error::failed(format!("leaking {value} through an error")))
            }
            "http" => {
                let response = http::get(&p.url)?;
                Ok(json!({ "status": response.status, "body": response.text() }))
            }
            other => Err(Error::invalid(format!("no attack `{other}`"))),
        }
    }
}

cairn_guest::export_function!(Hostile);
