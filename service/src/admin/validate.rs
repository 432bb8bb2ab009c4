//! Validation of admin input from the wire: every field checked, every
//! violation collected, nothing changed until all pass.

use ekyc_domain::Field;
use ekyc_domain::matching::MIN_FUZZY_THRESHOLD;
use ekyc_domain::normalize::Violation;
use ekyc_proto::v1 as pb;

use crate::store::{LegalParticulars, Limits, TenantPolicy};
use crate::tenants;

/// Largest value a limit or quota may take.
pub(super) const MAX_LIMIT: i64 = 1_000_000_000_000;

/// Most entries a policy's lists may hold (there are nine claim fields).
pub(super) const MAX_POLICY_FIELDS: usize = 9;
pub(super) const MAX_POLICY_PURPOSES: usize = 100;

pub(super) fn check_name(name: &str, violations: &mut Vec<Violation>) {
    if let Err(rule) = tenants::check_display_text(name, 100) {
        violations.push(Violation {
            field: "tenant.name",
            rule,
            description: "tenant.name must be 1 to 100 characters in Unicode NFC, without \
                          control or invisible characters, with single spaces and none at either end"
                .into(),
        });
    }
}

pub(super) fn mtls_subject(raw: &str, violations: &mut Vec<Violation>) -> Option<String> {
    if raw.is_empty() {
        return None;
    }
    if let Err(rule) = tenants::check_display_text(raw, 200) {
        violations.push(Violation {
            field: "tenant.mtls_subject",
            rule,
            description: "tenant.mtls_subject must be at most 200 characters in Unicode NFC, \
                          without control or invisible characters, with single spaces and none at \
                          either end"
                .into(),
        });
        return None;
    }
    Some(raw.to_string())
}

/// Validates legal particulars from the wire: every one may be empty
/// (not recorded); a given one must be printable text and a tax code must
/// be a Vietnamese one.
pub(super) fn legal_from_proto(
    l: Option<&pb::LegalParticulars>,
    violations: &mut Vec<Violation>,
) -> LegalParticulars {
    let Some(l) = l else {
        return LegalParticulars::default();
    };
    let mut text = |field: &'static str, value: &str, max: usize, description: &'static str| {
        if !value.is_empty()
            && let Err(rule) = tenants::check_display_text(value, max)
        {
            violations.push(Violation {
                field,
                rule,
                description: description.into(),
            });
        }
    };
    text(
        "tenant.legal.legal_name",
        &l.legal_name,
        200,
        "tenant.legal.legal_name must be at most 200 characters in Unicode NFC, without control \
         or invisible characters, with single spaces and none at either end",
    );
    text(
        "tenant.legal.address",
        &l.address,
        300,
        "tenant.legal.address must be at most 300 characters in Unicode NFC, without control \
         or invisible characters, with single spaces and none at either end",
    );
    if !l.tax_code.is_empty() && !ekyc_billing::valid_tax_code(&l.tax_code) {
        violations.push(Violation {
            field: "tenant.legal.tax_code",
            rule: "invalid_format",
            description: "tenant.legal.tax_code must be a Vietnamese tax code: 10 digits, or the \
                          10 digits, '-' and a 3-digit branch suffix"
                .into(),
        });
    }
    LegalParticulars {
        legal_name: l.legal_name.clone(),
        address: l.address.clone(),
        tax_code: l.tax_code.clone(),
    }
}

