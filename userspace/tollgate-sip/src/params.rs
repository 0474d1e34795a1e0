//! Parameters: `;name[=value]` lists on header values (generic-param) and in SIP URIs
//! (uri-parameter). Names and values are kept exactly as written (quotes and `%HH` escapes
//! included) so re-serialization is byte-identical; lookups are case-insensitive on the name.

use std::fmt;

use crate::error::ValueError;
use crate::scan::{Cursor, check_escaped, is_token, is_unreserved, is_ws};

/// One `name[=value]` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Name as written.
    pub name: String,
    /// Value as written (quoted strings keep their quotes), `None` for a flag parameter.
    pub value: Option<String>,
}

impl Param {
    /// A parameter with a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Param {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// A flag parameter (no value), e.g. `lr` or `rport`.
    pub fn flag(name: impl Into<String>) -> Self {
        Param {
            name: name.into(),
            value: None,
        }
    }
}

/// An ordered parameter list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// An empty list.
    pub fn new() -> Self {
        Params(Vec::new())
    }

    /// `Some(Some(v))` for `name=v`, `Some(None)` for a flag, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// The value of `name=value`, or `None` if absent or a flag.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// Whether `name` is present (with or without value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` (replacing an existing one in place, else appending).
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        if let Some(p) = self
            .0
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            p.value = value.map(str::to_owned);
        } else {
            self.0.push(Param {
                name: name.to_owned(),
                value: value.map(str::to_owned),
            });
        }
    }

    /// Removes every `name`; returns whether any was present.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
        before != self.0.len()
    }

    /// Iterates in order.
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.0.iter()
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            f.write_str(";")?;
            f.write_str(&p.name)?;
            if let Some(v) = &p.value {
                f.write_str("=")?;
                f.write_str(v)?;
            }
        }
        Ok(())
    }
}

/// Characters allowed in an unquoted generic-param value: token, plus host forms (IPv6
/// references with brackets and colons, RFC 5118 §4.5).
fn is_gen_value(b: u8) -> bool {
    is_token(b) || b == b':' || b == b'[' || b == b']'
}

/// Parses `*( SEMI generic-param )` at the cursor (header context, LWS allowed around `;` and
/// `=`). Stops at end of input; anything else left over is an error.
pub(crate) fn parse_header_params(c: &mut Cursor<'_>) -> Result<Params, ValueError> {
    let mut params = Params::new();
    loop {
        c.skip_ws();
        if c.at_end() {
            return Ok(params);
        }
        if !c.eat(b';') {
            return Err(format!("unexpected text {:?}", truncate(c.rest())).into());
        }
        c.skip_ws();
        let name = c.token();
        if name.is_empty() {
            return Err("empty parameter name".into());
        }
        let name = name.to_owned();
        let save = c.pos();
        c.skip_ws();
        let value = if c.eat(b'=') {
            c.skip_ws();
            let v = if c.peek() == Some(b'"') {
                c.quoted()?
            } else {
                c.take_while(is_gen_value)
            };
            if v.is_empty() {
                return Err(format!("parameter {name} has an empty value").into());
            }
            Some(v.to_owned())
        } else {
            c.set_pos(save);
            None
        };
        params.0.push(Param { name, value });
    }
}

/// `paramchar` = param-unreserved / unreserved / escaped.
fn is_paramchar(b: u8) -> bool {
    is_unreserved(b) || b"[]/:&+$".contains(&b)
}

/// Parses SIP-URI parameters from `s` (the text after the host/port up to `?` or end, starting
/// with `;`). No whitespace is allowed inside a URI.
pub(crate) fn parse_uri_params(s: &str) -> Result<Params, ValueError> {
    let mut params = Params::new();
    if s.is_empty() {
        return Ok(params);
    }
    let body = s
        .strip_prefix(';')
        .ok_or(ValueError::from("URI parameters must start with ';'"))?;
    for part in body.split(';') {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (part, None),
        };
        if name.is_empty() {
            return Err("empty URI parameter name".into());
        }
        if !check_escaped(name, is_paramchar) {
            return Err(format!("invalid character in URI parameter {name:?}").into());
        }
        if let Some(v) = value
            && (v.is_empty() || !check_escaped(v, is_paramchar))
        {
            return Err(format!("invalid value for URI parameter {name:?}").into());
        }
        params.0.push(Param {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        });
    }
    Ok(params)
}

pub(crate) fn truncate(s: &str) -> &str {
    let mut end = s.len().min(24);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// True when `s` contains whitespace.
pub(crate) fn has_ws(s: &str) -> bool {
    s.bytes().any(|b| is_ws(b) || b == b'\r' || b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_params_lws_and_quotes() {
        let mut c = Cursor::new(" ; newparam =\t newvalue ;  secondparam ; q = 0.33;x=\"a;b\"");
        let p = parse_header_params(&mut c).unwrap();
        assert_eq!(p.value("newparam"), Some("newvalue"));
        assert_eq!(p.get("secondparam"), Some(None));
        assert_eq!(p.value("Q"), Some("0.33"));
        assert_eq!(p.value("x"), Some("\"a;b\""));
        assert!(parse_header_params(&mut Cursor::new(";;")).is_err());
        assert!(parse_header_params(&mut Cursor::new(";a=")).is_err());
        assert!(parse_header_params(&mut Cursor::new("junk")).is_err());
    }

    #[test]
    fn uri_params() {
        let p = parse_uri_params(";lr;unknownwith=value;%6C%72;n%61me=v%61lue%25%34%31").unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(
            p.to_string(),
            ";lr;unknownwith=value;%6C%72;n%61me=v%61lue%25%34%31"
        );
        assert!(parse_uri_params(";").is_err());
        assert!(parse_uri_params("; lr").is_err());
    }

    #[test]
    fn set_and_remove() {
        let mut p = Params::new();
        p.set("tag", Some("a"));
        p.set("TAG", Some("b"));
        assert_eq!(p.to_string(), ";tag=b");
        assert!(p.remove("tag"));
        assert!(p.is_empty());
    }
}
