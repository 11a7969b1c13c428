//! `git push` that builds and deploys, end to end: the real `git` client pushes to the real API,
//! the build runs in a one-off dyno of the `ouro-builder` app on the real Docker Engine (started
//! by the real runner), and the app answers through the real router. Needs Docker, network
//! access to PyPI and the Debian mirror, and the stack images (built on first use).

use std::process::Command;
use std::time::Duration;

use ouro_tests::platform::{Platform, add_sample, push, sample_app, sample_repo, wait_for_page};
use ouro_tests::{Repo, Value, logged_in, ok, stderr, stdout};

fn builds(platform: &Platform, app: &str) -> Vec<Value> {
    platform.api.get(&format!("/apps/{app}/builds")).body.as_array().cloned().unwrap_or_default()
}

/// The object count of the app's bare repository on the server.
fn server_objects(platform: &Platform, app: &str) -> u64 {
    let id = platform.api.get(&format!("/apps/{app}")).body["id"].as_str().expect("app id").to_string();
    let repo = platform.api.data_dir.path().join("repos").join(format!("{id}.git"));
    let out = Command::new("git").arg("--git-dir").arg(&repo).args(["count-objects", "-v"]).output().expect("git");
    let text = stdout(&out);
    let field = |name: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    field("count:") + field("in-pack:")
}

/// Asserts the transcript has Heroku's steps, in order.
fn assert_transcript(said: &str, detected: &str, version: i64) {
    let steps = [
        "remote: -----> Building on the Debian 13 (trixie) stack".to_string(),
        format!("remote: -----> {detected} app detected"),
        "remote: -----> Discovering process types".to_string(),
        "remote: -----> Compressing...".to_string(),
        "remote:        Done: ".to_string(),
        "remote: -----> Launching...".to_string(),
        format!("remote:        Released v{version}"),
        "deployed to Ouro".to_string(),
    ];
    let mut from = 0;
    for step in &steps {
        match said[from..].find(step.as_str()) {
            Some(at) => from += at + step.len(),
            None => panic!("`{step}` missing (or out of order) in the push's output:\n{said}"),
        }
    }
}

