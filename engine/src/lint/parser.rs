//! Statements of RouterOS script, as RouterOS reads them, flattened into [`Command`]s
//! in the order they appear (a command inside `[ ]` or `{ }` comes before the command
//! that holds it). Menu paths are resolved against the context a bare path line set
//! (`/ip firewall filter` then `add ...`, as `/export` writes), `..` included.

use std::collections::HashSet;

use super::SyntaxError;
use super::lexer::{Tok, Token};

/// Deepest nesting of `{ [ (` accepted; deeper is an error, never a stack overflow.
const MAX_DEPTH: usize = 128;

/// The RouterOS `:` commands.
const COLON_COMMANDS: &[&str] = &[
    "beep",
    "delay",
    "do",
    "environment",
    "error",
    "execute",
    "find",
    "for",
    "foreach",
    "global",
    "if",
    "len",
    "local",
    "log",
    "nothing",
    "parse",
    "pick",
    "put",
    "resolve",
    "retry",
    "return",
    "rndnum",
    "rndstr",
    "serialize",
    "deserialize",
    "set",
    "terminal",
    "time",
    "timestamp",
    "toarray",
    "tobool",
    "toid",
    "toip",
    "toip6",
    "tonum",
    "tostr",
    "totime",
    "tonsec",
    "typeof",
    "while",
    "jobname",
    "convert",
    "grep",
    "onerror",
];

/// Menu commands: a bare path holding one of these (or a 3+ letter prefix of one) runs
/// it; a bare path without one only changes the context.
const VERBS: &[&str] = &[
    "add",
    "set",
    "remove",
    "disable",
    "enable",
    "print",
    "export",
    "edit",
    "find",
    "get",
    "reset-configuration",
    "reset-counters",
    "reboot",
    "shutdown",
    "load",
    "save",
    "format-drive",
    "uninstall",
    "downgrade",
    "upgrade",
    "update",
    "install",
    "import",
    "fetch",
    "move",
    "unset",
    "comment",
    "monitor",
    "run",
    "check-for-updates",
];

pub(crate) fn is_verb(word: &str) -> bool {
    VERBS
        .iter()
        .any(|v| *v == word || (word.len() >= 3 && v.starts_with(word)))
}

/// The value of an argument, as far as a rule needs it.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// A bare word.
    Text(String),
    /// A quoted string, with the position of its opening quote.
    Literal {
        text: String,
        line: usize,
        col: usize,
    },
    /// `[ ... ]`: the index of the first command inside.
    Subst(Option<usize>),
    /// Known only at run time: a variable, an expression, a block, a concatenation.
    Dynamic,
}

