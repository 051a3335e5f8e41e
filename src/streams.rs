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
    /// `count` (≤ 500) and `offset`, with `count + offset ≤ 10,000`; the envelope carries
    /// `TotalCount` (without it, pages are read until a short one).
    CountOffset,
    /// The endpoint returns everything at once (no `count`/`offset`, no `TotalCount`).
    Single,
}

/// Which token a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// `X-Postmark-Server-Token`: everything a server holds.
    Server,
    /// `X-Postmark-Account-Token`: servers, domains, sender signatures (issue 8).
    Account,
}

/// Where the records are in a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// `{"TotalCount": n, "<key>": [record, ...]}` (`TotalCount` optional).
    List(&'static str),
    /// The body is one record (`GET /templates/{id}`).
    Object,
    /// The elements of the array `key` of the body object (`Days` of a stats response,
    /// `MessageEvents` of a message's details); each element gets the body's fields named in
    /// `carry` (a details body's `MessageID`).
    Nested {
        key: &'static str,
        carry: &'static [&'static str],
    },
    /// The elements of the array `key`, plus one record `{"Name": <field>, "Count": <value>}`
    /// for each scalar field named in `scalars` (deliverystats' `InactiveMails`).
    ListAndScalars {
        key: &'static str,
        scalars: &'static [&'static str],
    },
}

impl Envelope {
    /// The key of the record array, if the records are an array.
    pub fn array_key(&self) -> Option<&'static str> {
        match self {
            Envelope::List(k) | Envelope::Nested { key: k, .. } => Some(k),
            Envelope::ListAndScalars { key, .. } => Some(key),
            Envelope::Object => None,
        }
    }
}

/// How one envelope record becomes output records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One output record per envelope record, fields copied as they are.
    AsIs,
    /// Dynamic keys (client or browser names): one record per key that is not in `keep`,
    /// `{<keep fields>, "Name": <key>, "Count": <value>}`.
    Unpivot { keep: &'static [&'static str] },
}

/// A field added to each record from the request that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The message stream queried (the partition), under this name: `MessageStream`.
    Partition(&'static str),
}

/// Fields whose values are secrets: replaced by `"***"` on output, and the schema says so.
/// `"HttpAuth.Password"` is a field of an object; `"HttpHeaders[].Value"` is a field of every
/// element of an array.
pub type Masked = &'static [&'static str];

/// The text every masked value is replaced by.
pub const MASK: &str = "***";

/// One of several endpoints merged into one record per key (`stats_outbound_daily`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub path: &'static str,
    /// Fields renamed where names collide across parts: `("Unique", "UniqueOpens")`.
    pub renames: &'static [(&'static str, &'static str)],
}

/// One request per listed record: the stream's own query lists records, and each listed
/// record's `{Field}` fills `path` (template bodies, message events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    /// e.g. `/templates/{TemplateId}`.
    pub path: &'static str,
    /// Where the records are in a per-record response.
    pub envelope: Envelope,
    /// The listed records' time field: a listed record outside its window is left to the
    /// window that holds it (exactly-once over windows, as for the listed stream itself).
    pub list_cursor: Option<&'static str>,
    /// HTTP 422 with this ErrorCode means the record is gone or not yet readable: it is
    /// skipped and counted with a warning (Postmark's 701 "message not found").
    pub skip_error_code: Option<i64>,
}

/// A configuration switch a stream needs before it is read (costly streams are opt-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptIn {
    /// Config `message_events: true`.
    MessageEvents,
}

