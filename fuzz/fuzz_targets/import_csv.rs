//! CSV registry import: reading and validating any bytes never panics,
//! and no reject or violation quotes a value of the row.
#![no_main]

use ekyc_fuzz::{Format, rows};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rows(data, Format::Csv));
