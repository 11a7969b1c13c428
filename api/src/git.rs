//! The apps' git repositories: one bare repository per app, `<data dir>/repos/<app id>.git`,
//! made on first push. The real `git` binary speaks the protocol (see `routes/git.rs`); this
//! module prepares repositories, installs the `pre-receive` hook that decides which refs
//! deploy, and turns an accepted push into a source tar.gz in the blob store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::{AppState, Error, Result};

/// The branches that deploy, in order of preference when one push updates both.
pub const DEPLOY_REFS: [&str; 2] = ["refs/heads/main", "refs/heads/master"];

/// Refuses every ref but main and master, and says what it received. Runs inside
/// `git receive-pack`; what it prints on stderr reaches the pusher as `remote:` lines.
const PRE_RECEIVE: &str = r#"#!/bin/sh
# Written by ouro-api; rewritten on every push. Only main and master deploy.
status=0
received=""
while read -r old new ref; do
    case "$ref" in
        refs/heads/main|refs/heads/master)
            short=$(printf '%.7s' "$new")
            received="$received-----> Received $short on ${ref#refs/heads/}
"
            ;;
        *)
            echo "ouro: push to main or master to deploy (got $ref)" >&2
            status=1
            ;;
    esac
done
if [ "$status" = 0 ]; then
    printf '%s' "$received" >&2
    echo "-----> Queuing a build; \`ouro builds\` shows it" >&2
fi
exit $status
"#;

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

/// Makes the app's bare repository if it is missing and (re)writes its configuration and hook.
pub async fn ensure_repo(repo: &Path) -> Result<()> {
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
    handle.write_all(PRE_RECEIVE.as_bytes()).await?;
    handle.flush().await?;
    drop(handle);
    tokio::fs::rename(&staged, hooks.join("pre-receive")).await?;
    Ok(())
}

/// The commits main and master point at (missing refs are left out).
pub async fn deploy_refs(repo: &Path) -> Result<HashMap<String, String>> {
    let mut list = git(repo);
    list.args(["for-each-ref", "--format=%(refname) %(objectname)"]).args(DEPLOY_REFS);
    let text = run(list, "git for-each-ref").await?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, sha)| (name.to_string(), sha.to_string()))
        .collect())
}

/// The deploy ref a push changed, preferring main: `(ref, new commit)`.
pub fn pushed_ref(before: &HashMap<String, String>, after: &HashMap<String, String>) -> Option<(String, String)> {
    DEPLOY_REFS.iter().find_map(|name| {
        let new = after.get(*name)?;
        (before.get(*name) != Some(new)).then(|| (name.to_string(), new.clone()))
    })
}

/// `git archive --format=tar.gz <commit>` streamed into the blob store: `(SHA256:<hex>, size)`.
pub async fn archive_source(state: &AppState, repo: &Path, commit: &str) -> Result<(String, i64)> {
    let staged = state.blobs.staging_dir().join(format!("source-{}", uuid::Uuid::new_v4()));
    let result = archive_to(repo, commit, &staged).await;
    let committed = match result {
        Ok((digest, size)) => state.blobs.commit(&staged, &digest).await.map(|()| (format!("SHA256:{digest}"), size)),
        Err(e) => Err(e),
    };
    if committed.is_err() {
        let _ = tokio::fs::remove_file(&staged).await;
    }
    Ok(committed?)
}

async fn archive_to(repo: &Path, commit: &str, path: &Path) -> std::io::Result<(String, i64)> {
    let mut command = git(repo);
    command
        .args(["archive", "--format=tar.gz", commit])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut file = tokio::fs::File::create(path).await?;
    let mut hasher = Sha256::new();
    let mut size = 0i64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).await?;
        size += n as i64;
    }
    file.flush().await?;
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        return Err(std::io::Error::other(format!(
            "git archive failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok((hex::encode(hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_ref_prefers_main_and_needs_a_change() {
        let refs = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let empty = refs(&[]);
        let main_a = refs(&[("refs/heads/main", "a")]);
        assert_eq!(pushed_ref(&empty, &main_a), Some(("refs/heads/main".into(), "a".into())));
        assert_eq!(pushed_ref(&main_a, &main_a), None);
        let both = refs(&[("refs/heads/main", "b"), ("refs/heads/master", "c")]);
        assert_eq!(pushed_ref(&main_a, &both), Some(("refs/heads/main".into(), "b".into())));
        let master = refs(&[("refs/heads/main", "a"), ("refs/heads/master", "c")]);
        assert_eq!(pushed_ref(&main_a, &master), Some(("refs/heads/master".into(), "c".into())));
    }
}