/// Where a stream's incremental cursor comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Full refresh only: no timestamps to filter on.
    None,
    /// Time windows filtered by `fromdate`/`todate`; records carry the cursor field, so
    /// records outside a window are dropped client-side.
    Field(&'static str),
    /// Time windows, but records carry no server timestamp (inbound, or records built per
    /// listed message): the window end is the cursor, and windows rely on Postmark's
    /// inclusive-to-the-second filter.
    WindowEnd,
    /// Daily rows (stats) keyed by a `YYYY-MM-DD` field: queried by Eastern dates from the
    /// range start through today; a later sync re-reads the last `stats_lookback_days` days,
    /// whose counts still grow as opens, clicks and bounces arrive.
    Day(&'static str),
}

/// Added to every record of a server stream in whole-account mode: the server's ID.
pub const SERVER_ID: &str = "ServerID";

/// Added to every inbound record: Postmark received the message before this instant (and at
/// or after the start of the same window); a cursor Singer targets can use.
pub const RECEIVED_BEFORE: &str = "ReceivedBefore";

/// One Postmark dataset, described as data. `sync` handles every row the same way.
#[derive(Debug)]
pub struct StreamSpec {
    /// Stream name in catalogs and messages.
    pub name: &'static str,
    /// API path, e.g. `/bounces`; `{stream}` is replaced by the partition
    /// (`/message-streams/{stream}/suppressions/dump`), which is then not sent as a query.
    pub path: &'static str,
    pub token: Token,
    /// Where the records are in a response.
    pub envelope: Envelope,
    /// How an envelope record becomes output records.
    pub shape: Shape,
    /// Primary key fields, in order (composite keys: opens, suppressions, stats).
    pub primary_key: &'static [&'static str],
    pub cursor: Cursor,
    pub partitioning: Partitioning,
    pub paging: Paging,
    /// Fixed query parameters sent on every request.
    pub extra_query: &'static [(&'static str, &'static str)],
    /// Filters that split a one-second window further, tried in order, each with every
    /// value the endpoint accepts.
    pub split_filters: &'static [(&'static str, &'static [&'static str])],
    /// Fields added to every record from its request (`MessageStream`).
    pub added: &'static [Added],
    /// Secret fields, masked on output.
    pub masked: Masked,
    /// Several endpoints (instead of `path`) whose records are merged by key.
    pub parts: &'static [Part],
    /// One request per listed record.
    pub fan_out: Option<FanOut>,
    /// Read only when the config switches it on.
    pub opt_in: Option<OptIn>,
    /// The key is unique across the whole account (Postmark's message, bounce and template
    /// IDs), not only within one server: in whole-account mode it does not get
    /// [`SERVER_ID`] prepended.
    pub global_key: bool,
    /// JSON Schema of a record, from `catalogs/schemas/`.
    pub schema_json: &'static str,
}

/// The row every other row starts from: a server-token full-refresh object, one request.
const BASE: StreamSpec = StreamSpec {
    name: "",
    path: "",
    token: Token::Server,
    envelope: Envelope::Object,
    shape: Shape::AsIs,
    primary_key: &[],
    cursor: Cursor::None,
    partitioning: Partitioning::None,
    paging: Paging::Single,
    extra_query: &[],
    split_filters: &[],
    added: &[],
    masked: &[],
    parts: &[],
    fan_out: None,
    opt_in: None,
    global_key: false,
    schema_json: "{}",
};

impl StreamSpec {
    pub fn is_incremental(&self) -> bool {
        self.cursor != Cursor::None
    }

