//! The cluster state: indices (settings, mappings, aliases, documents), cluster settings.
//!
//! Documents keep their `_source` as the exact bytes the client sent and are kept in insertion
//! order (a `Vec` of slots plus an id → slot map), which is the `_doc` order scrolls return.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::error::EsError;
use crate::flavor::Flavor;
use crate::mapping;
use crate::util::{flatten_settings, has_wildcard, new_uuid, now_millis, wildcard_match};

/// One stored document.
#[derive(Debug)]
pub struct Doc {
    pub id: Box<str>,
    pub routing: Option<Box<str>>,
    /// The `_source` exactly as sent (always a JSON object).
    pub source: Box<[u8]>,
    pub version: u64,
    pub seq_no: u64,
}

/// One index (a single shard as far as data goes; `number_of_shards` is reported as set).
#[derive(Debug)]
pub struct Index {
    pub name: Arc<str>,
    pub uuid: String,
    /// Flat `index.*` settings, values as ES stores them (strings or arrays of strings).
    pub settings: BTreeMap<String, Value>,
    /// Typeless mapping: `{"properties": …, "dynamic": …}`.
    pub mappings: Map<String, Value>,
    /// Alias name → alias properties (`filter`, `index_routing`, `is_write_index`, …).
    pub aliases: BTreeMap<String, Value>,
    /// Closed (`POST /{index}/_close`): metadata only, no reads or writes.
    pub closed: bool,
    /// The data stream this index backs, if any.
    pub data_stream: Option<String>,
    docs: Vec<Option<Arc<Doc>>>,
    /// Hashed with foldhash: ids come from clients, but this is a test double, not a
    /// server exposed to hostile input, and SipHash was a tenth of `_bulk`'s time.
    ids: HashMap<Box<str>, usize, foldhash::fast::RandomState>,
    seq: u64,
}

/// What writing one document did.
pub struct Written {
    pub version: u64,
    pub seq_no: u64,
    pub created: bool,
}

impl Index {
    /// A new index with ES's default and generated settings filled in.
    pub fn new(name: &str, mut settings: BTreeMap<String, Value>, flavor: Flavor) -> Index {
        let uuid = new_uuid();
        settings.retain(|_, v| !v.is_null());
        let s = |v: &str| Value::String(v.to_string());
        settings
            .entry("index.number_of_shards".into())
            .or_insert_with(|| s("1"));
        settings
            .entry("index.number_of_replicas".into())
            .or_insert_with(|| s("1"));
        if flavor.has_tiers() {
            settings
                .entry("index.routing.allocation.include._tier_preference".into())
                .or_insert_with(|| s("data_content"));
        } else {
            settings
                .entry("index.replication.type".into())
                .or_insert_with(|| s("DOCUMENT"));
        }
        settings.insert("index.uuid".into(), s(&uuid));
        settings.insert("index.provided_name".into(), s(name));
        settings
            .entry("index.creation_date".into())
            .or_insert_with(|| s(&now_millis().to_string()));
        settings.insert("index.version.created".into(), s(flavor.version_id()));
        Index {
            name: Arc::from(name),
            uuid,
            settings,
            mappings: Map::new(),
            aliases: BTreeMap::new(),
            closed: false,
            data_stream: None,
            docs: Vec::new(),
            ids: HashMap::default(),
            seq: 0,
        }
    }

    pub fn doc_count(&self) -> usize {
        self.ids.len()
    }

    fn setting_u32(&self, key: &str, default: u32) -> u32 {
        self.settings
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    }

    pub fn shards(&self) -> u32 {
        self.setting_u32("index.number_of_shards", 1)
    }

    pub fn replicas(&self) -> u32 {
        self.setting_u32("index.number_of_replicas", 1)
    }

    /// `index.hidden`.
    pub fn hidden(&self) -> bool {
        self.settings.get("index.hidden").and_then(Value::as_str) == Some("true")
    }

