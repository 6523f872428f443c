//! One logged-in RouterOS API session over any byte stream.
//!
//! Commands carry a `.tag`, so several can be in flight on one connection and their
//! replies are told apart ([`Session::send`] then [`Session::collect`]). A reply that
//! does not come in time is cancelled with `/cancel =tag=`.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use yardmaster_plugin_sdk::routeros::{
    Decoder, ReadError, Reply, challenge_login_words, plain_login_words, read_sentence,
    write_sentence,
};
use yardmaster_plugin_sdk::transport::{CommandReply, TransportError, Trap};

/// What one tagged command got back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    pub rows: Vec<Vec<(String, String)>>,
    pub done: Vec<(String, String)>,
    pub empty: bool,
    pub trap: Option<Trap>,
}

impl Collected {
    /// The reply as the contract gives it, or the trap as an error.
    pub fn into_reply(self) -> Result<CommandReply, TransportError> {
        if let Some(trap) = self.trap {
            return Err(TransportError::Trap(trap));
        }
        Ok(CommandReply {
            rows: self.rows,
            done: self.done,
            empty: self.empty,
        })
    }

    /// The `ret` attribute of `!done`.
    pub fn ret(&self) -> Option<&str> {
        self.done
            .iter()
            .find(|(k, _)| k == "ret")
            .map(|(_, v)| v.as_str())
    }
}

/// A logged-in session.
pub struct Session<S> {
    stream: S,
    decoder: Decoder,
    next_tag: u32,
    /// Replies read while waiting for another tag, kept for their own collector.
    pending: BTreeMap<String, Collected>,
    finished: BTreeMap<String, Collected>,
}

/// Turns a failed read into the error that says what happened, and while doing what.
pub fn read_failure(error: ReadError, doing: &str) -> TransportError {
    match error {
        ReadError::Io(e)
            if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock =>
        {
            TransportError::Timeout(format!("no reply {doing}"))
        }
        ReadError::Io(e) => match TransportError::from(e) {
            TransportError::Other(m) => TransportError::Reset(format!("{m} {doing}")),
            TransportError::Reset(m) => TransportError::Reset(format!("{m} {doing}")),
            TransportError::Timeout(_) => TransportError::Timeout(format!("no reply {doing}")),
            other => other,
        },
        ReadError::Protocol(e) => TransportError::Protocol(format!("{e} {doing}")),
        ReadError::Closed { mid_sentence: true } => TransportError::Reset(format!(
            "the router closed the connection in the middle of a sentence {doing}"
        )),
        ReadError::Closed {
            mid_sentence: false,
        } => TransportError::Reset(format!("the router closed the connection {doing}")),
    }
}

fn write_failure(error: io::Error, doing: &str) -> TransportError {
    match TransportError::from(error) {
        TransportError::Other(m) | TransportError::Reset(m) => {
            TransportError::Reset(format!("{m} {doing}"))
        }
        other => other,
    }
}

impl<S: Read + Write> Session<S> {
    /// Logs in: the plain flow (RouterOS 6.43 and later), answering a challenge when
    /// the router sends one instead (the legacy flow of older versions).
    pub fn login(stream: S, user: &str, password: &str) -> Result<Session<S>, TransportError> {
        let mut session = Session {
            stream,
            decoder: Decoder::new(),
            next_tag: 1,
            pending: BTreeMap::new(),
            finished: BTreeMap::new(),
        };
        let first = session.untagged(&plain_login_words(user, password), "logging in")?;
        if let Some(trap) = first.trap {
            return Err(TransportError::Auth(login_refused(&trap.message)));
        }
        if let Some(challenge) = first.ret() {
            let words = challenge_login_words(user, password, challenge).map_err(|e| {
                TransportError::Protocol(format!("the router's login challenge is unusable: {e}"))
            })?;
            let second = session.untagged(&words, "answering the login challenge")?;
            if let Some(trap) = second.trap {
                return Err(TransportError::Auth(login_refused(&trap.message)));
            }
        }
        Ok(session)
    }

    /// Sends one command untagged and reads its replies (only used for login, before
    /// anything else is in flight).
    fn untagged<W: AsRef<[u8]>>(
        &mut self,
        words: &[W],
        doing: &str,
    ) -> Result<Collected, TransportError> {
        write_sentence(&mut self.stream, words).map_err(|e| write_failure(e, doing))?;
        let mut collected = Collected::default();
        loop {
            let reply = self.read_reply(doing)?;
            if absorb(&mut collected, reply)? {
                return Ok(collected);
            }
        }
    }

