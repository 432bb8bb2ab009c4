//! The attestation: a deterministic byte encoding of an answer, signed with
//! Ed25519 so a relying party can prove later what the registry said.
//!
//! `docs/attestation.md` documents the format for independent
//! implementations; this module is its reference. All integers are
//! big-endian; `str` is a `u16` byte length followed by UTF-8 bytes.
//!
//! ```text
//! payload (version 1):
//!   "ekyc.v1.attestation"      19 ASCII bytes, domain separation
//!   u8   format version        = 1
//!   str  key_id
//!   str  tenant_id
//!   str  request_id            the client's request id
//!   str  transaction_id        the service's transaction id
//!   i64  issued_at             Unix time in milliseconds
//!   u64  registry_version
//!   [32] claims_digest         see below
//!   str  purpose_code
//!   [32] consent_digest        SHA-256 of the consent reference's UTF-8 bytes
//!   u8   subject_status        0 undisclosed, 1 found, 2 not found
//!   u8   result count, then per result in field-code order:
//!        u8 field code, u8 result code, u8 score (255 = no score)
//!   u8   decision              1 yes, 2 no
//!
//! claims_digest = SHA-256 of:
//!   "ekyc.v1.claims"           14 ASCII bytes
//!   str  id_number             exactly as sent
//!   u8   claim count, then per present claim in field-code order:
//!        u8 field code, str value exactly as sent
//! ```
//!
//! The claims digest is over the values *as sent*, so the client can
//! recompute it from its own copy. The service never stores it: it is a
//! digest of personal data.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::Field;
use crate::matching::{FieldOutcome, MatchResult};

const MAGIC: &[u8] = b"ekyc.v1.attestation";
const CLAIMS_MAGIC: &[u8] = b"ekyc.v1.claims";
const FORMAT_VERSION: u8 = 1;
const NO_SCORE: u8 = 255;

/// Everything an attestation binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationBody {
    /// Id of the signing key.
    pub key_id: String,
    /// The tenant taken from the caller's credential.
    pub tenant_id: String,
    /// The client's request id.
    pub request_id: String,
    /// The service's transaction id.
    pub transaction_id: String,
    /// When the answer was given, Unix milliseconds.
    pub issued_at_ms: i64,
    /// Registry version that answered.
    pub registry_version: u64,
    /// [`claims_digest`] of the request.
    pub claims_digest: [u8; 32],
    /// The declared purpose code.
    pub purpose_code: String,
    /// SHA-256 of the consent reference.
    pub consent_digest: [u8; 32],
    /// `None` when undisclosed.
    pub subject_found: Option<bool>,
    /// Per-field results, in field order.
    pub results: Vec<FieldOutcome>,
    /// Overall decision.
    pub decision: bool,
}

/// The payload could not be parsed or the signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// Bytes are not a version-1 attestation payload.
    #[error("attestation payload is malformed: {0}")]
    Malformed(&'static str),
    /// A string is too long for the format.
    #[error("attestation field {0} is longer than 65535 bytes")]
    TooLong(&'static str),
    /// The signature is not valid for the payload and key.
    #[error("attestation signature does not verify")]
    BadSignature,
}

/// SHA-256 of the claims exactly as sent (see the module docs).
pub fn claims_digest(
    id_number: &str,
    claims: &[(Field, &str)],
) -> Result<[u8; 32], AttestationError> {
    let mut sorted = claims.to_vec();
    sorted.sort_by_key(|(f, _)| *f);
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(CLAIMS_MAGIC);
    put_str(&mut buf, id_number, "id_number")?;
    buf.push(sorted.len() as u8);
    for (field, value) in sorted {
        buf.push(field.code());
        put_str(&mut buf, value, field.name())?;
    }
    Ok(Sha256::digest(&buf).into())
}

/// SHA-256 of a consent reference.
pub fn consent_digest(consent_reference: &str) -> [u8; 32] {
    Sha256::digest(consent_reference.as_bytes()).into()
}

impl AttestationBody {
    /// The deterministic bytes that are signed.
    pub fn encode(&self) -> Result<Vec<u8>, AttestationError> {
        let mut b = Vec::with_capacity(256);
        b.extend_from_slice(MAGIC);
        b.push(FORMAT_VERSION);
        put_str(&mut b, &self.key_id, "key_id")?;
        put_str(&mut b, &self.tenant_id, "tenant_id")?;
        put_str(&mut b, &self.request_id, "request_id")?;
        put_str(&mut b, &self.transaction_id, "transaction_id")?;
        b.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        b.extend_from_slice(&self.registry_version.to_be_bytes());
        b.extend_from_slice(&self.claims_digest);
        put_str(&mut b, &self.purpose_code, "purpose_code")?;
        b.extend_from_slice(&self.consent_digest);
        b.push(match self.subject_found {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        });
        if self.results.len() > usize::from(u8::MAX) {
            return Err(AttestationError::TooLong("results"));
        }
        b.push(self.results.len() as u8);
        for r in &self.results {
            b.push(r.field.code());
            b.push(r.result.code());
            b.push(r.score.unwrap_or(NO_SCORE));
        }
        b.push(if self.decision { 1 } else { 2 });
        Ok(b)
    }

    /// Parses a payload produced by [`AttestationBody::encode`].
    pub fn decode(bytes: &[u8]) -> Result<AttestationBody, AttestationError> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(AttestationError::Malformed("wrong magic"));
        }
        if r.u8()? != FORMAT_VERSION {
            return Err(AttestationError::Malformed("unknown format version"));
        }
        let key_id = r.str()?;
        let tenant_id = r.str()?;
        let request_id = r.str()?;
        let transaction_id = r.str()?;
        let issued_at_ms = i64::from_be_bytes(r.array()?);
        let registry_version = u64::from_be_bytes(r.array()?);
        let claims_digest = r.array()?;
        let purpose_code = r.str()?;
        let consent_digest = r.array()?;
        let subject_found = match r.u8()? {
            0 => None,
            1 => Some(true),
            2 => Some(false),
            _ => return Err(AttestationError::Malformed("unknown subject status")),
        };
        let n = r.u8()?;
        let mut results = Vec::with_capacity(n.into());
        for _ in 0..n {
            let field =
                Field::from_code(r.u8()?).ok_or(AttestationError::Malformed("unknown field"))?;
            let result = MatchResult::from_code(r.u8()?)
                .ok_or(AttestationError::Malformed("unknown result"))?;
            let score = match r.u8()? {
                NO_SCORE => None,
                s if s <= 100 => Some(s),
                _ => return Err(AttestationError::Malformed("score above 100")),
            };
            results.push(FieldOutcome {
                field,
                result,
                score,
            });
        }
        let decision = match r.u8()? {
            1 => true,
            2 => false,
            _ => return Err(AttestationError::Malformed("unknown decision")),
        };
        if !r.0.is_empty() {
            return Err(AttestationError::Malformed("trailing bytes"));
        }
        Ok(AttestationBody {
            key_id,
            tenant_id,
            request_id,
            transaction_id,
            issued_at_ms,
            registry_version,
            claims_digest,
            purpose_code,
            consent_digest,
            subject_found,
            results,
            decision,
        })
    }
}

