//! The timing of a `git push` from its own output (bench/push/run.sh, bench/selfupgrade/run.sh).
//!
//! `push` writes LOG: `START <t>`, then `<t> <line>` per line of the command's output as it
//! arrives, then `EXIT <t> <status>`, times in epoch seconds with 6 decimals. The other
//! commands read LOG back: the phases between the builder's `----->` lines, each line with its
//! offset, and how the dyno runner's log splits the boot phase.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The lines of the push's output that start its build, slug and release phases.
const MARKERS: [&str; 3] = ["-----> Building on", "-----> Compressing...", "-----> Launching..."];

/// LOG read back.
#[derive(Debug, PartialEq)]
pub struct PushLog {
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub lines: Vec<(f64, String)>,
}

/// Runs `command` and writes LOG (see the module doc); exits with the command's status, or, if a
/// signal killed it, with -signal & 0xff as the Python script did (`EXIT … -9`, status 247).
///
/// Its stdout and stderr are two pipes, each read by its own thread: std (before 1.87) has no
/// way to make one pipe for both. Each line is stamped and written under one lock, so LOG's
/// times never go back.
pub fn push(log_path: &Path, command: &[OsString]) -> Result<ExitCode, String> {
    let file = File::create(log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let log = Arc::new(Mutex::new(file));
    let write = |log: &Mutex<File>, entry: String| -> Result<(), String> {
        let mut file = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(entry.as_bytes()).map_err(|e| format!("writing {}: {e}", log_path.display()))
    };
    write(&log, format!("START {}\n", now()))?;
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {}: {e}", command[0].to_string_lossy()))?;
    let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
    let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
    let readers: Vec<_> = [stdout, stderr]
        .into_iter()
        .flatten()
        .map(|output| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut output = BufReader::new(output);
                let mut raw = Vec::new();
                loop {
                    raw.clear();
                    if output.read_until(b'\n', &mut raw)? == 0 {
                        return Ok(());
                    }
                    let mut file = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    file.write_all(format!("{} {}\n", now(), output_line(&raw)).as_bytes())?;
                }
            })
        })
        .collect();
    for reader in readers {
        reader
            .join()
            .map_err(|_| "a reader thread panicked".to_string())?
            .map_err(|e| format!("copying the output to {}: {e}", log_path.display()))?;
    }
    let status = child.wait().map_err(|e| format!("waiting for the command: {e}"))?;
    let code = match status.code() {
        Some(code) => code,
        None => -std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(1),
    };
    write(&log, format!("EXIT {} {code}\n", now()))?;
    Ok(ExitCode::from(code as u8))
}

/// A line of the command's output as LOG keeps it: without its `\n`, and of a line that
/// carriage returns rewrite (git's progress), the last part.
fn output_line(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let text = String::from_utf8_lossy(raw);
    text.rsplit('\r').next().unwrap_or_default().to_string()
}

/// Epoch seconds with 6 decimals.
fn now() -> String {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", since.as_secs(), since.subsec_micros())
}

pub fn read_log(path: &Path) -> Result<PushLog, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    parse_log(&String::from_utf8_lossy(&bytes)).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn parse_log(text: &str) -> Result<PushLog, String> {
    let mut log = PushLog { start: None, end: None, lines: Vec::new() };
    for (n, entry) in text.split_terminator('\n').enumerate() {
        let bad = || format!("line {}: `{entry}` is not `START <t>`, `<t> <line>` nor `EXIT <t> <status>`", n + 1);
        if let Some(rest) = entry.strip_prefix("START ") {
            log.start = Some(first_number(rest).ok_or_else(bad)?);
        } else if let Some(rest) = entry.strip_prefix("EXIT ") {
            log.end = Some(first_number(rest).ok_or_else(bad)?);
        } else {
            let (t, text) = entry.split_once(' ').unwrap_or((entry, ""));
            log.lines.push((t.parse().map_err(|_| bad())?, text.to_string()));
        }
    }
    Ok(log)
}

fn first_number(words: &str) -> Option<f64> {
    words.split_whitespace().next()?.parse().ok()
}

/// `receive build slug release boot total`, in seconds with 2 decimals: from the push's start to
/// each marker line, to its exit, to `served`; the total from its start to `served`.
pub fn phases(log: &PushLog, served: f64) -> Result<String, String> {
    let (start, end) = bounds(log)?;
    let mut marks = vec![start];
    for marker in MARKERS {
        marks.push(first(&log.lines, marker)?);
    }
    marks.extend([end, served]);
    let mut spans: Vec<f64> = marks.windows(2).map(|pair| pair[1] - pair[0]).collect();
    spans.push(served - start);
    Ok(spans.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(" "))
}

