//! The hot path: from a response body to record lines, with as little work as possible.
//!
//! A page is scanned once into borrowed slices (`&RawValue`): field values are copied to
//! the output byte for byte, never parsed into a `Value` tree and re-serialized. Only three
//! things touch a field: date-time fields are rewritten as RFC 3339 UTC with at most six
//! fractional digits (several targets reject Postmark's seven), the cursor field is read to
//! keep the record only inside its half-open window, and fields the user deselected are
//! skipped. Unknown fields pass through untouched.

use std::borrow::{Borrow, Cow};
use std::fmt;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::streams::{Envelope, Shape, MASK};

mod scan;

/// A JSON object as borrowed (key, raw value) pairs, in input order.
#[derive(Debug)]
pub struct RawObject<'a>(pub Vec<(Cow<'a, str>, Raw<'a>)>);

/// The text of one JSON value, borrowed from the body, as serde_json's `&RawValue` (which
/// only serde can make): what the page scan checked as one whole JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    /// The value's JSON text.
    pub fn get(&self) -> &'a str {
        self.0
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawObject<'de>, A::Error> {
                raw_fields(map)
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON object's fields as (key, raw value) pairs.
fn raw_fields<'de, A: MapAccess<'de>>(mut map: A) -> Result<RawObject<'de>, A::Error> {
    let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(20));
    while let Some((k, v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
        fields.push((k.0, Raw(v.get())));
    }
    Ok(RawObject(fields))
}

/// One record of a page, split into its fields by the page's single scan.
#[derive(Debug)]
pub struct Record<'a> {
    /// The record's fields, or why it is not a JSON object (a page may hold such a record:
    /// the shaper reports it, readers of keys and times pass over it).
    fields: Result<RawObject<'a>, String>,
    /// The page's text holds a line break, so this record's values may (a pretty-printed
    /// body): they are copied without them. Checked once per page, not once per record.
    multiline: bool,
}

impl<'a> Record<'a> {
    /// The record's fields, when it is a JSON object.
    pub fn object(&self) -> Option<&RawObject<'a>> {
        self.fields.as_ref().ok()
    }

    /// The record's fields, or why it is not a JSON object.
    pub fn fields(&self) -> Result<&RawObject<'a>, &str> {
        self.fields.as_ref().map_err(String::as_str)
    }

    /// One record from its own JSON text (a record that is not a JSON object is kept as
    /// one, as in a page).
    pub fn parse(raw: &'a str) -> Record<'a> {
        Record {
            fields: serde_json::from_str(raw)
                .map_err(|e| format!("a record is not a JSON object ({e})")),
            multiline: has_line_break(raw),
        }
    }
}

/// One response page: `TotalCount` and the records, each split into its fields.
pub struct Page<'a> {
    pub total: Option<u64>,
    pub records: Vec<Record<'a>>,
    /// Records built from scalar fields of the envelope (`InactiveMails`):
    /// `{"Name": <the field's name as the body spells it>, "Count": <its value>}`.
    pub built: Vec<Record<'a>>,
    /// Fields of the envelope every record carries (`MessageID` of a details body).
    pub carried: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Page<'a> {
    /// Every record: the envelope's array (or object), then those built from scalars.
    pub fn all(&self) -> Vec<&Record<'a>> {
        self.records.iter().chain(&self.built).collect()
    }

    pub fn len(&self) -> usize {
        self.records.len() + self.built.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `text` holds a CR or LF byte. Fixed-size chunks without an early exit inside
/// one, so the compiler vectorises it: a page is checked at close to memory speed.
fn has_line_break(text: &str) -> bool {
    let is_break = |b: &u8| u8::from(*b == b'\n') | u8::from(*b == b'\r');
    let mut chunks = text.as_bytes().chunks_exact(32);
    chunks
        .by_ref()
        .any(|c| c.iter().fold(0, |a, b| a | is_break(b)) != 0)
        || chunks.remainder().iter().any(|b| is_break(b) != 0)
}

/// Reads one array element as a record: a JSON object's fields, or (for anything else) why
/// it is not one, consuming it so the array's scan goes on.
struct RecordSeed {
    multiline: bool,
}

impl<'de> de::DeserializeSeed<'de> for RecordSeed {
    type Value = Record<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Record<'de>, D::Error> {
        let fields = d.deserialize_any(RecordVisitor)?;
        Ok(Record {
            fields,
            multiline: self.multiline,
        })
    }
}

struct RecordVisitor;

