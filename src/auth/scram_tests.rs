//! Tests for SCRAM, server and client halves (included from scram.rs). Over 600 lines: the
//! RFC 5802/7677 vectors and the exchange's failure cases belong together.

use super::*;
use crate::auth::scram_client::CACHE_CAPACITY;

const RFC_SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// Computed with Python: hashlib.pbkdf2_hmac('sha256', b'pencil', b'lakepool-salt-16', 4096),
/// then StoredKey = sha256(hmac(sp, 'Client Key')), ServerKey = hmac(sp, 'Server Key').
const PY_VERIFIER: &str = "SCRAM-SHA-256$4096:bGFrZXBvb2wtc2FsdC0xNg==$\
                           r8wygmhaiIBUqG/zDljjceL7SINjgmux/wCafNZbQcQ=:\
                           r087x1zk9Jal2kjBS0T/iA7xXGt10L3hCwCP8LroCDw=";
/// Python, password 'pâsswörd' (UTF-8), salt bytes 0..16, 1 iteration.
const PY_VERIFIER_UTF8: &str = "SCRAM-SHA-256$1:AAECAwQFBgcICQoLDA0ODw==$\
                                1f3lbZwbo5lbTChCbW2P3kT/yMdJbw4uCdULlDhAiXc=:\
                                7fOGTDaxrYl67NnKpSr46RZbvNl/rmFT2tQ2Xo337xw=";
/// rolpassword from a PostgreSQL 15 server: `CREATE ROLE u1 PASSWORD 'pencil'`.
const PG_VERIFIER_PENCIL: &str = "SCRAM-SHA-256$4096:uCaZS0m205o2876+7LR2qA==$\
                                  FAmzKOKQB7rSFfvF74pv7BoetGzayyDFwvcaJr4GR3A=:\
                                  9fZUzZleF/4Jg7VM2+wAkpWHzvHqTdkFkeutHp/JblA=";
/// PostgreSQL 15, password 'pâsswörd'.
const PG_VERIFIER_UTF8: &str = "SCRAM-SHA-256$4096:pOF+05fE/7mts0lkOxGjuQ==$\
                                scHUpujU4L93rwBHF6xv63E3BgSBiKHphB2u88tjLfE=:\
                                N/c9SQifu6duh/r+4gX+00LKaaWTf+Ce0ERtGJnHIIo=";

fn b64(s: &str) -> Vec<u8> {
    B64.decode(s).unwrap()
}

/// Deterministic xorshift so fuzz failures are reproducible.
struct TestRng(u64);
impl TestRng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, max_len: usize, alphabet: &[u8]) -> Vec<u8> {
        let len = (self.next() as usize) % (max_len + 1);
        (0..len)
            .map(|_| alphabet[(self.next() as usize) % alphabet.len()])
            .collect()
    }
}

fn exchange(
    verifier: &ScramVerifier,
    server_hash: Option<Vec<u8>>,
    password: &str,
    client_hash: Option<Vec<u8>>,
    client_tls: bool,
) -> Result<(), ScramError> {
    let mut server = ScramServer::new(verifier.clone(), server_hash);
    let mut client = ScramClient::new(password, client_hash, client_tls);
    let server_first = server.client_first(client.mechanism(), &client.client_first())?;
    let params = client.server_first(&server_first)?;
    let salted = salted_password(client.password(), &params);
    let client_final = client.client_final(&salted)?;
    let server_final = server.client_final(&client_final)?;
    client.server_final(&server_final)
}

/// A server that has accepted a valid client-first, plus that client.
fn server_after_first(verifier: &ScramVerifier) -> (ScramServer, ScramClient) {
    let mut server = ScramServer::new(verifier.clone(), None);
    let mut client = ScramClient::new("pencil", None, false);
    let sf = server
        .client_first(SCRAM_SHA_256, &client.client_first())
        .unwrap();
    client.server_first(&sf).unwrap();
    (server, client)
}

fn cheap_verifier(password: &str) -> ScramVerifier {
    ScramVerifier::from_password_and_salt(password, b"0123456789abcdef", 16)
}

