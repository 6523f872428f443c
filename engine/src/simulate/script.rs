//! A small RouterOS console: enough of the scripting language to run what operators
//! schedule (`:log`, `:put`, `:local`/`:global`/`:set`, `{ }` blocks, `[ ]` command
//! substitution, `$variables`, and the menu commands of [`super::state`] in console
//! syntax, `;`- or newline-separated, with menu context lines like `/ip address`).
//!
//! As on RouterOS the whole script is parsed before anything runs, so a syntax error,
//! an unknown command or an unknown argument means nothing ran, and the output is the
//! console's error line (`syntax error (line 1 column 5)`, `bad command name foo (line
//! 1 column 2)`, `expected end of command (line 1 column 12)`). Errors while running
//! (`no such item`, `failure: ...`) stop the script after what ran before them.
//! Control flow (`:if`, `:foreach`) is not simulated: it reports `bad command name`.
//! `:delay` returns at once: simulated routers keep no wall clock.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::Profile;
use super::state::{
    COMMAND_MENUS, Ctx, MenuKind, State, Trap, format_id, is_menu_prefix, menu, quote,
};

/// Scripts may call scripts; a loop of them must end.
const MAX_DEPTH: usize = 8;
/// Output a script may produce before it is cut, so `:put` in a long script stays bounded.
const MAX_OUTPUT: usize = 1024 * 1024;

#[derive(Debug, Clone)]
enum Expr {
    Text(String),
    Var(String),
    /// A quoted string: literal parts and variables.
    Interp(Vec<Expr>),
    Sub(Box<Stmt>),
}

#[derive(Debug, Clone)]
struct Arg {
    name: Option<String>,
    value: Option<Expr>,
}

#[derive(Debug, Clone)]
enum Stmt {
    Log {
        level: &'static str,
        message: Option<Expr>,
    },
    Put(Option<Expr>),
    Local {
        name: String,
        value: Option<Expr>,
    },
    Assign {
        name: String,
        value: Option<Expr>,
    },
    Error(Option<Expr>),
    Nothing,
    Cd,
    Block(Vec<Stmt>),
    Menu {
        path: String,
        verb: String,
        args: Vec<Arg>,
    },
}

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    Ids(Vec<u32>),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            Self::Ids(ids) => ids
                .iter()
                .map(|&i| format_id(i))
                .collect::<Vec<_>>()
                .join(";"),
        }
    }
    fn refs(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            Self::Ids(ids) => ids
                .iter()
                .map(|&i| format_id(i))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

struct Parser<'s> {
    src: &'s [u8],
    pos: usize,
    profile: Profile,
    cwd: String,
}

type ParseResult<T> = Result<T, String>;

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

