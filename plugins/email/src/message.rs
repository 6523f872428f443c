//! The message itself: RFC 5322 headers and a MIME `multipart/alternative` body with a
//! plain-text part and an HTML part, both quoted-printable so every line stays short and
//! 7-bit whatever the server offers; and the dot-stuffing SMTP's DATA needs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Everything a message is made of.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    pub from: &'a str,
    pub from_name: Option<&'a str>,
    pub to: &'a [String],
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    pub event_id: &'a str,
    pub event_kind: &'a str,
    /// Unix seconds, for the Date header.
    pub date: u64,
}

/// Refuses an address that could break out of its header or the SMTP command it goes
/// into: it must look like `local@domain` with no spaces, brackets or line breaks.
pub fn check_address(address: &str) -> Result<(), String> {
    let bad = address.is_empty()
        || address.len() > 254
        || address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '"'));
    let shape = address
        .rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if bad || !shape {
        return Err(format!("`{address}` is not an e-mail address"));
    }
    Ok(())
}

/// The complete message, CRLF line endings, not yet dot-stuffed.
pub fn render(draft: &Draft<'_>) -> Result<String, String> {
    check_address(draft.from)?;
    for to in draft.to {
        check_address(to)?;
    }
    let domain = draft
        .from
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("localhost");
    // Quoted-printable never produces `=_`, so this boundary cannot occur in a part.
    let boundary = format!("=_yardmaster_{}", sanitize_token(draft.event_id));
    let from = match draft.from_name {
        Some(name) if !name.trim().is_empty() => {
            format!("{} <{}>", encode_phrase(name.trim()), draft.from)
        }
        _ => draft.from.to_string(),
    };
    let mut out = String::new();
    header(&mut out, "From", &from);
    header(&mut out, "To", &draft.to.join(", "));
    header(&mut out, "Subject", &encode_word(draft.subject));
    header(&mut out, "Date", &rfc2822(draft.date));
    // Stable across retries, so a mail client can fold duplicates of one event.
    header(
        &mut out,
        "Message-ID",
        &format!("<event-{}@{}>", sanitize_token(draft.event_id), domain),
    );
    header(
        &mut out,
        "X-Yardmaster-Event-Id",
        &sanitize_token(draft.event_id),
    );
    header(
        &mut out,
        "X-Yardmaster-Event",
        &sanitize_token(draft.event_kind),
    );
    header(&mut out, "Auto-Submitted", "auto-generated");
    header(&mut out, "MIME-Version", "1.0");
    header(
        &mut out,
        "Content-Type",
        &format!("multipart/alternative; boundary=\"{boundary}\""),
    );
    out.push_str("\r\n");
    out.push_str("This is a multipart message in MIME format.\r\n");
    part(&mut out, &boundary, "text/plain", draft.text);
    let html = match draft.html {
        Some(html) => html.to_string(),
        None => text_to_html(draft.subject, draft.text),
    };
    part(&mut out, &boundary, "text/html", &html);
    out.push_str(&format!("--{boundary}--\r\n"));
    Ok(out)
}

fn header(out: &mut String, name: &str, value: &str) {
    // Values are single-line by construction: line breaks never reach here.
    let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    out.push_str(name);
    out.push_str(": ");
    out.push_str(&value);
    out.push_str("\r\n");
}

fn part(out: &mut String, boundary: &str, mime: &str, body: &str) {
    out.push_str(&format!("--{boundary}\r\n"));
    out.push_str(&format!("Content-Type: {mime}; charset=utf-8\r\n"));
    out.push_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    out.push_str(&quoted_printable(body));
    out.push_str("\r\n");
}

/// Keeps what is safe inside a header token or a Message-ID.
fn sanitize_token(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(128)
        .collect()
}

/// An RFC 2047 encoded word when the text is not plain ASCII; the text otherwise.
fn encode_word(text: &str) -> String {
    let plain = text.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) && !text.contains("=?");
    if plain {
        return text.to_string();
    }
    // Encoded words are at most 75 characters: split the text on character boundaries.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars().filter(|c| !c.is_control()) {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?utf-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?utf-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
    }
    words.join(" ")
}

/// A display name: quoted when it is ASCII, an encoded word otherwise.
fn encode_phrase(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        encode_word(name)
    }
}

