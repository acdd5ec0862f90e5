//! Webhooks: which run endings a job reports, where to, and with what body.
//!
//! The file format (`notify = { url, on, template }`) is read by `config`;
//! delivery is `daemon::notify`'s. See the daemon's module docs for the
//! placeholders a template may use.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;
use url::Url;

use super::run::RunStatus;

/// How a run ended, as far as notifications care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Event {
    /// The run succeeded.
    Success,
    /// The run failed, was cancelled or was interrupted.
    Failure,
    /// A fire was skipped (the job was still running).
    Skipped,
}

impl Event {
    /// Every event, for messages.
    pub const ALL: [Self; 3] = [Self::Failure, Self::Success, Self::Skipped];

    /// The name used in `on` and in bodies.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Skipped => "skipped",
        }
    }

    /// The event of a run that ended with `status` (`None` while it has not ended).
    #[must_use]
    pub const fn of(status: RunStatus) -> Option<Self> {
        match status {
            RunStatus::Succeeded => Some(Self::Success),
            RunStatus::Failed | RunStatus::Cancelled | RunStatus::Interrupted => {
                Some(Self::Failure)
            }
            RunStatus::Skipped => Some(Self::Skipped),
            RunStatus::Queued | RunStatus::Running => None,
        }
    }
}

/// A validated webhook.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Where to POST.
    pub url: Url,
    /// Which endings to report.
    pub on: BTreeSet<Event>,
    /// Body template, if any.
    pub template: Option<Template>,
}

impl fmt::Debug for Webhook {
    // The URL's path and query are often its secret: show the origin only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("origin", &self.url.origin().ascii_serialization())
            .field("on", &self.on)
            .field("template", &self.template.is_some())
            .finish()
    }
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 15] = [
    "job",
    "kind",
    "status",
    "event",
    "trigger",
    "attempt",
    "run_id",
    "error",
    "snapshot",
    "started",
    "finished",
    "duration",
    "duration_seconds",
    "bytes",
    "size",
];

/// A parsed body template: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// An index into [`PLACEHOLDERS`].
    Value(usize),
}

impl Template {
    /// Parse `text`, checking each placeholder and that the filled-in body is JSON.
    ///
    /// # Errors
    /// A message naming the unknown placeholder, the unclosed `{{`, or where
    /// the body stops being JSON.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| {
                format!(
                    "`{{{{` at byte {} is never closed with `}}}}`",
                    text.len() - rest.len() + start
                )
            })?;
            let name = after[..end].trim();
            let index = PLACEHOLDERS
                .iter()
                .position(|p| *p == name)
                .ok_or_else(|| {
                    format!(
                        "unknown placeholder `{{{{{name}}}}}`; placeholders: {}",
                        PLACEHOLDERS.join(", ")
                    )
                })?;
            parts.push(Part::Value(index));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        let template = Self { parts };
        // Fill it with awkward values (quotes, backslashes, newlines in the
        // texts; numbers where numbers go): the result must still be JSON.
        let sample = template.render_with(|name| match name {
            "bytes" | "duration_seconds" | "attempt" => "1".to_owned(),
            _ => "a \"quoted\"\nline \\ end".to_owned(),
        });
        if let Err(err) = serde_json::from_str::<Value>(&sample) {
            return Err(format!(
                "is not a JSON document once filled in ({err}); write JSON with placeholders \
                 inside strings, e.g. '{{\"text\": \"{{{{job}}}} {{{{status}}}}: {{{{error}}}}\"}}'"
            ));
        }
        Ok(template)
    }

    /// The body with each placeholder's value from `value` (given its
    /// name, one of [`PLACEHOLDERS`]), JSON-escaped.
    #[must_use]
    pub fn render_with(&self, value: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value(index) => out.push_str(&json_escape(&value(PLACEHOLDERS[*index]))),
            }
        }
        out
    }
}

/// `text` escaped for the inside of a JSON string (no surrounding quotes).
fn json_escape(text: &str) -> String {
    let quoted = Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}
