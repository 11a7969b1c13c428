//! Following a dyno's output: one task per container reads its stdout and stderr through the
//! Docker Engine (`logs` with `follow`), cuts it into lines and queues each as an
//! `app[web.1]` log line for the API (see `logs.rs`).
//!
//! Times: the runner asks Docker for its timestamps (`timestamps: true`), and a line's time is
//! the one Docker gave it when the dyno wrote it, not when the runner read it. The same
//! timestamps say where to resume without shipping a line twice: a follower keeps, for each of
//! stdout and stderr, the time of the last line it queued (and how many lines had that very
//! time), resumes a broken stream a little before the later of the two (`since`, whole seconds,
//! [`OVERLAP`] earlier) and skips what it had already queued. One cursor per stream, because
//! only within a stream are Docker's lines in the order of their times: the engine stamps each
//! stream's lines in a copier of its own and writes them as they come, so a stderr line can sit
//! in the log after a stdout line stamped later (a full CI run lost a dyno's first stdout line
//! that way, behind its first stderr line). A container
//! the runner starts is followed from its start; one it adopts (the runner restarted) from the
//! moment it was adopted, so that what the previous runner shipped is not shipped again.
//!
//! A stream that says nothing for [`QUIET`] while its container runs is closed and opened
//! again from the cursor: a follow stream of the Docker Engine can stall without ending (a
//! full CI run once saw a ticking dyno whose lines never came for 240 s), and a stalled
//! follower would lose the dyno's output for good. A quiet dyno costs one `logs` call per
//! [`QUIET`], which replays at most the lines of the last [`OVERLAP`] and a second (skipped).
//!
//! Bounds: a line is at most [`ouro_types::log_line::MAX_TEXT_BYTES`] (the rest of a longer one is
//! dropped); a follower holds at most one unfinished line per stream; it never waits on the
//! queue (see `LogQueue::push`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::container::{InspectContainerOptions, LogOutput, LogsOptions};
use futures_util::StreamExt;
use ouro_types::log_line::{LogLine, MAX_TEXT_BYTES, Source};

use crate::logs::LogQueue;

/// Room for Docker's timestamp (`2026-11-26T09:00:00.123456789Z `) in front of a line's text.
const TIMESTAMP_BYTES: usize = 40;
/// The most of one line a follower keeps.
const MAX_LINE_BYTES: usize = MAX_TEXT_BYTES + TIMESTAMP_BYTES;
/// Back-off between two attempts at a broken stream of a running container.
const RESUME_MIN: Duration = Duration::from_millis(200);
const RESUME_MAX: Duration = Duration::from_secs(5);
/// A stream silent this long is opened again (see the module's doc).
const QUIET: Duration = Duration::from_secs(30);
/// How far before its cursors a resumed stream starts: more than the skew between the times of
/// stdout's and stderr's lines and their order in the log.
const OVERLAP: Duration = Duration::from_secs(2);

/// The app whose one-off dynos are builds: their output reaches the user through the build,
/// not through the app's log.
pub use ouro_types::platform::BUILDER_APP;

/// Which dyno a container is.
#[derive(Debug, Clone)]
pub struct Dyno {
    pub container_id: String,
    pub app: String,
    /// `web.1`, `run.3`.
    pub name: String,
}

/// Where to start reading.
#[derive(Debug, Clone, Copy)]
pub enum From {
    /// Everything the container wrote: the runner started it.
    Start,
    /// Lines written from this time on: the runner adopted it.
    Time(SystemTime),
}

/// Follows `dyno`'s output in a task of its own until the container is gone or stopped; a
/// panic starts it again from then on.
pub fn spawn(docker: Docker, queue: LogQueue, dyno: Dyno, from: From) {
    tokio::spawn(async move {
        let mut from = from;
        loop {
            let task = tokio::spawn(follow(docker.clone(), queue.clone(), dyno.clone(), from));
            match task.await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(app = %dyno.app, dyno = %dyno.name, error = %e, "following a dyno's output failed; starting again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    from = From::Time(SystemTime::now());
                }
            }
        }
    });
}

