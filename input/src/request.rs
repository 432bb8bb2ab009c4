//! A Verify request off the wire, checked field by field before anything
//! else looks at it.

use ekyc_domain::Field;
use ekyc_domain::normalize::{
    CivilDate, IdNumber, Normalized, Violation, check_date_ranges, is_invisible, normalize_field,
    normalize_id,
};
use ekyc_proto::v1 as pb;

/// A request that passed validation.
pub struct ValidRequest<'a> {
    /// The canonical ID number.
    pub id: IdNumber,
    /// The claims, normalised, in field order.
    pub claims: Vec<(Field, Normalized)>,
    /// The claims exactly as sent, for the attestation's claims digest.
    pub raw_claims: Vec<(Field, &'a str)>,
}

/// Why a request was refused: one violation per bad field, all at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Malformed fields (`INVALID_ARGUMENT`).
    Invalid(Vec<Violation>),
    /// Well-formed fields outside their range (`OUT_OF_RANGE`), checked once
    /// every field is well formed.
    OutOfRange(Vec<Violation>),
}

/// Validates every field of a request, collecting every violation: format
/// first (`INVALID_ARGUMENT`), then, once every claim normalised, the date
/// ranges against `today` (`OUT_OF_RANGE`).
pub fn validate_verify(
    req: &pb::VerifyRequest,
    today: CivilDate,
) -> Result<ValidRequest<'_>, Rejected> {
    let mut violations = Vec::new();
    check_token(
        &mut violations,
        "request_id",
        &req.request_id,
        64,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'),
        "request_id must be 1 to 64 characters from A-Z a-z 0-9 . _ : -",
    );
    check_token(
        &mut violations,
        "purpose_code",
        &req.purpose_code,
        64,
        |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_',
        "purpose_code must be 1 to 64 characters from A-Z 0-9 _",
    );
    check_token(
        &mut violations,
        "consent_reference",
        &req.consent_reference,
        128,
        |c| !is_invisible(c),
        "consent_reference must be 1 to 128 characters without control or invisible characters",
    );
    let id = match normalize_id(&req.id_number) {
        Ok(id) => Some(id),
        Err(v) => {
            violations.push(v);
            None
        }
    };
    // Values as sent, for the attestation's claims digest.
    let raw_claims: Vec<(Field, &str)> = req
        .claims
        .as_ref()
        .map(|c| c.present())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(f, v)| Field::from_code(f as u8).map(|f| (f, v)))
        .collect();
    if raw_claims.is_empty() {
        violations.push(Violation {
            field: "claims",
            rule: "required",
            description: "claims must hold at least one field besides id_number".into(),
        });
    }
    let mut claims = Vec::with_capacity(raw_claims.len());
    for (field, raw) in &raw_claims {
        match normalize_field(*field, raw) {
            Ok(n) => claims.push((*field, n)),
            Err(v) => violations.push(v),
        }
    }
    match id {
        Some(id) if violations.is_empty() => {
            let out_of_range = check_date_ranges(&claims, today);
            if !out_of_range.is_empty() {
                return Err(Rejected::OutOfRange(out_of_range));
            }
            Ok(ValidRequest {
                id,
                claims,
                raw_claims,
            })
        }
        _ => Err(Rejected::Invalid(violations)),
    }
}

fn check_token(
    violations: &mut Vec<Violation>,
    field: &'static str,
    value: &str,
    max_chars: usize,
    allowed: impl Fn(char) -> bool,
    description: &'static str,
) {
    let rule = if value.is_empty() {
        Some("required")
    } else if value.chars().count() > max_chars {
        Some("too_long")
    } else if !value.chars().all(allowed) {
        Some("invalid_format")
    } else {
        None
    };
    if let Some(rule) = rule {
        violations.push(Violation {
            field,
            rule,
            description: description.into(),
        });
    }
}
