//! Script templates: reusable scripts with typed variables, private to an organization
//! (kept in the store, every edit a numbered version) or global (files the operator keeps
//! in `templates_dir`, read-only through the API).
//!
//! - this file: the variable declarations, their checks, and [`render`], which turns a
//!   template and the caller's values into a script;
//! - `global`: reading the global templates' folder, and reloading it when it changes.
//!
//! Rendering is injection-safe: a value is first checked against its declared type, then
//! written for where its `{{name}}` stands. Inside a quoted string it is escaped as
//! RouterOS reads strings (`\"`, `\\`, `\$`, `\?`); anywhere else a number, address or
//! prefix is written as it is (its type allows nothing else), so is an enum's value made
//! only of letters, digits, `-`, `_` and `.` (the template's author chose it), and any
//! other value as a quoted, escaped string. No value, whatever it holds, can end a string, start a command
//! or reach a variable.

mod global;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use global::{GLOBAL_PREFIX, GlobalTemplate, GlobalTemplates, load_dir, watch};

/// Most variables one template declares.
pub const MAX_VARIABLES: usize = 50;
/// Longest variable name.
pub const MAX_VARIABLE_NAME: usize = 50;
/// Longest value given for a variable.
pub const MAX_VALUE_CHARS: usize = 1000;
/// Most values an `enum` allows.
pub const MAX_ALLOWED: usize = 100;

/// The type of a template variable: what a value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VariableType {
    /// Any text without control characters; always written as a quoted string.
    String,
    /// A whole number, optionally negative.
    Integer,
    /// An IPv4 or IPv6 address.
    Ip,
    /// An address with a prefix length (`10.0.0.0/8`, `2001:db8::/32`).
    IpPrefix,
    /// An interface name: up to 64 printable characters.
    InterfaceName,
    /// One of `allowed`.
    Enum,
}

impl VariableType {
    fn as_str(self) -> &'static str {
        match self {
            VariableType::String => "string",
            VariableType::Integer => "integer",
            VariableType::Ip => "ip",
            VariableType::IpPrefix => "ip-prefix",
            VariableType::InterfaceName => "interface-name",
            VariableType::Enum => "enum",
        }
    }

    /// Whether a checked value of this type may stand outside a string as it is.
    fn bare_safe(self) -> bool {
        matches!(
            self,
            VariableType::Integer | VariableType::Ip | VariableType::IpPrefix
        )
    }
}

/// One variable a template declares, used in its content as `{{name}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Variable {
    /// Letters, digits and `_`, starting with a letter or `_`; at most 50 characters.
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub kind: VariableType,
    /// Used when the caller gives no value; without one, a value is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// The values an `enum` accepts (required for it, refused for other types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
}

/// Why a template or a rendering was refused; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The declarations or the content are not valid.
    #[error("{0}")]
    Declaration(String),
    /// A value given for rendering is missing, unknown or not of its type.
    #[error("{0}")]
    Value(String),
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_VARIABLE_NAME
}