async fn follow(docker: Docker, queue: LogQueue, dyno: Dyno, from: From) {
    let mut cursor = match from {
        From::Start => Cursors::default(),
        From::Time(at) => Cursors::at(at),
    };
    let mut delay = RESUME_MIN;
    loop {
        let read = read_stream(&docker, &queue, &dyno, &mut cursor).await;
        if read > 0 {
            delay = RESUME_MIN;
        }
        match docker.inspect_container(&dyno.container_id, None::<InspectContainerOptions>).await {
            Ok(inspect) if inspect.state.as_ref().and_then(|s| s.running) == Some(true) => {}
            Ok(_) => return,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return,
            Err(e) => tracing::debug!(container = %dyno.container_id, error = %e, "could not inspect a followed dyno"),
        }
        tracing::debug!(app = %dyno.app, dyno = %dyno.name, "a dyno's output stream broke; resuming");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RESUME_MAX);
    }
}

/// One `logs` stream from the cursor's second to its end (the container stopped, the stream
/// broke, or it said nothing for [`QUIET`]); returns how many lines it queued.
async fn read_stream(docker: &Docker, queue: &LogQueue, dyno: &Dyno, cursor: &mut Cursors) -> usize {
    let since = cursor.since();
    let options = LogsOptions::<String> {
        follow: true,
        stdout: true,
        stderr: true,
        timestamps: true,
        since,
        tail: "all".to_string(),
        ..Default::default()
    };
    read_lines(docker.logs(&dyno.container_id, Some(options)), QUIET, queue, dyno, cursor).await
}

/// Queues the lines of `stream` that `cursor` has not seen, until it ends, fails or says
/// nothing for `quiet`; returns how many it queued.
async fn read_lines<E>(
    mut stream: impl futures_util::Stream<Item = Result<LogOutput, E>> + Unpin,
    quiet: Duration,
    queue: &LogQueue,
    dyno: &Dyno,
    cursor: &mut Cursors,
) -> usize {
    let mut out = Reading { splitter: Splitter::default(), cursor: &mut cursor.out, replay: Replay::default() };
    let mut err = Reading { splitter: Splitter::default(), cursor: &mut cursor.err, replay: Replay::default() };
    let mut queued = 0usize;
    let mut ship = |at: Option<SystemTime>, text: String| {
        queue.push(LogLine::at(at.unwrap_or_else(SystemTime::now), &dyno.app, Source::App, &dyno.name, text));
        queued += 1;
    };
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(quiet, stream.next()).await {
        match chunk {
            LogOutput::StdOut { message } | LogOutput::Console { message } => out.push(&message[..], &mut ship),
            LogOutput::StdErr { message } => err.push(&message[..], &mut ship),
            LogOutput::StdIn { .. } => {}
        }
    }
    out.finish(&mut ship);
    err.finish(&mut ship);
    queued
}

/// One of a container's two streams within one `logs` stream: its lines, and which of them
/// are new.
struct Reading<'a> {
    splitter: Splitter,
    cursor: &'a mut Cursor,
    replay: Replay,
}

impl Reading<'_> {
    fn push(&mut self, bytes: &[u8], ship: &mut impl FnMut(Option<SystemTime>, String)) {
        let (cursor, replay) = (&mut *self.cursor, &mut self.replay);
        self.splitter.push(bytes, &mut |raw: &[u8]| admit_line(raw, cursor, replay, ship));
    }

    fn finish(&mut self, ship: &mut impl FnMut(Option<SystemTime>, String)) {
        let (cursor, replay) = (&mut *self.cursor, &mut self.replay);
        self.splitter.finish(&mut |raw: &[u8]| admit_line(raw, cursor, replay, ship));
    }
}

fn admit_line(raw: &[u8], cursor: &mut Cursor, replay: &mut Replay, ship: &mut impl FnMut(Option<SystemTime>, String)) {
    let (at, text) = parse_docker_line(raw);
    if cursor.admit(at, replay) {
        ship(at, text);
    }
}

