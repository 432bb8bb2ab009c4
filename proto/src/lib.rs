//! Generated types and stubs for the `ekyc.v1` gRPC contract.
//!
//! The code is generated at build time from `proto/ekyc/v1/*.proto` with
//! `protox` (pure Rust), so a build needs no system `protoc`. The generated
//! module is private; this crate re-exports it under tidy names. Nothing
//! hand-written belongs here besides the re-exports and accessors that
//! both the server and the client need (so they cannot drift apart).
#![forbid(unsafe_code)]

mod generated {
    #![allow(
        missing_docs,
        reason = "generated code; the .proto files carry the docs"
    )]
    #![allow(clippy::all, reason = "generated code")]
    pub mod ekyc {
        pub mod v1 {
            tonic::include_proto!("ekyc.v1");
        }
    }
}

/// The `ekyc.v1` package: messages, enums, client and server stubs.
pub mod v1 {
    pub use crate::generated::ekyc::v1::*;

    impl Claims {
        /// The claims present in the message, in `ClaimField` order, as
        /// `(field, value as sent)`.
        pub fn present(&self) -> Vec<(ClaimField, &str)> {
            [
                (ClaimField::FullName, &self.full_name),
                (ClaimField::DateOfBirth, &self.date_of_birth),
                (ClaimField::Gender, &self.gender),
                (ClaimField::Nationality, &self.nationality),
                (ClaimField::PlaceOfOrigin, &self.place_of_origin),
                (ClaimField::PlaceOfResidence, &self.place_of_residence),
                (ClaimField::IdIssueDate, &self.id_issue_date),
                (ClaimField::IdExpiryDate, &self.id_expiry_date),
                (ClaimField::PhoneNumber, &self.phone_number),
            ]
            .into_iter()
            .filter_map(|(f, v)| v.as_deref().map(|v| (f, v)))
            .collect()
        }
    }
}

/// Encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ekyc_descriptor.bin"));

/// The canonical name of a gRPC status code (`RESOURCE_EXHAUSTED`), as
/// the gRPC documentation and other implementations spell it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
