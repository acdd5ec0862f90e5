//! Typeless mappings: validation, merging (`PUT _mapping`) and dynamic mapping of documents.
//!
//! Faithful where a client can notice: new fields are mapped from the first value seen
//! (string → `text` + `keyword` sub-field, or `date` when it looks like one; integer → `long`;
//! fraction → `float`; boolean; object), values that cannot be indexed into an existing field
//! are `mapper_parsing_exception`s, type changes are refused, `dynamic: strict|false` is honoured.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

use crate::error::EsError;

const ROOT_KEYS: &[&str] = &[
    "properties",
    "dynamic",
    "_source",
    "_routing",
    "_meta",
    "_field_names",
    "dynamic_templates",
    "date_detection",
    "numeric_detection",
    "dynamic_date_formats",
    "enabled",
    "runtime",
    "_data_stream_timestamp",
];

const FIELD_TYPES: &[&str] = &[
    "text",
    "keyword",
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
    "date",
    "date_nanos",
    "boolean",
    "binary",
    "object",
    "nested",
    "ip",
    "geo_point",
    "geo_shape",
    "completion",
    "alias",
    "flattened",
    "wildcard",
    "constant_keyword",
    "version",
    "search_as_you_type",
    "token_count",
    "dense_vector",
    "rank_feature",
    "rank_features",
    "integer_range",
    "float_range",
    "long_range",
    "double_range",
    "date_range",
    "ip_range",
    "join",
    "percolator",
    "histogram",
    "match_only_text",
    "point",
    "shape",
];

/// Checks a mapping definition (the body of `PUT _mapping` or `mappings` of `PUT index`).
pub fn validate(mapping: &Map<String, Value>) -> Result<(), EsError> {
    let unknown: Vec<String> = mapping
        .iter()
        .filter(|(k, _)| !ROOT_KEYS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k} : {v}"))
        .collect();
    if !unknown.is_empty() {
        return Err(EsError::mapper_parsing(format!(
            "Root mapping definition has unsupported parameters:  [{}]",
            unknown.join("] [")
        )));
    }
    if let Some(props) = mapping.get("properties") {
        validate_properties(props, "")?;
    }
    Ok(())
}

fn validate_properties(props: &Value, prefix: &str) -> Result<(), EsError> {
    let Some(props) = props.as_object() else {
        return Err(EsError::mapper_parsing(format!(
            "Expected map for property [properties] on field [{}] but got a class java.lang.String",
            prefix.trim_end_matches('.')
        )));
    };
    for (name, def) in props {
        let path = format!("{prefix}{name}");
        let Some(def) = def.as_object() else {
            return Err(EsError::mapper_parsing(format!(
                "Expected map for property [fields] on field [{path}] but got a class java.lang.String"
            )));
        };
        match def.get("type").and_then(Value::as_str) {
            Some(ty) if !FIELD_TYPES.contains(&ty) => {
                return Err(EsError::mapper_parsing(format!(
                    "No handler for type [{ty}] declared on field [{name}]"
                )));
            }
            _ => {}
        }
        if let Some(sub) = def.get("properties") {
            validate_properties(sub, &format!("{path}."))?;
        }
    }
    Ok(())
}

fn field_type(def: &Value) -> &str {
    def.get("type").and_then(Value::as_str).unwrap_or("object")
}

fn is_object_type(ty: &str) -> bool {
    ty == "object" || ty == "nested"
}

