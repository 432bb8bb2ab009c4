//! Billing: the usage ledger, versioned price plans and invoices.
//!
//! Pricing and exports are pure functions of their inputs, so an invoice
//! regenerated from the same events and plan version is byte-identical.

pub mod decision_log;
pub mod export;
pub mod file_lock;
pub mod invoices;
pub mod ledger;
pub mod model;
pub mod period;
pub mod pricing;
pub mod words;

pub use decision_log::{Decision, StoredCheckpoint, StoredDecision};
pub use invoices::events_digest;
pub use ledger::{Ledger, LedgerError, PoolSettings, Recorded, UsageEvent};
pub use model::*;
