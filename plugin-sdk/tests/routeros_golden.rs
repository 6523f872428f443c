//! Golden byte sequences for the RouterOS codec: every `golden/*.words` file (one word
//! per line, a blank line between sentences, `\xNN` for any byte, `\{N:c}` for N
//! copies of `c`) must encode to the `.bin` beside it, byte for byte, and that `.bin`
//! fed one byte at a time must decode back to the same words. The `.bin` files were
//! produced by an encoder written separately from this crate. `golden/errors/*.bin`
//! must fail with the message in the `.err` beside it.

use std::fs;
use std::path::{Path, PathBuf};

use yardmaster_plugin_sdk::routeros::{Decoder, encode_sentence};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn parse_line(line: &str) -> Vec<u8> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"\\x") {
            let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 4;
        } else if bytes[i..].starts_with(b"\\{") {
            let end = i + line[i..].find('}').expect("closing brace");
            let (count, ch) = line[i + 2..end].split_once(':').expect("N:c");
            let count = match count.strip_prefix("0x") {
                Some(hex) => usize::from_str_radix(hex, 16),
                None => count.parse(),
            }
            .expect("count");
            out.extend(std::iter::repeat_n(ch.as_bytes()[0], count));
            i = end + 1;
        } else if bytes[i..].starts_with(b"\\\\") {
            out.push(b'\\');
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn parse_words(text: &str) -> Vec<Vec<Vec<u8>>> {
    let mut sentences = Vec::new();
    let mut current = Vec::new();
    for line in text.split('\n') {
        if line.is_empty() {
            if !current.is_empty() {
                sentences.push(std::mem::take(&mut current));
            }
        } else {
            current.push(parse_line(line));
        }
    }
    if !current.is_empty() {
        sentences.push(current);
    }
    sentences
}

fn decode_byte_by_byte(bytes: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let mut decoder = Decoder::new();
    let mut sentences = Vec::new();
    for byte in bytes {
        decoder.feed(std::slice::from_ref(byte));
        while let Some(s) = decoder.next_sentence().map_err(|e| e.to_string())? {
            sentences.push(s.into_words());
        }
    }
    if !decoder.is_idle() {
        return Err("input ended inside a sentence".into());
    }
    Ok(sentences)
}

fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("golden directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

#[test]
fn words_encode_to_golden_bytes_and_back() {
    let files = files_with_extension(&golden_dir(), "words");
    assert!(files.len() >= 6, "golden files are missing");
    for words_file in files {
        let sentences = parse_words(&fs::read_to_string(&words_file).expect("words file"));
        let expected =
            fs::read(words_file.with_extension("bin")).expect("bin beside the words file");
        let encoded: Vec<u8> = sentences.iter().flat_map(|s| encode_sentence(s)).collect();
        assert!(
            encoded == expected,
            "{} does not encode to its .bin",
            words_file.display()
        );
        let decoded = decode_byte_by_byte(&expected).expect("golden bytes decode");
        assert_eq!(
            decoded,
            sentences,
            "{} does not decode to its words",
            words_file.display()
        );
    }
}

#[test]
fn empty_sentences_on_the_wire_are_ignored() {
    let wire = fs::read(golden_dir().join("empty_sentences.wire")).expect("wire file");
    let expected = parse_words(
        &fs::read_to_string(golden_dir().join("empty_sentences.words")).expect("words"),
    );
    assert_eq!(decode_byte_by_byte(&wire).expect("valid"), expected);
}

#[test]
fn broken_input_fails_with_the_golden_message() {
    let files = files_with_extension(&golden_dir().join("errors"), "bin");
    assert!(!files.is_empty());
    for bin in files {
        let expected = fs::read_to_string(bin.with_extension("err")).expect("err beside the bin");
        let got = decode_byte_by_byte(&fs::read(&bin).expect("bin")).expect_err("must fail");
        assert_eq!(got, expected.trim_end(), "{}", bin.display());
    }
}
