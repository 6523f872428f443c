//! What the audit log never keeps: the values of password-like attributes.
//!
//! A synchronous call's `=password=...` word, and a script text carried in `=script=` or
//! `=source=` (or anywhere else in an audit line) with `secret="..."` or
//! `wpa2-pre-shared-key=...` inside it, are written with the value replaced by
//! `<redacted>`. [`push_audit`](super::journal) applies [`json`] to every detail, so no
//! caller can forget it; callers that shape a detail themselves (the synchronous call's
//! `parameters`) may redact first, and redacting twice changes nothing.

/// Attribute names whose values are secret: any name that contains one of these, in any
/// case (`wpa2-pre-shared-key`, `authentication-password`, `ipsec-secret`).
pub(crate) const SECRET_NAMES: &[&str] = &[
    "password",
    "passphrase",
    "secret",
    "pre-shared-key",
    "private-key",
    "psk",
    "authentication-key",
    "auth-key",
    "enc-key",
];

const REDACTED: &str = "<redacted>";

/// Whether an attribute of this name holds a secret.
pub(crate) fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|s| name.contains(s))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// `text` with the value of every `name=value` whose name is secret replaced by
/// `<redacted>`: a RouterOS script (`set secret="a b" comment=x`), an API sentence
/// (`=password=x`), or both nested (`=source=/ppp secret add password=x`). A quoted value
/// ends at its closing unescaped quote (an escaped-quoted one, inside a quoted string, at
/// the next `\"`); an unquoted one at white space, `;`, a quote, a backslash or a
/// closing bracket. Values of other names are scanned too, so a secret inside a quoted comment or
/// a nested `=script=` is found.
pub(crate) fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let at_boundary = prev.is_none_or(|p| !is_name_char(p));
        if at_boundary && is_name_char(c) {
            let len = rest
                .find(|ch: char| !is_name_char(ch))
                .unwrap_or(rest.len());
            let (name, after) = rest.split_at(len);
            out.push_str(name);
            prev = name.chars().last();
            rest = after;
            if is_secret(name) && rest.starts_with('=') {
                out.push('=');
                out.push_str(REDACTED);
                rest = skip_value(&rest[1..]);
                prev = Some('>');
            }
            continue;
        }
        out.push(c);
        prev = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// What follows a value at the start of `rest`.
fn skip_value(rest: &str) -> &str {
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => return &quoted[i + 1..],
                _ => {}
            }
        }
        return "";
    }
    // Quoted inside a quoted string: `comment="set secret=\"a b\""`.
    if let Some(quoted) = rest.strip_prefix("\\\"") {
        return quoted.find("\\\"").map_or("", |end| &quoted[end + 2..]);
    }
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, ';' | ']' | ')' | '}' | '"' | '\\'))
        .unwrap_or(rest.len());
    &rest[end..]
}

/// Redacts every string in `value`, at any depth.
pub(crate) fn json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if s.contains('=') {
                *s = text(s);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(json),
        Value::Object(fields) => fields.values_mut().for_each(json),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_api_words_are_redacted() {
        assert_eq!(
            text("=name=bob =password=hunter2 =comment=two words"),
            "=name=bob =password=<redacted> =comment=two words"
        );
        assert_eq!(
            text("=wpa2-pre-shared-key=abc ?type=ether"),
            "=wpa2-pre-shared-key=<redacted> ?type=ether"
        );
    }

    #[test]
    fn secrets_inside_script_and_source_are_redacted() {
        let sentence =
            "=script=/ip ipsec peer add address=10.0.0.1 secret=\"a \\\"quoted\\\" one\" comment=x";
        assert_eq!(
            text(sentence),
            "=script=/ip ipsec peer add address=10.0.0.1 secret=<redacted> comment=x"
        );
        let source = "=source=/ppp secret add name=u password=p1;\n/interface wireless security-profiles set [find] wpa2-pre-shared-key=\"k k\"\n/routing ospf interface-template set auth-key=ak authentication-key=ak2\n:global PSK psk=z";
        let out = text(source);
        for leaked in ["p1", "k k", "ak", "ak2", "z"] {
            assert!(
                !out.contains(&format!("={leaked}")) && !out.contains(&format!("=\"{leaked}")),
                "{leaked} leaked: {out}"
            );
        }
        assert!(out.contains("name=u password=<redacted>;"), "{out}");
        assert!(
            out.contains("set [find] wpa2-pre-shared-key=<redacted>\n"),
            "{out}"
        );
        // A secret nested in another attribute's value, or in a bracket, is found too.
        assert_eq!(
            text("comment=\"set password=x\" [/x set passphrase=y]"),
            "comment=\"set password=<redacted>\" [/x set passphrase=<redacted>]"
        );
        assert_eq!(
            text(r#"comment="set password=\"x y\" more""#),
            r#"comment="set password=<redacted> more""#
        );
        assert_eq!(text("=script=password=abc"), "=script=password=<redacted>");
    }

    #[test]
    fn other_text_is_kept_and_redaction_is_idempotent() {
        let script = "/ip address add address=10.0.0.1/30 interface=ether1 é";
        assert_eq!(text(script), script);
        let once = text("secret=\"unterminated password=x");
        assert_eq!(once, "secret=<redacted>");
        assert_eq!(text(&once), once);
        assert_eq!(text("mypassword=x"), "mypassword=<redacted>");
        assert_eq!(text("password =x"), "password =x", "not an attribute");
    }

    #[test]
    fn json_details_are_redacted_at_any_depth() {
        let mut detail = serde_json::json!({
            "parameters": "=script=/user add name=a password=b",
            "nested": [{"script": "/ip ipsec peer set secret=s"}],
            "count": 3,
        });
        json(&mut detail);
        assert_eq!(
            detail["parameters"],
            "=script=/user add name=a password=<redacted>"
        );
        assert_eq!(
            detail["nested"][0]["script"],
            "/ip ipsec peer set secret=<redacted>"
        );
        assert_eq!(detail["count"], 3);
    }
}
