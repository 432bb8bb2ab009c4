//! Every claim field's normalisation: never panics, is idempotent (the
//! exact form normalises to itself), and a violation never quotes the
//! value. The first byte picks the field.
#![no_main]

use ekyc_domain::Field;
use ekyc_domain::normalize::normalize_field;
use ekyc_fuzz::quotes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let field = Field::ALL[usize::from(pick) % Field::ALL.len()];
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    match normalize_field(field, raw) {
        Ok(n) => {
            let again = normalize_field(field, &n.exact).expect("an exact form is valid input");
            assert!(again == n, "normalisation is idempotent");
        }
        Err(v) => {
            assert_eq!(v.field, field.name());
            assert!(!quotes(&v.description, raw), "a violation quotes the value");
        }
    }
});
