//! Names and settings: index patterns, the restored index name scheme, the
//! artifact names, and which index settings a restore can set again.

use cairn_guest::{Error, Result, Value};
use serde_json::Map;

/// Whether `name` matches the pattern `pattern`, where `*` stands for any
/// run of characters (Elasticsearch's wildcard).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether a wildcard `pattern` may pick `index`: an index whose name starts
/// with `.` (system and hidden indices such as `.kibana`, `.security`) only
/// when the pattern itself starts with `.`.
pub fn pattern_may_pick(pattern: &str, index: &str) -> bool {
    !index.starts_with('.') || pattern.starts_with('.')
}

/// Problems with `name` as an Elasticsearch index or alias name, if any.
pub fn check_index_name(name: &str) -> std::result::Result<(), String> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.len() > 255 {
        "it is longer than 255 bytes"
    } else if name == "." || name == ".." {
        "it is `.` or `..`"
    } else if name.starts_with(['-', '_', '+']) {
        "it starts with `-`, `_` or `+`"
    } else if name.chars().any(char::is_uppercase) {
        "it has upper-case letters"
    } else if name.chars().any(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        "it holds one of \\ / * ? \" < > | , # : or a space"
    } else {
        return Ok(());
    };
    Err(why.to_owned())
}

/// An Elasticsearch time value such as `5m`, `90s`, `1h`, `500ms`.
pub fn check_time_value(text: &str) -> bool {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0
        && matches!(
            &text[digits..],
            "d" | "h" | "m" | "s" | "ms" | "micros" | "nanos"
        )
}

/// The artifact names of `index`'s documents: `<index>.ndjson`, with
/// characters outside `[a-z0-9._-]` and a leading `.`, `-` or `_` replaced,
/// and `~2`-style suffixes for names made equal by that (`taken` holds the
/// names given so far).
pub fn documents_artifact(index: &str, taken: &[String]) -> String {
    let mut base: String = index
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if base.starts_with(['.', '-']) {
        base.insert(0, 'x');
    }
    base.truncate(230);
    let mut name = format!("{base}.ndjson");
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}.ndjson");
        n += 1;
    }
    name
}

/// `YYYYMMDDhhmmss` (UTC) of `millis` since the Unix epoch.
pub fn stamp(millis: u64) -> String {
    let secs = millis / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// RFC 3339 (UTC, seconds) of `millis` since the Unix epoch.
pub fn rfc3339(millis: u64) -> String {
    let s = stamp(millis);
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[8..10],
        &s[10..12],
        &s[12..14]
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The index a restore writes: `<alias>-<stamp>-<id>`, where `stamp` is
/// when the backup started (`YYYYMMDDhhmmss`, UTC) and `id` the first 8
/// characters of the snapshot id. Both come from the snapshot, so restoring
/// the same snapshot again writes the same index.
pub fn restored_index(alias: &str, stamp: &str, snapshot: &str) -> String {
    let id: String = snapshot
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("{alias}-{stamp}-{id}")
}

/// If `index` follows the scheme of [`restored_index`] for `alias`, its
/// stamp.
pub fn restored_stamp<'a>(alias: &str, index: &'a str) -> Option<&'a str> {
    let rest = index.strip_prefix(alias)?.strip_prefix('-')?;
    let (stamp, id) = rest.split_once('-')?;
    let ok = stamp.len() == 14
        && stamp.bytes().all(|b| b.is_ascii_digit())
        && (1..=8).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some(stamp)
}

/// Settings Elasticsearch generates or that no cluster accepts back,
/// left out of a dump (and listed in its manifest): a restore cannot set
/// them (`index.uuid`, `index.version.*` are private) or they describe the
/// source index's history. A trailing `.` covers the key and everything
/// under it.
const NOT_RESTORABLE: &[&str] = &[
    "index.uuid",
    "index.creation_date",
    "index.creation_date_string",
    "index.provided_name",
    "index.version.",
    "index.history.uuid",
    "index.routing.allocation.initial_recovery.",
    "index.resize.",
    "index.shrink.",
    "index.split.",
    "index.clone.",
    "index.verified_before_close",
    "index.downsample.",
    "index.rollup.",
    "index.lifecycle.indexing_complete",
    "archived.",
    "index.archived.",
];

/// Settings that tie an index to the cluster it came from, left out at
/// restore unless `keep-settings` keeps them: node attributes and data
/// tiers (`routing.allocation`), ILM (`lifecycle`) and OpenSearch ISM
/// (`plugins`, `opendistro`), write blocks, frozen and searchable-snapshot
/// indices.
const SOURCE_CLUSTER: &[&str] = &[
    "index.routing.allocation.",
    "index.lifecycle.",
    "index.plugins.",
    "index.opendistro.",
    "index.blocks.",
    "index.frozen",
    "index.search.throttled",
    "index.store.snapshot.",
    "index.replication.type",
];

/// Whether `key` is in `list` (entries ending in `.` cover a group).
fn listed_in(list: &[&str], key: &str) -> bool {
    list.iter().any(|entry| {
        key == entry.trim_end_matches('.') || (entry.ends_with('.') && key.starts_with(entry))
    })
}

