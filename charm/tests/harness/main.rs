//! The charm through the state-in/state-out harness: every hook runs the
//! real dispatch path against the fake Juju and a Pebble double on a real
//! Unix socket (the `ops` crate's `testing` feature).

#![allow(dead_code, unreachable_pub)] // fixtures shared across the modules

#[path = "../common/mod.rs"]
mod common;
mod world;

mod actions;
mod config;
mod database;
mod idempotence;
mod ingress;
mod lifecycle;
mod logs;
mod network_policy;
mod schema;
mod secrets;
