//! The version the server pretends to be, and the differences between versions that a client
//! can notice: what `GET /` says, whether hits and bulk items carry `_type`, whether
//! `include_type_name` is still a parameter, whether wildcard deletes are refused, and which
//! index settings exist (ES refuses unknown settings; OpenSearch has no ILM and no data tiers,
//! Elasticsearch has no ISM).

use serde_json::{Value, json};

/// The distribution and major version the server pretends to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// Elasticsearch 7.17.0.
    #[default]
    Elasticsearch7,
    /// Elasticsearch 8.15.0: no mapping types at all, `action.destructive_requires_name` on by
    /// default. (TLS and authentication on are what [`crate::Options::es8`] sets up, as ES 8's
    /// first start does.)
    Elasticsearch8,
    /// OpenSearch 2.11.0: `version.distribution: "opensearch"`, no `X-Elastic-Product` header,
    /// no ILM (`index.lifecycle.*` is an unknown setting), no data tiers.
    OpenSearch2,
}

impl Flavor {
    /// `version.number`.
    pub fn version(self) -> &'static str {
        match self {
            Flavor::Elasticsearch7 => "7.17.0",
            Flavor::Elasticsearch8 => "8.15.0",
            Flavor::OpenSearch2 => "2.11.0",
        }
    }

    /// `index.version.created` of new indices.
    pub fn version_id(self) -> &'static str {
        match self {
            Flavor::Elasticsearch7 => "7170099",
            Flavor::Elasticsearch8 => "8512000",
            // OpenSearch sets bit 27 on its version ids.
            Flavor::OpenSearch2 => "136327827",
        }
    }

    pub fn is_opensearch(self) -> bool {
        self == Flavor::OpenSearch2
    }

    /// Whether responses carry `"_type": "_doc"` (7.x only).
    pub fn has_types(self) -> bool {
        self == Flavor::Elasticsearch7
    }

    /// Whether `include_type_name` is still accepted (7.x only).
    pub fn accepts_include_type_name(self) -> bool {
        self == Flavor::Elasticsearch7
    }

    /// `action.destructive_requires_name`'s default (true from 8.0).
    pub fn destructive_requires_name(self) -> bool {
        self == Flavor::Elasticsearch8
    }

    /// Whether the cluster has ILM (`_ilm`, `index.lifecycle.*`).
    pub fn has_ilm(self) -> bool {
        !self.is_opensearch()
    }

    /// Whether nodes have data tiers (`_tier_preference`).
    pub fn has_tiers(self) -> bool {
        !self.is_opensearch()
    }

    /// The body of `GET /`.
    pub fn root_info(self) -> Value {
        match self {
            Flavor::OpenSearch2 => json!({
                "name": "cairn-test-node",
                "cluster_name": "cairn-test",
                "cluster_uuid": "cairn-test-double-cluster-uuid",
                "version": {
                    "distribution": "opensearch",
                    "number": self.version(),
                    "build_type": "tar",
                    "build_hash": "cairn-es-test-server",
                    "build_date": "2023-10-13T02:55:55.511945994Z",
                    "build_snapshot": false,
                    "lucene_version": "9.7.0",
                    "minimum_wire_compatibility_version": "7.10.0",
                    "minimum_index_compatibility_version": "7.0.0"
                },
                "tagline": "The OpenSearch Project: https://opensearch.org/"
            }),
            _ => {
                let (lucene, wire, index, date) = if self == Flavor::Elasticsearch8 {
                    (
                        "9.11.1",
                        "7.17.0",
                        "7.0.0",
                        "2024-08-05T10:05:34.233336849Z",
                    )
                } else {
                    (
                        "8.11.1",
                        "6.8.0",
                        "6.0.0-beta1",
                        "2022-01-28T08:36:04.875279988Z",
                    )
                };
                json!({
                    "name": "cairn-test-node",
                    "cluster_name": "cairn-test",
                    "cluster_uuid": "cairn-test-double-cluster-uuid",
                    "version": {
                        "number": self.version(),
                        "build_flavor": "default",
                        "build_type": "tar",
                        "build_hash": "cairn-es-test-server",
                        "build_date": date,
                        "build_snapshot": false,
                        "lucene_version": lucene,
                        "minimum_wire_compatibility_version": wire,
                        "minimum_index_compatibility_version": index
                    },
                    "tagline": "You Know, for Search"
                })
            }
        }
    }

    /// Why ES would refuse index setting `key` (flat, `index.`-prefixed), if it would.
    pub fn check_index_setting(self, key: &str, value: &Value) -> Result<(), String> {
        if key.starts_with("archived.") || key.starts_with("index.archived.") {
            return Err(format!(
                "unknown setting [{key}] please check that any required plugins are installed, or check the breaking changes documentation for removed settings"
            ));
        }
        if PRIVATE.contains(&key) {
            return Err(format!(
                "private index setting [{key}] can not be set explicitly"
            ));
        }
        let Some(rest) = key.strip_prefix("index.") else {
            return Err(unknown(key));
        };
        let known = EXACT.contains(&rest)
            || PREFIXES.iter().any(|p| rest.starts_with(p))
            || (self.has_ilm() && LIFECYCLE.contains(&rest))
            || (self.is_opensearch()
                && (OPENSEARCH_EXACT.contains(&rest)
                    || rest.starts_with("plugins.")
                    || rest.starts_with("opendistro.")));
        if !known {
            return Err(unknown(key));
        }
        if self == Flavor::Elasticsearch8
            && rest == "soft_deletes.enabled"
            && value.as_str() == Some("false")
        {
            return Err(
                "Creating indices with soft-deletes disabled is no longer supported. Please do not specify a value for setting [index.soft_deletes.enabled]."
                    .into(),
            );
        }
        if rest.starts_with("routing.allocation.include._tier")
            && !self.has_tiers()
            && rest != "routing.allocation.include._tier_preference"
        {
            return Err(unknown(key));
        }
        Ok(())
    }

    /// Why a cluster setting would be refused, if it would.
    pub fn check_cluster_setting(self, key: &str) -> Result<(), String> {
        let known = CLUSTER_PREFIXES.iter().any(|p| key.starts_with(p));
        if known {
            Ok(())
        } else {
            Err(format!("persistent setting [{key}], not recognized"))
        }
    }
}