impl<'s> Parser<'s> {
    fn line_col(&self, pos: usize) -> (usize, usize) {
        let before = &self.src[..pos.min(self.src.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let col = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
        (line, col)
    }

    fn syntax_error(&self, pos: usize) -> String {
        let (l, c) = self.line_col(pos);
        format!("syntax error (line {l} column {c})")
    }
    fn bad_command(&self, name: &str, pos: usize) -> String {
        let (l, c) = self.line_col(pos);
        format!("bad command name {name} (line {l} column {c})")
    }
    fn expected_end(&self, pos: usize) -> String {
        let (l, c) = self.line_col(pos);
        format!("expected end of command (line {l} column {c})")
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    /// Skips blanks and `\`-newline continuations, not statement ends.
    fn skip_blanks(&mut self) {
        while let Some(b) = self.peek() {
            if b == b' ' || b == b'\t' || b == b'\r' {
                self.pos += 1;
            } else if b == b'\\' && self.src.get(self.pos + 1) == Some(&b'\n') {
                self.pos += 2;
            } else {
                break;
            }
        }
    }

    fn at_end_of_statement(&self) -> bool {
        matches!(self.peek(), None | Some(b';' | b'\n' | b']' | b'}'))
    }

    fn name(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_name_byte) {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.src[start..self.pos]).into_owned()
    }

    /// Statements until `close` (or the end when `close` is None).
    fn statements(&mut self, close: Option<u8>) -> ParseResult<Vec<Stmt>> {
        let mut out = Vec::new();
        loop {
            self.skip_blanks();
            match self.peek() {
                None => {
                    return match close {
                        None => Ok(out),
                        Some(_) => Err(self.syntax_error(self.pos)),
                    };
                }
                Some(b) if Some(b) == close => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b']' | b'}') => return Err(self.syntax_error(self.pos)),
                Some(b';' | b'\n') => self.pos += 1,
                Some(b'#') => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.pos += 1;
                    }
                }
                Some(_) => {
                    let stmt = self.statement()?;
                    self.skip_blanks();
                    if !self.at_end_of_statement() {
                        return Err(self.expected_end(self.pos));
                    }
                    out.push(stmt);
                }
            }
        }
    }

    fn statement(&mut self) -> ParseResult<Stmt> {
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let saved = self.cwd.clone();
                let body = self.statements(Some(b'}'))?;
                self.cwd = saved;
                Ok(Stmt::Block(body))
            }
            Some(b':') => {
                self.pos += 1;
                self.builtin()
            }
            _ => self.menu_command(),
        }
    }

    fn builtin(&mut self) -> ParseResult<Stmt> {
        let at = self.pos;
        let name = self.name();
        match name.as_str() {
            "log" => {
                self.skip_blanks();
                let level_at = self.pos;
                let level = match self.name().as_str() {
                    "info" => "info",
                    "warning" => "warning",
                    "error" => "error",
                    "debug" => "debug",
                    "" => return Err(self.syntax_error(level_at)),
                    other => return Err(self.bad_command(other, level_at)),
                };
                let message = self.optional_expr()?;
                Ok(Stmt::Log { level, message })
            }
            "put" => Ok(Stmt::Put(self.optional_expr()?)),
            "error" => Ok(Stmt::Error(self.optional_expr()?)),
            "nothing" => Ok(Stmt::Nothing),
            "delay" => {
                self.optional_expr()?;
                Ok(Stmt::Nothing)
            }
            "local" | "global" | "set" => {
                self.skip_blanks();
                let var_at = self.pos;
                let var = self.name();
                if var.is_empty() {
                    return Err(self.syntax_error(var_at));
                }
                let value = self.optional_expr()?;
                Ok(if name == "set" {
                    Stmt::Assign { name: var, value }
                } else {
                    Stmt::Local { name: var, value }
                })
            }
            "" => Err(self.syntax_error(at)),
            other => Err(self.bad_command(other, at)),
        }
    }

    fn optional_expr(&mut self) -> ParseResult<Option<Expr>> {
        self.skip_blanks();
        if self.at_end_of_statement() {
            Ok(None)
        } else {
            self.expr().map(Some)
        }
    }

    fn expr(&mut self) -> ParseResult<Expr> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'$') => {
                self.pos += 1;
                let at = self.pos;
                let name = self.name();
                if name.is_empty() {
                    return Err(self.syntax_error(at));
                }
                Ok(Expr::Var(name))
            }
            Some(b'[') => {
                self.pos += 1;
                self.skip_blanks();
                let saved = self.cwd.clone();
                let stmt = self.statement()?;
                self.cwd = saved;
                self.skip_blanks();
                if self.peek() != Some(b']') {
                    return Err(if self.peek().is_none() {
                        self.syntax_error(self.pos)
                    } else {
                        self.expected_end(self.pos)
                    });
                }
                self.pos += 1;
                Ok(Expr::Sub(Box::new(stmt)))
            }
            _ => {
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(
                        b,
                        b' ' | b'\t' | b'\r' | b'\n' | b';' | b']' | b'}' | b'"' | b'['
                    ) {
                        break;
                    }
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(self.syntax_error(start));
                }
                Ok(Expr::Text(
                    String::from_utf8_lossy(&self.src[start..self.pos]).into_owned(),
                ))
            }
        }
    }

    fn quoted(&mut self) -> ParseResult<Expr> {
        let open = self.pos;
        self.pos += 1;
        let mut parts = Vec::new();
        let mut text: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.syntax_error(open));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.syntax_error(open));
                    };
                    self.pos += 1;
                    match e {
                        b'n' => text.push(b'\n'),
                        b'r' => text.push(b'\r'),
                        b't' => text.push(b'\t'),
                        b'\n' => {}
                        b'"' | b'\\' | b'$' | b'?' | b'_' => text.push(e),
                        _ => {
                            let hex = self.src.get(self.pos - 1..self.pos + 1);
                            match hex.and_then(|h| {
                                u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
                            }) {
                                Some(v) => {
                                    text.push(v);
                                    self.pos += 1;
                                }
                                None => return Err(self.syntax_error(self.pos - 2)),
                            }
                        }
                    }
                }
                b'$' if self.peek().is_some_and(is_name_byte) => {
                    parts.push(Expr::Text(
                        String::from_utf8_lossy(&std::mem::take(&mut text)).into_owned(),
                    ));
                    parts.push(Expr::Var(self.name()));
                }
                _ => text.push(b),
            }
        }
        parts.push(Expr::Text(String::from_utf8_lossy(&text).into_owned()));
        Ok(Expr::Interp(parts))
    }

    fn menu_command(&mut self) -> ParseResult<Stmt> {
        let mut path = if self.peek() == Some(b'/') {
            self.pos += 1;
            String::new()
        } else {
            self.cwd.clone()
        };
        let verb;
        loop {
            self.skip_blanks();
            if self.at_end_of_statement() {
                if is_menu_prefix(&path) || path.is_empty() {
                    self.cwd = path.clone();
                    return Ok(Stmt::Cd);
                }
                return Err(self.syntax_error(self.pos));
            }
            let at = self.pos;
            let word = self.name();
            if word.is_empty() {
                return Err(self.syntax_error(at));
            }
            if self.peek() == Some(b'/') && self.profile != Profile::V7_18 {
                // RouterOS 6 consoles read only the space-separated form of a path.
                let mut end = self.pos;
                while self
                    .src
                    .get(end)
                    .is_some_and(|&b| is_name_byte(b) || b == b'/')
                {
                    end += 1;
                }
                return Err(self.bad_command(&String::from_utf8_lossy(&self.src[at..end]), at));
            }
            let joined = if path.is_empty() {
                word.clone()
            } else {
                format!("{path}/{word}")
            };
            if is_menu_prefix(&joined) {
                path = joined;
                if self.peek() == Some(b'/') {
                    self.pos += 1;
                }
                continue;
            }
            let known = menu(&path).is_some_and(|m| m.has_command(&word))
                || COMMAND_MENUS
                    .iter()
                    .any(|(p, verbs)| *p == path && verbs.contains(&word.as_str()));
            if !known {
                return Err(self.bad_command(&word, at));
            }
            verb = word;
            break;
        }
        let allowed = allowed_args(&path, &verb);
        // `[find]` inside the arguments belongs to this command's menu.
        let outer = std::mem::replace(&mut self.cwd, path.clone());
        let args = self.arguments(&allowed);
        self.cwd = outer;
        Ok(Stmt::Menu {
            path,
            verb,
            args: args?,
        })
    }

    fn arguments(&mut self, allowed: &Allowed) -> ParseResult<Vec<Arg>> {
        let mut args = Vec::new();
        let mut positional = 0;
        loop {
            self.skip_blanks();
            if self.at_end_of_statement() {
                break;
            }
            let at = self.pos;
            let is_named = {
                let mut end = self.pos;
                while self.src.get(end).is_some_and(|&b| is_name_byte(b)) {
                    end += 1;
                }
                end > self.pos
                    && (self.src.get(end) == Some(&b'=')
                        || allowed
                            .flags
                            .contains(&&*String::from_utf8_lossy(&self.src[self.pos..end])))
            };
            if is_named {
                let name = self.name();
                if !(allowed.named)(&name) && !allowed.flags.contains(&name.as_str()) {
                    return Err(self.expected_end(at));
                }
                let value = if self.peek() == Some(b'=') {
                    self.pos += 1;
                    if self.at_end_of_statement() || matches!(self.peek(), Some(b' ' | b'\t')) {
                        Some(Expr::Text(String::new()))
                    } else {
                        Some(self.expr()?)
                    }
                } else {
                    None
                };
                args.push(Arg {
                    name: Some(name),
                    value,
                });
            } else {
                if positional >= allowed.positional {
                    return Err(self.expected_end(at));
                }
                positional += 1;
                let value = self.expr()?;
                args.push(Arg {
                    name: None,
                    value: Some(value),
                });
            }
        }
        Ok(args)
    }
}

