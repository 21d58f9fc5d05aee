//! The refresh status of a rotating credential, for readiness, `/metrics` and the admin console.

use std::time::SystemTime;

/// What the refresher has done so far.
#[derive(Debug, Clone, Default)]
pub struct RefreshStatus {
    /// Successful refreshes.
    pub refreshes: u64,
    /// Failed refresh attempts.
    pub failures: u64,
    /// When the last refresh succeeded.
    pub last_refresh: Option<SystemTime>,
    /// The last failure, without secrets.
    pub last_error: Option<String>,
    /// Class of the last failure (`http_5xx`, `auth`, `transport`, `not_available`…).
    pub last_error_class: Option<&'static str>,
    /// The last warning of a refresh that succeeded anyway (e.g. the instance is not
    /// available and the last known host stays in use), without secrets.
    pub last_warning: Option<String>,
    /// Role the credential is for, once known (the configured one wins).
    pub identity: Option<String>,
    /// Host the credential is for, once known (the configured one wins).
    pub host: Option<String>,
}
