//! An SMTP client (RFC 5321) over any byte stream that can be upgraded to TLS: EHLO
//! (HELO when the server does not speak ESMTP), STARTTLS (RFC 3207), AUTH PLAIN and
//! LOGIN (RFC 4954), MAIL, RCPT, DATA and QUIT, with every reply code checked.
//!
//! Replies in 4xx are temporary and the delivery is retried; 5xx are permanent.

use std::io::{Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use yardmaster_plugin_sdk::notifier::NotifyError;

/// Longest reply line accepted (RFC 5321 allows 512; servers send longer EHLO lines).
const MAX_LINE: usize = 4096;
/// Most lines in one multi-line reply.
const MAX_LINES: usize = 256;

/// A stream that can switch to TLS in place.
pub trait Stream: Read + Write {
    fn start_tls(&mut self) -> Result<(), NotifyError>;
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (port 465).
    Tls,
    /// STARTTLS, and fail if the server does not offer it.
    StartTls,
    /// STARTTLS when the server offers it, plain otherwise.
    Opportunistic,
    /// Never TLS.
    None,
}

impl Security {
    pub fn parse(text: &str) -> Result<Security, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "tls" | "implicit" | "smtps" => Ok(Security::Tls),
            "starttls" | "required" => Ok(Security::StartTls),
            "opportunistic" | "auto" => Ok(Security::Opportunistic),
            "none" | "plain" => Ok(Security::None),
            other => Err(format!(
                "`security` = `{other}`: expected tls, starttls, opportunistic or none"
            )),
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Security::Tls => 465,
            _ => 587,
        }
    }
}

/// The AUTH mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

/// The credentials and the mechanism, if the channel names one.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub mechanism: Option<Mechanism>,
    /// Send them even without TLS (a relay on loopback, say).
    pub without_tls: bool,
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    /// The dot-stuffed message, ending in `.\r\n`.
    pub data: &'a [u8],
}

/// A server reply: its code and text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.join(" / ")
    }
}

/// What the delivery did, for the receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub accepted: Vec<String>,
    /// Recipients the server refused, with its reply.
    pub refused: Vec<(String, String)>,
    pub tls: bool,
    pub queued: String,
}

pub struct Session<S> {
    stream: S,
    tls: bool,
    buf: Vec<u8>,
}

impl<S: Stream> Session<S> {
    /// `tls` says whether the stream is already TLS (implicit TLS).
    pub fn new(stream: S, tls: bool) -> Self {
        Session {
            stream,
            tls,
            buf: Vec::new(),
        }
    }

    /// The whole conversation: greeting to QUIT.
    pub fn send(
        mut self,
        helo: &str,
        security: Security,
        credentials: Option<&Credentials>,
        envelope: &Envelope<'_>,
    ) -> Result<Sent, NotifyError> {
        let greeting = self.reply()?;
        expect(&greeting, &[220], "the greeting")?;
        let mut extensions = self.ehlo(helo)?;
        if !self.tls && security != Security::None {
            let offered = extensions
                .iter()
                .any(|e| e.eq_ignore_ascii_case("STARTTLS"));
            if offered {
                self.command("STARTTLS", &[220], "STARTTLS")?;
                self.stream.start_tls()?;
                self.tls = true;
                self.buf.clear();
                // RFC 3207: forget what was learnt before TLS and ask again.
                extensions = self.ehlo(helo)?;
            } else if security == Security::StartTls {
                return Err(NotifyError::Rejected(
                    "the server does not offer STARTTLS, which the channel requires \
                     (set `security` to `opportunistic` or `none` to send without it)"
                        .into(),
                ));
            }
        }
        if let Some(credentials) = credentials {
            self.authenticate(&extensions, credentials)?;
        }
        self.command(
            &format!("MAIL FROM:<{}>", envelope.from),
            &[250],
            "MAIL FROM",
        )?;
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        let mut temporary = false;
        for to in envelope.to {
            let reply = self.exchange(&format!("RCPT TO:<{to}>"))?;
            match reply.code {
                250 | 251 => accepted.push(to.clone()),
                400..=499 => {
                    temporary = true;
                    refused.push((to.clone(), format!("{} {}", reply.code, reply.text())));
                }
                _ => refused.push((to.clone(), format!("{} {}", reply.code, reply.text()))),
            }
        }
        if accepted.is_empty() {
            let _ = self.exchange("RSET");
            let _ = self.quit();
            let detail = refused
                .iter()
                .map(|(to, why)| format!("{to}: {why}"))
                .collect::<Vec<_>>()
                .join("; ");
            let message = format!("the server refused every recipient: {detail}");
            return Err(if temporary {
                NotifyError::Unavailable(message)
            } else {
                NotifyError::Rejected(message)
            });
        }
        self.command("DATA", &[354], "DATA")?;
        self.stream.write_all(envelope.data)?;
        self.stream.flush()?;
        let done = self.reply()?;
        expect(&done, &[250], "the end of the message")?;
        let _ = self.quit();
        Ok(Sent {
            accepted,
            refused,
            tls: self.tls,
            queued: done.text(),
        })
    }

