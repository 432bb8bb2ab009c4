//! The hashed record: what the registry store holds about one citizen.
//!
//! A record is its locator plus, per field the registry has a value for, the
//! tag of the exact form, the tag of the folded form (fields that have one)
//! and the tags of its tokens (token-scored fields). Nothing else about the
//! person. Its byte encoding ([`RecordTags::encode`]) is what the store keeps;
//! it is deterministic, so re-importing an unchanged record yields equal bytes
//! and the import can tell "unchanged" from "changed".
//!
//! Encoding, version 1:
//! ```text
//! u8 version = 1
//! u8 field count
//! per field, in ascending field code:
//!   u8 field code, u8 flags (bit 0: folded tag present; other bits 0),
//!   16 bytes exact tag, [16 bytes folded tag], u8 token count, 16 bytes per token tag (sorted)
//! ```
//!
//! The decoder accepts exactly what the encoder writes (fields in ascending
//! code, flags 0 or 1, tokens strictly ascending), so every record has one
//! encoding and "unchanged" is a byte comparison.

use std::collections::BTreeMap;

use crate::Field;
use crate::keys::{Form, SubjectKey, Tag};
use crate::normalize::Normalized;

/// The tags kept for one field of one record.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct FieldTags {
    /// Tag of the exact canonical form.
    pub exact: Tag,
    /// Tag of the folded form, for fields that have one.
    pub folded: Option<Tag>,
    /// Sorted tags of the folded tokens, for token-scored fields.
    pub tokens: Vec<Tag>,
}

/// All tags of one record, by field.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RecordTags {
    /// Fields the registry has a value for.
    pub fields: BTreeMap<Field, FieldTags>,
}

impl std::fmt::Debug for RecordTags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordTags({} fields)", self.fields.len())
    }
}

