//! Just enough JSON for the scripts: parse the API's answers, read one field by a dotted path,
//! count the items of an array whose fields have given values, and write strings (the route
//! source's table).

/// A parsed JSON value. Numbers keep their text: the scripts print and compare them, never
/// compute with them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Value>),
    /// Members in their order; with a repeated key, the last one counts (as most parsers do).
    Object(Vec<(String, Value)>),
}

pub fn parse(text: &str) -> Result<Value, String> {
    let mut parser = Parser { text: text.as_bytes(), at: 0, depth: 0 };
    let value = parser.value()?;
    parser.skip_space();
    if parser.at != parser.text.len() {
        return Err(parser.error("nothing after the value"));
    }
    Ok(value)
}

/// The value at `path`: keys and array indexes separated by dots (`a.b.0.c`), a negative index
/// counting from the end (`-1` is the last item); the empty path is the whole value.
pub fn get<'a>(value: &'a Value, path: &str) -> Result<&'a Value, String> {
    if path.is_empty() {
        return Ok(value);
    }
    let mut here = value;
    for (n, step) in path.split('.').enumerate() {
        let found = match here {
            Value::Object(members) => members.iter().rev().find(|(key, _)| key == step).map(|(_, v)| v),
            Value::Array(items) => step.parse::<i64>().ok().and_then(|i| {
                let i = if i < 0 { i + items.len() as i64 } else { i };
                usize::try_from(i).ok().and_then(|i| items.get(i))
            }),
            _ => None,
        };
        here = found.ok_or_else(|| {
            let within = path.split('.').take(n).collect::<Vec<_>>().join(".");
            let within = if within.is_empty() { "the input".to_string() } else { format!("`{within}`") };
            format!("no `{step}` in {within} (of path `{path}`)")
        })?;
    }
    Ok(here)
}

/// How many items of the array `value` match every `(path, value)` of `filters`: the item has
/// a field at the path (see [`get`]) whose [`text`] is the value.
pub fn count(value: &Value, filters: &[(&str, &str)]) -> Result<usize, String> {
    let Value::Array(items) = value else { return Err("the input is not a JSON array".to_string()) };
    let matches = |item: &Value| filters.iter().all(|(path, expect)| get(item, path).is_ok_and(|f| text(f) == *expect));
    Ok(items.iter().filter(|item| matches(item)).count())
}

/// A value as the scripts want it printed: a string as its text, anything else as compact JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => to_json(other),
    }
}

pub fn to_json(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.clone(),
        Value::String(s) => string(s),
        Value::Array(items) => format!("[{}]", items.iter().map(to_json).collect::<Vec<_>>().join(",")),
        Value::Object(members) => {
            let members: Vec<String> = members.iter().map(|(k, v)| format!("{}:{}", string(k), to_json(v))).collect();
            format!("{{{}}}", members.join(","))
        }
    }
}

