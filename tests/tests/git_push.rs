//! `git push` over HTTP with the real `git` client, against the real `ouro-api`, logged in
//! through the `ouro` credential helper that `ouro git:remote` sets up.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ouro_tests::{Api, Backend, Cli, Value, binary, ok, sha256sum, stderr, stdout};

/// A work tree with its own git configuration, isolated from the machine's.
struct Repo {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
    config_dir: PathBuf,
}

impl Repo {
    fn new(cli: &Cli) -> Repo {
        let repo = Repo {
            dir: tempfile::tempdir().expect("temp dir"),
            home: tempfile::tempdir().expect("temp dir"),
            config_dir: cli.config_dir.path().to_path_buf(),
        };
        repo.ok(&["init", "-q", "--initial-branch=main"]);
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> Output {
        let ouro_dir = binary("ouro").parent().expect("bin dir").to_path_buf();
        let path = std::env::join_paths(
            std::iter::once(ouro_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .expect("PATH");
        let mut command = Command::new("git");
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("OURO_") || k.starts_with("GIT_")) {
            command.env_remove(key);
        }
        command
            .args(args)
            .current_dir(self.path())
            .env("PATH", path)
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("OURO_CONFIG_DIR", &self.config_dir);
        command.output().expect("git runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.git(args);
        assert!(out.status.success(), "git {args:?} failed\nstdout: {}\nstderr: {}", stdout(&out), stderr(&out));
        stdout(&out).trim().to_string()
    }

    /// Writes a file and commits it; returns the new commit id.
    fn commit(&self, file: &str, content: &str) -> String {
        let path = self.path().join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
        self.ok(&["add", "-A"]);
        self.ok(&["commit", "-q", "-m", &format!("change {file}")]);
        self.ok(&["rev-parse", "HEAD"])
    }
}

fn logged_in(api: &Api) -> Cli {
    let cli = Cli::new(api);
    ok(&cli.login(&api.token));
    cli
}

fn builds(api: &Api, app: &str) -> Vec<Value> {
    let answer = api.get(&format!("/apps/{app}/builds"));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body.as_array().expect("a list").clone()
}

/// The object count of the app's bare repository on the server.
fn server_objects(api: &Api, app_id: &str) -> u64 {
    let repo = api.data_dir.path().join("repos").join(format!("{app_id}.git"));
    let out = Command::new("git").arg("--git-dir").arg(&repo).args(["count-objects", "-v"]).output().expect("git");
    let text = stdout(&out);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    field("count:") + field("in-pack:")
}

fn push_builds_and_refuses(backend: Backend) {
    let api = Api::start(backend);
    let cli = logged_in(&api);
    let created = api.post("/apps", ouro_tests::json!({ "name": "pushy" }));
    assert_eq!(created.status, 201, "{:?}", created.body);
    let app_id = created.body["id"].as_str().expect("id").to_string();

    let repo = Repo::new(&cli);
    let first = repo.commit("Procfile", "web: python3 -m http.server $PORT\n");
    let remote = ok(&cli.run_in(repo.path(), &["git:remote", "-a", "pushy"]));
    assert!(remote.contains(&format!("{}/pushy.git", api.url)), "{remote}");
    assert_eq!(repo.ok(&["remote", "get-url", "ouro"]), format!("{}/pushy.git", api.url));
    // Running it again updates rather than fails.
    ok(&cli.run_in(repo.path(), &["git:remote", "-a", "pushy"]));
    // Commands take the app from the remote now.
    assert!(ok(&cli.run_in(repo.path(), &["builds"])).contains("no builds yet"));

    // First push: the whole history goes, a pending build of it is queued.
    let pushed = repo.git(&["push", "ouro", "main"]);
    assert!(pushed.status.success(), "push failed: {}", stderr(&pushed));
    let said = stderr(&pushed);
    assert!(said.contains(&format!("-----> Received {} on main", &first[..7])), "{said}");
    let list = builds(&api, "pushy");
    assert_eq!(list.len(), 1, "{list:?}");
    let build = &list[0];
    assert_eq!(build["status"], "pending");
    assert_eq!(build["source_blob"]["version"], first.as_str());
    assert_eq!(build["source_blob"]["ref"], "refs/heads/main");

    // The source blob is `git archive` of the commit.
    let build_id = build["id"].as_str().expect("id");
    let (status, tarball) =
        api.raw("GET", &format!("/apps/pushy/builds/{build_id}/source"), Some(&api.token), None, "application/json");
    assert_eq!(status, 200);
    assert_eq!(build["source_blob"]["checksum"], format!("SHA256:{}", sha256sum(&tarball)).as_str());
    let unpacked = tempfile::tempdir().expect("temp dir");
    let tar_path = unpacked.path().join("source.tar.gz");
    std::fs::write(&tar_path, &tarball).expect("write");
    let untar = Command::new("tar").arg("xzf").arg(&tar_path).arg("-C").arg(unpacked.path()).output().expect("tar");
    assert!(untar.status.success(), "{}", stderr(&untar));
    assert_eq!(
        std::fs::read_to_string(unpacked.path().join("Procfile")).expect("Procfile in the source"),
        "web: python3 -m http.server $PORT\n"
    );
    let info = ok(&cli.run_in(repo.path(), &["builds:info"]));
    assert!(info.contains(build_id) && info.contains("pending") && info.contains(&first), "{info}");

    // Second push: only the new commit's objects travel (commit, tree, blob: 3).
    let objects_before = server_objects(&api, &app_id);
    let second = repo.commit("web.txt", "hello\n");
    let pushed = repo.git(&["push", "ouro", "main"]);
    assert!(pushed.status.success(), "second push failed: {}", stderr(&pushed));
    assert_eq!(server_objects(&api, &app_id), objects_before + 3);
    let list = builds(&api, "pushy");
    assert_eq!(list.len(), 2, "{list:?}");
    // One pending build per app: the newer push supersedes the older pending one.
    assert_eq!(list[0]["status"], "failed");
    assert!(list[0]["output"].as_str().unwrap_or_default().contains("Superseded"), "{list:?}");
    assert_eq!(list[1]["status"], "pending");
    assert_eq!(list[1]["source_blob"]["version"], second.as_str());
    let listed = ok(&cli.run_in(repo.path(), &["builds"]));
    assert!(listed.contains(&second[..7]) && listed.contains(&first[..7]), "{listed}");

    // Force push: history rewritten to a new commit on top of the first.
    repo.ok(&["reset", "-q", "--hard", &first]);
    let forced = repo.commit("other.txt", "rewritten\n");
    let plain = repo.git(&["push", "ouro", "main"]);
    assert!(!plain.status.success(), "a non-fast-forward push without --force is refused by git");
    let pushed = repo.git(&["push", "--force", "ouro", "main"]);
    assert!(pushed.status.success(), "force push failed: {}", stderr(&pushed));
    let list = builds(&api, "pushy");
    assert_eq!(list.len(), 3);
    assert_eq!(list[2]["source_blob"]["version"], forced.as_str());

    // Another branch is refused, with the reason, and changes nothing.
    repo.ok(&["checkout", "-q", "-b", "feature"]);
    repo.commit("feature.txt", "wip\n");
    let refused = repo.git(&["push", "ouro", "feature"]);
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(said.contains("remote: ouro: push to main or master to deploy (got refs/heads/feature)"), "{said}");
    assert_eq!(builds(&api, "pushy").len(), 3);
    let server_repo = api.data_dir.path().join("repos").join(format!("{app_id}.git"));
    let branches = Command::new("git").arg("--git-dir").arg(&server_repo).args(["branch", "--list"]).output();
    let branches = stdout(&branches.expect("git"));
    assert!(!branches.contains("feature"), "{branches}");

    // Deleting main is refused too.
    let deleted = repo.git(&["push", "ouro", ":main"]);
    assert!(!deleted.status.success(), "deleting main must be refused");

    // Fetch and clone work with the same credentials.
    let fetched = repo.git(&["fetch", "ouro"]);
    assert!(fetched.status.success(), "fetch failed: {}", stderr(&fetched));
    assert_eq!(repo.ok(&["rev-parse", "ouro/main"]), forced);

    // Wrong token: git reports the authentication failure; nothing changes.
    repo.ok(&["checkout", "-q", "main"]);
    repo.commit("late.txt", "late\n");
    let other = Cli::new(&api);
    let wrong = format!("ouro_{}_{}", "0".repeat(16), "0".repeat(64));
    let credentials = ouro_tests::json!({ "api_url": api.url, "token": wrong });
    std::fs::write(other.config_dir.path().join("credentials.json"), credentials.to_string()).expect("write");
    let bad = Repo { dir: repo.dir, home: repo.home, config_dir: other.config_dir.path().to_path_buf() };
    let denied = bad.git(&["push", "ouro", "main"]);
    assert!(!denied.status.success());
    let said = stderr(&denied);
    assert!(said.contains("Authentication failed"), "{said}");
    assert_eq!(builds(&api, "pushy").len(), 3);
    let main = Command::new("git").arg("--git-dir").arg(&server_repo).args(["rev-parse", "main"]).output();
    assert_eq!(stdout(&main.expect("git")).trim(), forced);

    // Without any credentials: 401 asking for Basic auth.
    let answer = api.call("GET", "/pushy.git/info/refs?service=git-receive-pack", None, None);
    assert_eq!(answer.status, 401);

    // Only the smart protocol is served.
    let answer = api.get("/pushy.git/info/refs");
    assert_eq!(answer.status, 403, "{:?}", answer.body);

    // An unknown app is a 404 from git's point of view too.
    let unknown = bad.git(&["ls-remote", &format!("{}/nope.git", api.url)]);
    assert!(!unknown.status.success());
    let answer = api.get("/nope.git/info/refs?service=git-receive-pack");
    assert_eq!(answer.status, 404, "{:?}", answer.body);

    // Deleting the app removes its repository.
    assert!(server_repo.exists());
    assert_eq!(api.delete("/apps/pushy").status, 200);
    assert!(!server_repo.exists());
}

/// `apps:create` in a checkout adds the remote and the credential helper: a plain
/// `git push ouro main` works at once.
#[test]
fn apps_create_sets_up_push() {
    let api = Api::start(Backend::Sqlite);
    let cli = logged_in(&api);
    let repo = Repo::new(&cli);
    let commit = repo.commit("index.html", "hi\n");
    let created = ok(&cli.run_in(repo.path(), &["apps:create", "quick"]));
    assert!(created.contains("Git remote ouro added"), "{created}");
    let pushed = repo.git(&["push", "ouro", "main"]);
    assert!(pushed.status.success(), "push failed: {}", stderr(&pushed));
    let list = builds(&api, "quick");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["source_blob"]["version"], commit.as_str());
    // A push to master deploys too.
    let pushed = repo.git(&["push", "ouro", "main:master"]);
    assert!(pushed.status.success(), "push to master failed: {}", stderr(&pushed));
    assert!(stderr(&pushed).contains("on master"), "{}", stderr(&pushed));
}

#[test]
fn sqlite() {
    push_builds_and_refuses(Backend::Sqlite);
}

/// On PostgreSQL when `OURO_TEST_DATABASE_URL` names a server (`scripts/test` sets it).
#[test]
fn postgres() {
    if std::env::var_os("OURO_TEST_DATABASE_URL").is_none() {
        eprintln!("skipped: OURO_TEST_DATABASE_URL is not set");
        return;
    }
    push_builds_and_refuses(Backend::postgres());
}
