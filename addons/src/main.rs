//! `ouro-addons`: the add-on provider of one kind (`OURO_ADDON_KIND`), serving on `$PORT` until
//! SIGTERM or Ctrl-C. See the library's doc for what it does.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match ouro_addons::Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    ouro_addons::log::init(config.kind);
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", config.port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("ouro-addons: cannot listen on port {}: {e}", config.port);
            return ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(config.port);
    tracing::info!("listening on port {port}");
    // Tests read this line to learn the port (bound on every interface, loopback among them).
    println!("ouro-addons listening on http://127.0.0.1:{port}");
    match ouro_addons::serve(listener, ouro_addons::AppState::new(config), shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ouro-addons: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM (the dyno stopping) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