    /// EHLO, or HELO for a server that does not speak ESMTP; the extensions offered.
    fn ehlo(&mut self, helo: &str) -> Result<Vec<String>, NotifyError> {
        let reply = self.exchange(&format!("EHLO {helo}"))?;
        if reply.code == 250 {
            return Ok(reply.lines.iter().skip(1).cloned().collect());
        }
        if (500..=504).contains(&reply.code) || reply.code == 550 {
            self.command(&format!("HELO {helo}"), &[250], "HELO")?;
            return Ok(Vec::new());
        }
        Err(refusal(&reply, "EHLO"))
    }

    fn authenticate(
        &mut self,
        extensions: &[String],
        credentials: &Credentials,
    ) -> Result<(), NotifyError> {
        if !self.tls && !credentials.without_tls {
            return Err(NotifyError::Invalid(
                "refusing to send the SMTP password without TLS; use `security` = \
                 starttls or tls, or set `auth_without_tls` = true for a trusted relay"
                    .into(),
            ));
        }
        let offered: Vec<String> = extensions
            .iter()
            .filter_map(|e| {
                let upper = e.to_ascii_uppercase();
                upper
                    .strip_prefix("AUTH ")
                    .or_else(|| upper.strip_prefix("AUTH="))
                    .map(str::to_owned)
            })
            .flat_map(|list| {
                list.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let has = |m: &str| offered.iter().any(|o| o == m);
        let mechanism = match credentials.mechanism {
            Some(m) => m,
            None if has("PLAIN") => Mechanism::Plain,
            None if has("LOGIN") => Mechanism::Login,
            None if offered.is_empty() => {
                return Err(NotifyError::Rejected(
                    "the channel has credentials but the server offers no AUTH".into(),
                ));
            }
            None => {
                return Err(NotifyError::Rejected(format!(
                    "the server offers AUTH {} but neither PLAIN nor LOGIN",
                    offered.join(" ")
                )));
            }
        };
        let reply = match mechanism {
            Mechanism::Plain => {
                let token = STANDARD.encode(
                    format!("\0{}\0{}", credentials.username, credentials.password).as_bytes(),
                );
                self.exchange(&format!("AUTH PLAIN {token}"))?
            }
            Mechanism::Login => {
                let first = self.exchange("AUTH LOGIN")?;
                expect(&first, &[334], "AUTH LOGIN")?;
                let user = self.exchange(&STANDARD.encode(credentials.username.as_bytes()))?;
                expect(&user, &[334], "the AUTH LOGIN user name")?;
                self.exchange(&STANDARD.encode(credentials.password.as_bytes()))?
            }
        };
        match reply.code {
            235 => Ok(()),
            535 => Err(NotifyError::Rejected(format!(
                "authentication failed: {} {}",
                reply.code,
                reply.text()
            ))),
            _ => Err(refusal(&reply, "AUTH")),
        }
    }

    fn quit(&mut self) -> Result<(), NotifyError> {
        self.exchange("QUIT").map(|_| ())
    }

    /// Sends `line` and checks the reply's code is one of `ok`.
    fn command(&mut self, line: &str, ok: &[u16], what: &str) -> Result<Reply, NotifyError> {
        let reply = self.exchange(line)?;
        expect(&reply, ok, what)?;
        Ok(reply)
    }

    fn exchange(&mut self, line: &str) -> Result<Reply, NotifyError> {
        if line.contains(['\r', '\n']) {
            return Err(NotifyError::Invalid(
                "an SMTP command cannot contain a line break".into(),
            ));
        }
        self.stream.write_all(line.as_bytes())?;
        self.stream.write_all(b"\r\n")?;
        self.stream.flush()?;
        self.reply()
    }

    /// Reads one reply: `ddd-text` lines, then a `ddd text` line.
    fn reply(&mut self) -> Result<Reply, NotifyError> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let line = self.line()?;
            let bytes = line.as_bytes();
            let parsed = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let Some(this) = parsed.filter(|c| (200..600).contains(c)) else {
                return Err(protocol(format!("`{}` is not an SMTP reply", clip(&line))));
            };
            if code.is_some_and(|c| c != this) {
                return Err(protocol(format!(
                    "a reply changed its code mid-way: `{}`",
                    clip(&line)
                )));
            }
            code = Some(this);
            let more = bytes.get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or_default().to_string());
            if !more {
                return Ok(Reply { code: this, lines });
            }
            if lines.len() >= MAX_LINES {
                return Err(protocol(format!("a reply ran past {MAX_LINES} lines")));
            }
        }
    }

    fn line(&mut self) -> Result<String, NotifyError> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).take(end).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > MAX_LINE {
                return Err(protocol(format!("a reply line ran past {MAX_LINE} bytes")));
            }
            let mut chunk = [0u8; 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(NotifyError::Unavailable(
                    "the server closed the connection".into(),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn clip(text: &str) -> String {
    text.chars().take(120).collect()
}

fn protocol(message: String) -> NotifyError {
    NotifyError::Unavailable(format!("SMTP protocol error: {message}"))
}

fn expect(reply: &Reply, ok: &[u16], what: &str) -> Result<(), NotifyError> {
    if ok.contains(&reply.code) {
        Ok(())
    } else {
        Err(refusal(reply, what))
    }
}

/// 4xx: try again later; 5xx: permanent; anything else: the server is confused.
fn refusal(reply: &Reply, what: &str) -> NotifyError {
    let message = format!(
        "the server answered {what} with {} {}",
        reply.code,
        reply.text()
    );
    match reply.code {
        400..=499 => NotifyError::Unavailable(message),
        500..=599 => NotifyError::Rejected(message),
        _ => NotifyError::Unavailable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io;

    /// A scripted server: each client line pops the next canned reply.
    struct Script {
        replies: VecDeque<&'static str>,
        pending: Vec<u8>,
        sent: Vec<u8>,
        tls: bool,
    }

    impl Script {
        fn new(greeting: &'static str, replies: &[&'static str]) -> Script {
            Script {
                replies: replies.iter().copied().collect(),
                pending: greeting.as_bytes().to_vec(),
                sent: Vec::new(),
                tls: false,
            }
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pending.is_empty() {
                return Ok(0);
            }
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Ok(n)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(buf);
            // A reply per complete command line, or after the end of DATA.
            if buf.ends_with(b"\r\n")
                && let Some(reply) = self.replies.pop_front()
            {
                self.pending.extend_from_slice(reply.as_bytes());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for &mut Script {
        fn start_tls(&mut self) -> Result<(), NotifyError> {
            self.tls = true;
            Ok(())
        }
    }

    fn envelope<'a>(to: &'a [String], data: &'a [u8]) -> Envelope<'a> {
        Envelope {
            from: "y@example.com",
            to,
            data,
        }
    }

    #[test]
    fn starttls_then_auth_plain_then_mail() {
        let mut server = Script::new(
            "220 mx ESMTP\r\n",
            &[
                "250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
                "220 go ahead\r\n",
                "250-mx\r\n250 AUTH LOGIN PLAIN\r\n",
                "235 ok\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "354 go\r\n",
                "250 queued as 1\r\n",
                "221 bye\r\n",
            ],
        );
        let to = vec!["ada@example.com".to_string()];
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
            mechanism: None,
            without_tls: false,
        };
        let sent = Session::new(&mut server, false)
            .send(
                "client",
                Security::StartTls,
                Some(&creds),
                &envelope(&to, b"hi\r\n.\r\n"),
            )
            .expect("sent");
        assert!(sent.tls);
        assert_eq!(sent.accepted, to);
        let log = String::from_utf8(server.sent).expect("ascii");
        assert!(
            log.starts_with("EHLO client\r\nSTARTTLS\r\nEHLO client\r\nAUTH PLAIN AHUAcA==\r\n")
        );
        assert!(log.contains(
            "MAIL FROM:<y@example.com>\r\nRCPT TO:<ada@example.com>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"
        ));
    }

    #[test]
    fn auth_login() {
        let mut server = Script::new(
            "220 mx\r\n",
            &[
                "250-mx\r\n250 AUTH LOGIN\r\n",
                "334 VXNlcm5hbWU6\r\n",
                "334 UGFzc3dvcmQ6\r\n",
                "235 ok\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "354 go\r\n",
                "250 ok\r\n",
                "221 bye\r\n",
            ],
        );
        let to = vec!["a@x".to_string()];
        let creds = Credentials {
            username: "user".into(),
            password: "pass".into(),
            mechanism: None,
            without_tls: true,
        };
        Session::new(&mut server, false)
            .send("c", Security::None, Some(&creds), &envelope(&to, b".\r\n"))
            .expect("sent");
        let log = String::from_utf8(server.sent).expect("ascii");
        assert!(log.contains("AUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\n"));
    }

    #[test]
    fn starttls_required_but_not_offered() {
        let mut server = Script::new("220 mx\r\n", &["250 mx\r\n"]);
        let to = vec!["a@x".to_string()];
        let err = Session::new(&mut server, false)
            .send("c", Security::StartTls, None, &envelope(&to, b".\r\n"))
            .expect_err("refused");
        assert!(matches!(err, NotifyError::Rejected(m) if m.contains("STARTTLS")));
    }

    #[test]
    fn no_password_in_the_clear() {
        let mut server = Script::new("220 mx\r\n", &["250-mx\r\n250 AUTH PLAIN\r\n"]);
        let to = vec!["a@x".to_string()];
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
            mechanism: None,
            without_tls: false,
        };
        let err = Session::new(&mut server, false)
            .send(
                "c",
                Security::Opportunistic,
                Some(&creds),
                &envelope(&to, b".\r\n"),
            )
            .expect_err("refused");
        assert!(matches!(err, NotifyError::Invalid(m) if m.contains("without TLS")));
    }

    #[test]
    fn reply_codes() {
        let to = vec!["a@x".to_string(), "b@x".to_string()];
        // Bad credentials are permanent.
        let mut server = Script::new(
            "220 mx\r\n",
            &["250-mx\r\n250 AUTH PLAIN\r\n", "535 5.7.8 no\r\n"],
        );
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
            mechanism: Some(Mechanism::Plain),
            without_tls: true,
        };
        let err = Session::new(&mut server, false)
            .send("c", Security::None, Some(&creds), &envelope(&to, b".\r\n"))
            .expect_err("auth");
        assert!(matches!(err, NotifyError::Rejected(m) if m.contains("authentication failed")));
        // A busy server is temporary.
        let mut server = Script::new("421 busy\r\n", &[]);
        let err = Session::new(&mut server, false)
            .send("c", Security::None, None, &envelope(&to, b".\r\n"))
            .expect_err("busy");
        assert!(matches!(err, NotifyError::Unavailable(_)));
        // One recipient refused: the other still gets it, and the receipt says so.
        let mut server = Script::new(
            "220 mx\r\n",
            &[
                "250 mx\r\n",
                "250 ok\r\n",
                "550 no such user\r\n",
                "250 ok\r\n",
                "354 go\r\n",
                "250 ok\r\n",
                "221 bye\r\n",
            ],
        );
        let sent = Session::new(&mut server, false)
            .send("c", Security::None, None, &envelope(&to, b".\r\n"))
            .expect("partly sent");
        assert_eq!(sent.accepted, vec!["b@x".to_string()]);
        assert_eq!(sent.refused[0].0, "a@x");
        // Every recipient refused for good.
        let mut server = Script::new(
            "220 mx\r\n",
            &[
                "250 mx\r\n",
                "250 ok\r\n",
                "550 no\r\n",
                "550 no\r\n",
                "250 reset\r\n",
                "221 bye\r\n",
            ],
        );
        let err = Session::new(&mut server, false)
            .send("c", Security::None, None, &envelope(&to, b".\r\n"))
            .expect_err("nobody");
        assert!(matches!(err, NotifyError::Rejected(_)));
        // Garbage is a protocol error.
        let mut server = Script::new("hello\r\n", &[]);
        let err = Session::new(&mut server, false)
            .send("c", Security::None, None, &envelope(&to, b".\r\n"))
            .expect_err("garbage");
        assert!(matches!(err, NotifyError::Unavailable(m) if m.contains("protocol")));
    }

    #[test]
    fn multiline_replies_and_helo_fallback() {
        let mut server = Script::new(
            "220-mx welcome\r\n220 more\r\n",
            &[
                "502 what\r\n",
                "250 hello\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "354 go\r\n",
                "250 ok\r\n",
                "221 bye\r\n",
            ],
        );
        let to = vec!["a@x".to_string()];
        let sent = Session::new(&mut server, false)
            .send("c", Security::Opportunistic, None, &envelope(&to, b".\r\n"))
            .expect("sent");
        assert!(!sent.tls);
        let log = String::from_utf8(server.sent).expect("ascii");
        assert!(log.starts_with("EHLO c\r\nHELO c\r\nMAIL FROM"));
    }
}
