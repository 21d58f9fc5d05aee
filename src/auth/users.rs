//! The client login store built from `[[users]]`.
//!
//! Every password is turned into what the login needs once, at load: a plaintext password
//! becomes a SCRAM verifier (one PBKDF2 run here, none per login), an md5 hash and a SHA-256
//! digest for cleartext logins. A login then costs HMACs only.

use std::collections::HashMap;

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::md5::{is_md5_hash, md5_stored_hash};
use super::scram::{DEFAULT_ITERATIONS, ScramVerifier};
use crate::config::{AuthMethod, ConfigError, UserConfig};

/// What lakepool knows about one client login.
pub struct UserEntry {
    /// Login name.
    pub name: String,
    /// Method the client must use.
    pub method: AuthMethod,
    /// SCRAM verifier (configured, or derived from a plaintext password).
    pub scram: Option<ScramVerifier>,
    /// Stored md5 hash (configured, or derived from a plaintext password).
    pub md5: Option<String>,
    /// May use the admin console.
    pub admin: bool,
    /// SHA-256 of a configured plaintext password, for cleartext logins without PBKDF2.
    cleartext_digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEntry")
            .field("name", &self.name)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// How a cleartext password can be checked for a user.
pub enum CleartextCheck {
    /// Cheap: compared on the spot.
    Matches(bool),
    /// Needs PBKDF2 against this verifier: run it off the I/O threads.
    Pbkdf2(ScramVerifier),
}

impl UserEntry {
    /// Checks a cleartext password, cheaply when possible.
    pub fn check_cleartext(&self, password: &str) -> CleartextCheck {
        if let Some(digest) = &self.cleartext_digest {
            let got: [u8; 32] = Sha256::digest(password.as_bytes()).into();
            return CleartextCheck::Matches(bool::from(got.ct_eq(digest)));
        }
        if let Some(stored) = &self.md5 {
            let got = md5_stored_hash(&self.name, password);
            return CleartextCheck::Matches(bool::from(got.as_bytes().ct_eq(stored.as_bytes())));
        }
        match &self.scram {
            Some(v) => CleartextCheck::Pbkdf2(v.clone()),
            None => CleartextCheck::Matches(false),
        }
    }
}

fn empty_password(key: &str, what: &str) -> ConfigError {
    ConfigError::Invalid {
        key: format!("{key}.password"),
        problem: format!("is the {what} of an empty password, which is never accepted"),
        line: None,
    }
}

/// All client logins.
pub struct UserDb {
    users: HashMap<String, UserEntry>,
    mock_secret: [u8; 32],
}

impl std::fmt::Debug for UserDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDb")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl UserDb {
    /// Builds the store; errors name the offending `users[i]` key.
    pub fn build(users: &[UserConfig]) -> Result<Self, ConfigError> {
        let mut map = HashMap::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            let key = format!("users[{i}]");
            let pw = u.password.expose_secret();
            let (scram, md5, cleartext_digest) = if pw.starts_with("SCRAM-SHA-256$") {
                let v = ScramVerifier::parse(pw).map_err(|e| ConfigError::Invalid {
                    key: format!("{key}.password"),
                    problem: format!("not a valid SCRAM-SHA-256 verifier: {e}"),
                    line: None,
                })?;
                // One PBKDF2 run at load: an empty password is never accepted.
                if v.verify_password("") {
                    return Err(empty_password(&key, "SCRAM verifier"));
                }
                (Some(v), None, None)
            } else if is_md5_hash(pw) {
                if md5_stored_hash(&u.name, "") == pw {
                    return Err(empty_password(&key, "md5 hash"));
                }
                (None, Some(pw.to_owned()), None)
            } else {
                let digest: [u8; 32] = Sha256::digest(pw.as_bytes()).into();
                (
                    Some(ScramVerifier::from_password(pw, DEFAULT_ITERATIONS)),
                    Some(md5_stored_hash(&u.name, pw)),
                    Some(digest),
                )
            };
            let usable = match u.auth {
                AuthMethod::ScramSha256 => scram.is_some(),
                AuthMethod::Md5 => md5.is_some(),
                AuthMethod::Cleartext => true,
            };
            if !usable {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.auth"),
                    problem: format!(
                        "{:?} needs the password as plaintext or in that method's hash format",
                        u.auth
                    ),
                    line: None,
                });
            }
            map.insert(
                u.name.clone(),
                UserEntry {
                    name: u.name.clone(),
                    method: u.auth,
                    scram,
                    md5,
                    admin: u.admin,
                    cleartext_digest,
                },
            );
        }
        Ok(Self {
            users: map,
            mock_secret: rand::random(),
        })
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&UserEntry> {
        self.users.get(name)
    }

    /// Every login, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &UserEntry> {
        self.users.values()
    }

    /// A stable fake verifier for an unknown user, so the exchange looks the same as for a
    /// real one and reveals nothing.
    pub fn mock_verifier(&self, name: &str) -> ScramVerifier {
        ScramVerifier::mock(name, &self.mock_secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn config_with_password(password: &str) -> Vec<UserConfig> {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[[users]]\nname = \"u\"\npassword = \"{password}\"\n\
             [[databases]]\nname = \"d\"\nhost = \"h\"\nuser = \"o\"\n"
        );
        load_str(&text, std::path::Path::new(".")).unwrap().users
    }

    #[test]
    fn hashes_of_an_empty_password_are_refused() {
        let md5 = md5_stored_hash("u", "");
        let e = UserDb::build(&config_with_password(&md5))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("users[0].password") && e.contains("md5 hash of an empty"),
            "{e}"
        );
        let verifier = ScramVerifier::from_password("", DEFAULT_ITERATIONS).to_string();
        let e = UserDb::build(&config_with_password(&verifier))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("users[0].password") && e.contains("SCRAM verifier"),
            "{e}"
        );
        // The same forms of a real password load.
        let md5 = md5_stored_hash("u", "pw");
        let built = UserDb::build(&config_with_password(&md5));
        assert!(built.err().is_none_or(|e| !e.to_string().contains("empty")));
        let verifier = ScramVerifier::from_password("pw", DEFAULT_ITERATIONS).to_string();
        assert!(UserDb::build(&config_with_password(&verifier)).is_ok());
    }
}
