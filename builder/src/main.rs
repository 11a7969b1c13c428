//! `ouro-build`, Ouro's builder: the one program of the `ouro-builder` system app. Each build
//! runs it in a fresh one-off dyno of that app (ARCHITECTURE.md, "Builds") and it turns the
//! pushed tree into a slug with buildpacks.
//!
//! It talks only to its build's endpoints of the API, `$OURO_API_URL/build-api/$OURO_BUILD_ID/*`,
//! with the build-scoped `$OURO_BUILD_TOKEN`: GET env (config vars, buildpacks, commit), GET
//! source (tar.gz), POST output (log lines), PUT slug (tar.gz of `./app`), POST result
//! (`{ok, process_types, buildpacks, message}`). It must never hand that token, or its own
//! environment, to a buildpack: they run with the build's environment and see config vars only
//! as ENV_DIR files.
//!
//! It builds in `/app`, where the slug runs, with the app's cache volume at `/cache`; its own
//! files start in `/app` too, and it moves them aside first. Exit status: 0 when the build
//! succeeded and its result was taken, 1 otherwise, 2 when the environment is incomplete.

mod api;
mod buildpacks;
mod error;
mod log;
mod paths;
mod process;
mod slug;
mod slugignore;
mod source;
#[cfg(test)]
mod test_api;

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use api::{Api, BuildResult};
use buildpacks::Env;
use error::{Context as _, Failure, Result};
use log::Log;
use paths::Paths;

fn main() -> ExitCode {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (api_url, build_id, token) = (var("OURO_API_URL"), var("OURO_BUILD_ID"), var("OURO_BUILD_TOKEN"));
    if api_url.is_empty() || build_id.is_empty() || token.is_empty() {
        eprintln!("ouro-build: OURO_API_URL, OURO_BUILD_ID and OURO_BUILD_TOKEN must be set");
        return ExitCode::from(2);
    }
    let max_slug_bytes = match std::env::var("OURO_MAX_SLUG_BYTES") {
        Err(_) => slug::DEFAULT_MAX_BYTES,
        Ok(text) => match text.trim().parse() {
            Ok(bytes) => bytes,
            Err(_) => {
                eprintln!("ouro-build: OURO_MAX_SLUG_BYTES must be a number of bytes, not `{text}`");
                return ExitCode::from(2);
            }
        },
    };
    let config = Config { api_url, build_id, token, max_slug_bytes };
    ExitCode::from(run(&config, &Paths::default()))
}

/// What the build dyno's environment tells the builder.
struct Config {
    api_url: String,
    build_id: String,
    token: String,
    max_slug_bytes: u64,
}

/// What `GET env` answers (missing fields take their defaults).
#[derive(Debug, serde::Deserialize)]
struct Settings {
    commit: Option<String>,
    stack: Option<String>,
    /// Set buildpacks, in order; none: the first shipped one that detects.
    buildpacks: Option<Vec<String>>,
    config: Option<BTreeMap<String, String>>,
}

/// A built app: the buildpacks' default process types and the names they detected.
struct Built {
    process_types: BTreeMap<String, String>,
    buildpacks: Vec<String>,
}

/// Runs one build and reports it: every failure, even a panic, ends the log with its reason
/// and is sent as a result. The exit status: 0 when the build succeeded and the API took
/// the result, else 1.
fn run(config: &Config, paths: &Paths) -> u8 {
    let api = Api::new(&config.api_url, &config.build_id, &config.token);
    let log = Log::start(api.clone());
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| build_app(&api, paths, config.max_slug_bytes, &log)))
        .unwrap_or_else(|panic| {
            let text =
                panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            Err(Failure::Builder(format!("panic: {}", text.unwrap_or_default())))
        });
    let result = match outcome {
        Ok(built) => BuildResult {
            ok: true,
            process_types: built.process_types,
            buildpacks: built.buildpacks,
            message: String::new(),
        },
        Err(Failure::Build(lines)) => {
            for line in &lines {
                log.line(&format!(" !     {line}"));
            }
            let message = lines.first().map_or("build failed", String::as_str).to_string();
            BuildResult { message, ..BuildResult::default() }
        }
        Err(Failure::Builder(reason)) => {
            log.line(&format!(" !     The builder failed: {reason}"));
            BuildResult { message: format!("the builder failed: {reason}"), ..BuildResult::default() }
        }
    };
    log.close();
    if api.post_result(&result) && result.ok { 0 } else { 1 }
}

