//! Matching claimed values against a hashed record, and the overall decision.
//!
//! Per requested field:
//! - `Match`: a tag of the claim's exact form (or, for a date, of one of its
//!   coarser forms: a claimed full date matches a registry that holds only
//!   the year-month or year, but a claimed year does not match a full date)
//!   equals the stored exact tag;
//! - `MatchFolded`: otherwise, the folded tags are equal;
//! - `NoMatch`: otherwise;
//! - `NotAvailable`: the registry holds no value for the field; reported
//!   only when the policy discloses whether the subject exists (otherwise
//!   it would reveal exactly that), and `NoMatch` under the uniform policy.
//!
//! When the subject is not in the registry, the same tags are computed and
//! compared against an empty record, and (under the default uniform policy)
//! every field is reported `NoMatch`: the answer is indistinguishable from a
//! subject whose fields all differ.
//!
//! The decision is yes only if every requested field is `Match`, or
//! `MatchFolded` when the policy accepts folded matches, or (only with fuzzy
//! matching allowed) a token-scored field whose score reaches the threshold.

use subtle::ConstantTimeEq;

use crate::Field;
use crate::keys::{Form, SubjectKey, Tag};
use crate::normalize::Normalized;
use crate::record::{FieldTags, RecordTags};

/// The outcome of one field, as in `ekyc.v1.MatchResult`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchResult {
    /// Equal after normalisation.
    Match,
    /// Equal once diacritics and case are ignored.
    MatchFolded,
    /// Different (or subject unknown under the uniform policy).
    NoMatch,
    /// The registry has no value for this field.
    NotAvailable,
}

impl MatchResult {
    /// Stable code, equal to the proto enum value.
    pub const fn code(self) -> u8 {
        match self {
            MatchResult::Match => 1,
            MatchResult::MatchFolded => 2,
            MatchResult::NoMatch => 3,
            MatchResult::NotAvailable => 4,
        }
    }

    /// Stable name, as in the proto enum without its prefix (the
    /// decision log's `fields`).
    pub const fn name(self) -> &'static str {
        match self {
            MatchResult::Match => "MATCH",
            MatchResult::MatchFolded => "MATCH_FOLDED",
            MatchResult::NoMatch => "NO_MATCH",
            MatchResult::NotAvailable => "NOT_AVAILABLE",
        }
    }

    /// The result for a code, if any.
    pub fn from_code(code: u8) -> Option<MatchResult> {
        [
            MatchResult::Match,
            MatchResult::MatchFolded,
            MatchResult::NoMatch,
            MatchResult::NotAvailable,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }
}

/// The lowest fuzzy threshold a policy may set. Scores are Dice
/// coefficients of the name tokens: below 70, two three-word names that
/// share one or two words (a family and a middle name, "Nguyễn Văn An" and
/// "Nguyễn Văn Bình": 66) would count as the same person. A stored policy
/// below the floor is read as the floor.
pub const MIN_FUZZY_THRESHOLD: u8 = 70;

/// How a tenant wants answers computed. The defaults are the registry
/// owner's safe choices: exact matching, no scores, uniform answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchPolicy {
    /// Whether a `MatchFolded` field counts as a match in the decision.
    pub accept_folded: bool,
    /// Whether token-overlap scores are computed, reported and may decide.
    pub fuzzy: bool,
    /// Minimum score (0-100) for a token-scored field to count as a match
    /// when `fuzzy` is on; never less than [`MIN_FUZZY_THRESHOLD`].
    pub fuzzy_threshold: u8,
    /// Whether "subject not in the registry" is disclosed.
    pub disclose_not_found: bool,
}

impl Default for MatchPolicy {
    fn default() -> Self {
        MatchPolicy {
            // A name without diacritics may be another person's: the
            // registry owner's safe default is that only exact counts.
            accept_folded: false,
            fuzzy: false,
            fuzzy_threshold: 85,
            disclose_not_found: false,
        }
    }
}