/// Validates a policy from the wire; defaults where it is absent.
pub(super) fn policy_from_proto(
    p: Option<&pb::TenantPolicy>,
    violations: &mut Vec<Violation>,
) -> TenantPolicy {
    let Some(p) = p else {
        return TenantPolicy::default();
    };
    if p.allowed_fields.len() > MAX_POLICY_FIELDS {
        violations.push(Violation {
            field: "tenant.policy.allowed_fields",
            rule: "too_many",
            description: "tenant.policy.allowed_fields may name at most the 9 claim fields".into(),
        });
    }
    if p.allowed_purposes.len() > MAX_POLICY_PURPOSES {
        violations.push(Violation {
            field: "tenant.policy.allowed_purposes",
            rule: "too_many",
            description: "tenant.policy.allowed_purposes may hold at most 100 purpose codes".into(),
        });
    }
    let mut allowed_fields: Vec<String> = Vec::new();
    for f in p.allowed_fields.iter().take(MAX_POLICY_FIELDS) {
        match Field::from_name(f) {
            Some(field) => allowed_fields.push(field.name().to_string()),
            None => violations.push(Violation {
                field: "tenant.policy.allowed_fields",
                rule: "unknown_field",
                description: "tenant.policy.allowed_fields holds a name that is not a claim field \
                              (full_name, date_of_birth, gender, nationality, place_of_origin, \
                              place_of_residence, id_issue_date, id_expiry_date, phone_number)"
                    .into(),
            }),
        }
    }
    allowed_fields.sort_by_key(|f| Field::from_name(f).map(Field::code));
    allowed_fields.dedup();
    let mut allowed_purposes = p.allowed_purposes.clone();
    if allowed_purposes.iter().any(|c| {
        !valid_code(c, 64, |ch| {
            ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_'
        })
    }) {
        violations.push(Violation {
            field: "tenant.policy.allowed_purposes",
            rule: "invalid_format",
            description:
                "tenant.policy.allowed_purposes entries must be 1 to 64 characters from A-Z 0-9 _"
                    .into(),
        });
    }
    allowed_purposes.sort();
    allowed_purposes.dedup();
    let floor = i64::from(MIN_FUZZY_THRESHOLD);
    if p.fuzzy_threshold != 0 && !(floor..=100).contains(&p.fuzzy_threshold) {
        violations.push(Violation {
            field: "tenant.policy.fuzzy_threshold",
            rule: "out_of_range",
            description: "tenant.policy.fuzzy_threshold must be 0 (the default, 85) or between 70 \
                          and 100: a lower threshold lets one shared name count as a match"
                .into(),
        });
    }
    if !p.price_plan.is_empty()
        && !valid_code(&p.price_plan, 64, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
        })
    {
        violations.push(Violation {
            field: "tenant.policy.price_plan",
            rule: "invalid_format",
            description: "tenant.policy.price_plan must be 1 to 64 characters from a-z 0-9 _ -"
                .into(),
        });
    }
    let l = p.limits.unwrap_or_default();
    let mut limit = |value: i64, field: &'static str, description: &'static str| -> u64 {
        if (0..=MAX_LIMIT).contains(&value) {
            value as u64
        } else {
            violations.push(Violation {
                field,
                rule: if value < 0 {
                    "negative"
                } else {
                    "out_of_range"
                },
                description: description.into(),
            });
            0
        }
    };
    let limits = Limits {
        requests_per_second: limit(
            l.requests_per_second,
            "tenant.policy.limits.requests_per_second",
            "tenant.policy.limits.requests_per_second must be between 0 (no limit) and 10^12",
        ),
        burst: limit(
            l.burst,
            "tenant.policy.limits.burst",
            "tenant.policy.limits.burst must be between 0 and 10^12",
        ),
        daily_quota_units: limit(
            l.daily_quota_units,
            "tenant.policy.limits.daily_quota_units",
            "tenant.policy.limits.daily_quota_units must be between 0 (no quota) and 10^12",
        ),
        monthly_quota_units: limit(
            l.monthly_quota_units,
            "tenant.policy.limits.monthly_quota_units",
            "tenant.policy.limits.monthly_quota_units must be between 0 (no quota) and 10^12",
        ),
    };
    let time_zone = if p.time_zone.is_empty() {
        ekyc_limits::DEFAULT_TIME_ZONE.to_string()
    } else {
        p.time_zone.clone()
    };
    if ekyc_limits::time_zone(&time_zone).is_err() {
        violations.push(Violation {
            field: "tenant.policy.time_zone",
            rule: "unknown_time_zone",
            description:
                "tenant.policy.time_zone must be an IANA time zone name such as Asia/Ho_Chi_Minh"
                    .into(),
        });
    }
    TenantPolicy {
        time_zone,
        allowed_fields,
        allowed_purposes,
        accept_folded: p.accept_folded,
        fuzzy: p.fuzzy_matching,
        fuzzy_threshold: if p.fuzzy_threshold == 0 {
            TenantPolicy::default().fuzzy_threshold
        } else {
            p.fuzzy_threshold.clamp(0, 100) as u8
        },
        disclose_not_found: p.disclose_not_found,
        limits,
        price_plan: p.price_plan.clone(),
    }
}

/// Checks that span fields (on the policy as it will be stored): a burst
/// means nothing without a rate, and a month cannot allow less than a day.
pub(super) fn check_limits(l: &Limits, violations: &mut Vec<Violation>) {
    if l.burst > 0 && l.requests_per_second == 0 {
        violations.push(Violation {
            field: "tenant.policy.limits.burst",
            rule: "requires_rate",
            description: "tenant.policy.limits.burst needs requests_per_second above 0".into(),
        });
    }
    if l.daily_quota_units > 0
        && l.monthly_quota_units > 0
        && l.monthly_quota_units < l.daily_quota_units
    {
        violations.push(Violation {
            field: "tenant.policy.limits.monthly_quota_units",
            rule: "below_daily",
            description:
                "tenant.policy.limits.monthly_quota_units must not be below daily_quota_units"
                    .into(),
        });
    }
}

pub(super) fn valid_code(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().count() <= max && s.chars().all(allowed)
}
