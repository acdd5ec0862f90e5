//! Lenient deserialization: every unknown key and wrongly typed value in the
//! file, not only the first. The text is parsed into a spanned document;
//! each serde error is traced back to its entry, reported, and the entry
//! removed before deserializing again, so one bad key never hides another.

use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::diagnostics::{Problems, Seg, closest, describe, dotted, key, split_owner};
use super::file::ConfigFile;

/// Deserialize `document` into a [`ConfigFile`], collecting every serde error:
/// each error's span leads to the entry at fault, which is reported and
/// removed before trying again. What remains is valid and gets validated.
pub(super) fn deserialize_leniently(
    document: &mut DeTable<'_>,
    problems: &mut Problems<'_>,
) -> ConfigFile {
    remove_non_tables(document, problems);
    // Each failed attempt removes one entry, so this bound is never reached in
    // practice; it only guards against an error that removal cannot fix.
    for _ in 0..10_000 {
        let spanned = toml::Spanned::new(0..0, document.clone());
        let err = match ConfigFile::deserialize(toml::de::Deserializer::from(spanned)) {
            Ok(file) => return file,
            Err(err) => err,
        };
        let span = err.span();
        let path = span.as_ref().and_then(|span| find_entry(document, span));
        report_serde_error(&err, path.as_deref().unwrap_or(&[]), span, problems);
        match path {
            Some(path) if remove_entry(document, &path) => {}
            _ => break,
        }
    }
    ConfigFile::default()
}

/// Report and remove values that must be tables but are not. Checked before
/// serde sees them: serde would read an array as a struct's fields in order,
/// and its messages name Rust types.
fn remove_non_tables(document: &mut DeTable<'_>, problems: &mut Problems<'_>) {
    let mut faulty = Vec::new();
    let mut check = |path: Vec<Seg>, value: &toml::Spanned<DeValue<'_>>| {
        if value.get_ref().is_table() {
            return true;
        }
        let message = match value.get_ref() {
            DeValue::Array(items)
                if !items.is_empty() && items.iter().all(|i| i.get_ref().is_table()) =>
            {
                format!(
                    "must be a table: write `[{0}]` (one pair of brackets), not `[[{0}]]`",
                    dotted(&path)
                )
            }
            other => format!("must be a table, not {}", a_type(other)),
        };
        faulty.push((path, value.span().start, message));
        false
    };
    for section in [
        "repository",
        "state",
        "runtime",
        "secrets",
        "functions",
        "pipelines",
        "jobs",
    ] {
        let Some(value) = document.get(section) else {
            continue;
        };
        if !check(vec![key(section)], value)
            || !matches!(section, "secrets" | "functions" | "pipelines" | "jobs")
        {
            continue;
        }
        let Some(entries) = value.get_ref().as_table() else {
            continue;
        };
        for (name, entry) in entries.iter() {
            let name = name.get_ref().as_ref();
            if !check(vec![key(section), key(name)], entry) || section != "jobs" {
                continue;
            }
            if let Some(allow) = entry.get_ref().get("allow") {
                check(vec![key(section), key(name), key("allow")], allow);
            }
        }
    }
    for (path, offset, message) in faulty {
        problems.push(describe(&path), Some(offset), message);
        remove_entry(document, &path);
    }
}

/// `an integer`, `a string`, … for messages.
fn a_type(value: &DeValue<'_>) -> String {
    let name = value.type_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// Path (keys) to the entry at fault for an error at `span`: the entry whose
/// key is `span` (unknown keys), else whose value is exactly `span` (wrong
/// types, missing keys of a table), else the deepest value holding it (an
/// element of an array).
fn find_entry(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Seg>> {
    let key_is = |k: &Range<usize>, _: &Range<usize>| k == span;
    let value_is = |_: &Range<usize>, v: &Range<usize>| v == span;
    let value_holds =
        |_: &Range<usize>, v: &Range<usize>| v.start <= span.start && span.end <= v.end;
    find_entry_by(table, &key_is)
        .or_else(|| find_entry_by(table, &value_is))
        .or_else(|| find_entry_by(table, &value_holds))
}

/// Path to the deepest entry for which `matches(key span, value span)`.
fn find_entry_by(
    table: &DeTable<'_>,
    matches: &dyn Fn(&Range<usize>, &Range<usize>) -> bool,
) -> Option<Vec<Seg>> {
    for (k, v) in table.iter() {
        if let DeValue::Table(inner) = v.get_ref() {
            if let Some(mut path) = find_entry_by(inner, matches) {
                path.insert(0, key(k.get_ref().as_ref()));
                return Some(path);
            }
        }
        if matches(&k.span(), &v.span()) {
            return Some(vec![key(k.get_ref().as_ref())]);
        }
    }
    None
}

fn remove_entry(table: &mut DeTable<'_>, path: &[Seg]) -> bool {
    match path {
        [Seg::Key(last)] => table.remove(last.as_str()).is_some(),
        [Seg::Key(first), rest @ ..] => match table.get_mut(first.as_str()).map(|v| v.get_mut()) {
            Some(DeValue::Table(inner)) => remove_entry(inner, rest),
            _ => false,
        },
        _ => false,
    }
}

/// Report a serde error on the entry at `path`, in the config's own words.
fn report_serde_error(
    err: &toml::de::Error,
    path: &[Seg],
    span: Option<Range<usize>>,
    problems: &mut Problems<'_>,
) {
    let offset = span.map(|s| s.start);
    let message = err.message();
    let backticked = |text: &str| -> Vec<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };

    if let Some(rest) = message.strip_prefix("unknown field ") {
        // `path` ends with the unknown key; report it on its owner.
        let names = backticked(rest);
        let (unknown, expected) = names
            .split_first()
            .map_or(("?", &[][..]), |(u, e)| (u.as_str(), e));
        let parent = &path[..path.len().saturating_sub(1)];
        let (owner, inner) = split_owner(parent);
        let owner_location = owner.unwrap_or_default();
        let within = if inner.is_empty() {
            String::new()
        } else {
            format!(" in `{}`", dotted(inner))
        };
        let expected_list = if expected.is_empty() {
            " (this table takes no keys)".to_owned()
        } else {
            format!(" (expected one of {})", expected.join(", "))
        };
        let hint = closest(unknown, expected.iter().map(String::as_str))
            .map_or_else(String::new, |c| format!("; did you mean `{c}`?"));
        problems.push(
            owner_location,
            offset,
            format!("unknown key `{unknown}`{within}{hint}{expected_list}"),
        );
    } else if let Some(rest) = message.strip_prefix("missing field ") {
        let missing = backticked(rest).into_iter().next().unwrap_or_default();
        let (owner, inner) = split_owner(path);
        let within = if inner.is_empty() {
            String::new()
        } else {
            format!(" in `{}`", dotted(inner))
        };
        let owner_location = owner.unwrap_or_default();
        problems.push(
            owner_location,
            offset,
            format!("missing key `{missing}`{within}"),
        );
    } else {
        problems.push(describe(path), offset, message.to_owned());
    }
}
