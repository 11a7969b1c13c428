//! One build, from a pushed source blob to a release: the API's side of `git push`.
//!
//! [`run`] checks the Procfile, starts a one-off dyno of the `ouro-builder` app (with the
//! app's cache volume, API access and a build-scoped token), relays what the builder reports
//! through `/build-api/{build}/*` (log lines, the slug, the result) to the pushing client,
//! and on success makes the slug and the release. Every wait is bounded by the build timeout;
//! a builder that exits without a result fails the build with the runner's reason.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ouro_types::VolumeMount;
use tokio::sync::mpsc;

use crate::apps::AppRow;
use crate::builder_app::{BUILD_COMMAND, BUILDER_APP};
use crate::builds::{BUILD_HEARTBEAT, BuildRow};
use crate::one_offs::NewOneOff;
use crate::releases::{Change, SlugRow};
use crate::{AppState, auth, now};
use ouro_types::BuildStatus;

/// A build dyno's size: builds compile, so they get the most memory a dyno may have.
const BUILD_SIZE: &str = "performance-l";
/// Where the app's build cache volume is mounted in the build dyno.
const CACHE_PATH: &str = "/cache";
/// The largest Procfile read.
const MAX_PROCFILE: u64 = 64 * 1024;
/// The most build output kept in `builds.output` (the pusher sees all of it).
const MAX_KEPT_OUTPUT: usize = 1024 * 1024;
/// The line that ends the text stream to the git hook: `\x1e` then the status.
pub const STATUS_MARK: char = '\u{1e}';

/// What a build dyno reports, in order.
pub enum Event {
    Output(String),
    Slug { checksum: String, size: i64 },
    Result(BuilderResult),
}

#[derive(Debug, serde::Deserialize)]
pub struct BuilderResult {
    pub ok: bool,
    #[serde(default)]
    pub process_types: BTreeMap<String, String>,
    #[serde(default)]
    pub buildpacks: Vec<String>,
    #[serde(default)]
    pub message: String,
}

/// A running build, as the builder's endpoints see it.
pub struct ActiveBuild {
    pub source_blob: String,
    pub source_size: i64,
    /// What `GET /build-api/{build}/env` answers.
    pub settings: serde_json::Value,
    pub events: mpsc::Sender<Event>,
    token_sha256: [u8; 32],
}

impl ActiveBuild {
    pub fn token_matches(&self, token: &str) -> bool {
        auth::scoped_secret_matches(token, &self.token_sha256)
    }
}

/// Running builds by id.
#[derive(Default)]
pub struct ActiveBuilds(Mutex<HashMap<String, Arc<ActiveBuild>>>);

impl ActiveBuilds {
    pub fn get(&self, build_id: &str) -> Option<Arc<ActiveBuild>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(build_id).cloned()
    }

    fn insert(&self, build_id: &str, build: ActiveBuild) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(build_id.to_string(), Arc::new(build));
    }

    fn remove(&self, build_id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(build_id);
    }
}

/// The build's log: sent to the pusher as it comes, and kept (bounded) for `builds:info`.
struct Transcript {
    out: mpsc::Sender<Bytes>,
    kept: String,
    /// The build's log is saved as it grows, at most every [`SAVE_EVERY`], so that
    /// `builds:info` shows a running build's progress.
    store: crate::store::Store,
    build_id: String,
    saved_at: tokio::time::Instant,
}

const SAVE_EVERY: Duration = Duration::from_secs(2);

impl Transcript {
    async fn text(&mut self, text: &str) {
        if self.kept.len() < MAX_KEPT_OUTPUT {
            let room = MAX_KEPT_OUTPUT - self.kept.len();
            let mut end = text.len().min(room);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            self.kept.push_str(&text[..end]);
        }
        // A pusher that went away does not stop the build.
        let _ = self.out.send(Bytes::copy_from_slice(text.as_bytes())).await;
        if self.saved_at.elapsed() >= SAVE_EVERY {
            self.saved_at = tokio::time::Instant::now();
            if let Err(e) = self.store.save_build_output(&self.build_id, &self.kept).await {
                tracing::warn!(build = %self.build_id, error = %e, "could not save a running build's log");
            }
        }
    }

    async fn line(&mut self, line: &str) {
        self.text(&format!("{line}\n")).await;
    }
}

/// Runs a build in the background that nobody watches live (its log is kept with the build),
/// holding the app's build lock until it ends.
pub fn spawn_unwatched(
    state: AppState,
    app: AppRow,
    build: BuildRow,
    actor: String,
    lock: tokio::sync::OwnedMutexGuard<()>,
) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    tokio::spawn(async move {
        run(state, app, build, actor, tx).await;
        drop(lock);
    });
}

