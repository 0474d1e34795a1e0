//! Lexical helpers for RFC 3261 §25 grammar: character classes, a cursor over header values,
//! quoted strings, comma-separated lists. All indexing is checked; nothing here panics.

use crate::error::ValueError;

/// `token` characters (RFC 3261 §25.1).
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// `unreserved` = alphanum / mark.
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// `word` characters (Call-ID).
pub(crate) fn is_word(b: u8) -> bool {
    is_token(b) || b"()<>:\\\"/[]?{}".contains(&b)
}

pub(crate) fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// True if `s` is a non-empty token.
pub(crate) fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Checks `%HH` escapes and that every other byte satisfies `ok`.
pub(crate) fn check_escaped(s: &str, ok: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if ok(c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Decodes `%HH` escapes (invalid escapes are kept literally). Returns bytes because an escape
/// may encode NUL or non-UTF-8 (RFC 4475 escnull).
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let (Some(h), Some(l)) = (b.get(i + 1), b.get(i + 2))
            && let (Some(h), Some(l)) = (hex(*h), hex(*l))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses `1*DIGIT` into a u64 (leading zeros allowed), rejecting overflow.
pub(crate) fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 40 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// A cursor over a header value.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos.min(self.s.len());
    }

    pub(crate) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    pub(crate) fn slice(&self, from: usize, to: usize) -> &'a str {
        self.s.get(from..to).unwrap_or("")
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub(crate) fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// Consumes `c` (after optional whitespace on both sides). Returns whether it was there.
    pub(crate) fn eat_sep(&mut self, c: u8) -> bool {
        let save = self.pos;
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            self.skip_ws();
            true
        } else {
            self.pos = save;
            false
        }
    }

    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes bytes while `f` holds; returns the consumed slice (possibly empty).
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    /// Consumes non-ASCII UTF-8 too when `f` holds for ASCII (used for UTF-8 parameter values).
    pub(crate) fn token(&mut self) -> &'a str {
        self.take_while(is_token)
    }

    /// Consumes a quoted string including its quotes; returns the raw text with quotes.
    pub(crate) fn quoted(&mut self) -> Result<&'a str, ValueError> {
        let start = self.pos;
        if !self.eat(b'"') {
            return Err("expected quoted string".into());
        }
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(self.slice(start, self.pos));
                }
                Some(b'\\') => {
                    // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                    match self.s.as_bytes().get(self.pos + 1) {
                        Some(&c) if c <= 0x7f && c != b'\r' && c != b'\n' => self.pos += 2,
                        _ => return Err("invalid escape in quoted string".into()),
                    }
                }
                Some(c) if c == b'\r' || c == b'\n' => {
                    return Err("line break inside quoted string".into());
                }
                Some(_) => self.pos += 1,
            }
        }
    }
}

/// Splits a header value at top-level commas (outside quotes and angle brackets). Empty elements
/// are an error. Whitespace around elements is trimmed.
pub(crate) fn split_commas(v: &str) -> Result<Vec<&str>, ValueError> {
    let mut out = Vec::new();
    let b = v.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut in_quote = false;
    let mut in_angle = false;
    while let Some(&c) = b.get(i) {
        if in_quote {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_quote = false;
            }
        } else {
            match c {
                b'"' => in_quote = true,
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => {
                    let part = v.get(start..i).unwrap_or("").trim_matches([' ', '\t']);
                    if part.is_empty() {
                        return Err("empty element in comma-separated list".into());
                    }
                    out.push(part);
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    if in_quote {
        return Err("unterminated quoted string".into());
    }
    let part = v.get(start..).unwrap_or("").trim_matches([' ', '\t']);
    if part.is_empty() {
        return Err("empty element in comma-separated list".into());
    }
    out.push(part);
    Ok(out)
}

/// Removes the quotes and quoted-pair escapes of a quoted string (raw, with quotes).
pub fn unquote(raw: &str) -> String {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Quotes `s` as a quoted-string, escaping `"` and `\`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_respect_quotes_and_angles() {
        let v = r#""a,b" <sip:x@y;p=1,2>, <sip:z>"#;
        assert_eq!(
            split_commas(v).unwrap(),
            vec![r#""a,b" <sip:x@y;p=1,2>"#, "<sip:z>"]
        );
        assert!(split_commas("a,,b").is_err());
        assert!(split_commas("\"abc").is_err());
    }

    #[test]
    fn quoted_pairs() {
        let mut c = Cursor::new(r#""J Rosenberg \\\"" rest"#);
        assert_eq!(c.quoted().unwrap(), r#""J Rosenberg \\\"""#);
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert!(Cursor::new("\"abc").quoted().is_err());
        assert_eq!(quote(r#"a"b\"#), r#""a\"b\\""#);
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape("null-%00-null"), b"null-\0-null");
        assert_eq!(unescape("%zz%4"), b"%zz%4");
        assert!(check_escaped("a%20b", is_unreserved));
        assert!(!check_escaped("a%2", is_unreserved));
    }

    #[test]
    fn digits() {
        assert_eq!(parse_digits("0068"), Some(68));
        assert_eq!(parse_digits("36893488147419103232"), None);
        assert_eq!(parse_digits("-1"), None);
        assert_eq!(parse_digits(""), None);
    }
}
