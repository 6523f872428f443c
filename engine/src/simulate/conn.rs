//! One API connection to a simulated router: login (plain or challenge, per profile),
//! commands with tags, `/cancel`, and the faults the router was told to show.
//!
//! Replies are computed as soon as a command arrives, so state changes happen in
//! order; when a delay fault applies, only the sending waits, in a task per reply that
//! `/cancel` can abort. Every task belongs to the connection and ends with it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use yardmaster_plugin_sdk::routeros::{
    Decoder, Sentence, Word, challenge_response, encode_sentence,
};

use super::state::{COMMAND_MENUS, Ctx, MenuKind, Trap, is_menu_prefix, menu};
use super::{Profile, Router, script};

/// Caps before login: a login sentence is small, and a stranger gets little memory.
const PRE_LOGIN_WORD: usize = 4 * 1024;
const PRE_LOGIN_SENTENCE: usize = 16 * 1024;
/// Caps after login: scripts can be long, but not without end.
const MAX_WORD: usize = 1024 * 1024;
const MAX_SENTENCE: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct Session {
    logged_in: bool,
    challenge: Option<[u8; 16]>,
    /// Whether a command after login has been answered, for faults aimed at "the first".
    answered_after_login: bool,
}

enum Then {
    Continue,
    /// Send, then close the connection.
    Close,
    /// Send part of the first sentence, then close.
    DropMidSentence,
    /// Cancel the command with this tag (all of them when None), then send.
    Cancel(Option<Vec<u8>>),
}

struct Outcome {
    replies: Vec<Vec<String>>,
    then: Then,
}

impl Outcome {
    fn replies(replies: Vec<Vec<String>>) -> Self {
        Self {
            replies,
            then: Then::Continue,
        }
    }
    fn done() -> Self {
        Self::replies(vec![vec!["!done".into()]])
    }
    fn done_ret(ret: String) -> Self {
        Self::replies(vec![vec!["!done".into(), format!("=ret={ret}")]])
    }
    fn trap(trap: Trap) -> Self {
        let mut words = vec!["!trap".to_owned()];
        if let Some(c) = trap.category {
            words.push(format!("=category={c}"));
        }
        words.push(format!("=message={}", trap.message));
        Self::replies(vec![words, vec!["!done".into()]])
    }
    fn fatal(reason: &str) -> Self {
        Self {
            replies: vec![vec!["!fatal".into(), reason.into()]],
            then: Then::Close,
        }
    }
}

fn encode(replies: &[Vec<String>], tag: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for words in replies {
        let mut words: Vec<Vec<u8>> = words.iter().map(|w| w.clone().into_bytes()).collect();
        if let Some(tag) = tag
            && words.first().is_some_and(|w| w != b"!fatal")
        {
            let mut word = b".tag=".to_vec();
            word.extend_from_slice(tag);
            words.push(word);
        }
        out.extend(encode_sentence(&words));
    }
    out
}