/// `Ok(Err(why))`: the element is read, and is not an object.
type RecordFields<'de> = Result<RawObject<'de>, String>;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = RecordFields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RecordFields<'de>, A::Error> {
        raw_fields(map).map(Ok)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RecordFields<'de>, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(not_object(de::Unexpected::Seq))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RecordFields<'de>, E> {
        Ok(not_object(de::Unexpected::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RecordFields<'de>, E> {
        Ok(not_object(de::Unexpected::Signed(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RecordFields<'de>, E> {
        Ok(not_object(de::Unexpected::Unsigned(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RecordFields<'de>, E> {
        Ok(not_object(de::Unexpected::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RecordFields<'de>, E> {
        Ok(not_object(de::Unexpected::Str(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<RecordFields<'de>, E> {
        Ok(not_object(de::Unexpected::Unit))
    }
}

fn not_object<'de>(what: de::Unexpected) -> RecordFields<'de> {
    let e = <serde_json::Error as de::Error>::invalid_type(what, &"a JSON object");
    Err(format!("a record is not a JSON object ({e})"))
}

/// The elements of the records array, each read once into its fields.
struct RecordsSeed<'s> {
    multiline: bool,
    /// Set when the array's first bracket was read: an error after it is not "no array".
    started: &'s std::cell::Cell<bool>,
}

impl<'de> de::DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = Vec<Record<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Record<'de>>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = Vec<Record<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Record<'de>>, A::Error> {
        self.started.set(true);
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(500));
        let multiline = self.multiline;
        while let Some(r) = seq.next_element_seed(RecordSeed { multiline })? {
            records.push(r);
        }
        Ok(records)
    }
}

/// The body of a page whose records are an array: its fields are read in order, the records
/// array element by element (the body is scanned once, each record split into its fields
/// as it is met).
struct PageVisitor<'s> {
    envelope: Envelope,
    key: &'static str,
    multiline: bool,
    /// Why the records key did not hold an array (told apart from a body that is no JSON).
    not_array: &'s std::cell::RefCell<Option<String>>,
}

impl<'de> Visitor<'de> for PageVisitor<'_> {
    type Value = (Page<'de>, bool);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(Page<'de>, bool), A::Error> {
        let mut page = Page {
            total: None,
            records: Vec::new(),
            built: Vec::new(),
            carried: Vec::new(),
        };
        let mut found = false;
        // Keys are read raw (a handful per page): a scalar record's `Name` is the key's text.
        while let Some(raw_key) = map.next_key::<&'de RawValue>()? {
            let k = serde_json::from_str::<Key<'de>>(raw_key.get())
                .map_err(de::Error::custom)?
                .0;
            if k == "TotalCount" {
                let v: &RawValue = map.next_value()?;
                page.total = serde_json::from_str::<u64>(v.get()).ok();
            } else if k == self.key {
                let started = std::cell::Cell::new(false);
                let seed = RecordsSeed {
                    multiline: self.multiline,
                    started: &started,
                };
                match map.next_value_seed(seed) {
                    Ok(records) => page.records = records,
                    Err(e) => {
                        if !started.get() {
                            let key = self.key;
                            let why = format!("'{key}' is not an array ({e})");
                            *self.not_array.borrow_mut() = Some(why);
                        }
                        return Err(e);
                    }
                }
                found = true;
            } else {
                let v: &'de RawValue = map.next_value()?;
                match self.envelope {
                    Envelope::Nested { carry, .. } if carry.iter().any(|c| *c == k) => {
                        page.carried.push((k, v));
                    }
                    Envelope::ListAndScalars { scalars, .. } if scalars.iter().any(|c| *c == k) => {
                        let fields = vec![
                            (Cow::Borrowed("Name"), Raw(raw_key.get())),
                            (Cow::Borrowed("Count"), Raw(v.get())),
                        ];
                        page.built.push(Record {
                            fields: Ok(RawObject(fields)),
                            multiline: self.multiline,
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok((page, found))
    }
}

/// Reads a response body as `envelope` describes it, in one scan: each record is split into
/// its fields as the body is read. The common `{"TotalCount", "<key>": [...]}` page is read
/// by a byte scanner ([`scan`]) when it is in the subset that scanner checks, else by serde.
pub fn parse_page<'a>(body: &'a str, envelope: Envelope) -> Result<Page<'a>, String> {
    if let Envelope::List(key) = envelope {
        if let Some(page) = scan::list_page(body, key, has_line_break(body)) {
            return Ok(page);
        }
    }
    parse_page_with_serde(body, envelope)
}

/// [`parse_page`] without its fast path: what the fast path must agree with (tests, fuzz).
#[doc(hidden)]
pub fn parse_page_with_serde<'a>(body: &'a str, envelope: Envelope) -> Result<Page<'a>, String> {
    let multiline = has_line_break(body);
    let key = match envelope {
        Envelope::Object => {
            let fields: RawObject<'a> = serde_json::from_str(body)
                .map_err(|e| format!("the body is not a JSON object ({e})"))?;
            return Ok(Page {
                total: None,
                records: vec![Record {
                    fields: Ok(fields),
                    multiline,
                }],
                built: Vec::new(),
                carried: Vec::new(),
            });
        }
        Envelope::List(k) | Envelope::Nested { key: k, .. } => k,
        Envelope::ListAndScalars { key, .. } => key,
    };
    let not_array = std::cell::RefCell::new(None);
    let visitor = PageVisitor {
        envelope,
        key,
        multiline,
        not_array: &not_array,
    };
    let mut de = serde_json::Deserializer::from_str(body);
    let parsed = de
        .deserialize_map(visitor)
        .and_then(|page| de.end().map(|()| page));
    let (page, found) = match parsed {
        Ok(p) => p,
        Err(e) => {
            return Err(not_array
                .into_inner()
                .unwrap_or_else(|| format!("the body is not a JSON object ({e})")))
        }
    };
    // A stats body with no activity at all is `{"Days": []}`, but an empty envelope that
    // lacks the array is a different answer than the one this stream expects.
    if !found {
        return Err(format!("the body has no '{key}' array"));
    }
    Ok(page)
}

/// Why two readings of one page differ (`None`: they agree on every total, record, key
/// (and whether it was decoded), raw value and field the envelope adds). For tests and fuzz.
#[doc(hidden)]
pub fn page_difference(a: &Page, b: &Page) -> Option<String> {
    fn records(a: &[Record], b: &[Record]) -> Option<String> {
        if a.len() != b.len() {
            return Some(format!("{} records against {}", a.len(), b.len()));
        }
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            if x.multiline != y.multiline {
                return Some(format!("record {i}: line breaks differ"));
            }
            let fields = |r: &Record| -> Result<Vec<(String, bool, String)>, String> {
                r.fields()
                    .map(|o| {
                        o.0.iter()
                            .map(|(k, v)| {
                                let decoded = matches!(k, Cow::Owned(_));
                                (k.to_string(), decoded, v.get().to_string())
                            })
                            .collect()
                    })
                    .map_err(str::to_string)
            };
            let (fx, fy) = (fields(x), fields(y));
            if fx != fy {
                return Some(format!("record {i}: {fx:?} against {fy:?}"));
            }
        }
        None
    }
    if a.total != b.total {
        return Some(format!("TotalCount {:?} against {:?}", a.total, b.total));
    }
    let carried = |p: &Page| -> Vec<(String, String)> {
        p.carried
            .iter()
            .map(|(k, v)| (k.to_string(), v.get().to_string()))
            .collect()
    };
    if carried(a) != carried(b) {
        return Some("carried fields differ".into());
    }
    records(&a.records, &b.records).or_else(|| records(&a.built, &b.built))
}

/// Queries ask for whole seconds and never name an ambiguous wall time, so a correct answer
/// strays at most one second past a window; a minute means the filter was read in another
/// time zone.
const FAR_OUTSIDE: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// The oldest value of `field` among `records` and how many records had one: the time span
/// the first page of a window covers.
pub fn oldest_cursor(records: &[Record], field: &str) -> Option<(DateTime<Utc>, u64)> {
    let mut oldest: Option<DateTime<Utc>> = None;
    let mut rows = 0;
    for record in records {
        let Some(obj) = record.object() else {
            continue;
        };
        let t = obj
            .0
            .iter()
            .find(|(k, _)| k == field)
            .and_then(|(_, v)| normalise_datetime(v.get()));
        if let Some(t) = t {
            rows += 1;
            oldest = Some(oldest.map_or(t, |o| o.min(t)));
        }
    }
    oldest.map(|o| (o, rows))
}

/// Records more than this far outside their window cannot be explained by a time zone:
/// the server ignored the date filter.
const DAYS_OUTSIDE: chrono::TimeDelta = chrono::TimeDelta::hours(27);

/// Of the `records` with a readable `field`: how many there are, and how many lie within
/// `slack` of `window`. A page none of whose rows is near its window contradicts its query.
pub fn rows_near_window(
    records: &[Record],
    field: &str,
    window: (DateTime<Utc>, DateTime<Utc>),
    slack: chrono::TimeDelta,
) -> (u64, u64) {
    let (mut rows, mut near) = (0, 0);
    for record in records {
        let Some(obj) = record.object() else {
            continue;
        };
        let t = obj
            .0
            .iter()
            .find(|(k, _)| k == field)
            .and_then(|(_, v)| normalise_datetime(v.get()));
        if let Some(t) = t {
            rows += 1;
            if t >= window.0 - slack && t < window.1 + slack {
                near += 1;
            }
        }
    }
    (rows, near)
}

/// How records of one stream are rewritten.
pub struct Shaper {
    datetime_fields: Vec<String>,
    cursor_field: Option<String>,
    excluded: Vec<String>,
    /// Primary key fields: records without a value (or with `null`) for one of them are
    /// counted and not emitted.
    key: Vec<String>,
    /// Masked paths, split into steps (`["HttpHeaders", "[]", "Value"]`).
    masked: Vec<Vec<String>>,
    shape: Shape,
}

/// What a page's query asked for, to check its records against, and the fields it adds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<'q> {
    /// The time window (records outside it are dropped when the stream has a cursor field).
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// `(field, value)`: the filter the query sent, echoed in every record
    /// (`MessageStream`). Records with another value are not emitted here.
    pub partition: Option<(&'q str, &'q str)>,
    /// Fields written first into every record (`MessageStream` of the query, `MessageID` of
    /// a details body); a record's own field of the same name is then left out.
    pub extra: &'q [Extra<'q>],
}

/// What happened to one page's records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageTally {
    pub emitted: u64,
    /// Records outside their window (expected at window edges; the neighbour emits them).
    pub outside_window: u64,
    /// Records more than [`FAR_OUTSIDE`] outside their window: a sign Postmark reads the date
    /// filter in another time zone than US Eastern.
    pub far_outside: u64,
    /// Records more than [`DAYS_OUTSIDE`] outside their window: the date filter was ignored.
    pub days_outside: u64,
    /// Records whose cursor was missing or unreadable (emitted, never dropped).
    pub no_cursor: u64,
    /// Records without their primary key (not emitted).
    pub keyless: u64,
    /// Records whose key was already seen by this window (not emitted again).
    pub repeated: u64,
    /// Records of another partition than the one filtered on (not emitted here).
    pub other_partition: u64,
}

/// A field added to every record: name and raw JSON value.
pub type Extra<'a> = (Cow<'a, str>, &'a str);

/// What [`Shaper::write_record`] noticed in a record (raw JSON values).
#[derive(Default)]
struct Fields<'a> {
    cursor: Option<DateTime<Utc>>,
    /// The key's raw JSON: the value of a one-field key, `[v1,v2,...]` for a composite one.
    key: Option<Cow<'a, str>>,
    partition: Option<&'a str>,
}

impl Shaper {
    pub fn new(
        datetime_fields: Vec<String>,
        cursor_field: Option<&str>,
        excluded: Vec<String>,
    ) -> Shaper {
        Shaper {
            datetime_fields,
            cursor_field: cursor_field.map(str::to_string),
            excluded,
            key: Vec::new(),
            masked: Vec::new(),
            shape: Shape::AsIs,
        }
    }

    /// Records without a value for every field of `key` are counted and not emitted.
    pub fn with_primary_key(mut self, key: &[&str]) -> Shaper {
        self.key = key.iter().map(|k| k.to_string()).collect();
        self
    }

    /// The shaper of a stream's records, as its table row describes them.
    pub fn for_stream(spec: &crate::streams::StreamSpec, excluded: Vec<String>) -> Shaper {
        let mut shaper = Shaper::new(spec.datetime_fields(), spec.cursor_field(), excluded)
            .with_primary_key(spec.primary_key);
        if !matches!(spec.cursor, crate::streams::Cursor::Field(_)) {
            shaper.cursor_field = None;
        }
        shaper.masked = spec.masked.iter().map(|p| mask_steps(p)).collect();
        shaper.shape = spec.shape;
        shaper
    }

    /// Writes every record of `records` that lies in `window` (when the stream has a cursor
    /// field) through `emit`, reusing `buf`.
    pub fn shape_page<'a, E>(
        &self,
        records: &[impl Borrow<Record<'a>>],
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
        buf: &mut Vec<u8>,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<PageTally, ShapeError<E>> {
        let query = Query {
            window,
            ..Query::default()
        };
        self.shape_checked(records, query, buf, &mut |_| true, emit)
    }

    /// Like [`Shaper::shape_page`], checking each record against its query: a record
    /// without its primary key, of another partition, or whose key `is_new` says was seen
    /// already (the raw JSON of the key is passed; every keyed record is offered, even one
    /// outside the window) is counted and not emitted. Unpivoted streams check each record
    /// they build.
    pub fn shape_checked<'a, E>(
        &self,
        records: &[impl Borrow<Record<'a>>],
        query: Query,
        buf: &mut Vec<u8>,
        is_new: &mut dyn FnMut(&str) -> bool,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<PageTally, ShapeError<E>> {
        let mut tally = PageTally::default();
        let name_key: Cow<str> = Cow::Borrowed("Name");
        let count_key: Cow<str> = Cow::Borrowed("Count");
        let extra = query.extra;
        let partition_field = query.partition.map(|p| p.0);
        let names = self.special_names();
        for record in records {
            let record = record.borrow();
            let obj = record
                .fields()
                .map_err(|why| ShapeError::Malformed(why.to_string()))?;
            let multiline = record.multiline;
            let keep: &[&str] = match self.shape {
                Shape::AsIs => {
                    buf.clear();
                    let own = obj.0.iter().map(|(k, v)| (k, v.get()));
                    let found =
                        self.write_record(extra, own, partition_field, &names, multiline, buf);
                    self.check_and_emit(found, &query, buf, is_new, emit, &mut tally)?;
                    continue;
                }
                Shape::Unpivot { keep } => keep,
            };
            for (name, value) in obj.0.iter().filter(|(k, _)| !keep.contains(&k.as_ref())) {
                buf.clear();
                let name_json = serde_json::to_string(name.as_ref()).unwrap_or_default();
                let own = obj
                    .0
                    .iter()
                    .filter(|(k, _)| keep.contains(&k.as_ref()))
                    .map(|(k, v)| (k, v.get()))
                    .chain([(&name_key, name_json.as_str()), (&count_key, value.get())]);
                let found = self.write_record(extra, own, partition_field, &names, multiline, buf);
                self.check_and_emit(found, &query, buf, is_new, emit, &mut tally)?;
            }
        }
        Ok(tally)
    }

    fn check_and_emit<E>(
        &self,
        fields: Fields,
        query: &Query,
        buf: &[u8],
        is_new: &mut dyn FnMut(&str) -> bool,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), E>,
        tally: &mut PageTally,
    ) -> Result<(), ShapeError<E>> {
        if !self.key.is_empty() {
            match &fields.key {
                None => {
                    tally.keyless += 1;
                    return Ok(());
                }
                Some(k) if !is_new(k) => {
                    tally.repeated += 1;
                    return Ok(());
                }
                Some(_) => {}
            }
        }
        if let Some((_, want)) = query.partition {
            let got = fields
                .partition
                .and_then(|v| serde_json::from_str::<&str>(v).ok());
            if got.is_some_and(|g| g != want) {
                tally.other_partition += 1;
                return Ok(());
            }
        }
        if let (Some((start, end)), Some(_)) = (query.window, &self.cursor_field) {
            match fields.cursor {
                Some(t) if t < start || t >= end => {
                    tally.outside_window += 1;
                    if t < start - FAR_OUTSIDE || t >= end + FAR_OUTSIDE {
                        tally.far_outside += 1;
                    }
                    if t < start - DAYS_OUTSIDE || t >= end + DAYS_OUTSIDE {
                        tally.days_outside += 1;
                    }
                    return Ok(());
                }
                Some(_) => {}
                None => tally.no_cursor += 1,
            }
        }
        emit(buf).map_err(ShapeError::Emit)?;
        tally.emitted += 1;
        Ok(())
    }

    /// Every field name this shaper treats apart from the others (key, deselected,
    /// date-time, masked).
    fn special_names(&self) -> NameFilter {
        let mut names = NameFilter::default();
        let masked = self.masked.iter().filter_map(|p| p.first());
        for name in self
            .key
            .iter()
            .chain(&self.excluded)
            .chain(&self.datetime_fields)
            .chain(masked)
        {
            names.add(name);
        }
        names
    }

    /// Serializes one record into `buf`: the `extra` fields first, then its `own` fields
    /// (those named like an extra one are left out, but the record's own `partition_field`
    /// is still what the partition check reads). Returns the fields its checks need.
    /// `names`: [`Shaper::special_names`]. `multiline`: the record's text may hold line
    /// breaks, which values must not carry over.
    fn write_record<'f>(
        &self,
        extra: &'f [Extra<'f>],
        own: impl Iterator<Item = (&'f Cow<'f, str>, &'f str)>,
        partition_field: Option<&str>,
        names: &NameFilter,
        multiline: bool,
        buf: &mut Vec<u8>,
    ) -> Fields<'f> {
        let mut found = Fields::default();
        // The key's values, on the stack for keys of up to eight fields (all of the table's).
        let mut stack = [None; 8];
        let mut heap;
        let key_values: &mut [Option<&'f str>] = match stack.get_mut(..self.key.len()) {
            Some(values) => values,
            None => {
                heap = vec![None; self.key.len()];
                &mut heap
            }
        };
        buf.push(b'{');
        let mut first = true;
        for (key, value) in extra {
            let multiline = multiline || has_line_break(value);
            let field = (key, *value);
            self.write_field(
                field, names, multiline, key_values, &mut found, &mut first, buf,
            );
        }
        for (key, value) in own {
            if partition_field == Some(key.as_ref()) {
                found.partition = Some(value);
            }
            if !extra.is_empty() && extra.iter().any(|(k, _)| k == key) {
                continue;
            }
            let field = (key, value);
            self.write_field(
                field, names, multiline, key_values, &mut found, &mut first, buf,
            );
        }
        buf.push(b'}');
        found.key = match &*key_values {
            [Some(one)] => Some(Cow::Borrowed(*one)),
            many if !many.is_empty() && many.iter().all(Option::is_some) => {
                let len = many.iter().flatten().map(|v| v.len() + 1).sum::<usize>() + 1;
                let mut joined = String::with_capacity(len);
                for (i, v) in many.iter().flatten().enumerate() {
                    joined.push(if i == 0 { '[' } else { ',' });
                    joined.push_str(v);
                }
                joined.push(']');
                Some(Cow::Owned(joined))
            }
            _ => None,
        };
        found
    }

    /// Writes one field of a record (see [`Shaper::write_record`]).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn write_field<'f>(
        &self,
        (key, value): (&Cow<str>, &'f str),
        names: &NameFilter,
        multiline: bool,
        key_values: &mut [Option<&'f str>],
        found: &mut Fields<'f>,
        first: &mut bool,
        buf: &mut Vec<u8>,
    ) {
        // Most fields are none of the shaper's concern: one look in the filter says so.
        let special = names.may_hold(key);
        if special && value != "null" {
            if let Some(k) = self.key.iter().position(|k| k == key) {
                key_values[k] = Some(value);
            }
        }
        if special && self.excluded.iter().any(|e| e == key) {
            return;
        }
        if !*first {
            buf.push(b',');
        }
        *first = false;
        write_key(key, buf);
        buf.push(b':');
        if !special {
            copy_value(value, multiline, buf);
            return;
        }
        if !self.masked.is_empty() {
            if let Some(masked) = self.mask(key, value) {
                buf.extend_from_slice(masked.as_bytes());
                return;
            }
        }
        if self.datetime_fields.iter().any(|f| f == key) {
            match normalise_datetime(value) {
                Some(t) => {
                    if self.cursor_field.as_deref() == Some(key.as_ref()) {
                        found.cursor = Some(t);
                    }
                    write_utc(t, buf);
                }
                None => copy_value(value, multiline, buf),
            }
        } else {
            copy_value(value, multiline, buf);
        }
    }

    /// The value of top-level field `key` with its masked parts replaced, if it has any.
    fn mask(&self, key: &str, value: &str) -> Option<String> {
        let paths: Vec<&[String]> = self
            .masked
            .iter()
            .filter(|p| p.first().is_some_and(|f| f == key))
            .map(|p| &p[1..])
            .collect();
        if paths.is_empty() {
            return None;
        }
        // A value that is not JSON cannot come from serde's raw scan; mask it whole.
        let mut v: Value = serde_json::from_str(value).unwrap_or(Value::from(MASK));
        for p in paths {
            mask_value(&mut v, p);
        }
        Some(v.to_string())
    }
}

/// A set of field names that may answer "maybe" for a name not in it, never "no" for one
/// in it: 256 bits indexed by a name's length and first and last bytes.
#[derive(Default)]
struct NameFilter([u64; 4]);

impl NameFilter {
    fn slot(name: &str) -> usize {
        let b = name.as_bytes();
        let (first, last) = (b.first().copied(), b.last().copied());
        let mix =
            b.len() * 7 + usize::from(first.unwrap_or(0)) + 3 * usize::from(last.unwrap_or(0));
        mix & 255
    }

    fn add(&mut self, name: &str) {
        let i = Self::slot(name);
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn may_hold(&self, name: &str) -> bool {
        let i = Self::slot(name);
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// `"HttpHeaders[].Value"` → `["HttpHeaders", "[]", "Value"]`.
fn mask_steps(path: &str) -> Vec<String> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        match part.strip_suffix("[]") {
            Some(field) => {
                steps.push(field.to_string());
                steps.push("[]".to_string());
            }
            None => steps.push(part.to_string()),
        }
    }
    steps
}

/// Replaces what `steps` points at inside `v` by [`MASK`]; nulls stay null (nothing to hide).
fn mask_value(v: &mut Value, steps: &[String]) {
    let Some((step, rest)) = steps.split_first() else {
        if !v.is_null() {
            *v = Value::from(MASK);
        }
        return;
    };
    if step == "[]" {
        if let Some(items) = v.as_array_mut() {
            items.iter_mut().for_each(|item| mask_value(item, rest));
        }
    } else if let Some(inner) = v.get_mut(step.as_str()) {
        mask_value(inner, rest);
    }
}

/// Copies a raw value. A record line becomes one protocol message line as it is, so the
/// line breaks of a pretty-printed body are left out: JSON allows no raw line break inside a
/// string, so each one is whitespace between tokens (found by fuzzing).
fn copy_value(raw: &str, multiline: bool, buf: &mut Vec<u8>) {
    if multiline {
        buf.extend(raw.bytes().filter(|b| *b != b'\n' && *b != b'\r'));
    } else {
        buf.extend_from_slice(raw.as_bytes());
    }
}

#[derive(Debug)]
pub enum ShapeError<E> {
    Malformed(String),
    Emit(E),
}

// The Cow's variant is the point: a borrowed key had no escapes in the input.
#[allow(clippy::ptr_arg)]
fn write_key(key: &Cow<str>, buf: &mut Vec<u8>) {
    match key {
        // A borrowed key had no escapes in the input, so it needs none in the output.
        Cow::Borrowed(k) => {
            buf.push(b'"');
            buf.extend_from_slice(k.as_bytes());
            buf.push(b'"');
        }
        Cow::Owned(k) => {
            // Writing a String into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *buf, k);
        }
    }
}

/// Parses a raw JSON date-time string (any fraction length, any offset). `None` for null,
/// non-strings and unreadable values, which then pass through unchanged.
pub fn normalise_datetime(raw: &str) -> Option<DateTime<Utc>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        return None;
    }
    let inner = inner.strip_suffix(" (GMT)").unwrap_or(inner);
    DateTime::parse_from_rfc3339(inner)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        // RFC 3339 has four-digit years: an offset that moves 0000-01-01 or 9999-12-31 past
        // them in UTC is left as it came rather than written as `-0001-…` (found by fuzzing).
        .filter(|t| (0..=9999).contains(&t.year()))
}

/// `"2025-03-11T18:02:37.512483Z"`: UTC, `Z`, six digits (or none when whole seconds).
/// Written digit by digit (it runs for every date-time of every record); the same text as
/// chrono's `to_rfc3339_opts(Secs or Micros, true)`, which a test checks.
fn write_utc(t: DateTime<Utc>, buf: &mut Vec<u8>) {
    let micros = t.timestamp_subsec_micros() != 0;
    let Ok(year @ 0..=9999) = u32::try_from(t.year()) else {
        // Never: `normalise_datetime` keeps four-digit years only. Chrono's text then.
        let format = if micros {
            SecondsFormat::Micros
        } else {
            SecondsFormat::Secs
        };
        buf.push(b'"');
        buf.extend_from_slice(t.to_rfc3339_opts(format, true).as_bytes());
        buf.push(b'"');
        return;
    };
    // A leap second is kept as second 59 with a fraction of a second or more.
    let (mut second, mut nano) = (t.second(), t.nanosecond());
    if nano >= 1_000_000_000 {
        second += 1;
        nano -= 1_000_000_000;
    }
    let digits = |buf: &mut Vec<u8>, v: u32, n: u32| {
        for i in (0..n).rev() {
            buf.push(b'0' + (v / 10u32.pow(i) % 10) as u8);
        }
    };
    buf.push(b'"');
    digits(buf, year, 4);
    buf.push(b'-');
    digits(buf, t.month(), 2);
    buf.push(b'-');
    digits(buf, t.day(), 2);
    buf.push(b'T');
    digits(buf, t.hour(), 2);
    buf.push(b':');
    digits(buf, t.minute(), 2);
    buf.push(b':');
    digits(buf, second, 2);
    if micros {
        buf.push(b'.');
        digits(buf, nano / 1000, 6);
    }
    buf.extend_from_slice(b"Z\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(
        body: &str,
        shaper: &Shaper,
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> (Vec<serde_json::Value>, PageTally) {
        let page = parse_page(body, Envelope::List("Messages")).unwrap();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let tally = shaper
            .shape_page::<()>(&page.records, window, &mut buf, &mut |line| {
                out.push(serde_json::from_slice(line).unwrap());
                Ok(())
            })
            .map_err(|_| ())
            .unwrap();
        (out, tally)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn seven_digit_eastern_times_become_six_digit_utc() {
        let body = r#"{"TotalCount":1,"Messages":[{"MessageID":"a","ReceivedAt":"2025-03-11T14:02:37.5124831-04:00","Future":{"x":[1,"é"]}}]}"#;
        let shaper = Shaper::new(vec!["ReceivedAt".into()], Some("ReceivedAt"), vec![]);
        let (out, tally) = shape(body, &shaper, None);
        assert_eq!(out[0]["ReceivedAt"], "2025-03-11T18:02:37.512483Z");
        assert_eq!(out[0]["Future"]["x"][1], "é");
        assert_eq!(tally.emitted, 1);
    }

    #[test]
    fn whole_seconds_and_nulls_stay_readable() {
        let body = r#"{"Messages":[{"MessageID":"a","ReceivedAt":"2022-11-01T12:48:26-04:00","UpdatedAt":null}]}"#;
        let shaper = Shaper::new(vec!["ReceivedAt".into(), "UpdatedAt".into()], None, vec![]);
        let (out, _) = shape(body, &shaper, None);
        assert_eq!(out[0]["ReceivedAt"], "2022-11-01T16:48:26Z");
        assert!(out[0]["UpdatedAt"].is_null());
    }

    #[test]
    fn records_outside_the_half_open_window_are_dropped() {
        let body = r#"{"Messages":[
            {"MessageID":"before","ReceivedAt":"2026-01-01T00:00:00.9999999Z"},
            {"MessageID":"start","ReceivedAt":"2026-01-01T00:00:01.0000000Z"},
            {"MessageID":"end","ReceivedAt":"2026-01-01T00:00:02.0000000Z"},
            {"MessageID":"nocursor"}]}"#;
        let shaper = Shaper::new(vec!["ReceivedAt".into()], Some("ReceivedAt"), vec![]);
        let window = Some((at("2026-01-01T00:00:01Z"), at("2026-01-01T00:00:02Z")));
        let (out, tally) = shape(body, &shaper, window);
        let ids: Vec<_> = out
            .iter()
            .map(|r| r["MessageID"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec!["start", "nocursor"]);
        assert_eq!(tally.outside_window, 2);
        assert_eq!(tally.no_cursor, 1);
    }

    #[test]
    fn keyless_repeated_and_other_partition_records_are_counted_not_emitted() {
        let body = r#"{"Messages":[
            {"MessageID":"a","MessageStream":"outbound"},
            {"MessageID":null,"MessageStream":"outbound"},
            {"MessageStream":"outbound"},
            {"MessageID":"a","MessageStream":"outbound"},
            {"MessageID":"b","MessageStream":"broadcast"},
            {"MessageID":"c","MessageStream":"outbound"}]}"#;
        let page = parse_page(body, Envelope::List("Messages")).unwrap();
        let shaper = Shaper::new(vec![], None, vec![]).with_primary_key(&["MessageID"]);
        let query = Query {
            window: None,
            partition: Some(("MessageStream", "outbound")),
            extra: &[],
        };
        let mut seen = std::collections::HashSet::new();
        let mut offered = Vec::new();
        let mut out = Vec::new();
        let tally = shaper
            .shape_checked::<()>(
                &page.records,
                query,
                &mut Vec::new(),
                &mut |k| {
                    offered.push(k.to_string());
                    seen.insert(k.to_string())
                },
                &mut |line| {
                    out.push(serde_json::from_slice::<serde_json::Value>(line).unwrap());
                    Ok(())
                },
            )
            .map_err(|_| ())
            .unwrap();
        let ids: Vec<_> = out.iter().map(|r| r["MessageID"].clone()).collect();
        assert_eq!(ids, vec!["a", "c"]);
        assert_eq!(
            (
                tally.emitted,
                tally.keyless,
                tally.repeated,
                tally.other_partition
            ),
            (2, 2, 1, 1)
        );
        // Every keyed record is offered as raw JSON, even one of another partition.
        assert_eq!(offered, vec!["\"a\"", "\"a\"", "\"b\"", "\"c\""]);
    }

    #[test]
    fn records_days_outside_their_window_are_told_apart_from_a_time_zone() {
        let body = r#"{"Messages":[
            {"MessageID":"zone","ReceivedAt":"2026-01-01T05:00:00Z"},
            {"MessageID":"ignored","ReceivedAt":"2025-12-01T00:00:00Z"}]}"#;
        let shaper = Shaper::new(vec!["ReceivedAt".into()], Some("ReceivedAt"), vec![]);
        let window = Some((at("2026-01-01T00:00:00Z"), at("2026-01-01T01:00:00Z")));
        let (out, tally) = shape(body, &shaper, window);
        assert!(out.is_empty());
        assert_eq!((tally.far_outside, tally.days_outside), (2, 1));
    }

    #[test]
    fn deselected_fields_are_left_out_and_escaped_keys_survive() {
        let body = r#"{"Messages":[{"MessageID":"a","Subject":"x","We\"ird":1}]}"#;
        let shaper = Shaper::new(vec![], None, vec!["Subject".into()]);
        let (out, _) = shape(body, &shaper, None);
        assert!(out[0].get("Subject").is_none());
        assert_eq!(out[0]["We\"ird"], 1);
    }

    #[test]
    fn a_pretty_printed_page_still_gives_one_line_per_record() {
        // Fuzzing finding: line breaks inside values were copied into the record line, which
        // splits its RECORD message over several lines of the JSON-lines protocol.
        let body = "{\r\n  \"Messages\": [\n    {\n      \"MessageID\": \"a\",\n      \"To\": [\n        {\"Email\": \"x@y\",\r\n \"Name\": null}\n      ],\n      \"Subject\": \"two\\nlines\"\n    }\n  ]\n}";
        let shaper = Shaper::new(vec![], None, vec![]);
        let page = parse_page(body, Envelope::List("Messages")).unwrap();
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        shaper
            .shape_page::<()>(&page.records, None, &mut buf, &mut |line| {
                lines.push(String::from_utf8(line.to_vec()).unwrap());
                Ok(())
            })
            .map_err(|_| ())
            .unwrap();
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains(['\n', '\r']), "{:?}", lines[0]);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["To"][0]["Email"], "x@y");
        assert_eq!(v["Subject"], "two\nlines");
    }

    #[test]
    fn date_times_that_leave_four_digit_years_in_utc_pass_through_unchanged() {
        // Fuzzing finding: these became "-0001-12-31T23:00:00Z" and "+10000-01-01T04:59:59Z",
        // which are not RFC 3339.
        let body = r#"{"Messages":[{"MessageID":"a","ReceivedAt":"0000-01-01T00:00:00+01:00"},
            {"MessageID":"b","ReceivedAt":"9999-12-31T23:59:59-05:00"}]}"#;
        let shaper = Shaper::new(vec!["ReceivedAt".into()], None, vec![]);
        let (out, _) = shape(body, &shaper, None);
        assert_eq!(out[0]["ReceivedAt"], "0000-01-01T00:00:00+01:00");
        assert_eq!(out[1]["ReceivedAt"], "9999-12-31T23:59:59-05:00");
    }

    #[test]
    fn utc_text_is_chronos_to_the_byte_including_leap_seconds() {
        let mut times: Vec<DateTime<Utc>> = [
            "2025-03-11T14:02:37.5124831-04:00",
            "2022-11-01T12:48:26-04:00",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.9999999Z",
            "2026-01-01T00:00:00.0000009Z",
            "2026-01-01T00:00:00.000001Z",
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "2016-12-31T23:59:60.0000004Z",
        ]
        .iter()
        .map(|s| normalise_datetime(&format!("\"{s}\"")).unwrap())
        .collect();
        // Instants spread over the four-digit years, with every kind of fraction.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % 315_537_897_600) as i64 - 62_167_219_200;
            let nanos = match x % 4 {
                0 => 0,
                1 => (x >> 20) as u32 % 1_000 * 1_000,
                _ => (x >> 20) as u32 % 1_000_000_000,
            };
            times.push(DateTime::from_timestamp(secs, nanos).unwrap());
        }
        for t in times {
            let format = if t.timestamp_subsec_micros() == 0 {
                SecondsFormat::Secs
            } else {
                SecondsFormat::Micros
            };
            let want = format!("\"{}\"", t.to_rfc3339_opts(format, true));
            let mut got = Vec::new();
            write_utc(t, &mut got);
            assert_eq!(String::from_utf8(got).unwrap(), want);
        }
    }

    #[test]
    fn line_breaks_are_found_wherever_they_are() {
        for len in [0, 1, 31, 32, 33, 64, 100] {
            assert!(!has_line_break(&"a".repeat(len)));
            for at in 0..len {
                for brk in ["\n", "\r"] {
                    let mut text = "a".repeat(len);
                    text.replace_range(at..=at, brk);
                    assert!(has_line_break(&text), "{len} {at}");
                }
            }
        }
    }

    #[test]
    fn a_record_that_is_no_object_keeps_its_place_and_stops_the_shaper_there() {
        let body = r#"{"Messages":[{"MessageID":"a"},[1,{"x":2}],{"MessageID":"b"}]}"#;
        let page = parse_page(body, Envelope::List("Messages")).unwrap();
        let objects: Vec<bool> = page.records.iter().map(|r| r.object().is_some()).collect();
        assert_eq!(objects, vec![true, false, true]);
        let mut ids = Vec::new();
        let result = Shaper::new(vec![], None, vec![]).shape_page::<()>(
            &page.records,
            None,
            &mut Vec::new(),
            &mut |line| {
                let v: serde_json::Value = serde_json::from_slice(line).unwrap();
                ids.push(v["MessageID"].clone());
                Ok(())
            },
        );
        match result {
            Err(ShapeError::Malformed(why)) => assert!(why.contains("not a JSON object"), "{why}"),
            _ => panic!("the shaper went past a record that is not an object"),
        }
        assert_eq!(ids, vec!["a"]);
    }

    #[test]
    fn pages_a_full_parser_rejects_for_a_key_or_a_number_are_rejected_whole() {
        for body in [
            r#"{"Messages":[{"MessageID":"a"},{"Bad\ud800":1}]}"#,
            r#"{"Messages":[{"MessageID":"a"},1e400]}"#,
        ] {
            assert!(serde_json::from_str::<serde_json::Value>(body).is_err());
            let err = parse_page(body, Envelope::List("Messages")).err().unwrap();
            assert!(err.starts_with("the body is not a JSON object"), "{err}");
        }
        let err = parse_page(r#"{"Messages":{"a":1}}"#, Envelope::List("Messages")).err();
        assert!(err.unwrap().starts_with("'Messages' is not an array"));
    }

    #[test]
    fn scalars_and_carried_fields_of_the_envelope_come_along() {
        let body = r#"{"InactiveMails":87,"Bounces":[{"Name":"All","Count":200}]}"#;
        let envelope = Envelope::ListAndScalars {
            key: "Bounces",
            scalars: &["InactiveMails"],
        };
        let page = parse_page(body, envelope).unwrap();
        let names: Vec<String> = page
            .all()
            .iter()
            .map(|r| {
                let obj = r.object().unwrap();
                let fields: Vec<String> = obj
                    .0
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.get()))
                    .collect();
                fields.join(",")
            })
            .collect();
        assert_eq!(
            names,
            vec!["Name=\"All\",Count=200", "Name=\"InactiveMails\",Count=87"]
        );

        let body = r#"{"MessageID":"m","MessageEvents":[{"Type":"Delivered"}],"Other":1}"#;
        let envelope = Envelope::Nested {
            key: "MessageEvents",
            carry: &["MessageID"],
        };
        let page = parse_page(body, envelope).unwrap();
        assert_eq!(page.records.len(), 1);
        let carried: Vec<(&str, &str)> = page
            .carried
            .iter()
            .map(|(k, v)| (k.as_ref(), v.get()))
            .collect();
        assert_eq!(carried, vec![("MessageID", "\"m\"")]);
    }

    /// The fast path answers exactly as serde does, or not at all.
    fn fast_path(body: &str) -> bool {
        let envelope = Envelope::List("Messages");
        let fast = scan::list_page(body, "Messages", has_line_break(body));
        let slow = parse_page_with_serde(body, envelope);
        match (&fast, &slow) {
            (Some(f), Ok(s)) => {
                assert_eq!(page_difference(f, s), None, "{body}");
            }
            (Some(_), Err(e)) => panic!("the fast path read what serde rejects ({e}): {body}"),
            (None, _) => {}
        }
        fast.is_some()
    }

    #[test]
    fn the_fast_path_reads_common_pages_exactly_as_serde_does() {
        for body in [
            r#"{"TotalCount":2,"Messages":[{"MessageID":"a","To":[{"Email":"x@y","Name":""}],"ReceivedAt":"2026-11-20T00:46:25.1448736-05:00","Metadata":{"k":"v"},"Sandboxed":false,"N":null,"F":-1.5e+3,"Z":0,"E":1E2,"D":0.25}]}"#,
            r#"{"Messages":[],"TotalCount":0}"#,
            r#"{"TotalCount":1.5,"Messages":[{}]}"#,
            r#"{"TotalCount":-1,"Messages":[{"a":"é ✓ \" \\ \/ \b\f\n\r\t \u00e9\uD800 long string of more than eight bytes"}]}"#,
            " \r\n{ \"Messages\" : [ { \"a\" : [ 1 , { } , [ ] , \"x\" ] } , {\"b\":{\"c\":{\"d\":[true,false,null]}}} ] , \"Other\" : {\"TotalCount\":3} } \n",
            r#"{"Extra":"Messages","Messages":[{"":""}]}"#,
            r#"{"Messages":[{"a":1,"a":2}]}"#,
        ] {
            assert!(fast_path(body), "the fast path declined {body}");
        }
    }

    #[test]
    fn the_fast_path_leaves_anything_unusual_to_serde() {
        for body in [
            "",
            "{}",
            "[]",
            r#"{"Messages":[1]}"#,
            r#"{"Messages":[{"a":1},"x"]}"#,
            r#"{"Messages":{"a":1}}"#,
            r#"{"Messages":[{"k\u0041":1}]}"#,
            r#"{"M\u0065ssages":[{"a":1}]}"#,
            r#"{"Messages":[{"a":1}],"Messages":[]}"#,
            r#"{"TotalCount":1,"TotalCount":2,"Messages":[]}"#,
            r#"{"Messages":[{"a":01}]}"#,
            r#"{"Messages":[{"a":1.}]}"#,
            r#"{"Messages":[{"a":1e}]}"#,
            r#"{"Messages":[{"a":-}]}"#,
            r#"{"Messages":[{"a":.5}]}"#,
            r#"{"Messages":[{"a":+1}]}"#,
            r#"{"Messages":[{"a":tru}]}"#,
            r#"{"Messages":[{"a":nul}]}"#,
            r#"{"Messages":[{"a":"\x"}]}"#,
            r#"{"Messages":[{"a":"\u12G4"}]}"#,
            r#"{"Messages":[{"a":"\u12"}]}"#,
            "{\"Messages\":[{\"a\":\"tab\there\"}]}",
            r#"{"Messages":[{"a":1,}]}"#,
            r#"{"Messages":[{"a":1},]}"#,
            r#"{"Messages":[{"a":[1,]}]}"#,
            r#"{"Messages":[{"a":{"b":1,}}]}"#,
            r#"{"Messages":[{"a":{"b"}}]}"#,
            r#"{"Messages":[{"a":{1:2}}]}"#,
            r#"{"Messages":[{"a":1}]} x"#,
            r#"{"Messages":[{"a":1}]"#,
            r#"{"Messages":[{"a":"unterminated}]}"#,
            r#"{"Messages":[{"a":1} {"b":2}]}"#,
            r#"{"Messages":[{"a":1e400}]}"#,
            "\u{feff}{\"Messages\":[]}",
            &format!(
                r#"{{"Messages":[{{"a":{}1{}}}]}}"#,
                "[".repeat(70),
                "]".repeat(70)
            ),
        ] {
            let _ = fast_path(body);
        }
        // Declined, not misread: these are the ones the subset leaves out.
        for body in [
            r#"{"Messages":[{"k\u0041":1}]}"#,
            r#"{"Messages":[1]}"#,
            r#"{"Messages":[{"a":01}]}"#,
            &format!(
                r#"{{"Messages":[{{"a":{}1{}}}]}}"#,
                "[".repeat(70),
                "]".repeat(70)
            ),
        ] {
            assert!(!fast_path(body), "{body}");
        }
        // 1e400 is a valid JSON number that only `Value` cannot hold: both paths keep it raw.
        assert!(fast_path(r#"{"Messages":[{"a":1e400}]}"#));
    }

    #[test]
    fn a_missing_records_array_is_reported() {
        assert!(parse_page(r#"{"TotalCount":1}"#, Envelope::List("Bounces"))
            .err()
            .unwrap()
            .contains("'Bounces'"));
        assert!(parse_page("<html>", Envelope::List("Bounces")).is_err());
    }
}