/// Runs build `build` of `app` to its end and streams its log to `out`, ending with the
/// status line, marking it alive every [`BUILD_HEARTBEAT`] meanwhile. Never fails: every
/// problem is a failed build with a reason.
pub async fn run(state: AppState, app: AppRow, build: BuildRow, actor: String, out: mpsc::Sender<Bytes>) {
    let mut log = Transcript {
        out,
        kept: String::new(),
        store: state.store.clone(),
        build_id: build.id.clone(),
        saved_at: tokio::time::Instant::now(),
    };
    state.logs.event(&app.name, "api", format!("Build started by {actor}"));
    // Marked alive while it runs; recording its end right after takes far less than the
    // staleness (`builds::BUILD_STALE`).
    let heartbeat = async {
        loop {
            tokio::time::sleep(BUILD_HEARTBEAT).await;
            if let Err(e) = state.store.touch_build(&build.id).await {
                tracing::warn!(build = %build.id, error = %e, "could not mark a running build alive");
            }
        }
    };
    let outcome = tokio::select! {
        outcome = build_and_release(&state, &app, &build, &actor, &mut log) => outcome,
        never = heartbeat => never,
    };
    state.active_builds.remove(&build.id);
    let (status, version) = match outcome {
        Ok(version) => (BuildStatus::Succeeded, Some(version)),
        Err(reason) => {
            for line in reason.lines() {
                log.line(&format!(" !     {line}")).await;
            }
            log.line(" !     Push rejected: the build failed; the running release is unchanged.").await;
            (BuildStatus::Failed, None)
        }
    };
    if let Err(e) = state.store.finish_build(&build.id, status, &log.kept, version).await {
        tracing::error!(app = %app.name, build = %build.id, error = %e, "could not record the end of a build");
    }
    tracing::info!(app = %app.name, build = %build.id, %status, "build finished");
    state.logs.event(&app.name, "api", format!("Build {status} (`ouro builds:info {}` shows its log)", build.id));
    if status == BuildStatus::Succeeded && app.name == ouro_types::platform::SOURCE_APP {
        // A new build of Ouro itself: roll it to the platform's components.
        match state.store.app(&app.id).await {
            Ok(Some(app)) => match state.store.current_release(&app).await.map(|r| r.slug_id) {
                Ok(Some(slug_id)) => {
                    log.line(
                        "-----> Upgrading the platform: ouro-api, ouro-builder, the add-on providers, then ouro-router (ouro upgrades)",
                    )
                    .await;
                    if state.platform_builds.send(slug_id).is_err() {
                        tracing::error!("the upgrades' task is gone: the platform's build is not rolled out");
                    }
                }
                _ => tracing::error!("the platform's build has no slug to roll out"),
            },
            _ => tracing::error!("the platform's source app is gone"),
        }
    }
    let _ = log.out.send(Bytes::from(format!("{STATUS_MARK}{status}\n"))).await;
}

