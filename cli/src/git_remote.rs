//! `git:remote`: point the `ouro` git remote at the app and let `git push` log in with the
//! stored token; `git:credentials` (hidden) is the git credential helper that does it.

use std::io::BufRead;
use std::process::{Command, Stdio};

use ouro_types::App;

use crate::client::{app_path, decode};
use crate::context::{Ctx, Output};
use crate::credentials;
use crate::error::CliError;
use crate::git;

/// Adds (or updates) the `ouro` remote to the app's git URL, and configures this repository
/// to ask `ouro git:credentials` for that URL's credentials.
pub fn remote(ctx: &Ctx) -> Output {
    if !git::inside_work_tree() {
        return Err(CliError::usage("not inside a git repository: run it in your app's checkout"));
    }
    let app = ctx.app()?;
    let found: App = decode(ctx.client()?.get(&app_path(&app, ""))?)?;
    let verb = if git::has_remote() { "set-url" } else { "add" };
    git_ok(&["remote", verb, git::REMOTE, &found.git_url])?;
    use_ouro_credentials(&found.git_url)?;
    if ctx.json {
        return Ok(crate::context::pretty(&serde_json::json!({ "remote": git::REMOTE, "url": found.git_url })));
    }
    Ok(format!("Git remote {} {} {}\n", git::REMOTE, if verb == "add" { "added:" } else { "set to" }, found.git_url))
}

/// Configures the current repository to ask `ouro git:credentials` (this very binary) for
/// the credentials of `git_url`'s origin.
pub fn use_ouro_credentials(git_url: &str) -> Result<(), CliError> {
    let key = format!("credential.{}.helper", url_origin(git_url));
    let exe = std::env::current_exe().map_err(|e| CliError::local(format!("cannot find the ouro binary: {e}")))?;
    let helper = format!("!{} git:credentials", shell_quote(&exe.to_string_lossy()));
    // Exit status 5: there was no such key yet.
    let _ = git_status(&["config", "--unset-all", &key]);
    // An empty helper first resets the list, so other helpers do not answer for this URL.
    git_ok(&["config", "--add", &key, ""])?;
    git_ok(&["config", "--add", &key, &helper])?;
    // Over HTTPS to an API with its own certificate authority, git trusts the one `ouro
    // login` trusts, for that origin only.
    if git_url.starts_with("https://") {
        if let Some(pem) = credentials::load().ok().and_then(|c| c.ca_cert) {
            let file = credentials::save_ca_file(&pem)?;
            let key = format!("http.{}.sslCAInfo", url_origin(git_url));
            git_ok(&["config", &key, &file.to_string_lossy()])?;
        }
    }
    Ok(())
}

/// git's credential helper protocol: for `get`, reads `key=value` lines up to a blank line
/// and answers with the stored token as password; `store` and `erase` change nothing (the
/// token belongs to `ouro login`).
pub fn credentials(action: &str) -> Output {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| CliError::local(format!("cannot read git's request: {e}")))?;
        if line.is_empty() {
            break;
        }
    }
    match action {
        "get" => {
            let stored = credentials::load()?;
            Ok(format!("username=ouro\npassword={}\n", stored.token))
        }
        _ => Ok(String::new()),
    }
}

/// `scheme://host[:port]` of a URL: what the credential config is keyed on.
fn url_origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split('/').next().unwrap_or_default();
            format!("{scheme}://{host}")
        }
        None => url.to_string(),
    }
}

/// Single-quoted for `sh`, which runs `!` helpers.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn git_status(args: &[&str]) -> Result<std::process::Output, CliError> {
    Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CliError::local(format!("cannot run git: {e}")))
}

fn git_ok(args: &[&str]) -> Result<(), CliError> {
    let out = git_status(args)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(CliError::local(format!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_quoting() {
        assert_eq!(url_origin("http://127.0.0.1:7700/demo.git"), "http://127.0.0.1:7700");
        assert_eq!(url_origin("https://git.example.com/demo.git"), "https://git.example.com");
        assert_eq!(shell_quote("/usr/bin/ouro"), "'/usr/bin/ouro'");
        assert_eq!(shell_quote("/it's/ouro"), r"'/it'\''s/ouro'");
    }
}
