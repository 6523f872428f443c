//! Who is calling: JWT bearer tokens, their scopes and their organization.
//!
//! A token is a compact JWT whose claims are `sub` (the user id), `org` (the organization
//! every resource it reaches belongs to), `scopes` (a list, or a space-separated string
//! as OAuth servers write it), `exp` and `iat`. The engine signs and verifies HS256
//! tokens with a 32-byte key it creates in the data dir on first start (`jwt.key`, mode
//! 0600); `yardmaster token create` issues them. [`Authenticator::verify`] turns a token
//! into the [`Principal`] that every authorization decision takes.
//!
//! Nothing here trusts the token's header beyond its algorithm: an `alg` the engine was
//! not configured for (including `none`) is refused before any signature is checked.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

pub use crate::approval::Principal;

/// File name of the HS256 signing key inside the data dir.
pub const KEY_FILE: &str = "jwt.key";
const KEY_LEN: usize = 32;
/// Tokens longer than this are refused unread: a header is never a place to buffer.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Every scope a token can carry.
pub mod scopes {
    pub const SCRIPT_VIEW: &str = "script:view";
    pub const SCRIPT_CREATE: &str = "script:create";
    pub const SCRIPT_UPDATE: &str = "script:update";
    pub const SCRIPT_DELETE: &str = "script:delete";
    pub const SCRIPT_RUN: &str = "script:run";
    pub const SCRIPT_AUTHORIZE: &str = "script:authorize";
    pub const SITE_VIEW: &str = "site:view";
    pub const SITE_MANAGE: &str = "site:manage";
    pub const PLUGIN_VIEW: &str = "plugin:view";
    pub const PLUGIN_MANAGE: &str = "plugin:manage";

    /// What `--scopes all` grants.
    pub const ALL: &[&str] = &[
        SCRIPT_VIEW,
        SCRIPT_CREATE,
        SCRIPT_UPDATE,
        SCRIPT_DELETE,
        SCRIPT_RUN,
        SCRIPT_AUTHORIZE,
        SITE_VIEW,
        SITE_MANAGE,
        PLUGIN_VIEW,
        PLUGIN_MANAGE,
    ];
}

/// Why a token was not accepted. Every variant is answered with 401; the message says
/// what to fix without echoing the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error(
        "no bearer token; send `Authorization: Bearer <token>` (`yardmaster token create` issues one)"
    )]
    Missing,
    #[error("the bearer token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token is signed with {0}, which this engine does not accept")]
    Algorithm(String),
    #[error("the token's signature does not verify with this engine's key")]
    Signature,
    #[error("the token expired at {0}; ask for a new one")]
    Expired(DateTime<Utc>),
    #[error("the token is not valid before {0}")]
    NotYetValid(DateTime<Utc>),
    #[error("the token's claims are not usable: {0}")]
    Claims(String),
}

/// Why the signing key could not be read or created.
#[derive(Debug, thiserror::Error)]
#[error("token key {path}: {reason}")]
pub struct KeyError {
    pub path: String,
    pub reason: String,
}

/// The claims Yardmaster reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub org: String,
    #[serde(deserialize_with = "scope_list")]
    pub scopes: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

impl Claims {
    /// Claims for `sub` of `org`, valid from `now` for `ttl`.
    pub fn new(
        sub: impl Into<String>,
        org: impl Into<String>,
        scopes: Vec<String>,
        now: DateTime<Utc>,
        ttl: TimeDelta,
    ) -> Claims {
        Claims {
            sub: sub.into(),
            org: org.into(),
            scopes,
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
            nbf: None,
        }
    }
}

/// Accepts `"scopes": ["a", "b"]` and the OAuth spelling `"scopes": "a b"`.
fn scope_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Spaced(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::Spaced(text) => text.split_whitespace().map(str::to_owned).collect(),
    })
}

/// Parses a comma-separated scope list as `yardmaster token create --scopes` takes it;
/// `all` stands for every scope. Unknown scopes are refused by name.
pub fn parse_scopes(text: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "all" {
            out.extend(scopes::ALL.iter().map(|s| s.to_string()));
        } else if scopes::ALL.contains(&item) {
            out.push(item.to_owned());
        } else {
            return Err(format!(
                "unknown scope `{item}`; known scopes: all, {}",
                scopes::ALL.join(", ")
            ));
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err("no scopes given; name at least one, or `all`".to_owned());
    }
    Ok(out)
}

/// Signs and verifies tokens.
pub struct Authenticator {
    hs256: ring::hmac::Key,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(<key redacted>)")
    }
}

impl Authenticator {
    /// Reads the signing key from `data_dir`, creating it on first start.
    pub fn open(data_dir: &Path) -> Result<Authenticator, KeyError> {
        let path = data_dir.join(KEY_FILE);
        let key =
            crate::store::read_or_create_secret(&path, KEY_LEN).map_err(|reason| KeyError {
                path: path.display().to_string(),
                reason,
            })?;
        Ok(Authenticator::from_secret(&key))
    }