/// The stored bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored record tags are corrupt: {0}")]
pub struct DecodeError(&'static str);

const ENCODING_VERSION: u8 = 1;
const MAX_TOKENS: usize = 255;

impl RecordTags {
    /// Computes the tags of a registry record from its normalised fields.
    pub fn compute(key: &SubjectKey, fields: &[(Field, Normalized)]) -> RecordTags {
        let mut out = BTreeMap::new();
        for (field, value) in fields {
            let mut tokens: Vec<Tag> = value
                .tokens
                .iter()
                .take(MAX_TOKENS)
                .map(|t| key.tag(*field, Form::Token, t))
                .collect();
            tokens.sort_unstable();
            tokens.dedup();
            out.insert(
                *field,
                FieldTags {
                    exact: key.tag(*field, Form::Exact, &value.exact),
                    folded: value
                        .folded
                        .as_ref()
                        .map(|f| key.tag(*field, Form::Folded, f)),
                    tokens,
                },
            );
        }
        RecordTags { fields: out }
    }

    /// The deterministic byte encoding kept by the store.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.fields.len() * 40);
        out.push(ENCODING_VERSION);
        out.push(self.fields.len() as u8);
        for (field, tags) in &self.fields {
            out.push(field.code());
            out.push(u8::from(tags.folded.is_some()));
            out.extend_from_slice(&tags.exact);
            if let Some(folded) = &tags.folded {
                out.extend_from_slice(folded);
            }
            let n = tags.tokens.len().min(MAX_TOKENS);
            out.push(n as u8);
            for t in &tags.tokens[..n] {
                out.extend_from_slice(t);
            }
        }
        out
    }

    /// Decodes bytes produced by [`RecordTags::encode`].
    pub fn decode(bytes: &[u8]) -> Result<RecordTags, DecodeError> {
        let mut r = Reader(bytes);
        if r.u8()? != ENCODING_VERSION {
            return Err(DecodeError("unknown encoding version"));
        }
        let count = r.u8()?;
        let mut fields = BTreeMap::new();
        let mut last_code = None;
        for _ in 0..count {
            let code = r.u8()?;
            let field = Field::from_code(code).ok_or(DecodeError("unknown field code"))?;
            if last_code.is_some_and(|last| code <= last) {
                return Err(DecodeError("fields out of order or repeated"));
            }
            last_code = Some(code);
            let folded = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError("unknown flags")),
            };
            let exact = r.tag()?;
            let folded = if folded { Some(r.tag()?) } else { None };
            let n = r.u8()?;
            let tokens = (0..n).map(|_| r.tag()).collect::<Result<Vec<_>, _>>()?;
            if tokens.windows(2).any(|w| w[0] >= w[1]) {
                return Err(DecodeError("tokens out of order or repeated"));
            }
            fields.insert(
                field,
                FieldTags {
                    exact,
                    folded,
                    tokens,
                },
            );
        }
        if !r.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(RecordTags { fields })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.0.split_first().ok_or(DecodeError("truncated"))?;
        self.0 = rest;
        Ok(b)
    }

    fn tag(&mut self) -> Result<Tag, DecodeError> {
        if self.0.len() < 16 {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(16);
        self.0 = rest;
        let mut t = [0u8; 16];
        t.copy_from_slice(head);
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize_field;

    fn sample() -> RecordTags {
        let key = SubjectKey::from_bytes_for_tests([1; 32]);
        let fields = [
            (Field::FullName, "Nguyễn Văn An"),
            (Field::DateOfBirth, "1985-03-12"),
            (
                Field::PlaceOfResidence,
                "12 Lê Lợi, Phường Bến Nghé, Quận 1",
            ),
        ]
        .map(|(f, v)| (f, normalize_field(f, v).expect("valid")));
        RecordTags::compute(&key, &fields)
    }

    #[test]
    fn encoding_round_trips_and_is_deterministic() {
        let tags = sample();
        let bytes = tags.encode();
        assert_eq!(RecordTags::decode(&bytes), Ok(tags.clone()));
        assert_eq!(sample().encode(), bytes);
        assert!(tags.fields[&Field::FullName].folded.is_some());
        assert!(tags.fields[&Field::DateOfBirth].folded.is_none());
        assert!(!tags.fields[&Field::PlaceOfResidence].tokens.is_empty());
    }

    #[test]
    fn corrupt_bytes_are_refused() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(RecordTags::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(RecordTags::decode(&extra).is_err());
        let mut bad_version = bytes;
        bad_version[0] = 9;
        assert!(RecordTags::decode(&bad_version).is_err());
    }

    /// Found by `cargo fuzz run record_decode`: a flags byte with an unused
    /// bit set decoded, and re-encoded to other bytes.
    #[test]
    fn only_the_canonical_encoding_decodes() {
        let crash = [
            1, 1, 1, 0x40, 3, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        ];
        assert_eq!(
            RecordTags::decode(&crash),
            Err(DecodeError("unknown flags"))
        );
        let bytes = sample().encode();
        // Every single-bit flip either fails or decodes to other tags
        // whose encoding is exactly the flipped bytes.
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                if let Ok(tags) = RecordTags::decode(&flipped) {
                    assert_eq!(tags.encode(), flipped, "byte {i} bit {bit}");
                }
            }
        }
        // Fields out of order, and tokens out of order, are refused.
        let tags = sample();
        let mut swapped = RecordTags::default();
        let residence = tags.fields[&Field::PlaceOfResidence].clone();
        swapped
            .fields
            .insert(Field::PlaceOfResidence, residence.clone());
        let mut out_of_order = swapped.encode();
        let mut reversed = residence.clone();
        reversed.tokens.reverse();
        let mut with_reversed = RecordTags::default();
        with_reversed
            .fields
            .insert(Field::PlaceOfResidence, reversed);
        assert_eq!(
            RecordTags::decode(&with_reversed.encode()),
            Err(DecodeError("tokens out of order or repeated"))
        );
        // Two fields, the second with a lower code.
        let name = tags.fields[&Field::FullName].clone();
        let mut one = RecordTags::default();
        one.fields.insert(Field::FullName, name);
        let name_bytes = one.encode();
        out_of_order[1] = 2;
        out_of_order.extend_from_slice(&name_bytes[2..]);
        assert_eq!(
            RecordTags::decode(&out_of_order),
            Err(DecodeError("fields out of order or repeated"))
        );
    }
}
