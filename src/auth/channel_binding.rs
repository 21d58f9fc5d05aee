//! `tls-server-end-point` channel binding data (RFC 5929 section 4.1).
//!
//! The binding value is a hash of the server's DER certificate, using the
//! hash of the certificate's signature algorithm, except that MD5 and SHA-1
//! (and anything we do not recognise) are replaced by SHA-256. Only enough
//! DER is parsed to find the signature algorithm.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The certificate is not well-formed enough DER to find its signature algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed X.509 certificate: {0}")]
pub(crate) struct CertificateParseError(&'static str);

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;
const TAG_BIT_STRING: u8 = 0x03;
/// `[0]` EXPLICIT, constructed: hashAlgorithm in RSASSA-PSS-params.
const TAG_CONTEXT_0: u8 = 0xa0;

// DER contents of the signature algorithm OIDs that select a longer hash.
/// sha384WithRSAEncryption 1.2.840.113549.1.1.12
const OID_SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
/// sha512WithRSAEncryption 1.2.840.113549.1.1.13
const OID_SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
/// ecdsa-with-SHA384 1.2.840.10045.4.3.3
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
/// ecdsa-with-SHA512 1.2.840.10045.4.3.4
const OID_ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
/// id-RSASSA-PSS 1.2.840.113549.1.1.10: the hash is in the parameters.
const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
/// id-sha384 2.16.840.1.101.3.4.2.2
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
/// id-sha512 2.16.840.1.101.3.4.2.3
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// Minimal DER reader: tag/length/value with definite, minimal lengths.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Der { rest: buf }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one element with tag `tag` and returns its contents.
    fn read(&mut self, tag: u8) -> Result<&'a [u8], CertificateParseError> {
        let err = CertificateParseError;
        let (&found, rest) = self.rest.split_first().ok_or(err("truncated"))?;
        if found != tag {
            return Err(err("unexpected tag"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(err("truncated length"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            // Long form: 1..=4 length bytes, minimal (no leading zero, >= 128).
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(err("unsupported length encoding"));
            }
            let (bytes, tail) = rest.split_at_checked(n).ok_or(err("truncated length"))?;
            if bytes.first() == Some(&0) {
                return Err(err("non-minimal length"));
            }
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return Err(err("non-minimal length"));
            }
            rest = tail;
            len
        };
        let (contents, tail) = rest
            .split_at_checked(len)
            .ok_or(err("length exceeds input"))?;
        self.rest = tail;
        Ok(contents)
    }
}

/// The hash named by RSASSA-PSS-params (default SHA-1, hence SHA-256).
fn pss_hash(params: &[u8]) -> Result<Hash, CertificateParseError> {
    if params.is_empty() {
        return Ok(Hash::Sha256);
    }
    let mut outer = Der::new(params);
    let mut seq = Der::new(outer.read(TAG_SEQUENCE)?);
    if seq.peek_tag() != Some(TAG_CONTEXT_0) {
        return Ok(Hash::Sha256);
    }
    let mut explicit = Der::new(seq.read(TAG_CONTEXT_0)?);
    let mut alg = Der::new(explicit.read(TAG_SEQUENCE)?);
    Ok(match alg.read(TAG_OID)? {
        OID_SHA384 => Hash::Sha384,
        OID_SHA512 => Hash::Sha512,
        _ => Hash::Sha256,
    })
}

/// The hash to use for this certificate's signature algorithm.
fn binding_hash(cert_der: &[u8]) -> Result<Hash, CertificateParseError> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let mut outer = Der::new(cert_der);
    let mut cert = Der::new(outer.read(TAG_SEQUENCE)?);
    if !outer.rest.is_empty() {
        return Err(CertificateParseError("trailing data after certificate"));
    }
    cert.read(TAG_SEQUENCE)?;
    let mut alg = Der::new(cert.read(TAG_SEQUENCE)?);
    cert.read(TAG_BIT_STRING)?;
    if !cert.rest.is_empty() {
        return Err(CertificateParseError("trailing data in certificate"));
    }
    // AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }
    Ok(match alg.read(TAG_OID)? {
        OID_SHA384_RSA | OID_ECDSA_SHA384 => Hash::Sha384,
        OID_SHA512_RSA | OID_ECDSA_SHA512 => Hash::Sha512,
        OID_RSASSA_PSS => pss_hash(alg.rest)?,
        // MD5, SHA-1, SHA-256, Ed25519 and unknown algorithms.
        _ => Hash::Sha256,
    })
}

