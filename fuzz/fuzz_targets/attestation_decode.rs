//! The attestation decoder (what a relying party or auditor runs on bytes
//! it was handed): never panics, and whatever it accepts re-encodes to the
//! same bytes, so one attestation has one encoding.
#![no_main]

use ekyc_domain::attestation::AttestationBody;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = AttestationBody::decode(data) {
        let again = body.encode().expect("a decoded body encodes");
        assert_eq!(again, data, "the encoding is canonical");
    }
});