#[test]
fn python_push_builds_serves_uses_the_cache_and_survives_a_broken_build() {
    let platform = Platform::start();
    let cli = logged_in(&platform.api);
    let repo = sample_repo(&platform, &cli, "snake", "python-requests");
    ok(&cli.run_in(repo.path(), &["config:set", "GREETING=bonjour"]));

    // First push: cold cache. The transcript streams back; the release serves.
    let said = push(&repo, &["main"]);
    assert_transcript(&said, "Python", 3);
    assert!(said.contains("pip: 0 from the build cache, 2 downloaded"), "{said}");
    assert!(said.contains("Procfile declares types     -> web"), "{said}");
    let page = wait_for_page(&platform, "snake", "hello from six 1.17.0");
    assert!(page.contains("(bonjour)"), "config vars reach the dyno: {page}");
    let list = builds(&platform, "snake");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "succeeded", "{:?}", list[0]);
    assert_eq!(list[0]["release"]["version"], 3);
    // The build's config reached the buildpack through ENV_DIR, not the builder's environment.
    let builder = platform.api.get("/runner/desired-state");
    let builder = builder.body["apps"].as_array().expect("apps").iter().find(|a| a["app_name"] == "ouro-builder");
    let builder_config = &builder.expect("builder app")["release"]["config"];
    assert!(builder_config.as_object().is_some_and(|c| c.is_empty()), "{builder_config}");

    // Second push: only the new objects travel, and the cache is used.
    let objects = server_objects(&platform, "snake");
    let web = std::fs::read_to_string(repo.path().join("web.py")).expect("web.py");
    std::fs::write(repo.path().join("web.py"), web.replace("hello from six", "hi again from six")).expect("write");
    repo.ok(&["commit", "-q", "-am", "say hi again"]);
    let said = push(&repo, &["main"]);
    assert_eq!(server_objects(&platform, "snake"), objects + 3, "commit, tree and one blob");
    assert_transcript(&said, "Python", 4);
    assert!(said.contains("pip: 2 from the build cache, 0 downloaded"), "{said}");
    wait_for_page(&platform, "snake", "hi again from six 1.17.0");

    // A broken build: the push is refused with the reason, main does not move, the old
    // release keeps serving, and the log stays in builds:info.
    std::fs::write(repo.path().join("requirements.txt"), "this-package-does-not-exist-ouro-4242==1.0\n").unwrap();
    repo.ok(&["commit", "-q", "-am", "break the build"]);
    let out = repo.git(&["push", "ouro", "main"]);
    let said = stderr(&out);
    assert!(!out.status.success(), "a failed build must refuse the push:\n{said}");
    assert!(said.contains("remote:  !     Push rejected, failed to compile Python app."), "{said}");
    assert!(said.contains("pre-receive hook declined"), "{said}");
    let info = ok(&cli.run_in(repo.path(), &["builds:info"]));
    assert!(info.contains("failed") && info.contains("this-package-does-not-exist-ouro-4242"), "{info}");
    assert_eq!(platform.api.get("/apps/snake").body["current_release"], 4);
    for _ in 0..5 {
        let (status, body) = platform.get("snake", "/").expect("the old release serves");
        assert_eq!(status, 200);
        assert!(body.contains("hi again from six"), "{body}");
    }

    // Force push back to a good commit deploys it; fetch sees it.
    repo.ok(&["reset", "-q", "--hard", "HEAD~1"]);
    std::fs::write(repo.path().join("extra.txt"), "x\n").unwrap();
    repo.ok(&["add", "-A"]);
    repo.ok(&["commit", "-q", "-m", "rewritten"]);
    let said = push(&repo, &["--force", "main"]);
    assert_transcript(&said, "Python", 5);
    let head = repo.ok(&["rev-parse", "HEAD"]);
    repo.ok(&["fetch", "-q", "ouro"]);
    assert_eq!(repo.ok(&["rev-parse", "ouro/main"]), head);
    // A push to master deploys too.
    std::fs::write(repo.path().join("extra.txt"), "y\n").unwrap();
    repo.ok(&["commit", "-q", "-am", "to master"]);
    let said = push(&repo, &["main:master"]);
    assert_transcript(&said, "Python", 6);
    let listed = ok(&cli.run_in(repo.path(), &["builds"]));
    assert!(listed.contains("succeeded") && listed.contains("failed"), "{listed}");

    // The app's build cache is a volume of its own; deleting the app removes it.
    let id = platform.api.get("/apps/snake").body["id"].as_str().expect("id").to_string();
    let cache = format!("{}-cache-{id}", platform.id);
    let exists = || platform.block_on(platform.docker.inspect_volume(&cache)).is_ok();
    assert!(exists(), "the build cache volume {cache} exists");
    assert_eq!(platform.api.delete("/apps/snake").status, 200);
    platform.wait_until(Duration::from_secs(60), "the deleted app's cache volume is gone", || !exists());
}

