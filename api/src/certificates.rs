//! Checking a TLS certificate chain and its key before they are kept: by `certs:add`
//! (`routes/certs.rs`) and for the certificates the ACME server issues (`acm.rs`). A PEM chain
//! (leaf first) whose leaf parses and names DNS hosts in its subject alternative names, is not
//! expired, and a PEM private key (PKCS#8, PKCS#1 or SEC1) that matches the leaf's public key.

use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What a valid certificate says about itself.
#[derive(Debug)]
pub(crate) struct Checked {
    pub hostnames: Vec<String>,
    /// notAfter of the leaf, RFC 3339 (`2027-01-31T12:00:00Z`).
    pub expires_at: String,
}

/// Checks a PEM chain and key; the error is a one-line message for the client.
pub(crate) fn check(chain_pem: &str, key_pem: &str) -> Result<Checked, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate_chain is not valid PEM: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err("certificate_chain holds no `-----BEGIN CERTIFICATE-----` block".into());
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
        "private_key is not a PEM private key: expected an unencrypted PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key"
            .to_string()
    })?;
    let end_entity = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("the first certificate of certificate_chain cannot be parsed ({e:?})"))?;
    let mut hostnames: Vec<String> = end_entity.valid_dns_names().map(|n| n.to_ascii_lowercase()).collect();
    hostnames.dedup();
    if hostnames.is_empty() {
        return Err("the certificate names no DNS host in its subject alternative names (SAN)".into());
    }
    let expires_at = not_after(leaf.as_ref())
        .ok_or_else(|| "the first certificate of certificate_chain has no readable expiry (notAfter)".to_string())?;
    let now = crate::now();
    if expires_at.as_str() < &now[..19] {
        return Err(format!("the certificate expired at {expires_at}; renew it first"));
    }
    let provider = rustls::crypto::ring::default_provider();
    match CertifiedKey::from_der(chain.clone(), key, &provider) {
        Ok(_) => {}
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err("private_key does not match the certificate's public key".into());
        }
        Err(e) => return Err(format!("private_key cannot be used: {e}")),
    }
    Ok(Checked { hostnames, expires_at: format!("{expires_at}Z") })
}

/// The leaf's `notAfter` as `YYYY-MM-DDTHH:MM:SS` (UTC), read from its DER: Certificate ::=
/// SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
/// validity SEQUENCE { notBefore, notAfter }, … }, … }. webpki checked the DER already.
fn not_after(der: &[u8]) -> Option<String> {
    let (_, certificate, _) = der_next(der)?;
    let (_, mut tbs, _) = der_next(certificate)?;
    let (tag, _, rest) = der_next(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        tbs = der_next(tbs)?.2;
    }
    let (_, validity, _) = der_next(tbs)?;
    let (_, _, rest) = der_next(validity)?;
    let (tag, time, _) = der_next(rest)?;
    let time = std::str::from_utf8(time).ok()?;
    if !time.ends_with('Z') || !time[..time.len() - 1].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = match (tag, time.len()) {
        // UTCTime YYMMDDHHMMSSZ: years 50–99 are 19xx.
        (0x17, 13) => format!("{}{}", if &time[..2] >= "50" { "19" } else { "20" }, &time[..12]),
        // GeneralizedTime YYYYMMDDHHMMSSZ
        (0x18, 15) => time[..14].to_string(),
        _ => return None,
    };
    Some(format!("{}-{}-{}T{}:{}:{}", &full[..4], &full[4..6], &full[6..8], &full[8..10], &full[10..12], &full[12..14]))
}

/// One DER element: (tag, contents, what follows).
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER of `SEQUENCE { SEQUENCE { [0] { INTEGER 2 }?, INTEGER 1, SEQ, SEQ, SEQ { t1, t2 } } }`.
    fn certificate_with_validity(version: bool, not_before: &[u8], not_after: &[u8]) -> Vec<u8> {
        fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            if content.len() < 0x80 {
                out.push(content.len() as u8);
            } else {
                out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
            }
            out.extend_from_slice(content);
            out
        }
        let mut tbs = Vec::new();
        if version {
            tbs.extend(tlv(0xa0, &tlv(0x02, &[2])));
        }
        tbs.extend(tlv(0x02, &[1]));
        tbs.extend(tlv(0x30, &[]));
        tbs.extend(tlv(0x30, &[0x05; 200])); // a long-form length
        tbs.extend(tlv(0x30, &[not_before, not_after].concat()));
        tlv(0x30, &tlv(0x30, &tbs))
    }

    #[test]
    fn expiry_from_der() {
        let utc = |t: &str| [&[0x17, t.len() as u8][..], t.as_bytes()].concat();
        let generalized = |t: &str| [&[0x18, t.len() as u8][..], t.as_bytes()].concat();
        let der = certificate_with_validity(true, &utc("250101000000Z"), &utc("270131123456Z"));
        assert_eq!(not_after(&der).as_deref(), Some("2027-01-31T12:34:56"));
        let der = certificate_with_validity(false, &utc("250101000000Z"), &utc("991231235959Z"));
        assert_eq!(not_after(&der).as_deref(), Some("1999-12-31T23:59:59"));
        let der = certificate_with_validity(true, &utc("250101000000Z"), &generalized("20510101000000Z"));
        assert_eq!(not_after(&der).as_deref(), Some("2051-01-01T00:00:00"));
        let der = certificate_with_validity(true, &utc("250101000000Z"), &utc("2701311234Z"));
        assert_eq!(not_after(&der), None);
        assert_eq!(not_after(&der[..der.len() - 3]), None);
        assert_eq!(not_after(&[]), None);
    }

    #[test]
    fn bad_pem_is_one_line() {
        for (chain, key) in [("", ""), ("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n", "")] {
            let error = check(chain, key).unwrap_err();
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
