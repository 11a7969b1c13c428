//! `ouro-dyno-runner --supervise`: keeps a runner running. The supervisor starts the runner (this
//! same binary, same environment and output) and starts it again whenever it ends, after a
//! back-off (1 s, doubling to 30 s, back to 1 s once a runner lived a minute), so a crash of the
//! runner heals by itself: the new runner adopts every dyno, as after any restart. SIGTERM or
//! Ctrl-C to the supervisor is passed on to the runner, waited for, and ends both. `ouro up`
//! starts the runner this way where no init system supervises it (see the README).
//!
//! With `--log PATH` the supervisor writes its own lines and the runner's output to PATH,
//! rotating it at `OURO_RUNNER_LOG_MAX_BYTES` (10 MiB) into `PATH.1` … `PATH.3` (the oldest
//! goes): the runner's log no longer grows without bound.
//!
//! The supervisor does nothing else (no Docker, no network), so that it has no reason to fail.

use std::future::Future;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The flag that makes the binary a supervisor.
pub const FLAG: &str = "--supervise";

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A runner that lived this long ended for a new reason: the back-off starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// A runner that ends this soon after its start, this many times in a row, cannot start (a
/// setting, its port): the supervisor gives up and ends too, as systemd's start limit does, so
/// that `ouro up` sees it stop and shows the runner's log.
const QUICK_END: Duration = Duration::from_secs(10);
const QUICK_ENDS_TO_GIVE_UP: u32 = 5;

/// The flag that names the log file (see the module's doc).
pub const LOG_FLAG: &str = "--log";
/// Rotated files kept beside the log.
const KEEP_ROTATED: u32 = 3;

/// Runs the runner until `shutdown`, restarting it whenever it ends; its output and the
/// supervisor's own lines go to `log` (rotated) if given, else to this process's stderr.
pub async fn supervise(log: Option<std::path::PathBuf>, shutdown: impl Future<Output = ()>) -> ExitCode {
    let out = match log {
        Some(path) => {
            let max = std::env::var("OURO_RUNNER_LOG_MAX_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(10 << 20);
            match RotatingLog::open(path.clone(), max) {
                Ok(log) => Output::File(std::sync::Arc::new(std::sync::Mutex::new(log))),
                Err(e) => {
                    eprintln!("ouro-dyno-runner supervisor: cannot open its log {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        None => Output::Stderr,
    };
    let say = |line: String| out.line(line.as_bytes());
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            say(format!("ouro-dyno-runner supervisor: cannot tell where its binary is: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = FIRST_BACKOFF;
    let mut quick_ends = 0;
    loop {
        let started = Instant::now();
        let mut command = tokio::process::Command::new(&exe);
        command.stdin(Stdio::null());
        if let Output::File(_) = &out {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut runner = match command.spawn() {
            Ok(mut runner) => {
                out.copy_from(runner.stdout.take());
                out.copy_from(runner.stderr.take());
                runner
            }
            Err(e) => {
                say(format!("ouro-dyno-runner supervisor: cannot start the runner: {e}; trying again in {backoff:?}"));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => return ExitCode::SUCCESS,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let pid = runner.id().unwrap_or_default();
        say(format!("ouro-dyno-runner supervisor: started the runner (pid {pid})"));
        tokio::select! {
            ended = runner.wait() => {
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = FIRST_BACKOFF;
                }
                quick_ends = if started.elapsed() < QUICK_END { quick_ends + 1 } else { 0 };
                let how = match ended {
                    Ok(status) => status.to_string(),
                    Err(e) => e.to_string(),
                };
                if quick_ends >= QUICK_ENDS_TO_GIVE_UP {
                    say(format!("ouro-dyno-runner supervisor: the runner (pid {pid}) ended ({how}) within {QUICK_END:?} of its start {quick_ends} times in a row; giving up: see its lines above"));
                    return ExitCode::FAILURE;
                }
                say(format!("ouro-dyno-runner supervisor: the runner (pid {pid}) ended ({how}); starting it again in {backoff:?}"));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => return ExitCode::SUCCESS,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            () = &mut shutdown => {
                // Passed on: the runner stops its loop and leaves its dynos running.
                let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
                let _ = runner.wait().await;
                return ExitCode::SUCCESS;
            }
        }
    }
}

/// Where the supervisor's and the runner's lines go.
#[derive(Clone)]
enum Output {
    Stderr,
    File(std::sync::Arc<std::sync::Mutex<RotatingLog>>),
}

impl Output {
    fn line(&self, text: &[u8]) {
        match self {
            Output::Stderr => {
                use std::io::Write;
                let mut stderr = std::io::stderr().lock();
                let _ = stderr.write_all(text).and_then(|()| stderr.write_all(b"\n"));
            }
            Output::File(log) => {
                if let Ok(mut log) = log.lock() {
                    log.line(text);
                }
            }
        }
    }

    /// Copies `stream`'s lines (the runner's stdout or stderr) here, in a task of its own.
    fn copy_from(&self, stream: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>) {
        let Some(stream) = stream else { return };
        let out = self.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stream).split(b'\n');
            while let Ok(Some(line)) = lines.next_segment().await {
                out.line(&line);
            }
        });
    }
}

/// A log file that is rotated when it would pass `max` bytes: `PATH` → `PATH.1` → … →
/// `PATH.{KEEP_ROTATED}`, the oldest removed.
struct RotatingLog {
    path: std::path::PathBuf,
    file: std::fs::File,
    size: u64,
    max: u64,
}

impl RotatingLog {
    fn open(path: std::path::PathBuf, max: u64) -> std::io::Result<RotatingLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog { path, file, size, max: max.max(1) })
    }

    fn line(&mut self, text: &[u8]) {
        use std::io::Write;
        let len = text.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max {
            if let Err(e) = self.rotate() {
                let _ = writeln!(self.file, "ouro-dyno-runner supervisor: cannot rotate the log: {e}");
            }
        }
        if self.file.write_all(text).and_then(|()| self.file.write_all(b"\n")).is_ok() {
            self.size += len;
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            std::path::PathBuf::from(name)
        };
        for n in (1..KEEP_ROTATED).rev() {
            if numbered(n).exists() {
                std::fs::rename(numbered(n), numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_and_keeps_three_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runner.log");
        let mut log = RotatingLog::open(path.clone(), 100).unwrap();
        for i in 0..40 {
            log.line(format!("line {i:02} of the runner's output").as_bytes());
        }
        let names: Vec<String> = {
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names, ["runner.log", "runner.log.1", "runner.log.2", "runner.log.3"]);
        for name in &names {
            assert!(std::fs::metadata(dir.path().join(name)).unwrap().len() <= 100, "{name}");
        }
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.ends_with("line 39 of the runner's output\n"), "{newest}");
        let older = std::fs::read_to_string(dir.path().join("runner.log.1")).unwrap();
        assert!(older.lines().last().unwrap() < newest.lines().next().unwrap(), "in order");
    }
}