/// Five kinds of app pushed at the same moment: the builds run side by side (one build dyno
/// each), and each app answers through the router.
#[test]
fn static_procfile_node_go_and_rust_apps_build_at_once() {
    let platform = Platform::start();
    let cli = logged_in(&platform.api);
    let apps = [
        ("site", "static-site", "Static", "<h1>Hello from a static site on Ouro</h1>"),
        ("shell", "procfile-shell", "Procfile", "hello"),
        ("nodey", "node-nodeps", "Node.js", "hello from node v20."),
        ("gopher", "go-hello", "Go", "hello from go1.24"),
        ("crab", "rust-hello", "Rust", "hello from rust"),
    ];
    let repos: Vec<Repo> = apps.iter().map(|(app, sample, ..)| sample_repo(&platform, &cli, app, sample)).collect();
    let transcripts: Vec<String> = std::thread::scope(|scope| {
        let pushes: Vec<_> = repos.iter().map(|repo| scope.spawn(move || push(repo, &["main"]))).collect();
        pushes.into_iter().map(|p| p.join().expect("push thread")).collect()
    });
    for ((app, _, detected, page), said) in apps.iter().zip(&transcripts) {
        assert_transcript(said, detected, 2);
        wait_for_page(&platform, app, page);
    }
    // They overlapped: every build started before any of them ended.
    let spans: Vec<(String, String)> = apps
        .iter()
        .map(|(app, ..)| {
            let build = builds(&platform, app).pop().expect("a build");
            (build["created_at"].as_str().unwrap().to_string(), build["updated_at"].as_str().unwrap().to_string())
        })
        .collect();
    let last_start = spans.iter().map(|s| s.0.clone()).max().unwrap();
    let first_end = spans.iter().map(|s| s.1.clone()).min().unwrap();
    assert!(last_start < first_end, "the builds ran one after another: {spans:?}");

    // Two pushes to one app at once are serialised: one builds and deploys; the other, made
    // on the same base, waits and is then refused without building, since main moved (by the
    // hook, or by git itself when the wait came before it read the refs).
    let clone = Repo::new(&cli);
    clone.ok(&["remote", "add", "ouro", &format!("{}/site.git", platform.api.url)]);
    ok(&cli.run_in(clone.path(), &["git:remote", "-a", "site"]));
    clone.ok(&["fetch", "-q", "ouro"]);
    clone.ok(&["reset", "-q", "--hard", "ouro/main"]);
    repos[0].commit("index.html", "<h1>first</h1>\n");
    clone.commit("index.html", "<h1>second</h1>\n");
    let before = builds(&platform, "site").len();
    let outs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let a = scope.spawn(|| repos[0].git(&["push", "ouro", "main"]));
        let b = scope.spawn(|| clone.git(&["push", "ouro", "main"]));
        vec![a.join().expect("push"), b.join().expect("push")]
    });
    let succeeded: Vec<&std::process::Output> = outs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(succeeded.len(), 1, "exactly one push wins:\n{}\n{}", stderr(&outs[0]), stderr(&outs[1]));
    let refused = outs.iter().find(|o| !o.status.success()).expect("one refused");
    let said = stderr(refused);
    assert!(said.contains("moved while this push waited") || said.contains("[rejected]"), "{said}");
    assert_eq!(builds(&platform, "site").len(), before + 1, "the refused push built nothing");
}

/// Serves `body` at any path over HTTP on every interface (build dynos reach it as
/// `host.docker.internal`), for `requests` requests; returns the port.
fn serve_file(body: Vec<u8>, requests: usize) -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    port
}

/// A third-party classic buildpack as a .tgz: it writes the page from a config var read from
/// ENV_DIR, reports what of the builder it can see, and exports a variable for the next one.
fn third_party_buildpack() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("greeter/bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let files = [
        ("detect", "#!/bin/sh\necho Greeter\n"),
        (
            "compile",
            "#!/bin/sh\nset -e\necho \"-----> Greeting from $3\"\n\
             tokens=$(env | grep -c '^OURO_' || true)\n\
             cached=$(ls -A \"$2\" | wc -l)\n\
             echo \"<p>$(cat \"$3/GREETING\") tokens=$tokens cache=$cached</p>\" > \"$1/index.html\"\n\
             echo 'export GREETER_RAN=yes' > \"$(dirname \"$0\")/../export\"\n",
        ),
        ("release", "#!/bin/sh\necho '---'\necho 'default_process_types: {}'\n"),
    ];
    for (name, text) in files {
        let path = bin.join(name);
        std::fs::write(&path, text).expect("write");
        Command::new("chmod").arg("755").arg(&path).status().expect("chmod");
    }
    let out = Command::new("tar").arg("czf").arg("-").arg("-C").arg(dir.path()).arg("greeter").output().expect("tar");
    assert!(out.status.success());
    out.stdout
}

