//! JSON export of a signed invoice: the document plus what is needed to
//! verify its signature.
//!
//! ```text
//! {
//!   "format": "ekyc.invoice.export.v1",
//!   "document": { ...the InvoiceDocument, fields in declared order... },
//!   "document_bytes_sha256": "<hex SHA-256 of the signed bytes>",
//!   "key_id": "<id of the signing key>",
//!   "signature": "<hex Ed25519 signature>"
//! }
//! ```
//!
//! The signature does **not** cover this file's bytes: it covers
//! [`SignedInvoice::bytes`], which is the compact serialisation
//! `serde_json::to_vec(&document)` of the `document` field. A verifier
//! parses the export (see [`document_from_json`]), re-serialises
//! `document` compactly, checks its SHA-256 against
//! `document_bytes_sha256`, and verifies `signature` over those bytes with
//! the public key `key_id` (published by ListSigningKeys).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{InvoiceDocument, SignedInvoice};

/// The `format` tag of [`invoice_json`] output.
pub const JSON_EXPORT_FORMAT: &str = "ekyc.invoice.export.v1";

/// The export object, borrowed for writing.
#[derive(Serialize)]
struct ExportRef<'a> {
    format: &'a str,
    document: &'a InvoiceDocument,
    document_bytes_sha256: String,
    key_id: &'a str,
    signature: String,
}

/// The export object, owned for reading.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportOwned {
    format: String,
    document: InvoiceDocument,
    document_bytes_sha256: String,
    key_id: String,
    signature: String,
}

/// Why [`document_from_json`] refused its input.
#[derive(Debug, thiserror::Error)]
pub enum JsonExportError {
    /// Not JSON of the export's shape (or the document's).
    #[error("malformed invoice export: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The `format` tag is not [`JSON_EXPORT_FORMAT`].
    #[error("unsupported invoice export format {0:?}")]
    Format(String),
    /// `signature` is not hex.
    #[error("the signature is not hex")]
    SignatureHex,
    /// The document, serialised compactly, does not hash to
    /// `document_bytes_sha256`: it was altered, or written by an
    /// incompatible version.
    #[error("the document does not match document_bytes_sha256")]
    DigestMismatch,
}

/// The invoice as pretty-printed JSON with a trailing newline (see the
/// module docs for the layout). `document_bytes_sha256` is the SHA-256 of
/// `inv.bytes`, the signed bytes, which should equal
/// `serde_json::to_vec(&inv.document)`; if they do not, the export still
/// writes the document and [`document_from_json`] rejects it. Pure: the
/// same invoice always gives the same bytes.
pub fn invoice_json(inv: &SignedInvoice) -> Vec<u8> {
    let export = ExportRef {
        format: JSON_EXPORT_FORMAT,
        document: &inv.document,
        document_bytes_sha256: hex::encode(Sha256::digest(&inv.bytes)),
        key_id: &inv.key_id,
        signature: hex::encode(&inv.signature),
    };
    let mut out = serde_json::to_vec_pretty(&export)
        .expect("structs of strings, integers and decimals always serialise");
    out.push(b'\n');
    out
}

/// Reads an [`invoice_json`] export back: the document, its canonical
/// bytes (recomputed as `serde_json::to_vec(&document)` and checked
/// against `document_bytes_sha256`), the key id and the signature. It
/// does not verify the signature (that needs the public key): verify
/// `signature` over the returned `bytes`.
pub fn document_from_json(bytes: &[u8]) -> Result<SignedInvoice, JsonExportError> {
    let export: ExportOwned = serde_json::from_slice(bytes)?;
    if export.format != JSON_EXPORT_FORMAT {
        return Err(JsonExportError::Format(export.format));
    }
    let signature = hex::decode(&export.signature).map_err(|_| JsonExportError::SignatureHex)?;
    let canonical = serde_json::to_vec(&export.document)?;
    let digest = hex::encode(Sha256::digest(&canonical));
    if !digest.eq_ignore_ascii_case(&export.document_bytes_sha256) {
        return Err(JsonExportError::DigestMismatch);
    }
    Ok(SignedInvoice {
        document: export.document,
        bytes: canonical,
        key_id: export.key_id,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::sample_invoice;

    #[test]
    fn round_trips_to_the_signed_bytes() {
        let inv = sample_invoice(6);
        let json = invoice_json(&inv);
        let back = document_from_json(&json).expect("reads back");
        assert_eq!(back, inv);
        assert_eq!(back.bytes, inv.bytes);
    }

    #[test]
    fn layout_is_pretty_ordered_and_newline_terminated() {
        let inv = sample_invoice(2);
        let json = String::from_utf8(invoice_json(&inv)).expect("UTF-8");
        assert!(json.starts_with("{\n  \"format\": \"ekyc.invoice.export.v1\",\n  \"document\": {\n    \"format\": \"ekyc.invoice.v2\",\n    \"number\": \"EKYC-000042\","));
        assert!(json.ends_with("}\n"));
        assert!(!json.ends_with("\n\n"));
        let sha = hex::encode(Sha256::digest(&inv.bytes));
        assert!(json.contains(&format!("\"document_bytes_sha256\": \"{sha}\"")));
        assert!(json.contains(&format!(
            "\"signature\": \"{}\"",
            hex::encode(&inv.signature)
        )));
        assert!(json.contains("\"key_id\": \"billing-2026-01\""));
        // Decimals are strings, as exact as the document holds them.
        assert!(json.contains("\"tax_rate\": \"0.10\""));
        // Non-ASCII text stays UTF-8.
        assert!(json.contains("Ngân hàng TMCP Ngoại thương Việt Nam"));
        assert_eq!(invoice_json(&inv), invoice_json(&inv.clone()));
    }

    #[test]
    fn tampering_is_detected() {
        let inv = sample_invoice(3);
        let json = String::from_utf8(invoice_json(&inv)).expect("UTF-8");
        let tampered = json.replacen("\"quantity\": 1234", "\"quantity\": 1235", 1);
        assert_ne!(tampered, json);
        assert!(matches!(
            document_from_json(tampered.as_bytes()),
            Err(JsonExportError::DigestMismatch)
        ));
        let other = json.replacen("ekyc.invoice.export.v1", "ekyc.invoice.export.v9", 1);
        assert!(matches!(
            document_from_json(other.as_bytes()),
            Err(JsonExportError::Format(_))
        ));
        let bad_sig = json.replacen("\"signature\": \"00", "\"signature\": \"zz", 1);
        assert!(matches!(
            document_from_json(bad_sig.as_bytes()),
            Err(JsonExportError::SignatureHex)
        ));
        assert!(matches!(
            document_from_json(b"{\"format\": 1}"),
            Err(JsonExportError::Malformed(_))
        ));
    }

    #[test]
    fn inconsistent_signed_bytes_do_not_read_back() {
        let mut inv = sample_invoice(1);
        inv.bytes.push(b' ');
        assert!(matches!(
            document_from_json(&invoice_json(&inv)),
            Err(JsonExportError::DigestMismatch)
        ));
    }
}