#[test]
fn rfc7677_client_side() {
    let mut client =
        ScramClient::with_nonce("pencil", None, false, "user", RFC_CLIENT_NONCE.into());
    assert_eq!(client.mechanism(), SCRAM_SHA_256);
    assert_eq!(client.client_first(), RFC_CLIENT_FIRST.as_bytes());
    let params = client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(
        params,
        SaltParams {
            salt: b64(RFC_SALT_B64),
            iterations: 4096
        }
    );
    let salted = salted_password("pencil", &params);
    let client_final = client.client_final(&salted).unwrap();
    assert_eq!(client_final, RFC_CLIENT_FINAL.as_bytes());
    let bad_sig = format!("v={}", B64.encode([7u8; 32]));
    assert!(matches!(
        client.server_final(bad_sig.as_bytes()),
        Err(ScramError::InvalidServerSignature)
    ));
    client.server_final(RFC_SERVER_FINAL.as_bytes()).unwrap();
}

#[test]
fn rfc7677_server_side() {
    let verifier = ScramVerifier::from_password_and_salt("pencil", &b64(RFC_SALT_B64), 4096);
    let mut server = ScramServer::new(verifier, None);
    assert_eq!(server.mechanisms(), &[SCRAM_SHA_256]);
    let sf = server
        .client_first_with_nonce(SCRAM_SHA_256, RFC_CLIENT_FIRST.as_bytes(), RFC_SERVER_NONCE)
        .unwrap();
    assert_eq!(sf, RFC_SERVER_FIRST.as_bytes());
    let fin = server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(fin, RFC_SERVER_FINAL.as_bytes());
    // The exchange is over: nothing more is accepted.
    assert!(matches!(
        server.client_final(RFC_CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfSequence)
    ));
}

#[test]
fn verifier_matches_python_vectors() {
    let v = ScramVerifier::from_password_and_salt("pencil", b"lakepool-salt-16", 4096);
    assert_eq!(v.to_string(), PY_VERIFIER);
    assert_eq!(v.iterations(), 4096);
    let parsed = ScramVerifier::parse(PY_VERIFIER).unwrap();
    assert_eq!(parsed.to_string(), PY_VERIFIER);
    assert!(parsed.verify_password("pencil"));
    assert!(!parsed.verify_password("pencil2"));
    assert!(!parsed.verify_password(""));

    let salt: Vec<u8> = (0u8..16).collect();
    let v = ScramVerifier::from_password_and_salt("pâsswörd", &salt, 1);
    assert_eq!(v.to_string(), PY_VERIFIER_UTF8);
}

#[test]
fn verifier_matches_postgresql() {
    for (pg, password) in [
        (PG_VERIFIER_PENCIL, "pencil"),
        (PG_VERIFIER_UTF8, "pâsswörd"),
    ] {
        let v = ScramVerifier::parse(pg).unwrap();
        assert!(v.verify_password(password));
        assert!(!v.verify_password("wrong"));
        let rebuilt = ScramVerifier::from_password_and_salt(password, &v.salt, v.iterations());
        assert_eq!(rebuilt.to_string(), pg);
        exchange(&v, None, password, None, false).unwrap();
    }
}

#[test]
fn verifier_parse_rejects_bad_strings() {
    let k = B64.encode([1u8; 32]);
    let k31 = B64.encode([1u8; 31]);
    let good = format!("SCRAM-SHA-256$4096:c2FsdA==${k}:{k}");
    ScramVerifier::parse(&good).unwrap();
    let bad = [
        String::new(),
        "md5abc".into(),
        format!("SCRAM-SHA-1$4096:c2FsdA==${k}:{k}"),
        format!("SCRAM-SHA-256$0:c2FsdA==${k}:{k}"),
        format!("SCRAM-SHA-256$-1:c2FsdA==${k}:{k}"),
        format!("SCRAM-SHA-256$+5:c2FsdA==${k}:{k}"),
        format!("SCRAM-SHA-256$ 5:c2FsdA==${k}:{k}"),
        format!("SCRAM-SHA-256$99999999999:c2FsdA==${k}:{k}"),
        format!("SCRAM-SHA-256$x:c2FsdA==${k}:{k}"),
        format!("SCRAM-SHA-256$4096:c2FsdA${k}:{k}"),
        format!("SCRAM-SHA-256$4096:${k}:{k}"),
        format!("SCRAM-SHA-256$4096:c2F*dA==${k}:{k}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${k31}:{k}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${k}:{k31}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${k}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${k}:{k}$"),
        format!("SCRAM-SHA-256$4096c2FsdA==${k}:{k}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${k}:{k}:"),
    ];
    for s in bad {
        let err = ScramVerifier::parse(&s).unwrap_err();
        assert!(matches!(err, ScramError::BadVerifier(_)), "{s}: {err}");
    }
}

