//! Add-ons end to end, with real servers: the API deploys its PostgreSQL and Redis providers as
//! system apps (built by Ouro's own builder from `addons/`), `ouro addons:create` has them make
//! a server app (Debian's PostgreSQL 17 / Redis on a volume), and an app pushed with git reads
//! and writes through the router with `DATABASE_URL` and `REDIS_URL`. Needs Docker, PyPI (psycopg,
//! redis) and the Debian mirror, and `psql` and `redis-cli` on this machine.

use std::time::Duration;

use ouro_tests::platform::{Platform, create_addon, page, push, sample_app, sample_repo};
use ouro_tests::{json, logged_in, ok, stderr, stdout};

/// Waits until every web dyno of `app` runs its current release.
fn rolled(platform: &Platform, app: &str) -> i64 {
    let mut version = 0;
    platform.wait_until(Duration::from_secs(120), &format!("{app} runs its current release"), || {
        version = platform.api.get(&format!("/apps/{app}")).body["current_release"].as_i64().unwrap_or(0);
        let dynos = platform.dynos(app);
        let web: Vec<_> = dynos.iter().filter(|d| d["type"] == "web").collect();
        !web.is_empty() && web.iter().all(|d| d["release"] == version && d["state"] == "up")
    });
    version
}

fn config(platform: &Platform, app: &str) -> serde_json::Value {
    platform.api.get(&format!("/apps/{app}/config-vars")).body
}

/// Whether a web dyno of `app` can open a TCP connection to `host:5000`.
fn reaches(platform: &Platform, app: &str, host: &str) -> bool {
    let script = format!("timeout 5 bash -c 'echo > /dev/tcp/{host}/5000' 2>&1");
    platform.exec(app, "web.1", &script).0 == 0
}

/// The user, password and database of a `postgres://USER:PASSWORD@HOST:PORT/DB` URL.
fn pg_url_parts(url: &str) -> (String, String, String) {
    let rest = url.strip_prefix("postgres://").expect("a postgres:// URL");
    let (credentials, rest) = rest.split_once('@').expect("credentials");
    let (user, password) = credentials.split_once(':').expect("a password");
    let db = rest.rsplit('/').next().expect("a database");
    (user.to_string(), password.to_string(), db.to_string())
}

