//! The elasticsearch-dump task's reading of what it receives: `_bulk`
//! responses, its `manifest.json`, the NDJSON lines of a dump, and
//! Elasticsearch error bodies. Reached through the
//! `elasticsearch-dump-exposed` shim (the task's modules are private; the
//! shim compiles its unmodified sources with public modules, natively; see
//! fuzz/shims/expose.rs).
//!
//! The first input byte picks what the rest is (`byte % 4`):
//! - 0: a `_bulk` response for `load::bulk_outcome_with(body, sent,
//!   conflicts_done)`, `sent` being the number of `items` when the body has
//!   them (bit 4 of the first byte set: one more, a mismatch), else the
//!   first byte; `conflicts_done` is bit 5;
//! - 1: a `manifest.json` for `manifest::Manifest::parse`;
//! - 2: a dump artifact (NDJSON), each non-blank line to
//!   `load::Batch::push_as` as the restore reads it (action `index`, or
//!   `create` with bit 5);
//! - 3: an error body for `client::EsProblem::parse`, and a text for
//!   `client::excerpt` and `client::encode`.
//!
//! Checks: nothing panics; retried positions are increasing and below
//! `sent`, and retried plus rejected is at most `sent`, with a reason quoted
//! for at most each rejection; a parsed manifest has the known format and
//! survives a round trip through JSON; a batch holds one document per
//! accepted line; an excerpt is at most its limit plus `…`; `encode` output
//! is only unreserved characters and `%XX`, and decodes back to the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use elasticsearch_dump_exposed::client::{EsProblem, encode, excerpt};
use elasticsearch_dump_exposed::load::{Batch, bulk_outcome_with};
use elasticsearch_dump_exposed::manifest::{FORMAT, Manifest};

fn bulk(selector: u8, body: &[u8]) {
    let items = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("items").and_then(Value::as_array).map(Vec::len));
    let sent = match items {
        Some(n) => n + usize::from(selector & 0x10 != 0),
        None => usize::from(selector),
    };
    let Ok(outcome) = bulk_outcome_with(body, sent, selector & 0x20 != 0) else {
        return;
    };
    assert!(outcome.retry.windows(2).all(|w| w[0] < w[1]), "{outcome:?}");
    assert!(outcome.retry.iter().all(|&i| i < sent), "{outcome:?}");
    assert!(outcome.retry.len() + outcome.rejected <= sent, "{outcome:?}");
    assert!(outcome.reasons.len() <= outcome.rejected, "{outcome:?}");
}

fn manifest(body: &[u8]) {
    let Ok(m) = Manifest::parse(body) else {
        return;
    };
    // A restore reads this format and the ones before it.
    assert!((1..=FORMAT).contains(&m.format), "format {}", m.format);
    let text = serde_json::to_vec(&m).expect("a manifest serialises");
    let back = Manifest::parse(&text).expect("a written manifest parses");
    assert_eq!(
        serde_json::to_value(&m).expect("value"),
        serde_json::to_value(&back).expect("value"),
        "the manifest changed in a round trip"
    );
}

fn ndjson(selector: u8, body: &[u8]) {
    let action = if selector & 0x20 != 0 { "create" } else { "index" };
    let mut batch = Batch::default();
    let mut accepted = 0;
    for line in body.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if batch.push_as(line, action).is_ok() {
            accepted += 1;
        }
        assert_eq!(batch.len(), accepted);
        assert_eq!(batch.is_empty(), accepted == 0);
    }
}

fn text(body: &[u8]) {
    let problem = EsProblem::parse(body);
    let _ = problem.to_string();
    let _ = problem.mentions("index_not_found_exception");
    for max in [0, 1, 7, 300] {
        let e = excerpt(body, max);
        assert!(e.len() <= max + '…'.len_utf8(), "excerpt of {max} is {} bytes", e.len());
    }
    let name = String::from_utf8_lossy(body);
    let encoded = encode(&name);
    let mut decoded = Vec::new();
    let mut bytes = encoded.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            decoded.push(u8::from_str_radix(&hex, 16).expect("%XX"));
        } else {
            assert!(
                b.is_ascii_alphanumeric() || b"-._~*,+:".contains(&b),
                "`{}` left in {encoded:?}",
                char::from(b)
            );
            decoded.push(b);
        }
    }
    assert_eq!(decoded, name.as_bytes(), "{encoded:?} does not decode back");
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => bulk(selector, body),
        1 => manifest(body),
        2 => ndjson(selector, body),
        _ => text(body),
    }
});