/// The result of one requested field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldOutcome {
    /// Which field.
    pub field: Field,
    /// How it compared.
    pub result: MatchResult,
    /// Token-overlap score 0-100, only when fuzzy matching is on.
    pub score: Option<u8>,
}

/// The whole answer before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchOutcome {
    /// One outcome per requested field, in field order.
    pub fields: Vec<FieldOutcome>,
    /// Overall decision.
    pub decision: bool,
    /// Whether the subject was found; `None` unless the policy discloses it.
    pub subject_found: Option<bool>,
}

/// Compares claims with a record (`None`: subject not in the registry).
///
/// `claims` must hold each field at most once; they are answered in field
/// order whatever order they come in.
pub fn match_claims(
    key: &SubjectKey,
    claims: &[(Field, Normalized)],
    record: Option<&RecordTags>,
    policy: &MatchPolicy,
) -> MatchOutcome {
    let empty = RecordTags::default();
    let stored = record.unwrap_or(&empty);
    let mut sorted: Vec<&(Field, Normalized)> = claims.iter().collect();
    sorted.sort_by_key(|(f, _)| *f);

    let mut fields = Vec::with_capacity(sorted.len());
    for (field, claim) in sorted {
        // The tags are computed even when there is nothing to compare with,
        // so an unknown subject costs the same as a known one.
        let claim_tags = ClaimTags::compute(key, *field, claim);
        let uniform_no_match = FieldOutcome {
            field: *field,
            result: MatchResult::NoMatch,
            score: (policy.fuzzy && field.is_token_scored()).then_some(0),
        };
        let outcome = match (record, stored.fields.get(field)) {
            (None, _) => uniform_no_match,
            // "The registry has no value" reveals that the subject exists,
            // so it is only said to tenants allowed to learn that.
            (Some(_), None) if policy.disclose_not_found => FieldOutcome {
                field: *field,
                result: MatchResult::NotAvailable,
                score: None,
            },
            (Some(_), None) => uniform_no_match,
            (Some(_), Some(stored)) => claim_tags.compare(*field, stored, policy),
        };
        fields.push(outcome);
    }

    let decision = !fields.is_empty() && fields.iter().all(|o| counts_as_match(o, policy));
    MatchOutcome {
        fields,
        decision,
        subject_found: policy.disclose_not_found.then_some(record.is_some()),
    }
}

fn counts_as_match(o: &FieldOutcome, policy: &MatchPolicy) -> bool {
    match o.result {
        MatchResult::Match => true,
        MatchResult::MatchFolded => policy.accept_folded,
        MatchResult::NoMatch => {
            let threshold = policy.fuzzy_threshold.max(MIN_FUZZY_THRESHOLD);
            policy.fuzzy && o.score.is_some_and(|s| s >= threshold)
        }
        MatchResult::NotAvailable => false,
    }
}

struct ClaimTags {
    exact: Vec<Tag>,
    folded: Option<Tag>,
    tokens: Vec<Tag>,
}

impl ClaimTags {
    fn compute(key: &SubjectKey, field: Field, claim: &Normalized) -> ClaimTags {
        let exact = std::iter::once(&claim.exact)
            .chain(&claim.coarser)
            .map(|v| key.tag(field, Form::Exact, v))
            .collect();
        let mut tokens: Vec<Tag> = claim
            .tokens
            .iter()
            .map(|t| key.tag(field, Form::Token, t))
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        ClaimTags {
            exact,
            folded: claim
                .folded
                .as_ref()
                .map(|f| key.tag(field, Form::Folded, f)),
            tokens,
        }
    }

    fn compare(&self, field: Field, stored: &FieldTags, policy: &MatchPolicy) -> FieldOutcome {
        let exact = self.exact.iter().any(|t| eq(t, &stored.exact));
        let folded = match (&self.folded, &stored.folded) {
            (Some(a), Some(b)) => eq(a, b),
            _ => false,
        };
        let result = if exact {
            MatchResult::Match
        } else if folded {
            MatchResult::MatchFolded
        } else {
            MatchResult::NoMatch
        };
        let score = (policy.fuzzy && field.is_token_scored())
            .then(|| token_score(&self.tokens, &stored.tokens));
        FieldOutcome {
            field,
            result,
            score,
        }
    }
}

