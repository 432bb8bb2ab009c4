//! Pricing a period's usage under a plan (see `price`).
