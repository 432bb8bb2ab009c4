//! Outside input, checked before it becomes domain values: Verify requests
//! off the wire ([`request`]) and the rows of a registry export
//! ([`rows`]).
//!
//! Pure: no I/O beyond reading from a caller's reader, no logging, no
//! clock (today's date is passed in). Every refusal names the field and
//! the rule and never quotes the value, which is personal data. It is its
//! own crate so that the fuzz targets (`fuzz/`) drive exactly what the
//! service runs without building the service.
#![forbid(unsafe_code)]

pub mod request;
pub mod rows;
