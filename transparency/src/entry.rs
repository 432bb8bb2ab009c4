//! The bytes of one decision-log entry (`docs/decision-log.md` section 1).
//!
//! The leaf hash covers the bytes exactly as written, so readers hash what
//! they received and never re-serialise; [`DecisionEntry::encode`] is the
//! one writer, and [`DecisionEntry::decode`] is only for reading members
//! back (it accepts members it does not know, as later versions add them).

use serde::{Deserialize, Serialize};

/// One answered call, as recorded in the log. It holds no ID number and no
/// claimed value: the subject appears only as a keyed pseudonym.
///
/// The members are serialised in declaration order; that order is part of
/// the format (it fixes the bytes, hence the leaf hash), so do not reorder
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionEntry {
    /// Entry format version, 1.
    pub v: u32,
    /// When the call was answered (the attestation's issue time), Unix
    /// milliseconds.
    pub time_ms: i64,
    /// The calling tenant's id.
    pub tenant: String,
    /// The id of the API key that called, never its secret.
    pub api_key: String,
    /// The purpose code sent.
    pub purpose: String,
    /// The attestation's consent digest, lowercase hex.
    pub consent: String,
    /// The answer's transaction id.
    pub transaction: String,
    /// The client's request id.
    pub request: String,
    /// The registry version that answered.
    pub registry_version: u64,
    /// `Verify`, `VerifyBatch` (one item) or `ListSubjectAccesses`.
    pub method: String,
    /// One `[field name, result]` pair per field asked, in field-code order;
    /// empty for `ListSubjectAccesses`.
    pub fields: Vec<(String, String)>,
    /// `YES`, `NO`, or `LOOKUP` for `ListSubjectAccesses`.
    pub decision: String,
    /// The subject pseudonym, `HMAC-SHA256(K, "decision-log")`, lowercase hex.
    pub subject: String,
}

impl DecisionEntry {
    /// The entry's bytes: compact JSON, members in declaration order. These
    /// bytes are what the leaf hash covers.
    pub fn encode(&self) -> Vec<u8> {
        // Strings, integers and arrays of them always serialise, and a Vec
        // never fails to take bytes, so there is no error to return.
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("entry serialisation is total"))
    }

    /// Reads an entry's members back, accepting members it does not know and
    /// any member order.
    pub fn decode(bytes: &[u8]) -> Result<DecisionEntry, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> DecisionEntry {
        DecisionEntry {
            v: 1,
            time_ms: 1_767_225_600_000,
            tenant: "tenant-a".into(),
            api_key: "ak_1".into(),
            purpose: "ACCOUNT_OPENING".into(),
            consent: "00".repeat(32),
            transaction: "tx_1".into(),
            request: "req-1".into(),
            registry_version: 3,
            method: "Verify".into(),
            fields: vec![("full_name".into(), "MATCH".into())],
            decision: "YES".into(),
            subject: "ab".repeat(32),
        }
    }

    #[test]
    fn encoding_is_compact_in_declaration_order() {
        let text = String::from_utf8(entry().encode()).expect("utf-8");
        let expected = format!(
            concat!(
                r#"{{"v":1,"time_ms":1767225600000,"tenant":"tenant-a","api_key":"ak_1","#,
                r#""purpose":"ACCOUNT_OPENING","consent":"{}","transaction":"tx_1","#,
                r#""request":"req-1","registry_version":3,"method":"Verify","#,
                r#""fields":[["full_name","MATCH"]],"decision":"YES","subject":"{}"}}"#
            ),
            "00".repeat(32),
            "ab".repeat(32)
        );
        assert_eq!(text, expected);
        assert_eq!(DecisionEntry::decode(text.as_bytes()).ok(), Some(entry()));
    }

    #[test]
    fn decode_accepts_unknown_members_in_any_order() {
        let text = format!(
            concat!(
                r#"{{ "subject": "{}", "added_in_v2": {{"x": [1, 2]}}, "decision": "YES","#,
                r#" "fields": [["full_name", "MATCH"]], "method": "Verify","#,
                r#" "registry_version": 3, "request": "req-1", "transaction": "tx_1","#,
                r#" "consent": "{}", "purpose": "ACCOUNT_OPENING", "api_key": "ak_1","#,
                r#" "tenant": "tenant-a", "time_ms": 1767225600000, "v": 1 }}"#
            ),
            "ab".repeat(32),
            "00".repeat(32)
        );
        assert_eq!(DecisionEntry::decode(text.as_bytes()).ok(), Some(entry()));
    }

    #[test]
    fn decode_refuses_a_missing_member() {
        let text = String::from_utf8(entry().encode()).expect("utf-8");
        let without = text.replace(r#","decision":"YES""#, "");
        assert!(DecisionEntry::decode(without.as_bytes()).is_err());
    }
}
