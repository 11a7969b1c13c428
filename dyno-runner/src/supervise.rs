//! `ouro-dyno-runner --supervise`: keeps a runner running. The supervisor starts the runner (this
//! same binary, same environment and output) and starts it again whenever it ends, after a
//! back-off (1 s, doubling to 30 s, back to 1 s once a runner lived a minute), so a crash of the
//! runner heals by itself: the new runner adopts every dyno, as after any restart. SIGTERM or
//! Ctrl-C to the supervisor is passed on to the runner, waited for, and ends both. `ouro up`
//! starts the runner this way where no init system supervises it (see the README).
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

/// Runs the runner until `shutdown`, restarting it whenever it ends.
pub async fn supervise(shutdown: impl Future<Output = ()>) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("ouro-dyno-runner supervisor: cannot tell where its binary is: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = FIRST_BACKOFF;
    let mut quick_ends = 0;
    loop {
        let started = Instant::now();
        let mut runner = match tokio::process::Command::new(&exe).stdin(Stdio::null()).spawn() {
            Ok(runner) => runner,
            Err(e) => {
                eprintln!("ouro-dyno-runner supervisor: cannot start the runner: {e}; trying again in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => return ExitCode::SUCCESS,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let pid = runner.id().unwrap_or_default();
        eprintln!("ouro-dyno-runner supervisor: started the runner (pid {pid})");
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
                    eprintln!("ouro-dyno-runner supervisor: the runner (pid {pid}) ended ({how}) within {QUICK_END:?} of its start {quick_ends} times in a row; giving up: see its lines above");
                    return ExitCode::FAILURE;
                }
                eprintln!("ouro-dyno-runner supervisor: the runner (pid {pid}) ended ({how}); starting it again in {backoff:?}");
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
