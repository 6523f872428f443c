//! Who is calling: JWT bearer tokens, their scopes and their organization.
//!
//! A token is a compact JWT whose claims are `sub` (the user id, which names a user only
//! within `org`), `org` (the organization every resource it reaches belongs to),
//! `scopes` (a list, or a space-separated string as OAuth servers write it), `exp` and
//! `iat`. The engine signs and verifies HS256 tokens with a 32-byte key it creates in
//! the data dir on first start (`jwt.key`, mode 0600), or that engines sharing a
//! PostgreSQL store keep sealed in it; `yardmaster token create` issues them. [`Authenticator::verify`] turns a token into the [`Principal`] that every
//! authorization decision takes.
//!
//! An operator may also trust an external issuer (`[auth]` in the config): its RS256
//! tokens are verified against its public keys (a JWKS file or one PEM key, see
//! [`issuer`]), and must carry its `iss` (and the configured `aud`, when one is set).
//!
//! Nothing here trusts the token's header beyond its algorithm and key id: an `alg` the
//! engine was not configured for (including `none`) is refused before any signature is
//! checked, and each algorithm has its own keys, so an issuer's RSA public key can never
//! be used as an HMAC secret.

mod issuer;

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

pub use crate::approval::Principal;
use crate::config::{IssuerKeys, IssuerSettings};

/// File name of the HS256 signing key inside the data dir.
pub const KEY_FILE: &str = "jwt.key";
pub const KEY_LEN: usize = 32;
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
    /// Reading the configuration exports taken before jobs (`make_backup`), which hold
    /// the routers' passwords and keys.
    pub const SITE_BACKUP: &str = "site:backup";
    pub const PLUGIN_VIEW: &str = "plugin:view";
    pub const PLUGIN_MANAGE: &str = "plugin:manage";
    /// The operator's own tools, such as `POST /plugins/{name}/call`. Never part of
    /// `all`: a token carries it only when it is asked for by name.
    pub const ENGINE_ADMIN: &str = "engine:admin";

    /// Scopes granted only when named, never through `all`.
    pub const BY_NAME_ONLY: &[&str] = &[ENGINE_ADMIN];

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
        SITE_BACKUP,
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
    #[error("the token's signature does not verify: signed with another key, or altered")]
    Signature,
    #[error("the token names the key `{0}`, which its issuer's keys do not hold")]
    UnknownKey(String),
    #[error("the token was issued by `{found}`, not by the issuer this engine trusts")]
    Issuer { found: String },
    #[error("the token is not meant for this engine: its `aud` does not name `{expected}`")]
    Audience { expected: String },
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
    /// `scope` is the spelling of OAuth servers, whose tokens an external issuer signs.
    #[serde(deserialize_with = "scope_list", alias = "scope")]
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
/// `all` stands for every scope in [`scopes::ALL`], which leaves out the operator's
/// [`scopes::BY_NAME_ONLY`] ones (`all,engine:admin` asks for both). Unknown scopes are
/// refused by name.
pub fn parse_scopes(text: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "all" {
            out.extend(scopes::ALL.iter().map(|s| s.to_string()));
        } else if scopes::ALL.contains(&item) || scopes::BY_NAME_ONLY.contains(&item) {
            out.push(item.to_owned());
        } else {
            return Err(format!(
                "unknown scope `{item}`; known scopes: all, {}, {}",
                scopes::ALL.join(", "),
                scopes::BY_NAME_ONLY.join(", ")
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
    /// The external issuer whose RS256 tokens are accepted, if the operator named one.
    issuer: Option<issuer::Issuer>,
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

    /// An authenticator for the HS256 `secret`, also trusting the RS256 tokens of
    /// `issuer` when set; its keys are read now, so a wrong file stops the engine at start
    /// with its reason.
    pub fn with_issuer(
        secret: &[u8],
        issuer: Option<&IssuerSettings>,
    ) -> Result<Authenticator, KeyError> {
        let mut auth = Authenticator::from_secret(secret);
        if let Some(settings) = issuer {
            let loaded = issuer::Issuer::load(settings).map_err(|reason| KeyError {
                path: match &settings.keys {
                    IssuerKeys::JwksFile(_) => "auth.jwks_file".to_owned(),
                    IssuerKeys::PublicKeyPem(_) => "auth.public_key_pem".to_owned(),
                },
                reason,
            })?;
            auth.issuer = Some(loaded);
        }
        Ok(auth)
    }

    /// An authenticator for an HS256 secret held in memory.
    pub fn from_secret(secret: &[u8]) -> Authenticator {
        Authenticator {
            hs256: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            issuer: None,
        }
    }

    /// The `iss` of the external issuer this engine trusts, if any.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_ref().map(|i| i.name.as_str())
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
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::Malformed("the signature is not base64url"))?;
        let signing_input = token.rsplit_once('.').map_or("", |(input, _)| input);
        // The algorithm picks the key: the engine's own secret for HS256, the issuer's
        // RSA keys for RS256, and never one for the other.
        let issuer = match (header.alg.as_str(), &self.issuer) {
            ("HS256", _) => {
                ring::hmac::verify(&self.hs256, signing_input.as_bytes(), &signature)
                    .map_err(|_| AuthError::Signature)?;
                None
            }
            ("RS256", Some(issuer)) => {
                issuer.verify(header.kid.as_deref(), signing_input.as_bytes(), &signature)?;
                Some(issuer)
            }
            _ => return Err(AuthError::Algorithm(header.alg)),
        };
        let claims: Claims = decode_part(body)?;
        check_claims(&claims, now)?;
        if let Some(issuer) = issuer {
            let registered: Registered = decode_part(body)?;
            check_issuer(issuer, &registered)?;
        }
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
    #[serde(default)]
    kid: Option<String>,
}

/// The registered claims an external issuer's token is checked for.
#[derive(Deserialize)]
struct Registered {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
}

/// `aud` is one string or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn names(&self, wanted: &str) -> bool {
        match self {
            Audience::One(one) => one == wanted,
            Audience::Many(many) => many.iter().any(|a| a == wanted),
        }
    }
}

