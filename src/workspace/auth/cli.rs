//! `databricks-cli`: the token `databricks auth login` stored, read with `databricks auth
//! token`, as go `config/cli_token_source.go` and py `credentials_provider.py`
//! `DatabricksCliTokenSource` run it:
//!
//! - the CLI's version from `databricks version --output json` (py `_probe_cli_version`;
//!   unknown when that fails);
//! - `databricks auth token --profile <p>` when a profile was asked for and the CLI is at least
//!   0.207.1, else `--host <workspace>`; `--force-refresh` from 0.296.0 on (so the CLI's own
//!   cache does not hand back a token the workspace just rejected);
//! - its JSON `{"access_token", "token_type", "expiry"}`; `expiry` as RFC 3339 or
//!   `YYYY-MM-DD HH:MM:SS[.f]` (go `parseExpiry`);
//! - a failed run reports `cannot get access token: <stderr>: exit status N` (go
//!   `execCliCommand`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use tokio::sync::OnceCell;

use super::program;
use super::{Bearer, Fetched, TokenError};

/// `--profile` in `auth token` (databricks/cli PR #855).
const VERSION_FOR_PROFILE: (u64, u64, u64) = (0, 207, 1);
/// `--force-refresh` (databricks/cli PR #4767).
const VERSION_FOR_FORCE_REFRESH: (u64, u64, u64) = (0, 296, 0);
/// Longest a CLI run may take (py probes the version with a 5 s limit).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
/// Most of the CLI's error output quoted in an error.
const MAX_STDERR: usize = 500;

/// How to run the CLI for this workspace.
pub(super) struct Cli {
    path: PathBuf,
    profile: Option<String>,
    host: String,
    /// The arguments after the binary, built once the version is known.
    args: OnceCell<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenOutput {
    access_token: String,
    expiry: String,
}

#[derive(Deserialize)]
struct VersionOutput {
    #[serde(rename = "Major")]
    major: u64,
    #[serde(rename = "Minor")]
    minor: u64,
    #[serde(rename = "Patch")]
    patch: u64,
}

impl Cli {
    pub(super) fn new(path: PathBuf, profile: Option<String>, host: String) -> Self {
        Self {
            path,
            profile,
            host,
            args: OnceCell::new(),
        }
    }

    fn error(reason: String) -> TokenError {
        TokenError::Source {
            method: "databricks-cli",
            reason,
        }
    }

    pub(super) async fn fetch(&self) -> Result<Fetched, TokenError> {
        let args = self
            .args
            .get_or_init(|| async {
                build_args(self.profile.as_deref(), &self.host, self.version().await)
            })
            .await;
        let out = run(&self.path, args, RUN_TIMEOUT)
            .await
            .map_err(Self::error)?;
        let parsed: TokenOutput = serde_json::from_slice(&out)
            .map_err(|e| Self::error(format!("cannot parse CLI response: {e}")))?;
        let expiry = parse_expiry(&parsed.expiry)
            .ok_or_else(|| Self::error(format!("cannot parse token expiry {:?}", parsed.expiry)))?;
        let lifetime = Duration::try_from(expiry - OffsetDateTime::now_utc()).unwrap_or_default();
        Ok(Fetched {
            bearer: Bearer::plain(SecretString::from(parsed.access_token)),
            lifetime,
        })
    }

    /// The CLI's version, None when it cannot be told (then the older flags are used).
    async fn version(&self) -> Option<(u64, u64, u64)> {
        let args = [
            "version".to_owned(),
            "--output".to_owned(),
            "json".to_owned(),
        ];
        match run(&self.path, &args, VERSION_TIMEOUT).await {
            Ok(out) => match serde_json::from_slice::<VersionOutput>(&out) {
                Ok(v) => Some((v.major, v.minor, v.patch)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot parse the Databricks CLI version; falling back to the conservative flag set");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "failed to detect the Databricks CLI version; falling back to the conservative flag set");
                None
            }
        }
    }
}

/// The `auth token` arguments for a CLI of `version`.
fn build_args(profile: Option<&str>, host: &str, version: Option<(u64, u64, u64)>) -> Vec<String> {
    let at_least = |v: (u64, u64, u64)| version.is_some_and(|have| have >= v);
    let mut args = vec!["auth".to_owned(), "token".to_owned()];
    match profile {
        Some(p) if at_least(VERSION_FOR_PROFILE) => {
            args.extend(["--profile".to_owned(), p.to_owned()]);
        }
        _ => {
            if profile.is_some() {
                tracing::warn!(
                    "the Databricks CLI does not support --profile (requires >= 0.207.1); falling back to --host"
                );
            }
            args.extend(["--host".to_owned(), host.to_owned()]);
        }
    }
    if at_least(VERSION_FOR_FORCE_REFRESH) {
        args.push("--force-refresh".to_owned());
    } else {
        tracing::warn!(
            "the Databricks CLI does not support --force-refresh (requires >= 0.296.0); its token cache may provide stale tokens"
        );
    }
    args
}

/// Runs the CLI and returns its standard output, or the SDKs' error text.
async fn run(path: &Path, args: &[String], limit: Duration) -> Result<Vec<u8>, String> {
    let out = program::run(path, args, limit)
        .await
        .map_err(|e| format!("cannot get access token: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut stderr = stderr.trim().to_owned();
        if stderr.len() > MAX_STDERR {
            let cut = (0..=MAX_STDERR)
                .rev()
                .find(|i| stderr.is_char_boundary(*i))
                .unwrap_or(0);
            stderr.truncate(cut);
            stderr.push('…');
        }
        let status = match out.status.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_owned(),
        };
        return Err(format!("cannot get access token: {stderr}: {status}"));
    }
    Ok(out.stdout)
}

/// RFC 3339 (with or without fractions), or `YYYY-MM-DD HH:MM:SS[.f]` taken as UTC.
fn parse_expiry(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let spaced = format_description!(
        version = 2,
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(s, spaced)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_the_cli_version() {
        let host = "https://ws.example";
        let a = build_args(Some("prod"), host, Some((0, 296, 0)));
        assert_eq!(a, ["auth", "token", "--profile", "prod", "--force-refresh"]);
        let a = build_args(Some("prod"), host, Some((0, 207, 1)));
        assert_eq!(a, ["auth", "token", "--profile", "prod"]);
        let a = build_args(Some("prod"), host, Some((0, 207, 0)));
        assert_eq!(a, ["auth", "token", "--host", host]);
        let a = build_args(None, host, None);
        assert_eq!(a, ["auth", "token", "--host", host]);
    }

    #[test]
    fn expiry_formats() {
        let t = parse_expiry("2024-03-20T10:30:00.123456789+01:00").unwrap();
        assert_eq!(
            t.unix_timestamp(),
            parse_expiry("2024-03-20T09:30:00Z")
                .unwrap()
                .unix_timestamp()
        );
        assert!(parse_expiry("2024-03-20 10:30:00").is_some());
        assert!(parse_expiry("2024-03-20 10:30:00.123").is_some());
        assert!(parse_expiry("tomorrow").is_none());
    }
}