/// `s` as a JSON string literal.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Deeper nesting than this is refused rather than overflowing the stack.
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn skip_space(&mut self) {
        while matches!(self.text.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        let found = self.text.get(self.at) == Some(&byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_space();
        match self.text.get(self.at) {
            Some(b'{' | b'[') if self.depth >= MAX_DEPTH => Err(self.error("nested too deep")),
            Some(b'{') => {
                self.at += 1;
                self.depth += 1;
                let mut members = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_space();
                        let key = self.string()?;
                        if !self.eat(b':') {
                            return Err(self.error("expected `:`"));
                        }
                        members.push((key, self.value()?));
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.error("expected `,` or `}`"));
                        }
                    }
                }
                self.depth -= 1;
                Ok(Value::Object(members))
            }
            Some(b'[') => {
                self.at += 1;
                self.depth += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value()?);
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.error("expected `,` or `]`"));
                        }
                    }
                }
                self.depth -= 1;
                Ok(Value::Array(items))
            }
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, String> {
        if self.text[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("unexpected word"))
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        let digits = |p: &mut Self| {
            let from = p.at;
            while p.text.get(p.at).is_some_and(u8::is_ascii_digit) {
                p.at += 1;
            }
            p.at - from
        };
        if self.text.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let whole = self.at;
        if digits(self) == 0 || (self.text[whole] == b'0' && self.at - whole > 1) {
            return Err(self.error("bad number"));
        }
        if self.text.get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return Err(self.error("bad number"));
            }
        }
        if matches!(self.text.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.text.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("bad number"));
            }
        }
        Ok(Value::Number(String::from_utf8_lossy(&self.text[start..self.at]).into_owned()))
    }

    fn string(&mut self) -> Result<String, String> {
        if self.text.get(self.at) != Some(&b'"') {
            return Err(self.error("expected a string"));
        }
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.text.get(self.at) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return String::from_utf8(out).map_err(|_| self.error("string is not UTF-8"));
                }
                Some(b'\\') => {
                    let kind = self.text.get(self.at + 1).copied();
                    self.at += 2;
                    let escaped = match kind {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(self.error("bad escape")),
                    };
                    out.extend_from_slice(escaped.encode_utf8(&mut [0; 4]).as_bytes());
                }
                Some(&c) if c < 0x20 => return Err(self.error("control character in a string")),
                Some(&c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// After `\u`: four hex digits, or a surrogate pair written as two escapes.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.text[self.at..].starts_with(b"\\u") {
                return Err(self.error("lone surrogate"));
            }
            self.at += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("bad surrogate pair"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("lone surrogate"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let hex = self.text.get(self.at..self.at + 4).ok_or_else(|| self.error("short \\u escape"))?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(self.error("bad \\u escape"));
        }
        let code = hex.iter().fold(0, |code, &h| code * 16 + char::from(h).to_digit(16).unwrap_or(0));
        self.at += 4;
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPS: &str = r#"{"name": "ouro-postgresql", "current_release": 7, "owner": {"id": "u1", "email": "a@b"},
        "released_at": null, "builds": [{"status": "failed"}, {"status": "succeeded", "ok": true}]}"#;

    #[test]
    fn get_follows_keys_and_indexes() {
        let app = parse(APPS).unwrap();
        let check = |path: &str, expect: &str| assert_eq!(text(get(&app, path).unwrap()), expect, "{path}");
        check("current_release", "7");
        check("name", "ouro-postgresql");
        check("owner.email", "a@b");
        check("released_at", "null");
        check("builds.0.status", "failed");
        check("builds.-1.status", "succeeded");
        check("builds.1.ok", "true");
        check("owner", r#"{"id":"u1","email":"a@b"}"#);
        assert_eq!(get(&app, "").unwrap(), &app);
        let missing = |path: &str| get(&app, path).unwrap_err();
        assert_eq!(missing("nope"), "no `nope` in the input (of path `nope`)");
        assert_eq!(missing("builds.2.status"), "no `2` in `builds` (of path `builds.2.status`)");
        assert_eq!(missing("builds.-3"), "no `-3` in `builds` (of path `builds.-3`)");
        assert_eq!(missing("builds.x"), "no `x` in `builds` (of path `builds.x`)");
        assert_eq!(missing("name.x"), "no `x` in `name` (of path `name.x`)");
        assert_eq!(text(get(&parse(r#"{"a": 1, "a": 2}"#).unwrap(), "a").unwrap()), "2");
    }

    #[test]
    fn count_matches_every_filter() {
        let dynos = parse(
            r#"[{"type": "web", "state": "up", "release": 3}, {"type": "web", "state": "starting", "release": 3},
                {"type": "worker", "state": "up", "release": 3}, {"type": "web", "state": "up", "release": 2}, 5]"#,
        )
        .unwrap();
        assert_eq!(count(&dynos, &[("state", "up")]).unwrap(), 3);
        assert_eq!(count(&dynos, &[("type", "web"), ("state", "up"), ("release", "3")]).unwrap(), 1);
        assert_eq!(count(&dynos, &[("release", "4")]).unwrap(), 0);
        assert_eq!(count(&dynos, &[]).unwrap(), 5);
        assert!(count(&parse("{}").unwrap(), &[]).is_err());
    }

    #[test]
    fn parse_reads_json() {
        let check = |text: &str, expect: Value| assert_eq!(parse(text).unwrap(), expect, "{text}");
        check(" -12.5e+3 ", Value::Number("-12.5e+3".to_string()));
        check("0", Value::Number("0".to_string()));
        check(r#""a\"b\\c\/\n\u00e9\ud83d\ude00""#, Value::String("a\"b\\c/\né😀".to_string()));
        check("\"é\"", Value::String("é".to_string()));
        check("[]", Value::Array(vec![]));
        check("[null, false]", Value::Array(vec![Value::Null, Value::Bool(false)]));
        check(r#"{"a": {}}"#, Value::Object(vec![("a".to_string(), Value::Object(vec![]))]));
        for bad in [
            "",
            "[",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "-",
            "tru",
            "\"\\x\"",
            "\"\\ud83d\"",
            "\"\\u+123\"",
            "1 2",
            "\"a\nb\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse(&"[".repeat(MAX_DEPTH + 1)).unwrap_err().contains("nested too deep"));
    }

    #[test]
    fn strings_round_trip() {
        for s in ["plain", "quote \" backslash \\ newline \n tab \t", "\u{1}\u{1f} é 😀"] {
            assert_eq!(parse(&string(s)).unwrap(), Value::String(s.to_string()));
        }
        assert_eq!(string("a\u{1}b"), "\"a\\u0001b\"");
    }
}
