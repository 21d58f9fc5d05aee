//! The client side of a pooled session: the startup handshake and authentication, the login
//! greeting, and the session loop that forwards traffic through pooled server connections.

pub(crate) mod auth;
pub(crate) mod client_path;
pub(crate) mod handshake;
pub(crate) mod login;
pub(crate) mod passthrough;
pub(crate) mod pipe;
pub(crate) mod pump;
pub(crate) mod session;
pub(crate) mod tracker;
pub(crate) mod txn;
