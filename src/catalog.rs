//! Catalogs: what `discover` prints (Airbyte and Singer) and what a configured catalog asks
//! to read. Both directions are derived from the stream table; there is no hand-written
//! catalog. Parsing is permissive where real callers are sloppy (explicit nulls, unknown
//! keys, PyAirbyte asking `incremental` of full-refresh streams) and strict where the
//! protocol is (invalid sync modes fail the read with a config error).

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::error::Error;
use crate::streams::{self, StreamSpec, Token, STREAMS};

/// Which streams the configured tokens can read: server streams with `server_token`, the
/// account streams (`servers`, `domains`, `sender_signatures`) with `account_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub server: bool,
    pub account: bool,
}

// Whole-account mode (an account token): server streams are read per server of the account,
// and their records and keys carry `ServerID`.
impl Offer {
    pub fn whole_account(&self) -> bool {
        self.account
    }
}

impl Offer {
    /// A server token only (the committed golden catalogs).
    pub const SERVER: Offer = Offer {
        server: true,
        account: false,
    };

    pub fn of(config: &Config) -> Offer {
        Offer {
            server: config.server_token.is_some(),
            account: config.account_token.is_some(),
        }
    }

    /// Server streams need a server token, or the account token (which reads every server's
    /// own token from the server list); account streams need the account token.
    pub fn offers(&self, spec: &StreamSpec) -> bool {
        match spec.token {
            Token::Server => self.server || self.account,
            Token::Account => self.account,
        }
    }
}

/// One stream a read will sync.
#[derive(Debug, Clone)]
pub struct SelectedStream {
    pub spec: &'static StreamSpec,
    /// Incremental (bookmarks honoured) or full refresh.
    pub incremental: bool,
    /// Fields the user deselected (Singer field selection); never the key.
    pub excluded_fields: Vec<String>,
    /// Whole-account mode: the records carry `ServerID`, and keys unique only within a
    /// server start with it. Set from the config once the catalog is read.
    pub whole_account: bool,
}

impl SelectedStream {
    pub fn all_default(offer: Offer) -> Vec<SelectedStream> {
        STREAMS
            .iter()
            .filter(|spec| spec.opt_in.is_none() && offer.offers(spec))
            .map(|spec| SelectedStream {
                spec,
                incremental: spec.is_incremental(),
                excluded_fields: Vec::new(),
                whole_account: offer.whole_account(),
            })
            .collect()
    }

    /// Sets the mode; `ServerID` is never a deselected field in whole-account mode.
    pub fn in_mode(mut self, whole_account: bool) -> SelectedStream {
        self.whole_account = whole_account && self.spec.per_server();
        if self.whole_account {
            self.excluded_fields.retain(|f| f != streams::SERVER_ID);
        }
        self
    }

    /// The key announced for this stream in its mode.
    pub fn key(&self) -> Vec<&'static str> {
        self.spec.key_in(self.whole_account)
    }

    /// The stream's schema without the deselected fields (what Singer SCHEMA announces).
    pub fn schema(&self) -> Value {
        let mut schema = self.spec.schema_in(self.whole_account);
        if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
            for f in &self.excluded_fields {
                props.remove(f);
            }
        }
        schema
    }
}

/// The streams to read, plus configured names this connector does not know.
#[derive(Debug, Default)]
pub struct Selection {
    pub streams: Vec<SelectedStream>,
    pub unknown: Vec<String>,
}

// ---------------------------------------------------------------- discover output

/// Airbyte's key: a list of field paths, one per key field (`[["MessageID"], ["Recipient"]]`).
fn key_paths(spec: &StreamSpec, whole_account: bool) -> Value {
    json!(spec
        .key_in(whole_account)
        .iter()
        .map(|k| [k])
        .collect::<Vec<_>>())
}

pub fn airbyte_catalog(offer: Offer) -> Value {
    let streams: Vec<Value> = STREAMS
        .iter()
        .filter(|s| offer.offers(s))
        .map(|s| airbyte_stream(s, offer.whole_account()))
        .collect();
    json!({ "streams": streams })
}

fn airbyte_stream(spec: &StreamSpec, whole_account: bool) -> Value {
    let mut s = json!({
        "name": spec.name,
        "json_schema": spec.schema_in(whole_account),
        "supported_sync_modes": if spec.is_incremental() {
            json!(["full_refresh", "incremental"])
        } else {
            json!(["full_refresh"])
        },
        "source_defined_primary_key": key_paths(spec, whole_account),
        "is_resumable": spec.is_incremental(),
    });
    if spec.is_incremental() {
        s["source_defined_cursor"] = json!(true);
        if let Some(c) = spec.cursor_field() {
            s["default_cursor_field"] = json!([c]);
        }
    }
    s
}

