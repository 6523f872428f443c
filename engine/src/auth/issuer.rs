//! An external token issuer (an OAuth or OIDC server, a company's SSO) whose RS256 tokens
//! the engine accepts beside its own HS256 ones.
//!
//! Its public keys come from a JWKS file (RSA keys with `n` and `e`, chosen by the token's
//! `kid`) or from one SPKI PEM public key. Keys are parsed once, at start, into the modulus
//! and exponent that `ring` verifies with; they are only ever used for RS256 signatures,
//! never as an HMAC secret. A JWKS file is read again when a token names a key it does
//! not hold (at most every [`RELOAD_INTERVAL`]), so an issuer's key rotation needs no restart.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;

use super::AuthError;
use crate::config::{IssuerKeys, IssuerSettings};

/// A JWKS or PEM file larger than this is refused unread.
const MAX_KEY_FILE: u64 = 1024 * 1024;
/// How often an unknown `kid` may cause the JWKS file to be read again.
pub(crate) const RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// The sizes `RSA_PKCS1_2048_8192_SHA256` verifies with.
const MIN_MODULUS_BITS: usize = 2048;
const MAX_MODULUS_BITS: usize = 8192;
/// DER of the rsaEncryption object identifier, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// One RSA public key, as big-endian modulus and exponent without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RsaKey {
    pub(crate) kid: Option<String>,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaKey {
    fn new(kid: Option<String>, n: &[u8], e: &[u8]) -> Result<RsaKey, String> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        let bits = bit_len(n);
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits) {
            return Err(format!(
                "the RSA modulus has {bits} bits; RS256 keys must have 2048 to 8192"
            ));
        }
        if e.is_empty() || e.len() > 4 || e[e.len() - 1] & 1 == 0 || e == [1] {
            return Err("the RSA public exponent is not a usable odd number".to_owned());
        }
        Ok(RsaKey {
            kid,
            n: n.to_vec(),
            e: e.to_vec(),
        })
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            message,
            signature,
        )
        .is_ok()
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn bit_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(first) => bytes.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// The issuer the engine trusts for RS256 tokens.
pub(crate) struct Issuer {
    /// Compared with the token's `iss`.
    pub(crate) name: String,
    /// When set, the token's `aud` must name it.
    pub(crate) audience: Option<String>,
    keys: RwLock<Vec<RsaKey>>,
    /// The JWKS file the keys came from, read again on an unknown `kid`.
    jwks_file: Option<PathBuf>,
    last_read: RwLock<Instant>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("name", &self.name)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Reads the issuer's keys as the settings say. The error names the file and what is
    /// wrong with it.
    pub(crate) fn load(settings: &IssuerSettings) -> Result<Issuer, String> {
        let (keys, jwks_file) = match &settings.keys {
            IssuerKeys::JwksFile(path) => (read_jwks(path)?, Some(path.clone())),
            IssuerKeys::PublicKeyPem(pem) => {
                let text = if pem.trim_start().starts_with("-----BEGIN") {
                    pem.clone()
                } else {
                    read_text(Path::new(pem))?
                };
                let key = parse_pem(&text)?;
                (vec![key], None)
            }
        };
        Ok(Issuer::new(
            settings.issuer.clone(),
            settings.audience.clone(),
            keys,
            jwks_file,
        ))
    }

    pub(crate) fn new(
        name: String,
        audience: Option<String>,
        keys: Vec<RsaKey>,
        jwks_file: Option<PathBuf>,
    ) -> Issuer {
        Issuer {
            name,
            audience,
            keys: RwLock::new(keys),
            jwks_file,
            last_read: RwLock::new(Instant::now()),
        }
    }

    /// Checks an RS256 signature over `message` with the key `kid` names, or, when the
    /// token names none, with any of the issuer's keys.
    pub(crate) fn verify(
        &self,
        kid: Option<&str>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), AuthError> {
        match self.check(kid, message, signature) {
            Err(AuthError::UnknownKey(_)) if self.reload() => self.check(kid, message, signature),
            outcome => outcome,
        }
    }

