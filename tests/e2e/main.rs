//! End-to-end tests: the real `lakepool` binary against a real, throwaway
//! PostgreSQL cluster.
//!
//! Everything lives in this one test binary so the cluster (see
//! `support::pg`) is started once per `cargo test` run; each area of
//! behaviour is a submodule. The cluster and any lakepool processes are
//! cleaned up by `support`'s reaper when the binary exits.

mod support;

mod harness_smoke;

mod auth;
mod bad_input;
mod bounded;
mod bounded_protocol;
mod bounded_timeouts;
mod cli;
mod clients;
mod compat;
mod fixtures;
mod hardening;
mod isolation;
mod isolation_drivers;
mod lakebase;
mod limits;
mod monitoring;
mod operations;
mod operator;
mod passthrough;
mod pgbouncer_compat;
mod pooling;
mod prepared;
mod protocol;
mod reload;
mod shutdown;
mod transparency;
mod unix_socket;
mod waking;
mod workspace_auth;