/// Merges `incoming` into `existing` as `PUT _mapping` does; all or nothing.
pub fn merge(
    existing: &mut Map<String, Value>,
    incoming: &Map<String, Value>,
) -> Result<(), EsError> {
    validate(incoming)?;
    let mut merged = existing.clone();
    for (key, value) in incoming {
        if key == "properties" {
            let target = merged
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            merge_properties(target, value, "")?;
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
    *existing = merged;
    Ok(())
}

/// Merges `incoming` into `existing` where `incoming` wins on conflicts (how an index
/// creation request's mappings combine with those of its templates).
pub fn merge_overriding(
    existing: &mut Map<String, Value>,
    incoming: &Map<String, Value>,
) -> Result<(), EsError> {
    validate(incoming)?;
    deep_merge(existing, incoming);
    Ok(())
}

fn deep_merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match (target.get_mut(k), v) {
            (Some(Value::Object(t)), Value::Object(p))
                if k == "properties" || t.contains_key("properties") || !p.contains_key("type") =>
            {
                deep_merge(t, p)
            }
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_properties(target: &mut Value, incoming: &Value, prefix: &str) -> Result<(), EsError> {
    let (Some(target), Some(incoming)) = (target.as_object_mut(), incoming.as_object()) else {
        return Ok(());
    };
    for (name, def) in incoming {
        let path = format!("{prefix}{name}");
        match target.get_mut(name) {
            None => {
                target.insert(name.clone(), def.clone());
            }
            Some(current) => {
                let (old, new) = (field_type(current).to_string(), field_type(def).to_string());
                if is_object_type(&old) != is_object_type(&new) {
                    return Err(EsError::illegal_argument(format!(
                        "can't merge a non object mapping [{path}] with an object mapping"
                    )));
                }
                if old != new {
                    return Err(EsError::illegal_argument(format!(
                        "mapper [{path}] cannot be changed from type [{old}] to [{new}]"
                    )));
                }
                let (Some(cur), Some(new_def)) = (current.as_object_mut(), def.as_object()) else {
                    continue;
                };
                for (k, v) in new_def {
                    if k == "properties" {
                        let sub = cur
                            .entry("properties")
                            .or_insert_with(|| Value::Object(Map::new()));
                        merge_properties(sub, v, &format!("{path}."))?;
                    } else {
                        cur.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Dynamic {
    True,
    False,
    Strict,
}

fn dynamic_of(def: &Map<String, Value>, inherited: Dynamic) -> Dynamic {
    match def.get("dynamic") {
        Some(Value::Bool(false)) => Dynamic::False,
        Some(Value::Bool(true)) => Dynamic::True,
        Some(Value::String(s)) if s == "false" => Dynamic::False,
        Some(Value::String(s)) if s == "strict" => Dynamic::Strict,
        Some(Value::String(s)) if s == "true" || s == "runtime" => Dynamic::True,
        _ => inherited,
    }
}

/// The sub-fields of an object field (or of the mapping's root) and its
/// `dynamic` setting, inherited from the parent unless set.
fn scope(def: &Map<String, Value>, inherited: Dynamic) -> (&Map<String, Value>, Dynamic) {
    static NONE: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    let props = def
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&NONE);
    (props, dynamic_of(def, inherited))
}

/// Checks `doc` against `mapping`, adding dynamically mapped fields. On error the mapping is
/// left untouched. Returns whether the mapping changed.
pub fn index_document(
    mapping: &mut Map<String, Value>,
    doc: &Map<String, Value>,
    id: &str,
) -> Result<bool, EsError> {
    let mut updates: Vec<(Vec<String>, Value)> = Vec::new();
    let (props, dynamic) = scope(mapping, Dynamic::True);
    check_object(
        props,
        dynamic,
        doc,
        &mut Vec::new(),
        id,
        &mut updates,
        "_doc",
    )?;
    if updates.is_empty() {
        return Ok(false);
    }
    for (path, def) in updates {
        let mut node = mapping
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        for part in &path[..path.len() - 1] {
            let obj = node.as_object_mut().expect("properties object");
            let field = obj
                .entry(part.clone())
                .or_insert_with(|| json!({ "properties": {} }));
            node = field
                .as_object_mut()
                .expect("object field")
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
        }
        node.as_object_mut()
            .expect("properties object")
            .insert(path[path.len() - 1].clone(), def);
    }
    Ok(true)
}

fn check_object<'a>(
    props: &Map<String, Value>,
    dynamic: Dynamic,
    doc: &'a Map<String, Value>,
    path: &mut Vec<&'a str>,
    id: &str,
    updates: &mut Vec<(Vec<String>, Value)>,
    parent_name: &str,
) -> Result<(), EsError> {
    for (name, value) in doc {
        path.push(name.as_str());
        match props.get(name) {
            Some(def) => check_value(def, dynamic, value, path, id, updates)?,
            None => match dynamic {
                Dynamic::False => {}
                Dynamic::Strict => {
                    return Err(EsError::new(
                        400,
                        "strict_dynamic_mapping_exception",
                        format!(
                            "mapping set to strict, dynamic introduction of [{name}] within [{parent_name}] is not allowed"
                        ),
                    ));
                }
                Dynamic::True => {
                    let known = updates.iter().any(|(p, _)| {
                        p.len() == path.len() && p.iter().zip(path.iter()).all(|(a, b)| a == b)
                    });
                    if !known && let Some(def) = infer(value) {
                        updates.push((path.iter().map(|s| s.to_string()).collect(), def));
                    }
                }
            },
        }
        path.pop();
    }
    Ok(())
}

fn check_value<'a>(
    def: &Value,
    dynamic: Dynamic,
    value: &'a Value,
    path: &mut Vec<&'a str>,
    id: &str,
    updates: &mut Vec<(Vec<String>, Value)>,
) -> Result<(), EsError> {
    let ty = field_type(def);
    if let Value::Array(items) = value {
        for item in items {
            check_value(def, dynamic, item, path, id, updates)?;
        }
        return Ok(());
    }
    if value.is_null() {
        return Ok(());
    }
    if is_object_type(ty) {
        let Value::Object(obj) = value else {
            return Err(EsError::mapper_parsing(format!(
                "object mapping for [{}] tried to parse field [{}] as object, but found a concrete value",
                path.join("."),
                path.last().copied().unwrap_or_default()
            )));
        };
        let (sub, dynamic) = scope(
            def.as_object().expect("field definitions are objects"),
            dynamic,
        );
        let name = path.last().copied().unwrap_or_default().to_string();
        return check_object(sub, dynamic, obj, path, id, updates, &name);
    }
    let shown = value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string());
    let fail = |cause: EsError| {
        Err(EsError::mapper_parsing(format!(
            "failed to parse field [{}] of type [{ty}] in document with id '{id}'. Preview of field's value: '{shown}'",
            path.join(".")
        ))
        .caused_by(cause))
    };
    if let Value::Object(_) = value {
        return fail(EsError::new(
            400,
            "illegal_state_exception",
            "Can't get text on a START_OBJECT",
        ));
    }
    let scalar = match value {
        Value::Bool(_) => Scalar::Bool,
        Value::Number(_) => Scalar::Number,
        Value::String(s) => Scalar::Str(s),
        _ => unreachable!("arrays, objects and null are handled above"),
    };
    if accepts(ty, scalar) {
        return Ok(());
    }
    fail(match ty {
        "long" | "integer" | "short" | "byte" | "unsigned_long" => match value {
            Value::String(s) => EsError::new(
                400,
                "illegal_argument_exception",
                format!("For input string: \"{s}\""),
            ),
            _ => EsError::new(
                400,
                "json_parse_exception",
                "Current token (VALUE_TRUE) not numeric, can not use numeric value accessors",
            ),
        },
        "double" | "float" | "half_float" | "scaled_float" => EsError::new(
            400,
            "number_format_exception",
            format!("For input string: \"{}\"", value.as_str().unwrap_or("true")),
        ),
        "boolean" => EsError::illegal_argument(format!(
            "Failed to parse value [{shown}] as only [true] or [false] are allowed."
        )),
        _ => EsError::illegal_argument(format!(
            "failed to parse date field [{shown}] with format [strict_date_optional_time||epoch_millis]"
        )),
    })
}

/// A scalar JSON value, as far as field types care.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Bool,
    Number,
    Str(&'a str),
}

/// Whether a field of type `ty` indexes `value` (ES coerces numeric and boolean strings).
fn accepts(ty: &str, value: Scalar<'_>) -> bool {
    match ty {
        "long" | "integer" | "short" | "byte" | "unsigned_long" | "double" | "float"
        | "half_float" | "scaled_float" => match value {
            Scalar::Number => true,
            Scalar::Str(s) => s.trim().parse::<f64>().is_ok(),
            Scalar::Bool => false,
        },
        "boolean" => match value {
            Scalar::Bool => true,
            Scalar::Str(s) => s == "true" || s == "false" || s.is_empty(),
            Scalar::Number => false,
        },
        "date" | "date_nanos" => match value {
            Scalar::Number => true,
            Scalar::Str(s) => looks_like_date(s),
            Scalar::Bool => false,
        },
        _ => true,
    }
}

/// The fast path of indexing a `_source`: whether `source` is a JSON object that fits
/// `mapping` as it is — every field mapped and every value accepted, so that
/// [`index_document`] would succeed without changing the mapping. Parses without building
/// a `Value`. `false` means "not sure": the caller takes the full path, which also words
/// the errors and maps new fields.
pub fn fits_unchanged(mapping: &Map<String, Value>, source: &[u8]) -> bool {
    let Ok(Json::Object(doc)) = serde_json::from_slice::<Json>(source) else {
        return false;
    };
    let (props, dynamic) = scope(mapping, Dynamic::True);
    object_fits(props, dynamic, &doc)
}

fn object_fits(
    props: &Map<String, Value>,
    dynamic: Dynamic,
    doc: &[(Cow<'_, str>, Json<'_>)],
) -> bool {
    doc.iter()
        .all(|(name, value)| match props.get(name.as_ref()) {
            Some(def) => value_fits(def, dynamic, value),
            // ignored when dynamic is false; otherwise it may be mapped or refused
            None => dynamic == Dynamic::False,
        })
}

fn value_fits(def: &Value, dynamic: Dynamic, value: &Json<'_>) -> bool {
    let ty = field_type(def);
    match value {
        Json::Null => true,
        Json::Array(items) => items.iter().all(|v| value_fits(def, dynamic, v)),
        Json::Object(obj) if is_object_type(ty) => {
            let (sub, dynamic) = scope(
                def.as_object().expect("field definitions are objects"),
                dynamic,
            );
            object_fits(sub, dynamic, obj)
        }
        Json::Object(_) => false,
        _ if is_object_type(ty) => false,
        Json::Bool => accepts(ty, Scalar::Bool),
        Json::Number => accepts(ty, Scalar::Number),
        Json::Str(s) => accepts(ty, Scalar::Str(s)),
    }
}

/// A parsed JSON value that borrows its strings from the input where it can (for
/// [`fits_unchanged`]; numbers are only told apart from other values).
enum Json<'a> {
    Null,
    Bool,
    Number,
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json<'de>, E> {
        Ok(Json::Number)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Json::Object(entries))
    }
}

/// An object key, borrowed from the input unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The mapping ES's dynamic mapping gives a new field holding `value` (`None`: not mapped yet).
fn infer(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Bool(_) => Some(json!({ "type": "boolean" })),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(json!({ "type": "long" })),
        Value::Number(_) => Some(json!({ "type": "float" })),
        Value::String(s) if looks_like_date(s) => Some(json!({ "type": "date" })),
        Value::String(_) => Some(json!({
            "type": "text",
            "fields": { "keyword": { "type": "keyword", "ignore_above": 256 } }
        })),
        Value::Array(items) => items.iter().find_map(infer),
        Value::Object(obj) => {
            let props: Map<String, Value> = obj
                .iter()
                .filter_map(|(k, v)| infer(v).map(|d| (k.clone(), d)))
                .collect();
            Some(json!({ "properties": props }))
        }
    }
}

/// `strict_date_optional_time` (date detection's first format), closely enough.
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 10
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
    {
        return false;
    }
    if b.len() == 10 {
        return true;
    }
    if b[10] != b'T' || !digits(11..13) {
        return false;
    }
    let rest = &s[13..];
    let rest = rest.trim_end_matches('Z');
    let rest = match rest.find(['+', '-']) {
        Some(i) => &rest[..i],
        None => rest,
    };
    rest.split([':', '.', ','])
        .skip(1)
        .all(|part| !part.is_empty() && part.bytes().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn dynamic_mapping_infers_es_types() {
        let mut m = Map::new();
        let doc = obj(json!({"title": "doc 1", "n": 1, "f": 1.5, "ok": true,
            "at": "2026-01-01T00:00:00Z", "o": {"x": 1}, "tags": ["a"]}));
        assert!(index_document(&mut m, &doc, "1").unwrap());
        let p = &m["properties"];
        assert_eq!(p["title"]["type"], "text");
        assert_eq!(p["title"]["fields"]["keyword"]["type"], "keyword");
        assert_eq!(p["n"]["type"], "long");
        assert_eq!(p["f"]["type"], "float");
        assert_eq!(p["ok"]["type"], "boolean");
        assert_eq!(p["at"]["type"], "date");
        assert_eq!(p["o"]["properties"]["x"]["type"], "long");
        assert_eq!(p["tags"]["type"], "text");
        assert!(!index_document(&mut m, &doc, "2").unwrap());
    }

    #[test]
    fn conflicting_values_are_rejected() {
        let mut m = obj(json!({"properties": {"n": {"type": "long"}}}));
        let err = index_document(&mut m, &obj(json!({"n": "abc"})), "7").unwrap_err();
        assert_eq!(err.kind, "mapper_parsing_exception");
        assert!(
            err.reason
                .contains("failed to parse field [n] of type [long]"),
            "{}",
            err.reason
        );
        // ES coerces numeric strings.
        index_document(&mut m, &obj(json!({"n": "12"})), "8").unwrap();
    }

    /// The fast path says "fits" only where the full check passes without mapping anything.
    #[test]
    fn fast_path_agrees_with_the_full_check() {
        let mapping = obj(json!({"properties": {
            "title": {"type": "text"}, "n": {"type": "long"}, "ok": {"type": "boolean"},
            "at": {"type": "date"}, "f": {"type": "float"},
            "o": {"properties": {"x": {"type": "long"}}},
            "loose": {"type": "object", "dynamic": false, "properties": {}}
        }}));
        let cases = [
            (
                json!({"title": "t", "n": 1, "ok": true, "at": "2026-01-01", "f": 1.5}),
                true,
            ),
            (
                json!({"n": "12", "ok": "false", "at": 17, "tags": null}),
                false,
            ),
            (json!({"n": "12", "ok": "false", "at": 17}), true),
            (
                json!({"title": ["a", "b"], "n": [1, null, 2], "o": {"x": 3}}),
                true,
            ),
            (json!({"o": [{"x": 1}, {"x": 2}]}), true),
            (json!({"loose": {"anything": {"at": "all"}}}), true),
            (json!({"new": 1}), false),
            (json!({"o": {"y": 1}}), false),
            (json!({"n": "abc"}), false),
            (json!({"n": true}), false),
            (json!({"ok": "yes"}), false),
            (json!({"at": "yesterday"}), false),
            (json!({"title": {"nested": 1}}), false),
            (json!({"o": 5}), false),
        ];
        for (doc, fits) in cases {
            let bytes = serde_json::to_vec(&doc).unwrap();
            assert_eq!(fits_unchanged(&mapping, &bytes), fits, "{doc}");
            if fits {
                let mut m = mapping.clone();
                let full = index_document(&mut m, &obj(doc.clone()), "1");
                assert_eq!(full.ok(), Some(false), "{doc}");
            }
        }
        assert!(fits_unchanged(&mapping, br#"{"tit\u006ce": "t"}"#));
        assert!(!fits_unchanged(&mapping, b"[1]"));
        assert!(!fits_unchanged(&mapping, b"{\"n\": 1"));
        assert!(!fits_unchanged(&Map::new(), br#"{"n": 1}"#));
        assert!(fits_unchanged(&Map::new(), b"{}"));
    }

    #[test]
    fn type_changes_are_refused() {
        let mut m = obj(json!({"properties": {"n": {"type": "long"}}}));
        let err = merge(&mut m, &obj(json!({"properties": {"n": {"type": "text"}}}))).unwrap_err();
        assert_eq!(
            err.reason,
            "mapper [n] cannot be changed from type [long] to [text]"
        );
        merge(&mut m, &obj(json!({"properties": {"t": {"type": "text"}}}))).unwrap();
        assert_eq!(m["properties"]["t"]["type"], "text");
    }
}
