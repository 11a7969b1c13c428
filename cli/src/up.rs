//! `ouro up`: brings Ouro up on this machine, running on itself.
//!
//! The one host process is the dyno runner (the only holder of the Docker socket); the API
//! and the router are dynos of the system apps `ouro-api` and `ouro-router`, on the host's
//! network, with the API's state (SQLite, blobs, git repositories) on the volume `ouro-data`.
//! Bootstrap, as Flynn's "inception":
//! 1. the components' slug (`./app/bin/ouro-api`, `ouro-router`, `ouro-build`, `ouro-addons`,
//!    the binaries next to this `ouro`) is written to the data directory;
//! 2. on a first start, a *seed* desired state naming both apps (their slug a `file://` URL) is
//!    written where the runner keeps its state, and the runner is started: it runs the seed
//!    with no API at all, and keeps the seed's apps until the API's own state has them;
//! 3. once the API answers, the components are registered through it as apps with releases
//!    of the same slug, config and formation; from then on the normal pipeline manages them.
//!
//! Later versions of the components come by `git push` of this repository to the source app
//! `ouro` (built by the rust buildpack, then rolled out by the API: api/src/upgrade.rs); `ouro
//! up` registers that app too, and never replaces a component's slug once it has one.
//!
//! Idempotent: with the runner and the API up and the components registered, it changes
//! nothing. After a host restart (containers gone, runner not running) it starts the runner,
//! which brings everything back from its last desired state. Unlike the rest of the CLI this
//! runs on the server: it starts a process and writes files there, but it still never talks
//! to Docker itself.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ouro_types::platform::{API_APP, DATA_VOLUME, ROUTER_APP};
use ouro_types::{
    DesiredApp, DesiredProcess, DesiredRelease, DesiredState, FormationBatch, FormationUpdate, Release, ReleaseCreate,
    Service, Slug, SlugCreate, VolumeMount,
};
use sha2::Digest;

use crate::client::{Client, decode};
use crate::credentials::{self, Credentials};
use crate::error::CliError;

/// Where and how the platform runs (`ouro up`'s flags).
pub struct Settings {
    pub data_dir: Option<PathBuf>,
    pub platform: String,
    pub api_port: u16,
    pub http_port: u16,
    pub https_port: u16,
    pub runner_port: u16,
}

/// The platform's components: app, process type, command.
const COMPONENTS: [(&str, &str, &str); 2] =
    [(ROUTER_APP, "router", "/app/bin/ouro-router"), (API_APP, "api", "/app/bin/ouro-api")];
/// The first start builds the stack image (debootstrap) before anything runs.
const API_WAIT: Duration = Duration::from_secs(900);

/// `--data-dir`, else `$OURO_DATA_DIR`, else `~/.local/share/ouro`.
pub fn data_dir(given: Option<&PathBuf>) -> Result<PathBuf, CliError> {
    Ok(match given {
        Some(dir) => dir.clone(),
        None => match std::env::var_os("OURO_DATA_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| CliError::local("set HOME or --data-dir"))?)
                .join(".local/share/ouro"),
        },
    })
}

