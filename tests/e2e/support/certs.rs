//! Throwaway X.509 material for the end-to-end tests.
//!
//! One CA signs both PostgreSQL's server certificate and lakepool's
//! client-facing certificate, so a single `ca.crt` lets every client verify
//! every hop. Tests that need a *foreign* CA (e.g. "verify-full must reject an
//! unknown issuer") create a second [`TestCa`].

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A certificate authority whose key stays in memory so it can keep issuing.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// Paths of a PEM certificate/key pair written by [`TestCa::issue_server`].
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// Creates a self-signed CA. `name` ends up in the subject CN, which makes
    /// verification errors in logs easier to attribute.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate in PEM form.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes the CA certificate to `path` (PEM).
    pub fn write_ca(&self, path: &Path) {
        fs::write(path, &self.cert_pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Issues a server certificate for `sans` (IP literals become IP SANs,
    /// everything else DNS SANs) and writes `<dir>/<stem>.crt` and
    /// `<dir>/<stem>.key`. The key file is mode 0600 because PostgreSQL
    /// refuses group/world-readable keys.
    pub fn issue_server(&self, dir: &Path, stem: &str, sans: &[&str]) -> CertFiles {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans.clone()).expect("valid SANs");
        params
            .distinguished_name
            .push(DnType::CommonName, sans.first().map_or("server", |s| s));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("generate server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign server cert");

        let files = CertFiles {
            cert_file: dir.join(format!("{stem}.crt")),
            key_file: dir.join(format!("{stem}.key")),
        };
        fs::write(&files.cert_file, cert.pem()).expect("write server cert");
        write_private(&files.key_file, key.serialize_pem().as_bytes());
        files
    }
}

/// Writes a file that only its owner may read.
pub fn write_private(path: &Path, contents: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// A rustls client configuration that trusts exactly the CA in `ca_file`.
///
/// The ring provider is named explicitly so the tests do not depend on which
/// crypto features other crates in the graph happen to enable.
pub fn client_tls_config(ca_file: &Path) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file)
        .unwrap_or_else(|e| panic!("read {}: {e}", ca_file.display()))
    {
        roots
            .add(cert.expect("parse CA PEM"))
            .expect("add CA to root store");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