impl Value {
    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Value::Text(t) | Value::Literal { text: t, .. } => Some(t),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Arg {
    pub name: Option<String>,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub(crate) struct Command {
    /// `:put` and the like: the name without its colon.
    pub colon: Option<String>,
    /// The menu path and command, resolved against the context, then the bare words
    /// that follow (`/ip service disable telnet` -> `ip service disable telnet`).
    pub words: Vec<String>,
    pub args: Vec<Arg>,
    pub line: usize,
    pub col: usize,
}

pub(crate) struct Parsed {
    pub commands: Vec<Command>,
    pub errors: Vec<SyntaxError>,
}

struct Scope {
    names: HashSet<String>,
    /// A function body: it is called with arguments no declaration names.
    lenient: bool,
}

struct Parser<'a> {
    toks: &'a [Token],
    i: usize,
    depth: usize,
    /// Nesting went too deep: parsing stopped, and only that is reported.
    gave_up: bool,
    commands: Vec<Command>,
    errors: Vec<SyntaxError>,
    scopes: Vec<Scope>,
}

pub(crate) fn parse(toks: &[Token], mut errors: Vec<SyntaxError>) -> Parsed {
    let mut p = Parser {
        toks,
        i: 0,
        depth: 0,
        gave_up: false,
        commands: Vec::new(),
        errors: Vec::new(),
        scopes: vec![Scope {
            names: HashSet::new(),
            lenient: false,
        }],
    };
    p.block(None, Vec::new());
    errors.append(&mut p.errors);
    Parsed {
        commands: p.commands,
        errors,
    }
}

fn closer_of(open: char) -> char {
    match open {
        '{' => '}',
        '[' => ']',
        _ => ')',
    }
}

fn name_of(c: char) -> &'static str {
    match c {
        '{' | '}' => "brace",
        '[' | ']' => "bracket",
        _ => "parenthesis",
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn err(&mut self, line: usize, col: usize, msg: impl Into<String>) {
        self.errors.push(SyntaxError::new(line, col, msg));
    }

    fn declare(&mut self, name: &str, global: bool) {
        let scope = if global {
            self.scopes.first_mut()
        } else {
            self.scopes.last_mut()
        };
        if let Some(s) = scope {
            s.names.insert(name.to_owned());
        }
    }

    fn check_var(&mut self, name: &str, line: usize, col: usize) {
        let known = name.chars().all(|c| c.is_ascii_digit())
            || self
                .scopes
                .iter()
                .any(|s| s.lenient || s.names.contains(name));
        if !known {
            self.err(line, col, format!("undeclared variable ${name}"));
        }
    }

    /// The variables the string token at `at` interpolates must be declared.
    fn check_string_vars(&mut self, at: usize) {
        let toks = self.toks;
        for (name, line, col) in &toks[at].vars {
            self.check_var(name, *line, *col);
        }
    }

    /// Statements until `closer` (consumed) or the end of input. Returns the index of
    /// the first command parsed inside.
    fn block(&mut self, open: Option<&Token>, ctx: Vec<String>) -> Option<usize> {
        let first = self.commands.len();
        let closer = open.and_then(|t| match t.tok {
            Tok::Open(c) => Some(closer_of(c)),
            _ => None,
        });
        let mut ctx = ctx;
        loop {
            match self.peek().map(|t| t.tok.clone()) {
                None => {
                    if let (Some(t), Some(c), false) = (open, closer, self.gave_up) {
                        self.err(t.line, t.col, format!("unclosed {}", name_of(c)));
                    }
                    break;
                }
                Some(Tok::Sep) => self.i += 1,
                Some(Tok::Close(c)) if Some(c) == closer => {
                    self.i += 1;
                    break;
                }
                Some(Tok::Close(c)) => {
                    let (l, co) = self.peek().map(|t| (t.line, t.col)).unwrap_or((0, 0));
                    self.err(l, co, format!("unmatched closing {} `{c}`", name_of(c)));
                    self.i += 1;
                }
                Some(_) => self.statement(&mut ctx),
            }
        }
        (self.commands.len() > first).then_some(first)
    }

    fn nested(&mut self, ctx: Vec<String>, lenient: bool) -> Option<usize> {
        let open = self.toks.get(self.i)?;
        self.i += 1;
        if self.depth >= MAX_DEPTH {
            self.err(open.line, open.col, "nesting too deep");
            self.i = self.toks.len();
            self.gave_up = true;
            return None;
        }
        self.depth += 1;
        self.scopes.push(Scope {
            names: HashSet::new(),
            lenient,
        });
        let first = if open.tok == Tok::Open('(') {
            self.expression(open);
            None
        } else {
            self.block(Some(open), ctx)
        };
        self.scopes.pop();
        self.depth -= 1;
        first
    }

    /// `( ... )`: operators and operands; variables are checked, `[ ]` parsed.
    fn expression(&mut self, open: &Token) {
        loop {
            let Some(t) = self.peek() else {
                if !self.gave_up {
                    self.err(open.line, open.col, "unclosed parenthesis");
                }
                return;
            };
            match &t.tok {
                Tok::Close(')') => {
                    self.i += 1;
                    return;
                }
                Tok::Close(c) => {
                    let (c, l, co) = (*c, t.line, t.col);
                    self.err(l, co, format!("unmatched closing {} `{c}`", name_of(c)));
                    self.i += 1;
                }
                Tok::Open(_) => {
                    self.nested(Vec::new(), false);
                }
                Tok::Var(v) => {
                    let (v, l, c) = (v.clone(), t.line, t.col);
                    self.check_var(&v, l, c);
                    self.i += 1;
                }
                Tok::Str(_) => {
                    self.check_string_vars(self.i);
                    self.i += 1;
                }
                _ => self.i += 1,
            }
        }
    }

    /// One value: atoms glued together (`"a".$b`, `[find]`, `{...}`).
    fn value(&mut self, ctx: &[String], lenient: bool) -> Value {
        let mut parts: Vec<Value> = Vec::new();
        let mut first = true;
        while let Some(t) = self.peek() {
            if !first && !t.glued {
                break;
            }
            let (line, col) = (t.line, t.col);
            let v = match &t.tok {
                Tok::Word(w) => {
                    let w = w.clone();
                    self.i += 1;
                    Value::Text(w)
                }
                Tok::Str(s) => {
                    let s = s.clone();
                    self.check_string_vars(self.i);
                    self.i += 1;
                    Value::Literal { text: s, line, col }
                }
                Tok::Var(v) => {
                    let v = v.clone();
                    self.i += 1;
                    self.check_var(&v, line, col);
                    Value::Dynamic
                }
                Tok::Open('[') => Value::Subst(self.nested(ctx.to_vec(), false)),
                Tok::Open(_) => {
                    self.nested(ctx.to_vec(), lenient);
                    Value::Dynamic
                }
                Tok::Eq if !first => {
                    self.i += 1;
                    Value::Text("=".into())
                }
                _ => break,
            };
            parts.push(v);
            first = false;
        }
        match parts.len() {
            0 => Value::Text(String::new()),
            1 => parts.pop().unwrap_or(Value::Dynamic),
            _ if parts.iter().all(|p| matches!(p, Value::Text(_))) => {
                Value::Text(parts.iter().filter_map(Value::text).collect())
            }
            _ => Value::Dynamic,
        }
    }

    fn statement(&mut self, ctx: &mut Vec<String>) {
        let Some(start) = self.peek().cloned() else {
            return;
        };
        let mut cmd = Command {
            colon: None,
            words: Vec::new(),
            args: Vec::new(),
            line: start.line,
            col: start.col,
        };
        let mut pushed_scope = false;
        let mut path_words: Vec<String> = Vec::new();
        let mut absolute = false;
        // Still reading the leading bare words (the path, the command, its targets).
        let mut in_path = true;
        if let Tok::Word(w) = &start.tok
            && let Some(name) = w.strip_prefix(':')
        {
            self.i += 1;
            in_path = false;
            if !COLON_COMMANDS.contains(&name) {
                self.err(start.line, start.col, format!("unknown command :{name}"));
            }
            if matches!(name, "foreach" | "for" | "onerror") {
                self.scopes.push(Scope {
                    names: HashSet::new(),
                    lenient: false,
                });
                pushed_scope = true;
            }
            cmd.colon = Some(name.to_owned());
            // The name a declaration or loop introduces.
            if matches!(name, "local" | "global" | "foreach" | "for" | "onerror")
                && let Some(Token {
                    tok: Tok::Word(v) | Tok::Str(v),
                    ..
                }) = self.peek()
            {
                // `:foreach k,v in=...` names a key and a value.
                for v in v.clone().split(',') {
                    self.declare(v, name == "global");
                }
                self.i += 1;
            }
        }
        let defines_function = matches!(cmd.colon.as_deref(), Some("local" | "global"));
        while let Some(t) = self.peek().cloned() {
            match &t.tok {
                Tok::Sep | Tok::Close(_) => break,
                Tok::Eq => {
                    self.err(t.line, t.col, "stray `=`");
                    self.i += 1;
                }
                Tok::Word(w) if matches!(self.toks.get(self.i + 1), Some(n) if n.tok == Tok::Eq && n.glued) =>
                {
                    self.i += 2;
                    in_path = false;
                    let lenient = defines_function && w == "do";
                    let sub_ctx = self.menu(ctx, absolute, &path_words);
                    let value = self.value(&sub_ctx, lenient);
                    cmd.args.push(Arg {
                        name: Some(w.clone()),
                        value,
                    });
                }
                Tok::Word(w) if in_path && cmd.colon.is_none() => {
                    self.i += 1;
                    if path_words.is_empty() && w.starts_with('/') {
                        absolute = true;
                    }
                    path_words.extend(
                        w.split('/')
                            .filter(|s| !s.is_empty())
                            .map(|s| s.to_ascii_lowercase()),
                    );
                }
                _ => {
                    in_path = false;
                    let sub_ctx = self.menu(ctx, absolute, &path_words);
                    let value = self.value(&sub_ctx, false);
                    cmd.args.push(Arg { name: None, value });
                }
            }
        }
        if pushed_scope {
            self.scopes.pop();
        }
        if cmd.colon.is_none() {
            let resolved = self.resolve(ctx, absolute, &path_words);
            let has_verb = path_words.iter().any(|w| is_verb(w));
            if !has_verb && cmd.args.is_empty() {
                *ctx = resolved;
                return;
            }
            cmd.words = resolved;
        }
        self.commands.push(cmd);
    }

    /// The menu a command's `[find ...]` runs in: its path without the command.
    fn menu(&self, ctx: &[String], absolute: bool, words: &[String]) -> Vec<String> {
        let menu: Vec<String> = words.iter().take_while(|w| !is_verb(w)).cloned().collect();
        self.resolve(ctx, absolute, &menu)
    }

    /// The path these words name, from the context (or the root when absolute).
    fn resolve(&self, ctx: &[String], absolute: bool, words: &[String]) -> Vec<String> {
        let mut path = if absolute { Vec::new() } else { ctx.to_vec() };
        for w in words {
            if w == ".." {
                path.pop();
            } else {
                path.push(w.clone());
            }
        }
        path
    }
}