pub fn up(settings: &Settings) -> Result<String, CliError> {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .ok_or_else(|| CliError::local("cannot tell where the ouro binary is"))?;
    for name in COMPONENT_BINARIES.iter().chain(&["ouro-dyno-runner"]) {
        if !bin.join(name).is_file() {
            return Err(CliError::local(format!(
                "ouro up needs {name} next to ouro in {} (cargo build --release puts them all in target/release)",
                bin.display()
            )));
        }
    }
    let data = data_dir(settings.data_dir.as_ref())?;
    fs::create_dir_all(data.join("bootstrap")).map_err(|e| local("make", &data, e))?;
    let token = admin_token(&data)?;
    // Packed only when a first start or a first registration needs it: not on every run.
    let mut packed = Packed { bin: bin.clone(), slug: None };
    let api_url = format!("http://127.0.0.1:{}", settings.api_port);
    let runner_url = format!("http://127.0.0.1:{}", settings.runner_port);
    let state_file = data.join("runner").join("desired-state.json");

    let mut said = Vec::new();
    let runner = RunnerWatch { url: runner_url.clone(), data: data.clone() };
    let runner_binary = bin.join("ouro-dyno-runner");
    let outdated = healthy(&runner_url) && runner_outdated(&runner_binary, &data)?;
    if outdated {
        // The runner's own upgrade: the binary next to this `ouro` replaces the one running.
        // Its dynos keep running; the new runner adopts them (nothing restarts).
        stop_runner(&data)?;
    }
    if healthy(&runner_url) {
        said.push(format!("the runner answers at {runner_url}"));
    } else {
        if !state_file.is_file() {
            let (slug, checksum) = packed.get()?;
            let slug_path = data.join("bootstrap").join(format!("ouro-{}.tgz", &checksum["SHA256:".len()..][..12]));
            write_private(&slug_path, slug)?;
            let seed = seed_state(settings, &token, checksum, &slug_path);
            let json = serde_json::to_vec_pretty(&seed).map_err(|e| CliError::local(e.to_string()))?;
            fs::create_dir_all(data.join("runner")).map_err(|e| local("make", &data, e))?;
            write_private(&state_file, &json)?;
            said.push("wrote the bootstrap desired state".to_string());
        }
        // Its own token (scope: runner) once the API made one; the admin's while bootstrapping.
        let runner_token = fs::read_to_string(data.join("runner-token")).map(|t| t.trim().to_string());
        let pid = start_runner(&bin, &data, settings, runner_token.as_deref().unwrap_or(&token), &state_file)?;
        let how = if outdated {
            "upgraded the runner to the binary next to ouro, its dynos adopted"
        } else {
            "started the runner"
        };
        said.push(format!("{how} (pid {pid}, log {})", data.join("runner.log").display()));
        wait(Duration::from_secs(30), "the runner to answer", Some(&runner), || healthy(&runner_url))?;
    }
    if !healthy(&api_url) {
        eprintln!("Waiting for the API at {api_url} (the first start builds the stack image: minutes)...");
        wait(API_WAIT, "the API to answer", Some(&runner), || healthy(&api_url))?;
    }
    let credentials = Credentials { api_url: api_url.clone(), token: token.clone(), ca_cert: None };
    let client = Client::new(&credentials);
    let mut changed = false;
    changed |= register_source(&client)?;
    for (app, process_type, command) in COMPONENTS {
        changed |= register(&client, settings, app, process_type, command, &mut packed)?;
    }
    if changed {
        // The releases' dynos take over from the seed's (the API's through its own restart).
        wait(Duration::from_secs(180), "the components' releases to take over", Some(&runner), || {
            components_run_their_releases(&client)
        })?;
    }
    if !data.join("runner-token").is_file() {
        let made = client.post("/runner/tokens", &serde_json::json!({}))?;
        let scoped = made["token"].as_str().ok_or_else(|| CliError::local("the API made no runner token"))?;
        write_private(&data.join("runner-token"), format!("{scoped}\n").as_bytes())?;
        stop_runner(&data)?;
        let pid = start_runner(&bin, &data, settings, scoped, &state_file)?;
        wait(Duration::from_secs(30), "the runner to answer", Some(&runner), || healthy(&runner_url))?;
        said.push(format!("gave the runner a token of its own, scoped to the runner (pid {pid})"));
    }
    // Whatever the runner met meanwhile (a stack image it cannot make stops every deploy to
    // come, even when every component runs): said now rather than at the first push.
    runner.check()?;
    credentials::save(&credentials)?;
    said.push(if changed { "registered the components as apps".into() } else { "nothing to change".into() });
    let mut out = format!(
        "Ouro is up ({}).\nAPI {api_url} (the CLI is logged in as its admin; the token is in {}), apps at http://<app>.localhost:{}/\n",
        said.join("; "),
        data.join("admin-token").display(),
        settings.http_port
    );
    // Read over loopback, which no one can come between: what `ouro login` on another
    // machine shows, to compare.
    if let Ok(pem) = client.get_text("/tls/ca.pem") {
        if let Ok(der) = crate::trust::parse_pem(&pem, "the API's certificate") {
            let fingerprint = ouro_types::fingerprint(&der);
            out.push_str(&format!(
                "From other machines the API speaks HTTPS only, with a certificate authority of its own:\n  \
                 ouro login --api https://<this host>:{} --fingerprint {fingerprint} -i\n",
                settings.api_port
            ));
        }
    }
    Ok(out)
}

