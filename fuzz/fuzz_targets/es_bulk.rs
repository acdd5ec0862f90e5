//! The Elasticsearch test double's `_bulk` (tests/elasticsearch-server,
//! `bulk.rs`), reached through the `es-test-server-exposed` shim because the
//! crate's `bulk` module is private (the shim compiles the unmodified
//! sources with public modules; see fuzz/shims/expose.rs).
//!
//! The first input byte picks the request and the server: bit 0:
//! `/{index}/_bulk` with index `fuzz-default`; bit 1: `?routing=r1`; bit 2:
//! the first item is rejected (`Faults::reject_bulk_items`); bit 3: the
//! first write is acknowledged but dropped
//! (`Faults::drop_acknowledged_writes`); bits 4-5: the flavor
//! (Elasticsearch 7, 8, OpenSearch 2); bit 6: strict settings. The rest is
//! the NDJSON body. A parsed body is applied to an
//! empty cluster (security off) and its response rendered the way
//! `POST /_bulk` renders it.
//!
//! Checks: nothing panics; the response is valid JSON; and the
//! elasticsearch-dump task's reading of a bulk response
//! (`load::bulk_outcome_with`, 409s not taken as done) accepts it and, when `errors` is true, sorts
//! exactly the items without a 2xx status into retried (429/5xx) and
//! rejected.
//!
//! Not deterministic in one respect: an index/create without `_id` gets a
//! random id (the double's `new_uuid`), which only changes that id's text.
#![no_main]

use libfuzzer_sys::fuzz_target;

use elasticsearch_dump_exposed::load::bulk_outcome_with;
use es_test_server_exposed::Flavor;
use es_test_server_exposed::bulk::{Ctx, apply, parse_bulk, write_item_body};
use es_test_server_exposed::store::State;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let index = (flags & 1 != 0).then_some("fuzz-default");
    let routing = (flags & 2 != 0).then_some("r1");
    let Ok(ops) = parse_bulk(body, index, routing) else {
        return;
    };
    let sent = ops.len();
    let mut state = State {
        flavor: match (flags >> 4) & 3 {
            1 => Flavor::Elasticsearch8,
            2 => Flavor::OpenSearch2,
            _ => Flavor::Elasticsearch7,
        },
        strict_settings: flags & 0x40 != 0,
        ..State::default()
    };
    let types = state.flavor.has_types();
    let mut response = b"{\"took\":0,\"errors\":".to_vec();
    let mut items = Vec::new();
    // As `POST /_bulk` sets it: whether any item failed.
    let mut errors = false;
    // Items whose status is not 2xx (a delete of a missing document is a 404
    // without being an error).
    let mut not_2xx = 0;
    for (i, op) in ops.into_iter().enumerate() {
        let action = op.action;
        let ctx = Ctx {
            reject: i == 0 && flags & 4 != 0,
            drop: i == 0 && flags & 8 != 0,
            principal: None,
        };
        let result = apply(&mut state, op, ctx);
        errors |= result.outcome.is_err();
        let status = match &result.outcome {
            Ok((_, _, status)) => *status,
            Err(e) => e.status,
        };
        not_2xx += usize::from(!(200..300).contains(&status));
        if i > 0 {
            items.push(b',');
        }
        items.extend_from_slice(format!("{{\"{}\":", format!("{action:?}").to_lowercase()).as_bytes());
        write_item_body(&mut items, &result, 1, true, types);
        items.push(b'}');
    }
    response.extend_from_slice(if errors { b"true" } else { b"false" });
    response.extend_from_slice(b",\"items\":[");
    response.extend_from_slice(&items);
    response.extend_from_slice(b"]}");

    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&response) {
        panic!(
            "the bulk response is not JSON ({e}): {}",
            String::from_utf8_lossy(&response)
        );
    }
    let outcome = bulk_outcome_with(&response, sent, false).unwrap_or_else(|e| {
        panic!(
            "elasticsearch-dump refuses the double's bulk response ({e}): {}",
            String::from_utf8_lossy(&response)
        )
    });
    assert_eq!(
        outcome.retry.len() + outcome.rejected,
        if errors { not_2xx } else { 0 },
        "failed items miscounted in {}",
        String::from_utf8_lossy(&response)
    );
});
