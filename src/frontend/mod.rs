//! The client side of a pooled session: the startup handshake and authentication, the login
//! greeting, and the session loop that forwards traffic through pooled server connections.

pub(crate) mod auth;
pub(crate) mod handshake;
pub(crate) mod login;
pub(crate) mod passthrough;
// The data path is being rewritten on its own branch; the items in these files nothing uses
// any more (Pipe::rewrite, Pump::run, PumpEnd::label) go with that change.
#[allow(dead_code)]
pub(crate) mod pipe;
#[allow(dead_code)]
pub(crate) mod pump;
pub(crate) mod session;
pub(crate) mod tracker;
pub(crate) mod txn;