fn new_challenge() -> [u8; 16] {
    // Per-process random keys make these unpredictable enough for a simulator, without
    // a random number crate.
    let a = RandomState::new().hash_one(std::time::Instant::now());
    let b = RandomState::new().hash_one(a);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

/// Counts an answer held back by a `delay` fault until it is handed to the writer, or
/// cancelled.
struct HeldBack(Arc<AtomicUsize>);

impl HeldBack {
    fn new(count: &Arc<AtomicUsize>) -> HeldBack {
        count.fetch_add(1, Ordering::Relaxed);
        HeldBack(count.clone())
    }
}

impl Drop for HeldBack {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one connection until the peer leaves, the router goes offline, a fault ends
/// it, or the fleet shuts down.
pub(crate) async fn serve<S>(stream: S, router: Arc<Router>, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    router.stats.connections.fetch_add(1, Ordering::Relaxed);
    let mut online = router.online.subscribe();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut decoder = Decoder::with_limits(PRE_LOGIN_WORD, PRE_LOGIN_SENTENCE);
    let mut session = Session::default();
    let mut buf = vec![0u8; 4096];
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let mut delayed: JoinSet<()> = JoinSet::new();
    let mut by_tag: HashMap<Vec<u8>, AbortHandle> = HashMap::new();
    let delay = router.faults.delay;
    let held_back = Arc::new(AtomicUsize::new(0));
    'conn: loop {
        tokio::select! {
            () = super::until(&mut shutdown, true) => break,
            () = super::until(&mut online, false) => break,
            Some(bytes) = rx.recv() => {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            Some(_) = delayed.join_next() => {}
            read = rd.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                decoder.feed(&buf[..n]);
                loop {
                    let sentence = match decoder.next_sentence() {
                        Ok(Some(s)) => s,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(router = router.index, "closing a connection that broke the protocol: {e}");
                            break 'conn;
                        }
                    };
                    let tag = sentence.tag().map(<[u8]>::to_vec);
                    // A client that waited for every answer before asking again finds
                    // none held back.
                    if sentence.command_str() != "/quit" && held_back.load(Ordering::Relaxed) == 0 {
                        router.stats.round_trips.fetch_add(1, Ordering::Relaxed);
                    }
                    let outcome = handle(&router, &mut session, &sentence);
                    if session.logged_in {
                        decoder.set_limits(MAX_WORD, MAX_SENTENCE);
                    }
                    let Outcome { replies, then } = outcome;
                    let first_len = replies.first().map(|w| encode(std::slice::from_ref(w), tag.as_deref()).len());
                    let mut bytes = Vec::new();
                    match &then {
                        Then::Cancel(target) => {
                            let targets: Vec<Vec<u8>> = match target {
                                Some(t) => vec![t.clone()],
                                None => by_tag.keys().cloned().collect(),
                            };
                            let mut found = false;
                            for t in targets {
                                if let Some(handle) = by_tag.remove(&t)
                                    && !handle.is_finished()
                                {
                                    handle.abort();
                                    found = true;
                                    let interrupted = vec![
                                        vec!["!trap".into(), "=category=2".into(), "=message=interrupted".into()],
                                        vec!["!done".into()],
                                    ];
                                    bytes.extend(encode(&interrupted, Some(&t)));
                                }
                            }
                            let own = if found || target.is_none() {
                                replies
                            } else {
                                vec![
                                    vec!["!trap".into(), "=category=0".into(), "=message=no such command or tag".into()],
                                    vec!["!done".into()],
                                ]
                            };
                            bytes.extend(encode(&own, tag.as_deref()));
                        }
                        _ => bytes = encode(&replies, tag.as_deref()),
                    }
                    match then {
                        Then::Continue | Then::Cancel(_) => match delay {
                            Some(d) => {
                                let tx = tx.clone();
                                let held = HeldBack::new(&held_back);
                                let handle = delayed.spawn(async move {
                                    tokio::time::sleep(d).await;
                                    let _ = tx.send(bytes).await;
                                    drop(held);
                                });
                                if let Some(tag) = tag {
                                    if by_tag.len() > 64 {
                                        by_tag.retain(|_, h| !h.is_finished());
                                    }
                                    by_tag.insert(tag, handle);
                                }
                            }
                            None => {
                                if wr.write_all(&bytes).await.is_err() {
                                    break 'conn;
                                }
                            }
                        },
                        Then::Close => {
                            if let Some(d) = delay {
                                tokio::time::sleep(d).await;
                            }
                            let _ = wr.write_all(&bytes).await;
                            let _ = wr.flush().await;
                            break 'conn;
                        }
                        Then::DropMidSentence => {
                            let cut = first_len.map_or(1, |len| (len / 2).max(1));
                            let _ = wr.write_all(&bytes[..cut.min(bytes.len())]).await;
                            let _ = wr.flush().await;
                            break 'conn;
                        }
                    }
                }
            }
        }
    }
    let _ = wr.shutdown().await;
    delayed.shutdown().await;
}