/// Whether `key` matches a `keep-settings`/`drop-settings` pattern: `*`
/// wildcards, with or without the `index.` prefix.
pub fn setting_matches(pattern: &str, key: &str) -> bool {
    glob_match(pattern, key) || glob_match(&with_index_prefix(pattern), key)
}

/// What a restore does with the dumped settings of an index: the flat
/// settings it sets, and the keys it leaves out because they belong to the
/// source cluster (or `drop`), sorted.
pub fn portable_settings(
    settings: &Map<String, Value>,
    keep: &[String],
    drop: &[String],
) -> (Map<String, Value>, Vec<String>) {
    let mut kept = Map::new();
    let mut dropped = Vec::new();
    for (key, value) in settings {
        let source_bound = listed_in(NOT_RESTORABLE, key) || listed_in(SOURCE_CLUSTER, key);
        let keep_it = keep.iter().any(|p| setting_matches(p, key));
        let drop_it = drop.iter().any(|p| setting_matches(p, key));
        if drop_it || (source_bound && !keep_it) || listed_in(NOT_RESTORABLE, key) {
            dropped.push(key.clone());
        } else {
            kept.insert(key.clone(), value.clone());
        }
    }
    dropped.sort();
    (kept, dropped)
}

/// Settings a restore sets at creation only: overriding one in
/// `restore-settings` is kept (it cannot be changed on an open index).
const STATIC: &[&str] = &[
    "index.number_of_shards",
    "index.number_of_routing_shards",
    "index.routing_partition_size",
    "index.codec",
    "index.sort.",
    "index.analysis.",
    "index.similarity.",
    "index.shard.check_on_startup",
    "index.soft_deletes.",
    "index.store.type",
];

/// Whether a restore puts `key` back after the load (a dynamic setting).
pub fn is_dynamic(key: &str) -> bool {
    !listed_in(STATIC, key)
}

/// `settings` (nested or flat, as `GET /{index}` returns them) as flat
/// `index.*` keys with the non-restorable ones removed, and the removed
/// keys. Keys without the `index.` prefix get it, as Elasticsearch reads
/// them; `archived.*` keys (settings a cluster no longer knows) stay as
/// they are, and are removed.
pub fn restorable_settings(settings: &Value) -> (Map<String, Value>, Vec<String>) {
    let mut flat = Map::new();
    flatten("", settings, &mut flat);
    let mut kept = Map::new();
    let mut dropped = Vec::new();
    for (k, v) in flat {
        let key = if k.starts_with("archived.") {
            k
        } else {
            with_index_prefix(&k)
        };
        if listed_in(NOT_RESTORABLE, &key) {
            dropped.push(key);
        } else {
            kept.insert(key, v);
        }
    }
    (kept, dropped)
}

/// `index.KEY` for `KEY`, `index.KEY` unchanged.
pub fn with_index_prefix(key: &str) -> String {
    if key.starts_with("index.") {
        key.to_owned()
    } else {
        format!("index.{key}")
    }
}

/// Flat `a.b.c` keys of a nested object (arrays and scalars are leaves).
pub fn flatten(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        leaf if !prefix.is_empty() => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
        _ => {}
    }
}

/// Nested objects from flat `a.b.c` keys: what every Elasticsearch version
/// accepts in `PUT /{index}` and `PUT /{index}/_settings`.
///
/// # Errors
///
/// `invalid` when a key is both a value and the parent of another key.
pub fn unflatten(flat: &Map<String, Value>) -> Result<Value> {
    let mut root = Map::new();
    for (key, value) in flat {
        let mut node = &mut root;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                if node.get(part).is_some_and(Value::is_object) {
                    return Err(conflict(key));
                }
                node.insert(part.to_owned(), value.clone());
            } else {
                let child = node
                    .entry(part.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                node = child.as_object_mut().ok_or_else(|| conflict(key))?;
            }
        }
    }
    Ok(Value::Object(root))
}