/// Cuts a byte stream into lines (without their `\n`), at most [`MAX_LINE_BYTES`] each: the
/// start of a longer line is a line at once, and the rest of it, up to its newline, is
/// dropped.
#[derive(Debug, Default)]
struct Splitter {
    pending: Vec<u8>,
    /// Within a line already cut: dropping until its newline.
    overlong: bool,
}

impl Splitter {
    fn push(&mut self, mut bytes: &[u8], line: &mut impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|b| *b == b'\n');
            let (part, rest) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..]),
                None => (bytes, &[][..]),
            };
            if !self.overlong {
                let room = MAX_LINE_BYTES - self.pending.len();
                self.pending.extend_from_slice(&part[..part.len().min(room)]);
                if part.len() >= room && (newline.is_none() || part.len() > room) {
                    line(&self.pending);
                    self.pending.clear();
                    self.overlong = true;
                }
            }
            if newline.is_some() {
                if !self.overlong {
                    line(&self.pending);
                }
                self.pending.clear();
                self.overlong = false;
            }
            bytes = rest;
        }
    }

    /// The end of the stream: an unfinished line is a line.
    fn finish(&mut self, line: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() && !self.overlong {
            line(&self.pending);
        }
        self.pending.clear();
        self.overlong = false;
    }
}

/// A line as Docker sends it with `timestamps`: `<RFC 3339 nano> <text>`. Without a readable
/// timestamp, the whole is the text (and its time is unknown).
fn parse_docker_line(raw: &[u8]) -> (Option<SystemTime>, String) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if let Some(space) = raw.iter().position(|b| *b == b' ') {
        let at = std::str::from_utf8(&raw[..space]).ok().and_then(|t| humantime::parse_rfc3339(t).ok());
        if let Some(at) = at {
            return (Some(at), String::from_utf8_lossy(&raw[space + 1..]).into_owned());
        }
    }
    (None, String::from_utf8_lossy(raw).into_owned())
}

/// Which lines a follower has queued: those up to `after`, and of the lines stamped exactly
/// `after`, the first `queued_at_after` (several lines may share a timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    after: SystemTime,
    queued_at_after: usize,
}

impl Default for Cursor {
    fn default() -> Cursor {
        Cursor { after: UNIX_EPOCH, queued_at_after: 0 }
    }
}

/// Where a follower is in each of a container's streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cursors {
    out: Cursor,
    err: Cursor,
}

impl Cursors {
    /// Nothing queued before `at`, on either stream.
    fn at(at: SystemTime) -> Cursors {
        let cursor = Cursor { after: at, queued_at_after: 0 };
        Cursors { out: cursor, err: cursor }
    }