    /// The name used for the cursor in catalogs (`default_cursor_field`, Singer
    /// `replication-key`). Inbound messages have none in their records.
    pub fn cursor_field(&self) -> Option<&'static str> {
        match self.cursor {
            Cursor::Field(f) | Cursor::Day(f) => Some(f),
            _ => None,
        }
    }

    /// Does every record get [`RECEIVED_BEFORE`] (the end of the window it was read in)?
    /// Streams windowed on a time their records lack (inbound). Not fan-outs
    /// (`message_events`): their records carry their own event times.
    pub fn stamps_received_before(&self) -> bool {
        self.cursor == Cursor::WindowEnd && self.fan_out.is_none()
    }

    /// The record field Singer metadata names as replication key: the cursor field, or for
    /// inbound messages (no receive time in their records) [`RECEIVED_BEFORE`], which the
    /// connector adds to each record: the end of the window it was read in.
    pub fn replication_key(&self) -> Option<&'static str> {
        if self.stamps_received_before() {
            return Some(RECEIVED_BEFORE);
        }
        self.cursor_field()
    }

    /// The record field whose value drops a record outside its window (the stream's own
    /// time field, or that of the listed records of a fan-out).
    pub fn window_filter_field(&self) -> Option<&'static str> {
        match (self.cursor, self.fan_out) {
            (Cursor::Field(f), _) => Some(f),
            (_, Some(FanOut { list_cursor, .. })) => list_cursor,
            _ => None,
        }
    }

    /// Is `field` part of the primary key?
    pub fn is_key(&self, field: &str) -> bool {
        self.primary_key.contains(&field)
    }

    /// Is this stream read once per server of the account in whole-account mode (and its
    /// records stamped with [`SERVER_ID`])?
    pub fn per_server(&self) -> bool {
        self.token == Token::Server
    }

    /// The primary key as announced: in whole-account mode, a key unique only within a
    /// server gets [`SERVER_ID`] first.
    pub fn key_in(&self, whole_account: bool) -> Vec<&'static str> {
        let mut key = Vec::with_capacity(self.primary_key.len() + 1);
        if whole_account && self.per_server() && !self.global_key {
            key.push(SERVER_ID);
        }
        key.extend_from_slice(self.primary_key);
        key
    }

    /// Is `field` part of the key announced in this mode?
    pub fn is_key_in(&self, field: &str, whole_account: bool) -> bool {
        self.key_in(whole_account).contains(&field)
    }

    /// The schema in this mode: whole-account records of server streams carry
    /// [`SERVER_ID`], the ID of the server they were read from.
    pub fn schema_in(&self, whole_account: bool) -> serde_json::Value {
        let mut schema = self.schema();
        if whole_account && self.per_server() {
            if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
                props.insert(
                    SERVER_ID.to_string(),
                    serde_json::json!({
                        "type": "integer",
                        "description": "The ID of the Postmark server this record was read from (whole-account mode)."
                    }),
                );
            }
        }
        schema
    }

    /// Property names in this mode.
    pub fn property_names_in(&self, whole_account: bool) -> Vec<String> {
        self.schema_in(whole_account)
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
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
        global_key: true,
        path: "/messages/outbound",
        envelope: Envelope::List("Messages"),
        primary_key: &["MessageID"],
        cursor: Cursor::Field("ReceivedAt"),
        partitioning: Partitioning::OutboundStreams,
        paging: Paging::CountOffset,
        split_filters: &[("status", OUTBOUND_STATUSES)],
        schema_json: include_str!("../catalogs/schemas/messages_outbound.json"),
        ..BASE
    },
    StreamSpec {
        name: "messages_inbound",
        global_key: true,
        path: "/messages/inbound",
        envelope: Envelope::List("InboundMessages"),
        primary_key: &["MessageID"],
        cursor: Cursor::WindowEnd,
        paging: Paging::CountOffset,
        split_filters: &[("status", INBOUND_STATUSES)],
        schema_json: include_str!("../catalogs/schemas/messages_inbound.json"),
        ..BASE
    },
    StreamSpec {
        name: "bounces",
        global_key: true,
        path: "/bounces",
        envelope: Envelope::List("Bounces"),
        primary_key: &["ID"],
        cursor: Cursor::Field("BouncedAt"),
        partitioning: Partitioning::AllStreams,
        paging: Paging::CountOffset,
        split_filters: &[("type", BOUNCE_TYPES)],
        schema_json: include_str!("../catalogs/schemas/bounces.json"),
        ..BASE
    },
    StreamSpec {
        name: "templates",
        global_key: true,
        path: "/templates",
        envelope: Envelope::List("Templates"),
        primary_key: &["TemplateId"],
        paging: Paging::CountOffset,
        extra_query: &[("TemplateType", "All")],
        // Subject and bodies are only in the detail; a server has few templates.
        fan_out: Some(FanOut {
            path: "/templates/{TemplateId}",
            envelope: Envelope::Object,
            list_cursor: None,
            skip_error_code: Some(TEMPLATE_NOT_FOUND),
        }),
        schema_json: include_str!("../catalogs/schemas/templates.json"),
        ..BASE
    },
    StreamSpec {
        name: MESSAGE_STREAMS,
        path: "/message-streams",
        envelope: Envelope::List("MessageStreams"),
        primary_key: &["ID"],
        extra_query: &[
            ("MessageStreamType", "All"),
            ("IncludeArchivedStreams", "true"),
        ],
        schema_json: include_str!("../catalogs/schemas/message_streams.json"),
        ..BASE
    },
    StreamSpec {
        name: "suppressions",
        path: "/message-streams/{stream}/suppressions/dump",
        envelope: Envelope::List("Suppressions"),
        primary_key: &["MessageStream", "EmailAddress"],
        // Suppressions belong to sending streams; the dump has no paging and no TotalCount.
        partitioning: Partitioning::OutboundStreams,
        added: &[Added::Partition("MessageStream")],
        schema_json: include_str!("../catalogs/schemas/suppressions.json"),
        ..BASE
    },
    StreamSpec {
        name: "delivery_stats",
        path: "/deliverystats",
        envelope: Envelope::ListAndScalars {
            key: "Bounces",
            scalars: &["InactiveMails"],
        },
        primary_key: &["Name"],
        schema_json: include_str!("../catalogs/schemas/delivery_stats.json"),
        ..BASE
    },
    StreamSpec {
        name: "webhooks",
        path: "/webhooks",
        envelope: Envelope::List("Webhooks"),
        primary_key: &["ID"],
        masked: &["HttpAuth.Password", "HttpHeaders[].Value"],
        schema_json: include_str!("../catalogs/schemas/webhooks.json"),
        ..BASE
    },
    StreamSpec {
        name: "inbound_rules",
        path: "/triggers/inboundrules",
        envelope: Envelope::List("InboundRules"),
        primary_key: &["ID"],
        paging: Paging::CountOffset,
        schema_json: include_str!("../catalogs/schemas/inbound_rules.json"),
        ..BASE
    },
    StreamSpec {
        name: "stats_outbound_daily",
        path: "/stats/outbound",
        parts: &[
            Part {
                path: "/stats/outbound/sends",
                renames: &[],
            },
            Part {
                path: "/stats/outbound/bounces",
                renames: &[],
            },
            Part {
                path: "/stats/outbound/spam",
                renames: &[],
            },
            Part {
                path: "/stats/outbound/tracked",
                renames: &[],
            },
            Part {
                path: "/stats/outbound/opens",
                renames: &[("Unique", "UniqueOpens")],
            },
            Part {
                path: "/stats/outbound/clicks",
                renames: &[("Unique", "UniqueClicks")],
            },
        ],
        schema_json: include_str!("../catalogs/schemas/stats_outbound_daily.json"),
        ..DAILY
    },
    StreamSpec {
        name: "stats_open_platforms",
        path: "/stats/outbound/opens/platforms",
        schema_json: include_str!("../catalogs/schemas/stats_open_platforms.json"),
        ..DAILY
    },
    StreamSpec {
        name: "stats_click_platforms",
        path: "/stats/outbound/clicks/platforms",
        schema_json: include_str!("../catalogs/schemas/stats_click_platforms.json"),
        ..DAILY
    },
    StreamSpec {
        name: "stats_click_locations",
        path: "/stats/outbound/clicks/location",
        schema_json: include_str!("../catalogs/schemas/stats_click_locations.json"),
        ..DAILY
    },
    StreamSpec {
        name: "stats_open_email_clients",
        path: "/stats/outbound/opens/emailclients",
        shape: Shape::Unpivot { keep: &["Date"] },
        primary_key: &["MessageStream", "Date", "Name"],
        schema_json: include_str!("../catalogs/schemas/stats_open_email_clients.json"),
        ..DAILY
    },
    StreamSpec {
        name: "stats_click_browser_families",
        path: "/stats/outbound/clicks/browserfamilies",
        shape: Shape::Unpivot { keep: &["Date"] },
        primary_key: &["MessageStream", "Date", "Name"],
        schema_json: include_str!("../catalogs/schemas/stats_click_browser_families.json"),
        ..DAILY
    },
    StreamSpec {
        name: "opens",
        path: "/messages/outbound/opens",
        envelope: Envelope::List("Opens"),
        primary_key: &["MessageID", "Recipient", "ReceivedAt"],
        split_filters: &[("platform", PLATFORMS)],
        schema_json: include_str!("../catalogs/schemas/opens.json"),
        ..EVENTS
    },
    StreamSpec {
        name: "clicks",
        path: "/messages/outbound/clicks",
        envelope: Envelope::List("Clicks"),
        primary_key: &["MessageID", "Recipient", "ReceivedAt", "OriginalLink"],
        split_filters: &[("platform", PLATFORMS)],
        schema_json: include_str!("../catalogs/schemas/clicks.json"),
        ..EVENTS
    },
    StreamSpec {
        name: "message_events",
        global_key: true,
        path: "/messages/outbound",
        envelope: Envelope::List("Messages"),
        primary_key: &["MessageID", "Recipient", "Type", "ReceivedAt"],
        // Events carry their own times, not the message's: the windows are the messages'.
        cursor: Cursor::WindowEnd,
        partitioning: Partitioning::OutboundStreams,
        paging: Paging::CountOffset,
        split_filters: &[("status", OUTBOUND_STATUSES)],
        fan_out: Some(FanOut {
            path: "/messages/outbound/{MessageID}/details",
            envelope: Envelope::Nested {
                key: "MessageEvents",
                carry: &["MessageID"],
            },
            list_cursor: Some("ReceivedAt"),
            skip_error_code: Some(MESSAGE_NOT_FOUND),
        }),
        opt_in: Some(OptIn::MessageEvents),
        schema_json: include_str!("../catalogs/schemas/message_events.json"),
        ..BASE
    },
    // Account streams: the account token, offered only when it is configured.
    StreamSpec {
        name: "servers",
        path: "/servers",
        token: Token::Account,
        envelope: Envelope::List("Servers"),
        primary_key: &["ID"],
        paging: Paging::CountOffset,
        // Every server's API tokens in clear text: each is masked, only their number stays.
        masked: &["ApiTokens[]"],
        schema_json: include_str!("../catalogs/schemas/servers.json"),
        ..BASE
    },
    StreamSpec {
        name: "domains",
        path: "/domains",
        token: Token::Account,
        envelope: Envelope::List("Domains"),
        primary_key: &["ID"],
        paging: Paging::CountOffset,
        schema_json: include_str!("../catalogs/schemas/domains.json"),
        ..BASE
    },
    StreamSpec {
        name: "sender_signatures",
        path: "/senders",
        token: Token::Account,
        envelope: Envelope::List("SenderSignatures"),
        primary_key: &["ID"],
        paging: Paging::CountOffset,
        schema_json: include_str!("../catalogs/schemas/sender_signatures.json"),
        ..BASE
    },
];