#[test]
fn verifier_formatting_hides_keys() {
    let v = ScramVerifier::parse(PY_VERIFIER).unwrap();
    let dbg = format!("{v:?}");
    assert!(dbg.contains("4096") && dbg.contains("[REDACTED]"));
    assert!(!dbg.contains("r8wygm") && !dbg.contains("r087x1"));
    let random = ScramVerifier::from_password("pencil", 32);
    assert_eq!(random.salt.len(), DEFAULT_SALT_LEN);
    assert_ne!(
        random.to_string(),
        ScramVerifier::from_password("pencil", 32).to_string()
    );
    assert!(random.verify_password("pencil"));
    assert!(ScramVerifier::parse(&random.to_string()).is_ok());
}

#[test]
fn round_trip_plain_and_plus() {
    let v = cheap_verifier("secret pw");
    // Plain, no TLS: gs2 flag n.
    exchange(&v, None, "secret pw", None, false).unwrap();
    // TLS without a certificate hash on our side: PLUS is not offered, y is fine.
    exchange(&v, None, "secret pw", None, true).unwrap();
    // Client declines binding on a non-TLS connection while we could bind.
    exchange(&v, Some(vec![9; 32]), "secret pw", None, false).unwrap();
    // PLUS with matching certificate hashes (SHA-256 and SHA-384 sized).
    exchange(&v, Some(vec![1; 32]), "secret pw", Some(vec![1; 32]), true).unwrap();
    exchange(&v, Some(vec![2; 48]), "secret pw", Some(vec![2; 48]), true).unwrap();

    let server = ScramServer::new(v.clone(), Some(vec![1; 32]));
    assert_eq!(server.mechanisms(), &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]);
    let client = ScramClient::new("x", Some(vec![1; 32]), true);
    assert_eq!(client.mechanism(), SCRAM_SHA_256_PLUS);
    assert!(
        client
            .client_first()
            .starts_with(b"p=tls-server-end-point,,n=,r=")
    );
    assert!(
        ScramClient::new("x", None, true)
            .client_first()
            .starts_with(b"y,,n=,r=")
    );
    assert!(
        ScramClient::new("x", None, false)
            .client_first()
            .starts_with(b"n,,n=,r=")
    );
}