    fn read_reply(&mut self, doing: &str) -> Result<Reply, TransportError> {
        let sentence = read_sentence(&mut self.stream, &mut self.decoder)
            .map_err(|e| read_failure(e, doing))?;
        let reply = Reply::parse(&sentence)
            .map_err(|e| TransportError::Protocol(format!("{e} {doing}")))?;
        if let Reply::Fatal { reason } = &reply {
            return Err(TransportError::Fatal(if reason.is_empty() {
                "the router ended the session".to_owned()
            } else {
                reason.clone()
            }));
        }
        Ok(reply)
    }

    /// Sends a command with a fresh tag, replacing any `.tag` the caller gave. Returns
    /// the tag to collect its reply by.
    pub fn send(&mut self, words: &[String]) -> Result<String, TransportError> {
        let tag = self.next_tag.to_string();
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        let mut sentence: Vec<&str> = words
            .iter()
            .map(String::as_str)
            .filter(|w| !w.starts_with(".tag="))
            .collect();
        let tag_word = [".tag=", &tag].concat();
        sentence.push(&tag_word);
        write_sentence(&mut self.stream, &sentence).map_err(|e| {
            let doing = ["sending ", command_name(words)].concat();
            write_failure(e, &doing)
        })?;
        self.pending.insert(tag.clone(), Collected::default());
        Ok(tag)
    }

    /// Reads until the command tagged `tag` is done, setting aside the replies of other
    /// commands in flight. On a timeout the command is cancelled before the error is
    /// returned, so the router stops working on it.
    pub fn collect(&mut self, tag: &str, doing: &str) -> Result<Collected, TransportError> {
        loop {
            if let Some(done) = self.finished.remove(tag) {
                return Ok(done);
            }
            let reply = match self.read_reply(doing) {
                Ok(reply) => reply,
                Err(TransportError::Timeout(message)) => {
                    self.cancel(tag);
                    return Err(TransportError::Timeout(message));
                }
                Err(other) => return Err(other),
            };
            let Some(reply_tag) = reply.tag().map(str::to_owned) else {
                return Err(TransportError::Protocol(format!(
                    "the router sent an untagged reply {doing}"
                )));
            };
            let Some(collected) = self.pending.get_mut(&reply_tag) else {
                // A late reply to a command cancelled earlier: nothing waits for it.
                continue;
            };
            if absorb(collected, reply)?
                && let Some(done) = self.pending.remove(&reply_tag)
            {
                self.finished.insert(reply_tag, done);
            }
        }
    }

    /// Sends one command and waits for its reply.
    pub fn command(&mut self, words: &[String]) -> Result<Collected, TransportError> {
        let tag = self.send(words)?;
        let doing = ["to ", command_name(words)].concat();
        self.collect(&tag, &doing)
    }

    /// Asks the router to stop working on `tag`. Best effort: the connection is about
    /// to be given up on anyway.
    fn cancel(&mut self, tag: &str) {
        self.pending.remove(tag);
        let words = ["/cancel".to_owned(), format!("=tag={tag}")];
        let _ = write_sentence(&mut self.stream, &words);
    }

    /// Ends the session politely.
    pub fn quit(mut self) -> S {
        let _ = write_sentence(&mut self.stream, &["/quit"]);
        self.stream
    }
}

/// The command word of a sentence, for messages.
fn command_name(words: &[String]) -> &str {
    words.first().map(String::as_str).unwrap_or("a command")
}

/// Adds one reply to what a command collected; true when the command is finished.
fn absorb(collected: &mut Collected, reply: Reply) -> Result<bool, TransportError> {
    match reply {
        Reply::Re { attributes, .. } => collected.rows.push(attributes.into_inner()),
        Reply::Empty { .. } => collected.empty = true,
        Reply::Trap {
            message, category, ..
        } => {
            // A `!done` still follows; keep the first trap.
            if collected.trap.is_none() {
                collected.trap = Some(Trap { message, category });
            }
        }
        Reply::Done { attributes, .. } => {
            collected.done = attributes.into_inner();
            return Ok(true);
        }
        Reply::Fatal { reason } => return Err(TransportError::Fatal(reason)),
    }
    Ok(false)
}

