//! The filters of `ouro logs` (`--dyno`, `--source`).

use crate::{Error, LogLine, Result, Source};

/// The longest process filter (`--dyno`) accepted, in bytes.
pub const MAX_PROCESS_FILTER_BYTES: usize = 64;

/// Which lines `ouro logs` shows: all by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `web.1` matches that dyno only; `web` matches every `web.N` and a process named `web`.
    pub process: Option<String>,
    pub source: Option<Source>,
}

impl Filter {
    /// From the CLI's `--dyno` (`-d`) and `--source` (`-s`) values, `None` where not given. An
    /// empty, spaced, too long (over 64 bytes) or control-character value, or a source other
    /// than `app`/`ouro`, is an error of one line that says what is accepted.
    pub fn parse(process: Option<&str>, source: Option<&str>) -> Result<Filter> {
        let process = process.map(parse_process).transpose()?;
        let source = source
            .map(str::parse)
            .transpose()
            .map_err(|e: ouro_types::log_line::UnknownSource| Error::Filter(e.to_string()))?;
        Ok(Filter { process, source })
    }

    pub fn matches(&self, line: &LogLine) -> bool {
        self.source.is_none_or(|source| source == line.source)
            && self.process.as_deref().is_none_or(|process| process_matches(process, &line.process))
    }
}

fn parse_process(s: &str) -> Result<String> {
    let problem = if s.is_empty() {
        Some("is empty")
    } else if s.len() > MAX_PROCESS_FILTER_BYTES {
        Some("is longer than 64 bytes")
    } else if s.chars().any(char::is_whitespace) {
        Some("contains spaces")
    } else if s.chars().any(char::is_control) {
        Some("contains control characters")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::Filter(format!(
            "dyno filter `{}` {problem}: give a process type (`web`) or a dyno (`web.1`)",
            s.chars().take(MAX_PROCESS_FILTER_BYTES).collect::<String>().escape_debug()
        ))),
        None => Ok(s.to_string()),
    }
}

/// `web.1` matches exactly; `web` matches `web` and every `web.N`.
fn process_matches(filter: &str, process: &str) -> bool {
    if process == filter {
        return true;
    }
    if filter.contains('.') {
        return false;
    }
    match process.strip_prefix(filter).and_then(|rest| rest.strip_prefix('.')) {
        Some(index) => !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_dynos_process_types_and_sources() {
        let line = |source, process: &str| LogLine::new("a", source, process, "x");
        let check = |process: Option<&str>, source: Option<&str>, line: &LogLine, expect: bool| {
            let filter = Filter::parse(process, source).unwrap();
            assert_eq!(filter.matches(line), expect, "{filter:?} on {line}");
        };
        let web1 = line(Source::App, "web.1");
        let web12 = line(Source::App, "web.12");
        let router = line(Source::Ouro, "router");
        check(None, None, &web1, true);
        check(None, None, &router, true);
        check(Some("web.1"), None, &web1, true);
        check(Some("web.1"), None, &web12, false);
        check(Some("web"), None, &web1, true);
        check(Some("web"), None, &web12, true);
        check(Some("web"), None, &line(Source::App, "web"), true);
        check(Some("web"), None, &line(Source::App, "webhook.1"), false);
        check(Some("web"), None, &line(Source::App, "web.x"), false);
        check(Some("web"), None, &line(Source::App, "web."), false);
        check(Some("we"), None, &web1, false);
        check(Some("run"), None, &line(Source::App, "run.2"), true);
        check(Some("router"), None, &router, true);
        check(None, Some("app"), &web1, true);
        check(None, Some("app"), &router, false);
        check(None, Some("ouro"), &router, true);
        check(Some("web"), Some("ouro"), &web1, false);
    }

    #[test]
    fn bad_filters_say_what_is_accepted() {
        let check = |process: Option<&str>, source: Option<&str>, part: &str| {
            let error = Filter::parse(process, source).unwrap_err().to_string();
            assert!(error.contains(part), "{process:?} {source:?}: {error}");
            assert!(!error.contains('\n'), "one line: {error}");
        };
        check(Some(""), None, "is empty");
        check(Some("web 1"), None, "contains spaces");
        check(Some("web\n1"), None, "contains spaces");
        check(Some("web\u{7}"), None, "contains control characters");
        check(Some(&"w".repeat(65)), None, "longer than 64");
        check(Some("web"), Some("heroku"), "use `app` or `ouro`");
        check(None, Some(""), "use `app` or `ouro`");
        assert!(Filter::parse(Some(&"w".repeat(64)), None).is_ok());
    }
}