/// Each line with its offset from the push's start, then the push's exit.
pub fn lines(log: &PushLog) -> Result<String, String> {
    let (start, end) = bounds(log)?;
    let mut out = String::new();
    for (t, text) in &log.lines {
        out += &format!("  +{:6.2}s  {text}\n", t - start);
    }
    out += &format!("  +{:6.2}s  (git push exits)\n", end - start);
    Ok(out)
}

/// One line from the dyno runner's log (`<RFC 3339 stamp> <message>` lines since the push
/// started): when the build dyno started, and the boot phase split into the runner seeing the
/// release and building APP's slug image (when it had none), its web dyno starting, and the
/// dyno answering (`served`).
pub fn runner(log: &PushLog, runner_log: &str, app: &str, served: f64) -> Result<String, String> {
    let (start, end) = bounds(log)?;
    let events: Vec<(f64, &str)> = runner_log
        .lines()
        .filter_map(|line| {
            let (stamp, rest) = line.split_once(' ').unwrap_or((line, ""));
            let t = parse_rfc3339(stamp)?;
            (t >= start).then_some((t, rest))
        })
        .collect();
    let at = |needles: &[&str]| events.iter().find(|(_, rest)| needles.iter().all(|n| rest.contains(n))).map(|e| e.0);
    let app_field = format!("app={app} ");
    let builder = at(&["dyno started", "app=ouro-builder"]);
    let building = at(&["building slug image", &app_field]);
    let built = at(&["slug image built", &app_field]);
    let web = at(&["dyno started", &app_field, "dyno=web."]);
    let (Some(builder), Some(web)) = (builder, web) else {
        return Ok("  (runner log: events not found)".to_string());
    };
    let mut parts = vec![format!("  runner: build dyno started +{:.2}s", builder - start)];
    match (building, built) {
        (Some(building), Some(built)) => parts.push(format!(
            "after the push: runner starts the slug image {:+.2}s, slug image built in {:.2}s, web dyno started +{:.2}s",
            building - end,
            built - building,
            web - built
        )),
        _ => parts.push(format!("after the push: web dyno started +{:.2}s (slug image existed)", web - end)),
    }
    parts.push(format!("answers +{:.2}s", served - web));
    Ok(parts.join("; "))
}

fn bounds(log: &PushLog) -> Result<(f64, f64), String> {
    match (log.start, log.end) {
        (Some(start), Some(end)) => Ok((start, end)),
        (None, _) => Err("the push's log has no START line".to_string()),
        (_, None) => Err("the push's log has no EXIT line (did the push finish?)".to_string()),
    }
}

fn first(lines: &[(f64, String)], marker: &str) -> Result<f64, String> {
    lines
        .iter()
        .find(|(_, text)| text.contains(marker))
        .map(|l| l.0)
        .ok_or_else(|| format!("`{marker}` not in the push's output"))
}

