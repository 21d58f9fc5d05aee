//! The client login store built from `[[users]]`, and the authentication method of each
//! database.
//!
//! Every password is turned into what the login needs once, at load: a plaintext password
//! becomes a SCRAM verifier (one PBKDF2 run here, none per login), an md5 hash and a SHA-256
//! digest for cleartext logins. A login then costs HMACs only.
//!
//! Nothing a client sees before its password is checked depends on whether its user name
//! exists: the method is a property of the database asked for (`[server] auth`, or `auth` on a
//! `[[databases]]` entry), never of the user, and an unknown user's SCRAM exchange runs against
//! a fake verifier whose salt and iteration count look like a real user's. Salts of verifiers
//! lakepool derives (from plaintext passwords, and the fake ones) come from the user name and a
//! per-process random key, so they stay the same across reloads for known and unknown users
//! alike.

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;

use parking_lot::Mutex;

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::md5::{is_md5_hash, md5_stored_hash};
use super::saslprep::saslprep;
use super::scram::{DEFAULT_ITERATIONS, DEFAULT_SALT_LEN, ScramVerifier, hmac_sha256};
use crate::config::{AuthMethod, Config, ConfigError, UserConfig};

/// What lakepool knows about one client login.
pub struct UserEntry {
    /// Login name.
    pub name: String,
    /// SCRAM verifier (configured, or derived from a plaintext password).
    pub scram: Option<ScramVerifier>,
    /// Stored md5 hash (configured, or derived from a plaintext password).
    pub md5: Option<String>,
    /// May use the admin console.
    pub admin: bool,
    /// SHA-256 of a configured plaintext password after SASLprep, for cleartext logins without
    /// PBKDF2.
    cleartext_digest: Option<[u8; 32]>,
    /// For a user stored as a SCRAM verifier: the digest of the password (as above) once a
    /// cleartext login has proved it, so later cleartext attempts, right or wrong, cost no
    /// PBKDF2.
    learned_digest: OnceLock<[u8; 32]>,
    /// Digests of the latest wrong cleartext passwords checked with PBKDF2 (a client retrying
    /// the same wrong password in a loop costs one run, not one per attempt).
    failed_digests: Mutex<VecDeque<[u8; 32]>>,
}

/// Wrong cleartext passwords remembered per user.
const FAILED_DIGESTS: usize = 16;

/// Highest iteration count accepted in a configured SCRAM verifier. A verifier costs one PBKDF2
/// run at load, and a cleartext login against it one more until a right password has been
/// seen; at this cap that is about 11 ms of CPU (release build, one core of the benchmark
/// machine). PostgreSQL's default is 4096.
pub const MAX_VERIFIER_ITERATIONS: u32 = 100_000;

impl Drop for UserEntry {
    fn drop(&mut self) {
        // An md5 hash logs in by itself; the digests allow offline guessing.
        if let Some(md5) = self.md5.as_mut() {
            md5.zeroize();
        }
        self.cleartext_digest.zeroize();
        if let Some(mut d) = self.learned_digest.take() {
            d.zeroize();
        }
        self.failed_digests
            .get_mut()
            .iter_mut()
            .for_each(Zeroize::zeroize);
    }
}

impl std::fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEntry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How a cleartext password can be checked for a user.
pub enum CleartextCheck {
    /// Cheap: compared on the spot.
    Matches(bool),
    /// Needs PBKDF2: run [`Pbkdf2Check::run`] off the I/O threads, then report the result
    /// with [`UserEntry::remember`].
    Pbkdf2(Pbkdf2Check),
}

/// A cleartext password to check against a SCRAM verifier.
pub struct Pbkdf2Check {
    verifier: ScramVerifier,
    /// SHA-256 of the SASLprep'd password, for [`UserEntry::remember`].
    pub digest: [u8; 32],
}

impl Pbkdf2Check {
    /// Runs PBKDF2 (milliseconds of CPU).
    pub fn run(&self, password: &[u8]) -> bool {
        self.verifier.verify_password(password)
    }
}

