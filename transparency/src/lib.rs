//! The decision log's cryptography: entries, the Merkle tree, its proofs and
//! its signed checkpoints, exactly as `docs/decision-log.md` specifies them.
//!
//! The service appends entries and signs checkpoints with this crate, and
//! auditors check proofs against it, so every rule here is one that a
//! third party must be able to re-implement from the page alone (as
//! `scripts/verify_log.py` does). The tree is the RFC 6962 Merkle Hash Tree;
//! proofs are RFC 6962 `PATH`/`PROOF`, checked by the RFC 9162 algorithms;
//! checkpoints are C2SP signed notes under an Ed25519 key.
//!
//! Storage is the caller's: the tree is known by the complete subtrees it
//! stores ([`NodeId`]), and each computation first says which nodes it will
//! read ([`root_nodes`], [`inclusion_nodes`], [`consistency_nodes`]) so the
//! caller can fetch them in one query and hand them in as a map. This crate
//! must never do I/O, log, or depend on an async runtime.
#![forbid(unsafe_code)]

pub mod entry;
pub mod merkle;
pub mod note;

#[cfg(test)]
mod doc_vectors;

pub use entry::DecisionEntry;
pub use merkle::{
    Appender, Hash, NodeId, ProofError, compact_range, consistency_nodes, consistency_proof,
    empty_root, inclusion_nodes, inclusion_proof, leaf_hash, node_hash, root_from, root_nodes,
    verify_consistency, verify_inclusion,
};
pub use note::{Checkpoint, NoteError, NoteSigner, NoteVerifier};
