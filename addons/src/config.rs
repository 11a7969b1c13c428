//! The provider's configuration: the environment the API sets on the system app `ouro-<kind>`,
//! plus where servers and the PostgreSQL tools are found (fixed in a dyno; tests point them
//! elsewhere).

use std::path::PathBuf;

use crate::kinds::Kind;

/// Port every server listens on (`$PORT` of its dyno), as named in the URLs apps get.
pub const SERVER_PORT: u16 = 5000;
/// Redis over TLS: the port after [`SERVER_PORT`].
pub const REDIS_TLS_PORT: u16 = SERVER_PORT + 1;
/// PostgreSQL's client tools (`psql`, `pg_dump`, `pg_restore`) in the slug.
pub const PG_BIN: &str = "/app/.pg/usr/lib/postgresql/17/bin";
/// The libraries they need that the run stack lacks (`LD_LIBRARY_PATH`).
pub const PG_LIB: &str = "/app/.pg/usr/lib/x86_64-linux-gnu";

#[derive(Debug, Clone)]
pub struct Config {
    /// `OURO_ADDON_KIND`: `postgresql` or `redis`.
    pub kind: Kind,
    /// `OURO_PROVIDER_PASSWORD`: the contract password the API sends with HTTP Basic.
    pub provider_password: String,
    /// `OURO_API_URL`, without a trailing `/`.
    pub api_url: String,
    /// `OURO_API_TOKEN`: a `provider`-scoped token of this kind's user.
    pub api_token: String,
    /// `PORT` (default 5000).
    pub port: u16,
    /// `OURO_PROVIDER_APP` (default `ouro-<kind>`): the app whose slug servers run.
    pub provider_app: String,
    /// Where the provider reaches its servers.
    pub servers: Servers,
    /// Where PostgreSQL's client tools and their libraries are.
    pub pg_bin: PathBuf,
    pub pg_lib: PathBuf,
    /// The listener's bounds: [`crate::LIMITS`], with `OURO_HEADER_READ_TIMEOUT_SECONDS` and
    /// `OURO_MAX_CONNECTIONS` if set.
    pub limits: ouro_serve::Limits,
}

/// Where the provider connects to a server: by default the server app's name (its DNS alias
/// on its own network, which the provider's dynos join) on [`SERVER_PORT`] and
/// [`REDIS_TLS_PORT`]. Only tests set `host`; the URLs apps get always name the server app and
/// port 5000/5001.
#[derive(Debug, Clone)]
pub struct Servers {
    pub host: Option<String>,
    pub port: u16,
    pub tls_port: u16,
}

impl Default for Servers {
    fn default() -> Servers {
        Servers { host: None, port: SERVER_PORT, tls_port: REDIS_TLS_PORT }
    }
}

impl Servers {
    /// The host to connect to for the server app `name`.
    pub fn host<'a>(&'a self, name: &'a str) -> &'a str {
        self.host.as_deref().unwrap_or(name)
    }
}