#[test]
fn wrong_password_is_invalid_proof() {
    let v = cheap_verifier("right");
    for (server_hash, client_hash, tls) in [
        (None, None, false),
        (Some(vec![3; 32]), Some(vec![3; 32]), true),
    ] {
        let err = exchange(&v, server_hash, "wrong", client_hash, tls).unwrap_err();
        assert!(err.is_invalid_password(), "{err}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("wrong") && !text.contains("right"));
    }
    assert!(!ScramError::NonceMismatch.is_invalid_password());
    assert!(!ScramError::ChannelBindingMismatch.is_invalid_password());
}

#[test]
fn channel_binding_failures() {
    let v = cheap_verifier("pw");
    let err = exchange(&v, Some(vec![1; 32]), "pw", Some(vec![2; 32]), true).unwrap_err();
    assert!(matches!(err, ScramError::ChannelBindingMismatch), "{err}");
    // Client says "y" (thinks we cannot bind) although we offered PLUS.
    let err = exchange(&v, Some(vec![1; 32]), "pw", None, true).unwrap_err();
    assert!(matches!(err, ScramError::ChannelBindingDowngrade), "{err}");
    // PLUS requested on a connection without binding support.
    let err = exchange(&v, None, "pw", Some(vec![1; 32]), true).unwrap_err();
    assert!(matches!(err, ScramError::UnsupportedMechanism), "{err}");

    let hash = Some(vec![1u8; 32]);
    let first = |mech: &str, msg: &str| {
        ScramServer::new(v.clone(), hash.clone()).client_first(mech, msg.as_bytes())
    };
    assert!(matches!(
        first(SCRAM_SHA_256_PLUS, "n,,n=,r=abc"),
        Err(ScramError::ChannelBindingRequired)
    ));
    assert!(matches!(
        first(SCRAM_SHA_256_PLUS, "y,,n=,r=abc"),
        Err(ScramError::ChannelBindingRequired)
    ));
    assert!(matches!(
        first(SCRAM_SHA_256, "p=tls-server-end-point,,n=,r=abc"),
        Err(ScramError::ChannelBindingUnsupported)
    ));
    assert!(matches!(
        first(SCRAM_SHA_256_PLUS, "p=tls-unique,,n=,r=abc"),
        Err(ScramError::ChannelBindingUnsupported)
    ));
    assert!(matches!(
        first("SCRAM-SHA-1", "n,,n=,r=abc"),
        Err(ScramError::UnsupportedMechanism)
    ));
    assert!(matches!(
        first(SCRAM_SHA_256, "n,a=bob,n=,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        first(SCRAM_SHA_256, "n,a=,n=,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        first(SCRAM_SHA_256, "n,,m=ext,n=,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        first(SCRAM_SHA_256, "n,,n=,r="),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        first(SCRAM_SHA_256, "n,,n=,r=a\x7fb"),
        Err(ScramError::Malformed(_))
    ));
    // The SCRAM user name is ignored and extensions after the nonce are allowed.
    assert!(first(SCRAM_SHA_256, "n,,n=someone,r=abc,x=ext").is_ok());
    assert!(first(SCRAM_SHA_256_PLUS, "p=tls-server-end-point,,n=,r=abc").is_ok());

    // Plain exchange whose final message claims a different gs2 flag.
    let (mut server, mut client) = server_after_first(&v);
    let cf = client
        .client_final(&hi("pencil", &v.salt, v.iterations))
        .unwrap();
    let forged = String::from_utf8(cf)
        .unwrap()
        .replacen("c=biws", "c=eSws", 1);
    assert!(matches!(
        server.client_final(forged.as_bytes()),
        Err(ScramError::ChannelBindingMismatch)
    ));
}

#[test]
fn mock_verifier_always_fails() {
    let secret = [42u8; 32];
    let mock = |name: &str, secret: &[u8; 32]| ScramVerifier::mock(name, secret, vec![7; 12], 8192);
    let ghost = mock("ghost", &secret);
    assert_eq!(ghost.to_string(), mock("ghost", &secret).to_string());
    assert_ne!(ghost.to_string(), mock("other", &secret).to_string());
    assert_ne!(ghost.to_string(), mock("ghost", &[1; 32]).to_string());
    // Salt and iteration count are the caller's choice.
    assert_eq!((ghost.iterations(), ghost.salt_len()), (8192, 12));
    let mock = ghost;
    assert!(ScramVerifier::parse(&mock.to_string()).is_ok());
    for pw in ["", "pencil", "ghost"] {
        assert!(
            exchange(&mock, None, pw, None, false)
                .unwrap_err()
                .is_invalid_password()
        );
        assert!(!mock.verify_password(pw));
    }
    // Even a proof made with the right password fails once a verifier is doomed.
    let mut doomed = cheap_verifier("pencil");
    exchange(&doomed, None, "pencil", None, false).unwrap();
    doomed.doomed = true;
    assert!(
        exchange(&doomed, None, "pencil", None, false)
            .unwrap_err()
            .is_invalid_password()
    );
    assert!(!doomed.verify_password("pencil"));
}

/// A server awaiting the final message, and the valid final message's parts.
fn pending_final(v: &ScramVerifier) -> (ScramServer, String, String, String) {
    let (server, mut client) = server_after_first(v);
    let cf = client
        .client_final(&hi("pencil", &v.salt, v.iterations))
        .unwrap();
    let cf = String::from_utf8(cf).unwrap();
    let (prefix, proof) = cf.rsplit_once(",p=").unwrap();
    let (cbind, nonce) = prefix.split_once(",r=").unwrap();
    (server, cbind.to_owned(), nonce.to_owned(), proof.to_owned())
}

#[test]
fn final_message_tampering() {
    let v = cheap_verifier("pencil");
    type Build = fn(&str, &str, &str) -> String;
    let cases: [(Build, &str); 8] = [
        (|c, n, p| format!("{c},r={n},p={p}"), "ok"),
        (|c, n, p| format!("{c},r={n}x,p={p}"), "nonce"),
        (|c, _, p| format!("{c},r=abc,p={p}"), "nonce"),
        (
            |c, n, _| format!("{c},r={n},p={}", B64.encode([0u8; 32])),
            "proof",
        ),
        (
            |c, n, _| format!("{c},r={n},p={}", B64.encode([0u8; 31])),
            "malformed",
        ),
        (|c, n, p| format!("{c},r={n},p={p},x=1"), "malformed"),
        (|c, n, _| format!("{c},r={n}"), "malformed"),
        (|c, n, p| format!("r={n},{c},p={p}"), "malformed"),
    ];
    for (build, want) in cases {
        let (mut server, c, n, p) = pending_final(&v);
        let msg = build(&c, &n, &p);
        let res = server.client_final(msg.as_bytes());
        let ok = match (want, &res) {
            ("ok", Ok(_)) => true,
            ("nonce", Err(ScramError::NonceMismatch)) => true,
            ("proof", Err(e)) => e.is_invalid_password(),
            ("malformed", Err(ScramError::Malformed(_))) => true,
            _ => false,
        };
        assert!(ok, "{msg}: {res:?}");
    }
    // Extensions between the nonce and the proof are skipped, as PostgreSQL does,
    // but they are part of the signed message, so adding one breaks the proof.
    let (mut server, c, n, p) = pending_final(&v);
    let with_ext = format!("{c},r={n},x=1,p={p}");
    assert!(
        server
            .client_final(with_ext.as_bytes())
            .unwrap_err()
            .is_invalid_password()
    );
}

#[test]
fn out_of_sequence_calls() {
    let v = cheap_verifier("pencil");
    let mut server = ScramServer::new(v.clone(), None);
    assert!(matches!(
        server.client_final(b"c=biws,r=a,p=b"),
        Err(ScramError::OutOfSequence)
    ));
    let mut server = ScramServer::new(v, None);
    server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
    assert!(matches!(
        server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc"),
        Err(ScramError::OutOfSequence)
    ));

    let mut client = ScramClient::new("pencil", None, false);
    assert!(matches!(
        client.client_final(&[0; 32]),
        Err(ScramError::OutOfSequence)
    ));
    assert!(matches!(
        client.server_final(b"v=x"),
        Err(ScramError::OutOfSequence)
    ));
}

#[test]
fn client_rejects_bad_server_first() {
    let nonce = "clientnonce";
    let mk = || ScramClient::with_nonce("pw", None, false, "", nonce.into());
    let ok = |msg: &str| mk().server_first(msg.as_bytes());
    assert_eq!(
        ok("r=clientnonceS,s=c2FsdA==,i=10000000").unwrap(),
        SaltParams {
            salt: b"salt".to_vec(),
            iterations: 10_000_000
        }
    );
    let bad = [
        ("r=clientnonceS,s=c2FsdA==,i=0", "malformed"),
        ("r=clientnonceS,s=c2FsdA==,i=10000001", "malformed"),
        ("r=clientnonceS,s=c2FsdA==,i=-1", "malformed"),
        ("r=clientnonceS,s=c2FsdA==,i=", "malformed"),
        ("r=clientnonceS,s=c2FsdA=,i=4096", "malformed"),
        ("r=clientnonceS,s=c2FsdA==,i=4096,x=1", "malformed"),
        ("r=clientnonceS,i=4096,s=c2FsdA==", "malformed"),
        ("m=ext,r=clientnonceS,s=c2FsdA==,i=4096", "malformed"),
        ("r=clientnonce,s=c2FsdA==,i=4096", "nonce"),
        ("r=clientnoncX,s=c2FsdA==,i=4096", "nonce"),
        ("r=SclientnonceS,s=c2FsdA==,i=4096", "nonce"),
        ("r=client,s=c2FsdA==,i=4096", "nonce"),
        ("e=other-error", "malformed"),
    ];
    for (msg, want) in bad {
        let err = ok(msg).unwrap_err();
        let matched = match want {
            "nonce" => matches!(err, ScramError::NonceMismatch),
            _ => matches!(err, ScramError::Malformed(_)),
        };
        assert!(matched, "{msg}: {err}");
    }
}

#[test]
fn client_reports_server_error() {
    let mut client =
        ScramClient::with_nonce("pencil", None, false, "user", RFC_CLIENT_NONCE.into());
    let params = client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    client
        .client_final(&salted_password("pencil", &params))
        .unwrap();
    match client.server_final(b"e=invalid-proof") {
        Err(ScramError::Server(reason)) => assert_eq!(reason, "invalid-proof"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        client.server_final(format!("{RFC_SERVER_FINAL},x=1").as_bytes()),
        Err(ScramError::Malformed(_))
    ));
    client.server_final(RFC_SERVER_FINAL.as_bytes()).unwrap();
}

#[test]
fn fuzz_never_panics() {
    let v = cheap_verifier("pencil");
    let salted = hi("pencil", &v.salt, v.iterations);
    let mut rng = TestRng(0x9e37_79b9_7f4a_7c15);
    let all: Vec<u8> = (0..=255).collect();
    let scram_chars = b"nyparcsiemvx=,,,biws-_+/0123456789ABCabc";

    // Every prefix of valid messages, and random/mutated messages, at each step.
    let mut server = ScramServer::new(v.clone(), Some(vec![5; 32]));
    let mut client = ScramClient::new("pencil", Some(vec![5; 32]), true);
    let cfirst = client.client_first();
    let sfirst = server.client_first(SCRAM_SHA_256_PLUS, &cfirst).unwrap();
    client.server_first(&sfirst).unwrap();
    let cfinal = client.client_final(&salted).unwrap();
    let sfinal = server.client_final(&cfinal).unwrap();
    client.server_final(&sfinal).unwrap();

    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for msg in [&cfirst, &sfirst, &cfinal, &sfinal] {
        inputs.extend((0..msg.len()).map(|n| msg[..n].to_vec()));
        for _ in 0..300 {
            let mut m = msg.clone();
            let i = (rng.next() as usize) % m.len();
            m[i] = all[(rng.next() as usize) % 256];
            inputs.push(m);
        }
    }
    for _ in 0..1500 {
        inputs.push(rng.bytes(64, &all));
        inputs.push(rng.bytes(96, scram_chars));
    }

    for input in &inputs {
        for (mech, hash) in [
            (SCRAM_SHA_256, None),
            (SCRAM_SHA_256_PLUS, Some(vec![5; 32])),
        ] {
            let _ = ScramServer::new(v.clone(), hash.clone()).client_first(mech, input);
            let mut s = ScramServer::new(v.clone(), hash);
            if s.client_first(mech, &cfirst).is_ok() {
                let _ = s.client_final(input);
            }
        }
        let mut c = ScramClient::new("pencil", Some(vec![5; 32]), true);
        let _ = c.server_first(input);
        let _ = c.client_final(&salted);
        let _ = c.server_final(input);
        let _ = ScramVerifier::parse(&String::from_utf8_lossy(input));
    }

    // Truncated final messages can never succeed.
    for n in 0..cfinal.len() {
        let mut s = ScramServer::new(v.clone(), Some(vec![5; 32]));
        let mut c = ScramClient::new("pencil", Some(vec![5; 32]), true);
        let sf = s
            .client_first(SCRAM_SHA_256_PLUS, &c.client_first())
            .unwrap();
        c.server_first(&sf).unwrap();
        let cf = c.client_final(&salted).unwrap();
        assert!(s.client_final(&cf[..n.min(cf.len() - 1)]).is_err());
        assert!(c.server_final(&sfinal[..n.min(sfinal.len() - 1)]).is_err());
    }
}

#[test]
fn salted_password_cache() {
    let cache = SaltedPasswordCache::new();
    let params = SaltParams {
        salt: b64(RFC_SALT_B64),
        iterations: 4096,
    };
    let get = |pw: &str, p: &SaltParams| cache.get(pw, p).map(|s| *s);
    assert_eq!(get("pencil", &params), None);
    let salted = salted_password("pencil", &params);
    cache.insert("pencil", &params, &salted);
    assert_eq!(get("pencil", &params), Some(*salted));
    assert_eq!(get("pencil2", &params), None);
    let other = SaltParams {
        iterations: 4097,
        ..params.clone()
    };
    assert_eq!(get("pencil", &other), None);
    cache.insert("pencil", &params, &[1; 32]);
    assert_eq!(get("pencil", &params), Some([1; 32]));

    for i in 0..CACHE_CAPACITY {
        let p = SaltParams {
            salt: vec![i as u8],
            iterations: 1,
        };
        cache.insert("pw", &p, &[i as u8; 32]);
    }
    assert_eq!(get("pencil", &params), None, "oldest entry evicted");
    assert_eq!(cache.lock().len(), CACHE_CAPACITY);
    let last = SaltParams {
        salt: vec![(CACHE_CAPACITY - 1) as u8],
        iterations: 1,
    };
    assert_eq!(get("pw", &last), Some([(CACHE_CAPACITY - 1) as u8; 32]));
}
