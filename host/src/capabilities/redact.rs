//! Removing secret values from what flows back to a module or is stored.
//!
//! A run's [`Redactor`] knows every value of the secrets granted to its job
//! in every form the host can predict it appears in: plain, base64 (standard
//! and URL-safe alphabets, each of the three alignments it can have after a
//! prefix such as `USER:`), URL-encoded (upper and lower case hex, `+` for
//! space) and JSON-escaped. It replaces each occurrence with `***`, leftmost
//! and longest first (Aho-Corasick), in text and in bytes. [`StreamRedactor`]
//! does the same for data that arrives in pieces, holding back just enough
//! of each piece that a value split across two is still found.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// What a secret value becomes.
pub const MASK: &str = "***";

/// Replaces secret values, in every known form, with [`MASK`].
#[derive(Debug, Default)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    forms: Vec<Vec<u8>>,
    longest: usize,
}

impl Redactor {
    /// A redactor for `values` and each one's encoded forms (empty values
    /// are ignored).
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut forms: Vec<Vec<u8>> = Vec::new();
        for value in values {
            if value.is_empty() {
                continue;
            }
            for form in forms_of(&value) {
                if !form.is_empty() && !forms.contains(&form) {
                    forms.push(form);
                }
            }
        }
        if forms.is_empty() {
            return Self::default();
        }
        let longest = forms.iter().map(Vec::len).max().unwrap_or(0);
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&forms)
            .expect("a handful of literal patterns always build");
        Self {
            matcher: Some(matcher),
            forms,
            longest,
        }
    }

    /// Whether it knows no secret at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `text` with every secret form replaced by `***`.
    #[must_use]
    pub fn redact(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) if m.is_match(text) => m.replace_all(text, &[MASK].repeat(m.patterns_len())),
            _ => text.to_owned(),
        }
    }

    /// `bytes` with every secret form replaced by `***`.
    #[must_use]
    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        match &self.matcher {
            Some(m) if m.is_match(bytes) => {
                m.replace_all_bytes(bytes, &[MASK.as_bytes()].repeat(m.patterns_len()))
            }
            _ => bytes.to_vec(),
        }
    }

    /// `bytes` redacted, and also masked at the end where they stop in the
    /// middle of a secret (output cut at a cap).
    #[must_use]
    pub fn redact_cut(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = self.redact_bytes(bytes);
        if let Some(at) = self.partial_tail(&out) {
            out.truncate(at);
            out.extend_from_slice(MASK.as_bytes());
        }
        out
    }

    /// Where a suffix of `bytes` starts that is the beginning (four bytes
    /// or more) of a secret form, if one does.
    fn partial_tail(&self, bytes: &[u8]) -> Option<usize> {
        self.prefix_tail(bytes, 4)
    }

    /// Where the longest suffix of `bytes` (at least `min` bytes) starts
    /// that is the beginning of a secret form, if one is.
    fn prefix_tail(&self, bytes: &[u8], min: usize) -> Option<usize> {
        let from = bytes.len().saturating_sub(self.longest.saturating_sub(1));
        (from..=bytes.len().saturating_sub(min.max(1))).find(|&start| {
            let tail = &bytes[start..];
            self.forms
                .iter()
                .any(|f| f.len() > tail.len() && f.starts_with(tail))
        })
    }
}

impl Redactor {
    /// `value` with every secret form in its strings, keys and numbers
    /// replaced (a number that is a secret becomes the string `***`).
    #[must_use]
    pub fn redact_json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.redact(&s)),
            Value::Number(n) => {
                let text = n.to_string();
                if self.redact(&text) == text {
                    Value::Number(n)
                } else {
                    Value::String(MASK.into())
                }
            }
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.redact(&k), self.redact_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Every form of `value` worth redacting.
fn forms_of(value: &str) -> Vec<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut forms = vec![bytes.to_vec()];
    for alphabet in [Alphabet::Standard, Alphabet::UrlSafe] {
        forms.push(base64(bytes, alphabet).into_bytes());
        for offset in 0..3usize {
            // The value occupies bytes offset..offset+len of the encoded
            // stream; group g (bytes 3g..3g+3) is the value's alone when it
            // lies inside. Its characters are the same whatever surrounds it.
            let first = offset.div_ceil(3);
            let end = (offset + bytes.len()) / 3;
            if end <= first {
                continue;
            }
            let from = first * 3 - offset;
            let to = end * 3 - offset;
            forms.push(base64(&bytes[from..to], alphabet).into_bytes());
        }
    }
    forms.push(url_encode(bytes, false, true).into_bytes());
    forms.push(url_encode(bytes, false, false).into_bytes());
    forms.push(url_encode(bytes, true, true).into_bytes());
    let json = serde_json::Value::String(value.to_owned()).to_string();
    forms.push(json.as_bytes()[1..json.len() - 1].to_vec());
    forms
}