    /// Whether this single node may hold the index's shards, by its allocation filters
    /// (`index.routing.allocation.require|include|exclude.*`). When not, the index is red:
    /// reads and writes fail as on a cluster where no node matches.
    pub fn allocated(&self, flavor: Flavor) -> bool {
        let node = |attr: &str| -> Option<Vec<&str>> {
            Some(match attr {
                "_name" => vec![NODE_NAME],
                "_id" => vec![NODE_ID],
                "_host" => vec!["127.0.0.1", "localhost"],
                "_ip" | "_host_ip" | "_publish_ip" => vec!["127.0.0.1"],
                "_tier_preference" | "_tier" if flavor.has_tiers() => {
                    vec!["data_content", "data_hot", "data_warm", "data_cold"]
                }
                _ => return None,
            })
        };
        let values = |v: &Value| -> Vec<String> {
            v.as_str()
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let matches = |attr: &str, wanted: &[String]| {
            node(attr).is_some_and(|have| {
                wanted
                    .iter()
                    .any(|w| have.iter().any(|h| wildcard_match(w, h)))
            })
        };
        let mut include_seen = false;
        let mut include_ok = false;
        for (key, value) in &self.settings {
            let wanted = values(value);
            if wanted.is_empty() {
                continue;
            }
            if let Some(attr) = key.strip_prefix("index.routing.allocation.require.") {
                if !matches(attr, &wanted) {
                    return false;
                }
            } else if let Some(attr) = key.strip_prefix("index.routing.allocation.include.") {
                if attr == "_tier_preference" {
                    // data tiers: any listed tier the node has
                    if !matches(attr, &wanted) {
                        return false;
                    }
                    continue;
                }
                include_seen = true;
                include_ok |= matches(attr, &wanted);
            } else if let Some(attr) = key.strip_prefix("index.routing.allocation.exclude.")
                && matches(attr, &wanted)
            {
                return false;
            }
        }
        !include_seen || include_ok
    }

    /// The health of this index on the one-node cluster.
    pub fn health(&self, flavor: Flavor) -> &'static str {
        if self.closed || !self.allocated(flavor) {
            "red"
        } else if self.replicas() > 0 {
            "yellow"
        } else {
            "green"
        }
    }

