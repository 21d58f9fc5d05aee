//! Workload identity federation (`env-oidc`, `file-oidc`): an OIDC token issued to this
//! workload (e.g. a Kubernetes projected service-account token) exchanged for a workspace
//! token by RFC 8693 token exchange at the workspace's token endpoint.
//!
//! As go `config/experimental/auth/oidc/tokensource.go` and py `databricks/sdk/oidc.py`
//! `DatabricksOidcTokenSource`: `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`,
//! `subject_token_type=urn:ietf:params:oauth:token-type:jwt`, `scope=all-apis`, and the
//! service principal's `client_id` in the form when set (no client secret; without a client id
//! the account-wide federation policy decides). The OIDC token is read again for every
//! exchange, so a rotated file (kubelet rewrites projected tokens well before they expire) is
//! picked up at the next refresh or after a 401. Error texts follow go
//! `config/experimental/auth/oidc/oidc.go`.

use super::discovery::Discovery;
use super::oauth::token_request;
use super::{Bearer, Fetched, IdTokenSource, TokenError};
use secrecy::SecretString;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The exchange for one workload.
pub(super) struct Oidc {
    http: reqwest::Client,
    discovery: Discovery,
    source: IdTokenSource,
    client_id: Option<String>,
}

impl Oidc {
    pub(super) fn new(
        http: reqwest::Client,
        discovery: Discovery,
        source: IdTokenSource,
        client_id: Option<String>,
    ) -> Self {
        Self {
            http,
            discovery,
            source,
            client_id,
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self.source {
            IdTokenSource::Env(_) => "env-oidc",
            IdTokenSource::File(_) => "file-oidc",
        }
    }

    pub(super) async fn fetch(&self) -> Result<Fetched, TokenError> {
        let subject = self.source.read().map_err(|reason| TokenError::Source {
            method: self.kind(),
            reason,
        })?;
        let endpoint = self.discovery.token_endpoint().await?;
        let mut pairs = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token_type", SUBJECT_TOKEN_TYPE),
            ("subject_token", subject.as_str()),
            ("scope", "all-apis"),
        ];
        if let Some(id) = &self.client_id {
            pairs.push(("client_id", id));
        }
        let (token, lifetime) = token_request(&self.http, endpoint, &pairs, None).await?;
        Ok(Fetched {
            bearer: Bearer::plain(token),
            lifetime,
        })
    }
}

/// The OIDC token, held as a secret (zeroed on drop) for one exchange only.
struct Subject(SecretString);

impl Subject {
    fn as_str(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl IdTokenSource {
    /// The current OIDC token: the variable's value or the file's contents, trimmed.
    fn read(&self) -> Result<Subject, String> {
        let token = match self {
            IdTokenSource::Env(var) => std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| format!("missing env var {var:?}"))?,
            IdTokenSource::File(path) => match std::fs::read_to_string(path) {
                Ok(t) if t.trim().is_empty() => {
                    return Err(format!("file {:?} is empty", path.display().to_string()));
                }
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(format!(
                        "file {:?} does not exist",
                        path.display().to_string()
                    ));
                }
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            },
        };
        Ok(Subject(SecretString::from(token.trim().to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_tokens_are_read_fresh_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let src = IdTokenSource::File(path.clone());
        let e = src.read().err().unwrap();
        assert!(e.contains("does not exist") && e.contains("token"), "{e}");
        std::fs::write(&path, "\n").unwrap();
        assert!(src.read().err().unwrap().contains("is empty"));
        std::fs::write(&path, "jwt-one\n").unwrap();
        assert_eq!(src.read().unwrap().as_str(), "jwt-one");
        // Rotated by the kubelet: the next read sees the new token.
        std::fs::write(&path, "jwt-two").unwrap();
        assert_eq!(src.read().unwrap().as_str(), "jwt-two");
    }

    #[test]
    fn missing_variable_is_named() {
        let src = IdTokenSource::Env("LAKEPOOL_TEST_OIDC_UNSET_42".into());
        assert_eq!(
            src.read().err().unwrap(),
            "missing env var \"LAKEPOOL_TEST_OIDC_UNSET_42\""
        );
    }
}