/// Which base64 alphabet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// RFC 4648 section 4, `+` and `/`, padded.
    Standard,
    /// RFC 4648 section 5, `-` and `_`, unpadded.
    UrlSafe,
}

/// `bytes` in base64.
#[must_use]
pub fn base64(bytes: &[u8], alphabet: Alphabet) -> String {
    let table: &[u8; 64] = match alphabet {
        Alphabet::Standard => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        Alphabet::UrlSafe => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    };
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(table[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else if alphabet == Alphabet::Standard {
                out.push('=');
            }
        }
    }
    out
}

/// `bytes` percent-encoded: everything but RFC 3986's unreserved characters,
/// with `+` for space when `plus`, and upper- or lower-case hex.
fn url_encode(bytes: &[u8], plus: bool, upper: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else if b == b' ' && plus {
            out.push('+');
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Redacts data that arrives in pieces: each piece is redacted together with
/// the end of the one before, so that a secret split across pieces (or over
/// several lines, like a key file) is still found; what could still be the
/// start of a secret is held back until the next piece (or
/// [`StreamRedactor::finish`]).
#[derive(Debug, Default)]
pub struct StreamRedactor {
    held: Vec<u8>,
}

impl StreamRedactor {
    /// Redact `piece` with `redactor`; returns what can be passed on now.
    pub fn push(&mut self, redactor: &Redactor, piece: &[u8]) -> Vec<u8> {
        if redactor.is_empty() {
            return piece.to_vec();
        }
        self.held.extend_from_slice(piece);
        let redacted = redactor.redact_bytes(&self.held);
        // Keep back only an end that could still become a secret.
        let split = redactor.prefix_tail(&redacted, 1).unwrap_or(redacted.len());
        self.held = redacted[split..].to_vec();
        redacted[..split].to_vec()
    }

    /// The rest, redacted.
    pub fn finish(&mut self, redactor: &Redactor) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        redactor.redact_bytes(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes(), Alphabet::Standard), encoded);
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf], Alphabet::Standard), "+/+/");
        assert_eq!(base64(&[0xfb, 0xff, 0xbf], Alphabet::UrlSafe), "-_-_");
        assert_eq!(base64(b"f", Alphabet::UrlSafe), "Zg");
    }

    #[test]
    fn every_form_of_a_secret_is_masked() {
        let secret = "p@ss w/rd\"+x";
        let r = Redactor::new([secret.to_owned(), String::new()]);
        for form in forms_of(secret) {
            let text = format!("before {} after", String::from_utf8(form.clone()).unwrap());
            let out = r.redact(&text);
            assert!(out.contains(MASK), "{text} -> {out}");
            assert!(!out.contains(&*String::from_utf8(form).unwrap()), "{out}");
        }
        assert_eq!(r.redact("nothing here"), "nothing here");
        assert_eq!(r.redact_bytes(b"x p@ss w/rd\"+x y"), b"x *** y");
        assert!(Redactor::new([String::new()]).is_empty());
    }

    #[test]
    fn output_cut_in_a_secret_is_masked_at_the_cut() {
        let r = Redactor::new(["correct-horse-battery".to_owned()]);
        assert_eq!(r.redact_cut(b"pw correct-hor"), b"pw ***");
        assert_eq!(r.redact_cut(b"pw cor"), b"pw cor");
        assert_eq!(r.redact_cut(b"plain output"), b"plain output");
    }

    #[test]
    fn longer_secrets_win_over_ones_they_contain() {
        let r = Redactor::new(["hunter2".to_owned(), "hunter2-long".to_owned()]);
        assert_eq!(r.redact("pw=hunter2-long x=hunter2"), "pw=*** x=***");
    }

    #[test]
    fn a_secret_split_across_pieces_is_still_masked() {
        let r = Redactor::new(["correct-horse-battery".to_owned()]);
        let text = b"log: correct-horse-battery and more correct-horse-battery!";
        for cut in 1..text.len() {
            let mut s = StreamRedactor::default();
            let mut out = s.push(&r, &text[..cut]);
            out.extend(s.push(&r, &text[cut..]));
            out.extend(s.finish(&r));
            assert_eq!(out, b"log: *** and more ***!", "cut at {cut}");
        }
    }

    #[test]
    fn results_are_redacted_in_strings_keys_and_numbers() {
        use serde_json::json;
        let r = Redactor::new(["s3cret".to_string(), "424242".to_string()]);
        let v =
            r.redact_json(json!({"a": "x s3cret y", "s3cret": 1, "n": 424242, "l": ["s3cret"]}));
        assert_eq!(
            v,
            json!({"a": "x *** y", "***": 1, "n": "***", "l": ["***"]})
        );
    }
}
