//! The claim fields a request can name, with their stable codes.

/// A claimed field of a subject, besides the ID number that names the subject.
///
/// `code()` equals the `ekyc.v1.ClaimField` enum value and is what the
/// attestation bytes and the stored record use, so it must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// Full name as printed on the ID card.
    FullName,
    /// Date of birth; the registry may hold only year-month or year.
    DateOfBirth,
    /// Gender as recorded by the registry.
    Gender,
    /// Nationality as an ISO 3166-1 alpha-2 code.
    Nationality,
    /// Place of origin (quê quán), free text scored by token overlap.
    PlaceOfOrigin,
    /// Place of residence (nơi thường trú), free text scored by token overlap.
    PlaceOfResidence,
    /// Issue date of the ID card.
    IdIssueDate,
    /// Expiry date of the ID card.
    IdExpiryDate,
    /// Phone number in E.164.
    PhoneNumber,
}

impl Field {
    /// Every field, in code order.
    pub const ALL: [Field; 9] = [
        Field::FullName,
        Field::DateOfBirth,
        Field::Gender,
        Field::Nationality,
        Field::PlaceOfOrigin,
        Field::PlaceOfResidence,
        Field::IdIssueDate,
        Field::IdExpiryDate,
        Field::PhoneNumber,
    ];

    /// Stable numeric code, equal to the proto enum value.
    pub const fn code(self) -> u8 {
        match self {
            Field::FullName => 1,
            Field::DateOfBirth => 2,
            Field::Gender => 3,
            Field::Nationality => 4,
            Field::PlaceOfOrigin => 5,
            Field::PlaceOfResidence => 6,
            Field::IdIssueDate => 7,
            Field::IdExpiryDate => 8,
            Field::PhoneNumber => 9,
        }
    }

    /// The field for a code, if any.
    pub fn from_code(code: u8) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.code() == code)
    }

    /// Stable snake_case name, used in error messages, CSV headers and as the
    /// HMAC label of the field's tags.
    pub const fn name(self) -> &'static str {
        match self {
            Field::FullName => "full_name",
            Field::DateOfBirth => "date_of_birth",
            Field::Gender => "gender",
            Field::Nationality => "nationality",
            Field::PlaceOfOrigin => "place_of_origin",
            Field::PlaceOfResidence => "place_of_residence",
            Field::IdIssueDate => "id_issue_date",
            Field::IdExpiryDate => "id_expiry_date",
            Field::PhoneNumber => "phone_number",
        }
    }

    /// The field with this snake_case name, if any.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether a diacritic- and case-insensitive ("folded") form is kept.
    pub const fn has_folded_form(self) -> bool {
        matches!(
            self,
            Field::FullName | Field::PlaceOfOrigin | Field::PlaceOfResidence
        )
    }

    /// Whether the field is also scored by token overlap (fuzzy matching).
    pub const fn is_token_scored(self) -> bool {
        matches!(
            self,
            Field::FullName | Field::PlaceOfOrigin | Field::PlaceOfResidence
        )
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for f in Field::ALL {
            assert_eq!(Field::from_code(f.code()), Some(f));
            assert_eq!(Field::from_name(f.name()), Some(f));
        }
        assert_eq!(Field::from_code(0), None);
        assert_eq!(Field::from_name("id_number"), None);
    }
}
