//! The RouterOS API wire protocol, shared by the RouterOS transport plugin (a
//! wasm32-wasip2 guest doing blocking `std::io`) and the engine's simulator (async
//! tokio). The core is sans-IO so both can drive it: [`encode_sentence`] turns words
//! into bytes, and a [`Decoder`] is fed whatever bytes arrive and hands back complete
//! [`Sentence`]s, refusing anything that breaks the protocol or its size caps.
//!
//! Layout: `codec` holds the length prefixes and the incremental decoder, `sentence`
//! the word and reply vocabulary (attributes, `.tag`, queries, `!re`/`!done`/`!trap`/
//! `!fatal`/`!empty`), `login` both login flows, and `io` thin blocking helpers over
//! `Read`/`Write` for guests.
//!
//! Words are bytes: RouterOS sends whatever its configuration holds, which is not
//! always UTF-8, so text is only decoded (lossily) where a caller asks for strings.
//!
//! ```
//! use yardmaster_plugin_sdk::routeros::{encode_sentence, Decoder, Reply};
//!
//! let bytes = encode_sentence(&["!done", "=ret=*1", ".tag=7"]);
//! let mut decoder = Decoder::new();
//! decoder.feed(&bytes);
//! let sentence = decoder.next_sentence()?.expect("a whole sentence was fed");
//! let reply = Reply::parse(&sentence)?;
//! assert_eq!(reply.tag(), Some("7"));
//! assert_eq!(reply.attributes().get("ret"), Some("*1"));
//! # Ok::<(), yardmaster_plugin_sdk::routeros::ProtocolError>(())
//! ```

mod codec;
mod io;
mod login;
mod output;
mod sentence;

pub use codec::{
    DEFAULT_MAX_SENTENCE, DEFAULT_MAX_WORD, Decoder, EncodedLength, ProtocolError, encode_length,
    encode_sentence, encode_word,
};
pub use io::{ReadError, read_sentence, write_sentence};
pub use login::{LoginError, challenge_login_words, challenge_response, plain_login_words};
pub use output::script_error;
pub use sentence::{Attributes, Query, Reply, Sentence, Word, parse_word};