    fn check(&self, kid: Option<&str>, message: &[u8], signature: &[u8]) -> Result<(), AuthError> {
        let keys = match self.keys.read() {
            Ok(keys) => keys,
            Err(poisoned) => poisoned.into_inner(),
        };
        let verified = match kid {
            Some(kid) => {
                let key = keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .or_else(|| {
                        // One key without a `kid` (a PEM key) serves every token.
                        (keys.len() == 1 && keys[0].kid.is_none()).then(|| &keys[0])
                    })
                    .ok_or_else(|| AuthError::UnknownKey(kid.chars().take(64).collect()))?;
                key.verify(message, signature)
            }
            None => keys.iter().any(|k| k.verify(message, signature)),
        };
        if verified {
            Ok(())
        } else {
            Err(AuthError::Signature)
        }
    }

    /// Reads the JWKS file again if it is time to; true when new keys were installed.
    fn reload(&self) -> bool {
        let Some(path) = &self.jwks_file else {
            return false;
        };
        {
            let mut last = match self.last_read.write() {
                Ok(last) => last,
                Err(poisoned) => poisoned.into_inner(),
            };
            if last.elapsed() < RELOAD_INTERVAL {
                return false;
            }
            *last = Instant::now();
        }
        match read_jwks(path) {
            Ok(keys) => {
                tracing::info!(file = %path.display(), keys = keys.len(), "re-read the issuer's keys");
                let mut current = match self.keys.write() {
                    Ok(current) => current,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *current = keys;
                true
            }
            Err(e) => {
                tracing::warn!("keeping the issuer's previous keys: {e}");
                false
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn allow_reload_now(&self) {
        if let Ok(mut last) = self.last_read.write() {
            *last = Instant::now() - RELOAD_INTERVAL;
        }
    }
}

fn read_text(path: &Path) -> Result<String, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MAX_KEY_FILE {
        return Err(format!(
            "{} has {size} bytes; a key file is at most 1 MiB",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_jwks(path: &Path) -> Result<Vec<RsaKey>, String> {
    let text = read_text(path)?;
    parse_jwks(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// The RS256 signing keys of a JWKS document. Keys of other types (EC, symmetric `oct`),
/// other algorithms or for encryption are left out: an RSA key is only ever an RS256 key.
pub(crate) fn parse_jwks(text: &str) -> Result<Vec<RsaKey>, String> {
    let jwks: Jwks = serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for (i, jwk) in jwks.keys.into_iter().enumerate() {
        let usable = jwk.kty == "RSA"
            && jwk.alg.as_deref().is_none_or(|a| a == "RS256")
            && jwk.usage.as_deref().is_none_or(|u| u == "sig");
        if !usable {
            continue;
        }
        let name = jwk
            .kid
            .as_deref()
            .map_or_else(|| format!("key {i}"), |k| format!("key `{k}`"));
        let field = |value: Option<String>, what: &str| -> Result<Vec<u8>, String> {
            let value = value.ok_or_else(|| format!("{name} has no `{what}`"))?;
            URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .map_err(|_| format!("{name}: `{what}` is not base64url"))
        };
        let n = field(jwk.n, "n")?;
        let e = field(jwk.e, "e")?;
        keys.push(RsaKey::new(jwk.kid, &n, &e).map_err(|e| format!("{name}: {e}"))?);
    }
    if keys.is_empty() {
        return Err("it holds no RSA key for RS256 signatures".to_owned());
    }
    Ok(keys)
}

/// An RSA public key in PEM: `PUBLIC KEY` (SPKI, as `openssl pkey -pubout` writes it) or
/// `RSA PUBLIC KEY` (PKCS #1).
pub(crate) fn parse_pem(text: &str) -> Result<RsaKey, String> {
    let begin = text
        .find("-----BEGIN ")
        .ok_or("no `-----BEGIN PUBLIC KEY-----` line")?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let (label, rest) = rest
        .split_once("-----")
        .ok_or("the BEGIN line is not closed")?;
    let end = format!("-----END {label}-----");
    let body = &rest[..rest.find(&end).ok_or_else(|| format!("no `{end}` line"))?];
    let b64: String = body.split_whitespace().collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|_| "the PEM body is not base64".to_owned())?;
    match label {
        "PUBLIC KEY" => rsa_from_spki(&der),
        "RSA PUBLIC KEY" => rsa_from_pkcs1(&der),
        "CERTIFICATE" => Err(
            "this is a certificate; give its public key (`openssl x509 -pubkey -noout -in cert.pem`)"
                .to_owned(),
        ),
        other => Err(format!(
            "a PEM `{other}` is not a public key; give a `PUBLIC KEY`"
        )),
    }
}

/// SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
fn rsa_from_spki(der: &[u8]) -> Result<RsaKey, String> {
    let (spki, _) = der_take(der, 0x30)?;
    let (algorithm, rest) = der_take(spki, 0x30)?;
    let (oid, _) = der_take(algorithm, 0x06)?;
    if oid != RSA_ENCRYPTION_OID {
        return Err("the public key is not an RSA key (RS256 needs one)".to_owned());
    }
    let (bits, _) = der_take(rest, 0x03)?;
    match bits.split_first() {
        Some((0, pkcs1)) => rsa_from_pkcs1(pkcs1),
        _ => Err("the public key's bit string is malformed".to_owned()),
    }
}

/// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
fn rsa_from_pkcs1(der: &[u8]) -> Result<RsaKey, String> {
    let (key, _) = der_take(der, 0x30)?;
    let (n, rest) = der_take(key, 0x02)?;
    let (e, _) = der_take(rest, 0x02)?;
    RsaKey::new(None, n, e)
}

/// Splits one DER element with `tag` off the front of `input`: its content and what follows.
fn der_take(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), String> {
    let malformed = || "the key's DER encoding is malformed".to_owned();
    let (&found, rest) = input.split_first().ok_or_else(malformed)?;
    if found != tag {
        return Err(malformed());
    }
    let (&first, rest) = rest.split_first().ok_or_else(malformed)?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let octets = (first & 0x7f) as usize;
        if octets == 0 || octets > 3 || rest.len() < octets {
            return Err(malformed());
        }
        let len = rest[..octets]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[octets..])
    };
    if rest.len() < len {
        return Err(malformed());
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = include_str!("testdata/issuer.pub.pem");
    const JWKS: &str = include_str!("testdata/issuer.jwks.json");

    #[test]
    fn the_pem_and_the_jwks_hold_the_same_key() {
        let from_pem = parse_pem(PEM).expect("pem");
        let from_jwks = parse_jwks(JWKS).expect("jwks");
        assert_eq!(from_jwks.len(), 1);
        assert_eq!(from_jwks[0].kid.as_deref(), Some("issuer-2026"));
        assert_eq!(from_jwks[0].n, from_pem.n);
        assert_eq!(from_jwks[0].e, from_pem.e);
        assert_eq!(bit_len(&from_pem.n), 2048);
    }

    #[test]
    fn unusable_keys_are_refused_with_a_reason() {
        assert!(
            parse_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .expect_err("refused")
                .contains("certificate")
        );
        assert!(parse_pem("hello").expect_err("refused").contains("BEGIN"));
        let truncated = PEM.replace("-----END PUBLIC KEY-----", "");
        assert!(parse_pem(&truncated).is_err());
        let mut lines: Vec<&str> = PEM.lines().collect();
        lines.remove(3);
        assert!(parse_pem(&lines.join("\n")).is_err());

        let only_symmetric = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}"#;
        assert!(
            parse_jwks(only_symmetric)
                .expect_err("refused")
                .contains("no RSA key")
        );
        let encryption = JWKS.replace("\"sig\"", "\"enc\"");
        assert!(parse_jwks(&encryption).is_err());
        let small = r#"{"keys":[{"kty":"RSA","kid":"tiny","n":"AQAB","e":"AQAB"}]}"#;
        assert!(parse_jwks(small).expect_err("refused").contains("tiny"));
        assert!(parse_jwks("[]").expect_err("refused").contains("JWKS"));
    }

    #[test]
    fn der_lengths_are_bounded() {
        assert!(der_take(&[0x30, 0x84, 1, 1, 1, 1], 0x30).is_err());
        assert!(der_take(&[0x30, 0x05, 1], 0x30).is_err());
        assert_eq!(
            der_take(&[0x02, 0x01, 7, 9], 0x02),
            Ok((&[7u8][..], &[9u8][..]))
        );
    }
}
