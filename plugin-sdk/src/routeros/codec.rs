//! Length prefixes, word and sentence encoding, and the incremental [`Decoder`].
//!
//! A word is its length (1 to 5 bytes, big-endian, the high bits of the first byte
//! telling how many follow) and then its bytes; a sentence is words ended by a
//! zero-length word. The decoder keeps at most one partial word beyond what it was
//! fed, and checks a word's announced length against its caps before waiting for the
//! bytes, so a peer cannot make it allocate more than the caps allow.

use std::fmt;
use std::io::{self, Read};

use super::sentence::Sentence;

/// Largest word a [`Decoder`] accepts unless told otherwise: 16 MiB.
pub const DEFAULT_MAX_WORD: usize = 16 * 1024 * 1024;
/// Largest sentence (the sum of its words) a [`Decoder`] accepts unless told otherwise: 64 MiB.
pub const DEFAULT_MAX_SENTENCE: usize = 64 * 1024 * 1024;

/// The peer broke the protocol; the connection cannot be trusted to stay in step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A length started with a reserved control byte (`0xF8` or more).
    ControlByte(u8),
    /// A length started with `0xF1` to `0xF7`, which no length form uses.
    BadLengthPrefix(u8),
    /// A word announced more bytes than the decoder accepts.
    WordTooLong { len: u64, max: usize },
    /// A sentence grew past the decoder's cap.
    SentenceTooLong { max: usize },
    /// A reply sentence did not start with a known reply word.
    UnknownReply(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ControlByte(b) => write!(
                f,
                "reserved control byte 0x{b:02X} where a word length was expected"
            ),
            Self::BadLengthPrefix(b) => write!(f, "invalid word length prefix 0x{b:02X}"),
            Self::WordTooLong { len, max } => {
                write!(f, "word of {len} bytes exceeds the limit of {max} bytes")
            }
            Self::SentenceTooLong { max } => write!(f, "sentence exceeds the limit of {max} bytes"),
            Self::UnknownReply(word) => write!(f, "unknown reply word {word:?}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// An encoded word length: 1 to 5 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedLength {
    bytes: [u8; 5],
    len: u8,
}

impl AsRef<[u8]> for EncodedLength {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Encodes a word length in the shortest form RouterOS reads.
pub fn encode_length(len: u32) -> EncodedLength {
    let b = len.to_be_bytes();
    let (bytes, n) = if len < 0x80 {
        ([b[3], 0, 0, 0, 0], 1)
    } else if len < 0x4000 {
        ([b[2] | 0x80, b[3], 0, 0, 0], 2)
    } else if len < 0x20_0000 {
        ([b[1] | 0xC0, b[2], b[3], 0, 0], 3)
    } else if len < 0x1000_0000 {
        ([b[0] | 0xE0, b[1], b[2], b[3], 0], 4)
    } else {
        ([0xF0, b[0], b[1], b[2], b[3]], 5)
    };
    EncodedLength { bytes, len: n }
}

/// Appends one word (length and bytes) to `out`.
///
/// # Panics
/// If the word is 4 GiB or longer, which the protocol cannot express.
pub fn encode_word(word: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(word.len()).expect("a RouterOS word is shorter than 4 GiB");
    out.extend_from_slice(encode_length(len).as_ref());
    out.extend_from_slice(word);
}

/// Encodes a whole sentence, ending it with the zero-length word.
///
/// An empty slice gives a lone zero byte, an empty sentence that peers ignore.
///
/// # Panics
/// If a word is 4 GiB or longer.
pub fn encode_sentence<W: AsRef<[u8]>>(words: &[W]) -> Vec<u8> {
    let size: usize = words.iter().map(|w| w.as_ref().len() + 5).sum::<usize>() + 1;
    let mut out = Vec::with_capacity(size);
    for word in words {
        encode_word(word.as_ref(), &mut out);
    }
    out.push(0);
    out
}

/// What a length prefix at the front of a buffer says.
enum Length {
    /// More bytes are needed to read the prefix.
    Incomplete,
    /// The prefix takes `header` bytes and announces a word of `len` bytes.
    Known { header: usize, len: u64 },
}

fn decode_length(buf: &[u8]) -> Result<Length, ProtocolError> {
    let Some(&first) = buf.first() else {
        return Ok(Length::Incomplete);
    };
    let header = match first {
        0x00..=0x7F => 1,
        0x80..=0xBF => 2,
        0xC0..=0xDF => 3,
        0xE0..=0xEF => 4,
        0xF0 => 5,
        0xF1..=0xF7 => return Err(ProtocolError::BadLengthPrefix(first)),
        0xF8..=0xFF => return Err(ProtocolError::ControlByte(first)),
    };
    if buf.len() < header {
        return Ok(Length::Incomplete);
    }
    let mut len: u64 = match header {
        1 => u64::from(first),
        2 => u64::from(first & 0x3F),
        3 => u64::from(first & 0x1F),
        4 => u64::from(first & 0x0F),
        _ => 0,
    };
    for &byte in &buf[1..header] {
        len = (len << 8) | u64::from(byte);
    }
    Ok(Length::Known { header, len })
}

/// Turns a byte stream into sentences, however the bytes are split.
///
/// Feed it what the socket gave, then call [`Decoder::next_sentence`] until it
/// returns `Ok(None)`. After an error the stream is out of step: drop the connection.
#[derive(Debug)]
pub struct Decoder {
    max_word: usize,
    max_sentence: usize,
    /// Bytes fed but not yet decoded are `buf[pos..end]`; `buf[end..]` is room already
    /// initialized, which [`Decoder::read_from`] reads into without clearing it again.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Bytes the word being received still lacks, so the next read can ask for all of it.
    missing: usize,
    /// Room offered to the next read: small at first, as most replies are, and doubled
    /// whenever a read fills it.
    read_room: usize,
    words: Vec<Vec<u8>>,
    sentence_bytes: usize,
}

/// The room [`Decoder::read_from`] offers a reader at first.
const FIRST_READ: usize = 1024;
/// The most room [`Decoder::read_from`] offers a reader at once, however long the word.
const MAX_READ: usize = 1024 * 1024;

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with the default caps ([`DEFAULT_MAX_WORD`], [`DEFAULT_MAX_SENTENCE`]).
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_WORD, DEFAULT_MAX_SENTENCE)
    }

    /// A decoder refusing words longer than `max_word` bytes and sentences whose words
    /// add up to more than `max_sentence` bytes.
    pub fn with_limits(max_word: usize, max_sentence: usize) -> Self {
        Self {
            max_word,
            max_sentence,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            missing: 0,
            read_room: FIRST_READ,
            words: Vec::new(),
            sentence_bytes: 0,
        }
    }

    /// Changes the caps from now on, e.g. to allow larger sentences once a peer has
    /// logged in. Words already accepted stay.
    pub fn set_limits(&mut self, max_word: usize, max_sentence: usize) {
        self.max_word = max_word;
        self.max_sentence = max_sentence;
    }

    /// Hands the decoder more bytes from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.compact();
        let end = self.end + bytes.len();
        if end > self.buf.len() {
            self.buf.truncate(self.end);
            self.buf.extend_from_slice(bytes);
        } else {
            self.buf[self.end..end].copy_from_slice(bytes);
        }
        self.end = end;
    }

    /// Reads once from `reader` straight into the decoder's own buffer and returns how
    /// many bytes arrived: 0 means the peer closed the connection.
    ///
    /// The room offered starts at 1 KiB and doubles whenever a read fills it (up to
    /// 1 MiB), and covers the rest of a long word once its length is known. It is
    /// cleared only when the buffer grows, not on every read.
    pub fn read_from<R: Read + ?Sized>(&mut self, reader: &mut R) -> io::Result<usize> {
        self.compact();
        let room = self.missing.max(self.read_room).min(MAX_READ);
        if self.buf.len() - self.end < room {
            self.buf.resize(self.end + room, 0);
        }
        let n = reader.read(&mut self.buf[self.end..])?;
        self.end += n;
        if n >= self.read_room {
            self.read_room = (self.read_room * 2).min(MAX_READ);
        }
        Ok(n)
    }

    /// Moves undecoded bytes to the front once they are fewer than those decoded.
    fn compact(&mut self) {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.pos > 4096 && self.pos * 2 > self.end {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
    }

    /// True when no part of a sentence is waiting: a peer closing now closed cleanly.
    pub fn is_idle(&self) -> bool {
        self.words.is_empty() && self.pos == self.end
    }

    /// Bytes fed but not yet returned as part of a sentence.
    pub fn buffered(&self) -> usize {
        self.end - self.pos + self.sentence_bytes
    }

    /// The next complete, non-empty sentence, `Ok(None)` when more bytes are needed.
    pub fn next_sentence(&mut self) -> Result<Option<Sentence>, ProtocolError> {
        self.missing = 0;
        loop {
            let rest = &self.buf[self.pos..self.end];
            let (header, len) = match decode_length(rest)? {
                Length::Incomplete => return Ok(None),
                Length::Known { header, len } => (header, len),
            };
            if len > self.max_word as u64 {
                return Err(ProtocolError::WordTooLong {
                    len,
                    max: self.max_word,
                });
            }
            // `len` fits in usize: it is no larger than `max_word`.
            let len = len as usize;
            if len == 0 {
                self.pos += header;
                if self.words.is_empty() {
                    continue;
                }
                self.sentence_bytes = 0;
                return Ok(Some(Sentence::from_words(std::mem::take(&mut self.words))));
            }
            if self.sentence_bytes.saturating_add(len) > self.max_sentence {
                return Err(ProtocolError::SentenceTooLong {
                    max: self.max_sentence,
                });
            }
            if rest.len() < header + len {
                self.missing = header + len - rest.len();
                // Reserve now so a large word is copied once as its bytes arrive.
                self.buf.reserve(self.missing);
                return Ok(None);
            }
            self.words.push(rest[header..header + len].to_vec());
            self.sentence_bytes += len;
            self.pos += header + len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(len: u32) -> Vec<u8> {
        encode_length(len).as_ref().to_vec()
    }

    fn dec(bytes: &[u8]) -> u64 {
        match decode_length(bytes) {
            Ok(Length::Known { header, len }) => {
                assert_eq!(
                    header,
                    bytes.len(),
                    "prefix {bytes:02X?} used the wrong number of bytes"
                );
                len
            }
            _ => panic!("prefix {bytes:02X?} did not decode"),
        }
    }

    #[test]
    fn length_boundaries() {
        let cases: &[(u32, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (0x7F, &[0x7F]),
            (0x80, &[0x80, 0x80]),
            (0x3FFF, &[0xBF, 0xFF]),
            (0x4000, &[0xC0, 0x40, 0x00]),
            (0x1F_FFFF, &[0xDF, 0xFF, 0xFF]),
            (0x20_0000, &[0xE0, 0x20, 0x00, 0x00]),
            (0xFFF_FFFF, &[0xEF, 0xFF, 0xFF, 0xFF]),
            (0x1000_0000, &[0xF0, 0x10, 0x00, 0x00, 0x00]),
            (u32::MAX, &[0xF0, 0xFF, 0xFF, 0xFF, 0xFF]),
        ];
        for &(len, bytes) in cases {
            assert_eq!(enc(len), bytes, "encoding {len:#X}");
            assert_eq!(dec(bytes), u64::from(len), "decoding {bytes:02X?}");
        }
    }

    #[test]
    fn every_length_round_trips_near_the_boundaries() {
        for boundary in [0x80u32, 0x4000, 0x20_0000, 0x1000_0000] {
            for len in boundary - 3..boundary + 3 {
                assert_eq!(dec(&enc(len)), u64::from(len));
            }
        }
    }

    #[test]
    fn longer_than_needed_lengths_are_accepted() {
        assert_eq!(dec(&[0x80, 0x05]), 5);
        assert_eq!(dec(&[0xF0, 0x00, 0x00, 0x00, 0x05]), 5);
    }

    #[test]
    fn control_bytes_are_errors() {
        for byte in 0xF8..=0xFFu8 {
            let mut d = Decoder::new();
            d.feed(&[byte]);
            assert_eq!(d.next_sentence(), Err(ProtocolError::ControlByte(byte)));
        }
        for byte in 0xF1..=0xF7u8 {
            let mut d = Decoder::new();
            d.feed(&[byte, 0, 0, 0, 0]);
            assert_eq!(d.next_sentence(), Err(ProtocolError::BadLengthPrefix(byte)));
        }
    }

    #[test]
    fn control_byte_after_words_is_an_error() {
        let mut d = Decoder::new();
        d.feed(&[3, b'!', b'r', b'e', 0xF8]);
        assert_eq!(d.next_sentence(), Err(ProtocolError::ControlByte(0xF8)));
    }

    #[test]
    fn empty_sentences_are_ignored() {
        let mut d = Decoder::new();
        d.feed(&[0, 0, 0]);
        d.feed(&encode_sentence(&["!done"]));
        d.feed(&[0]);
        let s = d.next_sentence().expect("valid").expect("complete");
        assert_eq!(s.words(), &[b"!done".to_vec()]);
        assert_eq!(d.next_sentence(), Ok(None));
        assert!(d.is_idle());
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_sentences() {
        let big = vec![b'x'; 0x4001];
        let words: Vec<&[u8]> = vec![b"/ip/address/add", b"=address=10.0.0.1/24", b"", &big[..]];
        // The empty word in the middle ends the first sentence.
        let mut bytes = encode_sentence(&words[..2]);
        bytes.extend(encode_sentence(&[b"!re".as_slice(), &big]));
        bytes.extend(encode_sentence(&[b"!done".as_slice()]));
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for byte in &bytes {
            d.feed(std::slice::from_ref(byte));
            while let Some(s) = d.next_sentence().expect("valid") {
                got.push(s.into_words());
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            vec![
                b"/ip/address/add".to_vec(),
                b"=address=10.0.0.1/24".to_vec()
            ]
        );
        assert_eq!(got[1][1].len(), 0x4001);
        assert_eq!(got[2], vec![b"!done".to_vec()]);
        assert!(d.is_idle());
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn partial_sentence_is_not_idle() {
        let mut d = Decoder::new();
        d.feed(&[5, b'!', b'd']);
        assert_eq!(d.next_sentence(), Ok(None));
        assert!(!d.is_idle());
        d.feed(b"one");
        assert_eq!(d.next_sentence(), Ok(None));
        assert!(
            !d.is_idle(),
            "a word without the end of its sentence is still partial"
        );
    }

    #[test]
    fn oversized_word_is_refused_before_its_bytes_arrive() {
        let mut d = Decoder::with_limits(100, 1000);
        d.feed(encode_length(101).as_ref());
        assert_eq!(
            d.next_sentence(),
            Err(ProtocolError::WordTooLong { len: 101, max: 100 })
        );
        let mut d = Decoder::new();
        d.feed(&[0xF0, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            d.next_sentence(),
            Err(ProtocolError::WordTooLong { .. })
        ));
    }

    #[test]
    fn oversized_sentence_is_refused() {
        let mut d = Decoder::with_limits(100, 150);
        let word = [b'a'; 80];
        d.feed(&encode_sentence(&[&word[..], &word[..]]));
        assert_eq!(
            d.next_sentence(),
            Err(ProtocolError::SentenceTooLong { max: 150 })
        );
    }

    #[test]
    fn words_at_the_caps_are_accepted() {
        let mut d = Decoder::with_limits(100, 200);
        let word = [b'a'; 100];
        d.feed(&encode_sentence(&[&word[..], &word[..]]));
        let s = d
            .next_sentence()
            .expect("within the caps")
            .expect("complete");
        assert_eq!(s.words().len(), 2);
    }

    #[test]
    fn bytes_are_kept_verbatim() {
        let word = [0xFFu8, 0x00, 0xC3, 0x28, b'='];
        let mut d = Decoder::new();
        d.feed(&encode_sentence(&[&word[..]]));
        let s = d.next_sentence().expect("valid").expect("complete");
        assert_eq!(s.words()[0], word);
    }

    #[test]
    fn many_sentences_in_one_feed() {
        let mut bytes = Vec::new();
        for i in 0..1000 {
            bytes.extend(encode_sentence(&["!re", &format!("=n={i}")]));
        }
        let mut d = Decoder::new();
        d.feed(&bytes);
        let mut n = 0;
        while let Some(s) = d.next_sentence().expect("valid") {
            assert_eq!(s.words()[1], format!("=n={n}").into_bytes());
            n += 1;
        }
        assert_eq!(n, 1000);
    }

    /// A reader handing out at most `step` bytes per read, noting the room it was offered.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
        offered: Vec<usize>,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.offered.push(buf.len());
            let n = buf.len().min(self.step).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn reads_into_its_own_buffer_however_the_bytes_come() {
        let long = [b"=a=".as_slice(), &[b'x'; 20_000]].concat();
        let mut data = encode_sentence(&[b"!re".as_slice(), &long]);
        data.extend(encode_sentence(&["!done", "=ret=7"]));
        for step in [1, 7, 3000, 100_000] {
            let mut reader = Trickle {
                data: data.clone(),
                at: 0,
                step,
                offered: Vec::new(),
            };
            let mut d = Decoder::new();
            let mut got = Vec::new();
            while got.len() < 2 {
                match d.next_sentence().expect("valid") {
                    Some(s) => got.push(s),
                    None => assert!(d.read_from(&mut reader).expect("read") > 0),
                }
            }
            assert_eq!(got[0].words()[1], long, "step {step}");
            assert_eq!(
                got[1].attribute("ret"),
                Some(b"7".as_slice()),
                "step {step}"
            );
            assert!(d.is_idle(), "step {step}");
            assert_eq!(
                d.read_from(&mut reader).expect("read"),
                0,
                "the end, step {step}"
            );
            // Once the long word's length is known, a read offers room for all of it.
            assert!(
                reader
                    .offered
                    .iter()
                    .any(|&room| room >= 20_000 - step.min(20_000)),
                "step {step}: offered {:?}",
                &reader.offered[..reader.offered.len().min(8)]
            );
        }
    }

    #[test]
    fn feeding_after_reading_keeps_the_order() {
        let mut d = Decoder::new();
        let mut reader = io::Cursor::new(encode_sentence(&["!re", "=n=1"]));
        let first = encode_sentence(&["!re", "=n=1"]);
        // Half a sentence by reading, the rest by feeding, then a whole one fed.
        let mut half = Trickle {
            data: first[..4].to_vec(),
            at: 0,
            step: 4,
            offered: Vec::new(),
        };
        assert_eq!(d.read_from(&mut half).expect("read"), 4);
        d.feed(&first[4..]);
        d.feed(&encode_sentence(&["!done"]));
        let s = d.next_sentence().expect("valid").expect("complete");
        assert_eq!(s.attribute("n"), Some(b"1".as_slice()));
        assert_eq!(
            d.next_sentence()
                .expect("valid")
                .expect("complete")
                .command(),
            b"!done"
        );
        assert!(d.read_from(&mut reader).expect("read") > 0);
        assert_eq!(
            d.next_sentence()
                .expect("valid")
                .expect("complete")
                .attribute("n"),
            Some(b"1".as_slice())
        );
    }
}
