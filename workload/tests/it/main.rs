//! Integration tests of the workload against real throwaway PostgreSQL clusters and real
//! processes. One binary (faster to build); under nextest each test still runs in its own process.

mod admin;
mod backends;
mod client;
mod common;
mod docs;
mod downloads;
mod openapi;
mod process;
mod proxy;
mod routes;
mod schema_tool;
mod schemathesis;
mod storage;
mod sync;
mod tls;
