//! `ouro-router`: binds `OURO_ROUTER_LISTEN` (default 127.0.0.1:8080) and, if set,
//! `OURO_ROUTER_TLS_LISTEN` for HTTPS, follows
//! `OURO_ROUTES_URL` (default http://127.0.0.1:7701/routes), and serves until SIGTERM or Ctrl-C,
//! then drains in-flight requests (capped) and exits. Request log lines go to stdout and are
//! shipped to `OURO_LOGS_URL` (default: `OURO_ROUTES_URL` with `/routes` → `/logs`; empty: not
//! shipped) for the apps' logs; the router's own messages go to stderr.
//! `OURO_HEADER_READ_TIMEOUT_SECONDS` (default 10) and `OURO_MAX_CONNECTIONS` (default 10 000)
//! bound its listeners, as they do the API's, the runner's and the providers'.

use std::process::ExitCode;

use ouro_router::{Config, serve_with_tls};

#[tokio::main]
async fn main() -> ExitCode {
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(colours).with_target(false).init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ouro-router: {error}");
            return ExitCode::from(2);
        }
    };
    let listener = match ouro_router::bind_shared(config.listen) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("ouro-router: cannot listen on {}: {error}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("ouro-router listening on http://{addr}"),
        Err(error) => {
            eprintln!("ouro-router: {error}");
            return ExitCode::FAILURE;
        }
    }
    let tls_listener = match config.tls_listen {
        Some(tls_listen) => match ouro_router::bind_shared(tls_listen) {
            Ok(listener) => Some(listener),
            Err(error) => {
                eprintln!("ouro-router: cannot listen on {tls_listen}: {error}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    if let Some(tls_listener) = &tls_listener {
        match tls_listener.local_addr() {
            Ok(addr) => println!("ouro-router tls listening on https://{addr}"),
            Err(error) => {
                eprintln!("ouro-router: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    match serve_with_tls(listener, tls_listener, config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ouro-router: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(error) => {
                eprintln!("ouro-router: cannot watch SIGTERM: {error}");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
