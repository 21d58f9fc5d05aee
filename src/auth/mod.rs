//! Authentication: sans-IO SCRAM and md5 (both directions), channel binding, and the store of
//! client logins built from `[[users]]`.

pub mod channel_binding;
pub mod md5;
pub mod saslprep;
pub mod scram;
pub mod users;