/// Open and click events: windowed on `ReceivedAt` per sending stream, like the messages,
/// when Postmark honours `fromdate`/`todate` on them (UNCONFIRMED, api.md §13.1).
/// Opens and clicks. Whether Postmark applies `fromdate`/`todate` to them is UNCONFIRMED:
/// the engine verifies it per message stream and reads newest-first when it does not
/// (`sync::events`).
const EVENTS: StreamSpec = StreamSpec {
    cursor: Cursor::Field("ReceivedAt"),
    partitioning: Partitioning::OutboundStreams,
    paging: Paging::CountOffset,
    added: &[Added::Partition("MessageStream")],
    // Events of a message: the MessageID is unique across the account.
    global_key: true,
    ..BASE
};

/// `platform` values of opens and clicks; they partition the events (api.md §13.1).
pub const PLATFORMS: &[&str] = &["WebMail", "Desktop", "Mobile", "Unknown"];

/// ErrorCode of a message Postmark cannot (yet) show: skipped (api.md §4.3).
pub const MESSAGE_NOT_FOUND: i64 = 701;

/// Daily statistics: one query per sending message stream over whole days, rows from `Days`.
const DAILY: StreamSpec = StreamSpec {
    envelope: Envelope::Nested {
        key: "Days",
        carry: &[],
    },
    primary_key: &["MessageStream", "Date"],
    cursor: Cursor::Day("Date"),
    partitioning: Partitioning::OutboundStreams,
    added: &[Added::Partition("MessageStream")],
    ..BASE
};