/// The build proper; `Err` is the reason it failed, for the user.
async fn build_and_release(
    state: &AppState,
    app: &AppRow,
    build: &BuildRow,
    actor: &str,
    log: &mut Transcript,
) -> Result<i64, String> {
    let internal = |e: crate::Error| {
        tracing::error!(app = %app.name, build = %build.id, error = %e, "build failed inside the API");
        format!("Ouro failed to run the build ({e}); the API log has details. Push again.")
    };
    let procfile = read_procfile(state, &build.source_blob).await?;
    let builder = state.store.app(BUILDER_APP).await.map_err(internal)?.filter(|a| a.current_release_id.is_some());
    let Some(builder) = builder else {
        return Err("The builder app is not ready; restart the API to recreate it.".into());
    };
    let current = state.store.current_release(app).await.map_err(internal)?;
    let mut buildpacks = state.store.buildpacks(&app.id).await.map_err(internal)?;
    if buildpacks.is_empty() {
        // Heroku's older way of naming a buildpack, still honoured.
        buildpacks.extend(current.config.get("BUILDPACK_URL").cloned());
    }
    let settings = serde_json::json!({
        "app": app.name,
        "commit": build.source_commit,
        "stack": ouro_types::STACK,
        "buildpacks": buildpacks,
        // Config vars reach the build as ENV_DIR files, never the builder's environment.
        "config": current.config,
    });
    let (events_tx, mut events) = mpsc::channel(64);
    let (token, token_sha256) = auth::new_scoped_secret();
    state.active_builds.insert(
        &build.id,
        ActiveBuild {
            source_blob: build.source_blob.clone(),
            source_size: build.source_size,
            settings,
            events: events_tx,
            token_sha256,
        },
    );
    let env = BTreeMap::from([
        ("OURO_BUILD_ID".to_string(), build.id.clone()),
        ("OURO_BUILD_TOKEN".to_string(), token),
        ("OURO_MAX_SLUG_BYTES".to_string(), state.settings.max_slug_bytes.to_string()),
    ]);
    let mounts = [VolumeMount { volume: cache_volume(&app.id), path: CACHE_PATH.into() }];
    let new = NewOneOff {
        command: BUILD_COMMAND,
        size: BUILD_SIZE,
        env: &env,
        mounts: &mounts,
        api_access: true,
        slug_id: None,
        attach: false,
        tty: false,
        time_to_live_seconds: None,
    };
    let dyno = state.store.create_one_off(&builder.id, new).await.map_err(internal)?;
    state.changed();
    tracing::info!(app = %app.name, build = %build.id, dyno = %format!("run.{}", dyno.number), "build dyno requested");

    let waited = wait_for_result(state, &builder, dyno.number, &mut events, log).await;
    // The dyno is no longer wanted, whatever happened (the runner stops it if it still runs).
    let _ = state.store.finish_one_off(BUILDER_APP, dyno.number, "build ended").await;
    state.changed();
    let (result, slug) = waited?;
    if !result.ok {
        let reason = if result.message.is_empty() { "The buildpack failed.".into() } else { result.message };
        return Err(reason);
    }
    let Some((checksum, size)) = slug else {
        return Err("The builder reported success but uploaded no slug.".into());
    };
    let mut process_types = result.process_types;
    process_types.extend(procfile.unwrap_or_default());
    crate::apps::validate_process_types(&process_types).map_err(|e| e.message)?;
    let commit = &build.source_commit;
    let slug = SlugRow {
        id: uuid::Uuid::new_v4().to_string(),
        process_types,
        commit_sha: Some(commit.clone()),
        commit_description: Some(format!(
            "{} {}",
            build.source_ref.trim_start_matches("refs/heads/"),
            result.buildpacks.join(", ")
        )),
        expected_checksum: Some(checksum.clone()),
        checksum: None,
        size: None,
        stack: ouro_types::STACK.to_string(),
        created_at: now(),
    };
    let slug = state.store.create_slug(&app.id, slug).await.map_err(internal)?;
    state.store.set_slug_blob(&slug.id, &checksum, size).await.map_err(internal)?;
    if let Some(command) = slug.process_types.get("release") {
        release_phase(state, app, &slug.id, command, log).await?;
    }
    log.line("-----> Launching...").await;
    let change = Change::Deploy { slug_id: slug.id, description: None };
    let release = state.create_release(app, actor, change).await.map_err(internal)?;
    let release = release.ok_or_else(|| "The release was not made.".to_string())?;
    state.changed();
    log.line(&format!("       Released v{}", release.version)).await;
    let web_url = crate::apps::web_url(&state.settings, &app.name);
    log.line(&format!("       {web_url} deployed to Ouro")).await;
    Ok(release.version)
}

/// The build cache volume of app `app_id` (the runner prefixes its platform).
pub fn cache_volume(app_id: &str) -> String {
    format!("cache-{app_id}")
}

/// Runs the Procfile's `release` command once, in a one-off dyno of the app on the new slug
/// with the current config, before the release exists (Heroku's release phase). Its output
/// streams into the push as the build's does (the runner ships it to the log hub, followed
/// here). A non-zero exit (or the build timeout) fails the build: no release is made, the old
/// one serves on, and the push ends with the command's last lines and its exit status.
async fn release_phase(
    state: &AppState,
    app: &AppRow,
    slug_id: &str,
    command: &str,
    log: &mut Transcript,
) -> Result<(), String> {
    log.line(&format!("-----> Running release command: {command}")).await;
    let env = BTreeMap::new();
    let new = NewOneOff {
        command,
        size: ouro_types::DEFAULT_DYNO_SIZE,
        env: &env,
        mounts: &[],
        api_access: false,
        slug_id: Some(slug_id),
        attach: false,
        tty: false,
        time_to_live_seconds: None,
    };
    let dyno =
        state.store.create_one_off(&app.id, new).await.map_err(|e| format!("Cannot run the release command: {e}"))?;
    // Followed before the runner hears of the dyno: none of its output comes before this.
    let filter =
        ouro_logs::Filter { process: Some(format!("run.{}", dyno.number)), source: Some(ouro_logs::Source::App) };
    let mut output = state.logs.hub().follow(&app.name, filter);
    state.changed();
    let mut tail = std::collections::VecDeque::new();
    let deadline = tokio::time::Instant::now() + state.settings.build_timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let reason = loop {
        tokio::select! {
            line = output.next() => match line {
                Some(line) => relay_release_line(log, &mut tail, &line.text).await,
                None => tokio::time::sleep(Duration::from_millis(300)).await,
            },
            _ = tick.tick() => {
                if let Ok(Some(reason)) = state.store.one_off_finished(&app.id, dyno.number).await {
                    break reason;
                }
                if tokio::time::Instant::now() > deadline {
                    let _ = state.store.finish_one_off(&app.name, dyno.number, "release phase timed out").await;
                    state.changed();
                    let minutes = state.settings.build_timeout.as_secs() / 60;
                    return Err(format!("Release command did not finish within {minutes} minutes; it was stopped."));
                }
            }
        }
    };
    // The dyno's last lines travel apart from its end (the runner ships them in batches):
    // they come within a moment of it.
    let grace = tokio::time::Instant::now() + RELEASE_OUTPUT_GRACE;
    while let Ok(Some(line)) = tokio::time::timeout_at(grace, output.next()).await {
        relay_release_line(log, &mut tail, &line.text).await;
    }
    if reason.ends_with("status 0") {
        log.line("       Release command succeeded").await;
        return Ok(());
    }
    let mut why = format!("Release command failed ({reason}); the release was not made.");
    if !tail.is_empty() {
        why.push_str("\nIts last lines:");
        for line in &tail {
            why.push_str("\n  ");
            why.push_str(line);
        }
    }
    Err(why)
}

