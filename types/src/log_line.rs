//! A log line (Heroku's logplex line): what the runner collects from dynos, the router writes
//! for each request and the API keeps, with its Heroku-style text and JSON forms. The router
//! and the runner need no more of the log plumbing than this type (`ouro-logs` has the rest).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest `text` a line keeps, in bytes (longer text is cut at a char boundary).
pub const MAX_TEXT_BYTES: usize = 10_000;

/// Who wrote a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A dyno's stdout/stderr (`app[web.1]`).
    App,
    /// The platform: router request lines, API events, runner state changes (`ouro[router]`).
    Ouro,
}

/// One line of an app's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: SystemTime,
    /// The app's name.
    pub app: String,
    pub source: Source,
    /// The dyno (`web.1`, `run.2`) or the platform component (`router`, `api`, `logs`).
    pub process: String,
    /// One line, without its newline, at most [`MAX_TEXT_BYTES`].
    pub text: String,
}

impl LogLine {
    /// A line written now. Strips one trailing newline (`\n` or `\r\n`) and keeps at most
    /// [`MAX_TEXT_BYTES`] of `text`.
    pub fn new(app: impl Into<String>, source: Source, process: impl Into<String>, text: impl Into<String>) -> LogLine {
        LogLine::at(SystemTime::now(), app, source, process, text)
    }

    /// [`LogLine::new`] with the time given.
    pub fn at(
        at: SystemTime,
        app: impl Into<String>,
        source: Source,
        process: impl Into<String>,
        text: impl Into<String>,
    ) -> LogLine {
        let mut line = LogLine { at, app: app.into(), source, process: process.into(), text: text.into() };
        line.bound();
        line
    }

    /// Logplex's line for lines a full queue dropped: `ouro[<process>]: Error L10 (output
    /// buffer overflow): N messages dropped since <time>`.
    pub fn overflow(app: impl Into<String>, process: impl Into<String>, dropped: u64, since: SystemTime) -> LogLine {
        let text = format!("Error L10 (output buffer overflow): {dropped} messages dropped since {}", rfc3339(since));
        LogLine::new(app, Source::Ouro, process, text)
    }

    /// Applies the constructor's rules to a line built field by field.
    pub fn bound(&mut self) {
        if self.text.ends_with('\n') {
            self.text.pop();
            if self.text.ends_with('\r') {
                self.text.pop();
            }
        }
        if self.text.len() > MAX_TEXT_BYTES {
            let mut end = MAX_TEXT_BYTES;
            while !self.text.is_char_boundary(end) {
                end -= 1;
            }
            self.text.truncate(end);
        }
    }
}

/// `at` in RFC 3339, UTC, with microseconds: `2026-11-26T09:00:00.123456Z`. Times outside
/// 1970–9999 (which RFC 3339 cannot write) are clamped to those years.
pub fn rfc3339(at: SystemTime) -> String {
    // The last microsecond of 9999-12-31.
    let last = UNIX_EPOCH + Duration::from_micros(253_402_300_800_000_000 - 1);
    let at = at.clamp(UNIX_EPOCH, last);
    humantime::format_rfc3339_micros(at).to_string()
}

/// Heroku's line: `2026-11-26T09:00:00.123456Z app[web.1]: text`.
impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}[{}]: {}", rfc3339(self.at), self.source, self.process, self.text)
    }
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::App => "app",
            Source::Ouro => "ouro",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A source other than `app` and `ouro`; says which are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSource(pub String);

impl fmt::Display for UnknownSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown log source `{}`: use `app` or `ouro`", self.0.escape_debug())
    }
}

impl std::error::Error for UnknownSource {}

impl FromStr for Source {
    type Err = UnknownSource;