fn check_issuer(issuer: &issuer::Issuer, claims: &Registered) -> Result<(), AuthError> {
    if claims.iss.as_deref() != Some(issuer.name.as_str()) {
        return Err(AuthError::Issuer {
            found: claims
                .iss
                .as_deref()
                .unwrap_or("(no `iss`)")
                .chars()
                .take(200)
                .collect(),
        });
    }
    if let Some(expected) = &issuer.audience
        && !claims.aud.as_ref().is_some_and(|aud| aud.names(expected))
    {
        return Err(AuthError::Audience {
            expected: expected.clone(),
        });
    }
    Ok(())
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed("a part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|e| AuthError::Claims(e.to_string()))
}

/// Seconds by which the issuer's clock and the engine's may disagree: a token is taken
/// this long after its `exp` and this long before its `nbf`, as most JWT verifiers do.
pub const CLOCK_SKEW_SECS: i64 = 60;

fn check_claims(claims: &Claims, now: DateTime<Utc>) -> Result<(), AuthError> {
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let now = now.timestamp();
    if now >= claims.exp.saturating_add(CLOCK_SKEW_SECS) {
        return Err(AuthError::Expired(at(claims.exp)));
    }
    if let Some(nbf) = claims.nbf
        && now.saturating_add(CLOCK_SKEW_SECS) < nbf
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
        let expired = token(&auth, TimeDelta::seconds(-CLOCK_SKEW_SECS));
        assert!(matches!(
            auth.verify(&expired, now()),
            Err(AuthError::Expired(_))
        ));
        // An issuer's clock a little ahead of the engine's is not an expiry.
        let skewed = token(&auth, TimeDelta::seconds(1 - CLOCK_SKEW_SECS));
        assert!(auth.verify(&skewed, now()).is_ok());

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
                .expect_err("refused")
                .contains("script:fly")
        );
        assert!(parse_scopes("").is_err());
    }

    #[test]
    fn all_leaves_out_engine_admin_unless_it_is_named() {
        let all = parse_scopes("all").expect("all");
        assert!(!all.iter().any(|s| s == scopes::ENGINE_ADMIN), "{all:?}");
        assert!(!scopes::ALL.contains(&scopes::ENGINE_ADMIN));
        let both = parse_scopes("all,engine:admin").expect("both");
        assert_eq!(both.len(), scopes::ALL.len() + 1);
        assert!(both.iter().any(|s| s == scopes::ENGINE_ADMIN));
        assert_eq!(
            parse_scopes("engine:admin").expect("alone"),
            vec![scopes::ENGINE_ADMIN]
        );
        let unknown = parse_scopes("engine:root").expect_err("refused");
        assert!(unknown.contains("engine:admin"), "{unknown}");
    }

    mod rs256 {
        use super::*;
        use serde_json::{Value, json};

        const ISSUER: &str = "https://sso.example.com/";
        const ISSUER_KEY: &[u8] = include_bytes!("testdata/issuer.key.der");
        const OTHER_KEY: &[u8] = include_bytes!("testdata/other.key.der");
        const ISSUER_PEM: &str = include_str!("testdata/issuer.pub.pem");
        const ISSUER_JWKS: &str = include_str!("testdata/issuer.jwks.json");
        const BOTH_JWKS: &str = include_str!("testdata/both.jwks.json");

        fn claims(extra: Value) -> Value {
            let mut claims = json!({
                "iss": ISSUER,
                "sub": "carol",
                "org": "acme",
                "scope": "plugin:view site:view",
                "iat": now().timestamp(),
                "exp": now().timestamp() + 300,
            });
            for (k, v) in extra.as_object().expect("object") {
                if v.is_null() {
                    claims.as_object_mut().expect("object").remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            claims
        }

        /// A token with `header`, `claims`, signed RS256 with the PKCS #1 private key `der`.
        fn rs256(der: &[u8], header: Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let key = ring::signature::RsaKeyPair::from_der(der).expect("test key");
            let mut signature = vec![0; key.public().modulus_len()];
            key.sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("sign");
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }

        fn hs256(secret: &[u8], header: Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            let tag = ring::hmac::sign(&key, input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
        }

        fn trusting(keys: IssuerKeys, audience: Option<&str>) -> Authenticator {
            Authenticator::with_issuer(
                &[7; KEY_LEN],
                Some(&IssuerSettings {
                    issuer: ISSUER.into(),
                    audience: audience.map(str::to_owned),
                    keys,
                }),
            )
            .expect("authenticator")
        }

        fn jwks(dir: &Path, text: &str) -> IssuerKeys {
            let path = dir.join("jwks.json");
            std::fs::write(&path, text).expect("write jwks");
            IssuerKeys::JwksFile(path)
        }

        fn kid(kid: &str) -> Value {
            json!({"alg": "RS256", "typ": "JWT", "kid": kid})
        }

        #[test]
        fn a_token_of_the_issuer_verifies_by_its_kid() {
            let dir = tempfile::tempdir().expect("dir");
            let auth = trusting(jwks(dir.path(), ISSUER_JWKS), None);
            assert_eq!(auth.issuer(), Some(ISSUER));
            let token = rs256(ISSUER_KEY, kid("issuer-2026"), &claims(json!({})));
            let principal = auth.verify(&token, now()).expect("valid");
            assert_eq!(principal.user_id, "carol");
            assert_eq!(principal.organization, "acme");
            assert!(principal.has_scope(scopes::PLUGIN_VIEW));
            assert!(!principal.has_scope(scopes::PLUGIN_MANAGE));
            // Without a `kid`, any of the issuer's keys may verify it.
            let token = rs256(ISSUER_KEY, json!({"alg": "RS256"}), &claims(json!({})));
            assert!(auth.verify(&token, now()).is_ok());
            // The engine's own tokens are still accepted beside the issuer's.
            let own = super::token(&auth, TimeDelta::hours(1));
            assert!(auth.verify(&own, now()).is_ok());
        }

        #[test]
        fn a_pem_key_verifies_as_text_or_as_a_file() {
            let dir = tempfile::tempdir().expect("dir");
            let token = rs256(ISSUER_KEY, kid("any"), &claims(json!({})));
            let inline = trusting(IssuerKeys::PublicKeyPem(ISSUER_PEM.into()), None);
            assert!(inline.verify(&token, now()).is_ok());
            let path = dir.path().join("issuer.pem");
            std::fs::write(&path, ISSUER_PEM).expect("write pem");
            let from_file = trusting(IssuerKeys::PublicKeyPem(path.display().to_string()), None);
            assert!(from_file.verify(&token, now()).is_ok());
            let wrong = rs256(OTHER_KEY, kid("any"), &claims(json!({})));
            assert_eq!(from_file.verify(&wrong, now()), Err(AuthError::Signature));
        }

        #[test]
        fn another_key_or_an_unknown_kid_is_refused() {
            let dir = tempfile::tempdir().expect("dir");
            let auth = trusting(jwks(dir.path(), ISSUER_JWKS), None);
            let forged = rs256(OTHER_KEY, kid("issuer-2026"), &claims(json!({})));
            assert_eq!(auth.verify(&forged, now()), Err(AuthError::Signature));
            let unnamed = rs256(OTHER_KEY, json!({"alg": "RS256"}), &claims(json!({})));
            assert_eq!(auth.verify(&unnamed, now()), Err(AuthError::Signature));
            let unknown = rs256(OTHER_KEY, kid("other-2026"), &claims(json!({})));
            assert_eq!(
                auth.verify(&unknown, now()),
                Err(AuthError::UnknownKey("other-2026".into()))
            );
            // A tampered body fails, even with a valid signature of the original.
            let good = rs256(ISSUER_KEY, kid("issuer-2026"), &claims(json!({})));
            let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(claims(json!({"org": "globex"})).to_string());
            assert_eq!(
                auth.verify(&parts.join("."), now()),
                Err(AuthError::Signature)
            );
        }

        #[test]
        fn a_rotated_jwks_file_is_read_again_for_an_unknown_kid() {
            let dir = tempfile::tempdir().expect("dir");
            let keys = jwks(dir.path(), ISSUER_JWKS);
            let auth = trusting(keys.clone(), None);
            let rotated = rs256(OTHER_KEY, kid("other-2026"), &claims(json!({})));
            jwks(dir.path(), BOTH_JWKS);
            // Too soon after the last read: the file is not read on every request.
            assert!(matches!(
                auth.verify(&rotated, now()),
                Err(AuthError::UnknownKey(_))
            ));
            auth.issuer.as_ref().expect("issuer").allow_reload_now();
            assert!(auth.verify(&rotated, now()).is_ok());
            let still = rs256(ISSUER_KEY, kid("issuer-2026"), &claims(json!({})));
            assert!(auth.verify(&still, now()).is_ok());
        }

        #[test]
        fn issuer_audience_and_expiry_are_checked() {
            let dir = tempfile::tempdir().expect("dir");
            let auth = trusting(jwks(dir.path(), ISSUER_JWKS), Some("yardmaster"));
            let sign = |extra: Value| rs256(ISSUER_KEY, kid("issuer-2026"), &claims(extra));

            assert!(
                auth.verify(&sign(json!({"aud": "yardmaster"})), now())
                    .is_ok()
            );
            assert!(
                auth.verify(&sign(json!({"aud": ["grafana", "yardmaster"]})), now())
                    .is_ok()
            );
            let expected = Err(AuthError::Audience {
                expected: "yardmaster".into(),
            });
            assert_eq!(
                auth.verify(&sign(json!({"aud": "grafana"})), now()),
                expected
            );
            assert_eq!(auth.verify(&sign(json!({})), now()), expected);

            assert_eq!(
                auth.verify(
                    &sign(json!({"aud": "yardmaster", "iss": "https://evil.example.com/"})),
                    now()
                ),
                Err(AuthError::Issuer {
                    found: "https://evil.example.com/".into()
                })
            );
            assert!(matches!(
                auth.verify(&sign(json!({"aud": "yardmaster", "iss": null})), now()),
                Err(AuthError::Issuer { .. })
            ));
            assert!(matches!(
                auth.verify(
                    &sign(json!({"aud": "yardmaster", "exp": now().timestamp() - CLOCK_SKEW_SECS})),
                    now()
                ),
                Err(AuthError::Expired(_))
            ));
            assert!(matches!(
                auth.verify(
                    &sign(
                        json!({"aud": "yardmaster", "nbf": now().timestamp() + CLOCK_SKEW_SECS + 1})
                    ),
                    now()
                ),
                Err(AuthError::NotYetValid(_))
            ));
            assert!(matches!(
                auth.verify(&sign(json!({"aud": "yardmaster", "org": null})), now()),
                Err(AuthError::Claims(_))
            ));
        }

        #[test]
        fn the_issuer_key_is_never_an_hmac_secret() {
            let auth = trusting(IssuerKeys::PublicKeyPem(ISSUER_PEM.into()), None);
            let body = claims(json!({}));
            // What an attacker knows of the issuer: its PEM text, its DER, its modulus.
            let der = base64::engine::general_purpose::STANDARD
                .decode(
                    ISSUER_PEM
                        .lines()
                        .filter(|l| !l.starts_with("-----"))
                        .collect::<String>(),
                )
                .expect("der");
            let jwk: Value = serde_json::from_str(ISSUER_JWKS).expect("jwks");
            let n = jwk["keys"][0]["n"].as_str().expect("n").as_bytes().to_vec();
            for secret in [ISSUER_PEM.as_bytes().to_vec(), der, n] {
                let as_hs256 = hs256(&secret, json!({"alg": "HS256"}), &body);
                assert_eq!(auth.verify(&as_hs256, now()), Err(AuthError::Signature));
                let as_rs256 = hs256(&secret, json!({"alg": "RS256"}), &body);
                assert_eq!(auth.verify(&as_rs256, now()), Err(AuthError::Signature));
            }
            for alg in ["none", "rs256", "PS256", "ES256", "HS512"] {
                let token = rs256(ISSUER_KEY, json!({"alg": alg}), &body);
                assert_eq!(
                    auth.verify(&token, now()),
                    Err(AuthError::Algorithm(alg.into()))
                );
            }
            // Without a configured issuer, RS256 is not accepted at all.
            let plain = Authenticator::from_secret(b"k");
            let token = rs256(ISSUER_KEY, kid("issuer-2026"), &body);
            assert_eq!(
                plain.verify(&token, now()),
                Err(AuthError::Algorithm("RS256".into()))
            );
        }

        #[test]
        fn a_bad_key_file_stops_the_start_with_its_reason() {
            let dir = tempfile::tempdir().expect("dir");
            let open = |keys: IssuerKeys| {
                Authenticator::with_issuer(
                    &[7; KEY_LEN],
                    Some(&IssuerSettings {
                        issuer: ISSUER.into(),
                        audience: None,
                        keys,
                    }),
                )
                .expect_err("refused")
                .to_string()
            };
            let missing = open(IssuerKeys::JwksFile(dir.path().join("nope.json")));
            assert!(
                missing.contains("nope.json") && missing.contains("cannot read"),
                "{missing}"
            );
            let garbage = open(jwks(dir.path(), "{\"keys\": 3}"));
            assert!(garbage.contains("not a JWKS document"), "{garbage}");
            let pem = open(IssuerKeys::PublicKeyPem(
                "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----".into(),
            ));
            assert!(pem.contains("not base64"), "{pem}");
        }
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
