//! Authentication: sans-IO SCRAM and md5 (both directions), channel binding, and the store of
//! client logins built from `[[users]]`.

pub(crate) mod channel_binding;
pub(crate) mod md5;
pub(crate) mod saslprep;
pub mod scram;
mod scram_client;
pub mod users;