fn unknown(key: &str) -> String {
    format!(
        "unknown setting [{key}] please check that any required plugins are installed, or check the breaking changes documentation for removed settings"
    )
}

/// Settings ES sets itself and refuses from a request.
const PRIVATE: &[&str] = &[
    "index.uuid",
    "index.version.created",
    "index.version.upgraded",
    "index.version.compatibility",
    "index.history.uuid",
    "index.resize.source.uuid",
    "index.resize.source.name",
    "index.shrink.source.uuid",
    "index.shrink.source.name",
];

/// Index settings (without `index.`) every flavor knows.
const EXACT: &[&str] = &[
    "number_of_shards",
    "number_of_replicas",
    "number_of_routing_shards",
    "routing_partition_size",
    "auto_expand_replicas",
    "refresh_interval",
    "max_result_window",
    "max_inner_result_window",
    "max_rescore_window",
    "max_docvalue_fields_search",
    "max_script_fields",
    "max_ngram_diff",
    "max_shingle_diff",
    "max_refresh_listeners",
    "max_terms_count",
    "max_regex_length",
    "max_slices_per_scroll",
    "default_pipeline",
    "final_pipeline",
    "hidden",
    "codec",
    "priority",
    "gc_deletes",
    "provided_name",
    "creation_date",
    "creation_date_string",
    "verified_before_close",
    "frozen",
    "search.throttled",
    "search.idle.after",
    "format",
    "load_fixed_bitset_filters_eagerly",
    "unassigned.node_left.delayed_timeout",
    "shard.check_on_startup",
    "query.default_field",
    "query_string.lenient",
    "requests.cache.enable",
    "write.wait_for_active_shards",
    "allocation.max_retries",
    "routing.rebalance.enable",
    "routing.allocation.enable",
    "routing.allocation.total_shards_per_node",
    "soft_deletes.enabled",
    "soft_deletes.retention_lease.period",
    "soft_deletes.retention.operations",
    "highlight.max_analyzed_offset",
    "flush_after_merge",
];

/// Groups of index settings (without `index.`) every flavor knows.
const PREFIXES: &[&str] = &[
    "analysis.",
    "similarity.",
    "routing.allocation.require.",
    "routing.allocation.include.",
    "routing.allocation.exclude.",
    "routing.allocation.initial_recovery.",
    "blocks.",
    "mapping.",
    "merge.",
    "translog.durability",
    "translog.sync_interval",
    "translog.flush_threshold_size",
    "translog.generation_threshold_size",
    "translog.retention.",
    "indexing.slowlog.",
    "search.slowlog.",
    "sort.",
    "store.",
    "resize.",
    "shrink.",
    "split.",
    "clone.",
];

/// ILM's index settings (Elasticsearch only).
const LIFECYCLE: &[&str] = &[
    "lifecycle.name",
    "lifecycle.rollover_alias",
    "lifecycle.origination_date",
    "lifecycle.parse_origination_date",
    "lifecycle.indexing_complete",
    "lifecycle.step.wait_time_threshold",
    "lifecycle.skip",
];

/// OpenSearch's own index settings.
const OPENSEARCH_EXACT: &[&str] = &["replication.type", "knn", "knn.algo_param.ef_search"];

/// Cluster settings the double knows (by prefix).
const CLUSTER_PREFIXES: &[&str] = &[
    "cluster.routing.",
    "cluster.blocks.",
    "cluster.max_shards_per_node",
    "cluster.indices.close.enable",
    "cluster.info.",
    "action.auto_create_index",
    "action.destructive_requires_name",
    "search.max_keep_alive",
    "search.default_keep_alive",
    "search.max_open_scroll_context",
    "indices.",
    "logger.",
    "snapshot.",
    "xpack.",
    "plugins.",
    "opendistro.",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_like_the_real_thing() {
        let v = json!("1");
        let es7 = Flavor::Elasticsearch7;
        assert!(
            es7.check_index_setting("index.number_of_replicas", &v)
                .is_ok()
        );
        assert!(
            es7.check_index_setting("index.analysis.analyzer.a.type", &v)
                .is_ok()
        );
        assert!(es7.check_index_setting("index.lifecycle.name", &v).is_ok());
        assert!(
            es7.check_index_setting("index.translog.disable_flush", &v)
                .is_err()
        );
        assert!(es7.check_index_setting("index.mapper.dynamic", &v).is_err());
        assert!(es7.check_index_setting("archived.index.foo", &v).is_err());
        assert!(
            es7.check_index_setting("index.archived.index.foo", &v)
                .is_err()
        );
        assert!(
            es7.check_index_setting("index.version.created", &v)
                .unwrap_err()
                .contains("private")
        );
        let os = Flavor::OpenSearch2;
        assert!(os.check_index_setting("index.lifecycle.name", &v).is_err());
        assert!(
            os.check_index_setting("index.plugins.index_state_management.auto_manage", &v)
                .is_ok()
        );
        assert!(
            es7.check_index_setting("index.plugins.index_state_management.auto_manage", &v)
                .is_err()
        );
        assert!(
            Flavor::Elasticsearch8
                .check_index_setting("index.soft_deletes.enabled", &json!("false"))
                .is_err()
        );
    }
}
