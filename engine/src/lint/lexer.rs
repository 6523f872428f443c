//! Tokens of RouterOS script, each with its 1-based line and column.
//!
//! The lexer never fails: a problem it sees (an unclosed string, a bad escape) is
//! recorded as a syntax error and lexing goes on, so the parser always has a token
//! stream to check.

use super::SyntaxError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A run of ordinary characters: a menu path, a command, a value, an operator.
    Word(String),
    /// A quoted string, escapes resolved.
    Str(String),
    /// `$name` or `$"name"`.
    Var(String),
    /// `=` between a name and its value.
    Eq,
    /// `;` or a newline: the end of a statement.
    Sep,
    Open(char),
    Close(char),
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
    /// No whitespace between this token and the one before it.
    pub glued: bool,
    /// In a string: the variables it interpolates (`"up $name"`), each with its line
    /// and column.
    pub vars: Vec<(String, usize, usize)>,
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, ';' | '{' | '}' | '[' | ']' | '(' | ')' | '"' | '$' | '=')
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    col: usize,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }
    /// Past a `\` that ends a line (continuation), if one comes next.
    fn continuation(&mut self) -> bool {
        let mut ahead = self.chars.clone();
        if ahead.next() != Some('\\') {
            return false;
        }
        match ahead.next() {
            Some('\n') => {
                self.bump();
                self.bump();
                true
            }
            Some('\r') if ahead.next() == Some('\n') => {
                self.bump();
                self.bump();
                self.bump();
                true
            }
            _ => false,
        }
    }
}

pub(crate) fn lex(src: &str, errors: &mut Vec<SyntaxError>) -> Vec<Token> {
    let mut cur = Cursor {
        chars: src.chars().peekable(),
        line: 1,
        col: 1,
    };
    let mut out: Vec<Token> = Vec::new();
    let mut glued = false;
    // A `#` starts a comment only where a statement could start.
    let mut stmt_start = true;
    while let Some(c) = cur.peek() {
        if cur.continuation() {
            glued = false;
            continue;
        }
        let (line, col) = (cur.line, cur.col);
        let mut vars = Vec::new();
        let push = |out: &mut Vec<Token>, tok: Tok, glued: bool, vars: Vec<_>| {
            out.push(Token {
                tok,
                line,
                col,
                glued,
                vars,
            })
        };
        match c {
            '\n' | ';' => {
                cur.bump();
                push(&mut out, Tok::Sep, glued, vars);
                stmt_start = true;
                glued = false;
                continue;
            }
            c if c.is_whitespace() => {
                cur.bump();
                glued = false;
                continue;
            }
            '#' if stmt_start => {
                while let Some(c) = cur.peek() {
                    if c == '\n' {
                        break;
                    }
                    cur.bump();
                }
                continue;
            }
            '{' | '[' | '(' => {
                cur.bump();
                push(&mut out, Tok::Open(c), glued, vars);
                stmt_start = c != '(';
                glued = true;
                continue;
            }
            '}' | ']' | ')' => {
                cur.bump();
                push(&mut out, Tok::Close(c), glued, vars);
            }
            '=' => {
                cur.bump();
                push(&mut out, Tok::Eq, glued, vars);
            }
            '"' => {
                cur.bump();
                let s = string(&mut cur, line, col, errors, &mut vars);
                push(&mut out, Tok::Str(s), glued, vars);
            }
            '$' => {
                cur.bump();
                if cur.peek() == Some('"') {
                    cur.bump();
                    let s = string(&mut cur, line, col, errors, &mut Vec::new());
                    push(&mut out, Tok::Var(s), glued, vars);
                } else {
                    let mut name = String::new();
                    while let Some(c) = cur.peek() {
                        if c.is_alphanumeric() || c == '_' {
                            name.push(c);
                            cur.bump();
                        } else {
                            break;
                        }
                    }
                    if name.is_empty() {
                        push(&mut out, Tok::Word("$".into()), glued, vars);
                    } else {
                        push(&mut out, Tok::Var(name), glued, vars);
                    }
                }
            }
            _ => {
                let mut word = String::new();
                while let Some(c) = cur.peek() {
                    if !is_word_char(c) || cur.continuation() {
                        break;
                    }
                    word.push(c);
                    cur.bump();
                }
                push(&mut out, Tok::Word(word), glued, vars);
            }
        }
        stmt_start = false;
        glued = true;
    }
    out
}

/// The rest of a quoted string after its opening quote, escapes resolved; the names of
/// the variables it interpolates (an unescaped `$name`) go to `vars`.
fn string(
    cur: &mut Cursor<'_>,
    line: usize,
    col: usize,
    errors: &mut Vec<SyntaxError>,
    vars: &mut Vec<(String, usize, usize)>,
) -> String {
    let mut s = String::new();
    loop {
        let (vl, vc) = (cur.line, cur.col);
        let Some(c) = cur.bump() else {
            errors.push(SyntaxError::new(line, col, "unclosed string"));
            return s;
        };
        match c {
            '"' => return s,
            '$' => {
                s.push('$');
                let mut name = String::new();
                while let Some(c) = cur.peek() {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                        s.push(c);
                        cur.bump();
                    } else {
                        break;
                    }
                }
                if !name.is_empty() {
                    vars.push((name, vl, vc));
                }
            }
            '\\' => {
                let (el, ec) = (cur.line, cur.col.saturating_sub(1));
                let Some(e) = cur.bump() else {
                    errors.push(SyntaxError::new(line, col, "unclosed string"));
                    return s;
                };
                match e {
                    '"' | '\\' | '$' | '?' => s.push(e),
                    'n' => s.push('\n'),
                    'r' => s.push('\r'),
                    't' => s.push('\t'),
                    '_' => s.push(' '),
                    'a' => s.push('\x07'),
                    'b' => s.push('\x08'),
                    'f' => s.push('\x0c'),
                    'v' => s.push('\x0b'),
                    '\n' => {}
                    '\r' if cur.peek() == Some('\n') => {
                        cur.bump();
                    }
                    h if h.is_ascii_hexdigit() => match cur.peek() {
                        Some(l) if l.is_ascii_hexdigit() => {
                            cur.bump();
                            let v = h.to_digit(16).unwrap_or(0) * 16 + l.to_digit(16).unwrap_or(0);
                            s.push(char::from_u32(v).unwrap_or('?'));
                        }
                        _ => errors.push(SyntaxError::new(el, ec, "invalid escape in string")),
                    },
                    _ => errors.push(SyntaxError::new(el, ec, "invalid escape in string")),
                }
            }
            _ => s.push(c),
        }
    }
}