    /// The second a resumed `logs` stream starts at (0: from the container's start).
    fn since(&self) -> i64 {
        let later = self.out.after.max(self.err.after);
        if later == UNIX_EPOCH {
            return 0;
        }
        later
            .checked_sub(OVERLAP)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// What one stream has shown of the lines stamped with the cursor's time.
#[derive(Debug, Default)]
struct Replay {
    seen_at_after: usize,
}

impl Cursor {
    /// Whether a line stamped `at` is new (to be queued), moving the cursor past it if so. A
    /// line without a time is always new.
    fn admit(&mut self, at: Option<SystemTime>, replay: &mut Replay) -> bool {
        let Some(at) = at else { return true };
        if at < self.after {
            return false;
        }
        if at == self.after {
            replay.seen_at_after += 1;
            if replay.seen_at_after <= self.queued_at_after {
                return false;
            }
            self.queued_at_after += 1;
            return true;
        }
        self.after = at;
        self.queued_at_after = 1;
        replay.seen_at_after = 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `chunks` (fed one after the other) and returns the lines, then the lines that
    /// `finish` adds.
    fn split(chunks: &[&[u8]]) -> (Vec<String>, Vec<String>) {
        let mut splitter = Splitter::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut |l: &[u8]| lines.push(String::from_utf8_lossy(l).into_owned()));
        }
        let mut last = Vec::new();
        splitter.finish(&mut |l: &[u8]| last.push(String::from_utf8_lossy(l).into_owned()));
        (lines, last)
    }

    #[test]
    fn output_is_cut_into_lines_across_chunks() {
        let check = |chunks: &[&[u8]], lines: &[&str], last: &[&str]| {
            let (got, got_last) = split(chunks);
            assert_eq!((got, got_last), (to_strings(lines), to_strings(last)), "{chunks:?}");
        };
        check(&[b"a\nb\n"], &["a", "b"], &[]);
        check(&[b"hel", b"lo\nwor", b"ld\n"], &["hello", "world"], &[]);
        check(&[b"\n\n"], &["", ""], &[]);
        // A partial last line is flushed when the stream ends.
        check(&[b"done\npartial"], &["done"], &["partial"]);
        check(&[b""], &[], &[]);
    }

    #[test]
    fn a_huge_line_is_cut_and_its_rest_dropped() {
        let huge = vec![b'x'; MAX_LINE_BYTES * 3];
        let (lines, last) = split(&[&huge[..5000], &huge[5000..], b"\nnext\n"]);
        assert_eq!(lines.len(), 2, "{:?}", lines.iter().map(String::len).collect::<Vec<_>>());
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1], "next");
        assert!(last.is_empty());
        // Exactly the bound, then its newline: one line, nothing dropped after.
        let exact = [&vec![b'y'; MAX_LINE_BYTES][..], b"\nz\n"].concat();
        let (lines, _) = split(&[&exact]);
        assert_eq!(lines.iter().map(String::len).collect::<Vec<_>>(), [MAX_LINE_BYTES, 1]);
        // A huge line that never ends is said once; the end of the stream adds nothing.
        let (lines, last) = split(&[&huge]);
        assert_eq!((lines.len(), last.len()), (1, 0));
        // Through the log line, the text keeps MAX_TEXT_BYTES.
        let raw = [b"2026-11-26T09:00:00.5Z ".as_slice(), &huge[..MAX_LINE_BYTES - 23]].concat();
        let (at, text) = parse_docker_line(&raw);
        let line = LogLine::at(at.unwrap(), "a", Source::App, "web.1", text);
        assert_eq!(line.text.len(), MAX_TEXT_BYTES);
    }

    #[test]
    fn dockers_timestamps_are_the_lines_times() {
        let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
        assert_eq!(
            parse_docker_line(b"2026-11-26T09:00:00.123456789Z Listening on 5000\r"),
            (Some(at("2026-11-26T09:00:00.123456789Z")), "Listening on 5000".to_string())
        );
        assert_eq!(
            parse_docker_line(b"2026-11-26T09:00:01Z  two spaces"),
            (Some(at("2026-11-26T09:00:01Z")), " two spaces".to_string())
        );
        assert_eq!(parse_docker_line(b"2026-11-26T09:00:01Z "), (Some(at("2026-11-26T09:00:01Z")), String::new()));
        assert_eq!(parse_docker_line(b"no timestamp here"), (None, "no timestamp here".to_string()));
        assert_eq!(parse_docker_line(b"\xff\xfe bad"), (None, "\u{fffd}\u{fffd} bad".to_string()));
    }

    #[test]
    fn a_resumed_stream_queues_no_line_twice() {
        let t = |ms: u64| Some(UNIX_EPOCH + Duration::from_millis(1_795_683_600_000 + ms));
        // The first stream: three lines, two of them with the same time.
        let mut cursor = Cursor::default();
        let mut replay = Replay::default();
        let first: Vec<bool> = [t(1), t(2), t(2)].into_iter().map(|at| cursor.admit(at, &mut replay)).collect();
        assert_eq!(first, [true, true, true]);
        assert_eq!(cursor, Cursor { after: t(2).unwrap(), queued_at_after: 2 });
        // It broke; the next one starts at that second and replays them, then goes on (a third
        // line with the same time was written after the break).
        let mut replay = Replay::default();
        let again: Vec<bool> =
            [t(0), t(1), t(2), t(2), t(2), t(3), None].into_iter().map(|at| cursor.admit(at, &mut replay)).collect();
        assert_eq!(again, [false, false, false, false, true, true, true]);
        // Adopted at a time: only what was written from then on.
        let mut adopted = Cursor { after: t(5).unwrap(), queued_at_after: 0 };
        let mut replay = Replay::default();
        let lines: Vec<bool> = [t(4), t(5), t(6)].into_iter().map(|at| adopted.admit(at, &mut replay)).collect();
        assert_eq!(lines, [false, true, true]);
    }

    #[tokio::test]
    async fn a_stream_that_stalls_is_left_after_its_quiet_time() {
        let (queue, mut receiver) = crate::logs::queue(10);
        let dyno = Dyno { container_id: "c".into(), app: "a".into(), name: "web.1".into() };
        // One line, then a stream that neither ends nor says anything more: a stalled follow.
        let line = LogOutput::StdOut { message: "2026-11-26T09:00:00.5Z hello\n".into() };
        let stalled = futures_util::stream::iter([Ok::<_, ()>(line)]).chain(futures_util::stream::pending());
        let mut cursor = Cursors::default();
        let read = read_lines(Box::pin(stalled), Duration::from_millis(100), &queue, &dyno, &mut cursor);
        let queued = tokio::time::timeout(Duration::from_secs(10), read).await.expect("left the stalled stream");
        assert_eq!(queued, 1);
        let batch = receiver.next_batch().await.expect("a batch");
        assert_eq!(batch.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["hello"]);
        // Where the next stream resumes: after that line.
        assert_eq!(cursor.out.after, humantime::parse_rfc3339("2026-11-26T09:00:00.5Z").unwrap());
    }

    /// The lines `read_lines` queues from `chunks`, from `cursor`.
    async fn queued(chunks: Vec<LogOutput>, cursor: &mut Cursors) -> Vec<String> {
        let (queue, mut receiver) = crate::logs::queue(100);
        let dyno = Dyno { container_id: "c".into(), app: "a".into(), name: "web.1".into() };
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, ()>));
        let count = read_lines(Box::pin(stream), Duration::from_secs(5), &queue, &dyno, cursor).await;
        if count == 0 {
            return Vec::new();
        }
        let batch = receiver.next_batch().await.expect("a batch");
        batch.into_iter().map(|l| l.text).collect()
    }

    #[tokio::test]
    async fn a_line_of_one_stream_behind_a_later_line_of_the_other_is_kept() {
        let out = |line: &str| LogOutput::StdOut { message: format!("{line}\n").into() };
        let err = |line: &str| LogOutput::StdErr { message: format!("{line}\n").into() };
        // As the engine wrote them: stderr's first line before stdout's, which was stamped
        // earlier.
        let chunks = vec![
            err("2026-11-26T09:00:00.002Z hello from stderr"),
            out("2026-11-26T09:00:00.001Z hello from stdout"),
            out("2026-11-26T09:00:00.300Z tick 1"),
        ];
        let mut cursor = Cursors::default();
        assert_eq!(queued(chunks, &mut cursor).await, ["hello from stderr", "hello from stdout", "tick 1"]);
        // Resumed a little before the later cursor; the replay queues only what is new, on
        // both streams.
        assert_eq!(
            cursor.since(),
            humantime::parse_rfc3339("2026-11-26T08:59:58Z").unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs()
                as i64
        );
        let replay = vec![
            err("2026-11-26T09:00:00.002Z hello from stderr"),
            out("2026-11-26T09:00:00.001Z hello from stdout"),
            out("2026-11-26T09:00:00.300Z tick 1"),
            out("2026-11-26T09:00:00.600Z tick 2"),
            err("2026-11-26T09:00:00.599Z oops"),
        ];
        assert_eq!(queued(replay, &mut cursor).await, ["tick 2", "oops"]);
        assert_eq!(Cursors::default().since(), 0, "a started container is read from its start");
    }

    fn to_strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }
}
