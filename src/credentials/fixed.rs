//! A fixed password for a native PostgreSQL role: the static credential source.

use std::sync::Arc;

use secrecy::SecretString;

use super::source::{Credential, CredentialError, CredentialFuture, CredentialSource};

/// A configured host, role and password (or none) that never change.
#[derive(Debug)]
pub struct StaticCredential {
    credential: Arc<Credential>,
}

impl StaticCredential {
    /// Wraps the configured host, role and password.
    pub fn new(host: &str, user: &str, password: Option<SecretString>) -> Self {
        Self {
            credential: Arc::new(Credential {
                host: Arc::from(host),
                user: Arc::from(user),
                password,
                expires_at: None,
            }),
        }
    }
}

impl CredentialSource for StaticCredential {
    fn current(&self) -> Result<Arc<Credential>, CredentialError> {
        Ok(Arc::clone(&self.credential))
    }

    fn refresh_after_rejection<'a>(
        &'a self,
        _rejected: &'a Credential,
    ) -> CredentialFuture<'a, Option<Arc<Credential>>> {
        // A static password does not change by asking again: no retry.
        Box::pin(async { Ok(None) })
    }

    fn target(&self) -> (Option<Arc<str>>, Option<Arc<str>>) {
        (
            Some(Arc::clone(&self.credential.host)),
            Some(Arc::clone(&self.credential.user)),
        )
    }

    fn describe(&self) -> String {
        if self.credential.password.is_some() {
            "static password".to_owned()
        } else {
            "no password".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_debug_is_redacted() {
        let s = StaticCredential::new("h", "u", Some(SecretString::from("hunter2".to_owned())));
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert_eq!(s.describe(), "static password");
        assert_eq!(
            StaticCredential::new("h", "u", None).describe(),
            "no password"
        );
    }

    #[tokio::test]
    async fn never_refreshes_and_always_has_the_configured_target() {
        let s = StaticCredential::new("db.internal", "app", None);
        let c = s.current().unwrap();
        assert_eq!((&*c.host, &*c.user), ("db.internal", "app"));
        assert!(s.refresh_after_rejection(&c).await.unwrap().is_none());
        assert!(!s.force_refresh());
        assert_eq!(s.target().0.as_deref(), Some("db.internal"));
    }
}