/// Epoch seconds of an RFC 3339 stamp with an offset (`2026-12-07T03:29:18.123456Z`,
/// `…+01:00`), to the microsecond (further digits are dropped, as Python's `fromisoformat`
/// does); `None` for anything else, such as a line without a stamp.
pub fn parse_rfc3339(stamp: &str) -> Option<f64> {
    let b = stamp.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| b.get(i) != Some(&c)) || !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0;
    if matches!(b.get(i), Some(b'.' | b',')) {
        let fraction = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if fraction == 0 {
            return None;
        }
        let kept = fraction.min(6);
        micros = digits(i + 1, kept)? * 10_i64.pow((6 - kept) as u32);
        i += 1 + fraction;
    }
    let offset = match &b[i..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), ..] => {
            let (h, m) = match b.len() - i {
                6 if b[i + 3] == b':' => (digits(i + 1, 2)?, digits(i + 4, 2)?),
                5 => (digits(i + 1, 2)?, digits(i + 3, 2)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let offset = (h * 60 + m) * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    // As Python's `timestamp()`: whole microseconds, divided once.
    Some((seconds * 1_000_000 + micros) as f64 / 1e6)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "START 100.000000
100.500000 remote: Counting objects: 1
101.250000 remote: -----> Building on the Heroku-24 stack
105.000000 remote: -----> Compressing...
105.000000 remote: -----> Compressing... (again)
106.125000 remote: -----> Launching...
106.500000 
EXIT 107.000000 0
";

    #[test]
    fn log_lines_keep_their_text_and_time() {
        let log = parse_log(LOG).unwrap();
        assert_eq!(log.start, Some(100.0));
        assert_eq!(log.end, Some(107.0));
        assert_eq!(log.lines.len(), 6);
        assert_eq!(log.lines[1], (101.25, "remote: -----> Building on the Heroku-24 stack".to_string()));
        assert_eq!(log.lines[5], (106.5, String::new()));
        assert!(parse_log("START x\n").unwrap_err().contains("line 1"));
        assert!(parse_log("START 1\nnot-a-time text\n").unwrap_err().contains("line 2"));
    }

    #[test]
    fn output_lines_keep_the_last_part_of_carriage_returns() {
        let check = |raw: &[u8], expect: &str| assert_eq!(output_line(raw), expect, "{raw:?}");
        check(b"plain\n", "plain");
        check(b"no newline", "no newline");
        check(b"50% (1/2)\r100% (2/2), done.\n", "100% (2/2), done.");
        check(b"ends with cr\r\n", "");
        check(b"bad \xff byte\n", "bad \u{fffd} byte");
        check(b"\n", "");
    }

    #[test]
    fn phases_run_from_marker_to_marker() {
        let log = parse_log(LOG).unwrap();
        assert_eq!(phases(&log, 110.0).unwrap(), "1.25 3.75 1.12 0.88 3.00 10.00");
        let missing = parse_log("START 1\n2 remote: -----> Building on x\nEXIT 3 0\n").unwrap();
        assert_eq!(phases(&missing, 4.0).unwrap_err(), "`-----> Compressing...` not in the push's output");
        let unfinished = parse_log("START 1\n2 x\n").unwrap();
        assert!(phases(&unfinished, 4.0).unwrap_err().contains("no EXIT"));
    }

    #[test]
    fn lines_show_offsets_from_the_start() {
        let log = parse_log("START 100\n100.5 a b\n112.345 c\nEXIT 200.125 1\n").unwrap();
        // 112.345 - 100 is 12.3449…, and 100.125 a tie rounded to even: as Python's `%6.2f`.
        assert_eq!(lines(&log).unwrap(), "  +  0.50s  a b\n  + 12.34s  c\n  +100.12s  (git push exits)\n");
    }

    #[test]
    fn rfc3339_stamps() {
        let check = |stamp: &str, expect: Option<f64>| assert_eq!(parse_rfc3339(stamp), expect, "{stamp}");
        check("1970-01-01T00:00:00Z", Some(0.0));
        check("2026-12-07T03:29:18.123456Z", Some(1_796_614_158.123456));
        check("2026-12-07T03:29:18.1234567Z", Some(1_796_614_158.123456));
        check("2026-12-07T03:29:18.1Z", Some(1_796_614_158.1));
        check("2026-12-07T03:29:18Z", Some(1_796_614_158.0));
        check("2026-12-07T04:29:18.5+01:00", Some(1_796_614_158.5));
        check("2026-12-07T02:59:18-0030", Some(1_796_614_158.0));
        check("2024-02-29T00:00:00Z", Some(1_709_164_800.0));
        check("2000-03-01T00:00:00Z", Some(951_868_800.0));
        check("1969-12-31T23:59:59Z", Some(-1.0));
        check("2023-02-29T00:00:00Z", None);
        check("2026-12-07T03:29:60Z", None);
        check("2026-12-07T03:29:18", None);
        check("2026-12-07T03:29:18.Z", None);
        check("2026-12-07 03:29:18Z", None);
        check("\u{1b}[2m2026-12-07T03:29:18Z", None);
        check("INFO", None);
        check("", None);
    }

    #[test]
    fn runner_splits_the_boot_phase() {
        let log = parse_log("START 1796614150\n1796614151 x\nEXIT 1796614160 0\n").unwrap();
        let runner_log = "2026-12-07T03:29:05Z  INFO dyno started app=bench dyno=web.1 (before the push)
2026-12-07T03:29:12.250Z  INFO dyno started app=ouro-builder dyno=build.1
not a stamped line
2026-12-07T03:29:20.500000Z  INFO building slug image app=bench release=2
2026-12-07T03:29:20.600000Z  INFO slug image built app=benchmark release=2
2026-12-07T03:29:22Z  INFO slug image built app=bench release=2
2026-12-07T03:29:22.75Z  INFO dyno started app=bench dyno=web.1
";
        assert_eq!(
            runner(&log, runner_log, "bench", 1_796_614_163.5).unwrap(),
            "  runner: build dyno started +2.25s; after the push: runner starts the slug image +0.50s, \
             slug image built in 1.50s, web dyno started +0.75s; answers +0.75s"
        );
        let existed: String =
            runner_log.lines().filter(|l| !l.contains("slug image")).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            runner(&log, &existed, "bench", 1_796_614_163.5).unwrap(),
            "  runner: build dyno started +2.25s; after the push: web dyno started +2.75s (slug image existed); \
             answers +0.75s"
        );
        assert_eq!(runner(&log, "", "bench", 1.0).unwrap(), "  (runner log: events not found)");
    }
}