/// How long the release command's last lines may trail its end.
const RELEASE_OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// How many of the release command's last lines a failure repeats.
const RELEASE_TAIL_LINES: usize = 10;

/// One line of the release command's output, into the push (indented, as the build's) and
/// the tail kept for a failure.
async fn relay_release_line(log: &mut Transcript, tail: &mut std::collections::VecDeque<String>, text: &str) {
    log.line(&format!("       {text}")).await;
    if tail.len() == RELEASE_TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(text.to_string());
}

/// Relays the builder's events until its result; fails on timeout or when the dyno ended
/// without one.
async fn wait_for_result(
    state: &AppState,
    builder: &AppRow,
    number: i64,
    events: &mut mpsc::Receiver<Event>,
    log: &mut Transcript,
) -> Result<(BuilderResult, Option<(String, i64)>), String> {
    let deadline = tokio::time::Instant::now() + state.settings.build_timeout;
    let mut slug = None;
    let mut ended: Option<(String, tokio::time::Instant)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Output(text)) => log.text(&text).await,
                Some(Event::Slug { checksum, size }) => slug = Some((checksum, size)),
                Some(Event::Result(result)) => return Ok((result, slug)),
                None => return Err("The build's event stream closed.".into()),
            },
            _ = tokio::time::sleep_until(deadline) => {
                let minutes = state.settings.build_timeout.as_secs() / 60;
                return Err(format!("Build timed out after {minutes} minutes (Ouro's limit; it was stopped)."));
            }
            _ = tick.tick() => {
                // The runner reports a finished one-off within a second or two; give the
                // builder's last requests a moment to arrive before calling it lost.
                match &ended {
                    Some((reason, since)) if since.elapsed() > Duration::from_secs(3) => {
                        return Err(format!("The build dyno stopped without a result ({reason})."));
                    }
                    Some(_) => {}
                    None => {
                        if let Ok(Some(reason)) = state.store.one_off_finished(&builder.id, number).await {
                            ended = Some((reason, tokio::time::Instant::now()));
                        }
                    }
                }
            }
        }
    }
}

/// The Procfile at the root of the source tar.gz, parsed (`None` when there is none).
async fn read_procfile(state: &AppState, source_blob: &str) -> Result<Option<BTreeMap<String, String>>, String> {
    let digest = source_blob.trim_start_matches("SHA256:");
    let file = state.blobs.open(digest).await.map_err(|e| format!("The pushed source cannot be read: {e}"))?;
    let file = file.into_std().await;
    let text = tokio::task::spawn_blocking(move || procfile_text(file))
        .await
        .map_err(|e| format!("Reading the Procfile failed: {e}"))??;
    match text {
        None => Ok(None),
        Some(text) => ouro_types::procfile::parse(&text).map(Some),
    }
}

fn procfile_text(file: std::fs::File) -> Result<Option<String>, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let entries = archive.entries().map_err(|e| format!("The pushed source is not a tar.gz: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("The pushed source is damaged: {e}"))?;
        let path = entry.path().map_err(|e| format!("The pushed source is damaged: {e}"))?;
        if path.to_string_lossy().trim_start_matches("./") != "Procfile" {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            return Err("The Procfile must be a regular file (not a link or directory).".into());
        }
        if entry.size() > MAX_PROCFILE {
            return Err(format!("The Procfile is larger than {} KiB.", MAX_PROCFILE / 1024));
        }
        let mut text = String::new();
        entry
            .take(MAX_PROCFILE)
            .read_to_string(&mut text)
            .map_err(|_| "The Procfile is not UTF-8 text.".to_string())?;
        return Ok(Some(text));
    }
    Ok(None)
}
