//! The stream table: every Postmark list endpoint the connector reads, described as data.
//!
//! Nothing else in the code knows stream names, paths or envelope keys. `discover` loops
//! over [`STREAMS`]; `sync` reads every row with the same engine. A new stream is a new row
//! (plus its JSON Schema in `catalogs/schemas/`).

/// How a stream's rows are spread over Postmark message streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// One query covers the stream (templates, inbound messages, the stream list itself).
    None,
    /// One query per Transactional or Broadcasts message stream (`messagestream=<ID>`),
    /// because Postmark answers only the default `outbound` stream when it is left out.
    OutboundStreams,
    /// One query per message stream of any type: inbound-processing bounces can sit in the
    /// inbound stream.
    AllStreams,
}

/// How a stream pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `count` (≤ 500) and `offset`, with `count + offset ≤ 10,000`.
    CountOffset,
    /// The endpoint returns everything at once.
    Single,
}

/// Where a stream's incremental cursor comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Full refresh only: no timestamps to filter on.
    None,
    /// Time windows filtered by `fromdate`/`todate`; records carry the cursor field, so
    /// records outside a window are dropped client-side.
    Field(&'static str),
    /// Time windows, but records carry no server timestamp (inbound): the window end is the
    /// cursor, and windows rely on Postmark's inclusive-to-the-second filter.
    WindowEnd,
}

/// Added to every inbound record: Postmark received the message before this instant (and at
/// or after the start of the same window); a cursor Singer targets can use.
pub const RECEIVED_BEFORE: &str = "ReceivedBefore";

/// One Postmark list endpoint. `sync` handles every row the same way.
#[derive(Debug)]
pub struct StreamSpec {
    /// Stream name in catalogs and messages.
    pub name: &'static str,
    /// API path, e.g. `/bounces`.
    pub path: &'static str,
    /// Key of the record array in the response envelope, e.g. `Bounces`.
    pub records_key: &'static str,
    /// Primary key field.
    pub primary_key: &'static str,
    pub cursor: Cursor,
    pub partitioning: Partitioning,
    pub paging: Paging,
    /// Fixed query parameters sent on every request.
    pub extra_query: &'static [(&'static str, &'static str)],
    /// Filters that split a one-second window further, tried in order, each with every
    /// value the endpoint accepts.
    pub split_filters: &'static [(&'static str, &'static [&'static str])],
    /// JSON Schema of a record, from `catalogs/schemas/`.
    pub schema_json: &'static str,
}

impl StreamSpec {
    pub fn is_incremental(&self) -> bool {
        self.cursor != Cursor::None
    }

