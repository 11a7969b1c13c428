//! `ouro login`: check a token against the API and remember it.

use std::io::{self, BufRead, IsTerminal, Write};

use ouro_types::Account;

use crate::client::{Client, decode};
use crate::context::{Ctx, Output, pretty};
use crate::credentials::{self, Credentials};
use crate::error::CliError;

pub fn login(ctx: &Ctx, api: Option<String>, token: Option<String>) -> Output {
    let token = match token {
        Some(token) => token,
        None => read_token()?,
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(CliError::usage("no token given: pass --token TOKEN or type it on stdin"));
    }
    let api_url = api.unwrap_or_else(credentials::default_api_url);
    let credentials = Credentials { api_url: api_url.trim_end_matches('/').to_string(), token };
    let raw = Client::new(&credentials).get("/account").map_err(|e| rejected(e, &credentials.api_url))?;
    let account: Account = decode(raw.clone())?;
    credentials::save(&credentials)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Logged in as {}\n", account.email))
}

/// One line from stdin, prompting only when a person is typing.
fn read_token() -> Result<String, CliError> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        eprint!("Token: ");
        let _ = io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| CliError::local(format!("cannot read the token: {e}")))?;
    Ok(line)
}

/// Says which API turned the token down, since `login` is where a wrong `--api` shows up.
fn rejected(error: CliError, api_url: &str) -> CliError {
    match error {
        CliError::Api { status: status @ (401 | 403), message } => {
            CliError::Api { status, message: format!("the API at {api_url} did not accept that token: {message}") }
        }
        other => other,
    }
}
