//! What every command gets from the global flags: the app to act on, how to print, and a
//! client for the API.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::{self, Client};
use crate::credentials;
use crate::error::CliError;
use crate::git;

/// What a command prints on stdout when it succeeds.
pub type Output = Result<String, CliError>;

pub struct Ctx {
    app_flag: Option<String>,
    pub json: bool,
}

impl Ctx {
    pub fn new(app_flag: Option<String>, json: bool) -> Self {
        Self { app_flag, json }
    }

    /// The `-a APP` value, if given.
    pub fn app_flag(&self) -> Option<&str> {
        self.app_flag.as_deref()
    }

    /// The app from `-a`, else from the `ouro` git remote.
    pub fn app(&self) -> Result<String, CliError> {
        self.app_flag
            .clone()
            .or_else(git::remote_app)
            .ok_or_else(|| CliError::usage("no app given: pass -a APP or add a git remote named ouro"))
    }

    /// A client with the stored (or environment) credentials.
    pub fn client(&self) -> Result<Client, CliError> {
        credentials::load().map(|c| Client::new(&c))
    }

    /// With `--json`, the API's answer as it came; otherwise `render` of it as a `T`.
    pub fn show<T: DeserializeOwned>(&self, raw: Value, render: impl FnOnce(T) -> String) -> Output {
        if self.json {
            return Ok(pretty(&raw));
        }
        client::decode(raw).map(render)
    }
}

/// Pretty JSON followed by a newline.
pub fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}