    /// The name used for the cursor in catalogs (`default_cursor_field`, Singer
    /// `replication-key`). Inbound messages have none in their records.
    pub fn cursor_field(&self) -> Option<&'static str> {
        match self.cursor {
            Cursor::Field(f) => Some(f),
            _ => None,
        }
    }

    /// The record field Singer metadata names as replication key: the cursor field, or for
    /// inbound messages (no receive time in their records) [`RECEIVED_BEFORE`], which the
    /// connector adds to each record: the end of the window it was read in.
    pub fn replication_key(&self) -> Option<&'static str> {
        match self.cursor {
            Cursor::Field(f) => Some(f),
            Cursor::WindowEnd => Some(RECEIVED_BEFORE),
            Cursor::None => None,
        }
    }

    pub fn schema(&self) -> serde_json::Value {
        // The schema files are part of the binary and checked by unit tests; an unreadable
        // one is a build defect, reported as an empty object rather than a panic.
        serde_json::from_str(self.schema_json).unwrap_or_default()
    }

    /// Top-level properties declared `format: date-time`: normalised to UTC on output.
    pub fn datetime_fields(&self) -> Vec<String> {
        let schema = self.schema();
        let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
            return Vec::new();
        };
        props
            .iter()
            .filter(|(_, s)| s.get("format").and_then(|f| f.as_str()) == Some("date-time"))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn property_names(&self) -> Vec<String> {
        self.schema()
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Outbound `status` filter values (lowercase, as the filter takes them).
const OUTBOUND_STATUSES: &[&str] = &["queued", "sent", "processed"];
/// Inbound `status` filter values.
const INBOUND_STATUSES: &[&str] = &["blocked", "processed", "queued", "failed", "scheduled"];
/// Bounce `type` names (api.md §4.5).
const BOUNCE_TYPES: &[&str] = &[
    "HardBounce",
    "Transient",
    "Unsubscribe",
    "Subscribe",
    "AutoResponder",
    "AddressChange",
    "DnsError",
    "SpamNotification",
    "OpenRelayTest",
    "Unknown",
    "SoftBounce",
    "VirusNotification",
    "ChallengeVerification",
    "BadEmailAddress",
    "SpamComplaint",
    "ManuallyDeactivated",
    "Unconfirmed",
    "Blocked",
    "SMTPApiError",
    "InboundError",
    "DMARCPolicy",
    "TemplateRenderingFailed",
];

pub const STREAMS: &[StreamSpec] = &[
    StreamSpec {
        name: "messages_outbound",
        path: "/messages/outbound",
        records_key: "Messages",
        primary_key: "MessageID",
        cursor: Cursor::Field("ReceivedAt"),
        partitioning: Partitioning::OutboundStreams,
        paging: Paging::CountOffset,
        extra_query: &[],
        split_filters: &[("status", OUTBOUND_STATUSES)],
        schema_json: include_str!("../catalogs/schemas/messages_outbound.json"),
    },
    StreamSpec {
        name: "messages_inbound",
        path: "/messages/inbound",
        records_key: "InboundMessages",
        primary_key: "MessageID",
        cursor: Cursor::WindowEnd,
        partitioning: Partitioning::None,
        paging: Paging::CountOffset,
        extra_query: &[],
        split_filters: &[("status", INBOUND_STATUSES)],
        schema_json: include_str!("../catalogs/schemas/messages_inbound.json"),
    },
    StreamSpec {
        name: "bounces",
        path: "/bounces",
        records_key: "Bounces",
        primary_key: "ID",
        cursor: Cursor::Field("BouncedAt"),
        partitioning: Partitioning::AllStreams,
        paging: Paging::CountOffset,
        extra_query: &[],
        split_filters: &[("type", BOUNCE_TYPES)],
        schema_json: include_str!("../catalogs/schemas/bounces.json"),
    },
    StreamSpec {
        name: "templates",
        path: "/templates",
        records_key: "Templates",
        primary_key: "TemplateId",
        cursor: Cursor::None,
        partitioning: Partitioning::None,
        paging: Paging::CountOffset,
        extra_query: &[("TemplateType", "All")],
        split_filters: &[],
        schema_json: include_str!("../catalogs/schemas/templates.json"),
    },
    StreamSpec {
        name: "message_streams",
        path: "/message-streams",
        records_key: "MessageStreams",
        primary_key: "ID",
        cursor: Cursor::None,
        partitioning: Partitioning::None,
        paging: Paging::Single,
        extra_query: &[
            ("MessageStreamType", "All"),
            ("IncludeArchivedStreams", "true"),
        ],
        split_filters: &[],
        schema_json: include_str!("../catalogs/schemas/message_streams.json"),
    },
];

pub fn find(name: &str) -> Option<&'static StreamSpec> {
    STREAMS.iter().find(|s| s.name == name)
}

pub fn names() -> String {
    STREAMS
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The stream used to list message streams for partitioning.
pub fn message_streams() -> &'static StreamSpec {
    &STREAMS[4]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for s in STREAMS {
            assert!(seen.insert(s.name), "duplicate {}", s.name);
            assert!(s.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        assert_eq!(message_streams().name, "message_streams");
    }

    #[test]
    fn every_schema_is_a_valid_draft7_schema_containing_key_and_cursor() {
        for s in STREAMS {
            let schema: serde_json::Value = serde_json::from_str(s.schema_json).unwrap();
            assert!(jsonschema::draft7::new(&schema).is_ok(), "{}", s.name);
            let props = schema["properties"].as_object().unwrap();
            assert!(props.contains_key(s.primary_key), "{}", s.name);
            // The key is never nullable; every other field is.
            assert!(!props[s.primary_key]["type"].is_array(), "{}", s.name);
            for (k, v) in props {
                if k != s.primary_key {
                    let t = v["type"].as_array().expect("nullable type list");
                    assert!(t.contains(&"null".into()), "{}.{k}", s.name);
                }
            }
            if let Some(c) = s.cursor_field() {
                assert_eq!(props[c]["format"], "date-time", "{}", s.name);
            }
        }
    }
}
