//! A VerifyRequest off the wire: protobuf decoding plus the whole
//! validation Verify runs before anything else, on any bytes. Never
//! panics, and the error never quotes a request value.
#![no_main]

use ekyc_domain::normalize::CivilDate;
use ekyc_fuzz::quotes;
use ekyc_proto::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = pb::VerifyRequest::decode(data) else {
        return;
    };
    let today = CivilDate {
        year: 2026,
        month: 12,
        day: 1,
    };
    if let Err(rejected) = ekyc_input::request::validate_verify(&req, today) {
        let (ekyc_input::request::Rejected::Invalid(violations)
        | ekyc_input::request::Rejected::OutOfRange(violations)) = rejected;
        assert!(!violations.is_empty(), "a refusal names a violation");
        let message: String = violations.iter().map(|v| v.description.as_str()).collect();
        let claims = req.claims.clone().unwrap_or_default();
        for value in [req.id_number.as_str(), req.consent_reference.as_str()]
            .into_iter()
            .chain(claims.present().into_iter().map(|(_, v)| v))
        {
            assert!(!quotes(&message, value), "a refusal quotes a value");
        }
    }
});