/// A ready-to-use configured catalog: every server stream, incremental where supported.
pub fn airbyte_configured_catalog() -> Value {
    let streams: Vec<Value> = STREAMS
        .iter()
        .filter(|s| Offer::SERVER.offers(s))
        .map(|spec| {
            let mut c = json!({
                "stream": airbyte_stream(spec, false),
                "sync_mode": if spec.is_incremental() { "incremental" } else { "full_refresh" },
                "destination_sync_mode": if spec.is_incremental() { "append_dedup" } else { "overwrite" },
                "primary_key": key_paths(spec, false),
            });
            if let Some(cf) = spec.cursor_field() {
                c["cursor_field"] = json!([cf]);
            }
            c
        })
        .collect();
    json!({ "streams": streams })
}

pub fn singer_catalog(offer: Offer) -> Value {
    let streams: Vec<Value> = STREAMS
        .iter()
        .filter(|s| offer.offers(s))
        .map(|s| singer_stream(s, offer.whole_account()))
        .collect();
    json!({ "streams": streams })
}

fn singer_stream(spec: &StreamSpec, whole_account: bool) -> Value {
    let key = spec.key_in(whole_account);
    let method = if spec.is_incremental() {
        "INCREMENTAL"
    } else {
        "FULL_TABLE"
    };
    let mut stream_md = json!({
        "inclusion": "available",
        "selected-by-default": spec.opt_in.is_none(),
        "table-key-properties": key,
    });
    if spec.is_incremental() {
        stream_md["valid-replication-keys"] =
            json!(spec.replication_key().into_iter().collect::<Vec<_>>());
        if let Some(c) = spec.replication_key() {
            stream_md["replication-key"] = json!(c);
        }
        stream_md["replication-method"] = json!("INCREMENTAL");
        // What the tap does unless a catalog asks for FULL_TABLE (which it honours).
        stream_md["forced-replication-method"] = json!("INCREMENTAL");
    } else {
        stream_md["forced-replication-method"] = json!("FULL_TABLE");
    }
    let mut metadata = vec![json!({"breadcrumb": [], "metadata": stream_md})];
    for field in spec.property_names_in(whole_account) {
        // `ServerID` says which server a record is from: never deselected.
        let automatic = key.contains(&field.as_str())
            || Some(field.as_str()) == spec.replication_key()
            || (whole_account && spec.per_server() && field == streams::SERVER_ID);
        let md = if automatic {
            json!({"inclusion": "automatic"})
        } else {
            json!({"inclusion": "available", "selected-by-default": true})
        };
        metadata.push(json!({"breadcrumb": ["properties", field], "metadata": md}));
    }
    let mut s = json!({
        "tap_stream_id": spec.name,
        "stream": spec.name,
        "schema": spec.schema_in(whole_account),
        "key_properties": key,
        "replication_method": method,
        "metadata": metadata,
    });
    if let Some(c) = spec.replication_key() {
        s["replication_key"] = json!(c);
    }
    s
}

// ---------------------------------------------------------------- configured catalogs

fn read_json(path: &Path, what: &str) -> Result<Value, Error> {
    let label = format!("{what} '{}'", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::input(&label, format!("cannot read the file ({e})")))?;
    serde_json::from_str(&text).map_err(|e| Error::input(&label, format!("not valid JSON: {e}")))
}

/// Parses an Airbyte ConfiguredAirbyteCatalog.
pub fn load_airbyte(path: &Path) -> Result<Selection, Error> {
    let value = read_json(path, "catalog")?;
    parse_airbyte(&value).map_err(|m| Error::input(format!("catalog '{}'", path.display()), m))
}

pub fn parse_airbyte(value: &Value) -> Result<Selection, String> {
    let entries = value
        .get("streams")
        .and_then(|s| s.as_array())
        .ok_or("expected an object with a \"streams\" array (a ConfiguredAirbyteCatalog)")?;
    let mut selection = Selection::default();
    let mut seen = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let name = entry
            .pointer("/stream/name")
            .and_then(|n| n.as_str())
            .ok_or_else(|| format!("streams[{i}].stream.name is missing"))?;
        listed_once(&mut seen, name, i)?;
        let sync_mode = entry
            .get("sync_mode")
            .and_then(|m| m.as_str())
            .unwrap_or("");
        let incremental = match sync_mode {
            "incremental" => true,
            "full_refresh" => false,
            other => {
                return Err(format!(
                    "streams[{i}] ('{name}'): sync_mode \"{other}\" is not valid; use \"full_refresh\" or \"incremental\""
                ))
            }
        };
        match entry.get("destination_sync_mode").and_then(|m| m.as_str()) {
            None | Some("append" | "overwrite" | "append_dedup" | "update" | "soft_delete") => {}
            Some(other) => {
                return Err(format!(
                    "streams[{i}] ('{name}'): destination_sync_mode \"{other}\" is not valid; use append, overwrite or append_dedup"
                ))
            }
        }
        match streams::find(name) {
            Some(spec) => selection.streams.push(SelectedStream {
                spec,
                // PyAirbyte asks `incremental` of every stream: a full-refresh-only stream
                // is then read in full, not rejected.
                incremental: incremental && spec.is_incremental(),
                excluded_fields: Vec::new(),
                whole_account: false,
            }),
            None => selection.unknown.push(name.to_string()),
        }
    }
    Ok(selection)
}

