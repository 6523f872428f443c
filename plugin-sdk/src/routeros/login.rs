//! Both RouterOS login flows.
//!
//! Since 6.43 a client sends `/login =name= =password=` and gets `!done`. Older
//! routers answer any `/login` with `!done =ret=<challenge>` (hex); the client then
//! proves it knows the password with `=response=00` followed by the hex MD5 of a zero
//! byte, the password and the challenge's bytes. A client that sent the plain form
//! and got a challenge back should answer it: that is how old routers are detected.

use std::fmt;

use md5::{Digest, Md5};

/// The challenge a router sent is not hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    BadChallenge(String),
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadChallenge(c) => write!(f, "login challenge {c:?} is not hex"),
        }
    }
}

impl std::error::Error for LoginError {}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0F)] as char);
    }
    out
}

/// The `response` value answering a legacy login challenge: `00` and the hex MD5 of
/// `0x00`, the password and the challenge's bytes.
pub fn challenge_response(password: &[u8], challenge_hex: &str) -> Result<String, LoginError> {
    let challenge = hex_decode(challenge_hex.trim())
        .ok_or_else(|| LoginError::BadChallenge(challenge_hex.into()))?;
    let mut md5 = Md5::new();
    md5.update([0u8]);
    md5.update(password);
    md5.update(&challenge);
    Ok(format!("00{}", hex_encode(&md5.finalize())))
}

/// The words of a plain login (RouterOS 6.43 and later).
pub fn plain_login_words(user: &str, password: &str) -> [String; 3] {
    [
        "/login".into(),
        ["=name=", user].concat(),
        ["=password=", password].concat(),
    ]
}

/// The words answering a legacy challenge.
pub fn challenge_login_words(
    user: &str,
    password: &str,
    challenge_hex: &str,
) -> Result<[String; 3], LoginError> {
    let response = challenge_response(password.as_bytes(), challenge_hex)?;
    Ok([
        "/login".into(),
        format!("=name={user}"),
        format!("=response={response}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // Computed independently: python3 -c "import hashlib;print(hashlib.md5(b'\0'+b'secret'+bytes.fromhex('ebddd18303a54111e2dea05a92ab46b4')).hexdigest())"
        assert_eq!(
            challenge_response(b"secret", "ebddd18303a54111e2dea05a92ab46b4").expect("hex"),
            "007319531c22b6b85e160d6ac355c1df2e"
        );
        assert_eq!(
            challenge_response(b"", "").expect("hex"),
            format!("00{}", "93b885adfe0da089cdf634904fd59f71")
        );
    }

    #[test]
    fn bad_challenge() {
        assert!(challenge_response(b"x", "abc").is_err());
        assert!(challenge_response(b"x", "zz").is_err());
    }

    #[test]
    fn words() {
        assert_eq!(
            plain_login_words("admin", "pw"),
            ["/login", "=name=admin", "=password=pw"]
        );
        let w = challenge_login_words("admin", "", "00").expect("hex");
        assert!(w[2].starts_with("=response=00") && w[2].len() == "=response=00".len() + 32);
    }
}