/// ErrorCode of a template that vanished between the list and its detail request
/// (UNCONFIRMED: 1101 "Template not found" is Postmark's documented code for it).
const TEMPLATE_NOT_FOUND: i64 = 1101;

/// The stream that lists message streams for partitioning.
const MESSAGE_STREAMS: &str = "message_streams";

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
    // The row is in the table above; a unit test checks that `find` sees it.
    match find(MESSAGE_STREAMS) {
        Some(s) => s,
        None => &STREAMS[0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for s in STREAMS {
            assert!(seen.insert(s.name), "duplicate {}", s.name);
            assert!(s.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        assert!(find(MESSAGE_STREAMS).is_some());
        assert_eq!(message_streams().name, "message_streams");
    }

    fn is_nullable(v: &Value) -> bool {
        v["type"]
            .as_array()
            .is_some_and(|t| t.contains(&Value::from("null")))
    }

    #[test]
    fn every_schema_is_valid_with_non_null_keys_and_everything_else_nullable() {
        for s in STREAMS {
            let schema: Value = serde_json::from_str(s.schema_json).unwrap();
            assert!(jsonschema::draft7::new(&schema).is_ok(), "{}", s.name);
            assert_eq!(
                schema["additionalProperties"], true,
                "{}: unknown fields kept",
                s.name
            );
            let props = schema["properties"].as_object().unwrap();
            assert!(!s.primary_key.is_empty(), "{}", s.name);
            for k in s.primary_key {
                assert!(props.contains_key(*k), "{}.{k} is a key", s.name);
                assert!(!is_nullable(&props[*k]), "{}.{k} is a key", s.name);
            }
            for (k, v) in props {
                if !s.is_key(k) {
                    assert!(is_nullable(v), "{}.{k} must be nullable", s.name);
                }
            }
            match s.cursor {
                Cursor::Field(c) => assert_eq!(props[c]["format"], "date-time", "{}", s.name),
                Cursor::Day(c) => assert_eq!(props[c]["format"], "date", "{}", s.name),
                _ => {}
            }
            for a in s.added {
                let Added::Partition(f) = a;
                assert!(props.contains_key(*f), "{}.{f} is added", s.name);
            }
        }
    }

    /// The schema node of a masked path: `HttpAuth.Password`, `HttpHeaders[].Value`.
    fn node<'a>(props: &'a Value, path: &str) -> &'a Value {
        let mut cur = props;
        for step in path.split('.') {
            cur = match step.strip_suffix("[]") {
                // `ApiTokens[]`: the elements themselves are masked.
                Some(field) if path.ends_with(step) => &cur[field]["items"],
                Some(field) => &cur[field]["items"]["properties"],
                None => &cur[step],
            };
            if !path.ends_with(step) {
                cur = if cur.get("properties").is_some() {
                    &cur["properties"]
                } else {
                    cur
                };
            }
        }
        cur
    }

    #[test]
    fn masked_fields_are_declared_and_say_they_are_masked() {
        for s in STREAMS {
            let schema = s.schema();
            for path in s.masked {
                let n = node(&schema["properties"], path);
                let d = n["description"].as_str().unwrap_or("");
                assert!(
                    d.contains("masked"),
                    "{}: {path} says it is masked: {n}",
                    s.name
                );
            }
        }
    }

    #[test]
    fn a_path_template_names_only_the_partition_or_a_listed_field() {
        for s in STREAMS {
            if s.path.contains("{stream}") {
                assert_ne!(s.partitioning, Partitioning::None, "{}", s.name);
            }
            if let Some(f) = s.fan_out {
                assert!(f.path.contains('{'), "{}", s.name);
            }
        }
    }
}
