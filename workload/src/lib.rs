//! The Livepatch on-prem server: configuration, PostgreSQL, the schema, the domain, patch
//! storage, the HTTP API with its governor and metrics, admin authentication, logging, and the
//! admin CLI. The three binaries in `src/bin/` are thin mains over these modules.
//!
//! See ARCHITECTURE.md (section `workload/`) for the map and the invariants.

pub mod admin_cli;
pub mod auth;
pub mod cache;
pub mod client;
pub mod config;
pub mod db;
pub mod domain;
pub mod governor;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod migrations;
pub mod secret;
pub mod security;
pub mod server;
pub mod storage;
pub mod store;
pub mod sync;