/// Checks a template's declarations against its content: names valid and unique,
/// `allowed` exactly for enums, defaults of their type, and every `{{name}}` in the
/// content declared.
pub fn check_declarations(variables: &[Variable], content: &str) -> Result<(), TemplateError> {
    if variables.len() > MAX_VARIABLES {
        return Err(TemplateError::Declaration(format!(
            "variables: at most {MAX_VARIABLES}"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for v in variables {
        if !valid_name(&v.name) {
            return Err(TemplateError::Declaration(format!(
                "variables: `{}` is not a valid name (letters, digits and _, starting with a letter or _, at most {MAX_VARIABLE_NAME} characters)",
                v.name
            )));
        }
        if !seen.insert(v.name.as_str()) {
            return Err(TemplateError::Declaration(format!(
                "variables: `{}` is declared twice",
                v.name
            )));
        }
        if v.description.chars().count() > 200 {
            return Err(TemplateError::Declaration(format!(
                "variables: the description of `{}` is longer than 200 characters",
                v.name
            )));
        }
        match (&v.kind, &v.allowed) {
            (VariableType::Enum, None) => {
                return Err(TemplateError::Declaration(format!(
                    "variables: the enum `{}` needs `allowed`",
                    v.name
                )));
            }
            (VariableType::Enum, Some(allowed)) => {
                if allowed.is_empty() || allowed.len() > MAX_ALLOWED {
                    return Err(TemplateError::Declaration(format!(
                        "variables: `allowed` of `{}` needs 1 to {MAX_ALLOWED} values",
                        v.name
                    )));
                }
                for a in allowed {
                    check_text(&v.name, a)?;
                }
            }
            (_, Some(_)) => {
                return Err(TemplateError::Declaration(format!(
                    "variables: `allowed` is only for enums, and `{}` is {}",
                    v.name,
                    v.kind.as_str()
                )));
            }
            (_, None) => {}
        }
        if let Some(d) = &v.default {
            check_value(v, d).map_err(|e| {
                TemplateError::Declaration(format!("variables: the default of {e}"))
            })?;
        }
    }
    for p in placements(content)? {
        if !variables.iter().any(|v| v.name == p.name) {
            return Err(TemplateError::Declaration(format!(
                "content: `{{{{{}}}}}` is not a declared variable",
                p.name
            )));
        }
    }
    Ok(())
}

/// Where a placeholder stands.
struct Placement {
    name: String,
    range: std::ops::Range<usize>,
    in_string: bool,
}

/// The placeholders of `content`, each with whether it stands inside a string. One right
/// after a `$` (it would name a variable or, as `$[`, run a command) or after a `\` (it
/// would take the value's first character as an escape) is refused.
fn placements(content: &str) -> Result<Vec<Placement>, TemplateError> {
    let mut quoting = Quoting::default();
    let mut at = 0;
    let mut out = Vec::new();
    for (name, range) in placeholders(content) {
        let before = &content[at..range.start];
        quoting.advance(before);
        let prev = content[..range.start].chars().next_back();
        if prev == Some('$') || quoting.escaped || (!quoting.in_string && prev == Some('\\')) {
            return Err(TemplateError::Declaration(format!(
                "content: `{{{{{name}}}}}` must not follow `$` or `\\`"
            )));
        }
        if quoting.in_string && quoting.string_runs_code {
            return Err(TemplateError::Declaration(format!(
                "content: `{{{{{name}}}}}` stands in a string that runs code (`$[...]` or `$(...)`); \
                 put it outside the string"
            )));
        }
        out.push(Placement {
            name,
            in_string: quoting.in_string,
            range: range.clone(),
        });
        at = range.end;
    }
    Ok(out)
}

/// The `{{name}}` placeholders of `content`, with their byte ranges, in order.
/// Whitespace inside the braces is allowed (`{{ name }}`).
fn placeholders(content: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = content[from..].find("{{").map(|i| i + from) {
        let Some(end) = content[start + 2..].find("}}").map(|i| i + start + 2) else {
            break;
        };
        let name = content[start + 2..end].trim();
        if valid_name(name) {
            out.push((name.to_owned(), start..end + 2));
            from = end + 2;
        } else {
            from = start + 2;
        }
    }
    out
}

fn check_text(name: &str, value: &str) -> Result<(), TemplateError> {
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(TemplateError::Value(format!(
            "`{name}`: longer than {MAX_VALUE_CHARS} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(TemplateError::Value(format!(
            "`{name}`: control characters (such as a line break) are not allowed"
        )));
    }
    Ok(())
}

/// Whether `value` is of the variable's type.
fn check_value(v: &Variable, value: &str) -> Result<(), TemplateError> {
    check_text(&v.name, value)?;
    let bad = |what: &str| {
        Err(TemplateError::Value(format!(
            "`{}`: `{value}` is not {what}",
            v.name
        )))
    };
    match v.kind {
        VariableType::String => Ok(()),
        VariableType::Integer => {
            let digits = value.strip_prefix('-').unwrap_or(value);
            if !digits.is_empty()
                && digits.len() <= 19
                && digits.bytes().all(|b| b.is_ascii_digit())
            {
                Ok(())
            } else {
                bad("an integer")
            }
        }
        VariableType::Ip => match value.parse::<IpAddr>() {
            Ok(_) => Ok(()),
            Err(_) => bad("an IPv4 or IPv6 address"),
        },
        VariableType::IpPrefix => {
            let ok = value.split_once('/').is_some_and(|(addr, len)| {
                let len: Option<u8> = (!len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| len.parse().ok())
                    .flatten();
                match (addr.parse::<IpAddr>(), len) {
                    (Ok(IpAddr::V4(_)), Some(l)) => l <= 32,
                    (Ok(IpAddr::V6(_)), Some(l)) => l <= 128,
                    _ => false,
                }
            });
            if ok {
                Ok(())
            } else {
                bad("an address with a prefix length (10.0.0.0/8)")
            }
        }
        VariableType::InterfaceName => {
            if !value.is_empty() && value.chars().count() <= 64 {
                Ok(())
            } else {
                bad("an interface name (1 to 64 characters)")
            }
        }
        VariableType::Enum => {
            let allowed = v.allowed.as_deref().unwrap_or_default();
            if allowed.iter().any(|a| a == value) {
                Ok(())
            } else {
                bad(&format!("one of {}", allowed.join(", ")))
            }
        }
    }
}

/// Escapes `value` for the inside of a RouterOS string.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$' | '?') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Renders `content` with `values` (defaults fill the rest). Every value is checked
/// against its type, unknown names are refused, and each value is written for where its
/// placeholder stands: escaped inside a string, quoted outside one unless its type can
/// hold nothing but an address or a number.
pub fn render(
    content: &str,
    variables: &[Variable],
    values: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    if let Some(unknown) = values
        .keys()
        .find(|k| !variables.iter().any(|v| &v.name == *k))
    {
        return Err(TemplateError::Value(format!(
            "`{unknown}` is not a variable of this template"
        )));
    }
    let mut resolved: BTreeMap<&str, (&Variable, &str)> = BTreeMap::new();
    for v in variables {
        let value = match values.get(&v.name).or(v.default.as_ref()) {
            Some(value) => value,
            None => {
                return Err(TemplateError::Value(format!(
                    "`{}` needs a value ({})",
                    v.name,
                    v.kind.as_str()
                )));
            }
        };
        check_value(v, value)?;
        resolved.insert(v.name.as_str(), (v, value.as_str()));
    }
    let mut out = String::with_capacity(content.len());
    let mut at = 0;
    for p in placements(content)? {
        out.push_str(&content[at..p.range.start]);
        let Some((v, value)) = resolved.get(p.name.as_str()) else {
            return Err(TemplateError::Declaration(format!(
                "content: `{{{{{}}}}}` is not a declared variable",
                p.name
            )));
        };
        if p.in_string {
            out.push_str(&escape(value));
        } else if v.kind.bare_safe() || (v.kind == VariableType::Enum && plain_word(value)) {
            out.push_str(&normalized(v.kind, value));
        } else {
            out.push('"');
            out.push_str(&escape(value));
            out.push('"');
        }
        at = p.range.end;
    }
    out.push_str(&content[at..]);
    Ok(out)
}

/// A word RouterOS reads as one bare token: an enum's value may then be a command word
/// (`:log {{level}}`), which a quoted string could not be.
fn plain_word(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// An address or number as RouterOS writes it (`::ffff:1.2.3.4` stays an IPv6 address).
fn normalized(kind: VariableType, value: &str) -> String {
    match kind {
        VariableType::Ip => match value.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Ipv4Addr::to_string(&a),
            Ok(IpAddr::V6(a)) => Ipv6Addr::to_string(&a),
            Err(_) => value.to_owned(),
        },
        _ => value.to_owned(),
    }
}

/// Whether the text read so far leaves us inside a quoted string, as the linter's lexer
/// reads it: a `"` in a `#` comment starts nothing.
struct Quoting {
    in_string: bool,
    /// The last character was a `\` inside a string.
    escaped: bool,
    in_comment: bool,
    /// Only whitespace since the start of a statement: a `#` here starts a comment.
    statement_start: bool,
    /// The string being read holds `$[` or `$(`: code that runs.
    string_runs_code: bool,
    /// The last character was an unescaped `$` inside a string.
    dollar: bool,
}

impl Default for Quoting {
    fn default() -> Self {
        Quoting {
            in_string: false,
            escaped: false,
            in_comment: false,
            statement_start: true,
            string_runs_code: false,
            dollar: false,
        }
    }
}

impl Quoting {
    fn advance(&mut self, text: &str) {
        for c in text.chars() {
            if self.in_comment {
                if c == '\n' {
                    self.in_comment = false;
                    self.statement_start = true;
                }
            } else if self.in_string {
                let dollar = std::mem::take(&mut self.dollar);
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c == '"' {
                    self.in_string = false;
                } else if c == '$' {
                    self.dollar = true;
                } else if dollar && matches!(c, '[' | '(') {
                    self.string_runs_code = true;
                }
            } else if c == '"' {
                self.in_string = true;
                self.string_runs_code = false;
                self.statement_start = false;
            } else if c == '#' && self.statement_start {
                self.in_comment = true;
            } else if matches!(c, '\n' | ';' | '{' | '[') {
                self.statement_start = true;
            } else if !c.is_whitespace() {
                self.statement_start = false;
            }
        }
    }
}

#[cfg(test)]
mod tests;
