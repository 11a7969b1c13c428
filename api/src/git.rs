//! The apps' git repositories: one bare repository per app, `<data dir>/repos/<app id>.git`,
//! made on first push. The real `git` binary speaks the protocol (see `routes/git.rs`); this
//! module prepares repositories and installs the `pre-receive` hook that builds the push (see
//! `hook.rs`), and keeps the pushes in progress whose hooks may call back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::{AppState, Error, Result};

/// The branches that deploy, in order of preference when one push updates both.
pub const DEPLOY_REFS: [&str; 2] = ["refs/heads/main", "refs/heads/master"];

/// The `pre-receive` hook: `ouro-api git-hook pre-receive` (see [`crate::hook`]), which refuses
/// refs that do not deploy and runs the build while the push waits.
fn pre_receive_script(exe: &Path) -> String {
    let quoted = exe.to_string_lossy().replace('\'', r"'\''");
    format!("#!/bin/sh\n# Written by ouro-api; rewritten on every push.\nexec '{quoted}' git-hook pre-receive\n")
}

/// A push in progress: the hook it runs proves it belongs to it with the secret.
pub struct PushSession {
    pub app_id: String,
    /// Who pushed (the release's actor).
    pub actor: String,
    secret_sha256: [u8; 32],
}

impl PushSession {
    pub fn secret_matches(&self, secret: &str) -> bool {
        crate::auth::scoped_secret_matches(secret, &self.secret_sha256)
    }
}

/// Pushes in progress, by id.
#[derive(Default)]
pub struct PushSessions(Mutex<HashMap<String, Arc<PushSession>>>);

impl PushSessions {
    /// Registers a push; returns its id and secret, and a guard that ends it when dropped.
    pub fn open(self: &Arc<Self>, app_id: &str, actor: &str) -> (String, String, PushGuard) {
        let (secret, secret_sha256) = crate::auth::new_scoped_secret();
        let id = uuid::Uuid::new_v4().to_string();
        let session = PushSession { app_id: app_id.to_string(), actor: actor.to_string(), secret_sha256 };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), Arc::new(session));
        (id.clone(), secret, PushGuard { sessions: self.clone(), id })
    }

    pub fn get(&self, id: &str) -> Option<Arc<PushSession>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }
}

pub struct PushGuard {
    sessions: Arc<PushSessions>,
    id: String,
}

impl Drop for PushGuard {
    fn drop(&mut self) {
        self.sessions.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// Per-app push locks, by app id.
#[derive(Default)]
pub struct PushLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl PushLocks {
    pub fn of(&self, app_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(app_id.to_string()).or_default().clone()
    }
}

pub fn repo_path(state: &AppState, app_id: &str) -> PathBuf {
    state.settings.repos_dir.join(format!("{app_id}.git"))
}

/// `git` with a clean environment for repository `repo`: no inherited `GIT_*` variable
/// points it elsewhere, and it never prompts.
pub fn git(repo: &Path) -> Command {
    let mut command = clean_git();
    command.arg("--git-dir").arg(repo);
    command
}

/// `git` without inherited `GIT_*` variables, never prompting, killed if dropped.
pub fn clean_git() -> Command {
    let mut command = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            command.env_remove(key);
        }
    }
    command.env("GIT_TERMINAL_PROMPT", "0").kill_on_drop(true);
    command
}

async fn run(mut command: Command, what: &str) -> Result<String> {
    let output = command.stdin(Stdio::null()).output().await.map_err(|e| io_error(format!("cannot run git: {e}")))?;
    if !output.status.success() {
        return Err(io_error(format!("{what} failed: {}", String::from_utf8_lossy(&output.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn io_error(message: String) -> Error {
    Error::Io(std::io::Error::other(message))
}

/// Makes the app's bare repository if it is missing and (re)writes its configuration and hook
/// (which runs `hook_exe`, this API's binary).
pub async fn ensure_repo(repo: &Path, hook_exe: &Path) -> Result<()> {
    if !tokio::fs::try_exists(repo.join("HEAD")).await? {
        tokio::fs::create_dir_all(repo).await?;
        let mut init = clean_git();
        init.args(["init", "--bare", "--quiet", "--initial-branch=main"]).arg(repo);
        run(init, "git init").await?;
    }
    for (key, value) in [("receive.denyNonFastForwards", "false"), ("receive.denyDeletes", "true")] {
        let mut config = git(repo);
        config.args(["config", key, value]);
        run(config, "git config").await?;
    }
    let hooks = repo.join("hooks");
    tokio::fs::create_dir_all(&hooks).await?;
    let staged = hooks.join(format!("pre-receive.{}", uuid::Uuid::new_v4()));
    let mut file = tokio::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    file.mode(0o755);
    let mut handle = file.open(&staged).await?;
    handle.write_all(pre_receive_script(hook_exe).as_bytes()).await?;
    handle.flush().await?;
    drop(handle);
    tokio::fs::rename(&staged, hooks.join("pre-receive")).await?;
    Ok(())
}