fn attr(sentence: &Sentence, name: &str) -> Option<String> {
    sentence
        .attribute(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn login(router: &Router, session: &mut Session, sentence: &Sentence) -> Outcome {
    let profile = router.shared.profile;
    let name = attr(sentence, "name");
    let password = attr(sentence, "password");
    let response = attr(sentence, "response");
    let user_ok = name.as_deref() == Some(router.shared.user.as_str());
    let fail = |message: &str| {
        router.stats.failed_logins.fetch_add(1, Ordering::Relaxed);
        Outcome::replies(vec![
            vec!["!trap".into(), format!("=message={message}")],
            vec!["!done".into()],
        ])
    };
    let succeed = |session: &mut Session| {
        session.logged_in = true;
        router.stats.logins.fetch_add(1, Ordering::Relaxed);
        Outcome::done()
    };
    if let Some(response) = response {
        if profile == Profile::V7_18 {
            return fail("invalid user name or password (6)");
        }
        let Some(challenge) = session.challenge.take() else {
            return fail("cannot log in");
        };
        let expected =
            challenge_response(router.shared.password.as_bytes(), &hex::encode(challenge));
        let ok = user_ok && expected.is_ok_and(|e| e == response) && !router.faults.refuse_login;
        return if ok {
            succeed(session)
        } else {
            fail("cannot log in")
        };
    }
    // RouterOS before 6.43 answers every login with a challenge; 6.43 to 6.45 still do
    // when no password is given, so old clients keep working.
    if profile == Profile::V6_42 || (profile == Profile::V6_45 && password.is_none()) {
        let challenge = new_challenge();
        session.challenge = Some(challenge);
        return Outcome::done_ret(hex::encode(challenge));
    }
    let ok = user_ok
        && password.as_deref() == Some(router.shared.password.as_str())
        && !router.faults.refuse_login;
    if ok {
        succeed(session)
    } else {
        fail("invalid user name or password (6)")
    }
}

fn handle(router: &Router, session: &mut Session, sentence: &Sentence) -> Outcome {
    let command = sentence.command_str().into_owned();
    if command != "/quit" {
        router.stats.requests.fetch_add(1, Ordering::Relaxed);
    }
    if command == "/login" {
        return login(router, session, sentence);
    }
    if !session.logged_in {
        return Outcome::fatal("not logged in");
    }
    router.stats.commands.fetch_add(1, Ordering::Relaxed);
    if !session.answered_after_login {
        session.answered_after_login = true;
        if router.faults.fatal {
            return Outcome::fatal("session terminated on request");
        }
        if router.faults.drop_mid_sentence {
            let mut outcome = command_outcome(router, &command, sentence);
            outcome.then = Then::DropMidSentence;
            return outcome;
        }
    }
    command_outcome(router, &command, sentence)
}

fn command_outcome(router: &Router, command: &str, sentence: &Sentence) -> Outcome {
    let Some(path) = command.strip_prefix('/') else {
        return Outcome::trap(Trap::new(0, "no such command"));
    };
    let attrs: Vec<(String, String)> = sentence.attributes().into_inner();
    let take = |attrs: &mut Vec<(String, String)>, key: &str| -> Option<String> {
        let i = attrs.iter().position(|(n, _)| n == key)?;
        Some(attrs.remove(i).1)
    };
    let mut attrs = attrs;
    match path {
        "quit" => return Outcome::fatal("session terminated on request"),
        "cancel" => {
            let tag = take(&mut attrs, "tag").map(String::into_bytes);
            return Outcome {
                replies: vec![vec!["!done".into()]],
                then: Then::Cancel(tag),
            };
        }
        _ => {}
    }
    let (menu_path, verb) = match path.rsplit_once('/') {
        Some((m, v)) => (m, v),
        None => ("", path),
    };
    let profile = router.shared.profile;
    router.with_state(|state, ctx| -> Outcome {
        let ok_or_trap = |r: Result<Outcome, Trap>| r.unwrap_or_else(Outcome::trap);
        match (menu_path, verb) {
            ("", "execute") => {
                let Some(source) = take(&mut attrs, "script") else {
                    return Outcome::trap(Trap::new(1, "missing value(s) of argument(s) script"));
                };
                let as_string = take(&mut attrs, "as-string").is_some();
                if as_string && profile != Profile::V7_18 {
                    return Outcome::trap(Trap::unknown_parameter("as-string"));
                }
                let file = take(&mut attrs, "file");
                if let Some((name, _)) = attrs.first() {
                    return Outcome::trap(Trap::unknown_parameter(name));
                }
                let output = script::execute(state, ctx, &source);
                if let Some(file) = file {
                    let file = if file.ends_with(".txt") {
                        file
                    } else {
                        format!("{file}.txt")
                    };
                    state.save_file(&file, ".txt file", &output, ctx);
                }
                if as_string {
                    Outcome::done_ret(output)
                } else {
                    let job = router.stats.jobs.fetch_add(1, Ordering::Relaxed) + 1;
                    Outcome::done_ret(format!("*{job:X}"))
                }
            }
            ("", "export") => {
                let text = state.export(ctx);
                match take(&mut attrs, "file") {
                    Some(file) => {
                        let file = if file.ends_with(".rsc") {
                            file
                        } else {
                            format!("{file}.rsc")
                        };
                        state.save_file(&file, "script", &text, ctx);
                        Outcome::done()
                    }
                    None => Outcome::done_ret(text),
                }
            }
            ("system/backup", "save") => {
                let name = take(&mut attrs, "name").unwrap_or_else(|| state.identity.clone());
                for (n, _) in &attrs {
                    if !matches!(n.as_str(), "dont-encrypt" | "password" | "encryption") {
                        return Outcome::trap(Trap::unknown_parameter(n));
                    }
                }
                state.save_backup(&name, ctx);
                Outcome::done()
            }
            ("system/backup", "load") => {
                let Some(name) = take(&mut attrs, "name") else {
                    return Outcome::trap(Trap::new(1, "missing value(s) of argument(s) name"));
                };
                for (n, _) in &attrs {
                    if n != "password" {
                        return Outcome::trap(Trap::unknown_parameter(n));
                    }
                }
                ok_or_trap(state.load_backup(&name).map(|()| Outcome::done()))
            }
            ("log", level @ ("info" | "warning" | "error" | "debug")) => {
                let message = take(&mut attrs, "message").unwrap_or_default();
                state.log(level, &message, ctx);
                Outcome::done()
            }
            ("system/script", "run") => {
                let refs = take(&mut attrs, ".id")
                    .or_else(|| take(&mut attrs, "number"))
                    .unwrap_or_default();
                ok_or_trap(state.start_script(&refs, ctx).map(|source| {
                    script::execute(state, ctx, &source);
                    Outcome::done()
                }))
            }
            _ => {
                let Some(m) = menu(menu_path).filter(|m| m.has_command(verb)) else {
                    let known_menu = menu(menu_path).is_some()
                        || COMMAND_MENUS.iter().any(|(p, _)| *p == menu_path)
                        || (is_menu_prefix(menu_path) && !menu_path.is_empty());
                    let message = if known_menu {
                        "no such command"
                    } else {
                        "no such command prefix"
                    };
                    return Outcome::trap(Trap::new(0, message));
                };
                ok_or_trap(menu_command(state, ctx, m, verb, attrs, sentence, profile))
            }
        }
    })
}

fn menu_command(
    state: &mut super::state::State,
    ctx: &Ctx<'_>,
    m: &'static super::state::Menu,
    verb: &str,
    mut attrs: Vec<(String, String)>,
    sentence: &Sentence,
    profile: Profile,
) -> Result<Outcome, Trap> {
    let take = |attrs: &mut Vec<(String, String)>, key: &str| -> Option<String> {
        let i = attrs.iter().position(|(n, _)| n == key)?;
        Some(attrs.remove(i).1)
    };
    let refs =
        |attrs: &mut Vec<(String, String)>| take(attrs, ".id").or_else(|| take(attrs, "numbers"));
    match verb {
        "print" | "getall" => {
            let proplist = take(&mut attrs, ".proplist");
            let count_only = take(&mut attrs, "count-only").is_some();
            for (name, _) in &attrs {
                if !matches!(
                    name.as_str(),
                    "detail" | "without-paging" | "terse" | "stats" | "brief"
                ) {
                    return Err(Trap::unknown_parameter(name));
                }
            }
            let queries: Vec<_> = sentence
                .parsed()
                .filter_map(|w| match w {
                    Word::Query(q) => Some(q),
                    _ => None,
                })
                .collect();
            let rows = state.print(m, &queries, proplist.as_deref(), ctx)?;
            if count_only {
                return Ok(Outcome::done_ret(rows.len().to_string()));
            }
            let mut replies: Vec<Vec<String>> = rows
                .into_iter()
                .map(|row| {
                    let mut words = vec!["!re".to_owned()];
                    words.extend(row.into_iter().map(|(n, v)| format!("={n}={v}")));
                    words
                })
                .collect();
            if replies.is_empty() && profile == Profile::V7_18 {
                replies.push(vec!["!empty".into()]);
            }
            replies.push(vec!["!done".into()]);
            Ok(Outcome::replies(replies))
        }
        "add" => state.add(m, &attrs, ctx).map(Outcome::done_ret),
        "set" => {
            let r = if m.kind == MenuKind::Single {
                None
            } else {
                Some(refs(&mut attrs).unwrap_or_default())
            };
            state.set(m, r.as_deref(), &attrs).map(|()| Outcome::done())
        }
        "enable" | "disable" => {
            let r = refs(&mut attrs).unwrap_or_default();
            let value = if verb == "disable" { "yes" } else { "no" };
            state
                .set(m, Some(&r), &[("disabled".into(), value.into())])
                .map(|()| Outcome::done())
        }
        "remove" => {
            let r = refs(&mut attrs).unwrap_or_default();
            state.remove(m, &r).map(|()| Outcome::done())
        }
        "get" => {
            let id = take(&mut attrs, ".id").or_else(|| take(&mut attrs, "number"));
            let value_name = take(&mut attrs, "value-name").unwrap_or_default();
            state
                .get(m, id.as_deref(), &value_name, ctx)
                .map(Outcome::done_ret)
        }
        "find" => {
            let ids = state.find(m, &attrs)?;
            let list: Vec<String> = ids.into_iter().map(super::state::format_id).collect();
            Ok(Outcome::done_ret(list.join(";")))
        }
        "export" => Ok(Outcome::done_ret(state.export(ctx))),
        _ => Err(Trap::new(0, "no such command")),
    }
}
