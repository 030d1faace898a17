//! Benchmark and load tooling for the Livepatch server (issue 3 "Performance", issue 6 items 3
//! and 4): the load generator ([`load`]), the synthetic fleet seeded straight into PostgreSQL
//! and its check-in requests ([`fleet`]), the bare check-in handler the server is compared with
//! ([`bare`]) and process memory from `/proc` ([`procfs`]).
//!
//! The `livepatch-bench` binary drives these from `scripts/bench-server` and
//! `scripts/bench-overload`; the fault and overload suites of `tests/` use the library directly.

pub mod bare;
pub mod fleet;
pub mod load;
pub mod procfs;