fn login_refused(message: &str) -> String {
    if message.is_empty() {
        "the router refused the login".to_owned()
    } else {
        format!("the router refused the login: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yardmaster_plugin_sdk::routeros::encode_sentence;

    /// A stream that answers from a script of bytes and records what was written.
    struct Scripted {
        input: io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Scripted {
        fn new(replies: &[&[&str]]) -> Scripted {
            let mut input = Vec::new();
            for sentence in replies {
                input.extend(encode_sentence(sentence));
            }
            Scripted {
                input: io::Cursor::new(input),
                written: Vec::new(),
            }
        }

        fn sent(&self) -> Vec<Vec<String>> {
            let mut decoder = Decoder::new();
            decoder.feed(&self.written);
            let mut out = Vec::new();
            while let Ok(Some(s)) = decoder.next_sentence() {
                out.push(
                    s.words()
                        .iter()
                        .map(|w| String::from_utf8_lossy(w).into_owned())
                        .collect(),
                );
            }
            out
        }
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn plain_login_then_a_tagged_print() {
        let stream = Scripted::new(&[
            &["!done"],
            &["!re", "=name=r1", ".tag=1"],
            &["!done", ".tag=1"],
        ]);
        let mut session = Session::login(stream, "admin", "pw").expect("login");
        let reply = session
            .command(&words(&["/system/identity/print"]))
            .expect("print");
        assert_eq!(reply.rows, vec![vec![("name".to_owned(), "r1".to_owned())]]);
        let sent = session.quit().sent();
        assert_eq!(sent[0], words(&["/login", "=name=admin", "=password=pw"]));
        assert_eq!(sent[1], words(&["/system/identity/print", ".tag=1"]));
        assert_eq!(sent[2], words(&["/quit"]));
    }

    #[test]
    fn a_challenge_is_answered() {
        let stream = Scripted::new(&[
            &["!done", "=ret=ebddd18303a54111e2dea05a92ab46b4"],
            &["!done"],
        ]);
        let session = Session::login(stream, "admin", "").expect("login");
        let sent = session.quit().sent();
        assert_eq!(sent[1][0], "/login");
        assert_eq!(sent[1][1], "=name=admin");
        assert!(sent[1][2].starts_with("=response=00"), "{:?}", sent[1]);
        assert_eq!(sent[1][2].len(), "=response=00".len() + 32);
    }

    #[test]
    fn bad_credentials_are_an_auth_error() {
        let stream = Scripted::new(&[
            &["!trap", "=message=invalid user name or password (6)"],
            &["!done"],
        ]);
        let err = Session::login(stream, "admin", "nope")
            .err()
            .expect("refused");
        assert_eq!(
            err,
            TransportError::Auth(
                "the router refused the login: invalid user name or password (6)".into()
            )
        );
    }

    #[test]
    fn replies_of_two_commands_in_flight_are_told_apart() {
        let stream = Scripted::new(&[
            &["!done"],
            &["!re", "=version=7.18", ".tag=2"],
            &["!re", "=name=r1", ".tag=1"],
            &["!done", ".tag=2"],
            &["!done", ".tag=1"],
        ]);
        let mut session = Session::login(stream, "a", "").expect("login");
        let identity = session
            .send(&words(&["/system/identity/print"]))
            .expect("send");
        let resource = session
            .send(&words(&["/system/resource/print"]))
            .expect("send");
        let first = session.collect(&identity, "identity").expect("identity");
        let second = session.collect(&resource, "resource").expect("resource");
        assert_eq!(first.rows[0][0].1, "r1");
        assert_eq!(second.rows[0][0].1, "7.18");
    }

    #[test]
    fn trap_empty_and_fatal() {
        let stream = Scripted::new(&[
            &["!done"],
            &["!trap", "=category=0", "=message=no such command", ".tag=1"],
            &["!done", ".tag=1"],
            &["!empty", ".tag=2"],
            &["!done", ".tag=2"],
            &["!fatal", "session terminated on request"],
        ]);
        let mut session = Session::login(stream, "a", "").expect("login");
        let trap = session
            .command(&words(&["/nope"]))
            .expect("collected")
            .into_reply()
            .expect_err("trap");
        assert_eq!(
            trap,
            TransportError::Trap(Trap {
                message: "no such command".into(),
                category: Some(0)
            })
        );
        let empty = session
            .command(&words(&["/ip/address/print"]))
            .expect("empty");
        assert!(empty.empty && empty.rows.is_empty());
        let fatal = session.command(&words(&["/x"])).expect_err("fatal");
        assert_eq!(
            fatal,
            TransportError::Fatal("session terminated on request".into())
        );
    }

    #[test]
    fn a_close_mid_sentence_is_a_reset() {
        let mut bytes = encode_sentence(&["!done"]);
        let partial = encode_sentence(&["!re", "=name=cut-short", ".tag=1"]);
        bytes.extend_from_slice(&partial[..partial.len() - 4]);
        let stream = Scripted {
            input: io::Cursor::new(bytes),
            written: Vec::new(),
        };
        let mut session = Session::login(stream, "a", "").expect("login");
        let err = session
            .command(&words(&["/system/identity/print"]))
            .expect_err("reset");
        assert!(
            matches!(&err, TransportError::Reset(m) if m.contains("middle of a sentence")),
            "{err:?}"
        );
    }
}