struct Allowed {
    named: Box<dyn Fn(&str) -> bool>,
    flags: &'static [&'static str],
    positional: usize,
}

fn allowed_args(path: &str, verb: &str) -> Allowed {
    let m = menu(path);
    let writable =
        move |name: &str| m.is_some_and(|m| m.field(name).is_some_and(|(_, f)| f.writable));
    let any_field = move |name: &str| m.is_some_and(|m| m.field(name).is_some()) || name == ".id";
    let single = m.is_some_and(|m| m.kind == MenuKind::Single);
    let only = |names: &'static [&'static str]| -> Box<dyn Fn(&str) -> bool> {
        Box::new(move |n| names.contains(&n))
    };
    match verb {
        "add" => Allowed {
            named: Box::new(writable),
            flags: &[],
            positional: 0,
        },
        "set" => Allowed {
            named: Box::new(move |n| writable(n) || n == "numbers"),
            flags: &[],
            positional: usize::from(!single),
        },
        "find" => Allowed {
            named: Box::new(any_field),
            flags: &[],
            positional: 0,
        },
        "print" | "getall" => Allowed {
            named: only(&["file", "where"]),
            flags: &[
                "detail",
                "terse",
                "without-paging",
                "count-only",
                "as-value",
                "brief",
            ],
            positional: 0,
        },
        "get" => Allowed {
            named: only(&["number", "value-name"]),
            flags: &[],
            positional: if single { 1 } else { 2 },
        },
        "remove" | "enable" | "disable" => Allowed {
            named: only(&["numbers"]),
            flags: &[],
            positional: 1,
        },
        "run" => Allowed {
            named: only(&["number"]),
            flags: &[],
            positional: 1,
        },
        "load" => Allowed {
            named: only(&["name", "password"]),
            flags: &[],
            positional: 0,
        },
        "save" => Allowed {
            named: only(&["name", "dont-encrypt", "password", "encryption"]),
            flags: &[],
            positional: 0,
        },
        "export" => Allowed {
            named: only(&["file"]),
            flags: &[
                "compact",
                "verbose",
                "terse",
                "hide-sensitive",
                "show-sensitive",
            ],
            positional: 0,
        },
        "info" | "warning" | "error" | "debug" => Allowed {
            named: only(&["message"]),
            flags: &[],
            positional: 1,
        },
        _ => Allowed {
            named: only(&[]),
            flags: &[],
            positional: 0,
        },
    }
}