/// Parses a Singer catalog (`--catalog` or `--properties`) and applies selection rules.
pub fn load_singer(path: &Path) -> Result<Selection, Error> {
    let value = read_json(path, "catalog")?;
    parse_singer(&value).map_err(|m| Error::input(format!("catalog '{}'", path.display()), m))
}

pub fn parse_singer(value: &Value) -> Result<Selection, String> {
    let entries = value
        .get("streams")
        .and_then(|s| s.as_array())
        .ok_or("expected an object with a \"streams\" array (a Singer catalog from --discover)")?;
    let mut selection = Selection::default();
    let mut seen = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let name = entry
            .get("tap_stream_id")
            .or_else(|| entry.get("stream"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| format!("streams[{i}] has no \"tap_stream_id\""))?;
        listed_once(&mut seen, name, i)?;
        let metadata = metadata_map(entry);
        let stream_md = metadata
            .iter()
            .find(|(crumb, _)| crumb.is_empty())
            .map(|(_, md)| md.clone())
            .unwrap_or_default();
        if !stream_selected(entry, &stream_md, metadata.is_empty()) {
            continue;
        }
        let Some(spec) = streams::find(name) else {
            selection.unknown.push(name.to_string());
            continue;
        };
        let method = stream_md
            .get("replication-method")
            .or_else(|| entry.get("replication_method"))
            .or_else(|| stream_md.get("forced-replication-method"))
            .and_then(|m| m.as_str())
            .unwrap_or(if spec.is_incremental() {
                "INCREMENTAL"
            } else {
                "FULL_TABLE"
            });
        let incremental = match method.to_ascii_uppercase().as_str() {
            "INCREMENTAL" => spec.is_incremental(),
            "FULL_TABLE" => false,
            other => {
                return Err(format!(
                    "stream '{name}': replication-method \"{other}\" is not supported; use INCREMENTAL or FULL_TABLE"
                ))
            }
        };
        if let Some(key) = stream_md
            .get("replication-key")
            .or_else(|| entry.get("replication_key"))
            .and_then(|k| k.as_str())
        {
            if incremental && spec.replication_key() != Some(key) {
                return Err(format!(
                    "stream '{name}': replication-key \"{key}\" is not supported; {}",
                    match spec.replication_key() {
                        Some(c) => format!("use \"{c}\""),
                        None => "leave it unset".into(),
                    }
                ));
            }
        }
        let mut excluded = Vec::new();
        for (crumb, md) in &metadata {
            if let [p, field] = crumb.as_slice() {
                if p == "properties"
                    && !spec.is_key(field)
                    && Some(field.as_str()) != spec.replication_key()
                    && !field_selected(md)
                {
                    excluded.push(field.clone());
                }
            }
        }
        excluded.sort();
        selection.streams.push(SelectedStream {
            spec,
            incremental,
            excluded_fields: excluded,
            whole_account: false,
        });
    }
    Ok(selection)
}

/// A stream listed twice would be read twice (every row duplicated) or with two
/// conflicting settings: the catalog is rejected instead.
fn listed_once<'a>(
    seen: &mut Vec<(&'a str, usize)>,
    name: &'a str,
    i: usize,
) -> Result<(), String> {
    if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
        return Err(format!(
            "streams[{i}]: stream '{name}' is listed twice (also streams[{first}]); list each stream once"
        ));
    }
    seen.push((name, i));
    Ok(())
}

fn metadata_map(entry: &Value) -> Vec<(Vec<String>, Map<String, Value>)> {
    entry
        .get("metadata")
        .and_then(|m| m.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    let crumb = item
                        .get("breadcrumb")?
                        .as_array()?
                        .iter()
                        .map(|c| c.as_str().unwrap_or("").to_string())
                        .collect();
                    let md = item.get("metadata")?.as_object()?.clone();
                    Some((crumb, md))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(s.eq_ignore_ascii_case("true")),
        _ => None,
    }
}