/// Quoted-printable (RFC 2045): lines end in CRLF, are at most 76 characters (soft breaks
/// `=` otherwise), and every byte outside printable ASCII, `=`, and whitespace at the end
/// of a line is `=XX`.
pub fn quoted_printable(text: &str) -> String {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::new();
    for (i, line) in normalized.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let bytes = line.as_bytes();
        let mut width = 0;
        for (j, &b) in bytes.iter().enumerate() {
            let last = j + 1 == bytes.len();
            let literal =
                (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece = if literal {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if width + piece.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += piece.len();
            out.push_str(&piece);
        }
    }
    out
}

/// A minimal HTML rendering of a plain-text message.
fn text_to_html(subject: &str, text: &str) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head><body>\n<pre style=\"font-family: sans-serif; white-space: pre-wrap\">",
        escape_html(subject)
    );
    html.push_str(&escape_html(text));
    html.push_str("</pre>\n</body></html>");
    html
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// SMTP DATA transparency (RFC 5321 4.5.2): a line starting with `.` gets another `.`,
/// and the message ends with `CRLF.CRLF`.
pub fn dot_stuff(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    for line in message.split("\r\n") {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // `split` yields an empty last piece for a message ending in CRLF: drop its CRLF.
    if message.ends_with("\r\n") {
        out.truncate(out.len() - 2);
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// `Tue, 28 May 2024 06:14:21 +0000`.
pub fn rfc2822(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822(1_716_876_861), "Tue, 28 May 2024 06:14:21 +0000");
        assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn quoted_printable_round_trips_the_rules() {
        assert_eq!(quoted_printable("a=b"), "a=3Db");
        assert_eq!(quoted_printable("trail "), "trail=20");
        assert_eq!(quoted_printable("a\nb"), "a\r\nb");
        assert_eq!(quoted_printable("é"), "=C3=A9");
        assert_eq!(quoted_printable(".dot"), ".dot");
        let long = "x".repeat(200);
        let encoded = quoted_printable(&long);
        assert!(encoded.split("\r\n").all(|l| l.len() <= 76));
        assert_eq!(encoded.replace("=\r\n", ""), long);
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff("a\r\n.b\r\n..c"), b"a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuff("a\r\n"), b"a\r\n.\r\n");
        assert_eq!(dot_stuff("."), b"..\r\n.\r\n");
    }

    #[test]
    fn addresses() {
        assert!(check_address("ada@example.com").is_ok());
        for bad in [
            "",
            "ada",
            "@x",
            "a@",
            "a b@x",
            "a@x>\r\nRCPT TO:<b@y",
            "a,b@x",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_rendered_message_is_multipart_and_single_line_headers() {
        let to = vec!["ada@example.com".to_string(), "bob@example.com".to_string()];
        let draft = Draft {
            from: "yardmaster@example.com",
            from_name: Some("Yardmaster"),
            to: &to,
            subject: "Approve \"nightly\"\r\nBcc: evil@x — please",
            text: "Line one\n.hidden line\nLast",
            html: Some("<p>Line one</p>"),
            event_id: "17",
            event_kind: "script.authorization_requested",
            date: 1_716_876_861,
        };
        let message = render(&draft).expect("render");
        let (head, body) = message.split_once("\r\n\r\n").expect("head and body");
        assert!(head.lines().all(|l| !l.starts_with("Bcc")));
        assert!(head.contains("From: \"Yardmaster\" <yardmaster@example.com>"));
        assert!(head.contains("To: ada@example.com, bob@example.com"));
        assert!(head.contains("Subject: =?utf-8?B?"));
        assert!(head.contains("Message-ID: <event-17@example.com>"));
        assert!(head.contains("X-Yardmaster-Event-Id: 17"));
        assert!(head.contains("multipart/alternative; boundary=\"=_yardmaster_17\""));
        assert!(body.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(body.contains("Content-Type: text/html; charset=utf-8"));
        assert!(body.contains("\r\n.hidden line\r\n"));
        assert!(body.ends_with("--=_yardmaster_17--\r\n"));
        let stuffed = String::from_utf8(dot_stuff(&message)).expect("utf-8");
        assert!(stuffed.contains("\r\n..hidden line\r\n"));
    }

    #[test]
    fn bad_recipients_are_refused() {
        let to = vec!["not an address".to_string()];
        let draft = Draft {
            from: "y@example.com",
            from_name: None,
            to: &to,
            subject: "s",
            text: "t",
            html: None,
            event_id: "1",
            event_kind: "k",
            date: 0,
        };
        assert!(render(&draft).is_err());
    }
}
