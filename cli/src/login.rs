//! `ouro login`: a token checked against the API and remembered; with `-i`, an email and a
//! password that make a token (`POST /oauth/authorizations` with HTTP Basic, as `heroku login
//! -i`); with `--invitation CODE`, a new user's first password, then the same.

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::{Command, Stdio};

use ouro_types::{Account, Authorization};

use crate::client::{Client, decode};
use crate::context::{Ctx, Output, pretty};
use crate::credentials::{self, Credentials};
use crate::error::CliError;

/// How `ouro login` gets its token.
pub enum Way {
    Token(Option<String>),
    Password,
    Invitation(String),
}

/// What `ouro login` is told to trust for an `https://` API (`trust.rs`).
#[derive(Default)]
pub struct Trust {
    pub ca_file: Option<String>,
    pub fingerprint: Option<String>,
}

pub fn login(ctx: &Ctx, api: Option<String>, way: Way, trust: Trust) -> Output {
    let api_url = api.unwrap_or_else(credentials::default_api_url).trim_end_matches('/').to_string();
    credentials::check_transport(&api_url)?;
    let ca_cert = trusted(&api_url, trust)?;
    let anonymous =
        || Client::new(&Credentials { api_url: api_url.clone(), token: String::new(), ca_cert: ca_cert.clone() });
    let token = match way {
        Way::Token(Some(token)) => token,
        Way::Token(None) => read_line("Token: ", "the token")?,
        Way::Password => {
            let email = read_line("Email: ", "the email")?;
            let password = read_secret("Password: ", "the password")?;
            token_for(&anonymous(), &api_url, email.trim(), &password)?
        }
        Way::Invitation(code) => {
            let password = read_secret("New password (10 characters or more): ", "the new password")?;
            if io::stdin().is_terminal() && read_secret("Again: ", "the new password")? != password {
                return Err(CliError::usage("the two passwords differ; nothing was changed"));
            }
            let body = serde_json::json!({ "code": code.trim(), "password": password });
            let set =
                anonymous().post_authorized("/account/password", None, &body).map_err(|e| rejected(e, &api_url))?;
            let email = set["email"].as_str().unwrap_or_default().to_string();
            token_for(&anonymous(), &api_url, &email, &password)?
        }
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(CliError::usage("no token given: pass --token TOKEN or type it on stdin"));
    }
    let credentials = Credentials { api_url, token, ca_cert };
    let raw = Client::new(&credentials).get("/account").map_err(|e| rejected(e, &credentials.api_url))?;
    let account: Account = decode(raw.clone())?;
    credentials::save(&credentials)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Logged in as {}\n", account.email))
}

/// A new token of the user `email`, made with their password.
fn token_for(anonymous: &Client, api_url: &str, email: &str, password: &str) -> Result<String, CliError> {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "a terminal".into());
    // As `heroku login -i`: a token for 30 days.
    let body = serde_json::json!({ "description": format!("ouro login from {host}"), "expires_in": 30 * 24 * 3600 });
    let authorization = ouro_types::basic_authorization(email, password);
    let raw = anonymous
        .post_authorized("/oauth/authorizations", Some(&authorization), &body)
        .map_err(|e| rejected(e, api_url))?;
    let made: Authorization = decode(raw)?;
    made.access_token.token.ok_or_else(|| CliError::local("the API answered a token without its secret"))
}

/// The certificate authority to keep for `api_url`: `--ca-file`'s; the one kept for the same
/// URL before, while it still works; none when a public authority signed the API's
/// certificate; else one trusted on first use (`trust::on_first_use`).
fn trusted(api_url: &str, trust: Trust) -> Result<Option<String>, CliError> {
    if !api_url.starts_with("https://") {
        if trust.ca_file.is_some() || trust.fingerprint.is_some() {
            return Err(CliError::usage("--ca-file and --fingerprint are for an https:// API URL"));
        }
        return Ok(None);
    }
    if let Some(path) = &trust.ca_file {
        return credentials::read_ca_file(path).map(Some);
    }
    let works = |ca_cert: Option<String>| {
        let probe = Client::new(&Credentials { api_url: api_url.to_string(), token: String::new(), ca_cert });
        probe.get("/health").is_ok()
    };
    if trust.fingerprint.is_none() {
        let kept = credentials::stored_ca(api_url);
        if kept.is_some() && works(kept.clone()) {
            return Ok(kept);
        }
    }
    crate::trust::on_first_use(api_url, trust.fingerprint.as_deref(), works(None))
}

/// One line from stdin, prompting only when a person is typing.
fn read_line(prompt: &str, what: &str) -> Result<String, CliError> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        eprint!("{prompt}");
        let _ = io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| CliError::local(format!("cannot read {what}: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// [`read_line`] without echo on a terminal (`stty -echo` for the time of the line).
fn read_secret(prompt: &str, what: &str) -> Result<String, CliError> {
    let terminal = io::stdin().is_terminal();
    let stty = |arg: &str| {
        let _ = Command::new("stty").arg(arg).stdin(Stdio::inherit()).status();
    };
    if terminal {
        stty("-echo");
    }
    let line = read_line(prompt, what);
    if terminal {
        stty("echo");
        eprintln!();
    }
    line
}

/// Says which API turned the credentials down, since `login` is where a wrong `--api` shows up.
fn rejected(error: CliError, api_url: &str) -> CliError {
    match error {
        CliError::Api { status: status @ (401 | 403), message } => {
            CliError::Api { status, message: format!("the API at {api_url} did not accept that: {message}") }
        }
        other => other,
    }
}