/// The admin token `ouro up` gives the API for its first user: kept in `<data>/admin-token`.
fn admin_token(data: &Path) -> Result<String, CliError> {
    let path = data.join("admin-token");
    if let Ok(token) = fs::read_to_string(&path) {
        return Ok(token.trim().to_string());
    }
    let mut random = [0u8; 40];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| local("read", Path::new("/dev/urandom"), e))?;
    let token = format!("ouro_{}_{}", hex::encode(&random[..8]), hex::encode(&random[8..]));
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// The components' slug, packed on first use.
struct Packed {
    bin: PathBuf,
    slug: Option<(Vec<u8>, String)>,
}

impl Packed {
    fn get(&mut self) -> Result<(&[u8], &str), CliError> {
        if self.slug.is_none() {
            self.slug = Some(component_slug(&self.bin)?);
        }
        let (slug, checksum) = self.slug.as_ref().expect("packed just now");
        Ok((slug, checksum))
    }
}

/// The programs of the components' slug: the API and the router run from it; the API deploys
/// the builder and the add-on providers from the programs beside its own (as a push of Ouro to
/// itself builds every binary of the workspace into `bin/`).
const COMPONENT_BINARIES: [&str; 4] = ["ouro-api", "ouro-router", "ouro-build", "ouro-addons"];

/// The components' slug: a reproducible tar.gz of `./app/bin/<each of COMPONENT_BINARIES>`,
/// and its `SHA256:<hex>`.
fn component_slug(bin: &Path) -> Result<(Vec<u8>, String), CliError> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h
    };
    let io = |e: std::io::Error| CliError::local(format!("cannot pack the components' slug: {e}"));
    for dir in ["./app/", "./app/bin/"] {
        tar.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), dir, std::io::empty()).map_err(io)?;
    }
    for name in COMPONENT_BINARIES {
        let bytes = fs::read(bin.join(name)).map_err(|e| local("read", &bin.join(name), e))?;
        let mut h = header(tar::EntryType::Regular, 0o755, bytes.len() as u64);
        tar.append_data(&mut h, format!("./app/bin/{name}"), &bytes[..]).map_err(io)?;
    }
    let slug = tar.into_inner().and_then(|gz| gz.finish()).map_err(io)?;
    let checksum = format!("SHA256:{}", hex::encode(sha2::Sha256::digest(&slug)));
    Ok((slug, checksum))
}

/// Each component's config: how it listens and finds the others (all on the host's network).
fn component_config(settings: &Settings, app: &str) -> BTreeMap<String, String> {
    let pairs: Vec<(&str, String)> = match app {
        API_APP => vec![
            ("OURO_DATA_DIR", "/data".into()),
            ("OURO_LISTEN", format!("0.0.0.0:{}", settings.api_port)),
            ("OURO_API_URL", format!("http://127.0.0.1:{}", settings.api_port)),
            ("OURO_ROUTER_URL", format!("http://127.0.0.1:{}", settings.http_port)),
            ("OURO_APPS_PORT", settings.http_port.to_string()),
            // Builds of the platform itself compile the whole workspace.
            ("OURO_BUILD_TIMEOUT_SECONDS", "3600".into()),
        ],
        _ => vec![
            ("OURO_ROUTES_URL", format!("http://127.0.0.1:{}/routes", settings.runner_port)),
            ("OURO_ROUTER_LISTEN", format!("127.0.0.1:{}", settings.http_port)),
            ("OURO_ROUTER_TLS_LISTEN", format!("127.0.0.1:{}", settings.https_port)),
        ],
    };
    let mut config: BTreeMap<String, String> = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    // More names for the API's certificate (the host's public name, say).
    if let Some(names) = std::env::var("OURO_TLS_NAMES").ok().filter(|n| !n.is_empty() && app == API_APP) {
        config.insert("OURO_TLS_NAMES".into(), names);
    }
    config
}

/// The seed's config: the components', and for the API the first admin's token, which its
/// first start makes (the registered releases do without: the user exists by then).
fn seed_config(settings: &Settings, app: &str, token: &str) -> BTreeMap<String, String> {
    let mut config = component_config(settings, app);
    if app == API_APP {
        config.insert("OURO_ADMIN_TOKEN".into(), token.into());
    }
    config
}

