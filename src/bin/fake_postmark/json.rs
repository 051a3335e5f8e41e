//! Minimal hand-rolled JSON writing into a byte buffer.
//!
//! Pages are rendered on demand from compact records, ~500 per request at up to ~1,000
//! requests per second, so records are written straight into a reused `Vec<u8>` with no
//! intermediate `serde_json::Value`. Only small control/catalog bodies go through serde.

/// Appends a quoted JSON string. With `ascii`, non-ASCII characters are written as `\uXXXX`
/// escapes (surrogate pairs above the BMP) so clients see both legal spellings.
pub fn string(out: &mut Vec<u8>, s: &str, ascii: bool) {
    out.push(b'"');
    let b = s.as_bytes();
    // Copy runs of bytes that need no escaping in one go; this runs ~10 times per record.
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c >= 0x20 && c != b'"' && c != b'\\' && (c < 0x80 || !ascii) {
            i += 1;
            continue;
        }
        out.extend_from_slice(&b[start..i]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < 0x20 => push_u_escape(out, u16::from(c)),
            _ => {
                // Non-ASCII in ascii mode: escape the whole character as UTF-16 units.
                let ch = s
                    .get(i..)
                    .and_then(|t| t.chars().next())
                    .unwrap_or('\u{fffd}');
                let mut units = [0u16; 2];
                for u in ch.encode_utf16(&mut units) {
                    push_u_escape(out, *u);
                }
                i += ch.len_utf8();
                start = i;
                continue;
            }
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

fn push_u_escape(out: &mut Vec<u8>, u: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[usize::from((u >> shift) & 0xf)]);
    }
}

/// Appends an unsigned integer.
pub fn uint(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Appends `"name":` for a literal key.
pub fn key(out: &mut Vec<u8>, name: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Appends a quoted UUID-looking id. `bits` must be a bijective function of the record id
/// (see `gen::mix`) so that distinct records never share a MessageID: its 64 bits are all
/// kept, and `fill` only supplies the remaining positions plus the v4/variant markers.
pub fn uuid(out: &mut Vec<u8>, bits: u64, fill: u64) {
    out.push(b'"');
    uuid_raw(out, bits, fill);
    out.push(b'"');
}

/// [`uuid`] without the quotes (for the plain-text truth listing).
pub fn uuid_raw(out: &mut Vec<u8>, bits: u64, fill: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // 32 nibbles: 16 from `bits`, the version nibble '4', the variant nibble (8-b) and 14
    // from `fill`.
    let mut nib = [0u8; 32];
    let mut b = bits;
    let mut f = fill;
    for (i, slot) in nib.iter_mut().enumerate() {
        *slot = match i {
            12 => 4,
            16 => 8 | (f & 3) as u8,
            _ if i < 12 || (13..=15).contains(&i) || i == 17 => {
                let v = (b & 0xf) as u8;
                b >>= 4;
                v
            }
            _ => {
                f >>= 4;
                (f & 0xf) as u8
            }
        };
    }
    for (i, n) in nib.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(*n)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str, ascii: bool) -> String {
        let mut o = Vec::new();
        string(&mut o, v, ascii);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn escapes_parse_back() {
        for v in [
            "plain",
            "quote \" and \\ back",
            "Café 日本 🎉",
            "ctl \u{1}\n\t",
        ] {
            for ascii in [false, true] {
                let out = s(v, ascii);
                let back: String = serde_json::from_str(&out).unwrap();
                assert_eq!(back, v);
                if ascii {
                    assert!(out.is_ascii());
                }
            }
        }
    }

    #[test]
    fn uuid_shape_and_uniqueness() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000u64 {
            let mut o = Vec::new();
            uuid(&mut o, crate::gen::mix(i), 0xdead_beef);
            let t = String::from_utf8(o).unwrap();
            assert_eq!(t.len(), 38);
            assert_eq!(&t[15..16], "4");
            assert!(seen.insert(t));
        }
    }

    #[test]
    fn uints() {
        for v in [0u64, 7, 10, 4_129_983_741, u64::MAX] {
            let mut o = Vec::new();
            uint(&mut o, v);
            assert_eq!(String::from_utf8(o).unwrap(), v.to_string());
        }
    }
}
