//! `ouro-api git-hook pre-receive`: the `pre-receive` hook of every app repository, run by
//! `git receive-pack` inside a push (so it runs once per push, before any ref moves).
//!
//! It refuses the whole push if it touches a ref other than main or master (or deletes one).
//! Otherwise it streams `git archive --format=tar.gz <new commit>` to the API that started the
//! push (`$OURO_PUSH_URL`, authenticated by `$OURO_PUSH_SECRET`; both set by the API on the
//! `git receive-pack` it runs) and copies the answer, the build's log, to stderr, which git
//! shows the pusher as `remote:` lines. The last line of the answer is the build's status: a
//! failed build exits 1, so git refuses the push and the refs stay where they were.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::git::DEPLOY_REFS;
use crate::pipeline::STATUS_MARK;

const ZERO_COMMIT: &str = "0000000000000000000000000000000000000000";

/// Runs the hook named by `args` (after `git-hook`); returns the exit code.
pub fn run(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("pre-receive") => pre_receive(std::io::stdin().lock()),
        _ => {
            eprintln!("usage: ouro-api git-hook pre-receive (run by git, not by hand)");
            2
        }
    }
}

/// A ref update as git gives it on stdin: `old new ref`.
#[derive(Debug, PartialEq, Eq)]
struct Update {
    old: String,
    new: String,
    name: String,
}

fn pre_receive(stdin: impl BufRead) -> i32 {
    let updates: Vec<Update> = stdin
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (old, new, name) = (parts.next()?, parts.next()?, parts.next()?);
            Some(Update { old: old.to_string(), new: new.to_string(), name: name.to_string() })
        })
        .collect();
    let (deploy, refused) = choose(&updates);
    if !refused.is_empty() {
        for reason in refused {
            eprintln!("ouro: {reason}");
        }
        return 1;
    }
    let Some(update) = deploy else { return 0 };
    // Pushes to one app wait for each other: if the branch moved meanwhile, git would refuse
    // this update only after the build; refuse it before.
    if current(&update.name) != update.old {
        eprintln!("ouro: {} moved while this push waited for another one; fetch and push again", update.name);
        return 1;
    }
    match build(update) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(reason) => {
            eprintln!(" !     {reason}");
            1
        }
    }
}

/// What `name` points at now (all zeros when it does not exist).
fn current(name: &str) -> String {
    let out = Command::new("git").args(["rev-parse", "--verify", "-q", name]).stdin(Stdio::null()).output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => ZERO_COMMIT.to_string(),
    }
}

/// The update that deploys (main preferred) and the reasons to refuse the push.
fn choose(updates: &[Update]) -> (Option<&Update>, Vec<String>) {
    let mut refused = Vec::new();
    for update in updates {
        if !DEPLOY_REFS.contains(&update.name.as_str()) {
            refused.push(format!("push to main or master to deploy (got {})", update.name));
        } else if update.new == ZERO_COMMIT {
            refused.push(format!("deleting {} is not allowed", update.name));
        }
    }
    let deploy = DEPLOY_REFS.iter().find_map(|name| updates.iter().find(|u| u.name == *name));
    (deploy, refused)
}

/// Sends the pushed tree to the API and relays the build log; `Ok(true)` when it succeeded.
fn build(update: &Update) -> Result<bool, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(url), Some(secret)) = (var("OURO_PUSH_URL"), var("OURO_PUSH_SECRET")) else {
        return Err("this repository deploys only when pushed to through the Ouro API".into());
    };
    // git sets GIT_DIR (and the quarantine of the pushed objects) for hooks.
    let mut archive = Command::new("git")
        .args(["archive", "--format=tar.gz", &update.new])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git archive: {e}"))?;
    let mut tree = archive.stdout.take().expect("piped stdout");
    let config = ureq::Agent::config_builder()
        .max_idle_age(std::time::Duration::from_secs(ouro_types::CLIENT_IDLE_SECONDS))
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let answer = agent
        .post(&url)
        .header("Authorization", format!("Bearer {secret}"))
        .header("X-Ouro-Commit", &update.new)
        .header("X-Ouro-Ref", &update.name)
        .header("Content-Type", "application/gzip")
        .send(ureq::SendBody::from_reader(&mut tree));
    let archived = archive.wait_with_output().map_err(|e| format!("git archive failed: {e}"))?;
    if !archived.status.success() {
        return Err(format!("git archive failed: {}", String::from_utf8_lossy(&archived.stderr).trim()));
    }
    let mut response = answer.map_err(|e| format!("cannot reach the Ouro API to build: {e}"))?;
    if response.status() != 200 {
        let mut text = String::new();
        let _ = response.body_mut().as_reader().take(64 * 1024).read_to_string(&mut text);
        let message = serde_json::from_str::<ouro_types::ErrorBody>(&text).map(|b| b.message).unwrap_or(text);
        return Err(format!("the build could not start: {}", message.trim()));
    }
    let mut succeeded = None;
    let mut stderr = std::io::stderr().lock();
    for line in BufReader::new(response.body_mut().as_reader()).lines() {
        let line = line.map_err(|e| format!("the build log was cut off: {e}"))?;
        match line.strip_prefix(STATUS_MARK) {
            Some(status) => succeeded = Some(status.parse() == Ok(ouro_types::BuildStatus::Succeeded)),
            None => {
                let _ = writeln!(stderr, "{line}");
                let _ = stderr.flush();
            }
        }
    }
    succeeded.ok_or_else(|| "the build log ended without a status; see `ouro builds`".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(name: &str, new: &str) -> Update {
        Update { old: ZERO_COMMIT.into(), new: new.into(), name: name.into() }
    }

    #[test]
    fn main_or_master_deploys_and_other_refs_refuse_the_push() {
        let a = "a".repeat(40);
        let both = [update("refs/heads/master", &a), update("refs/heads/main", &a)];
        let (deploy, refused) = choose(&both);
        assert_eq!(deploy.map(|u| u.name.as_str()), Some("refs/heads/main"));
        assert!(refused.is_empty());
        let (_, refused) = choose(&[update("refs/heads/main", &a), update("refs/heads/feature", &a)]);
        assert_eq!(refused, ["push to main or master to deploy (got refs/heads/feature)"]);
        let (_, refused) = choose(&[update("refs/heads/main", ZERO_COMMIT)]);
        assert_eq!(refused, ["deleting refs/heads/main is not allowed"]);
        let (deploy, refused) = choose(&[]);
        assert!(deploy.is_none() && refused.is_empty());
    }
}
