//! Invoice exports: CSV, JSON and PDF, byte-for-byte reproducible.