fn component_service(app: &str) -> Service {
    let mounts = match app {
        API_APP => vec![VolumeMount { volume: DATA_VOLUME.into(), path: "/data".into() }],
        _ => Vec::new(),
    };
    Service { mounts, joins: Vec::new(), api_access: false, host_network: true, listens: false }
}

/// API dynos get 1 GiB (git and the SQLite file live there); the router 512 MiB.
fn component_size(app: &str) -> &'static str {
    if app == API_APP { "standard-2x" } else { "standard-1x" }
}

/// What the runner runs before any API exists: both components, from the slug on disk.
fn seed_state(settings: &Settings, token: &str, checksum: &str, slug: &Path) -> DesiredState {
    let apps = COMPONENTS
        .iter()
        .map(|(app, process_type, command)| {
            let service = component_service(app);
            DesiredApp {
                app_id: format!("bootstrap-{app}"),
                app_name: app.to_string(),
                release: DesiredRelease {
                    id: format!("bootstrap-{app}"),
                    version: 0,
                    slug_id: "bootstrap".into(),
                    slug_checksum: checksum.to_string(),
                    slug_url: format!("file://{}", slug.display()),
                    process_types: BTreeMap::from([(process_type.to_string(), command.to_string())]),
                    config: seed_config(settings, app, token),
                    stack: ouro_types::STACK.into(),
                    stack_update: None,
                },
                formation: vec![DesiredProcess {
                    process_type: process_type.to_string(),
                    quantity: 1,
                    size: component_size(app).into(),
                }],
                domains: Vec::new(),
                one_offs: Vec::new(),
                restarts: BTreeMap::new(),
                certificates: Vec::new(),
                acme_challenges: Vec::new(),
                mounts: service.mounts,
                joins: Vec::new(),
                api_access: false,
                host_network: true,
                listens: false,
            }
        })
        .collect();
    DesiredState { apps, volumes: vec![DATA_VOLUME.into()], seed: true }
}

fn start_runner(bin: &Path, data: &Path, settings: &Settings, token: &str, state_file: &Path) -> Result<u32, CliError> {
    use std::os::unix::process::CommandExt;
    let log_path = data.join("runner.log");
    let env: Vec<(String, String)> = vec![
        ("OURO_API_URL".into(), format!("http://127.0.0.1:{}", settings.api_port)),
        ("OURO_API_TOKEN".into(), token.into()),
        ("OURO_RUNNER_LISTEN".into(), format!("127.0.0.1:{}", settings.runner_port)),
        ("OURO_PLATFORM".into(), settings.platform.clone()),
        ("OURO_RUNNER_STATE".into(), state_file.display().to_string()),
    ];
    let pid = if systemd_runs() {
        start_runner_unit(bin, data, settings, &env)?
    } else {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| local("open", &log_path, e))?;
        // Supervised: a runner that crashes is started again by its supervisor (this pid), which
        // writes the runner's output to the log and rotates it (10 MiB, three old files kept).
        // Its own stderr goes there too, for what it cannot say otherwise (a panic).
        let child = Command::new(bin.join("ouro-dyno-runner"))
            .arg("--supervise")
            .arg("--log")
            .arg(&log_path)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: a Ctrl-C in this terminal does not stop the platform.
            .process_group(0)
            .spawn()
            .map_err(|e| CliError::local(format!("cannot start ouro-dyno-runner: {e}")))?;
        child.id()
    };
    write_private(&data.join("runner.pid"), format!("{pid}\n").as_bytes())?;
    write_private(
        &data.join("runner.sha256"),
        format!("{}\n", file_digest(&bin.join("ouro-dyno-runner"))?).as_bytes(),
    )?;
    Ok(pid)
}

/// Whether systemd manages this machine (its runtime directory exists) and `ouro up` may
/// install a unit (root): then the runner is a systemd service, which comes back after a crash
/// and after a reboot. Otherwise `--supervise` brings it back after a crash, and a reboot needs
/// `ouro up` again (README).
fn systemd_runs() -> bool {
    use std::os::unix::fs::MetadataExt;
    Path::new("/run/systemd/system").is_dir()
        && fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        && Command::new("systemctl").arg("--version").output().is_ok_and(|o| o.status.success())
}