#[test]
fn postgresql_and_redis_addons_serve_a_pushed_app_and_keep_their_data() {
    let platform = Platform::start_with_api(&[("OURO_ADDON_PROVIDERS", "postgresql,redis")], &[]);
    let cli = logged_in(&platform.api);
    let repo = sample_repo(&platform, &cli, "shop", "python-addons");
    push(&repo, &["main"]);
    page(&platform, "shop", "/", "DATABASE_URL=unset REDIS_URL=unset");
    platform.wait_for_provider("postgresql");
    platform.wait_for_provider("redis");

    // Provisioning: asynchronous, waited for, then the vars are set in a new release.
    let before = platform.api.get("/apps/shop").body["current_release"].as_i64().expect("release");
    let database = create_addon(&cli, "postgresql", "shop");
    let cache = create_addon(&cli, "redis", "shop");
    ok(&cli.run(&["addons:wait", "-a", "shop"]));
    let vars = config(&platform, "shop");
    let url = vars["DATABASE_URL"].as_str().expect("DATABASE_URL").to_string();
    assert!(url.starts_with("postgres://") && url.contains(&format!("@{database}:5000/")), "{url}");
    assert!(vars["REDIS_URL"].as_str().expect("REDIS_URL").contains(&format!("@{cache}:5000")), "{vars}");
    assert!(rolled(&platform, "shop") > before);
    let listed = ok(&cli.run(&["addons", "-a", "shop"]));
    assert!(listed.contains(&database) && listed.contains(&cache), "{listed}");

    // The app writes and reads through the router.
    page(&platform, "shop", "/pg/add?item=apple", "items: apple");
    page(&platform, "shop", "/pg/add?item=pear", "items: apple,pear");
    page(&platform, "shop", "/redis/incr", "counter: 1");
    page(&platform, "shop", "/redis/incr", "counter: 2");

    // `pg:psql` and `redis:cli` run the real clients through the API's tunnel.
    let out = cli.run(&["pg:psql", "-a", "shop", "-c", "SELECT string_agg(name, '+' ORDER BY id) FROM items"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("apple+pear"), "{}", stdout(&out));
    let out = cli.run(&["redis:cli", "-a", "shop", "--", "GET", "counter"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "2");

    // A tunnel left open closes within seconds of its token's revocation: `pg:psql` in a
    // long query ends.
    let made = ok(&cli.run(&["authorizations:create", "-d", "psql", "--json"]));
    let made: serde_json::Value = serde_json::from_str(&made).expect("JSON");
    let holder = ouro_tests::Cli::new(&platform.api);
    ok(&holder.login(made["access_token"]["token"].as_str().expect("token")));
    let mut held = holder
        .command(&["pg:psql", "-a", "shop", "-c", "SELECT pg_sleep(120)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ouro pg:psql");
    std::thread::sleep(Duration::from_secs(3));
    assert!(held.try_wait().expect("wait").is_none(), "pg:psql holds its query while its token is good");
    ok(&cli.run(&["authorizations:revoke", made["id"].as_str().expect("id")]));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while held.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ended = held.try_wait().expect("wait");
    let _ = held.kill();
    let _ = held.wait();
    assert!(ended.is_some_and(|status| !status.success()), "pg:psql went on after its token was revoked");

    // A collaborator (another user, `access:add`) pushes, runs one-offs, reads the logs and
    // opens psql, all over HTTPS; within seconds of the access's removal, what they hold
    // open ends and a push is refused.
    let added = ok(&cli.run(&["users:add", "carol@example.com"]));
    let code = added.split("--invitation ").nth(1).expect("an invitation code").trim().to_string();
    let carol = ouro_tests::Cli::new(&platform.api);
    ok(&carol.run_input(&carol.login_args(&["--invitation", &code]), "carol's long password\n"));
    ok(&cli.run(&["access:add", "carol@example.com", "-a", "shop"]));
    let theirs = ouro_tests::Repo::new(&carol);
    ok(&carol.run_in(theirs.path(), &["git:remote", "-a", "shop"]));
    theirs.ok(&["pull", "-q", "ouro", "main"]);
    std::fs::write(theirs.path().join("CHANGES"), "carol was here\n").expect("write");
    theirs.ok(&["add", "CHANGES"]);
    theirs.ok(&["commit", "-q", "-m", "carol's change"]);
    push(&theirs, &["main"]);
    rolled(&platform, "shop");
    let out = carol.run(&["run", "-a", "shop", "--", "cat", "CHANGES"]);
    assert!(stdout(&out).contains("carol was here"), "{}{}", stdout(&out), stderr(&out));
    let out = carol.run(&["pg:psql", "-a", "shop", "-c", "SELECT count(*) FROM items"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hold = |args: &[&str]| {
        carol
            .command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ouro runs")
    };
    let mut held = [
        ("pg:psql", hold(&["pg:psql", "-a", "shop", "-c", "SELECT pg_sleep(120)"])),
        ("run", hold(&["run", "-a", "shop", "--", "sleep", "120"])),
        ("logs --tail", hold(&["logs", "--tail", "-a", "shop"])),
    ];
    std::thread::sleep(Duration::from_secs(5));
    for (what, child) in &mut held {
        assert!(child.try_wait().expect("wait").is_none(), "{what} holds on while the access lasts");
    }
    ok(&cli.run(&["access:remove", "carol@example.com", "-a", "shop"]));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while held.iter_mut().any(|(_, c)| c.try_wait().expect("wait").is_none()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (what, child) in &mut held {
        let ended = child.try_wait().expect("wait");
        let _ = child.kill();
        let _ = child.wait();
        assert!(ended.is_some(), "{what} went on after the access was removed");
    }
    std::fs::write(theirs.path().join("CHANGES"), "carol again\n").expect("write");
    theirs.ok(&["commit", "-q", "-am", "refused"]);
    let refused = theirs.git(&["push", "ouro", "main"]);
    assert!(!refused.status.success(), "a push after the access's removal");
    assert!(stderr(&refused).contains("403") || stderr(&refused).contains("access"), "{}", stderr(&refused));

    // Backups: capture, change, restore.
    let out = cli.run(&["pg:backups:capture", "-a", "shop"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success() && said.contains("b001"), "{said}");
    assert!(ok(&cli.run(&["pg:backups", "-a", "shop"])).contains("b001"));
    page(&platform, "shop", "/pg/add?item=plum", "items: apple,pear,plum");
    let refused = cli.run(&["pg:backups:restore", "b001", "-a", "shop"]);
    assert!(!refused.status.success());
    page(&platform, "shop", "/pg", "items: apple,pear,plum");
    ok(&cli.run(&["pg:backups:restore", "b001", "-a", "shop", "--confirm", "shop"]));
    page(&platform, "shop", "/pg", "items: apple,pear\n");

    // `pg:credentials:rotate`: refused without --confirm; then the server restarts with a new
    // password for the app's role, shop gets the new URL in a release, and the old password is
    // refused by the server while the new one reads the data.
    let refused = cli.run(&["pg:credentials:rotate", "-a", "shop"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--confirm shop"), "{}", stderr(&refused));
    assert_eq!(config(&platform, "shop")["DATABASE_URL"].as_str(), Some(url.as_str()));
    let before = platform.api.get("/apps/shop").body["current_release"].as_i64().expect("release");
    let out = ok(&cli.run(&["pg:credentials:rotate", "-a", "shop", "--confirm", "shop"]));
    assert!(out.contains(&format!("Rotating the credentials of {database}... done")), "{out}");
    let rotated = config(&platform, "shop")["DATABASE_URL"].as_str().expect("DATABASE_URL").to_string();
    let (old_user, old_password, db) = pg_url_parts(&url);
    let (new_user, new_password, new_db) = pg_url_parts(&rotated);
    assert_eq!((&new_user, &new_db), (&old_user, &db), "{rotated}");
    assert_ne!(new_password, old_password);
    assert!(rolled(&platform, "shop") > before);
    page(&platform, "shop", "/pg", "items: apple,pear\n");
    let server_psql = |password: &str| {
        let script = format!(
            "LD_LIBRARY_PATH=/app/.pg/usr/lib/x86_64-linux-gnu PGPASSWORD={password} timeout 10 \
             /app/.pg/usr/lib/postgresql/17/bin/psql 'host=127.0.0.1 port=5000 user={new_user} dbname={db} \
             sslmode=disable' -X -tAc 'SELECT count(*) FROM items' 2>&1"
        );
        platform.exec(&database, "server.1", &script)
    };
    let (code, said) = server_psql(&old_password);
    assert!(code != 0 && said.contains("password authentication failed"), "the old password: {said}");
    let (code, said) = server_psql(&new_password);
    assert_eq!((code, said.trim()), (0, "2"), "the new password");
    let url = rotated;

    // New releases of the servers (a config change: the old dyno stops before the new one
    // starts on the volume) and of the providers, then restarts of all four: the data stays.
    for app in [database.as_str(), cache.as_str(), "ouro-postgresql", "ouro-redis"] {
        let patched = platform.api.patch(&format!("/apps/{app}/config-vars"), json!({"REDEPLOYED": "yes"}));
        assert_eq!(patched.status, 200, "{app}: {:?}", patched.body);
    }
    for (app, process_type) in [(&database, "server"), (&cache, "server")] {
        let version = platform.api.get(&format!("/apps/{app}")).body["current_release"].as_i64().expect("release");
        platform.wait_until(Duration::from_secs(120), &format!("{app} runs v{version}"), || {
            platform.up(app, process_type, version) == 1
        });
    }
    page(&platform, "shop", "/pg", "items: apple,pear\n");
    page(&platform, "shop", "/redis", "counter: 2");
    for app in ["ouro-postgresql", "ouro-redis", &database, &cache] {
        assert_eq!(platform.api.delete(&format!("/apps/{app}/dynos")).status, 200, "restart {app}");
    }
    page(&platform, "shop", "/pg", "items: apple,pear\n");
    page(&platform, "shop", "/redis", "counter: 2");
    // The tunnel goes through the restarted provider: once its new dyno is up.
    let mut said = String::new();
    platform.wait_until(Duration::from_secs(60), "pg:psql counts the rows", || {
        let out = cli.run(&["pg:psql", "-a", "shop", "-c", "SELECT count(*) FROM items"]);
        said = format!("{}{}", stdout(&out), stderr(&out));
        out.status.success()
    });
    assert!(said.lines().any(|l| l.trim() == "2"), "{said}");

    // The chaos monkey's hand (`ouro chaos --targets addons`): the runner's `POST /chaos/kill`,
    // behind its secret, SIGKILLs one of the add-on servers on shop's network; the server comes
    // back in a new container with its data.
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build(),
    );
    let kill_url = format!("{}/chaos/kill", platform.runner_url);
    let body = json!({"target": "addons", "app": "shop"}).to_string();
    let refused = agent.post(&kill_url).header("Content-Type", "application/json").send(body.as_bytes()).expect("POST");
    assert_eq!(refused.status().as_u16(), 401, "no secret, no kill");
    let kill = |body: &str| {
        let mut answer = agent
            .post(&kill_url)
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {}", platform.runner_secret()))
            .send(body.as_bytes())
            .expect("POST /chaos/kill");
        (answer.status().as_u16(), answer.body_mut().read_json::<serde_json::Value>().unwrap_or_default())
    };
    let (status, unknown) = kill(&json!({"target": "database", "app": "shop"}).to_string());
    assert_eq!(status, 422, "{unknown}");
    let (status, killed) = kill(&body);
    assert_eq!(status, 202, "{killed}");
    let server = killed["app"].as_str().expect("the killed server's app").to_string();
    assert!(server == database || server == cache, "{killed}");
    assert_eq!(killed["dyno"], "server.1");
    let container = killed["container"].as_str().expect("its container").to_string();
    platform.wait_until(Duration::from_secs(120), "the killed server runs again in a new container", || {
        platform
            .containers()
            .iter()
            .any(|(id, (app, name, _, running))| *app == server && name == "server.1" && *running && *id != container)
    });
    page(&platform, "shop", "/pg", "items: apple,pear\n");
    page(&platform, "shop", "/redis", "counter: 2");

    // Another app cannot reach the servers, by name or by address, even with the URLs.
    let other_dir = sample_app("python-web");
    platform.create_and_deploy("other", &other_dir, serde_json::json!({"web": "python3 /app/web.py"}));
    rolled(&platform, "other");
    let (_, address) = platform.exec("shop", "web.1", &format!("getent hosts {database} | cut -d' ' -f1"));
    let address = address.trim().to_string();
    assert!(!address.is_empty());
    assert!(reaches(&platform, "shop", &database));
    assert!(!reaches(&platform, "other", &database));
    assert!(!reaches(&platform, "other", &address));
    assert!(!reaches(&platform, "other", &cache));

    // Attached to the other app, it reaches it; detached, its var goes in a new release and the
    // server is out of its reach again.
    let attached = ok(&cli.run(&["addons:attach", &database, "-a", "other"]));
    assert!(attached.contains("DATABASE"), "{attached}");
    assert_eq!(config(&platform, "other")["DATABASE_URL"].as_str(), Some(url.as_str()));
    rolled(&platform, "other");
    // Only its owning app rotates it: its owners choose when the server restarts.
    let refused = cli.run(&["pg:credentials:rotate", "-a", "other", "--confirm", "other"]);
    assert!(!refused.status.success() && stderr(&refused).contains("belongs to another app"), "{}", stderr(&refused));
    assert_eq!(config(&platform, "other")["DATABASE_URL"].as_str(), Some(url.as_str()));
    platform
        .wait_until(Duration::from_secs(30), "other reaches the database", || reaches(&platform, "other", &database));
    let before = platform.api.get("/apps/other").body["current_release"].as_i64().expect("release");
    ok(&cli.run(&["addons:detach", "DATABASE", "-a", "other"]));
    assert!(config(&platform, "other").get("DATABASE_URL").is_none());
    assert_eq!(platform.api.get("/apps/other").body["current_release"].as_i64(), Some(before + 1));
    platform.wait_until(Duration::from_secs(30), "other no longer reaches the database", || {
        !reaches(&platform, "other", &database)
    });

    // A provider that is down: a clear error, and nothing made.
    platform.scale("ouro-redis", "web", 0);
    platform.wait_until(Duration::from_secs(60), "the redis provider is down", || {
        platform.dynos("ouro-redis").iter().all(|d| d["type"] != "web")
    });
    let apps_before = platform.api.get("/apps").body.as_array().map(Vec::len);
    let out = cli.run(&["addons:create", "redis", "-a", "other"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("provider `redis`"), "{}", stderr(&out));
    assert_eq!(platform.api.get("/apps/other/addons").body, json!([]));
    assert!(config(&platform, "other").get("REDIS_URL").is_none());
    assert_eq!(platform.api.get("/apps").body.as_array().map(Vec::len), apps_before, "no orphan server app");

    // Destroyed: the vars go, and the server app with its data; deleting the app that owns
    // an add-on deprovisions it too.
    ok(&cli.run(&["addons:destroy", &database, "-a", "shop", "--confirm", &database]));
    assert!(config(&platform, "shop").get("DATABASE_URL").is_none());
    assert_eq!(platform.api.get(&format!("/apps/{database}")).status, 404);
    platform.scale("ouro-redis", "web", 1);
    let version = platform.api.get("/apps/ouro-redis").body["current_release"].as_i64().expect("release");
    platform.wait_until(Duration::from_secs(120), "the redis provider is back", || {
        platform.up("ouro-redis", "web", version) == 1
    });
    ok(&cli.run(&["apps:destroy", "-a", "shop", "--confirm", "shop"]));
    assert_eq!(platform.api.get(&format!("/apps/{cache}")).status, 404);
}