    fn from_str(s: &str) -> Result<Source, UnknownSource> {
        match s {
            "app" => Ok(Source::App),
            "ouro" => Ok(Source::Ouro),
            _ => Err(UnknownSource(s.to_string())),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Source, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The JSON form of a line: `at` as an RFC 3339 string.
#[derive(Serialize)]
struct LineOut<'a> {
    at: String,
    app: &'a str,
    source: Source,
    process: &'a str,
    text: &'a str,
}

#[derive(Deserialize)]
struct LineIn {
    at: String,
    app: String,
    source: Source,
    process: String,
    text: String,
}

impl Serialize for LogLine {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        LineOut { at: rfc3339(self.at), app: &self.app, source: self.source, process: &self.process, text: &self.text }
            .serialize(serializer)
    }
}

/// Lines from JSON get the constructor's bounds too.
impl<'de> Deserialize<'de> for LogLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LogLine, D::Error> {
        let line = LineIn::deserialize(deserializer)?;
        let at = humantime::parse_rfc3339(&line.at)
            .map_err(|e| serde::de::Error::custom(format!("`at` is not an RFC 3339 UTC time: {e}")))?;
        Ok(LogLine::at(at, line.app, line.source, line.process, line.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(micros)
    }

    #[test]
    fn display_is_herokus_line() {
        let t = at(1_795_683_600_123_456); // 2026-11-26T09:00:00.123456Z
        let line = LogLine::at(t, "shop", Source::App, "web.1", "Listening on 5000\n");
        assert_eq!(line.to_string(), "2026-11-26T09:00:00.123456Z app[web.1]: Listening on 5000");
        let line = LogLine::at(t, "shop", Source::Ouro, "router", "at=info method=GET path=\"/\"\r\n");
        assert_eq!(line.to_string(), "2026-11-26T09:00:00.123456Z ouro[router]: at=info method=GET path=\"/\"");
        // Whole seconds keep their six digits; times RFC 3339 cannot write are clamped.
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(300_000_000_000)), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn json_round_trip() {
        let line = LogLine::at(at(1_795_683_600_123_456), "shop", Source::Ouro, "api", "Release v3 created");
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "at": "2026-11-26T09:00:00.123456Z",
                "app": "shop",
                "source": "ouro",
                "process": "api",
                "text": "Release v3 created",
            })
        );
        let back: LogLine = serde_json::from_value(json).unwrap();
        assert_eq!(back, line);

        let app: LogLine = serde_json::from_str(
            r#"{"at":"2026-11-26T09:00:00Z","app":"a","source":"app","process":"run.2","text":"hi\n"}"#,
        )
        .unwrap();
        assert_eq!((app.source, app.text.as_str(), app.at), (Source::App, "hi", at(1_795_683_600_000_000)));

        for bad in [
            r#"{"at":"yesterday","app":"a","source":"app","process":"web.1","text":""}"#,
            r#"{"at":"2026-11-26T09:00:00Z","app":"a","source":"heroku","process":"web.1","text":""}"#,
            r#"{"at":"2026-11-26T09:00:00Z","app":"a","source":"app","process":"web.1"}"#,
        ] {
            assert!(serde_json::from_str::<LogLine>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_is_bounded_at_a_char_boundary() {
        let line = LogLine::new("a", Source::App, "web.1", "x".repeat(20_000));
        assert_eq!(line.text.len(), MAX_TEXT_BYTES);
        // 'é' is two bytes: 9,999 + 2 would pass the bound, so the 'é' goes.
        let line = LogLine::new("a", Source::App, "web.1", format!("{}é", "x".repeat(MAX_TEXT_BYTES - 1)));
        assert_eq!(line.text, "x".repeat(MAX_TEXT_BYTES - 1));
        // Only one trailing newline is stripped; inner ones stay.
        assert_eq!(LogLine::new("a", Source::App, "web.1", "a\nb\n\n").text, "a\nb\n");
        // Through JSON too.
        let json = serde_json::json!({"at": "2026-11-26T09:00:00Z", "app": "a", "source": "app",
            "process": "web.1", "text": "y".repeat(MAX_TEXT_BYTES + 1)});
        assert_eq!(serde_json::from_value::<LogLine>(json).unwrap().text.len(), MAX_TEXT_BYTES);
    }
}
