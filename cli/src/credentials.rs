//! Where the API URL and token live: `credentials.json` in the config directory, overridden
//! by `OURO_API_URL` and `OURO_API_TOKEN`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

pub const DEFAULT_API_URL: &str = "http://127.0.0.1:7700";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub api_url: String,
    pub token: String,
    /// The API's own certificate authority (PEM), when no public one signed its certificate:
    /// given to `ouro login --ca-file` or trusted there on first use (`trust.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

/// An environment variable, with unset and empty treated alike.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The API URL to log in to when `--api` is not given.
pub fn default_api_url() -> String {
    env_var("OURO_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_string())
}

/// `$OURO_CONFIG_DIR/credentials.json`, else `$XDG_CONFIG_HOME/ouro/…`, else
/// `$HOME/.config/ouro/…`.
fn credentials_path_from(
    ouro_config_dir: Option<String>,
    xdg_config_home: Option<String>,
    home: Option<String>,
) -> Option<PathBuf> {
    let dir = match (ouro_config_dir, xdg_config_home, home) {
        (Some(dir), _, _) => PathBuf::from(dir),
        (None, Some(xdg), _) => Path::new(&xdg).join("ouro"),
        (None, None, Some(home)) => Path::new(&home).join(".config").join("ouro"),
        (None, None, None) => return None,
    };
    Some(dir.join("credentials.json"))
}

fn credentials_path() -> Result<PathBuf, CliError> {
    credentials_path_from(env_var("OURO_CONFIG_DIR"), env_var("XDG_CONFIG_HOME"), env_var("HOME"))
        .ok_or_else(|| CliError::local("cannot find a config directory: set OURO_CONFIG_DIR or HOME"))
}

fn read_file(path: &Path) -> Result<Option<Credentials>, CliError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CliError::local(format!("cannot read {}: {e}", path.display()))),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| CliError::local(format!("cannot read {}: {e}", path.display())))
}

/// The variable that lets credentials go over plain HTTP to an address that is not loopback.
pub const ALLOW_PLAIN_HTTP: &str = "OURO_ALLOW_PLAIN_HTTP";

/// Refuses to send credentials to `api_url` over plain HTTP unless it is on this machine
/// (`localhost`, 127.0.0.0/8, `::1`) or [`ALLOW_PLAIN_HTTP`] is `1`: a token or password in
/// clear on a network is anyone's on it.
pub fn check_transport(api_url: &str) -> Result<(), CliError> {
    let allowed = env_var(ALLOW_PLAIN_HTTP).as_deref() == Some("1");
    match plain_http_host(api_url) {
        Some(host) if !allowed => Err(CliError::local(format!(
            "refusing to send your credentials over plain HTTP to {host}: use an https:// API URL, or set \
             {ALLOW_PLAIN_HTTP}=1 if you trust every network in between"
        ))),
        _ => Ok(()),
    }
}

/// The host of an `http://` URL whose host is not loopback; `None` for anything else.
fn plain_http_host(api_url: &str) -> Option<String> {
    let rest = api_url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback =
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| host.to_string())
}

/// The credentials every command but `login` uses: the file's values, each overridden by
/// its environment variable.
pub fn load() -> Result<Credentials, CliError> {
    let stored = match (env_var("OURO_API_URL"), env_var("OURO_API_TOKEN")) {
        // Both overridden: the file does not matter (and may not exist).
        (Some(_), Some(_)) => None,
        _ => read_file(&credentials_path()?)?,
    };
    let api_url = env_var("OURO_API_URL")
        .or_else(|| stored.as_ref().map(|c| c.api_url.clone()))
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    let ca_cert = match env_var("OURO_CA_FILE") {
        Some(path) => Some(read_ca_file(&path)?),
        None => stored.as_ref().and_then(|c| c.ca_cert.clone()),
    };
    let token = env_var("OURO_API_TOKEN")
        .or_else(|| stored.map(|c| c.token))
        .ok_or_else(|| CliError::local("not logged in: run `ouro login`"))?;
    check_transport(&api_url)?;
    Ok(Credentials { api_url, token, ca_cert })
}

/// A CA certificate file (`--ca-file`, `OURO_CA_FILE`), checked to hold one.
pub fn read_ca_file(path: &str) -> Result<String, CliError> {
    let pem = fs::read_to_string(path).map_err(|e| CliError::local(format!("cannot read {path}: {e}")))?;
    crate::trust::parse_pem(&pem, path)?;
    Ok(pem)
}

/// The certificate authority the credentials file keeps for `api_url`, if any.
pub fn stored_ca(api_url: &str) -> Option<String> {
    let stored = read_file(&credentials_path().ok()?).ok()??;
    (stored.api_url == api_url).then_some(stored.ca_cert).flatten()
}

/// Writes `pem` (the API's certificate authority) beside the credentials, as `api-ca.pem`,
/// for git (`http.sslCAInfo`). Returns its path.
pub fn save_ca_file(pem: &str) -> Result<PathBuf, CliError> {
    let path = credentials_path()?.with_file_name("api-ca.pem");
    let fail = |e: io::Error| CliError::local(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    fs::write(&path, pem).map_err(fail)?;
    Ok(path)
}

/// Removes the credentials file (`ouro logout`); nothing to do when there is none.
pub fn forget() -> Result<(), CliError> {
    let path = credentials_path()?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::local(format!("cannot remove {}: {e}", path.display()))),
    }
}

/// Writes the credentials file, readable by its owner only. Returns its path.
pub fn save(credentials: &Credentials) -> Result<PathBuf, CliError> {
    let path = credentials_path()?;
    let fail = |e: io::Error| CliError::local(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut json = serde_json::to_string_pretty(credentials)
        .map_err(|e| CliError::local(format!("cannot encode credentials: {e}")))?;
    json.push('\n');
    let mut file = open_private(&path).map_err(fail)?;
    file.write_all(json.as_bytes()).map_err(fail)?;
    Ok(path)
}

#[cfg(unix)]
fn open_private(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // `mode` only applies to new files: tighten one left by an older version too.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> io::Result<fs::File> {
    fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_over_plain_http_only_to_this_machine() {
        for local in [
            "http://127.0.0.1:7700",
            "http://127.0.0.2",
            "http://localhost:7700/",
            "http://LOCALHOST",
            "http://[::1]:7700",
            "https://ouro.example.com",
            "https://10.0.0.5:7700",
        ] {
            assert_eq!(plain_http_host(local), None, "{local}");
        }
        for (remote, host) in [
            ("http://10.0.0.5:7700", "10.0.0.5"),
            ("http://ouro.example.com", "ouro.example.com"),
            ("http://[2001:db8::1]:7700/", "2001:db8::1"),
            ("http://127.0.0.1.example.com:7700", "127.0.0.1.example.com"),
            ("http://localhost@evil.example:7700", "evil.example"),
        ] {
            assert_eq!(plain_http_host(remote).as_deref(), Some(host), "{remote}");
        }
    }

    #[test]
    fn path_precedence() {
        let s = |v: &str| Some(v.to_string());
        let cases = [
            (s("/o"), s("/x"), s("/h"), Some("/o/credentials.json")),
            (None, s("/x"), s("/h"), Some("/x/ouro/credentials.json")),
            (None, None, s("/h"), Some("/h/.config/ouro/credentials.json")),
            (None, None, None, None),
        ];
        for (ouro, xdg, home, expect) in cases {
            let got = credentials_path_from(ouro, xdg, home);
            assert_eq!(got, expect.map(PathBuf::from));
        }
    }
}