/// Runs a script on a router and returns its console output; errors are part of the
/// output, as they are on the console.
pub(crate) fn execute(state: &mut State, ctx: &Ctx<'_>, source: &str) -> String {
    let mut exec = Exec {
        state,
        ctx,
        out: String::new(),
        vars: HashMap::new(),
        depth: 0,
    };
    exec.run_source(source);
    exec.out
}

struct Exec<'a, 'c> {
    state: &'a mut State,
    ctx: &'a Ctx<'c>,
    out: String,
    vars: HashMap<String, String>,
    depth: usize,
}

impl Exec<'_, '_> {
    fn line(&mut self, text: &str) {
        if self.out.len() + text.len() <= MAX_OUTPUT {
            self.out.push_str(text);
            self.out.push_str("\r\n");
        }
    }

    fn run_source(&mut self, source: &str) {
        let mut parser = Parser {
            src: source.as_bytes(),
            pos: 0,
            profile: self.ctx.profile,
            cwd: String::new(),
        };
        match parser.statements(None) {
            Ok(stmts) => {
                if let Err(message) = self.run_all(&stmts) {
                    self.line(&message);
                }
            }
            Err(message) => self.line(&message),
        }
    }

    fn run_all(&mut self, stmts: &[Stmt]) -> Result<(), String> {
        for stmt in stmts {
            self.run(stmt)?;
        }
        Ok(())
    }

    fn eval(&mut self, expr: &Option<Expr>) -> Result<Value, String> {
        let Some(expr) = expr else {
            return Ok(Value::Str(String::new()));
        };
        Ok(match expr {
            Expr::Text(t) => Value::Str(t.clone()),
            Expr::Var(name) => Value::Str(self.vars.get(name).cloned().unwrap_or_default()),
            Expr::Interp(parts) => {
                let mut s = String::new();
                for part in parts {
                    s.push_str(&self.eval(&Some(part.clone()))?.text());
                }
                Value::Str(s)
            }
            Expr::Sub(stmt) => self.run(stmt)?,
        })
    }

