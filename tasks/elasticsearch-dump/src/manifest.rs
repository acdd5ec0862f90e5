//! `manifest.json`, the artifact that describes a dump: when it was taken,
//! from where, and each index's settings, mappings, aliases, document count
//! and documents artifact.

use cairn_guest::{Error, Result, Value};
use serde::{Deserialize, Serialize};
use serde_json::Map;

/// The artifact name of the manifest.
pub const MANIFEST: &str = "manifest.json";

/// The manifest's format; a restore refuses others.
pub const FORMAT: u32 = 1;

/// What a dump holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// When the backup started, RFC 3339 UTC.
    pub dumped_at: String,
    /// The same instant as `YYYYMMDDhhmmss`: part of restored index names.
    pub stamp: String,
    /// The cluster URL.
    pub url: String,
    /// The cluster's version (`version.number` of `GET /`), when known.
    #[serde(default)]
    pub version: Option<String>,
    /// The dumped indices, sorted by name.
    pub indices: Vec<IndexDump>,
}

/// One dumped index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IndexDump {
    /// The index name.
    pub name: String,
    /// Documents written to `artifact`.
    pub documents: u64,
    /// The stream artifact holding the documents, one JSON object a line:
    /// `{"_id": …, "_routing": … (when set), "_source": {…}}`.
    pub artifact: String,
    /// Restorable settings as flat `index.*` keys.
    pub settings: Map<String, Value>,
    /// The mappings as `GET /{index}` returned them.
    pub mappings: Value,
    /// Alias name → alias properties (`filter`, `index_routing`,
    /// `search_routing`, `is_write_index`, `is_hidden`).
    pub aliases: Map<String, Value>,
}

impl Manifest {
    /// Parse a manifest read back from a snapshot.
    ///
    /// # Errors
    ///
    /// `invalid` when it is not a manifest of a known format.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| {
            Error::invalid(format!(
                "`{MANIFEST}` of the snapshot is not a dump manifest: {e}"
            ))
        })?;
        if manifest.format != FORMAT {
            return Err(Error::invalid(format!(
                "`{MANIFEST}` is in format {}, this module reads format {FORMAT}; restore it \
                 with the Cairn version that wrote it",
                manifest.format
            )));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_guest::json;

    #[test]
    fn manifests_round_trip_and_formats_are_checked() {
        let m = Manifest {
            format: FORMAT,
            dumped_at: "2024-01-02T03:04:05Z".into(),
            stamp: "20240102030405".into(),
            url: "http://127.0.0.1:9200".into(),
            version: Some("7.17.0".into()),
            indices: vec![IndexDump {
                name: "a".into(),
                documents: 2,
                artifact: "a.ndjson".into(),
                settings: Map::new(),
                mappings: json!({"properties": {}}),
                aliases: Map::new(),
            }],
        };
        let text = serde_json::to_vec(&m).unwrap();
        assert!(String::from_utf8_lossy(&text).contains("\"dumped-at\""));
        let back = Manifest::parse(&text).unwrap();
        assert_eq!(back.indices[0].documents, 2);
        let mut v: Value = serde_json::from_slice(&text).unwrap();
        v["format"] = json!(9);
        let err = Manifest::parse(v.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("format 9"), "{err}");
        assert!(Manifest::parse(b"{}").is_err());
    }
}
