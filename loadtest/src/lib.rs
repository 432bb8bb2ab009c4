//! Load generation and benchmarks for `ekycd` (see loadtest/README.md).