    /// An authenticator for an HS256 secret held in memory.
    pub fn from_secret(secret: &[u8]) -> Authenticator {
        Authenticator {
            hs256: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        }
    }

    /// A signed HS256 token carrying `claims`.
    pub fn issue(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        // Claims are plain strings and integers; serializing them cannot fail.
        let body = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(body));
        let tag = ring::hmac::sign(&self.hs256, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The caller a token names, if its signature verifies and it is valid at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("longer than 8 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("a JWT has three dot-separated parts"));
        };
        let header: Header = decode_part(header)?;
        if header.alg != "HS256" {
            return Err(AuthError::Algorithm(header.alg));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::Malformed("the signature is not base64url"))?;
        let signing_input = token.rsplit_once('.').map_or("", |(input, _)| input);
        ring::hmac::verify(&self.hs256, signing_input.as_bytes(), &signature)
            .map_err(|_| AuthError::Signature)?;
        let claims: Claims = decode_part(body)?;
        check_claims(&claims, now)?;
        Ok(Principal {
            user_id: claims.sub,
            organization: claims.org,
            scopes: claims.scopes,
        })
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed("a part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|e| AuthError::Claims(e.to_string()))
}

fn check_claims(claims: &Claims, now: DateTime<Utc>) -> Result<(), AuthError> {
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    if now.timestamp() >= claims.exp {
        return Err(AuthError::Expired(at(claims.exp)));
    }
    if let Some(nbf) = claims.nbf
        && now.timestamp() < nbf
    {
        return Err(AuthError::NotYetValid(at(nbf)));
    }
    if claims.sub.trim().is_empty() {
        return Err(AuthError::Claims("`sub` is empty".to_owned()));
    }
    if claims.org.trim().is_empty() {
        return Err(AuthError::Claims("`org` is empty".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("instant")
    }

    fn token(auth: &Authenticator, ttl: TimeDelta) -> String {
        auth.issue(&Claims::new(
            "alice",
            "acme",
            vec![scopes::SCRIPT_VIEW.to_owned()],
            now(),
            ttl,
        ))
    }

    #[test]
    fn an_issued_token_verifies_into_its_principal() {
        let auth = Authenticator::from_secret(b"k");
        let principal = auth
            .verify(&token(&auth, TimeDelta::hours(1)), now())
            .expect("valid");
        assert_eq!(principal.user_id, "alice");
        assert_eq!(principal.organization, "acme");
        assert!(principal.has_scope(scopes::SCRIPT_VIEW));
        assert!(!principal.has_scope(scopes::SCRIPT_RUN));
    }

    #[test]
    fn expiry_signature_and_algorithm_are_checked() {
        let auth = Authenticator::from_secret(b"k");
        let expired = token(&auth, TimeDelta::seconds(-1));
        assert!(matches!(
            auth.verify(&expired, now()),
            Err(AuthError::Expired(_))
        ));

        let other = Authenticator::from_secret(b"other");
        assert_eq!(
            other.verify(&token(&auth, TimeDelta::hours(1)), now()),
            Err(AuthError::Signature)
        );

        let good = token(&auth, TimeDelta::hours(1));
        let body = good.split('.').nth(1).expect("body");
        let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
        assert_eq!(
            auth.verify(&none, now()),
            Err(AuthError::Algorithm("none".to_owned()))
        );
        assert!(matches!(
            auth.verify("abc", now()),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn a_tampered_body_fails_the_signature() {
        let auth = Authenticator::from_secret(b"k");
        let good = token(&auth, TimeDelta::hours(1));
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            br#"{"sub":"alice","org":"other","scopes":["script:view"],"iat":0,"exp":9999999999}"#,
        );
        parts[1] = &forged;
        assert_eq!(
            auth.verify(&parts.join("."), now()),
            Err(AuthError::Signature)
        );
    }

    #[test]
    fn scopes_parse_with_all_and_refuse_unknown_names() {
        assert_eq!(parse_scopes("all").expect("all").len(), scopes::ALL.len());
        assert_eq!(
            parse_scopes("script:view, script:view,site:view").expect("two"),
            vec!["script:view", "site:view"]
        );
        assert!(
            parse_scopes("script:fly")
                .unwrap_err()
                .contains("script:fly")
        );
        assert!(parse_scopes("").is_err());
    }

    #[test]
    fn the_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let first = Authenticator::open(dir.path()).expect("create");
        let t = token(&first, TimeDelta::hours(1));
        let second = Authenticator::open(dir.path()).expect("reopen");
        assert!(second.verify(&t, now()).is_ok());
    }
}
