//! The client side of a pooled session: the startup handshake and authentication, the login
//! greeting, and the session loop that forwards traffic through pooled server connections.

pub mod auth;
pub mod handshake;
pub mod login;
pub mod pipe;
pub mod pump;
pub mod session;
pub mod tracker;
pub mod txn;
