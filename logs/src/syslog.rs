//! Lines as syslog messages (RFC 5424) and their framing on a stream (RFC 6587).

use crate::LogLine;
use crate::rfc3339;

/// `<190>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - MSG`: PRI 190 is local7.info, HOSTNAME the
/// app's name, APP-NAME `app` or `ouro`, PROCID the process, no MSGID nor structured data.
/// Header fields are made valid: printable US-ASCII only (others become `_`), cut to their
/// maximum length (255, 48, 128), `-` when empty.
pub fn rfc5424(line: &LogLine) -> String {
    format!(
        "<190>1 {} {} {} {} - - {}",
        rfc3339(line.at),
        header_field(&line.app, 255),
        header_field(line.source.as_str(), 48),
        header_field(&line.process, 128),
        line.text
    )
}

/// RFC 6587 octet counting: `"<length in bytes> <msg>"`.
pub fn octet_framed(msg: &str) -> String {
    format!("{} {msg}", msg.len())
}

/// PRINTUSASCII (%d33-126), at most `max` characters, or the NILVALUE `-`.
fn header_field(value: &str, max: usize) -> String {
    let field: String = value.chars().take(max).map(|c| if c.is_ascii_graphic() { c } else { '_' }).collect();
    if field.is_empty() { "-".to_string() } else { field }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::Source;

    fn line(app: &str, source: Source, process: &str, text: &str) -> LogLine {
        LogLine::at(UNIX_EPOCH + Duration::from_micros(1_795_683_600_123_456), app, source, process, text)
    }

    #[test]
    fn lines_become_rfc5424_messages() {
        assert_eq!(
            rfc5424(&line("shop", Source::App, "web.1", "Listening on 5000")),
            "<190>1 2026-11-26T09:00:00.123456Z shop app web.1 - - Listening on 5000"
        );
        assert_eq!(
            rfc5424(&line("shop", Source::Ouro, "router", "at=info method=GET path=\"/\"")),
            "<190>1 2026-11-26T09:00:00.123456Z shop ouro router - - at=info method=GET path=\"/\""
        );
        // The message itself is free text: UTF-8 and spaces pass as they are.
        assert_eq!(
            rfc5424(&line("shop", Source::App, "web.1", "héllo wörld")),
            "<190>1 2026-11-26T09:00:00.123456Z shop app web.1 - - héllo wörld"
        );
    }

    #[test]
    fn header_fields_are_sanitized() {
        let hostile = line("", Source::App, "web 1\n<13>1 fake héader\u{0}", "x");
        assert_eq!(rfc5424(&hostile), "<190>1 2026-11-26T09:00:00.123456Z - app web_1_<13>1_fake_h_ader_ - - x");
        let long = line(&"a".repeat(300), Source::App, &"p".repeat(200), "x");
        let message = rfc5424(&long);
        let fields: Vec<&str> = message.split(' ').collect();
        assert_eq!((fields[2].len(), fields[3], fields[4].len()), (255, "app", 128));
        // Every header field is one printable ASCII token.
        for field in &fields[..7] {
            assert!(!field.is_empty() && field.bytes().all(|b| b.is_ascii_graphic()), "{field:?}");
        }
        assert_eq!(header_field("", 48), "-");
    }

    #[test]
    fn octet_framing_counts_bytes() {
        assert_eq!(octet_framed("hello"), "5 hello");
        assert_eq!(octet_framed(""), "0 ");
        // 'é' and 'ö' are two bytes each, '€' three.
        assert_eq!(octet_framed("héllo wörld €"), "17 héllo wörld €");
        let message = rfc5424(&line("shop", Source::App, "web.1", "€€"));
        let framed = octet_framed(&message);
        let (len, rest) = framed.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
        assert_eq!(rest, message);
    }
}
