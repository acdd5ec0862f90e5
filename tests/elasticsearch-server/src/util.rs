//! Small shared pieces: clocks, ids, time values, settings trees, wildcards, JSON writing.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Map, Value};

use crate::error::EsError;

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// 64 unpredictable bits (std's randomly keyed SipHash over a counter; no `rand` needed).
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A 22-character URL-safe id like the ones ES gives indices, snapshots and auto-id documents.
pub fn new_uuid() -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&random_u64().to_le_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Formats epoch milliseconds as `2026-01-01T00:00:00.000Z`.
pub fn iso_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Parses an ES time value (`1m`, `30s`, `500ms`, `2h`, `1d`, `-1`).
pub fn parse_time_value(setting: &str, text: &str) -> Result<Duration, EsError> {
    let bad = || {
        EsError::new(
            400,
            "parse_exception",
            format!(
                "failed to parse setting [{setting}] with value [{text}] as a time value: unit is missing or unrecognized"
            ),
        )
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(bad)?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "nanos" => n / 1e9,
        "micros" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Flattens a settings object into `a.b.c → value` with values stringified as ES stores them
/// (`3` → `"3"`, `true` → `"true"`, arrays of strings kept, `null` kept to mean "reset").
pub fn flatten_settings(value: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_settings(v, &key, out);
            }
        }
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|v| Value::String(scalar_string(v)))
                .collect();
            out.insert(prefix.to_string(), Value::Array(items));
        }
        Value::Null => {
            out.insert(prefix.to_string(), Value::Null);
        }
        other => {
            out.insert(prefix.to_string(), Value::String(scalar_string(other)));
        }
    }
}

fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// Turns flat `a.b.c` keys back into nested objects (what ES returns without `flat_settings`).
pub fn nest_settings<'a>(flat: impl IntoIterator<Item = (&'a String, &'a Value)>) -> Value {
    let mut root = Map::new();
    for (key, value) in flat {
        let mut node = &mut root;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            let entry = node
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            node = entry.as_object_mut().expect("object");
        }
        node.insert(parts[parts.len() - 1].to_string(), value.clone());
    }
    Value::Object(root)
}

/// Settings rendered nested, or flat with `?flat_settings=true`.
pub fn render_settings(flat: &BTreeMap<String, Value>, flat_form: bool) -> Value {
    if flat_form {
        Value::Object(flat.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    } else {
        nest_settings(flat)
    }
}

/// ES's `Regex.simpleMatch`: `*` matches any run of characters (and `?` one character here).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

pub fn has_wildcard(s: &str) -> bool {
    s.contains('*') || s.contains('?')
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let simple = s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if simple {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    }
}

/// Reads a boolean query parameter the way ES does (`?refresh`, `?refresh=true` → true).
pub fn param_bool(value: Option<&String>, default: bool) -> bool {
    match value.map(String::as_str) {
        None => default,
        Some("" | "true") => true,
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_simple_match() {
        assert!(wildcard_match("logs-*", "logs-2026"));
        assert!(wildcard_match("*", "x"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b", "axxc"));
        assert!(wildcard_match("l?gs", "logs"));
    }

    #[test]
    fn iso_dates_are_civil() {
        assert_eq!(iso_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_millis(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
    }

    #[test]
    fn time_values_parse() {
        assert_eq!(
            parse_time_value("scroll", "1m").unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            parse_time_value("scroll", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert!(parse_time_value("scroll", "10").is_err());
    }

    #[test]
    fn settings_flatten_and_nest() {
        let mut flat = BTreeMap::new();
        flatten_settings(
            &serde_json::json!({"index": {"number_of_shards": 3, "refresh_interval": "1s"}}),
            "",
            &mut flat,
        );
        assert_eq!(flat["index.number_of_shards"], "3");
        let nested = nest_settings(&flat);
        assert_eq!(nested["index"]["refresh_interval"], "1s");
    }
}