fn unit_name(platform: &str) -> String {
    format!("ouro-runner-{platform}.service")
}

/// The runner's systemd unit: started after Docker, again 1 s after any end, at every boot;
/// its settings (a token among them) in an environment file only root reads.
fn runner_unit(bin: &Path, data: &Path, platform: &str) -> String {
    let log = data.join("runner.log");
    format!(
        "# Made by `ouro up`; it makes it again when run.\n\
         [Unit]\n\
         Description=Ouro dyno runner ({platform})\n\
         After=docker.service network-online.target\n\
         Wants=docker.service network-online.target\n\
         \n\
         [Service]\n\
         EnvironmentFile={env}\n\
         ExecStart={exe} --supervise --log {log}\n\
         Restart=always\n\
         RestartSec=1\n\
         # Dynos are containers, not children: stopping the runner leaves them running.\n\
         KillMode=mixed\n\
         TimeoutStopSec=60\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        env = data.join("runner.env").display(),
        exe = bin.join("ouro-dyno-runner").display(),
        log = log.display(),
    )
}

/// Installs (or updates) the runner's unit and (re)starts it; its main pid.
fn start_runner_unit(bin: &Path, data: &Path, settings: &Settings, env: &[(String, String)]) -> Result<u32, CliError> {
    // The runner gets what it would have inherited from `ouro up` (OURO_* settings), with ours
    // over them.
    let mut all: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("OURO_")).collect();
    all.extend(env.iter().cloned());
    let lines: String = all.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    write_private(&data.join("runner.env"), lines.as_bytes())?;
    let unit = unit_name(&settings.platform);
    let path = Path::new("/etc/systemd/system").join(&unit);
    fs::write(&path, runner_unit(bin, data, &settings.platform)).map_err(|e| local("write", &path, e))?;
    for args in [vec!["daemon-reload"], vec!["enable", unit.as_str()], vec!["restart", unit.as_str()]] {
        let out =
            Command::new("systemctl").args(&args).output().map_err(|e| CliError::local(format!("systemctl: {e}")))?;
        if !out.status.success() {
            return Err(CliError::local(format!(
                "systemctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    let out = Command::new("systemctl")
        .args(["show", "-p", "MainPID", "--value", unit.as_str()])
        .output()
        .map_err(|e| CliError::local(format!("systemctl: {e}")))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| CliError::local(format!("systemd says no pid for {unit}")))
}

/// Whether the runner running is not the binary at `binary` (by the SHA-256 recorded when
/// `ouro up` started it; a runner started before that record existed counts as outdated).
fn runner_outdated(binary: &Path, data: &Path) -> Result<bool, CliError> {
    let recorded = fs::read_to_string(data.join("runner.sha256")).unwrap_or_default();
    Ok(recorded.trim() != file_digest(binary)?)
}

fn file_digest(path: &Path) -> Result<String, CliError> {
    let mut file = fs::File::open(path).map_err(|e| local("read", path, e))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| local("read", path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Stops the runner `ouro up` started (SIGTERM; its dynos keep running and the next runner
/// adopts them), waiting until it is gone.
fn stop_runner(data: &Path) -> Result<(), CliError> {
    // A unit `ouro up` installed: systemd stops it (a kill would only make it start again).
    let platform = fs::read_to_string(data.join("runner.env"))
        .ok()
        .and_then(|env| env.lines().find_map(|l| l.strip_prefix("OURO_PLATFORM=").map(str::to_string)));
    if let Some(platform) = platform.filter(|_| systemd_runs()) {
        let unit = unit_name(&platform);
        if Path::new("/etc/systemd/system").join(&unit).is_file() {
            let _ = Command::new("systemctl").args(["stop", unit.as_str()]).status();
            return Ok(());
        }
    }
    let Ok(pid) = fs::read_to_string(data.join("runner.pid")) else { return Ok(()) };
    let pid = pid.trim().to_string();
    let _ = Command::new("kill").arg(&pid).stderr(Stdio::null()).status();
    wait(Duration::from_secs(40), "the runner to stop", None, || !alive(&pid))
}

/// Whether process `pid` runs: a zombie (a runner this `ouro up` started and has not reaped)
/// has stopped.
fn alive(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// Registers one component as an app through the API: service, config, formation, then (when
/// its current slug is not this one) a release of this slug. Returns whether it changed
/// anything.
fn register(
    client: &Client,
    settings: &Settings,
    app: &str,
    process_type: &str,
    command: &str,
    packed: &mut Packed,
) -> Result<bool, CliError> {
    let path = |tail: &str| format!("/apps/{app}{tail}");
    let mut changed = false;
    match client.get(&path("")) {
        Ok(_) => {}
        Err(CliError::Api { status: 404, .. }) => {
            client.post("/apps", &serde_json::json!({ "name": app }))?;
            changed = true;
        }
        Err(e) => return Err(e),
    }
    let service = component_service(app);
    let current: Service = decode(client.get(&path("/service"))?)?;
    if current != service {
        client.put_json(&path("/service"), &service)?;
        changed = true;
    }
    let config: BTreeMap<String, String> = decode(client.get(&path("/config-vars"))?)?;
    let wanted = component_config(settings, app);
    let mut patch: BTreeMap<&String, Option<&String>> =
        wanted.iter().filter(|(k, v)| config.get(*k) != Some(*v)).map(|(k, v)| (k, Some(v))).collect();
    // The admin token is the seed's, for the API's first start: no release keeps it.
    let seed_only = "OURO_ADMIN_TOKEN".to_string();
    if config.contains_key(&seed_only) {
        patch.insert(&seed_only, None);
    }
    if !patch.is_empty() {
        client.patch(&path("/config-vars"), &patch)?;
        changed = true;
    }
    let formation = FormationBatch {
        updates: vec![FormationUpdate {
            process_type: process_type.into(),
            quantity: Some(1),
            size: Some(component_size(app).into()),
        }],
    };
    client.patch(&path("/formation"), &formation)?;
    // Only a first registration releases this slug: later versions come by `git push` to the
    // source app (see api/src/upgrade.rs), and `ouro up` must not take them back.
    if current_checksum(client, app)?.is_none() {
        let (slug, checksum) = packed.get()?;
        let create = SlugCreate {
            process_types: BTreeMap::from([(process_type.to_string(), command.to_string())]),
            commit_description: Some(format!("ouro up {}", env!("CARGO_PKG_VERSION"))),
            ..SlugCreate::default()
        };
        let made: Slug = decode(client.post(&path("/slugs"), &create)?)?;
        client.put_bytes(&made.blob.url, "application/gzip", slug)?;
        let release = ReleaseCreate {
            slug: Some(made.id),
            description: Some(format!("Deploy {} (ouro up)", &checksum["SHA256:".len()..][..12])),
            ..ReleaseCreate::default()
        };
        client.post(&path("/releases"), &release)?;
        changed = true;
    }
    Ok(changed)
}

/// The platform's source app `ouro`: `git push` of Ouro's repository to it builds with the
/// rust buildpack and upgrades the components.
fn register_source(client: &Client) -> Result<bool, CliError> {
    match client.get("/apps/ouro") {
        Ok(_) => Ok(false),
        Err(CliError::Api { status: 404, .. }) => {
            client.post("/apps", &serde_json::json!({ "name": "ouro" }))?;
            let buildpacks = serde_json::json!({ "updates": [{ "buildpack": "rust" }] });
            client.put_json("/apps/ouro/buildpack-installations", &buildpacks)?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// The checksum of the slug the app's current release runs, if any.
fn current_checksum(client: &Client, app: &str) -> Result<Option<String>, CliError> {
    let releases: Vec<Release> = decode(client.get(&format!("/apps/{app}/releases"))?)?;
    let Some(slug) = releases.into_iter().find(|r| r.current).and_then(|r| r.slug) else {
        return Ok(None);
    };
    let slug: Slug = decode(client.get(&format!("/apps/{app}/slugs/{}", slug.id))?)?;
    Ok(slug.checksum)
}

/// Whether the components' dynos are all up on their apps' current releases: the seed's are
/// gone, so a request (a long `git push`, say) cannot land on an API about to stop.
fn components_run_their_releases(client: &Client) -> bool {
    COMPONENTS.iter().all(|(app, _, _)| {
        let Ok(info) = client.get(&format!("/apps/{app}")) else { return false };
        let Ok(dynos) = client.get(&format!("/apps/{app}/dynos")) else { return false };
        let current = info["current_release"].as_i64();
        dynos
            .as_array()
            .is_some_and(|d| !d.is_empty() && d.iter().all(|d| d["state"] == "up" && d["release"].as_i64() == current))
    })
}

fn healthy(base: &str) -> bool {
    let config = ureq::Agent::config_builder()
        .max_idle_age(std::time::Duration::from_secs(ouro_types::CLIENT_IDLE_SECONDS))
        .timeout_global(Some(Duration::from_secs(2)))
        .build();
    ureq::Agent::new_with_config(config).get(format!("{base}/health")).call().is_ok()
}

/// Waits until `check` holds, for at most `limit`, saying every minute that it still waits;
/// stops at once with the reason when `runner` has stopped or says it cannot go on.
fn wait(
    limit: Duration,
    what: &str,
    runner: Option<&RunnerWatch>,
    mut check: impl FnMut() -> bool,
) -> Result<(), CliError> {
    let started = Instant::now();
    let mut told = started;
    while !check() {
        if let Some(runner) = runner {
            runner.check()?;
        }
        if started.elapsed() > limit {
            let log = runner.map(|r| format!(" ({})", r.data.join("runner.log").display())).unwrap_or_default();
            return Err(CliError::local(format!(
                "gave up after {} s waiting for {what}; see the runner's log{log}",
                limit.as_secs()
            )));
        }
        if told.elapsed() >= Duration::from_secs(60) {
            told = Instant::now();
            eprintln!("Still waiting for {what} ({} s so far)...", started.elapsed().as_secs());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// The runner `ouro up` waits on: what it says it cannot get past (`GET /health`), and whether
/// its process still runs.
struct RunnerWatch {
    url: String,
    data: PathBuf,
}

impl RunnerWatch {
    /// An error saying why, when the runner has stopped or reports problems.
    fn check(&self) -> Result<(), CliError> {
        let log = self.data.join("runner.log");
        let pid = fs::read_to_string(self.data.join("runner.pid")).map(|p| p.trim().to_string()).unwrap_or_default();
        if !pid.is_empty() && !alive(&pid) {
            let last = log_tail(&log, 5);
            return Err(CliError::local(format!(
                "the runner (pid {pid}) stopped{}; its log: {}",
                if last.is_empty() { String::new() } else { format!(": {}", last.join(" | ")) },
                log.display()
            )));
        }
        let config = ureq::Agent::config_builder()
            .max_idle_age(std::time::Duration::from_secs(ouro_types::CLIENT_IDLE_SECONDS))
            .timeout_global(Some(Duration::from_secs(2)))
            .build();
        let health = ureq::Agent::new_with_config(config)
            .get(format!("{}/health", self.url))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<ouro_types::RunnerHealth>().ok());
        match health {
            Some(health) if !health.problems.is_empty() => Err(CliError::local(format!(
                "the runner cannot go on: {}. It keeps trying in the background (pid {pid}, log {}): fix that and run `ouro up` again, or stop it with `kill {pid}`.",
                health.problems.join("; "),
                log.display()
            ))),
            _ => Ok(()),
        }
    }
}

/// The last `n` lines of the file at `path` with text (none if it cannot be read).
fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let text = fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// `ouro upgrades` (admins): the platform's self-upgrades, newest first, each with the
/// component it reached and how it ended.
pub fn upgrades(ctx: &crate::context::Ctx) -> crate::context::Output {
    let raw = ctx.client()?.get("/upgrades")?;
    if ctx.json {
        return Ok(crate::context::pretty(&raw));
    }
    Ok(render_upgrades(&raw, std::time::SystemTime::now()))
}

fn render_upgrades(raw: &serde_json::Value, now: std::time::SystemTime) -> String {
    let upgrades = raw.as_array().map(Vec::as_slice).unwrap_or_default();
    if upgrades.is_empty() {
        return "No upgrades yet: `git push` this repository to the app `ouro` upgrades the platform.\n".into();
    }
    let text = |u: &serde_json::Value, key: &str| u[key].as_str().unwrap_or_default().to_string();
    let rows: Vec<Vec<String>> = upgrades
        .iter()
        .map(|u| {
            let step = u["step"].as_u64().unwrap_or(0) as usize;
            let total = u["components"].as_array().map_or(0, Vec::len);
            let reached = match u["components"].get(step).and_then(|c| c.as_str()) {
                Some(component) => format!("{component} ({} of {total})", step + 1),
                None => format!("all {total} components"),
            };
            let id: String = text(u, "id").chars().take(8).collect();
            let when = crate::table::ago(&text(u, "created_at"), now);
            vec![id, text(u, "state"), reached, text(u, "message"), when]
        })
        .collect();
    crate::table::heading("Platform upgrades (newest first)") + &crate::table::columns(&rows)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|e| local("write", &temporary, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| local("write", &temporary, e))?;
    fs::rename(&temporary, path).map_err(|e| local("write", path, e))
}

fn local(verb: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::local(format!("cannot {verb} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            data_dir: None,
            platform: "ouro".into(),
            api_port: 7700,
            http_port: 8080,
            https_port: 8443,
            runner_port: 7701,
        }
    }

    #[test]
    fn the_runner_unit_restarts_it_after_docker_at_every_boot() {
        let unit = runner_unit(Path::new("/opt/ouro/bin"), Path::new("/var/lib/ouro"), "ouro");
        for line in [
            "After=docker.service network-online.target",
            "EnvironmentFile=/var/lib/ouro/runner.env",
            "ExecStart=/opt/ouro/bin/ouro-dyno-runner --supervise --log /var/lib/ouro/runner.log",
            "Restart=always",
            "RestartSec=1",
            "WantedBy=multi-user.target",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line:?} in:\n{unit}");
        }
        assert!(!unit.contains("OURO_API_TOKEN"), "the token stays in the environment file");
        assert_eq!(unit_name("ouro"), "ouro-runner-ouro.service");
    }

    #[test]
    fn the_seed_runs_both_components_on_the_host_network_from_the_slug_file() {
        let seed = seed_state(&settings(), "ouro_t", "SHA256:ab", Path::new("/d/bootstrap/ouro.tgz"));
        assert!(seed.seed);
        let names: Vec<&str> = seed.apps.iter().map(|a| a.app_name.as_str()).collect();
        assert_eq!(names, ["ouro-router", "ouro-api"]);
        let api = &seed.apps[1];
        assert!(api.host_network && api.mounts[0].path == "/data");
        assert_eq!(api.release.slug_url, "file:///d/bootstrap/ouro.tgz");
        assert_eq!(api.release.config["OURO_LISTEN"], "0.0.0.0:7700");
        assert_eq!(api.release.config["OURO_ADMIN_TOKEN"], "ouro_t");
        assert!(!component_config(&settings(), "ouro-api").contains_key("OURO_ADMIN_TOKEN"), "only the seed has it");
        assert_eq!(api.release.process_types["api"], "/app/bin/ouro-api");
        assert_eq!(seed.apps[0].release.config["OURO_ROUTES_URL"], "http://127.0.0.1:7701/routes");
        assert_eq!(seed.volumes, ["ouro-data"]);
    }

    #[test]
    fn upgrades_show_the_component_each_reached() {
        let components = ["ouro-api", "ouro-builder", "ouro-postgresql", "ouro-router"];
        let raw = serde_json::json!([
            {"id": "0123456789ab", "state": "failed", "step": 3, "components": components,
             "message": "ouro-router v5 crashed (exit 3)", "created_at": "2026-11-26T08:00:00Z"},
            {"id": "abcdef012345", "state": "succeeded", "step": 4, "components": components,
             "message": "every component runs the new slug", "created_at": "2026-11-26T07:00:00Z"},
        ]);
        let now = humantime::parse_rfc3339("2026-11-26T09:00:00Z").unwrap();
        let shown = render_upgrades(&raw, now);
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines[1].starts_with("01234567") && lines[1].contains("failed"), "{shown}");
        assert!(lines[1].contains("ouro-router (4 of 4)"), "{shown}");
        assert!(lines[2].contains("succeeded") && lines[2].contains("all 4 components"), "{shown}");
        assert!(render_upgrades(&serde_json::json!([]), now).contains("No upgrades yet"));
    }
}
