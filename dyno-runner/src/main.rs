//! `ouro-dyno-runner`: reconciles dynos with the API's desired state until SIGTERM or Ctrl-C.
//! Configuration from the environment (see `ouro_dyno_runner::Config`). With `--supervise`, it
//! keeps such a runner running instead (see `ouro_dyno_runner::supervise`).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(ansi).with_target(false).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(ouro_dyno_runner::supervise::FLAG) {
        let log = match &args[1..] {
            [] => None,
            [flag, path] if flag == ouro_dyno_runner::supervise::LOG_FLAG => Some(std::path::PathBuf::from(path)),
            _ => {
                eprintln!("usage: ouro-dyno-runner [--supervise [--log PATH]]");
                return ExitCode::from(2);
            }
        };
        return ouro_dyno_runner::supervise::supervise(log, shutdown_signal()).await;
    }
    let config = match ouro_dyno_runner::Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ouro-dyno-runner: {e}");
            return ExitCode::from(2);
        }
    };
    match ouro_dyno_runner::run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ouro-dyno-runner: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler can be installed");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