/// Singer selection rules for a stream (singer-sdk `_breadcrumb_is_selected`).
fn stream_selected(entry: &Value, md: &Map<String, Value>, no_metadata: bool) -> bool {
    if no_metadata && entry.get("selected").is_none() && entry.pointer("/schema/selected").is_none()
    {
        return true;
    }
    match md.get("inclusion").and_then(|v| v.as_str()) {
        Some("unsupported") => return false,
        Some("automatic") => return true,
        _ => {}
    }
    if let Some(sel) = md
        .get("selected")
        .or_else(|| entry.get("selected"))
        .or_else(|| entry.pointer("/schema/selected"))
        .and_then(truthy)
    {
        return sel;
    }
    md.get("selected-by-default")
        .and_then(truthy)
        .unwrap_or(false)
}

fn field_selected(md: &Map<String, Value>) -> bool {
    match md.get("inclusion").and_then(|v| v.as_str()) {
        Some("unsupported") => return false,
        Some("automatic") => return true,
        _ => {}
    }
    if let Some(sel) = md.get("selected").and_then(truthy) {
        return sel;
    }
    md.get("selected-by-default")
        .and_then(truthy)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyairbyte_incremental_on_a_full_refresh_stream_reads_in_full() {
        let cat = json!({"streams": [
            {"stream": {"name": "templates", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
             "sync_mode": "incremental", "destination_sync_mode": "overwrite",
             "cursor_field": null, "primary_key": null},
            {"stream": {"name": "bounces"}, "sync_mode": "incremental", "destination_sync_mode": "append_dedup"}
        ]});
        let sel = parse_airbyte(&cat).unwrap();
        assert!(!sel.streams[0].incremental);
        assert!(sel.streams[1].incremental);
    }

    #[test]
    fn an_invalid_sync_mode_is_a_config_error_naming_the_stream() {
        let cat = json!({"streams": [{"stream": {"name": "__AIRBYTE__stream_that_does_not_exist"},
            "sync_mode": "INVALID", "destination_sync_mode": "INVALID"}]});
        let err = parse_airbyte(&cat).unwrap_err();
        assert!(
            err.contains("INVALID") && err.contains("__AIRBYTE__"),
            "{err}"
        );
    }

    #[test]
    fn unknown_airbyte_streams_are_listed_not_fatal() {
        let cat = json!({"streams": [{"stream": {"name": "sender_signatures_v0"}, "sync_mode": "full_refresh",
            "destination_sync_mode": "append"}]});
        let sel = parse_airbyte(&cat).unwrap();
        assert_eq!(sel.unknown, vec!["sender_signatures_v0".to_string()]);
    }

    #[test]
    fn singer_selection_honours_stream_and_field_flags() {
        let mut cat = singer_catalog(Offer::SERVER);
        for s in cat["streams"].as_array_mut().unwrap() {
            let name = s["tap_stream_id"].as_str().unwrap().to_string();
            for m in s["metadata"].as_array_mut().unwrap() {
                let crumb = m["breadcrumb"].clone();
                if crumb == json!([]) {
                    m["metadata"]["selected"] = json!(name == "bounces");
                }
                if crumb == json!(["properties", "Details"]) || crumb == json!(["properties", "ID"])
                {
                    m["metadata"]["selected"] = json!(false);
                }
            }
        }
        let sel = parse_singer(&cat).unwrap();
        assert_eq!(sel.streams.len(), 1);
        assert_eq!(sel.streams[0].spec.name, "bounces");
        // The key is automatic: deselecting it has no effect.
        assert_eq!(sel.streams[0].excluded_fields, vec!["Details".to_string()]);
        assert!(sel.streams[0].incremental);
        assert!(sel.streams[0].schema()["properties"]
            .get("Details")
            .is_none());
    }

    #[test]
    fn singer_full_table_override_turns_incremental_off() {
        let mut cat = singer_catalog(Offer::SERVER);
        let s = &mut cat["streams"][0];
        s["metadata"][0]["metadata"]["replication-method"] = json!("FULL_TABLE");
        let sel = parse_singer(&cat).unwrap();
        assert_eq!(sel.streams[0].spec.name, "messages_outbound");
        assert!(!sel.streams[0].incremental);
    }

    #[test]
    fn a_stream_listed_twice_is_rejected_in_both_catalog_kinds() {
        let entry = json!({"stream": {"name": "bounces"}, "sync_mode": "incremental"});
        let err = parse_airbyte(&json!({"streams": [entry.clone(), entry]})).unwrap_err();
        assert!(err.contains("'bounces' is listed twice"), "{err}");
        let s = json!({"tap_stream_id": "templates", "stream": "templates", "schema": {}});
        let err = parse_singer(&json!({"streams": [s.clone(), s]})).unwrap_err();
        assert!(err.contains("'templates' is listed twice"), "{err}");
    }

    #[test]
    fn a_catalog_without_metadata_selects_every_stream() {
        let cat = json!({"streams": [{"tap_stream_id": "templates", "stream": "templates", "schema": {}}]});
        let sel = parse_singer(&cat).unwrap();
        assert_eq!(sel.streams.len(), 1);
    }
}
