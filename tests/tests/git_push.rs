//! `git push` over HTTP with the real `git` client, against the real `ouro-api` alone (no
//! runner, no Docker), logged in through the `ouro` credential helper that `ouro git:remote`
//! sets up: everything a push refuses. Pushes that build are in `docker_git_push.rs`.

use std::process::Command;

use ouro_tests::{Api, Backend, Cli, Repo, Value, logged_in, ok, sha256sum, stderr, stdout};

fn builds(api: &Api, app: &str) -> Vec<Value> {
    let answer = api.get(&format!("/apps/{app}/builds"));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body.as_array().expect("a list").clone()
}

fn push_refusals(backend: Backend) {
    // No runner here: a build that gets past the Procfile waits for a build dyno that never
    // comes, so the build timeout is short.
    let api = Api::start_with(backend, &[("OURO_BUILD_TIMEOUT_SECONDS", "3")]);
    let cli = logged_in(&api);
    let created = api.post("/apps", ouro_tests::json!({ "name": "pushy" }));
    assert_eq!(created.status, 201, "{:?}", created.body);
    let app_id = created.body["id"].as_str().expect("id").to_string();
    let server_repo = api.data_dir.path().join("repos").join(format!("{app_id}.git"));
    let server_main = || {
        let mut command = Command::new("git");
        command.arg("--git-dir").arg(&server_repo).args(["rev-parse", "--verify", "-q", "main"]);
        stdout(&command.output().expect("git")).trim().to_string()
    };

    let repo = Repo::new(&cli);
    let first = repo.commit("Procfile", "web: python3 -m http.server $PORT\nnot a process line\n");
    let remote = ok(&cli.run_in(repo.path(), &["git:remote", "-a", "pushy"]));
    assert!(remote.contains(&format!("{}/pushy.git", cli.api_url)), "{remote}");
    assert_eq!(repo.ok(&["remote", "get-url", "ouro"]), format!("{}/pushy.git", cli.api_url));
    // Running it again updates rather than fails.
    ok(&cli.run_in(repo.path(), &["git:remote", "-a", "pushy"]));
    // Commands take the app from the remote now.
    assert!(ok(&cli.run_in(repo.path(), &["builds"])).contains("no builds yet"));

    // A malformed Procfile fails the build before it starts, with the line, and the push is
    // refused: the server's main does not move.
    let pushed = repo.git(&["push", "ouro", "main"]);
    assert!(!pushed.status.success(), "a push with a bad Procfile must be refused");
    let said = stderr(&pushed);
    assert!(said.contains("remote:  !     Procfile line 2: expected \"type: command\""), "{said}");
    assert!(said.contains("pre-receive hook declined"), "{said}");
    assert_eq!(server_main(), "");
    let list = builds(&api, "pushy");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(list[0]["source_blob"]["version"], first.as_str());
    assert_eq!(list[0]["source_blob"]["ref"], "refs/heads/main");
    let build_id = list[0]["id"].as_str().expect("id").to_string();
    let info = ok(&cli.run_in(repo.path(), &["builds:info"]));
    assert!(info.contains(&build_id) && info.contains("failed") && info.contains("Procfile line 2"), "{info}");

    // The source blob is `git archive` of the commit.
    let (status, tarball) =
        api.raw("GET", &format!("/apps/pushy/builds/{build_id}/source"), Some(&api.token), None, "application/json");
    assert_eq!(status, 200);
    assert_eq!(list[0]["source_blob"]["checksum"], format!("SHA256:{}", sha256sum(&tarball)).as_str());
    let unpacked = tempfile::tempdir().expect("temp dir");
    let tar_path = unpacked.path().join("source.tar.gz");
    std::fs::write(&tar_path, &tarball).expect("write");
    let untar = Command::new("tar").arg("xzf").arg(&tar_path).arg("-C").arg(unpacked.path()).output().expect("tar");
    assert!(untar.status.success(), "{}", stderr(&untar));
    assert!(std::fs::read_to_string(unpacked.path().join("Procfile")).expect("Procfile").contains("not a process"));

    // A good Procfile gets to the builder; with no runner no build dyno starts, and the build
    // times out: refused with the reason, nothing moved, no release made.
    let fixed = repo.commit("Procfile", "web: python3 -m http.server $PORT\n");
    let pushed = repo.git(&["push", "ouro", "main"]);
    assert!(!pushed.status.success(), "a build that times out must refuse the push");
    let said = stderr(&pushed);
    assert!(said.contains("Build timed out after 0 minutes"), "{said}");
    assert_eq!(server_main(), "");
    let list = builds(&api, "pushy");
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["status"], "failed");
    assert_eq!(list[1]["source_blob"]["version"], fixed.as_str());
    assert_eq!(api.get("/apps/pushy/releases").body.as_array().map(Vec::len), Some(1));
    // The build dyno it asked for is not wanted any more.
    let desired = api.get("/runner/desired-state");
    let builder = desired.body["apps"].as_array().expect("apps").iter().find(|a| a["app_name"] == "ouro-builder");
    let builder = builder.expect("the builder app is in the desired state").clone();
    assert_eq!(builder["one_offs"].as_array().map(Vec::len), Some(0), "{builder}");

    // Another branch is refused, with the reason, and changes nothing.
    repo.ok(&["checkout", "-q", "-b", "feature"]);
    repo.commit("feature.txt", "wip\n");
    let refused = repo.git(&["push", "ouro", "feature"]);
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(said.contains("remote: ouro: push to main or master to deploy (got refs/heads/feature)"), "{said}");
    assert_eq!(builds(&api, "pushy").len(), 2);
    let branches = Command::new("git").arg("--git-dir").arg(&server_repo).args(["branch", "--list"]).output();
    let branches = stdout(&branches.expect("git"));
    assert!(!branches.contains("feature"), "{branches}");

    // Wrong token: git reports the authentication failure; nothing changes.
    repo.ok(&["checkout", "-q", "main"]);
    let other = Cli::new(&api);
    let wrong = format!("ouro_{}_{}", "0".repeat(16), "0".repeat(64));
    let credentials = ouro_tests::json!({ "api_url": api.url, "token": wrong });
    std::fs::write(other.config_dir.path().join("credentials.json"), credentials.to_string()).expect("write");
    let bad = Repo { dir: repo.dir, home: repo.home, config_dir: other.config_dir.path().to_path_buf() };
    let denied = bad.git(&["push", "ouro", "main"]);
    assert!(!denied.status.success());
    let said = stderr(&denied);
    assert!(said.contains("Authentication failed"), "{said}");
    assert_eq!(builds(&api, "pushy").len(), 2);

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

    // The build endpoints take only a running build's token and a push in progress's secret.
    let answer = api.call("GET", &format!("/build-api/{build_id}/env"), Some(&api.token), None);
    assert_eq!(answer.status, 410, "{:?}", answer.body);
    let answer = api.call("POST", "/internal/pushes/nope/build", Some(&api.token), Some(b"x"));
    assert_eq!(answer.status, 403, "{:?}", answer.body);

    // The builder is an app of the platform's own, with a release.
    let builder = api.get("/apps/ouro-builder");
    assert_eq!(builder.status, 200, "{:?}", builder.body);
    assert_eq!(builder.body["current_release"], 2, "{:?}", builder.body);

    // Buildpacks: shipped names and URLs, in order; anything else is refused and changes nothing.
    assert!(ok(&cli.run(&["buildpacks", "-a", "pushy"])).contains("no buildpack set"));
    ok(&cli.run(&["buildpacks:set", "heroku/python", "-a", "pushy"]));
    ok(&cli.run(&["buildpacks:add", "https://example.com/bp.git#v2", "-a", "pushy"]));
    ok(&cli.run(&["buildpacks:add", "go", "-i", "1", "-a", "pushy"]));
    let listed = ok(&cli.run(&["buildpacks", "-a", "pushy"]));
    assert!(listed.contains("1. go\n2. heroku/python\n3. https://example.com/bp.git#v2\n"), "{listed}");
    let refused = cli.run(&["buildpacks:add", "file:///etc/passwd", "-a", "pushy"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("neither a shipped buildpack"), "{}", stderr(&refused));
    let answer = api.get("/apps/pushy/buildpack-installations");
    assert_eq!(answer.body.as_array().map(Vec::len), Some(3), "{:?}", answer.body);
    ok(&cli.run(&["buildpacks:remove", "-i", "2", "-a", "pushy"]));
    ok(&cli.run(&["buildpacks:clear", "-a", "pushy"]));
    assert_eq!(api.get("/apps/pushy/buildpack-installations").body, ouro_tests::json!([]));

    // Deleting the app removes its repository.
    assert!(server_repo.exists());
    assert_eq!(api.delete("/apps/pushy").status, 200);
    assert!(!server_repo.exists());
}

#[test]
fn sqlite() {
    push_refusals(Backend::Sqlite);
}

/// On PostgreSQL when `OURO_TEST_DATABASE_URL` names a server (`scripts/test` sets it).
#[test]
fn postgres() {
    if std::env::var_os("OURO_TEST_DATABASE_URL").is_none() {
        eprintln!("skipped: OURO_TEST_DATABASE_URL is not set");
        return;
    }
    push_refusals(Backend::postgres());
}