/// The `tls-server-end-point` binding data for a DER certificate.
pub(crate) fn tls_server_end_point(cert_der: &[u8]) -> Result<Vec<u8>, CertificateParseError> {
    Ok(match binding_hash(cert_der)? {
        Hash::Sha256 => Sha256::digest(cert_der).to_vec(),
        Hash::Sha384 => Sha384::digest(cert_der).to_vec(),
        Hash::Sha512 => Sha512::digest(cert_der).to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm};

    fn cert(alg: &'static SignatureAlgorithm) -> Vec<u8> {
        let key = KeyPair::generate_for(alg).unwrap();
        let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    /// Wraps `contents` in a DER element (lengths < 64 KiB).
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match contents.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(contents);
        out
    }

    /// A structurally valid certificate with the given AlgorithmIdentifier contents.
    fn fake_cert(alg_id: &[u8]) -> Vec<u8> {
        let tbs = tlv(TAG_SEQUENCE, &tlv(0x02, &[1]));
        let body = [
            tbs,
            tlv(TAG_SEQUENCE, alg_id),
            tlv(TAG_BIT_STRING, &[0, 1, 2, 3]),
        ]
        .concat();
        tlv(TAG_SEQUENCE, &body)
    }

    #[test]
    fn rcgen_certificates() {
        let p256 = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            tls_server_end_point(&p256).unwrap(),
            Sha256::digest(&p256).to_vec()
        );

        let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
        let hash = tls_server_end_point(&p384).unwrap();
        assert_eq!(hash.len(), 48);
        assert_eq!(hash, Sha384::digest(&p384).to_vec());

        let ed = cert(&rcgen::PKCS_ED25519);
        assert_eq!(
            tls_server_end_point(&ed).unwrap(),
            Sha256::digest(&ed).to_vec()
        );
    }

    #[test]
    fn algorithm_mapping() {
        let null = tlv(0x05, &[]);
        let sha1_rsa: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
        let md5_rsa: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04];
        let sha256_rsa: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
        let pss = |hash_oid: &[u8]| {
            let hash_alg = tlv(
                TAG_SEQUENCE,
                &[tlv(TAG_OID, hash_oid), null.clone()].concat(),
            );
            let params = tlv(TAG_SEQUENCE, &tlv(TAG_CONTEXT_0, &hash_alg));
            [tlv(TAG_OID, OID_RSASSA_PSS), params].concat()
        };
        let sha256_oid: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
        let cases: Vec<(Vec<u8>, Hash)> = vec![
            ([tlv(TAG_OID, md5_rsa), null.clone()].concat(), Hash::Sha256),
            (
                [tlv(TAG_OID, sha1_rsa), null.clone()].concat(),
                Hash::Sha256,
            ),
            (
                [tlv(TAG_OID, sha256_rsa), null.clone()].concat(),
                Hash::Sha256,
            ),
            (
                [tlv(TAG_OID, OID_SHA384_RSA), null.clone()].concat(),
                Hash::Sha384,
            ),
            (
                [tlv(TAG_OID, OID_SHA512_RSA), null.clone()].concat(),
                Hash::Sha512,
            ),
            (tlv(TAG_OID, OID_ECDSA_SHA384), Hash::Sha384),
            (tlv(TAG_OID, OID_ECDSA_SHA512), Hash::Sha512),
            (tlv(TAG_OID, &[0x2b, 0x65, 0x70]), Hash::Sha256), // Ed25519
            (tlv(TAG_OID, OID_RSASSA_PSS), Hash::Sha256),
            (pss(sha256_oid), Hash::Sha256),
            (pss(OID_SHA384), Hash::Sha384),
            (pss(OID_SHA512), Hash::Sha512),
            // PSS params without hashAlgorithm: SHA-1 default, hence SHA-256.
            (
                [tlv(TAG_OID, OID_RSASSA_PSS), tlv(TAG_SEQUENCE, &[])].concat(),
                Hash::Sha256,
            ),
        ];
        for (alg_id, want) in cases {
            let der = fake_cert(&alg_id);
            assert_eq!(binding_hash(&der), Ok(want), "{alg_id:02x?}");
            let len = tls_server_end_point(&der).unwrap().len();
            assert_eq!(len, [32, 48, 64][want as usize]);
        }
    }

    #[test]
    fn long_form_lengths() {
        // A tbsCertificate over 127 and over 255 bytes exercises 0x81 and 0x82 lengths.
        for n in [200usize, 300, 60_000] {
            let tbs = tlv(TAG_SEQUENCE, &vec![0u8; n]);
            let body = [
                tbs,
                tlv(TAG_SEQUENCE, &tlv(TAG_OID, OID_ECDSA_SHA384)),
                tlv(TAG_BIT_STRING, &[0]),
            ]
            .concat();
            assert_eq!(binding_hash(&tlv(TAG_SEQUENCE, &body)), Ok(Hash::Sha384));
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        let good = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        let mut bad: Vec<Vec<u8>> = vec![
            vec![],
            b"not a certificate".to_vec(),
            vec![0x30],
            vec![0x30, 0x80, 0x00, 0x00],          // indefinite length
            vec![0x30, 0x85, 1, 0, 0, 0, 0],       // 5 length bytes
            vec![0x30, 0x81, 0x05, 1, 2, 3, 4, 5], // non-minimal long form
            vec![0x30, 0x82, 0x00, 0x80],          // leading zero length byte
            vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff], // length beyond input
            [good.clone(), vec![0]].concat(),      // trailing data
            fake_cert(&[]),                        // no algorithm OID
            fake_cert(&tlv(0x05, &[])),            // NULL instead of OID
            // PSS with garbage parameters.
            fake_cert(&[tlv(TAG_OID, OID_RSASSA_PSS), vec![0x30, 0x05, 0xa0]].concat()),
            fake_cert(
                &[
                    tlv(TAG_OID, OID_RSASSA_PSS),
                    tlv(TAG_SEQUENCE, &tlv(TAG_CONTEXT_0, &[])),
                ]
                .concat(),
            ),
        ];
        // Every truncation of a real certificate.
        bad.extend((0..good.len()).map(|n| good[..n].to_vec()));
        for der in &bad {
            assert!(tls_server_end_point(der).is_err(), "{der:02x?}");
        }
        // Random byte flips never panic (they may still parse).
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut der = good.clone();
            let i = (x as usize) % der.len();
            der[i] = (x >> 32) as u8;
            let _ = tls_server_end_point(&der);
            let _ = tls_server_end_point(&der[..(x >> 40) as usize % der.len()]);
        }
        let err = tls_server_end_point(b"junk").unwrap_err();
        assert!(err.to_string().starts_with("malformed X.509 certificate"));
    }
}