impl Config {
    /// From the process environment; the error is the line to print before exiting.
    pub fn from_env() -> Result<Config, String> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    /// From `var` (an environment lookup). Unset and empty are the same.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let kind = var("OURO_ADDON_KIND")
            .and_then(|k| Kind::parse(&k))
            .ok_or_else(|| "ouro-addons: set OURO_ADDON_KIND to postgresql or redis".to_string())?;
        let required = |name: &str| var(name).ok_or_else(|| format!("ouro-addons: {name} is not set"));
        let api_url = required("OURO_API_URL")?.trim_end_matches('/').to_string();
        let api_token = required("OURO_API_TOKEN")?;
        let provider_password = required("OURO_PROVIDER_PASSWORD")?;
        let port = match var("PORT") {
            None => SERVER_PORT,
            Some(port) => port.parse().map_err(|_| format!("ouro-addons: PORT `{port}` is not a port number"))?,
        };
        Ok(Config {
            kind,
            provider_password,
            api_url,
            api_token,
            port,
            provider_app: var("OURO_PROVIDER_APP").unwrap_or_else(|| ouro_types::platform::provider_app(kind.as_str())),
            servers: Servers::default(),
            pg_bin: PathBuf::from(PG_BIN),
            pg_lib: PathBuf::from(PG_LIB),
            limits: ouro_serve::Limits::from_vars(crate::LIMITS, var).map_err(|e| format!("ouro-addons: {e}"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(|name| vars.get(name).cloned())
    }

    const ALL: &[(&str, &str)] = &[
        ("OURO_ADDON_KIND", "redis"),
        ("OURO_API_URL", "http://api:5000/"),
        ("OURO_API_TOKEN", "t"),
        ("OURO_PROVIDER_PASSWORD", "p"),
    ];

    #[test]
    fn a_complete_environment_gives_the_defaults() {
        let config = config(ALL).unwrap();
        assert_eq!(config.kind, Kind::Redis);
        assert_eq!(config.api_url, "http://api:5000");
        assert_eq!(config.port, 5000);
        assert_eq!(config.provider_app, "ouro-redis");
        assert_eq!(config.servers.host("r-1"), "r-1");
        assert_eq!((config.servers.port, config.servers.tls_port), (5000, 5001));
        assert_eq!(config.pg_bin, PathBuf::from("/app/.pg/usr/lib/postgresql/17/bin"));
        assert_eq!(config.pg_lib, PathBuf::from("/app/.pg/usr/lib/x86_64-linux-gnu"));
        assert_eq!(config.limits, crate::LIMITS);
    }

    #[test]
    fn the_listeners_limits_are_read() {
        let mut vars = ALL.to_vec();
        vars.extend([("OURO_HEADER_READ_TIMEOUT_SECONDS", "2"), ("OURO_MAX_CONNECTIONS", "50")]);
        let limits = config(&vars).unwrap().limits;
        assert_eq!((limits.header_read_timeout.as_secs(), limits.max_connections), (2, 50));
        vars.push(("OURO_MAX_CONNECTIONS", "none"));
        assert_eq!(
            config(&vars).unwrap_err(),
            "ouro-addons: OURO_MAX_CONNECTIONS `none` is not a number from 1 to 1000000"
        );
    }

    #[test]
    fn port_and_provider_app_are_read() {
        let mut vars = ALL.to_vec();
        vars.extend([("PORT", "7000"), ("OURO_PROVIDER_APP", "my-redis")]);
        let config = config(&vars).unwrap();
        assert_eq!((config.port, config.provider_app.as_str()), (7000, "my-redis"));
        vars.push(("PORT", "web"));
        assert_eq!(self::config(&vars).unwrap_err(), "ouro-addons: PORT `web` is not a port number");
    }

    #[test]
    fn a_missing_or_unknown_kind_is_refused_first() {
        for kind in ["", "mysql", "Redis"] {
            let mut vars = vec![("OURO_ADDON_KIND", kind)];
            vars.extend_from_slice(&ALL[1..]);
            assert_eq!(config(&vars).unwrap_err(), "ouro-addons: set OURO_ADDON_KIND to postgresql or redis");
        }
        assert_eq!(config(&[]).unwrap_err(), "ouro-addons: set OURO_ADDON_KIND to postgresql or redis");
    }

    #[test]
    fn every_required_var_is_named_when_missing_or_empty() {
        for missing in ["OURO_API_URL", "OURO_API_TOKEN", "OURO_PROVIDER_PASSWORD"] {
            let without: Vec<_> = ALL.iter().copied().filter(|(k, _)| *k != missing).collect();
            assert_eq!(config(&without).unwrap_err(), format!("ouro-addons: {missing} is not set"));
            let mut empty = without.clone();
            empty.push((missing, ""));
            assert_eq!(config(&empty).unwrap_err(), format!("ouro-addons: {missing} is not set"));
        }
    }
}