/// The build from start to uploaded slug: the builder's files moved aside, the settings and
/// ENV_DIR, the source unpacked and `.slugignore` applied, the buildpacks, the slug.
fn build_app(api: &Api, paths: &Paths, max_slug_bytes: u64, log: &Log) -> Result<Built> {
    paths.stage_self()?;
    let settings: Settings = api.get_json("/env").map_err(Failure::Builder)?;
    paths.write_env_dir(settings.config.as_ref().unwrap_or(&BTreeMap::new()))?;
    source::fetch(api, paths)?;
    slugignore::apply(&paths.app, log)?;
    let built = build(&settings, paths, log)?;
    slug::pack(paths, max_slug_bytes, log)?;
    slug::upload(api, paths)?;
    Ok(built)
}

/// Runs the buildpacks on the app: the set ones (all fetched first, then each detects right
/// before it compiles, so one may detect what an earlier one made), or else the first shipped
/// one whose bin/detect accepts the app. Each one's `export` feeds the next one's environment;
/// their default process types are merged, later ones winning.
fn build(settings: &Settings, paths: &Paths, log: &Log) -> Result<Built> {
    log.topic("Building on the Debian 13 (trixie) stack");
    let mut env = Env::from([
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOME".into(), paths.app.to_string_lossy().into_owned()),
        ("LANG".into(), "C.UTF-8".into()),
        ("STACK".into(), settings.stack.clone().unwrap_or_else(|| "debian-13".into())),
        ("SOURCE_VERSION".into(), settings.commit.clone().unwrap_or_default()),
    ]);
    let specs = settings.buildpacks.as_deref().unwrap_or_default();
    let chosen: Vec<(String, PathBuf)> = if specs.is_empty() {
        let shipped = paths.shipped();
        let mut detected = None;
        for name in buildpacks::shipped_order(&shipped)? {
            let path = shipped.join(&name);
            if buildpacks::detect(&path, &paths.app, &env)?.is_some() {
                detected = Some((name, path));
                break;
            }
        }
        vec![detected.ok_or_else(|| {
            Failure::Build(vec![
                "No default language could be detected for this app.".into(),
                "Add a Procfile, requirements.txt, package.json, go.mod, Cargo.toml or index.html,".into(),
                "or set a buildpack: ouro buildpacks:set URL".into(),
            ])
        })?]
    } else {
        let mut fetched = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            fetched.push((spec.clone(), buildpacks::fetch(spec, index, paths, log)?));
        }
        let plural = if specs.len() > 1 { "s" } else { "" };
        log.topic(&format!("Using buildpack{plural}: {}", specs.join(", ")));
        fetched
    };
    let (mut process_types, mut names) = (BTreeMap::new(), Vec::new());
    for (spec, path) in &chosen {
        let Some(name) = buildpacks::detect(path, &paths.app, &env)? else {
            return Err(Failure::Build(vec![
                format!("App not compatible with buildpack: {spec}"),
                "Its bin/detect did not accept this app.".into(),
            ]));
        };
        log.topic(&format!("{name} app detected"));
        if !buildpacks::compile(path, paths, &env, log)? {
            return Err(Failure::build(format!("Push rejected, failed to compile {name} app.")));
        }
        names.push(name);
        env = buildpacks::exported_env(path, &paths.app, &env)?;
        process_types.extend(buildpacks::default_process_types(path, &paths.app, &env)?);
    }
    log.topic("Discovering process types");
    let declared = procfile_types(&paths.app)?;
    let defaults: Vec<&str> = process_types.keys().map(String::as_str).collect();
    log.info(&format!("Procfile declares types     -> {}", listed(&declared)));
    log.info(&format!("Default types for buildpack -> {}", listed(&defaults)));
    Ok(Built { process_types, buildpacks: names })
}

/// `a, b`, or `(none)`.
fn listed<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() { "(none)".into() } else { items.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ") }
}

/// The process types the app's `Procfile` declares, in its order (none without one). Only
/// the names: the API parses the Procfile for real.
fn procfile_types(app: &Path) -> Result<Vec<String>> {
    let path = app.join("Procfile");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read(&path).context(|| format!("cannot read {}", path.display()))?;
    Ok(String::from_utf8_lossy(&text).lines().filter_map(process_type).map(str::to_string).collect())
}

/// The name of a `Procfile` line `name: command` (`[a-z0-9_-]+`, spaces allowed around it).
fn process_type(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let end = line.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'));
    let (name, rest) = line.split_at(end.unwrap_or(line.len()));
    (!name.is_empty() && rest.trim_start().starts_with(':')).then_some(name)
}

#[cfg(test)]
mod tests;
