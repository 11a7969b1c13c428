//! Running a program to its end within a deadline.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `command` with stdin closed and stdout and stderr captured, until it has exited and
/// closed both. Past `timeout` it is killed and the error says so, as does one when it cannot
/// start. Its exit status is the caller's to judge. Only the child is killed: a process it
/// started that still holds its pipes is not waited for (the dyno's end stops it).
pub fn run(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let shown = shown(command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let deadline = Instant::now() + timeout;
    let timed_out = |mut child: Child| {
        let _ = child.kill();
        let _ = child.wait();
        format!("`{shown}` timed out after {} seconds", timeout.as_secs())
    };
    // Both pipes are read at once, so a child that fills one is never stuck.
    let (tx, rx) = mpsc::channel();
    read_in_background(child.stdout.take(), 0, tx.clone());
    read_in_background(child.stderr.take(), 1, tx);
    let mut captured = [Vec::new(), Vec::new()];
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((index, bytes)) => captured[index] = bytes,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => return Err(timed_out(child)),
        }
    }
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let [stdout, stderr] = captured;
                return Ok(Output { status, stdout, stderr });
            }
            Ok(None) if Instant::now() >= deadline => return Err(timed_out(child)),
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("cannot wait for `{shown}`: {e}")),
        }
    }
}

/// The program and its arguments, for messages.
pub fn shown(command: &Command) -> String {
    let words = std::iter::once(command.get_program()).chain(command.get_args());
    words.map(|word| word.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

fn read_in_background<R: Read + Send + 'static>(pipe: Option<R>, index: usize, tx: mpsc::Sender<(usize, Vec<u8>)>) {
    let Some(mut pipe) = pipe else { return };
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send((index, bytes));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_status_are_captured() {
        let output =
            run(Command::new("bash").args(["-c", "echo out; echo err >&2; exit 3"]), Duration::from_secs(10)).unwrap();
        assert_eq!((output.stdout.as_slice(), output.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
        assert_eq!(output.status.code(), Some(3));
    }

    #[test]
    fn a_process_past_its_deadline_is_killed() {
        let started = Instant::now();
        let error = run(Command::new("sleep").arg("30"), Duration::from_millis(300)).unwrap_err();
        assert!(error.starts_with("`sleep 30` timed out after"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_program_that_cannot_start_is_an_error() {
        let error = run(&mut Command::new("/nonexistent/bin/detect"), Duration::from_secs(1)).unwrap_err();
        assert!(error.starts_with("cannot run `/nonexistent/bin/detect`:"), "{error}");
    }
}
