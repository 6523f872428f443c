//! The vocabulary inside sentences: what each word means, and what a reply says.
//!
//! A command sentence is a command word (`/ip/address/print`) followed by attribute
//! words (`=name=value`), API attributes (`.tag=7`) and query words (`?name=x`). A reply
//! starts with `!re`, `!done`, `!trap`, `!fatal` or `!empty`. Classification borrows
//! from the sentence; only [`Reply`] and [`Attributes`] own decoded strings.

use std::borrow::Cow;

use super::codec::ProtocolError;

/// One complete sentence, its words as the peer sent them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sentence {
    words: Vec<Vec<u8>>,
}

impl Sentence {
    /// A sentence of these words, e.g. to build a command.
    pub fn from_words(words: Vec<Vec<u8>>) -> Self {
        Self { words }
    }

    pub fn words(&self) -> &[Vec<u8>] {
        &self.words
    }

    pub fn into_words(self) -> Vec<Vec<u8>> {
        self.words
    }

    /// The first word: the command (`/login`) or the reply word (`!done`).
    pub fn command(&self) -> &[u8] {
        self.words.first().map(Vec::as_slice).unwrap_or_default()
    }

    /// The first word as text, decoded lossily.
    pub fn command_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.command())
    }

    /// Every word after the first, classified.
    pub fn parsed(&self) -> impl Iterator<Item = Word<'_>> {
        self.words.iter().skip(1).map(|w| parse_word(w))
    }

    /// The value of the `.tag` API attribute, when the sentence has one.
    pub fn tag(&self) -> Option<&[u8]> {
        self.parsed().find_map(|w| match w {
            Word::Api {
                name: b"tag",
                value,
            } => Some(value),
            _ => None,
        })
    }

    /// The value of the attribute word `=name=...`, the first when it repeats.
    pub fn attribute(&self, name: &str) -> Option<&[u8]> {
        self.parsed().find_map(|w| match w {
            Word::Attribute { name: n, value } if n == name.as_bytes() => Some(value),
            _ => None,
        })
    }

    /// Every attribute word as a `(name, value)` pair in order, decoded lossily.
    pub fn attributes(&self) -> Attributes {
        Attributes(
            self.parsed()
                .filter_map(|w| match w {
                    Word::Attribute { name, value } => Some((lossy(name), lossy(value))),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Every query word in order.
    pub fn queries(&self) -> impl Iterator<Item = Query<'_>> {
        self.parsed().filter_map(|w| match w {
            Word::Query(q) => Some(q),
            _ => None,
        })
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What one word (after the first) of a sentence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word<'a> {
    /// `=name=value`; the value may be empty or contain `=`. `=name` alone has an empty value.
    Attribute { name: &'a [u8], value: &'a [u8] },
    /// `.name=value`, handled by the API itself: `.tag`, and in replies `.section`.
    Api { name: &'a [u8], value: &'a [u8] },
    /// `?...`, a print query.
    Query(Query<'a>),
    /// Anything else, such as the reason word after `!fatal`.
    Bare(&'a [u8]),
}

/// One query word of a print command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query<'a> {
    /// `?name`: the item has the property.
    Has(&'a [u8]),
    /// `?-name`: the item lacks the property.
    Lacks(&'a [u8]),
    /// `?name=x` or `?=name=x`.
    Equals { name: &'a [u8], value: &'a [u8] },
    /// `?<name=x`.
    Less { name: &'a [u8], value: &'a [u8] },
    /// `?>name=x`.
    Greater { name: &'a [u8], value: &'a [u8] },
    /// `?#ops`: stack operations (`|`, `&`, `!`, `.`, and stack indices).
    Operations(&'a [u8]),
}

fn split_at_eq(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'=') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

/// Classifies one word that is not the first of its sentence.
pub fn parse_word(word: &[u8]) -> Word<'_> {
    match word.split_first() {
        Some((b'=', rest)) => {
            let (name, value) = split_at_eq(rest);
            Word::Attribute { name, value }
        }
        Some((b'.', rest)) => {
            let (name, value) = split_at_eq(rest);
            Word::Api { name, value }
        }
        Some((b'?', rest)) => Word::Query(parse_query(rest)),
        _ => Word::Bare(word),
    }
}

fn parse_query(rest: &[u8]) -> Query<'_> {
    match rest.split_first() {
        Some((b'#', ops)) => Query::Operations(ops),
        Some((b'-', name)) => Query::Lacks(name),
        Some((b'<', body)) => {
            let (name, value) = split_at_eq(body);
            Query::Less { name, value }
        }
        Some((b'>', body)) => {
            let (name, value) = split_at_eq(body);
            Query::Greater { name, value }
        }
        Some((b'=', body)) => {
            let (name, value) = split_at_eq(body);
            Query::Equals { name, value }
        }
        _ => match rest.iter().position(|&b| b == b'=') {
            Some(i) => Query::Equals {
                name: &rest[..i],
                value: &rest[i + 1..],
            },
            None => Query::Has(rest),
        },
    }
}

/// Attribute pairs in the order the peer sent them, decoded lossily.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes(pub Vec<(String, String)>);

impl Attributes {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_inner(self) -> Vec<(String, String)> {
        self.0
    }
}

/// One reply sentence from a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `!re`: one row of data.
    Re {
        tag: Option<String>,
        attributes: Attributes,
    },
    /// `!done`: the command finished; `=ret=` carries an id, a job or output.
    Done {
        tag: Option<String>,
        attributes: Attributes,
    },
    /// `!trap`: the command failed; a `!done` still follows.
    Trap {
        tag: Option<String>,
        message: String,
        category: Option<u32>,
        attributes: Attributes,
    },
    /// `!fatal`: the router is closing the connection, for the reason given.
    Fatal { reason: String },
    /// `!empty`: a print found nothing (RouterOS 7.18 and later); a `!done` follows.
    Empty { tag: Option<String> },
}

impl Reply {
    /// Reads a reply sentence; a first word that is no reply word is a protocol error.
    pub fn parse(sentence: &Sentence) -> Result<Self, ProtocolError> {
        let tag = sentence.tag().map(lossy);
        let reply = match sentence.command() {
            b"!re" => Self::Re {
                tag,
                attributes: sentence.attributes(),
            },
            b"!done" => Self::Done {
                tag,
                attributes: sentence.attributes(),
            },
            b"!trap" => {
                let attributes = sentence.attributes();
                let message = attributes.get("message").unwrap_or_default().to_owned();
                let category = attributes.get("category").and_then(|c| c.parse().ok());
                Self::Trap {
                    tag,
                    message,
                    category,
                    attributes,
                }
            }
            b"!fatal" => {
                let reason: Vec<String> = sentence
                    .parsed()
                    .filter_map(|w| match w {
                        Word::Bare(b) => Some(lossy(b)),
                        Word::Attribute {
                            name: b"message",
                            value,
                        } => Some(lossy(value)),
                        _ => None,
                    })
                    .collect();
                Self::Fatal {
                    reason: reason.join("\n"),
                }
            }
            b"!empty" => Self::Empty { tag },
            other => return Err(ProtocolError::UnknownReply(lossy(other))),
        };
        Ok(reply)
    }

    pub fn tag(&self) -> Option<&str> {
        match self {
            Self::Re { tag, .. }
            | Self::Done { tag, .. }
            | Self::Trap { tag, .. }
            | Self::Empty { tag } => tag.as_deref(),
            Self::Fatal { .. } => None,
        }
    }

    /// The attribute words of the reply; none for `!fatal` and `!empty`.
    pub fn attributes(&self) -> &Attributes {
        static NONE: Attributes = Attributes(Vec::new());
        match self {
            Self::Re { attributes, .. }
            | Self::Done { attributes, .. }
            | Self::Trap { attributes, .. } => attributes,
            Self::Fatal { .. } | Self::Empty { .. } => &NONE,
        }
    }

    /// True for the sentences after which no more replies to the command come.
    pub fn ends_command(&self) -> bool {
        matches!(self, Self::Done { .. } | Self::Fatal { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentence(words: &[&str]) -> Sentence {
        Sentence::from_words(words.iter().map(|w| w.as_bytes().to_vec()).collect())
    }

    #[test]
    fn attribute_values_may_hold_equals_or_be_empty() {
        assert_eq!(
            parse_word(b"=comment=a=b=c"),
            Word::Attribute {
                name: b"comment",
                value: b"a=b=c"
            }
        );
        assert_eq!(
            parse_word(b"=comment="),
            Word::Attribute {
                name: b"comment",
                value: b""
            }
        );
        assert_eq!(
            parse_word(b"=as-string"),
            Word::Attribute {
                name: b"as-string",
                value: b""
            }
        );
        assert_eq!(
            parse_word(b"=.id=*1"),
            Word::Attribute {
                name: b".id",
                value: b"*1"
            }
        );
        assert_eq!(
            parse_word(b".tag=a=b"),
            Word::Api {
                name: b"tag",
                value: b"a=b"
            }
        );
        assert_eq!(parse_word(b"not logged in"), Word::Bare(b"not logged in"));
    }

    #[test]
    fn queries() {
        let q = |w: &'static [u8]| match parse_word(w) {
            Word::Query(q) => q,
            other => panic!("{other:?} is no query"),
        };
        assert_eq!(
            q(b"?name=ether1"),
            Query::Equals {
                name: b"name",
                value: b"ether1"
            }
        );
        assert_eq!(
            q(b"?=name=a=b"),
            Query::Equals {
                name: b"name",
                value: b"a=b"
            }
        );
        assert_eq!(q(b"?name"), Query::Has(b"name"));
        assert_eq!(q(b"?-name"), Query::Lacks(b"name"));
        assert_eq!(
            q(b"?<mtu=1500"),
            Query::Less {
                name: b"mtu",
                value: b"1500"
            }
        );
        assert_eq!(
            q(b"?>mtu=1500"),
            Query::Greater {
                name: b"mtu",
                value: b"1500"
            }
        );
        assert_eq!(q(b"?#|!"), Query::Operations(b"|!"));
    }

    #[test]
    fn replies() {
        let done = Reply::parse(&sentence(&["!done", "=ret=*A", ".tag=t1"])).expect("valid");
        assert_eq!(done.tag(), Some("t1"));
        assert_eq!(done.attributes().get("ret"), Some("*A"));
        assert!(done.ends_command());

        let trap =
            Reply::parse(&sentence(&["!trap", "=category=1", "=message=bad"])).expect("valid");
        assert!(
            matches!(trap, Reply::Trap { ref message, category: Some(1), .. } if message == "bad")
        );
        assert!(!trap.ends_command());

        let fatal =
            Reply::parse(&sentence(&["!fatal", "session terminated on request"])).expect("valid");
        assert_eq!(
            fatal,
            Reply::Fatal {
                reason: "session terminated on request".into()
            }
        );

        let empty = Reply::parse(&sentence(&["!empty", ".tag=3"])).expect("valid");
        assert_eq!(
            empty,
            Reply::Empty {
                tag: Some("3".into())
            }
        );

        let row = Reply::parse(&sentence(&["!re", "=name=a", "=x="])).expect("valid");
        assert_eq!(
            row.attributes().0,
            vec![("name".into(), "a".into()), ("x".into(), String::new())]
        );

        assert_eq!(
            Reply::parse(&sentence(&["!weird"])),
            Err(ProtocolError::UnknownReply("!weird".into()))
        );
    }

    #[test]
    fn non_utf8_is_decoded_lossily() {
        let s = Sentence::from_words(vec![b"!re".to_vec(), b"=name=\xE9t\xE9".to_vec()]);
        assert_eq!(s.attribute("name"), Some(&b"\xE9t\xE9"[..]));
        assert_eq!(s.attributes().get("name"), Some("\u{FFFD}t\u{FFFD}"));
    }

    #[test]
    fn command_helpers() {
        let s = sentence(&[
            "/ip/address/print",
            "=.proplist=address",
            "?interface=ether1",
            "?#!",
            ".tag=9",
        ]);
        assert_eq!(s.command(), b"/ip/address/print");
        assert_eq!(s.tag(), Some(&b"9"[..]));
        assert_eq!(s.attribute(".proplist"), Some(&b"address"[..]));
        assert_eq!(s.queries().count(), 2);
        assert_eq!(Sentence::default().command(), b"");
    }
}
