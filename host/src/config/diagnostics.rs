//! Diagnostics: every problem in a configuration, each at its place (`job
//! `db`, key `timeout` (line 7, column 11)`), in file order, with a "did you
//! mean" where a name is close to a known one.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `job `x`: allow.http[0]` or `line 3, column 7`.
    pub location: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, thiserror::Error)]
#[error("{} has {} problem{}:\n{}", .file, .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The file (or `<config>` for in-memory text).
    pub file: String,
    /// All problems.
    pub problems: Vec<Problem>,
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

pub(super) fn key(k: impl Into<String>) -> Seg {
    Seg::Key(k.into())
}

/// The job/function/secret a path belongs to, and the rest of the path.
pub(super) fn split_owner(path: &[Seg]) -> (Option<String>, &[Seg]) {
    if let [Seg::Key(section), Seg::Key(name), rest @ ..] = path {
        let owner = match section.as_str() {
            "jobs" => Some("job"),
            "functions" => Some("function"),
            "secrets" => Some("secret"),
            "pipelines" => Some("pipeline"),
            _ => None,
        };
        if let Some(owner) = owner {
            return (Some(format!("{owner} `{name}`")), rest);
        }
    }
    (None, path)
}

/// `allow.paths."/srv/data"`, `allow.http[1]`.
pub(super) fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// `job `db`, key `allow.http[1]``, `key `repository.path``, or empty for the top level.
pub(super) fn describe(path: &[Seg]) -> String {
    match split_owner(path) {
        (Some(owner), []) => owner,
        (Some(owner), rest) => format!("{owner}, key `{}`", dotted(rest)),
        (None, []) => String::new(),
        (None, rest) => format!("key `{}`", dotted(rest)),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Problems found so far, each with the byte offset it points at (for file order).
pub(super) struct Problems<'t> {
    text: &'t str,
    list: Vec<(Option<usize>, Problem)>,
}

impl<'t> Problems<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        Self {
            text,
            list: Vec::new(),
        }
    }

    /// Record a problem; `location` gets `(line L, column C)` when `offset` is known.
    pub(super) fn push(&mut self, location: String, offset: Option<usize>, message: String) {
        let location = match (offset, location.is_empty()) {
            (Some(offset), empty) => {
                let (line, column) = line_column(self.text, offset);
                if empty {
                    format!("line {line}, column {column}")
                } else {
                    format!("{location} (line {line}, column {column})")
                }
            }
            (None, true) => "top level".to_owned(),
            (None, false) => location,
        };
        self.list.push((offset, Problem { location, message }));
    }

    /// All problems, in file order (those without a position last).
    pub(super) fn into_sorted(mut self) -> Vec<Problem> {
        self.list
            .sort_by_key(|(offset, _)| offset.map_or((1, 0), |o| (0, o)));
        self.list.into_iter().map(|(_, p)| p).collect()
    }
}

/// TOML syntax errors as problems at `line L, column C`, one per line (the
/// parser's recovery tends to add follow-on errors on the same line).
pub(super) fn syntax_problems(text: &str, errors: &[toml::de::Error]) -> Vec<Problem> {
    let mut errors = errors.iter().collect::<Vec<_>>();
    errors.sort_by_key(|e| e.span().map_or(usize::MAX, |s| s.start));
    let mut problems = Vec::new();
    let mut last_line = None;
    for err in errors {
        let (location, line) = match err.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                (format!("line {line}, column {column}"), Some(line))
            }
            None => ("top level".to_owned(), None),
        };
        if line.is_some() && line == last_line {
            continue;
        }
        last_line = line;
        let mut message = err.message().to_owned();
        if message == "duplicate key" {
            if let Some(key) = err.span().and_then(|s| text.get(s)) {
                message = format!("duplicate key `{key}`: each key may be set only once");
            }
        }
        problems.push(Problem { location, message });
    }
    problems
}

/// The candidate closest to `word`, if one is close enough to be a likely typo.
pub(super) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let normal = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let word_normal = normal(word);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_normal, &normal(c)), c))
        .filter(|(distance, c)| *distance <= 2 && *distance <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// ` (did you mean `x`?)` when a candidate is close to `word`, else empty.
pub(super) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    closest(word, candidates).map_or_else(String::new, |c| format!(" (did you mean `{c}`?)"))
}

/// Levenshtein distance, counting an adjacent swap as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a = a.chars().collect::<Vec<_>>();
    let b = b.chars().collect::<Vec<_>>();
    let mut rows = vec![(0..=b.len()).collect::<Vec<_>>(); a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// Span of the value at `path` in `table`.
pub(super) fn span_of(table: &DeTable<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let (Seg::Key(first), rest) = path.split_first()? else {
        return None;
    };
    let mut value = table.get(first.as_str())?;
    for seg in rest {
        value = match (seg, value.get_ref()) {
            (Seg::Key(k), DeValue::Table(t)) => t.get(k.as_str())?,
            (Seg::Index(i), DeValue::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(value.span())
}

/// `backup.steps[1].function` as key path segments.
pub(super) fn key_path_segs(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            segs.push(key(&rest[..open]));
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                if let Ok(i) = rest[1..close].parse() {
                    segs.push(Seg::Index(i));
                }
                rest = &rest[close + 1..];
            }
        } else {
            segs.push(key(rest));
        }
    }
    segs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\nçd", 5), (2, 2));
        assert_eq!(line_column("", 0), (1, 1));
    }

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        assert_eq!(closest("tiemout", ["timeout", "task"]), Some("timeout"));
        assert_eq!(closest("zzz", ["timeout", "task"]), None);
        assert_eq!(did_you_mean("db", ["dv"]), " (did you mean `dv`?)");
    }
}