/// Buildpacks by URL and in chains, the release phase, and what a build refuses: a source
/// link out of the tree, a slug over the limit.
#[test]
fn buildpack_urls_release_phase_and_refusals() {
    // The buildpack is served from this host, which dynos reach only where the operator allows
    // it (OURO_EGRESS_ALLOW): here Docker's default gateway, `host.docker.internal`.
    let mut runner_env = ouro_tests::platform::runner_env();
    runner_env.push(("OURO_EGRESS_ALLOW", "172.17.0.1/32"));
    let platform = Platform::start_with_api(&[("OURO_MAX_SLUG_BYTES", "8000000")], &runner_env);
    let cli = logged_in(&platform.api);

    // Release phase: runs on the new slug before the release; a failure keeps the old one.
    let repo = Repo::new(&cli);
    add_sample(&repo, "static-site");
    std::fs::write(
        repo.path().join("Procfile"),
        "web: python3 -m http.server $PORT --bind 0.0.0.0 --directory /app\n\
         release: test -f /app/index.html && echo migrating the database && echo done migrating\n",
    )
    .expect("write");
    repo.ok(&["add", "-A"]);
    repo.ok(&["commit", "-q", "-m", "release phase"]);
    ok(&cli.run_in(repo.path(), &["apps:create", "phased"]));
    // Heroku's older way of naming a buildpack.
    ok(&cli.run_in(repo.path(), &["config:set", "BUILDPACK_URL=heroku/static"]));
    let said = push(&repo, &["main"]);
    assert!(said.contains("-----> Using buildpack: heroku/static"), "{said}");
    assert!(said.contains("-----> Running release command: test -f /app/index.html"), "{said}");
    // Its output streams into the push, as the build's does (git pads `remote:` lines).
    let said: String = said.lines().map(|l| format!("{}\n", l.trim_end())).collect();
    assert!(
        said.contains("remote:        migrating the database\nremote:        done migrating\nremote:        Release command succeeded"),
        "{said}"
    );
    assert_transcript(&said, "Static", 3);
    wait_for_page(&platform, "phased", "Hello from a static site on Ouro");
    let procfile = "web: python3 -m http.server $PORT --bind 0.0.0.0 --directory /app\n\
                    release: echo 'Traceback: no such table' >&2; exit 3\n";
    std::fs::write(repo.path().join("Procfile"), procfile).expect("write");
    std::fs::write(repo.path().join("index.html"), "<h1>never served</h1>\n").expect("write");
    repo.ok(&["commit", "-q", "-am", "failing release phase"]);
    let out = repo.git(&["push", "ouro", "main"]);
    let said = stderr(&out);
    assert!(!out.status.success(), "a failed release phase refuses the push:\n{said}");
    assert!(
        said.contains("Release command failed (process exited with status 3); the release was not made."),
        "{said}"
    );
    // What it said, streamed and again with the failure.
    let said: String = said.lines().map(|l| format!("{}\n", l.trim_end())).collect();
    assert!(said.contains("remote:        Traceback: no such table\n"), "{said}");
    assert!(said.contains("Its last lines:\nremote:  !       Traceback: no such table"), "{said}");
    assert_eq!(platform.api.get("/apps/phased").body["current_release"], 3);
    let (status, body) = platform.get("phased", "/").expect("the old release serves");
    assert_eq!(status, 200);
    assert!(body.contains("Hello from a static site on Ouro"), "{body}");

    // Heroku's Build API: a source tar.gz POSTed builds like a push, in the background; one
    // build of an app at a time.
    let token = platform.api.token.clone();
    assert_eq!(platform.api.post("/apps", serde_json::json!({"name": "tarred"})).status, 201);
    let source = ouro_tests::tar_gz(&sample_app("static-site"));
    let path = "/apps/tarred/builds?version=v1.2";
    let (status, body) = platform.api.raw("POST", path, Some(&token), Some(&source), "application/gzip");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let build: Value = serde_json::from_slice(&body).expect("a build");
    assert_eq!((build["status"].as_str(), build["source_blob"]["version"].as_str()), (Some("pending"), Some("v1.2")));
    let (status, _) = platform.api.raw("POST", path, Some(&token), Some(&source), "application/gzip");
    assert_eq!(status, 409, "a second build while one runs");
    let id = build["id"].as_str().expect("id").to_string();
    platform.wait_until(Duration::from_secs(120), "the API build ends", || {
        platform.api.get(&format!("/apps/tarred/builds/{id}")).body["status"] != "pending"
    });
    let build = platform.api.get(&format!("/apps/tarred/builds/{id}")).body;
    assert_eq!(build["status"], "succeeded", "{build}");
    assert!(build["output"].as_str().unwrap_or_default().contains("-----> Static app detected"), "{build}");
    wait_for_page(&platform, "tarred", "Hello from a static site on Ouro");

    // A link out of the tree in the pushed source is refused by the builder, with the reason.
    let repo = Repo::new(&cli);
    add_sample(&repo, "static-site");
    std::os::unix::fs::symlink("/etc/passwd", repo.path().join("leak")).expect("symlink");
    repo.ok(&["add", "-A"]);
    repo.ok(&["commit", "-q", "-m", "a link out of the tree"]);
    ok(&cli.run_in(repo.path(), &["apps:create", "leaky"]));
    let out = repo.git(&["push", "ouro", "main"]);
    let said = stderr(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("cannot be unpacked safely"), "{said}");

    // A slug over the limit (8 MB here; node's is ~31 MB) is refused with its size. Built
    // through the Build API, whose running build shows its log so far (node's cold build
    // downloads from the Debian mirror for several seconds).
    assert_eq!(platform.api.post("/apps", serde_json::json!({"name": "heavy"})).status, 201);
    let source = ouro_tests::tar_gz(&sample_app("node-nodeps"));
    let (status, body) =
        platform.api.raw("POST", "/apps/heavy/builds", Some(&token), Some(&source), "application/gzip");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let id = serde_json::from_slice::<Value>(&body).expect("a build")["id"].as_str().expect("id").to_string();
    let build = || platform.api.get(&format!("/apps/heavy/builds/{id}")).body;
    platform.wait_until(Duration::from_secs(60), "the running build shows its log so far", || {
        let b = build();
        b["status"] == "pending" && b["output"].as_str().is_some_and(|o| o.contains("-----> Node.js app detected"))
    });
    platform.wait_until(Duration::from_secs(180), "the build ends", || build()["status"] != "pending");
    let ended = build();
    assert_eq!(ended["status"], "failed");
    assert!(ended["output"].as_str().unwrap_or_default().contains("is too large (max is 7.6M)"), "{ended}");
    assert_eq!(platform.api.get("/apps/heavy").body["current_release"], 1);

    // A third-party buildpack by URL, chained before the shipped static one. Apps built before
    // (node filled its cache with Debian packages) leave nothing in this app's cache.
    let port = serve_file(third_party_buildpack(), 4);
    let repo = Repo::new(&cli);
    repo.commit("README", "no index.html: the first buildpack writes it\n");
    // `.slugignore` paths are removed before the buildpacks run.
    std::fs::write(repo.path().join("design.psd"), "big\n").expect("write");
    repo.commit(".slugignore", "# not for the slug\n*.psd\n");
    ok(&cli.run_in(repo.path(), &["apps:create", "chained"]));
    ok(&cli.run_in(repo.path(), &["config:set", "GREETING=bonjour"]));
    ok(&cli.run_in(repo.path(), &["buildpacks:set", &format!("http://host.docker.internal:{port}/greeter.tgz")]));
    ok(&cli.run_in(repo.path(), &["buildpacks:add", "static"]));
    let said = push(&repo, &["main"]);
    assert!(said.contains("-----> Using buildpacks: http://host.docker.internal:"), "{said}");
    assert!(said.contains("-----> Greeter app detected") && said.contains("-----> Static app detected"), "{said}");
    assert!(said.contains("Greeting from /tmp/"), "ENV_DIR is the builder's temp dir: {said}");
    // Config came through ENV_DIR; the buildpack saw no OURO_* variable and an empty cache.
    wait_for_page(&platform, "chained", "<p>bonjour tokens=0 cache=0</p>");
    assert!(said.contains("-----> Removed 1 path named in .slugignore"), "{said}");
    assert_eq!(platform.get("chained", "/design.psd").expect("answers").0, 404);
    assert_eq!(platform.get("chained", "/README").expect("answers").0, 200);
}

