//! The little git the CLI needs: find the app from the `ouro` remote, and add that remote
//! after `apps:create`.

use std::path::Path;
use std::process::{Command, Stdio};

pub const REMOTE: &str = "ouro";

/// Runs git quietly and returns its trimmed stdout if it succeeded. A missing git binary
/// counts as failure.
fn git(args: &[&str]) -> Option<String> {
    quiet(Command::new("git").args(args))
}

fn quiet(command: &mut Command) -> Option<String> {
    let output = command.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The commit checked out in `dir`, if `dir` is in a git work tree that has one.
pub fn head_commit(dir: &Path) -> Option<String> {
    let in_dir = |args: &[&str]| quiet(Command::new("git").arg("-C").arg(dir).args(args));
    if in_dir(&["rev-parse", "--is-inside-work-tree"]).as_deref() != Some("true") {
        return None;
    }
    in_dir(&["rev-parse", "--verify", "--quiet", "HEAD"]).filter(|sha| is_commit_id(sha))
}

/// A full SHA-1 or SHA-256 object name.
fn is_commit_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn remote_url() -> Option<String> {
    git(&["remote", "get-url", REMOTE])
}

/// The app that the current directory's `ouro` remote points at.
pub fn remote_app() -> Option<String> {
    remote_url().as_deref().and_then(app_from_remote_url)
}

pub fn inside_work_tree() -> bool {
    git(&["rev-parse", "--is-inside-work-tree"]).as_deref() == Some("true")
}

pub fn has_remote() -> bool {
    remote_url().is_some()
}

pub fn add_remote(url: &str) -> Result<(), String> {
    let status = Command::new("git")
        .args(["remote", "add", REMOTE, url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`git remote add {REMOTE} {url}` failed ({status})")) }
}

/// The last path segment of a remote URL without `.git`: `https://h/git/demo.git` and
/// `git@h:demo.git` both give `demo`.
pub fn app_from_remote_url(url: &str) -> Option<String> {
    let path = url.trim().trim_end_matches('/');
    let last = path.rsplit(['/', ':']).next()?;
    let name = last.strip_suffix(".git").unwrap_or(last);
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids() {
        assert!(is_commit_id("0123456789abcdef0123456789abcdef01234567"));
        assert!(is_commit_id(&"a".repeat(64)));
        assert!(!is_commit_id("HEAD"));
        assert!(!is_commit_id("0123456789abcdef0123456789abcdef0123456"));
        assert!(!is_commit_id("g123456789abcdef0123456789abcdef01234567"));
    }

    #[test]
    fn remote_urls() {
        let cases = [
            ("http://127.0.0.1:7700/git/demo.git", Some("demo")),
            ("https://git.example.com/demo", Some("demo")),
            ("https://git.example.com/demo.git/", Some("demo")),
            ("git@example.com:my-app.git", Some("my-app")),
            ("ssh://git@example.com:2222/apps/my-app.git", Some("my-app")),
            ("demo.git", Some("demo")),
            ("  https://h/x/demo.git\n", Some("demo")),
            ("https://h/.git", None),
            ("", None),
        ];
        for (url, expect) in cases {
            assert_eq!(app_from_remote_url(url).as_deref(), expect, "url {url:?}");
        }
    }
}