fn conflict(key: &str) -> Error {
    Error::invalid(format!(
        "setting `{key}` is both a value and a group of settings"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_guest::json;

    #[test]
    fn wildcards_match_like_elasticsearch() {
        assert!(glob_match("*", "logs"));
        assert!(glob_match("logs-*", "logs-2024"));
        assert!(glob_match("l*s-*4", "logs-2024"));
        assert!(glob_match("logs", "logs"));
        assert!(!glob_match("logs", "logs2"));
        assert!(!glob_match("logs-*", "logs"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxx"));
        assert!(pattern_may_pick("*", "logs") && !pattern_may_pick("*", ".kibana"));
        assert!(pattern_may_pick(".kib*", ".kibana"));
    }

    #[test]
    fn index_names_are_checked() {
        assert!(check_index_name("logs-2024.01_a+b").is_ok());
        for bad in ["", "Logs", "_x", "-x", "a b", "a,b", "a*", "a:b", ".", ".."] {
            assert!(check_index_name(bad).is_err(), "{bad}");
        }
        assert!(check_index_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn time_values() {
        for ok in ["5m", "90s", "1h", "500ms", "2d", "10micros", "7nanos"] {
            assert!(check_time_value(ok), "{ok}");
        }
        for bad in ["", "m", "5", "5 m", "-5m", "5min", "1.5m"] {
            assert!(!check_time_value(bad), "{bad}");
        }
    }

    #[test]
    fn artifact_names_are_safe_and_unique() {
        assert_eq!(documents_artifact("logs-2024", &[]), "logs-2024.ndjson");
        assert_eq!(documents_artifact(".kibana_1", &[]), "x.kibana_1.ndjson");
        assert_eq!(documents_artifact("a+b:c", &[]), "a_b_c.ndjson");
        let taken = vec!["a_b.ndjson".to_owned(), "a_b-2.ndjson".to_owned()];
        assert_eq!(documents_artifact("a+b", &taken), "a_b-3.ndjson");
        assert_eq!(documents_artifact("é", &[]), "_.ndjson");
    }

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(stamp(0), "19700101000000");
        // 2024-02-29T23:59:59Z
        assert_eq!(stamp(1_709_251_199_000), "20240229235959");
        assert_eq!(rfc3339(1_709_251_199_999), "2024-02-29T23:59:59Z");
        // 2000-03-01T12:34:56Z
        assert_eq!(stamp(951_914_096_000), "20000301123456");
    }

    #[test]
    fn restored_index_names_follow_the_scheme() {
        let name = restored_index("products", "20240229235959", "6d2f1c3e9a0b4c5d");
        assert_eq!(name, "products-20240229235959-6d2f1c3e");
        assert_eq!(restored_stamp("products", &name), Some("20240229235959"));
        assert_eq!(restored_stamp("products", "products-archive"), None);
        assert_eq!(restored_stamp("products", "products-2024-x"), None);
        assert_eq!(restored_stamp("prod", &name), None);
        assert_eq!(
            restored_stamp("products", "products-20240229235959-6d2f1c3e-x"),
            None
        );
    }

    #[test]
    fn settings_keep_only_what_a_restore_can_set() {
        let settings = json!({"archived": {"index": {"old": "x"}}, "index": {
            "number_of_shards": "3", "number_of_replicas": "1", "uuid": "u",
            "creation_date": "1", "provided_name": "p",
            "version": {"created": "7170099", "upgraded": "7170099"},
            "routing": {"allocation": {"initial_recovery": {"_id": "n"}, "include": {"_tier": "hot"}}},
            "resize": {"source": {"name": "s"}}, "verified_before_close": "true",
            "blocks": {"write": "true"},
            "analysis": {"analyzer": {"a": {"type": "custom", "filter": ["lowercase"]}}}
        }});
        let (flat, dropped) = restorable_settings(&settings);
        let keys: Vec<&str> = flat.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "index.analysis.analyzer.a.filter",
                "index.analysis.analyzer.a.type",
                "index.blocks.write",
                "index.number_of_replicas",
                "index.number_of_shards",
                "index.routing.allocation.include._tier",
            ]
        );
        assert!(dropped.contains(&"index.uuid".to_owned()), "{dropped:?}");
        // Flat input gives the same.
        let mut flat_in = Map::new();
        flatten("", &settings, &mut flat_in);
        assert_eq!(restorable_settings(&Value::Object(flat_in)).0, flat);
        // A restore leaves out what belongs to the source cluster.
        let (portable, left_out) = portable_settings(&flat, &[], &[]);
        assert_eq!(
            portable.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "index.analysis.analyzer.a.filter",
                "index.analysis.analyzer.a.type",
                "index.number_of_replicas",
                "index.number_of_shards",
            ]
        );
        assert_eq!(
            left_out,
            [
                "index.blocks.write",
                "index.routing.allocation.include._tier"
            ]
        );
        let (portable, _) = portable_settings(
            &flat,
            &["routing.allocation.*".to_owned()],
            &["index.number_of_replicas".to_owned()],
        );
        assert!(portable.contains_key("index.routing.allocation.include._tier"));
        assert!(!portable.contains_key("index.number_of_replicas"));
        assert!(
            dropped.contains(&"archived.index.old".to_owned()),
            "{dropped:?}"
        );
        assert_eq!(
            unflatten(&portable_settings(&flat, &[], &[]).0).unwrap(),
            json!({"index": {
                "analysis": {"analyzer": {"a": {"type": "custom", "filter": ["lowercase"]}}},
                "number_of_replicas": "1", "number_of_shards": "3"
            }})
        );
    }

    #[test]
    fn unflatten_refuses_a_key_that_is_also_a_group() {
        let mut flat = Map::new();
        flat.insert("index.a".into(), json!(1));
        flat.insert("index.a.b".into(), json!(2));
        assert!(unflatten(&flat).is_err());
    }

    #[test]
    fn static_settings_are_not_put_back() {
        assert!(is_dynamic("index.number_of_replicas"));
        assert!(is_dynamic("index.refresh_interval"));
        assert!(!is_dynamic("index.number_of_shards"));
        assert!(!is_dynamic("index.analysis.analyzer.a.type"));
        assert_eq!(
            with_index_prefix("refresh_interval"),
            "index.refresh_interval"
        );
    }
}