/// A PostgreSQL server built from Debian's packages by the `postgresql-server` buildpack and run
/// as a service app: password auth over TCP, rows kept on its volume across a restart,
/// reachable from the app it joins.
#[test]
fn postgresql_server_app_keeps_its_rows_across_restarts() {
    let platform = Platform::start();
    let cli = logged_in(&platform.api);
    let shop = platform.create_and_deploy(
        "shop",
        &sample_app("python-web"),
        serde_json::json!({"web": "python3 /app/web.py"}),
    );
    platform.wait_until(Duration::from_secs(120), "shop is up", || platform.up("shop", "web", shop) == 1);

    let repo = Repo::new(&cli);
    repo.commit(".ouro-postgresql", "PostgreSQL 17, from Debian's packages\n");
    ok(&cli.run_in(repo.path(), &["apps:create", "pgvault"]));
    ok(&cli
        .run_in(repo.path(), &["config:set", "POSTGRES_USER=ouro", "POSTGRES_PASSWORD=s3cret-Pw", "POSTGRES_DB=shop"]));
    ok(&cli.run_in(repo.path(), &["buildpacks:set", "postgresql-server"]));
    let service = serde_json::json!({"mounts": [{"volume": "pgvault-data", "path": "/data"}], "joins": ["shop"]});
    let token = platform.api.token.clone();
    let set = platform.api.call("PUT", "/apps/pgvault/service", Some(&token), Some(service.to_string().as_bytes()));
    assert_eq!(set.status, 200, "{:?}", set.body);
    let said = push(&repo, &["main"]);
    assert!(said.contains("-----> PostgreSQL server app detected"), "{said}");
    assert!(said.contains("postgres (PostgreSQL) 17."), "{said}");
    let version = platform.api.get("/apps/pgvault").body["current_release"].as_i64().expect("release");
    platform.scale("pgvault", "server", 1);
    let psql = |sql: &str, password: &str| {
        let script = format!(
            "export LD_LIBRARY_PATH=/app/.pg/usr/lib/x86_64-linux-gnu; PGPASSWORD='{password}' \
             /app/.pg/usr/lib/postgresql/17/bin/psql -h 127.0.0.1 -p 5000 -U ouro -d shop -tA -v ON_ERROR_STOP=1 \
             -c \"{sql}\" 2>&1"
        );
        platform.exec("pgvault", "server.1", &script)
    };
    platform.wait_until(Duration::from_secs(120), "the server accepts connections", || {
        platform.up("pgvault", "server", version) == 1 && psql("SELECT 1", "s3cret-Pw").0 == 0
    });
    let (code, out) = psql("CREATE TABLE orders (id int); INSERT INTO orders VALUES (42)", "s3cret-Pw");
    assert_eq!(code, 0, "{out}");
    let (code, out) = psql("SELECT 1", "wrong");
    assert_ne!(code, 0);
    assert!(out.contains("password authentication failed"), "{out}");
    // The app it joins reaches it by name.
    let (code, out) = platform.exec("shop", "web.1", "timeout 5 bash -c 'echo > /dev/tcp/pgvault/5000' 2>&1");
    assert_eq!(code, 0, "{out}");

    // A restart: a new container, the same data.
    let server = || {
        let running = platform.containers().into_iter();
        running.filter(|(_, (app, name, _, up))| app == "pgvault" && name == "server.1" && *up).map(|(id, _)| id).next()
    };
    let before = server().expect("a running server");
    assert_eq!(platform.api.delete("/apps/pgvault/dynos").status, 200);
    platform.wait_until(Duration::from_secs(120), "a new server container has the row", || {
        server().is_some_and(|id| id != before) && psql("SELECT id FROM orders", "s3cret-Pw") == (0, "42\n".to_string())
    });
}