/// Signs a payload.
pub fn sign(key: &SigningKey, payload: &[u8]) -> [u8; 64] {
    key.sign(payload).to_bytes()
}

/// Verifies a signature over a payload and returns the parsed body.
pub fn verify(
    public_key: &[u8; 32],
    payload: &[u8],
    signature: &[u8],
) -> Result<AttestationBody, AttestationError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| AttestationError::BadSignature)?;
    let sig = Signature::from_slice(signature).map_err(|_| AttestationError::BadSignature)?;
    key.verify_strict(payload, &sig)
        .map_err(|_| AttestationError::BadSignature)?;
    AttestationBody::decode(payload)
}

fn put_str(buf: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), AttestationError> {
    let len = u16::try_from(s.len()).map_err(|_| AttestationError::TooLong(what))?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AttestationError> {
        if self.0.len() < n {
            return Err(AttestationError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, AttestationError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], AttestationError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn str(&mut self) -> Result<String, AttestationError> {
        let len = u16::from_be_bytes(self.array()?);
        let bytes = self.take(len.into())?;
        String::from_utf8(bytes.to_vec()).map_err(|_| AttestationError::Malformed("invalid utf-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> AttestationBody {
        AttestationBody {
            key_id: "k1".into(),
            tenant_id: "demo".into(),
            request_id: "req-1".into(),
            transaction_id: "tx-1".into(),
            issued_at_ms: 1_764_000_000_000,
            registry_version: 3,
            claims_digest: claims_digest(
                "079085001234",
                &[
                    (Field::DateOfBirth, "1985-03-12"),
                    (Field::FullName, "Nguyễn Văn An"),
                ],
            )
            .expect("digest"),
            purpose_code: "ACCOUNT_OPENING".into(),
            consent_digest: consent_digest("consent-42"),
            subject_found: None,
            results: vec![
                FieldOutcome {
                    field: Field::FullName,
                    result: MatchResult::Match,
                    score: None,
                },
                FieldOutcome {
                    field: Field::DateOfBirth,
                    result: MatchResult::NoMatch,
                    score: Some(40),
                },
            ],
            decision: false,
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let b = body();
        let bytes = b.encode().expect("encode");
        assert_eq!(AttestationBody::decode(&bytes), Ok(b));
    }

    #[test]
    fn claims_digest_ignores_argument_order_but_not_values() {
        let a = claims_digest("1", &[(Field::FullName, "a"), (Field::Gender, "M")]).expect("d");
        let b = claims_digest("1", &[(Field::Gender, "M"), (Field::FullName, "a")]).expect("d");
        let c = claims_digest("1", &[(Field::Gender, "F"), (Field::FullName, "a")]).expect("d");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// A fixed vector published in docs/attestation.md.
    #[test]
    fn known_answer_digest() {
        let d = claims_digest("079085001234", &[(Field::FullName, "Nguyễn Văn An")]).expect("d");
        assert_eq!(
            hex::encode(d),
            "13edea72bfc30d6150675701ce55b0ba40327d454f0f1e17baa85e6729e9f7b9"
        );
    }

    #[test]
    fn flipping_any_byte_breaks_the_signature() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let public = key.verifying_key().to_bytes();
        let payload = body().encode().expect("encode");
        let sig = sign(&key, &payload);
        assert_eq!(verify(&public, &payload, &sig), Ok(body()));
        for i in 0..payload.len() {
            let mut p = payload.clone();
            p[i] ^= 0x01;
            assert!(verify(&public, &p, &sig).is_err(), "payload byte {i}");
        }
        for i in 0..sig.len() {
            let mut s = sig;
            s[i] ^= 0x01;
            assert!(verify(&public, &payload, &s).is_err(), "signature byte {i}");
        }
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let payload = body().encode().expect("encode");
        for cut in 0..payload.len() {
            assert!(AttestationBody::decode(&payload[..cut]).is_err());
        }
    }
}