    /// Approximate store size in bytes (sources plus a little per document).
    pub fn store_bytes(&self) -> usize {
        self.docs
            .iter()
            .flatten()
            .map(|d| d.source.len() + d.id.len() + 32)
            .sum()
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Doc>> {
        self.ids.get(id).and_then(|&slot| self.docs[slot].as_ref())
    }

    /// Live documents in insertion (`_doc`) order.
    pub fn live_docs(&self) -> impl Iterator<Item = &Arc<Doc>> {
        self.docs.iter().flatten()
    }

    /// Stores a document (create or overwrite). `source` must already be validated.
    pub fn put(&mut self, id: &str, routing: Option<&str>, source: Box<[u8]>) -> Written {
        let seq_no = self.seq;
        self.seq += 1;
        match self.ids.get(id) {
            Some(&slot) => {
                let old = self.docs[slot]
                    .as_ref()
                    .expect("id map points at a live slot");
                let version = old.version + 1;
                self.docs[slot] = Some(Arc::new(Doc {
                    id: old.id.clone(),
                    routing: routing.map(Box::from),
                    source,
                    version,
                    seq_no,
                }));
                Written {
                    version,
                    seq_no,
                    created: false,
                }
            }
            None => {
                let id: Box<str> = Box::from(id);
                self.ids.insert(id.clone(), self.docs.len());
                self.docs.push(Some(Arc::new(Doc {
                    id,
                    routing: routing.map(Box::from),
                    source,
                    version: 1,
                    seq_no,
                })));
                Written {
                    version: 1,
                    seq_no,
                    created: true,
                }
            }
        }
    }

    /// Deletes a document; `None` when it did not exist.
    pub fn delete(&mut self, id: &str) -> Option<Written> {
        let slot = self.ids.remove(id)?;
        let old = self.docs[slot]
            .take()
            .expect("id map points at a live slot");
        let seq_no = self.seq;
        self.seq += 1;
        if self.docs.len() > 1024 && self.ids.len() < self.docs.len() / 2 {
            self.compact();
        }
        Some(Written {
            version: old.version + 1,
            seq_no,
            created: false,
        })
    }

    fn compact(&mut self) {
        self.docs.retain(Option::is_some);
        self.ids.clear();
        for (slot, doc) in self.docs.iter().enumerate() {
            let doc = doc.as_ref().expect("retained");
            self.ids.insert(doc.id.clone(), slot);
        }
    }

    /// The next sequence number.
    pub fn seq_no(&self) -> u64 {
        self.seq
    }

    /// The index's settings without the generated ones (what a snapshot restores or a dump copies).
    pub fn user_settings(&self) -> BTreeMap<String, Value> {
        self.settings
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "index.uuid"
                        | "index.provided_name"
                        | "index.creation_date"
                        | "index.version.created"
                )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The one node of the cluster.
pub const NODE_NAME: &str = "cairn-test-node";
pub const NODE_ID: &str = "cairn-test-node-id";

/// Settings ES refuses to change on an open index.
const STATIC_SETTINGS: &[&str] = &[
    "index.number_of_shards",
    "index.uuid",
    "index.creation_date",
    "index.version.created",
    "index.provided_name",
];

/// A data stream: its backing indices, oldest first (the last is the write index).
#[derive(Debug, Clone)]
pub struct DataStream {
    pub indices: Vec<String>,
    pub generation: u64,
    pub template: String,
}

/// The whole cluster.
#[derive(Debug, Default)]
pub struct State {
    pub flavor: Flavor,
    /// Refuse unknown, archived and private index settings (and unknown cluster settings), as
    /// real clusters do.
    pub strict_settings: bool,
    pub indices: BTreeMap<String, Index>,
    pub persistent: BTreeMap<String, Value>,
    pub transient: BTreeMap<String, Value>,
    /// Composable index templates (`_index_template`), by name, as stored.
    pub templates: BTreeMap<String, Value>,
    /// Component templates (`_component_template`), by name.
    pub component_templates: BTreeMap<String, Value>,
    /// ILM policies (`_ilm/policy`), by name: `{"version", "modified_date", "policy"}`.
    pub ilm_policies: BTreeMap<String, Value>,
    pub data_streams: BTreeMap<String, DataStream>,
}

/// Options of an index expression, as ES's `IndicesOptions`.
#[derive(Debug, Clone, Copy)]
pub struct Expand {
    pub ignore_unavailable: bool,
    pub allow_no_indices: bool,
    /// What wildcards expand to (`expand_wildcards`): open indices by default.
    pub open: bool,
    pub closed: bool,
    pub hidden: bool,
}

impl Expand {
    pub const STRICT: Expand = Expand {
        ignore_unavailable: false,
        allow_no_indices: true,
        open: true,
        closed: false,
        hidden: false,
    };

    /// Wildcards expand to every index (what internal look-ups use).
    pub const ALL: Expand = Expand {
        ignore_unavailable: false,
        allow_no_indices: true,
        open: true,
        closed: true,
        hidden: true,
    };

    /// Reads `ignore_unavailable` / `allow_no_indices` / `expand_wildcards` query parameters
    /// over `self`.
    pub fn with_params(self, params: &HashMap<String, String>) -> Expand {
        let mut out = Expand {
            ignore_unavailable: crate::util::param_bool(
                params.get("ignore_unavailable"),
                self.ignore_unavailable,
            ),
            allow_no_indices: crate::util::param_bool(
                params.get("allow_no_indices"),
                self.allow_no_indices,
            ),
            ..self
        };
        if let Some(e) = params.get("expand_wildcards") {
            out.open = false;
            out.closed = false;
            out.hidden = false;
            for part in e.split(',') {
                match part.trim() {
                    "open" => out.open = true,
                    "closed" => out.closed = true,
                    "hidden" => out.hidden = true,
                    "all" => {
                        out.open = true;
                        out.closed = true;
                        out.hidden = true;
                    }
                    _ => {}
                }
            }
        }
        out
    }

    fn wildcard_takes(&self, index: &Index) -> bool {
        (if index.closed { self.closed } else { self.open }) && (self.hidden || !index.hidden())
    }
}

/// Checks an index name against ES's rules.
pub fn validate_index_name(name: &str) -> Result<(), EsError> {
    let why = if name.is_empty() {
        Some("must not be empty".to_string())
    } else if name != name.to_lowercase() {
        Some("must be lowercase".to_string())
    } else if let Some(c) = name.chars().find(|c| r#"\/*?"<>| ,#:"#.contains(*c)) {
        Some(if c == ':' {
            "must not contain ':'".to_string()
        } else {
            format!(
                "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?] (found [{c}])"
            )
        })
    } else if name.starts_with(['_', '-', '+']) {
        Some("must not start with '_', '-', or '+'".to_string())
    } else if name == "." || name == ".." {
        Some("must not be '.' or '..'".to_string())
    } else if name.len() > 255 {
        Some(format!("index name is too long, ({} > 255)", name.len()))
    } else {
        None
    };
    match why {
        Some(why) => Err(EsError::invalid_index_name(name, &why)),
        None => Ok(()),
    }
}

fn invalid_alias(alias: &str, why: &str) -> EsError {
    EsError::new(
        400,
        "invalid_alias_name_exception",
        format!("Invalid alias name [{alias}]: {why}"),
    )
}

/// Turns an alias definition from a request into what GET returns.
fn alias_props(def: &Value) -> Result<Value, EsError> {
    let Some(def) = def.as_object() else {
        return Ok(json!({}));
    };
    let mut out = Map::new();
    for (k, v) in def {
        match k.as_str() {
            "filter" | "is_write_index" | "is_hidden" => {
                out.insert(k.clone(), v.clone());
            }
            "routing" => {
                let r = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                out.insert("index_routing".into(), Value::String(r.clone()));
                out.insert("search_routing".into(), Value::String(r));
            }
            "index_routing" | "search_routing" => {
                let r = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                out.insert(k.clone(), Value::String(r));
            }
            "index" | "alias" | "indices" | "aliases" | "must_exist" => {}
            other => {
                return Err(EsError::illegal_argument(format!(
                    "[alias] unknown field [{other}]"
                )));
            }
        }
    }
    Ok(Value::Object(out))
}

/// Normalises index settings from a request (`{"index":{…}}`, `{"number_of_shards":1}` or
/// flat `"index.x"` keys) into flat `index.*` keys.
pub fn index_settings_from(value: &Value) -> Result<BTreeMap<String, Value>, EsError> {
    if !value.is_object() {
        return Err(EsError::illegal_argument("settings must be an object"));
    }
    let mut flat = BTreeMap::new();
    flatten_settings(value, "", &mut flat);
    Ok(flat
        .into_iter()
        .map(|(k, v)| {
            if k.starts_with("index.") {
                (k, v)
            } else {
                (format!("index.{k}"), v)
            }
        })
        .collect())
}

impl State {
    pub fn is_alias(&self, name: &str) -> bool {
        self.indices.values().any(|i| i.aliases.contains_key(name))
    }

    /// Indices an alias points at.
    pub fn alias_indices(&self, alias: &str) -> Vec<String> {
        self.indices
            .values()
            .filter(|i| i.aliases.contains_key(alias))
            .map(|i| i.name.to_string())
            .collect()
    }

    /// Resolves an index expression (comma list, wildcards, `_all`, aliases, `-exclusions`)
    /// to concrete index names, sorted.
    pub fn resolve(&self, expr: &str, opts: Expand) -> Result<Vec<String>, EsError> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        let parts: Vec<&str> = expr
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() || parts == ["_all"] {
            return Ok(self
                .indices
                .iter()
                .filter(|(_, i)| opts.wildcard_takes(i))
                .map(|(n, _)| n.clone())
                .collect());
        }
        let mut wildcard_seen = false;
        for part in parts {
            if let Some(excluded) = part.strip_prefix('-')
                && wildcard_seen
            {
                let drop: Vec<String> = out
                    .iter()
                    .filter(|name| {
                        wildcard_match(excluded, name)
                            || self.indices[name.as_str()]
                                .aliases
                                .keys()
                                .any(|a| wildcard_match(excluded, a))
                    })
                    .cloned()
                    .collect();
                for d in drop {
                    out.remove(&d);
                }
                continue;
            }
            if part == "_all" || has_wildcard(part) {
                wildcard_seen = true;
                for (name, index) in &self.indices {
                    if !opts.wildcard_takes(index) {
                        continue;
                    }
                    if part == "_all"
                        || wildcard_match(part, name)
                        || index.aliases.keys().any(|a| wildcard_match(part, a))
                    {
                        out.insert(name.clone());
                    }
                }
                for (name, ds) in &self.data_streams {
                    if (part == "_all" || wildcard_match(part, name)) && opts.open {
                        out.extend(ds.indices.iter().cloned());
                    }
                }
                continue;
            }
            if self.indices.contains_key(part) {
                out.insert(part.to_string());
            } else if let Some(ds) = self.data_streams.get(part) {
                out.extend(ds.indices.iter().cloned());
            } else if self.is_alias(part) {
                out.extend(self.alias_indices(part));
            } else if !opts.ignore_unavailable {
                return Err(EsError::index_not_found(part));
            }
        }
        if out.is_empty() && !opts.allow_no_indices {
            return Err(EsError::index_not_found(expr));
        }
        Ok(out.into_iter().collect())
    }

    /// The index a write to `name` goes to: the index itself, or an alias's write index.
    /// `Ok(None)` when nothing has that name (the caller may auto-create it).
    pub fn write_target(&self, name: &str) -> Result<Option<String>, EsError> {
        if let Some(ds) = self.data_streams.get(name) {
            return Ok(ds.indices.last().cloned());
        }
        if self.indices.contains_key(name) {
            return Ok(Some(name.to_string()));
        }
        let targets: Vec<&Index> = self
            .indices
            .values()
            .filter(|i| i.aliases.contains_key(name))
            .collect();
        if targets.is_empty() {
            return Ok(None);
        }
        let explicit: Vec<&&Index> = targets
            .iter()
            .filter(|i| i.aliases[name].get("is_write_index") == Some(&Value::Bool(true)))
            .collect();
        match (explicit.first(), targets.len()) {
            (Some(i), _) => Ok(Some(i.name.to_string())),
            (None, 1)
                if targets[0].aliases[name].get("is_write_index") != Some(&Value::Bool(false)) =>
            {
                Ok(Some(targets[0].name.to_string()))
            }
            _ => Err(EsError::illegal_argument(format!(
                "no write index is defined for alias [{name}]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index"
            ))),
        }
    }

    /// `PUT /{index}` with its body (`settings`, `mappings`, `aliases`).
    pub fn create_index(
        &mut self,
        name: &str,
        body: &Value,
        include_type_name: bool,
    ) -> Result<(), EsError> {
        validate_index_name(name)?;
        if let Some(existing) = self.indices.get(name) {
            return Err(EsError::already_exists(name, &existing.uuid));
        }
        if self.is_alias(name) {
            return Err(EsError::invalid_index_name(name, "already exists as alias"));
        }
        let empty = Map::new();
        let body = match body {
            Value::Null => &empty,
            Value::Object(m) => m,
            _ => return Err(EsError::parsing("request body must be an object")),
        };
        if let Some(key) = body
            .keys()
            .find(|k| !["settings", "mappings", "aliases"].contains(&k.as_str()))
        {
            return Err(EsError::new(
                400,
                "parse_exception",
                format!("unknown key [{key}] for create index"),
            ));
        }
        if let Some(t) = self.data_stream_template(name) {
            return Err(EsError::illegal_argument(format!(
                "cannot create index with name [{name}], because it matches with template [{t}] that creates data streams only, use create data stream api instead"
            )));
        }
        let settings = match body.get("settings") {
            Some(s) => index_settings_from(s)?,
            None => BTreeMap::new(),
        };
        self.check_settings(&settings)?;
        // Composable index templates apply first; the request's own values win.
        let (t_settings, t_mappings, t_aliases) = self.template_for(name, false);
        let mut all_settings = t_settings;
        all_settings.extend(settings);
        let mut index = Index::new(name, all_settings, self.flavor);
        if !t_mappings.is_empty() {
            mapping::merge(&mut index.mappings, &t_mappings)?;
        }
        for (alias, def) in t_aliases {
            index.aliases.insert(alias, alias_props(&def)?);
        }
        if let Some(m) = body.get("mappings") {
            let m = unwrap_typed_mapping(m, include_type_name)?;
            mapping::merge_overriding(&mut index.mappings, &m)?;
        }
        if let Some(aliases) = body.get("aliases") {
            let Some(aliases) = aliases.as_object() else {
                return Err(EsError::parsing("aliases must be an object"));
            };
            for (alias, def) in aliases {
                if self.indices.contains_key(alias) || alias == name {
                    return Err(invalid_alias(
                        alias,
                        "an index or data stream exists with the same name as the alias",
                    ));
                }
                index.aliases.insert(alias.clone(), alias_props(def)?);
            }
        }
        self.indices.insert(name.to_string(), index);
        Ok(())
    }

    /// Creates an index with no settings (bulk's and index API's auto-create), or the data
    /// stream a data-stream template makes of that name.
    pub fn auto_create(&mut self, name: &str) -> Result<(), EsError> {
        if self.data_stream_template(name).is_some() {
            return self.create_data_stream(name);
        }
        self.create_index(name, &Value::Null, false)
    }

    /// Refuses settings a real cluster refuses (when `strict_settings`).
    pub fn check_settings(&self, flat: &BTreeMap<String, Value>) -> Result<(), EsError> {
        if !self.strict_settings {
            return Ok(());
        }
        for (k, v) in flat {
            if v.is_null() {
                continue;
            }
            self.flavor
                .check_index_setting(k, v)
                .map_err(EsError::illegal_argument)?;
        }
        Ok(())
    }

    /// The highest-priority composable template matching `name` (data-stream templates only
    /// when `data_stream`), composed: (settings, mappings, aliases).
    pub fn template_for(
        &self,
        name: &str,
        data_stream: bool,
    ) -> (
        BTreeMap<String, Value>,
        Map<String, Value>,
        Map<String, Value>,
    ) {
        let mut settings = BTreeMap::new();
        let mut mappings = Map::new();
        let mut aliases = Map::new();
        let Some((_, template)) = self.matching_template(name) else {
            return (settings, mappings, aliases);
        };
        if template.get("data_stream").is_some() != data_stream {
            return (settings, mappings, aliases);
        }
        let mut parts: Vec<&Value> = Vec::new();
        for c in template["composed_of"].as_array().into_iter().flatten() {
            if let Some(ct) = c.as_str().and_then(|c| self.component_templates.get(c)) {
                parts.push(&ct["template"]);
            }
        }
        parts.push(&template["template"]);
        for part in parts {
            if let Some(s) = part.get("settings")
                && let Ok(flat) = index_settings_from(s)
            {
                settings.extend(flat);
            }
            if let Some(Value::Object(m)) = part.get("mappings") {
                let _ = mapping::merge_overriding(&mut mappings, m);
            }
            if let Some(Value::Object(a)) = part.get("aliases") {
                aliases.extend(a.clone());
            }
        }
        (settings, mappings, aliases)
    }

    /// The composable template (name, body) with the highest priority whose patterns match.
    pub fn matching_template(&self, name: &str) -> Option<(&String, &Value)> {
        self.templates
            .iter()
            .filter(|(_, t)| {
                t["index_patterns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .any(|p| wildcard_match(p, name))
            })
            .max_by_key(|(_, t)| t["priority"].as_u64().unwrap_or(0))
    }

    /// The name of the data-stream template matching `name`, if the best match is one.
    pub fn data_stream_template(&self, name: &str) -> Option<String> {
        self.matching_template(name)
            .filter(|(_, t)| t.get("data_stream").is_some())
            .map(|(n, _)| n.clone())
    }

    /// `PUT /_data_stream/{name}` (and auto-creation on first write).
    pub fn create_data_stream(&mut self, name: &str) -> Result<(), EsError> {
        validate_index_name(name)?;
        if self.data_streams.contains_key(name) {
            return Err(EsError::new(
                400,
                "resource_already_exists_exception",
                format!("data_stream [{name}] already exists"),
            ));
        }
        if self.indices.contains_key(name) || self.is_alias(name) {
            return Err(EsError::illegal_argument(format!(
                "data stream [{name}] conflicts with index or alias"
            )));
        }
        let Some(template) = self.data_stream_template(name) else {
            return Err(EsError::illegal_argument(format!(
                "no matching index template found for data stream [{name}]"
            )));
        };
        self.data_streams.insert(
            name.to_string(),
            DataStream {
                indices: Vec::new(),
                generation: 0,
                template,
            },
        );
        self.roll_over(name).map(|_| ())
    }

    /// Adds the next backing index to data stream `name`; returns its name.
    pub fn roll_over(&mut self, name: &str) -> Result<String, EsError> {
        let generation = self
            .data_streams
            .get(name)
            .map(|d| d.generation + 1)
            .ok_or_else(|| EsError::index_not_found(name))?;
        let day = crate::util::iso_millis(now_millis());
        let backing = format!(".ds-{name}-{}-{generation:06}", day[..10].replace('-', "."));
        let (mut settings, t_mappings, _) = self.template_for(name, true);
        settings.insert("index.hidden".into(), Value::String("true".into()));
        let mut index = Index::new(&backing, settings, self.flavor);
        index.mappings = t_mappings;
        let ts = serde_json::json!({"_data_stream_timestamp": {"enabled": true},
            "properties": {"@timestamp": {"type": "date"}}});
        mapping::merge_overriding(&mut index.mappings, ts.as_object().expect("object"))?;
        index.data_stream = Some(name.to_string());
        self.indices.insert(backing.clone(), index);
        let ds = self.data_streams.get_mut(name).expect("checked");
        ds.generation = generation;
        ds.indices.push(backing.clone());
        Ok(backing)
    }

    /// `PUT /{pattern}/_settings`.
    pub fn update_settings(&mut self, names: &[String], body: &Value) -> Result<(), EsError> {
        let body = body.get("settings").unwrap_or(body);
        let flat = index_settings_from(body)?;
        self.check_settings(&flat)?;
        let static_changes: Vec<&String> = flat
            .keys()
            .filter(|k| STATIC_SETTINGS.contains(&k.as_str()))
            .collect();
        let all_closed = names.iter().all(|n| self.indices[n].closed);
        if !static_changes.is_empty() && !all_closed {
            let targets: Vec<String> = names
                .iter()
                .map(|n| format!("[{n}/{}]", self.indices[n].uuid))
                .collect();
            return Err(EsError::illegal_argument(format!(
                "Can't update non dynamic settings [[{}]] for open indices [{}]",
                static_changes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                targets.join(", ")
            )));
        }
        for name in names {
            let index = self.indices.get_mut(name).expect("resolved");
            for (k, v) in &flat {
                if v.is_null() {
                    index.settings.remove(k);
                } else {
                    index.settings.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(())
    }

    /// `POST /_aliases`: applies every action to a copy of the alias table, then commits.
    pub fn update_aliases(&mut self, body: &Value) -> Result<(), EsError> {
        let Some(actions) = body.get("actions").and_then(Value::as_array) else {
            return Err(EsError::new(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: Must specify at least one alias action;",
            ));
        };
        if actions.is_empty() {
            return Err(EsError::new(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: Must specify at least one alias action;",
            ));
        }
        // index → aliases, for the indices that remain.
        let mut table: BTreeMap<String, BTreeMap<String, Value>> = self
            .indices
            .iter()
            .map(|(n, i)| (n.clone(), i.aliases.clone()))
            .collect();
        let mut removed_indices: Vec<String> = Vec::new();
        for action in actions {
            let Some((kind, def)) = action.as_object().and_then(|o| o.iter().next()) else {
                return Err(EsError::parsing(
                    "each alias action must be an object with one key",
                ));
            };
            let strings = |single: &str, plural: &str| -> Vec<String> {
                let mut out = Vec::new();
                if let Some(s) = def.get(single).and_then(Value::as_str) {
                    out.push(s.to_string());
                }
                if let Some(list) = def.get(plural).and_then(Value::as_array) {
                    out.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
                }
                out
            };
            let index_exprs = strings("index", "indices");
            if index_exprs.is_empty() {
                return Err(EsError::new(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: One of [index] or [indices] is required;",
                ));
            }
            let mut targets: BTreeSet<String> = BTreeSet::new();
            for expr in &index_exprs {
                if has_wildcard(expr) || expr == "_all" {
                    let matched: Vec<&String> = table
                        .keys()
                        .filter(|n| expr == "_all" || wildcard_match(expr, n))
                        .collect();
                    if matched.is_empty() {
                        return Err(EsError::index_not_found(expr));
                    }
                    targets.extend(matched.into_iter().cloned());
                } else if table.contains_key(expr) {
                    targets.insert(expr.clone());
                } else {
                    return Err(EsError::index_not_found(expr));
                }
            }
            match kind.as_str() {
                "add" => {
                    let aliases = strings("alias", "aliases");
                    if aliases.is_empty() {
                        return Err(EsError::new(
                            400,
                            "action_request_validation_exception",
                            "Validation Failed: 1: [alias] or [aliases] is required;",
                        ));
                    }
                    let props = alias_props(def)?;
                    for alias in &aliases {
                        validate_index_name(alias).map_err(|e| {
                            invalid_alias(alias, e.reason.split(", ").nth(1).unwrap_or("invalid"))
                        })?;
                        if table.contains_key(alias) {
                            return Err(invalid_alias(
                                alias,
                                "an index or data stream exists with the same name as the alias",
                            ));
                        }
                        for t in &targets {
                            table
                                .get_mut(t)
                                .expect("target")
                                .insert(alias.clone(), props.clone());
                        }
                    }
                }
                "remove" => {
                    let aliases = strings("alias", "aliases");
                    let must_exist = def
                        .get("must_exist")
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    for t in &targets {
                        let current = table.get_mut(t).expect("target");
                        for alias in &aliases {
                            let matching: Vec<String> = current
                                .keys()
                                .filter(|a| wildcard_match(alias, a))
                                .cloned()
                                .collect();
                            if matching.is_empty() && must_exist {
                                return Err(EsError::new(
                                    404,
                                    "aliases_not_found_exception",
                                    format!("aliases [{alias}] missing"),
                                )
                                .with("resource.type", "aliases")
                                .with("resource.id", alias.as_str()));
                            }
                            for a in matching {
                                current.remove(&a);
                            }
                        }
                    }
                }
                "remove_index" => {
                    for t in targets {
                        table.remove(&t);
                        removed_indices.push(t);
                    }
                }
                other => {
                    return Err(EsError::new(
                        400,
                        "x_content_parse_exception",
                        format!(
                            "[1:{}] [alias_action] unknown field [{other}]",
                            other.len() + 14
                        ),
                    ));
                }
            }
        }
        for name in removed_indices {
            self.indices.remove(&name);
        }
        for (name, aliases) in table {
            if let Some(index) = self.indices.get_mut(&name) {
                index.aliases = aliases;
            }
        }
        Ok(())
    }

    /// Cluster settings: `transient`/`persistent`, flat or nested, `null` (and `x.*: null`) resets.
    pub fn update_cluster_settings(&mut self, body: &Value) -> Result<(Value, Value), EsError> {
        let (flavor, strict) = (self.flavor, self.strict_settings);
        let mut applied = (BTreeMap::new(), BTreeMap::new());
        for (scope, target) in [
            ("persistent", &mut self.persistent),
            ("transient", &mut self.transient),
        ] {
            let Some(section) = body.get(scope) else {
                continue;
            };
            let mut flat = BTreeMap::new();
            flatten_settings(section, "", &mut flat);
            if strict {
                for k in flat.keys() {
                    if let Err(why) = flavor.check_cluster_setting(k) {
                        return Err(EsError::illegal_argument(why.replace("persistent", scope)));
                    }
                }
            }
            for (k, v) in flat {
                if v.is_null() {
                    if has_wildcard(&k) {
                        target.retain(|key, _| !wildcard_match(&k, key));
                    } else {
                        target.remove(&k);
                    }
                } else {
                    target.insert(k.clone(), v.clone());
                }
                let out = if scope == "persistent" {
                    &mut applied.0
                } else {
                    &mut applied.1
                };
                out.entry(k).or_insert(Value::Null);
            }
        }
        let render = |keys: &BTreeMap<String, Value>, from: &BTreeMap<String, Value>| {
            let present: BTreeMap<String, Value> = keys
                .keys()
                .filter_map(|k| from.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            crate::util::nest_settings(&present)
        };
        Ok((
            render(&applied.0, &self.persistent),
            render(&applied.1, &self.transient),
        ))
    }
}

/// Accepts `{"_doc": {"properties": …}}` when `include_type_name=true` (ES 7's typed form).
pub fn unwrap_typed_mapping(
    m: &Value,
    include_type_name: bool,
) -> Result<Map<String, Value>, EsError> {
    let Some(obj) = m.as_object() else {
        return Err(EsError::mapper_parsing("mappings must be an object"));
    };
    if include_type_name && obj.len() == 1 {
        let (_, inner) = obj.iter().next().expect("one entry");
        if let Some(inner) = inner.as_object() {
            return Ok(inner.clone());
        }
    }
    Ok(obj.clone())
}
