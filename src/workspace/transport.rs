//! The HTTP client lakepool uses for the workspace and its identity providers, and the
//! retry helpers every caller shares: a leaf module, so the API client (`http`) and the token
//! sources (`token`) both use it without importing each other.

use std::sync::Arc;
use std::time::Duration;

/// First retry delay; doubled per attempt.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest single delay between attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Builds the HTTP client: our rustls configuration (ring provider, system roots), bounded
/// timeouts. System roots are required only for an `https://` workspace (tests use plain HTTP
/// on loopback).
pub fn http_client(timeout: Duration, https: bool) -> Result<reqwest::Client, String> {
    builder(timeout, https)?.build().map_err(|e| e.to_string())
}

/// [`http_client`] that does not follow redirects (to read where one points).
pub fn http_client_without_redirects(
    timeout: Duration,
    https: bool,
) -> Result<reqwest::Client, String> {
    builder(timeout, https)?
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

fn builder(timeout: Duration, https: bool) -> Result<reqwest::ClientBuilder, String> {
    let tls = match crate::net::tls::client_tls(crate::config::UpstreamTls::VerifyFull, None) {
        Ok(Some(t)) => (*t).clone(),
        Err(e) if https => return Err(format!("cannot set up TLS for the workspace: {e}")),
        _ => rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    };
    let mut tls = tls;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("lakepool/", env!("CARGO_PKG_VERSION"), " os/linux")))
}

/// Exponential backoff with jitter: 50–100 % of min(start × 2^(n-1), cap).
pub fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_START.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let base = exp.min(BACKOFF_CAP);
    let jitter = rand::random::<f64>() * 0.5 + 0.5;
    base.mul_f64(jitter)
}

/// A transport error's description without the URL (which the caller prints already).
pub fn transport_reason(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..40 {
            let d = backoff(attempt);
            assert!(d <= BACKOFF_CAP, "{d:?}");
        }
        assert!(backoff(1) <= BACKOFF_START);
        assert!(backoff(5) >= BACKOFF_START * 4);
    }
}
