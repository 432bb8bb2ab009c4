//! The stored-record decoder (bytes read back from the database): never
//! panics, and what it accepts re-encodes to the same bytes.
#![no_main]

use ekyc_domain::record::RecordTags;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tags) = RecordTags::decode(data) {
        assert_eq!(tags.encode(), data, "the encoding is canonical");
    }
});