    fn run(&mut self, stmt: &Stmt) -> Result<Value, String> {
        let none = Value::Str(String::new());
        match stmt {
            Stmt::Log { level, message } => {
                let text = self.eval(message)?.text();
                self.state.log(&format!("script,{level}"), &text, self.ctx);
            }
            Stmt::Put(expr) => {
                let text = self.eval(expr)?.text();
                for line in text.split('\n') {
                    self.line(line.trim_end_matches('\r'));
                }
            }
            Stmt::Local { name, value } | Stmt::Assign { name, value } => {
                let v = self.eval(value)?.text();
                self.vars.insert(name.clone(), v);
            }
            Stmt::Error(expr) => return Err(self.eval(expr)?.text()),
            Stmt::Nothing | Stmt::Cd => {}
            Stmt::Block(body) => self.run_all(body)?,
            Stmt::Menu { path, verb, args } => return self.menu(path, verb, args),
        }
        Ok(none)
    }

    fn menu(&mut self, path: &str, verb: &str, args: &[Arg]) -> Result<Value, String> {
        let mut named: Vec<(String, String)> = Vec::new();
        let mut positional: Vec<Value> = Vec::new();
        for arg in args {
            let value = self.eval(&arg.value)?;
            match &arg.name {
                Some(n) => named.push((n.clone(), value.refs())),
                None => positional.push(value),
            }
        }
        let trap = |t: Trap| t.message;
        let take = |named: &mut Vec<(String, String)>, key: &str| -> Option<String> {
            let i = named.iter().position(|(n, _)| n == key)?;
            Some(named.remove(i).1)
        };
        let ctx = self.ctx;
        if path == "system/backup" && verb == "load" {
            let name = take(&mut named, "name")
                .or_else(|| positional.first().map(Value::refs))
                .ok_or_else(|| "missing value(s) of argument(s) name".to_owned())?;
            self.state.load_backup(&name).map_err(trap)?;
            self.line("configuration restored, restarting");
            return Ok(Value::Str(String::new()));
        }
        if path == "system/backup" {
            let name = take(&mut named, "name").unwrap_or_else(|| self.state.identity.clone());
            self.state.save_backup(&name, ctx);
            self.line("Configuration backup saved");
            return Ok(Value::Str(String::new()));
        }
        if verb == "export" {
            let text = self.state.export(ctx);
            match take(&mut named, "file") {
                Some(file) => {
                    let file = if file.ends_with(".rsc") {
                        file
                    } else {
                        format!("{file}.rsc")
                    };
                    self.state.save_file(&file, "script", &text, ctx);
                }
                None => {
                    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
                        self.line(line);
                    }
                }
            }
            return Ok(Value::Str(String::new()));
        }
        let Some(m) = menu(path) else {
            return Err(format!("bad command name {verb}"));
        };
        let first = positional.first().map(Value::refs);
        match verb {
            "add" => self.state.add(m, &named, ctx).map(Value::Str).map_err(trap),
            "set" => {
                let refs = take(&mut named, "numbers").or(first);
                self.state.set(m, refs.as_deref(), &named).map_err(trap)?;
                Ok(Value::Str(String::new()))
            }
            "enable" | "disable" => {
                let refs = take(&mut named, "numbers").or(first).unwrap_or_default();
                let value = if verb == "disable" { "yes" } else { "no" };
                self.state
                    .set(m, Some(&refs), &[("disabled".into(), value.into())])
                    .map_err(trap)?;
                Ok(Value::Str(String::new()))
            }
            "remove" => {
                let refs = take(&mut named, "numbers").or(first).unwrap_or_default();
                self.state.remove(m, &refs).map_err(trap)?;
                Ok(Value::Str(String::new()))
            }
            "find" => self.state.find(m, &named).map(Value::Ids).map_err(trap),
            "get" => {
                let (id, value_name) = if m.kind == MenuKind::Single {
                    (None, take(&mut named, "value-name").or(first))
                } else {
                    let id = take(&mut named, "number").or(first);
                    (
                        id,
                        take(&mut named, "value-name")
                            .or_else(|| positional.get(1).map(Value::refs)),
                    )
                };
                let value_name = value_name.unwrap_or_default();
                self.state
                    .get(m, id.as_deref(), &value_name, ctx)
                    .map(Value::Str)
                    .map_err(trap)
            }
            "print" | "getall" => {
                let rows = self.state.print(m, &[], None, ctx).map_err(trap)?;
                if named.iter().any(|(n, _)| n == "count-only") {
                    self.line(&rows.len().to_string());
                } else {
                    self.print_rows(m.kind == MenuKind::Single, &rows);
                }
                Ok(Value::Str(String::new()))
            }
            "run" => {
                let refs = take(&mut named, "number").or(first).unwrap_or_default();
                let source = self.state.start_script(&refs, ctx).map_err(trap)?;
                if self.depth >= MAX_DEPTH {
                    return Err("failure: scripts call each other too deeply".into());
                }
                let saved = std::mem::take(&mut self.vars);
                self.depth += 1;
                self.run_source(&source);
                self.depth -= 1;
                self.vars = saved;
                Ok(Value::Str(String::new()))
            }
            "info" | "warning" | "error" | "debug" => {
                let message = take(&mut named, "message").or(first).unwrap_or_default();
                self.state.log(verb, &message, ctx);
                Ok(Value::Str(String::new()))
            }
            other => Err(format!("bad command name {other}")),
        }
    }

    fn print_rows(&mut self, single: bool, rows: &[Vec<(String, String)>]) {
        if single {
            let width = rows
                .iter()
                .flatten()
                .map(|(n, _)| n.len())
                .max()
                .unwrap_or(0);
            for (name, value) in rows.iter().flatten() {
                let line = format!("{name:>width$}: {value}", width = width + 2);
                self.line(&line);
            }
            return;
        }
        for (n, row) in rows.iter().enumerate() {
            let mut line = format!("{n:>2}  ");
            for (name, value) in row.iter().filter(|(name, _)| name != ".id") {
                let _ = write!(line, " {name}={}", quote(value));
            }
            self.line(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx(profile: Profile) -> Ctx<'static> {
        Ctx {
            profile,
            index: 0,
            user: "admin",
            uptime: Duration::from_secs(5),
        }
    }

    fn run(state: &mut State, source: &str) -> String {
        execute(state, &ctx(Profile::V7_18), source)
    }

    fn log_messages(state: &State) -> Vec<String> {
        state
            .table(super::super::state::TableId::Log)
            .rows
            .iter()
            .map(|r| r.values[2].clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn log_put_and_menu_commands() {
        let mut s = State::new(0);
        let out = run(
            &mut s,
            ":log info \"hello\"; :put \"x=1\"\n/ip address add address=10.0.0.1/24 interface=ether1\n:put [/ip address get [find address=10.0.0.1/24] network]",
        );
        assert_eq!(out, "x=1\r\n10.0.0.0\r\n");
        assert_eq!(log_messages(&s), ["hello"]);
    }

    #[test]
    fn errors_read_like_the_console() {
        let mut s = State::new(0);
        assert_eq!(
            run(&mut s, ":put \"abc"),
            "syntax error (line 1 column 6)\r\n"
        );
        assert_eq!(
            run(&mut s, ":foo"),
            "bad command name foo (line 1 column 2)\r\n"
        );
        assert_eq!(
            run(&mut s, "/foo bar"),
            "bad command name foo (line 1 column 2)\r\n"
        );
        assert_eq!(
            run(&mut s, ":log info \"a\"\n/ip address ad"),
            "bad command name ad (line 2 column 13)\r\n"
        );
        assert_eq!(
            run(&mut s, ":put \"a\" \"b\""),
            "expected end of command (line 1 column 10)\r\n"
        );
        assert_eq!(
            run(&mut s, "/ip address add address=1.1.1.1 bogus=1"),
            "expected end of command (line 1 column 33)\r\n"
        );
        assert!(
            log_messages(&s).is_empty(),
            "nothing runs when the script does not parse"
        );
        assert_eq!(run(&mut s, "/ip address remove *5"), "no such item\r\n");
        assert_eq!(
            run(
                &mut s,
                ":log info one; /ip address add interface=ether1; :log info two"
            ),
            "failure: missing value(s) of argument(s) address\r\n"
        );
        assert_eq!(log_messages(&s), ["one"]);
        assert_eq!(run(&mut s, "]"), "syntax error (line 1 column 1)\r\n");
        assert_eq!(
            run(&mut s, ":put [/system identity get name"),
            "syntax error (line 1 column 32)\r\n"
        );
    }

    #[test]
    fn menu_context_variables_and_blocks() {
        let mut s = State::new(0);
        let out = run(
            &mut s,
            "/interface\nset [find default-name=ether1] name=wan comment=\"up link\"\n:local n \"wan\"\n{ :put \"name=$n\" }\n/system identity set name=edge\n:put [/system identity get name]",
        );
        assert_eq!(out, "name=wan\r\nedge\r\n");
        assert_eq!(s.identity, "edge");
        let export = run(&mut s, "/export");
        assert!(
            export.contains("set [ find default-name=ether1 ] comment=\"up link\" name=wan"),
            "{export}"
        );
    }

    #[test]
    fn scripts_run_scripts_and_count() {
        let mut s = State::new(0);
        run(
            &mut s,
            "/system script add name=s1 source=\":log info from-s1\"",
        );
        assert_eq!(
            run(&mut s, "/system script run s1; /system script run s1"),
            ""
        );
        assert_eq!(log_messages(&s), ["from-s1", "from-s1"]);
        assert_eq!(
            run(&mut s, ":put [/system script get s1 run-count]"),
            "2\r\n"
        );
        run(
            &mut s,
            "/system script add name=loop source=\"/system script run loop\"",
        );
        assert!(run(&mut s, "/system script run loop").contains("too deeply"));
    }

    #[test]
    fn router_os_6_wants_spaces_in_paths() {
        let mut s = State::new(0);
        let out = execute(&mut s, &ctx(Profile::V6_45), "/ip/address/print");
        assert_eq!(
            out,
            "bad command name ip/address/print (line 1 column 2)\r\n"
        );
        let out = execute(&mut s, &ctx(Profile::V7_18), "/ip/address/print count-only");
        assert_eq!(out, "0\r\n");
    }

    #[test]
    fn print_single_and_backup() {
        let mut s = State::new(0);
        assert_eq!(
            run(&mut s, "/system identity print"),
            "  name: router-0\r\n"
        );
        assert_eq!(
            run(&mut s, "/system backup save name=b1"),
            "Configuration backup saved\r\n"
        );
        assert_eq!(run(&mut s, ":put [/file get b1.backup type]"), "backup\r\n");
    }

    #[test]
    fn a_scheduled_backup_load_restores_what_was_saved() {
        let mut s = State::new(0);
        assert!(s.service_enabled("api"));
        run(&mut s, "/system backup save name=guard dont-encrypt=yes");
        let at = chrono::Utc::now() + chrono::TimeDelta::seconds(30);
        let out = run(
            &mut s,
            &format!(
                "/system scheduler add name=guard start-date={} start-time={} interval=0s \
                 on-event=\"/system backup load name=guard.backup password=\\\"\\\"\"",
                at.format("%Y-%m-%d"),
                at.format("%H:%M:%S")
            ),
        );
        assert_eq!(out, "", "{out}");
        run(
            &mut s,
            "/ip service disable api\n/system identity set name=cut-off",
        );
        assert!(!s.service_enabled("api"));
        assert!(
            s.export(&ctx(Profile::V7_18))
                .contains("set api disabled=yes")
        );
        let due = s
            .next_scheduled(chrono::Utc::now())
            .expect("an entry is due");
        assert!(s.take_due(due - chrono::TimeDelta::seconds(1)).is_empty());
        let sources = s.take_due(due);
        assert_eq!(sources.len(), 1, "{sources:?}");
        assert!(s.next_scheduled(due).is_none(), "a one-shot runs once");
        for source in sources {
            run(&mut s, &source);
        }
        assert!(
            std::mem::take(&mut s.restart),
            "loading a backup restarts the router"
        );
        assert!(s.service_enabled("api"));
        assert_eq!(s.identity, "router-0");
        // The entry was added after the backup, so the restore took it away, and the
        // backup file is still there.
        assert_eq!(run(&mut s, "/system scheduler print count-only"), "0\r\n");
        assert_eq!(
            run(&mut s, ":put [/file get guard.backup type]"),
            "backup\r\n"
        );
    }
}
