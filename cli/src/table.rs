//! Text layout for humans: headings, aligned `Key: value` blocks and columns, and times.

use std::time::{Duration, SystemTime};

/// `=== title`, the Heroku-style section heading.
pub fn heading(title: &str) -> String {
    format!("=== {title}\n")
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// `Key: value` lines with the values aligned one space after the longest `Key:`.
pub fn key_values<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let key_width = pairs.iter().map(|(k, _)| width(k.as_ref()) + 1).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| {
            let key = format!("{}:", k.as_ref());
            match v.as_ref() {
                "" => format!("{key}\n"),
                value => format!("{key:<key_width$} {value}\n"),
            }
        })
        .collect()
}

/// Rows with every column but the last padded to its widest cell, two spaces apart.
pub fn columns(rows: &[Vec<String>]) -> String {
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..count).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| width(c)).max().unwrap_or(0)).collect();
    rows.iter().map(|row| row_line(row, &widths)).collect()
}

fn row_line(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, (cell, &w)) in row.iter().zip(widths).enumerate() {
        if i + 1 == row.len() {
            line.push_str(cell);
        } else {
            line.push_str(&format!("{cell:<w$}  "));
        }
    }
    line + "\n"
}

/// `just now`, `5m ago`, `3h ago`, `2d ago`.
pub fn relative(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..60 => "just now".to_string(),
        60..3_600 => format!("{}m ago", secs / 60),
        3_600..86_400 => format!("{}h ago", secs / 3_600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// An RFC 3339 time as `relative` from `now`; times in the future (clock skew) are
/// `just now`, and text that is not a time is shown as it is.
pub fn ago(timestamp: &str, now: SystemTime) -> String {
    match humantime::parse_rfc3339_weak(timestamp) {
        Ok(then) => relative(now.duration_since(then).unwrap_or_default()),
        Err(_) => timestamp.to_string(),
    }
}

/// `2026-11-26T00:25:55Z (3h ago)`: the time to the second, then how long ago.
pub fn when(timestamp: &str, now: SystemTime) -> String {
    match humantime::parse_rfc3339_weak(timestamp) {
        Ok(then) => format!("{} ({})", humantime::format_rfc3339_seconds(then), ago(timestamp, now)),
        Err(_) => timestamp.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let cases = [
            (0, "just now"),
            (59, "just now"),
            (60, "1m ago"),
            (125, "2m ago"),
            (3_599, "59m ago"),
            (3_600, "1h ago"),
            (3 * 3_600 + 59, "3h ago"),
            (86_399, "23h ago"),
            (86_400, "1d ago"),
            (5 * 86_400 + 7, "5d ago"),
        ];
        for (secs, expect) in cases {
            assert_eq!(relative(Duration::from_secs(secs)), expect, "{secs}s");
        }
    }

    #[test]
    fn times_from_text() {
        let now = humantime::parse_rfc3339("2026-11-26T03:30:00Z").unwrap();
        let cases = [
            ("2026-11-26T00:25:55.123456Z", "3h ago"),
            ("2026-11-26T03:29:30Z", "just now"),
            ("2026-11-27T00:00:00Z", "just now"),
            ("2026-11-20T03:30:00Z", "6d ago"),
            ("yesterday", "yesterday"),
        ];
        for (text, expect) in cases {
            assert_eq!(ago(text, now), expect, "{text}");
        }
        assert_eq!(when("2026-11-26T00:25:55.123456Z", now), "2026-11-26T00:25:55Z (3h ago)");
    }

    #[test]
    fn aligned_key_values() {
        let text = key_values(&[("Git URL", "g"), ("Web URL", "w"), ("Release", "v3"), ("Empty", "")]);
        assert_eq!(text, "Git URL: g\nWeb URL: w\nRelease: v3\nEmpty:\n");
        assert_eq!(key_values(&[("A", "1"), ("LONG_KEY", "2")]), "A:        1\nLONG_KEY: 2\n");
        assert_eq!(key_values::<&str, &str>(&[]), "");
    }

    #[test]
    fn aligned_columns() {
        let rows = vec![
            vec!["v10".to_string(), "Deploy abc".to_string(), "a@x".to_string()],
            vec!["v9".to_string(), "Set X".to_string(), "bob@x".to_string()],
        ];
        assert_eq!(columns(&rows), "v10  Deploy abc  a@x\nv9   Set X       bob@x\n");
        assert_eq!(columns(&[]), "");
    }
}
