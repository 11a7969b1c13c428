//! `ouro-api`: serves the Platform API until SIGTERM or Ctrl-C. Configuration comes from the
//! environment (see `ouro_api::Config`).

use std::process::ExitCode;

fn main() -> ExitCode {
    // git runs this binary as the repositories' pre-receive hook: no server, no runtime.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("git-hook") {
        return ExitCode::from(ouro_api::hook::run(&args[1..]) as u8);
    }
    serve()
}

#[tokio::main]
async fn serve() -> ExitCode {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(ansi).with_target(false).init();
    let config = match ouro_api::Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ouro-api: {e}");
            return ExitCode::from(2);
        }
    };
    match ouro_api::serve(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ouro-api: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler can be installed");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
