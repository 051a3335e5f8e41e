//! The fast path of [`super::parse_page`] for the common page,
//! `{"TotalCount": n, "<key>": [{record}, ...]}`, read byte by byte in one pass.
//!
//! It accepts only what it checks completely: a subset of the JSON serde_json accepts, read
//! exactly as the serde path reads it (the same records, keys and raw value slices; tests
//! and the `page` fuzz target compare the two). Anything outside that subset answers `None`
//! and the page is read by serde instead, which then accepts or rejects it as before: a key
//! with an escape (serde decodes it), a record that is not an object, a repeated top-level
//! key, a value nested deeper than [`MAX_DEPTH`], any syntax error.

use std::borrow::Cow;

use super::{Page, Raw, RawObject, Record};

/// Values nested deeper than this go the serde way (which has no such limit for values).
const MAX_DEPTH: usize = 64;

const ONES: u64 = u64::MAX / 255;
const HIGH: u64 = ONES << 7;

/// The page, when the body is in the subset this reads; `None` otherwise.
pub(super) fn list_page<'a>(body: &'a str, key: &str, multiline: bool) -> Option<Page<'a>> {
    let mut s = Scanner {
        text: body,
        b: body.as_bytes(),
        i: 0,
    };
    let mut page = Page {
        total: None,
        records: Vec::new(),
        built: Vec::new(),
        carried: Vec::new(),
    };
    let (mut found, mut total_seen) = (false, false);
    s.ws();
    s.eat(b'{')?;
    loop {
        s.ws();
        let k = s.key()?;
        s.ws();
        s.eat(b':')?;
        s.ws();
        if k == key {
            if found {
                return None;
            }
            found = true;
            page.records = s.records(multiline)?;
        } else if k == "TotalCount" {
            if total_seen {
                return None;
            }
            total_seen = true;
            page.total = serde_json::from_str::<u64>(s.value()?).ok();
        } else {
            s.value()?;
        }
        s.ws();
        match s.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    s.ws();
    (s.i == s.b.len() && found).then_some(page)
}

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    /// JSON whitespace, as serde_json skips it.
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// A key without escapes (serde borrows exactly these), without its quotes.
    fn key(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = self.string_end(false)?;
        // Both ends are at ASCII quotes, so on character boundaries.
        self.text.get(start..end)
    }

    /// Moves past the closing quote of a string whose opening quote was read; returns the
    /// quote's index. Rejects what serde rejects in a string (a control character, an
    /// unknown escape, `\u` without four hex digits), and with `escapes` false any escape.
    fn string_end(&mut self, escapes: bool) -> Option<usize> {
        loop {
            // Eight bytes at a time while none is a quote, a backslash or a control
            // character (as serde's own scan does).
            while let Some(chunk) = self.b.get(self.i..self.i + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let v = u64::from_le_bytes(word);
                let quote = v ^ (ONES * u64::from(b'"'));
                let backslash = v ^ (ONES * u64::from(b'\\'));
                let special = (v.wrapping_sub(ONES * 0x20) & !v)
                    | (quote.wrapping_sub(ONES) & !quote)
                    | (backslash.wrapping_sub(ONES) & !backslash);
                if special & HIGH != 0 {
                    break;
                }
                self.i += 8;
            }
            match self.next()? {
                b'"' => return Some(self.i - 1),
                b'\\' if escapes => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.b.get(self.i..self.i + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 4;
                    }
                    _ => return None,
                },
                b'\\' | 0..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// The records array: objects only.
    fn records(&mut self, multiline: bool) -> Option<Vec<Record<'a>>> {
        self.eat(b'[')?;
        let mut records = Vec::new();
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(records);
        }
        loop {
            self.ws();
            let fields = self.object()?;
            records.push(Record {
                fields: Ok(fields),
                multiline,
            });
            self.ws();
            match self.next()? {
                b',' => {}
                b']' => return Some(records),
                _ => return None,
            }
        }
    }

    /// One record: its keys (without escapes) and raw values.
    fn object(&mut self) -> Option<RawObject<'a>> {
        self.eat(b'{')?;
        let mut fields = Vec::with_capacity(20);
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(RawObject(fields));
        }
        loop {
            self.ws();
            let k = self.key()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            fields.push((Cow::Borrowed(k), Raw(self.value()?)));
            self.ws();
            match self.next()? {
                b',' => {}
                b'}' => return Some(RawObject(fields)),
                _ => return None,
            }
        }
    }

    /// One whole value's text (whitespace around it excluded, as serde's `RawValue`).
    fn value(&mut self) -> Option<&'a str> {
        let start = self.i;
        self.skip(0)?;
        // A value starts and ends with an ASCII byte: both ends are character boundaries.
        self.text.get(start..self.i)
    }

    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.string_end(true).map(|_| ())
            }
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.eat(b'"')?;
                    self.string_end(true)?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => {}
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => {}
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, the grammar serde checks.
    fn number(&mut self) -> Option<()> {
        if self.peek()? == b'-' {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {
                if let Some(b'0'..=b'9') = self.peek() {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }
}
