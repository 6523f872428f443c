//! Blocking helpers over `std::io`, for guests that own a plain socket.

use std::fmt;
use std::io::{self, Read, Write};

use super::codec::{Decoder, ProtocolError, encode_sentence};
use super::sentence::Sentence;

/// Why [`read_sentence`] returned no sentence.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Protocol(ProtocolError),
    /// The peer closed the connection; `mid_sentence` tells whether it was inside one.
    Closed {
        mid_sentence: bool,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::Protocol(e) => write!(f, "protocol violation: {e}"),
            Self::Closed { mid_sentence: true } => {
                f.write_str("connection closed in the middle of a sentence")
            }
            Self::Closed {
                mid_sentence: false,
            } => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Encodes and writes one sentence.
pub fn write_sentence<W: Write + ?Sized, S: AsRef<[u8]>>(
    writer: &mut W,
    words: &[S],
) -> io::Result<()> {
    writer.write_all(&encode_sentence(words))?;
    writer.flush()
}

/// Reads until `decoder` yields a sentence. Bytes read past it stay in the decoder for
/// the next call, so use one decoder per connection.
pub fn read_sentence<R: Read + ?Sized>(
    reader: &mut R,
    decoder: &mut Decoder,
) -> Result<Sentence, ReadError> {
    loop {
        if let Some(sentence) = decoder.next_sentence().map_err(ReadError::Protocol)? {
            return Ok(sentence);
        }
        let n = match decoder.read_from(reader) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        if n == 0 {
            return Err(ReadError::Closed {
                mid_sentence: !decoder.is_idle(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sentences_back_to_back_then_reports_the_close() {
        let mut wire = Vec::new();
        write_sentence(&mut wire, &["!re", "=a=1"]).expect("vec");
        write_sentence(&mut wire, &["!done"]).expect("vec");
        let mut reader = io::Cursor::new(wire);
        let mut d = Decoder::new();
        assert_eq!(
            read_sentence(&mut reader, &mut d).expect("one").command(),
            b"!re"
        );
        assert_eq!(
            read_sentence(&mut reader, &mut d).expect("two").command(),
            b"!done"
        );
        assert!(matches!(
            read_sentence(&mut reader, &mut d),
            Err(ReadError::Closed {
                mid_sentence: false
            })
        ));
    }

    #[test]
    fn close_mid_sentence() {
        let mut reader = io::Cursor::new(vec![3, b'!', b'r']);
        let mut d = Decoder::new();
        assert!(matches!(
            read_sentence(&mut reader, &mut d),
            Err(ReadError::Closed { mid_sentence: true })
        ));
    }
}