impl UserEntry {
    /// Checks a cleartext password, cheaply when possible. As PostgreSQL checks a cleartext
    /// password against a SCRAM secret, both sides are SASLprep'd; against an md5 hash, the raw
    /// bytes count.
    pub fn check_cleartext(&self, password: &[u8]) -> CleartextCheck {
        let digest: [u8; 32] = Sha256::digest(saslprep(password)).into();
        if let Some(known) = self.cleartext_digest.as_ref().or(self.learned_digest.get()) {
            return CleartextCheck::Matches(bool::from(digest.ct_eq(known)));
        }
        if let Some(stored) = &self.md5 {
            let got = md5_stored_hash(&self.name, password);
            return CleartextCheck::Matches(bool::from(got.as_bytes().ct_eq(stored.as_bytes())));
        }
        if self.failed_digests.lock().contains(&digest) {
            return CleartextCheck::Matches(false);
        }
        match &self.scram {
            Some(v) => CleartextCheck::Pbkdf2(Pbkdf2Check {
                verifier: v.clone(),
                digest,
            }),
            None => CleartextCheck::Matches(false),
        }
    }

    /// Records the result of a [`Pbkdf2Check`], so the same password is not checked again.
    pub fn remember(&self, digest: [u8; 32], matched: bool) {
        if matched {
            let _ = self.learned_digest.set(digest);
            return;
        }
        let mut failed = self.failed_digests.lock();
        if !failed.contains(&digest) {
            if failed.len() >= FAILED_DIGESTS {
                failed.pop_front();
            }
            failed.push_back(digest);
        }
    }
}

/// Key of this process's derived salts and fake verifiers: random, made once, so it is the
/// same across reloads and unknown to anyone outside.
fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