fn eq(a: &Tag, b: &Tag) -> bool {
    a.ct_eq(b).into()
}

/// Dice coefficient of two sorted tag sets, 0-100, rounded down:
/// `200 * |A ∩ B| / (|A| + |B|)`. Symmetric, 100 only for equal sets.
pub fn token_score(a: &[Tag], b: &[Tag]) -> u8 {
    if a.is_empty() && b.is_empty() {
        return 0;
    }
    let common = a.iter().filter(|t| b.binary_search(t).is_ok()).count();
    (200 * common / (a.len() + b.len())) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize_field;

    fn key() -> SubjectKey {
        SubjectKey::from_bytes_for_tests([5; 32])
    }

    fn norm(fields: &[(Field, &str)]) -> Vec<(Field, Normalized)> {
        fields
            .iter()
            .map(|(f, v)| (*f, normalize_field(*f, v).expect("valid test value")))
            .collect()
    }

    fn record() -> RecordTags {
        RecordTags::compute(
            &key(),
            &norm(&[
                (Field::FullName, "Nguyễn Văn An"),
                (Field::DateOfBirth, "1985-03-12"),
                (Field::Gender, "Nam"),
                (
                    Field::PlaceOfResidence,
                    "12 Lê Lợi, Phường Bến Nghé, Quận 1, Hồ Chí Minh",
                ),
            ]),
        )
    }

    fn results(o: &MatchOutcome) -> Vec<MatchResult> {
        o.fields.iter().map(|f| f.result).collect()
    }

    #[test]
    fn exact_folded_mismatch_and_not_available() {
        let rec = record();
        let policy = MatchPolicy::default();
        let all = match_claims(
            &key(),
            &norm(&[
                (Field::FullName, "NGUYỄN VĂN AN"),
                (Field::DateOfBirth, "12/03/1985"),
                (Field::Gender, "M"),
            ]),
            Some(&rec),
            &policy,
        );
        assert_eq!(results(&all), vec![MatchResult::Match; 3]);
        assert!(all.decision);
        assert_eq!(all.subject_found, None);

        let folded = match_claims(
            &key(),
            &norm(&[(Field::FullName, "Nguyen Van An")]),
            Some(&rec),
            &policy,
        );
        assert_eq!(results(&folded), vec![MatchResult::MatchFolded]);
        assert!(!folded.decision, "folded matches do not count by default");
        let lenient = MatchPolicy {
            accept_folded: true,
            ..policy
        };
        assert!(
            match_claims(
                &key(),
                &norm(&[(Field::FullName, "Nguyen Van An")]),
                Some(&rec),
                &lenient
            )
            .decision
        );

        let wrong = match_claims(
            &key(),
            &norm(&[
                (Field::FullName, "Nguyễn Văn An"),
                (Field::DateOfBirth, "1985-03-13"),
            ]),
            Some(&rec),
            &policy,
        );
        assert_eq!(
            results(&wrong),
            vec![MatchResult::Match, MatchResult::NoMatch]
        );
        assert!(!wrong.decision);

        let phone = norm(&[(Field::PhoneNumber, "0912345678")]);
        let uniform = match_claims(&key(), &phone, Some(&rec), &policy);
        assert_eq!(results(&uniform), vec![MatchResult::NoMatch]);
        assert_eq!(uniform, match_claims(&key(), &phone, None, &policy));
        let disclose = MatchPolicy {
            disclose_not_found: true,
            ..policy
        };
        let na = match_claims(&key(), &phone, Some(&rec), &disclose);
        assert_eq!(results(&na), vec![MatchResult::NotAvailable]);
        assert!(!na.decision);
    }

    #[test]
    fn partial_dates_match_at_the_registry_precision_only() {
        let key = key();
        let year_only = RecordTags::compute(&key, &norm(&[(Field::DateOfBirth, "1950")]));
        let p = MatchPolicy::default();
        let full_claim = norm(&[(Field::DateOfBirth, "1950-07-01")]);
        assert_eq!(
            results(&match_claims(&key, &full_claim, Some(&year_only), &p)),
            vec![MatchResult::Match]
        );
        let full_record = RecordTags::compute(&key, &norm(&[(Field::DateOfBirth, "1950-07-01")]));
        let year_claim = norm(&[(Field::DateOfBirth, "1950")]);
        assert_eq!(
            results(&match_claims(&key, &year_claim, Some(&full_record), &p)),
            vec![MatchResult::NoMatch]
        );
    }

    #[test]
    fn unknown_subject_gets_the_uniform_answer() {
        let claims = norm(&[
            (Field::FullName, "Trần Thị Bình"),
            (Field::DateOfBirth, "1990"),
        ]);
        let unknown = match_claims(&key(), &claims, None, &MatchPolicy::default());
        let mismatch = match_claims(&key(), &claims, Some(&record()), &MatchPolicy::default());
        assert_eq!(unknown, mismatch);
        assert!(!unknown.decision);

        let disclose = MatchPolicy {
            disclose_not_found: true,
            ..MatchPolicy::default()
        };
        assert_eq!(
            match_claims(&key(), &claims, None, &disclose).subject_found,
            Some(false)
        );
        assert_eq!(
            match_claims(&key(), &claims, Some(&record()), &disclose).subject_found,
            Some(true)
        );
    }

    #[test]
    fn fuzzy_scores_only_when_allowed() {
        let rec = record();
        let claims = norm(&[(
            Field::PlaceOfResidence,
            "12 Lê Lợi, Phường Bến Nghé, Quận 3, Hồ Chí Minh",
        )]);
        let exact = match_claims(&key(), &claims, Some(&rec), &MatchPolicy::default());
        assert_eq!(exact.fields[0].score, None);
        assert!(!exact.decision);
        let fuzzy = MatchPolicy {
            fuzzy: true,
            fuzzy_threshold: 80,
            ..MatchPolicy::default()
        };
        let scored = match_claims(&key(), &claims, Some(&rec), &fuzzy);
        let score = scored.fields[0].score.expect("scored");
        assert!((80..100).contains(&score), "score {score}");
        assert_eq!(scored.fields[0].result, MatchResult::NoMatch);
        assert!(scored.decision);
    }

    #[test]
    fn a_threshold_below_the_floor_is_read_as_the_floor() {
        // "Nguyễn Văn Bình" against "Nguyễn Văn An": two of three tokens
        // shared, score 66. A threshold of 1 would call it a match.
        let k = key();
        let stored = RecordTags::compute(&k, &norm(&[(Field::FullName, "Nguyễn Văn An")]));
        let claims = norm(&[(Field::FullName, "Nguyễn Văn Bình")]);
        let lax = MatchPolicy {
            fuzzy: true,
            fuzzy_threshold: 1,
            ..MatchPolicy::default()
        };
        let out = match_claims(&k, &claims, Some(&stored), &lax);
        assert_eq!(out.fields[0].score, Some(66));
        assert!(!out.decision, "one shared name is not the same person");
        let at_floor = MatchPolicy {
            fuzzy_threshold: MIN_FUZZY_THRESHOLD,
            ..lax
        };
        assert!(!match_claims(&k, &claims, Some(&stored), &at_floor).decision);
        let three_of_four = norm(&[(Field::FullName, "Nguyễn Văn An Bình")]);
        let out = match_claims(&k, &three_of_four, Some(&stored), &at_floor);
        assert_eq!(out.fields[0].score, Some(85));
        assert!(out.decision);
    }

    #[test]
    fn token_score_bounds() {
        let a = [[1u8; 16], [2u8; 16]];
        let b = [[2u8; 16], [3u8; 16]];
        assert_eq!(token_score(&a, &a), 100);
        assert_eq!(token_score(&a, &b), 50);
        assert_eq!(token_score(&a, &[]), 0);
        assert_eq!(token_score(&[], &[]), 0);
    }
}
