//! ID number normalisation: never panics, the canonical form is itself
//! valid and maps to itself, and a violation never quotes the value.
#![no_main]

use ekyc_domain::normalize::normalize_id;
use ekyc_fuzz::quotes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    match normalize_id(raw) {
        Ok(id) => {
            let again = normalize_id(id.as_str()).expect("the canonical form is valid");
            assert_eq!(again.as_str(), id.as_str());
            assert!(id.as_str().bytes().all(|b| b.is_ascii_digit()));
        }
        Err(v) => {
            assert!(!quotes(&v.description, raw), "a violation quotes the value");
        }
    }
});