/// `len` bytes derived from `label` and `user` with the process key (HMAC-SHA-256 in counter
/// mode, so any length works).
fn derive(label: &[u8], user: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut counter = 0u32;
    while out.len() < len {
        let block = hmac_sha256(
            process_key(),
            &[label, &counter.to_be_bytes(), user.as_bytes()],
        );
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    out
}

/// The salt lakepool uses for `user`'s verifier when it makes one: stable for the life of the
/// process, different in every process.
pub fn derived_salt(user: &str) -> Vec<u8> {
    derive(b"lakepool-salt\0", user, DEFAULT_SALT_LEN)
}

/// All client logins, and the method of each database.
pub struct UserDb {
    users: HashMap<String, UserEntry>,
    /// Method of each configured database; others (and the admin console) use `default_method`.
    methods: HashMap<String, AuthMethod>,
    default_method: AuthMethod,
    /// (iterations, salt length) of every user's verifier, sorted: fake verifiers pick one, so
    /// across user names they are distributed as the real ones are.
    shapes: Vec<(u32, usize)>,
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
    pub fn build(config: &Config) -> Result<Self, ConfigError> {
        let mut users = HashMap::with_capacity(config.users.len());
        for (i, u) in config.users.iter().enumerate() {
            users.insert(u.name.clone(), entry(i, u)?);
        }
        let mut shapes: Vec<(u32, usize)> = users
            .values()
            .filter_map(|e| e.scram.as_ref())
            .map(|v| (v.iterations(), v.salt_len()))
            .collect();
        shapes.sort_unstable();
        let methods = config
            .databases
            .iter()
            .map(|d| (d.name.clone(), d.auth))
            .collect();
        Ok(Self {
            users,
            methods,
            default_method: config.server.auth,
            shapes,
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

    /// The method every client asking for `database` must use, whoever it claims to be.
    pub fn method_for(&self, database: &str) -> AuthMethod {
        self.methods
            .get(database)
            .copied()
            .unwrap_or(self.default_method)
    }

    /// A stable fake verifier for an unknown user (or one whose password has no verifier): the
    /// exchange looks the same as for a real one, reveals nothing, and always fails. Its salt is
    /// derived like a real derived one; its iteration count and salt length are those of a
    /// configured user picked by the name.
    pub fn mock_verifier(&self, name: &str) -> ScramVerifier {
        let pick = derive(b"lakepool-mock-shape\0", name, 8);
        let index = u64::from_be_bytes(pick.try_into().unwrap_or_default());
        let (iterations, salt_len) = match self.shapes.len() {
            0 => (DEFAULT_ITERATIONS, DEFAULT_SALT_LEN),
            n => self.shapes[usize::try_from(index % n as u64).unwrap_or(0)],
        };
        // The same derivation as `derived_salt`, at the length picked.
        let salt = derive(b"lakepool-salt\0", name, salt_len);
        ScramVerifier::mock(name, process_key(), salt, iterations)
    }
}

/// What a login needs from one `[[users]]` entry.
fn entry(i: usize, u: &UserConfig) -> Result<UserEntry, ConfigError> {
    let key = format!("users[{i}]");
    let pw = u.password.expose_secret();
    let (scram, md5, cleartext_digest) = if pw.starts_with("SCRAM-SHA-256$") {
        let v = ScramVerifier::parse(pw).map_err(|e| ConfigError::Invalid {
            key: format!("{key}.password"),
            problem: format!("not a valid SCRAM-SHA-256 verifier: {e}"),
            line: None,
        })?;
        if v.iterations() > MAX_VERIFIER_ITERATIONS {
            return Err(ConfigError::Invalid {
                key: format!("{key}.password"),
                problem: format!(
                    "the verifier's iteration count {} is above lakepool's limit of \
                     {MAX_VERIFIER_ITERATIONS}",
                    v.iterations()
                ),
                line: None,
            });
        }
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
        let prepared = saslprep(pw.as_bytes());
        if prepared.is_empty() {
            return Err(ConfigError::Invalid {
                key: format!("{key}.password"),
                problem: "is empty once SASLprep maps its characters to nothing".to_owned(),
                line: None,
            });
        }
        let digest: [u8; 32] = Sha256::digest(&prepared).into();
        let salt = derived_salt(&u.name);
        (
            Some(ScramVerifier::from_password_and_salt(
                pw,
                &salt,
                DEFAULT_ITERATIONS,
            )),
            Some(md5_stored_hash(&u.name, pw)),
            Some(digest),
        )
    };
    Ok(UserEntry {
        name: u.name.clone(),
        scram,
        md5,
        admin: u.admin,
        cleartext_digest,
        learned_digest: OnceLock::new(),
        failed_digests: Mutex::new(VecDeque::new()),
    })
}

fn empty_password(key: &str, what: &str) -> ConfigError {
    ConfigError::Invalid {
        key: format!("{key}.password"),
        problem: format!("is the {what} of an empty password, which is never accepted"),
        line: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn config(users: &str, extra: &str) -> Config {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{users}\n\
             [[databases]]\nname = \"d\"\nhost = \"h\"\nuser = \"o\"\n{extra}"
        );
        load_str(&text, std::path::Path::new(".")).unwrap()
    }

    fn config_with_password(password: &str) -> Config {
        config(
            &format!("[[users]]\nname = \"u\"\npassword = \"{password}\""),
            "",
        )
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
        assert!(UserDb::build(&config_with_password(&md5)).is_ok());
        let verifier = ScramVerifier::from_password("pw", DEFAULT_ITERATIONS).to_string();
        assert!(UserDb::build(&config_with_password(&verifier)).is_ok());
    }

    #[test]
    fn the_method_is_the_databases_whatever_the_user() {
        let c = config(
            "auth = \"cleartext\"\n[[users]]\nname = \"u\"\npassword = \"pw\"",
            "auth = \"md5\"\n",
        );
        let db = UserDb::build(&c).unwrap();
        assert_eq!(db.method_for("d"), AuthMethod::Md5);
        // Unknown databases and the admin console: the server's method.
        assert_eq!(db.method_for("nope"), AuthMethod::Cleartext);
        assert_eq!(db.method_for("lakepool"), AuthMethod::Cleartext);
    }

    #[test]
    fn salts_are_stable_across_reloads_for_known_and_unknown_users() {
        let c = config_with_password("pw");
        let (a, b) = (UserDb::build(&c).unwrap(), UserDb::build(&c).unwrap());
        let salt = |db: &UserDb| {
            db.get("u")
                .and_then(|e| e.scram.clone())
                .unwrap()
                .to_string()
        };
        assert_eq!(
            salt(&a),
            salt(&b),
            "a plaintext user's derived verifier changed"
        );
        assert_eq!(
            a.mock_verifier("ghost").to_string(),
            b.mock_verifier("ghost").to_string()
        );
        assert_ne!(
            a.mock_verifier("ghost").to_string(),
            a.mock_verifier("other").to_string()
        );
        // A real derived salt and a fake one are made the same way.
        assert_eq!(derived_salt("u").len(), DEFAULT_SALT_LEN);
    }

    #[test]
    fn fake_verifiers_look_like_the_configured_ones() {
        let v8192 = |pw: &str| ScramVerifier::from_password_and_salt(pw, &[9; 20], 8192);
        let users = format!(
            "[[users]]\nname = \"a\"\npassword = \"{}\"\n[[users]]\nname = \"b\"\npassword = \"{}\"",
            v8192("pa"),
            v8192("pb")
        );
        let db = UserDb::build(&config(&users, "")).unwrap();
        for name in ["ghost", "x", "admin", "postgres"] {
            let mock = db.mock_verifier(name);
            assert_eq!((mock.iterations(), mock.salt_len()), (8192, 20), "{name}");
        }
        // Mixed counts: every fake one is one of the real shapes.
        let users = format!("{users}\n[[users]]\nname = \"c\"\npassword = \"plain\"");
        let db = UserDb::build(&config(&users, "")).unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..64 {
            let mock = db.mock_verifier(&format!("user{i}"));
            let shape = (mock.iterations(), mock.salt_len());
            assert!(
                [(8192, 20), (DEFAULT_ITERATIONS, DEFAULT_SALT_LEN)].contains(&shape),
                "{shape:?}"
            );
            seen.insert(shape);
        }
        assert_eq!(seen.len(), 2, "fake verifiers use every real shape");
    }

    #[test]
    fn cleartext_checks_saslprep_like_postgresql_but_md5_stays_raw() {
        let matches = |c: CleartextCheck| matches!(c, CleartextCheck::Matches(true));
        let db = UserDb::build(&config_with_password("IX-\u{2168}")).unwrap();
        let u = db.get("u").unwrap();
        assert!(matches(u.check_cleartext("IX-IX".as_bytes())));
        assert!(matches(u.check_cleartext("IX-\u{2168}".as_bytes())));
        assert!(!matches(u.check_cleartext(b"IX-X")));
        // md5 hashes the raw password (PostgreSQL does not normalize it).
        assert_eq!(
            u.md5.as_deref(),
            Some(md5_stored_hash("u", "IX-\u{2168}").as_str())
        );
        // The SCRAM verifier is the one a normalizing client's proof matches.
        let v = u.scram.clone().unwrap();
        assert!(v.verify_password("IX-IX"));
        // An md5-only user checks the raw bytes.
        let hash = md5_stored_hash("u", "IX-\u{2168}");
        let db = UserDb::build(&config_with_password(&hash)).unwrap();
        let u = db.get("u").unwrap();
        assert!(matches(u.check_cleartext("IX-\u{2168}".as_bytes())));
        assert!(!matches(u.check_cleartext("IX-IX".as_bytes())));
        // A password SASLprep maps to nothing is an empty one.
        let e = UserDb::build(&config_with_password("\u{00AD}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SASLprep"), "{e}");
    }

    #[test]
    fn verifier_iteration_counts_are_capped() {
        let at_cap = ScramVerifier::from_password_and_salt("pw", &[1; 16], MAX_VERIFIER_ITERATIONS);
        assert!(UserDb::build(&config_with_password(&at_cap.to_string())).is_ok());
        // Above the cap it is refused before any PBKDF2 runs on it.
        let text = at_cap.to_string().replace("$100000:", "$4000000000:");
        let e = UserDb::build(&config_with_password(&text))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("users[0].password") && e.contains("100000"),
            "{e}"
        );
    }

    #[test]
    fn cleartext_against_a_verifier_runs_pbkdf2_once_per_password() {
        let v = ScramVerifier::from_password("right", DEFAULT_ITERATIONS);
        let db = UserDb::build(&config_with_password(&v.to_string())).unwrap();
        let u = db.get("u").unwrap();
        let run = |pw: &[u8]| match u.check_cleartext(pw) {
            CleartextCheck::Pbkdf2(check) => {
                let ok = check.run(pw);
                u.remember(check.digest, ok);
                Some(ok)
            }
            CleartextCheck::Matches(_) => None,
        };
        // A wrong password costs one PBKDF2, then none when it is tried again.
        assert_eq!(run(b"wrong"), Some(false));
        assert!(matches!(
            u.check_cleartext(b"wrong"),
            CleartextCheck::Matches(false)
        ));
        // The right one costs one; after it, every attempt is a digest comparison.
        assert_eq!(run(b"right"), Some(true));
        assert!(matches!(
            u.check_cleartext(b"right"),
            CleartextCheck::Matches(true)
        ));
        for pw in [&b"other"[..], b"wrong2", b"r1ght"] {
            assert!(matches!(
                u.check_cleartext(pw),
                CleartextCheck::Matches(false)
            ));
        }
    }
}
