//! The `ouro` binary, driven as a person or a script would, against a real `ouro-api`.

use std::process::Command;

use ouro_tests::{Api, Backend, Cli, Value, ok, stderr, stdout};

fn logged_in(api: &Api) -> Cli {
    let cli = Cli::new(api);
    let out = cli.login(&api.token);
    assert!(ok(&out).contains("Logged in as admin@ouro.local"), "{}", stdout(&out));
    cli
}

fn json(cli: &Cli, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = cli.run(&args);
    serde_json::from_str(&ok(&out)).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&out)))
}

/// Asserts a failure with this exit code and exactly one line on stderr.
fn fails(out: &std::process::Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(out), stderr(out));
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line on stderr: {err:?}");
    assert!(err.starts_with("ouro: "), "{err:?}");
    err
}

/// The walkthrough of the README, on both backends.
fn new_user_walkthrough(backend: Backend) {
    let api = Api::start(backend);
    let cli = logged_in(&api);

    let created = ok(&cli.run(&["apps:create", "demo"]));
    assert!(created.contains("demo"), "{created}");
    assert!(created.contains("http://demo.localhost/"), "{created}");
    assert!(created.contains(&format!("{}/demo.git", cli.api_url)), "{created}");

    let set = ok(&cli.run(&["config:set", "A=1", "-a", "demo"]));
    assert!(set.contains("done, v2"), "{set}");
    let releases = ok(&cli.run(&["releases", "-a", "demo"]));
    let first = releases.lines().find(|l| l.starts_with("v2")).unwrap_or_else(|| panic!("no v2 row: {releases}"));
    assert!(first.contains("Set A config vars") && first.contains("admin@ouro.local"), "{releases}");

    let rollback = ok(&cli.run(&["releases:rollback", "v1", "-a", "demo"]));
    assert!(rollback.contains("v3"), "{rollback}");
    let releases = ok(&cli.run(&["releases", "-a", "demo"]));
    assert!(releases.lines().any(|l| l.starts_with("v3") && l.contains("Rollback to v1")), "{releases}");
    // Newest first, as `heroku releases` shows them.
    let order: Vec<&str> =
        releases.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.starts_with('v')).collect();
    assert_eq!(order, ["v3", "v2", "v1"], "{releases}");

    let scaled = ok(&cli.run(&["ps:scale", "web=2", "-a", "demo"]));
    assert!(scaled.contains("web at 2:basic"), "{scaled}");
    let ps = ok(&cli.run(&["ps", "-a", "demo"]));
    let web = ps.lines().find(|l| l.trim_start().starts_with("web")).unwrap_or_else(|| panic!("no web row: {ps}"));
    assert!(web.split_whitespace().any(|w| w == "2") && web.contains("basic"), "{ps}");
    // What the CLI shows is what the API holds.
    let formation = api.get("/apps/demo/formation").body;
    assert_eq!((formation[0]["type"].as_str(), formation[0]["quantity"].as_i64()), (Some("web"), Some(2)));
}

#[test]
fn walkthrough_on_sqlite() {
    new_user_walkthrough(Backend::Sqlite);
}

#[test]
fn walkthrough_on_postgres() {
    new_user_walkthrough(Backend::postgres());
}

#[test]
fn json_output_is_the_api_resource() {
    let api = Api::start(Backend::Sqlite);
    let cli = logged_in(&api);
    let app = json(&cli, &["apps:create", "jsonapp"]);
    assert_eq!(app["name"], "jsonapp");
    ok(&cli.run(&["config:set", "URL=postgres://u:p@h/db?x=1", "EMPTY=", "-a", "jsonapp"]));
    let config = json(&cli, &["config", "-a", "jsonapp"]);
    assert_eq!(config, serde_json::json!({"URL": "postgres://u:p@h/db?x=1", "EMPTY": ""}));
    assert_eq!(ok(&cli.run(&["config:get", "URL", "-a", "jsonapp"])).trim_end(), "postgres://u:p@h/db?x=1");
    ok(&cli.run(&["config:unset", "EMPTY", "-a", "jsonapp"]));
    let releases = json(&cli, &["releases", "-a", "jsonapp"]);
    let descriptions: Vec<&str> =
        releases.as_array().unwrap().iter().map(|r| r["description"].as_str().unwrap()).collect();
    assert!(descriptions.contains(&"Remove EMPTY config vars"), "{descriptions:?}");
    let apps = json(&cli, &["apps"]);
    assert_eq!(apps.as_array().unwrap().len(), 1);
    let info = json(&cli, &["releases:info", "v2", "-a", "jsonapp"]);
    assert_eq!(info["version"], 2);
}

#[test]
fn scaling_forms() {
    let api = Api::start(Backend::Sqlite);
    let cli = logged_in(&api);
    ok(&cli.run(&["apps:create", "scaly"]));
    ok(&cli.run(&["ps:scale", "web=2", "worker=1:standard-2x", "-a", "scaly"]));
    ok(&cli.run(&["ps:scale", "web+3", "worker-1", "-a", "scaly"]));
    let formation = api.get("/apps/scaly/formation").body;
    let got: Vec<(String, i64, String)> = formation
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (f["type"].as_str().unwrap().into(), f["quantity"].as_i64().unwrap(), f["size"].as_str().unwrap().into())
        })
        .collect();
    assert_eq!(got, vec![("web".into(), 5, "basic".into()), ("worker".into(), 0, "standard-2x".into())]);
    ok(&cli.run(&["ps:scale", "web:performance", "-a", "scaly"]));
    assert_eq!(api.get("/apps/scaly/formation/web").body["size"], "performance");
    assert_eq!(api.get("/apps/scaly/formation/web").body["quantity"], 5);
}

#[test]
fn errors_are_one_line_with_exit_codes_scripts_can_trust() {
    let api = Api::start(Backend::Sqlite);
    let logged_out = Cli::new(&api);
    let err = fails(&logged_out.run(&["apps"]), 1);
    assert!(err.contains("ouro login"), "{err}");
    let bad_login = logged_out.login("ouro_nope_nope");
    fails(&bad_login, 1);

    let cli = logged_in(&api);
    ok(&cli.run(&["apps:create", "keep"]));
    let err = fails(&cli.run(&["apps:create", "Bad_Name"]), 1);
    assert!(err.contains("invalid"), "{err}");
    fails(&cli.run(&["apps:create", "keep"]), 1);
    fails(&cli.run(&["config:set", "1BAD=x", "-a", "keep"]), 1);
    // Usage errors are caught before any request: exit 2.
    fails(&cli.run(&["config:set", "NOEQUALS", "-a", "keep"]), 2);
    fails(&cli.run(&["ps:scale", "web=lots", "-a", "keep"]), 2);
    fails(&cli.run(&["ps:scale", "web=-1", "-a", "keep"]), 2);
    assert_eq!(cli.run(&["no-such-command"]).status.code(), Some(2));
    fails(&cli.run(&["ps:scale", "web=2:huge", "-a", "keep"]), 2);
    fails(&cli.run(&["releases:rollback", "v9", "-a", "keep"]), 1);
    fails(&cli.run(&["apps:info", "-a", "missing"]), 1);
    fails(&cli.run(&["config:get", "UNSET", "-a", "keep"]), 1);
    // No app given and no git remote: a clear error, not a guess.
    let nowhere = tempfile::tempdir().unwrap();
    let err = fails(&cli.run_in(nowhere.path(), &["config"]), 2);
    assert!(err.contains("-a"), "{err}");

    // Destroy needs the name confirmed.
    fails(&cli.run(&["apps:destroy", "-a", "keep"]), 2);
    fails(&cli.run(&["apps:destroy", "-a", "keep", "--confirm", "other"]), 2);
    assert_eq!(api.get("/apps/keep").status, 200, "nothing was destroyed");
    ok(&cli.run(&["apps:destroy", "-a", "keep", "--confirm", "keep"]));
    assert_eq!(api.get("/apps/keep").status, 404);

    // Nothing above changed anything but what succeeded.
    let apps = api.get("/apps").body;
    assert_eq!(apps, serde_json::json!([]));
    let api_gone = cli.api_url.clone();
    drop(api);
    let err = fails(&cli.run(&["apps"]), 1);
    assert!(err.contains(&api_gone), "{err}");
}

#[test]
fn app_comes_from_the_ouro_git_remote() {
    let api = Api::start(Backend::Sqlite);
    let cli = logged_in(&api);
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).current_dir(repo.path()).output().expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    // apps:create inside a work tree adds the `ouro` remote, as `heroku create` adds `heroku`.
    ok(&cli.run_in(repo.path(), &["apps:create", "from-remote"]));
    assert_eq!(git(&["remote", "get-url", "ouro"]), format!("{}/from-remote.git", cli.api_url));
    // git trusts the API's certificate authority for that URL, as the CLI does.
    let ca = git(&["config", &format!("http.{}.sslCAInfo", cli.api_url)]);
    assert_eq!(std::fs::read_to_string(&ca).unwrap(), std::fs::read_to_string(&cli.ca_file).unwrap());
    ok(&cli.run_in(repo.path(), &["config:set", "FROM=remote"]));
    assert_eq!(api.get("/apps/from-remote/config-vars").body["FROM"], "remote");
    // -a wins over the remote.
    ok(&cli.run(&["apps:create", "explicit"]));
    ok(&cli.run_in(repo.path(), &["config:set", "X=1", "-a", "explicit"]));
    assert_eq!(api.get("/apps/explicit/config-vars").body["X"], "1");
    assert_eq!(api.get("/apps/from-remote/config-vars").body.get("X"), None);
}

#[test]
fn credentials_are_private_and_env_overrides_them() {
    let api = Api::start(Backend::Sqlite);
    let cli = logged_in(&api);
    let file = cli.config_dir.path().join("credentials.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored["token"], api.token.as_str());
    // A wrong token in the environment wins over the good one on disk.
    let out = Command::new(ouro_tests::binary("ouro"))
        .arg("apps")
        .env("OURO_CONFIG_DIR", cli.config_dir.path())
        .env("OURO_API_TOKEN", "ouro_0000_0000")
        .output()
        .unwrap();
    fails(&out, 1);

    // Credentials never cross a network in clear unless the user says so: an http:// API that
    // is not on this machine is refused before anything is sent (192.0.2.0/24 is routed nowhere).
    let remote = "http://192.0.2.7:7700";
    let out = cli.command(&["apps"]).env("OURO_API_URL", remote).output().unwrap();
    let err = fails(&out, 1);
    assert!(err.contains("refusing to send your credentials over plain HTTP to 192.0.2.7"), "{err}");
    assert!(err.contains("OURO_ALLOW_PLAIN_HTTP=1"), "{err}");
    let err = fails(&cli.run(&["login", "--api", remote, "--token", &api.token]), 1);
    assert!(err.contains("over plain HTTP"), "{err}");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored["api_url"], cli.api_url.as_str(), "the refused login changed nothing");
}

#[test]
fn deploy_a_directory_and_manage_domains_and_restarts() {
    let api = Api::start(Backend::Sqlite);
    let cli = logged_in(&api);
    ok(&cli.run(&["apps:create", "dirapp"]));
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("Procfile"), "# comment\nweb: python3 web.py\nworker: python3 work.py\n").unwrap();
    std::fs::write(site.path().join("web.py"), "print('hi')\n").unwrap();
    std::fs::create_dir(site.path().join("tmp")).unwrap();
    std::fs::write(site.path().join("tmp/big"), "ignored").unwrap();
    std::fs::write(site.path().join(".slugignore"), "tmp\n").unwrap();
    let dir = site.path().to_str().unwrap();

    let out = ok(&cli.run(&["deploy", dir, "-a", "dirapp"]));
    assert!(out.contains("done, v2"), "{out}");
    let release = api.get("/apps/dirapp/releases/v2").body;
    let slug = api.get(&format!("/apps/dirapp/slugs/{}", release["slug"]["id"].as_str().unwrap())).body;
    assert_eq!(slug["process_types"], serde_json::json!({"web": "python3 web.py", "worker": "python3 work.py"}));
    // The slug holds ./app/... without the ignored paths.
    let (_, tarball) = api.raw(
        "GET",
        &format!("/apps/dirapp/slugs/{}/blob", slug["id"].as_str().unwrap()),
        Some(&api.token),
        None,
        "",
    );
    let listing = {
        let mut child = Command::new("tar")
            .args(["tzf", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &tarball).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    assert!(listing.lines().any(|l| l == "./app/web.py"), "{listing}");
    assert!(!listing.contains("tmp/big"), "{listing}");
    // Same directory, same bytes: the second deploy's slug has the same checksum.
    ok(&cli.run(&["deploy", dir, "-a", "dirapp"]));
    let v3 = api.get("/apps/dirapp/releases/v3").body;
    let again = api.get(&format!("/apps/dirapp/slugs/{}", v3["slug"]["id"].as_str().unwrap())).body;
    assert_eq!(again["checksum"], slug["checksum"]);
    std::fs::write(site.path().join("Procfile"), "web python3 web.py\n").unwrap();
    let err = fails(&cli.run(&["deploy", dir, "-a", "dirapp"]), 2);
    assert!(err.contains("line 1"), "{err}");

    ok(&cli.run(&["domains:add", "WWW.Example.org", "-a", "dirapp"]));
    let domains = ok(&cli.run(&["domains", "-a", "dirapp"]));
    assert!(domains.contains("dirapp.localhost") && domains.contains("www.example.org"), "{domains}");
    fails(&cli.run(&["domains:add", "not a host", "-a", "dirapp"]), 2);
    ok(&cli.run(&["domains:remove", "www.example.org", "-a", "dirapp"]));
    assert_eq!(api.get("/apps/dirapp/domains").body.as_array().unwrap().len(), 1);

    ok(&cli.run(&["ps:restart", "web", "-a", "dirapp"]));
    ok(&cli.run(&["ps:stop", "web.1", "-a", "dirapp"]));
    fails(&cli.run(&["ps:stop", "web", "-a", "dirapp"]), 2);
    let restarts = &api.get("/runner/desired-state").body["apps"][0]["restarts"];
    assert!(restarts.get("web").is_some() && restarts.get("web.1").is_some(), "{restarts}");
    assert_eq!(ok(&cli.run(&["open", "-a", "dirapp"])).trim(), "http://dirapp.localhost/");
}

#[test]
fn certs_add_list_and_remove() {
    let api = Api::start(Backend::Sqlite);
    let cli = logged_in(&api);
    ok(&cli.run(&["apps:create", "tlsapp"]));
    let (cert, key) = ouro_tests::openssl_certificate("www.example.com", Some("DNS:www.example.com"));
    let (_, other_key) = ouro_tests::openssl_certificate("other.example", Some("DNS:other.example"));
    let files = tempfile::tempdir().unwrap();
    let path = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (cert_file, key_file, other_key_file) =
        (path("cert.pem", &cert), path("key.pem", &key), path("o.pem", &other_key));

    let none = ok(&cli.run(&["certs", "-a", "tlsapp"]));
    assert!(none.contains("tlsapp has no SSL certificates"), "{none}");
    // Usage errors before any request: a missing file, swapped files.
    let missing = files.path().join("missing.pem");
    let err = fails(&cli.run(&["certs:add", missing.to_str().unwrap(), &key_file, "-a", "tlsapp"]), 2);
    assert!(err.contains("cannot read CERT_FILE"), "{err}");
    fails(&cli.run(&["certs:add", &key_file, &cert_file, "-a", "tlsapp"]), 2);
    assert_eq!(cli.run(&["certs:add", &cert_file, "-a", "tlsapp"]).status.code(), Some(2), "clap: KEY_FILE missing");
    // The API's check: the key does not match.
    let err = fails(&cli.run(&["certs:add", &cert_file, &other_key_file, "-a", "tlsapp"]), 1);
    assert!(err.contains("does not match"), "{err}");

    let out = ok(&cli.run(&["certs:add", &cert_file, &key_file, "-a", "tlsapp"]));
    assert!(out.contains("Adding SSL certificate to tlsapp... done") && out.contains("www.example.com"), "{out}");
    let listed = json(&cli, &["certs", "-a", "tlsapp"]);
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["hostnames"], serde_json::json!(["www.example.com"]));
    let table = ok(&cli.run(&["certs", "-a", "tlsapp"]));
    assert!(table.contains(&id) && table.contains("www.example.com"), "{table}");

    ok(&cli.run(&["certs:remove", &id, "-a", "tlsapp"]));
    fails(&cli.run(&["certs:remove", &id, "-a", "tlsapp"]), 1);
    assert_eq!(api.get("/apps/tlsapp/sni-endpoints").body, serde_json::json!([]));
}

/// How `child` ended if it did within `limit` (polled); killed otherwise.
fn ended_within(child: &mut std::process::Child, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ended = child.try_wait().unwrap();
    if ended.is_none() {
        let _ = child.kill();
    }
    ended
}

/// Tokens with a life cycle (Heroku's authorizations): made with a description and a life,
/// listed and shown without their secret, rotated (the old secret refused at once), revoked
/// (refused at once), refused once expired with the reason; bad input changes nothing;
/// `ouro logout` revokes the stored token and forgets it.
fn tokens_are_made_rotated_revoked_and_expire(backend: Backend) {
    let api = Api::start(backend);
    let cli = logged_in(&api);
    let account = |token: &str| api.call("GET", "/account", Some(token), None);

    let made = json(&cli, &["authorizations:create", "-d", "ci deploys", "-e", "3600"]);
    let (id, token) = (made["id"].as_str().unwrap().to_string(), made["access_token"]["token"].as_str().unwrap());
    let token = token.to_string();
    assert!(token.starts_with(&format!("ouro_{id}_")), "{made}");
    assert_eq!(made["description"], "ci deploys");
    assert_eq!(made["scope"], serde_json::json!(["global"]));
    let left = made["access_token"]["expires_in"].as_i64().unwrap();
    assert!((3590..=3600).contains(&left), "{made}");
    assert_eq!(account(&token).status, 200);
    assert_eq!(account(&token).body["email"], "admin@ouro.local");

    // Listed and shown, never with a secret.
    let listed = json(&cli, &["authorizations"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "the admin's first token and this one: {listed:?}");
    assert!(listed.iter().all(|t| t["access_token"]["token"].is_null()), "{listed:?}");
    let table = ok(&cli.run(&["authorizations"]));
    assert!(table.contains("ci deploys") && table.contains(&id) && table.contains("never expires"), "{table}");
    assert!(!table.contains(&token[25..]), "{table}");
    let info = ok(&cli.run(&["authorizations:info", &id]));
    assert!(info.contains("ci deploys") && info.contains("expires") && !info.contains("Token:"), "{info}");

    // Rotated: a new secret, the old one refused at once.
    let rotated = json(&cli, &["authorizations:rotate", &id]);
    let new_token = rotated["access_token"]["token"].as_str().unwrap().to_string();
    assert!(new_token.starts_with(&format!("ouro_{id}_")) && new_token != token, "{rotated}");
    assert_eq!(account(&token).status, 401);
    assert_eq!(account(&new_token).status, 200);
    let shown = ok(&cli.run(&["authorizations:rotate", &id]));
    assert!(shown.contains("Token:") && shown.contains(&format!("ouro_{id}_")), "{shown}");
    assert_eq!(account(&new_token).status, 401, "rotated again");

    // Revoked: refused at once, and gone.
    let out = ok(&cli.run(&["authorizations:revoke", &id]));
    assert!(out.contains(&format!("Revoking authorization {id}... done")), "{out}");
    let err = fails(&cli.run(&["authorizations:info", &id]), 1);
    assert!(err.contains("you have no token"), "{err}");
    fails(&cli.run(&["authorizations:revoke", &id]), 1);
    assert_eq!(json(&cli, &["authorizations"]).as_array().map(Vec::len), Some(1));

    // Expired: refused, saying so.
    let short = json(&cli, &["authorizations:create", "-e", "1"]);
    let short_token = short["access_token"]["token"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let refused = account(&short_token);
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    assert!(refused.body["message"].as_str().unwrap_or_default().contains("expired"), "{:?}", refused.body);
    let table = ok(&cli.run(&["authorizations"]));
    assert!(table.contains("expired"), "{table}");

    // Bad input: a clear error, nothing made.
    let before = json(&cli, &["authorizations"]).as_array().map(Vec::len);
    for args in [&["authorizations:create", "-e", "0"][..], &["authorizations:create", "-e", "999999999999"]] {
        let err = fails(&cli.run(args), 1);
        assert!(err.contains("expires_in"), "{err}");
    }
    let err = fails(&cli.run(&["authorizations:create", "-d", "two\nlines"]), 1);
    assert!(err.contains("one line"), "{err}");
    assert_eq!(json(&cli, &["authorizations"]).as_array().map(Vec::len), before);

    // A `logs --tail` left open breaks off within seconds of its token's revocation.
    ok(&cli.run(&["apps:create", "tailed"]));
    let tailing = json(&cli, &["authorizations:create", "-d", "tail"]);
    let tailer = Cli::new(&api);
    ok(&tailer.login(tailing["access_token"]["token"].as_str().unwrap()));
    let mut tail = tailer
        .command(&["logs", "--tail", "-a", "tailed"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ouro logs --tail");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(tail.try_wait().unwrap().is_none(), "the tail follows while its token is good");
    ok(&cli.run(&["authorizations:revoke", tailing["id"].as_str().unwrap()]));
    let ended = ended_within(&mut tail, std::time::Duration::from_secs(20));
    let said = tail.wait_with_output().map(|o| stderr(&o)).unwrap_or_default();
    assert!(ended.is_some_and(|status| !status.success()), "the tail went on after its token was revoked: {said}");

    // Logging out revokes the stored token and forgets it.
    let other = Cli::new(&api);
    let spare = json(&cli, &["authorizations:create", "-d", "laptop"]);
    let spare_token = spare["access_token"]["token"].as_str().unwrap().to_string();
    ok(&other.login(&spare_token));
    assert!(ok(&other.run(&["logout"])).contains("Logging out... done"));
    assert_eq!(account(&spare_token).status, 401);
    let err = fails(&other.run(&["apps"]), 1);
    assert!(err.contains("not logged in"), "{err}");
    let err = fails(&other.run(&["logout"]), 1);
    assert!(err.contains("not logged in"), "{err}");
}

#[test]
fn tokens_on_sqlite() {
    tokens_are_made_rotated_revoked_and_expire(Backend::Sqlite);
}

#[test]
fn tokens_on_postgres() {
    tokens_are_made_rotated_revoked_and_expire(Backend::postgres());
}

/// Users: an admin adds one, who sets a password with the one-time code and logs in with email
/// and password (`login -i`); a wrong or used code, a short password, a wrong password and an
/// unknown email are refused and change nothing; a password opens nothing but a token; only
/// admins manage users; a user who owns apps, or the last admin, is not removed; a removed
/// user's tokens are refused.
fn users_are_invited_set_a_password_and_log_in(backend: Backend) {
    let api = Api::start(backend);
    let admin = logged_in(&api);

    let added = ok(&admin.run(&["users:add", "Bob@Example.com"]));
    assert!(added.contains("Adding bob@example.com... done"), "{added}");
    // Over HTTPS, the command names the certificate authority the admin trusts, so that the
    // new user trusts the same one.
    let invitation = format!("ouro login --api {} --fingerprint ", admin.api_url);
    let rest = added.split(&invitation).nth(1).unwrap_or_else(|| panic!("no invitation in {added}"));
    let (_, code) = rest.split_once(" --invitation ").unwrap_or_else(|| panic!("no code in {added}"));
    let code = code.trim().to_string();
    // `ouro users`: a user's row, its words.
    let row = |email: &str| -> String {
        let users = ok(&admin.run(&["users"]));
        let line = users.lines().find(|l| l.starts_with(email)).map(|l| l.split_whitespace().collect::<Vec<_>>());
        line.map(|words| words.join(" ")).unwrap_or_default()
    };
    assert_eq!(row("bob@example.com"), "bob@example.com member no password");
    let err = fails(&admin.run(&["users:add", "bob@example.com"]), 1);
    assert!(err.contains("already"), "{err}");
    let err = fails(&admin.run(&["users:add", "not an email"]), 1);
    assert!(err.contains("is not an email address"), "{err}");

    // The code sets the first password, once; a wrong code or a short password changes nothing.
    let bob = Cli::new(&api);
    let set = |cli: &Cli, code: &str, password: &str| {
        cli.run_input(&cli.login_args(&["--invitation", code]), &format!("{password}\n"))
    };
    let err = fails(&set(&bob, "nope", "a long enough password"), 1);
    assert!(err.contains("no such invitation"), "{err}");
    let err = fails(&set(&bob, &code, "short"), 1);
    assert!(err.contains("10 to 1024 characters"), "{err}");
    assert!(ok(&set(&bob, &code, "bob's long password")).contains("Logged in as bob@example.com"));
    let err = fails(&set(&Cli::new(&api), &code, "another long password"), 1);
    assert!(err.contains("no such invitation"), "{err}");
    assert_eq!(row("bob@example.com"), "bob@example.com member password set");

    // A member sees only their apps and manages no users.
    ok(&admin.run(&["apps:create", "admins-app"]));
    assert!(!ok(&bob.run(&["apps"])).contains("admins-app"));
    let err = fails(&bob.run(&["users"]), 1);
    assert!(err.contains("only an admin"), "{err}");

    // Email and password make a token; anything else is refused alike.
    let login = |input: &str| {
        let cli = Cli::new(&api);
        cli.run_input(&cli.login_args(&["-i"]), input)
    };
    for wrong in ["bob@example.com\nwrong password\n", "nobody@example.com\nbob's long password\n"] {
        let err = fails(&login(wrong), 1);
        assert!(err.contains("wrong email or password"), "{err}");
    }
    assert!(ok(&login("bob@example.com\nbob's long password\n")).contains("Logged in as bob@example.com"));
    let curl = |path: &str, method: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
            .args(["-H", "Content-Type: application/json", "-d", "{}", "-u"])
            .arg("bob@example.com:bob's long password")
            .arg(format!("{}{path}", api.url))
            .output()
            .expect("curl");
        stdout(&out)
    };
    assert_eq!(curl("/apps", "POST"), "401", "a password opens nothing but a token");
    assert_eq!(curl("/oauth/authorizations", "POST"), "201");
    // Guessing is bounded: after five wrong passwords, the email's password logins are refused
    // for a quarter of an hour, the right password too; tokens still work.
    for _ in 0..5 {
        let err = fails(&login("bob@example.com\na wrong guess\n"), 1);
        assert!(err.contains("wrong email or password"), "{err}");
    }
    let err = fails(&login("bob@example.com\nbob's long password\n"), 1);
    assert!(err.contains("too many wrong passwords for bob@example.com"), "{err}");
    assert_eq!(curl("/oauth/authorizations", "POST"), "429");
    ok(&bob.run(&["apps"]));

    // Not removed while they own apps; the last admin never; once removed, their tokens go.
    ok(&bob.run(&["apps:create", "bobs-app"]));
    fails(&admin.run(&["users:remove", "bob@example.com"]), 2);
    let err = fails(&admin.run(&["users:remove", "bob@example.com", "--confirm", "bob@example.com"]), 1);
    assert!(err.contains("owns bobs-app"), "{err}");
    ok(&bob.run(&["apps:destroy", "-a", "bobs-app", "--confirm", "bobs-app"]));
    ok(&admin.run(&["users:remove", "bob@example.com", "--confirm", "bob@example.com"]));
    let err = fails(&bob.run(&["apps"]), 1);
    assert!(err.contains("invalid token"), "{err}");
    let err = fails(&admin.run(&["users:remove", "admin@ouro.local", "--confirm", "admin@ouro.local"]), 1);
    assert!(err.contains("last admin"), "{err}");
    assert_eq!(row("bob@example.com"), "");
}

#[test]
fn users_on_sqlite() {
    users_are_invited_set_a_password_and_log_in(Backend::Sqlite);
}

#[test]
fn users_on_postgres() {
    users_are_invited_set_a_password_and_log_in(Backend::postgres());
}

/// A user with a password and a token of their own: (their CLI, the token).
fn user_with_token(api: &Api, admin: &Cli, email: &str) -> (Cli, String) {
    let added = ok(&admin.run(&["users:add", email]));
    let code = added.split("--invitation ").nth(1).unwrap_or_else(|| panic!("no code in {added}")).trim().to_string();
    let cli = Cli::new(api);
    ok(&cli.run_input(&cli.login_args(&["--invitation", &code]), "a long password 123\n"));
    let made = json(&cli, &["authorizations:create", "-d", "matrix"]);
    (cli, made["access_token"]["token"].as_str().unwrap().to_string())
}

/// Who may do what to an app: for each route (one per permission), on a personal app and on a
/// team's app, the owner, a collaborator with each permission, another user, an admin, a
/// revoked and an expired token, a team admin and a team member get 2xx, 403 or 401, and a
/// refused request changes nothing. `ouro access` shows and changes collaborators, `ouro
/// members` a team's members, and who loses their access loses the app at once.
fn access_is_what_the_permissions_allow(backend: Backend) {
    let api = Api::start(backend);
    let admin = logged_in(&api);
    let (olga, owner) = user_with_token(&api, &admin, "olga@example.com");
    ok(&olga.run(&["apps:create", "shared"]));
    let (tina, team_admin) = user_with_token(&api, &admin, "tina@example.com");
    let (tom, team_member) = user_with_token(&api, &admin, "tom@example.com");
    ok(&tina.run(&["teams:create", "crew"]));
    let added = ok(&tina.run(&["members:add", "tom@example.com", "-t", "crew", "-r", "member"]));
    assert!(added.contains("Adding tom@example.com to crew as member... done"), "{added}");
    // A member makes the team's app; it is the team's, not theirs.
    let made = json(&tom, &["apps:create", "crew-app", "--team", "crew"]);
    assert_eq!(made["team"]["name"], "crew", "{made}");
    let mut callers = vec![("owner".to_string(), owner.clone())];
    for (who, permissions) in [("view", "view"), ("deploy", "deploy"), ("operate", "operate"), ("manage", "manage")] {
        let (_, token) = user_with_token(&api, &admin, &format!("{who}@example.com"));
        let added = ok(&olga.run(&["access:add", &format!("{who}@example.com"), "-p", permissions, "-a", "shared"]));
        assert!(added.contains(&format!("Adding {who}@example.com access to the app shared with view")), "{added}");
        ok(&tina.run(&["access:add", &format!("{who}@example.com"), "-p", permissions, "-a", "crew-app"]));
        callers.push((who.to_string(), token));
    }
    let (_, other) = user_with_token(&api, &admin, "eve@example.com");
    callers.push(("other".into(), other));
    callers.push(("admin".into(), api.token.clone()));
    let revoked = json(&olga, &["authorizations:create"]);
    ok(&olga.run(&["authorizations:revoke", revoked["id"].as_str().unwrap()]));
    callers.push(("revoked".into(), revoked["access_token"]["token"].as_str().unwrap().to_string()));
    let expired = json(&olga, &["authorizations:create", "-e", "1"]);
    callers.push(("expired".into(), expired["access_token"]["token"].as_str().unwrap().to_string()));
    callers.push(("team-admin".into(), team_admin.clone()));
    callers.push(("team-member".into(), team_member.clone()));
    std::thread::sleep(std::time::Duration::from_millis(1200));

    let listed = ok(&olga.run(&["access", "-a", "shared"]));
    let line = |email: &str| {
        listed.lines().find(|l| l.starts_with(email)).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    assert_eq!(line("olga@example.com").as_deref(), Some("olga@example.com owner"), "{listed}");
    assert_eq!(
        line("manage@example.com").as_deref(),
        Some("manage@example.com collaborator view,deploy,operate,manage")
    );
    assert_eq!(line("operate@example.com").as_deref(), Some("operate@example.com collaborator view,operate"));

    // Who gets what: `2` for any 2xx.
    let class = |status: u16| if (200..300).contains(&status) { "2".to_string() } else { status.to_string() };
    let expected = |app: &str, route: &str| -> Vec<&str> {
        //                owner  view   deploy operate manage other  admin revoked expired t-admin t-member
        let mut row = match route {
            "view" => vec!["2", "2", "2", "2", "2", "403", "2", "401", "401", "403", "403"],
            "deploy" => vec!["2", "403", "2", "403", "2", "403", "2", "401", "401", "403", "403"],
            "operate" => vec!["2", "403", "403", "2", "2", "403", "2", "401", "401", "403", "403"],
            _ => vec!["2", "403", "403", "403", "2", "403", "2", "401", "401", "403", "403"],
        };
        if app == "crew-app" {
            // Olga is no one to the team's app; its admin may do anything, its member all but manage.
            row[0] = "403";
            row[9] = "2";
            row[10] = if route == "manage" { "403" } else { "2" };
        }
        row
    };
    for app in ["shared", "crew-app"] {
        for (route, method, path, body) in [
            ("view", "GET", format!("/apps/{app}"), None),
            ("view", "GET", format!("/apps/{app}/releases"), None),
            ("view", "GET", format!("/apps/{app}/collaborators"), None),
            ("view", "GET", format!("/apps/{app}/acm"), None),
            ("deploy", "GET", format!("/apps/{app}/config-vars"), None),
            ("operate", "DELETE", format!("/apps/{app}/dynos"), None),
            ("manage", "PATCH", format!("/apps/{app}/config-vars"), Some("K")),
            ("manage", "POST", format!("/apps/{app}/domains"), Some("domain")),
        ] {
            let got: Vec<String> = callers
                .iter()
                .map(|(who, token)| {
                    let body = match body {
                        Some("K") => {
                            let key = format!("SET_BY_{}", who.to_uppercase().replace('-', "_"));
                            Some(serde_json::json!({ key: "1" }).to_string())
                        }
                        Some(_) => {
                            Some(serde_json::json!({ "hostname": format!("{who}.{app}.example.com") }).to_string())
                        }
                        None => None,
                    };
                    class(api.call(method, &path, Some(token), body.as_deref().map(str::as_bytes)).status)
                })
                .collect();
            assert_eq!(
                got,
                expected(app, route),
                "{method} {path} (owner, view, deploy, operate, manage, other, admin, revoked, expired, team admin, \
                 team member)"
            );
        }
        // Refused requests changed nothing.
        let config = api.get(&format!("/apps/{app}/config-vars")).body;
        let keys: Vec<&String> = config.as_object().unwrap().keys().collect();
        let mut domains_by: Vec<&str> = vec!["admin", "manage"];
        match app {
            "shared" => {
                assert_eq!(keys, ["SET_BY_ADMIN", "SET_BY_MANAGE", "SET_BY_OWNER"], "{config}");
                domains_by.push("owner");
            }
            _ => {
                assert_eq!(keys, ["SET_BY_ADMIN", "SET_BY_MANAGE", "SET_BY_TEAM_ADMIN"], "{config}");
                domains_by.push("team-admin");
            }
        }
        let domains = api.get(&format!("/apps/{app}/domains")).body;
        let mut hostnames: Vec<&str> =
            domains.as_array().unwrap().iter().filter_map(|d| d["hostname"].as_str()).collect();
        hostnames.retain(|h| h.ends_with(".example.com"));
        hostnames.sort();
        let wanted: Vec<String> = domains_by.iter().map(|who| format!("{who}.{app}.example.com")).collect();
        assert_eq!(hostnames, wanted, "{domains}");
    }

    // Teams: their members see them and their apps; only their admins change them.
    let listed = ok(&tina.run(&["access", "-a", "crew-app"]));
    let rows: Vec<String> = listed.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    for row in ["tina@example.com team admin", "tom@example.com team member", "view@example.com collaborator view"] {
        assert!(rows.iter().any(|r| r == row), "{row} in {listed}");
    }
    let teams = ok(&tom.run(&["teams"]));
    assert!(teams.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["crew", "member"]), "{teams}");
    let members = ok(&tom.run(&["members", "-t", "crew"]));
    assert!(members.contains("tina@example.com") && members.contains("tom@example.com"), "{members}");
    let err = fails(&tom.run(&["members:add", "eve@example.com", "-t", "crew"]), 1);
    assert!(err.contains("only an admin of team `crew`"), "{err}");
    let err = fails(&olga.run(&["members", "-t", "crew"]), 1);
    assert!(err.contains("no team `crew`"), "not in it, it is not there for her: {err}");
    let err = fails(&olga.run(&["apps:create", "olgas-crew-app", "--team", "crew"]), 1);
    assert!(err.contains("no team `crew`"), "{err}");
    let err = fails(&tina.run(&["members:remove", "tina@example.com", "-t", "crew"]), 1);
    assert!(err.contains("last admin"), "{err}");
    let err = fails(&tina.run(&["members:set", "tom@example.com", "-t", "crew", "-r", "owner"]), 1);
    assert!(err.contains("is not a role"), "{err}");
    let err = fails(&tina.run(&["teams:destroy", "crew", "--confirm", "crew"]), 1);
    assert!(err.contains("still has apps (crew-app)"), "{err}");
    let mine = ok(&tom.run(&["apps", "-t", "crew"]));
    assert!(mine.contains("crew-app") && !mine.contains("shared"), "{mine}");
    assert_eq!(api.call("DELETE", "/apps/crew-app", Some(&team_member), None).status, 403, "a member does not destroy");
    // A member made admin may do anything; removed, nothing, and their open tail ends.
    ok(&tina.run(&["members:set", "tom@example.com", "-t", "crew", "-r", "admin"]));
    assert_eq!(
        api.call("PATCH", "/apps/crew-app/config-vars", Some(&team_member), Some(br#"{"BY_TOM":"1"}"#)).status,
        200
    );
    let mut tail = tom
        .command(&["logs", "--tail", "-a", "crew-app"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ouro logs --tail");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(tail.try_wait().unwrap().is_none(), "the tail follows while the membership lasts");
    ok(&tina.run(&["members:remove", "tom@example.com", "-t", "crew"]));
    let ended = ended_within(&mut tail, std::time::Duration::from_secs(20));
    let _ = tail.wait();
    assert!(ended.is_some(), "the tail went on after its member left the team");
    assert_eq!(api.call("GET", "/apps/crew-app", Some(&team_member), None).status, 403);
    assert!(!ok(&tom.run(&["apps"])).contains("crew-app"));
    assert_eq!(ok(&tom.run(&["teams"])), "You are in no team. `ouro teams:create NAME` makes one.\n");
    // The app's audit log, for whoever may view it: who changed what, refusals too.
    let view = &callers[1].1;
    let events = api.call("GET", "/audit-events?app=shared", Some(view), None);
    assert_eq!(events.status, 200, "{:?}", events.body);
    let seen: Vec<(String, String, i64)> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (e["actor"].as_str().unwrap().into(), e["action"].as_str().unwrap().into(), e["status"].as_i64().unwrap())
        })
        .collect();
    let patch = "PATCH /apps/{app}/config-vars".to_string();
    assert!(seen.contains(&("manage@example.com".into(), patch.clone(), 200)), "{seen:?}");
    assert!(seen.contains(&("view@example.com".into(), patch, 403)), "{seen:?}");
    assert_eq!(api.call("GET", "/audit-events?app=shared", Some(&callers[5].1), None).status, 403);
    assert_eq!(api.call("GET", "/audit-events", Some(view), None).status, 403, "the whole log is the admins'");
    let shown = ok(&olga.run(&["audit", "-a", "shared"]));
    assert!(shown.contains("manage@example.com") && shown.contains("POST /apps/{app}/domains"), "{shown}");

    // Collaborators see the app in their list; others do not. Only the owner destroys it.
    let apps_of = |token: &str| -> Vec<String> {
        let apps = api.call("GET", "/apps", Some(token), None).body;
        apps.as_array().unwrap().iter().filter_map(|a| a["name"].as_str().map(str::to_string)).collect()
    };
    assert!(apps_of(&callers[1].1).contains(&"shared".to_string()));
    assert!(!apps_of(&callers[5].1).contains(&"shared".to_string()));
    let manage = &callers[4].1;
    assert_eq!(api.call("DELETE", "/apps/shared", Some(manage), None).status, 403);

    // A collaborator's open `logs --tail` ends within seconds of their access's removal.
    let (watcher, _) = user_with_token(&api, &admin, "watcher@example.com");
    ok(&olga.run(&["access:add", "watcher@example.com", "-p", "view", "-a", "shared"]));
    let mut tail = watcher
        .command(&["logs", "--tail", "-a", "shared"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ouro logs --tail");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(tail.try_wait().unwrap().is_none(), "the tail follows while the access lasts");
    ok(&olga.run(&["access:remove", "watcher@example.com", "-a", "shared"]));
    let ended = ended_within(&mut tail, std::time::Duration::from_secs(20));
    let _ = tail.wait();
    assert!(ended.is_some(), "the tail went on after its access was removed");

    // Permissions change and go at once.
    let updated = ok(&olga.run(&["access:update", "view@example.com", "-p", "deploy", "-a", "shared"]));
    assert!(updated.contains("with view, deploy permissions"), "{updated}");
    assert_eq!(api.call("GET", "/apps/shared/config-vars", Some(&callers[1].1), None).status, 200);
    let err = fails(&olga.run(&["access:add", "view@example.com", "-a", "shared"]), 1);
    assert!(err.contains("already"), "{err}");
    let err = fails(&olga.run(&["access:add", "nobody@example.com", "-a", "shared"]), 1);
    assert!(err.contains("no user"), "{err}");
    let err = fails(&olga.run(&["access:update", "view@example.com", "-p", "admin", "-a", "shared"]), 1);
    assert!(err.contains("is not a permission"), "{err}");
    ok(&olga.run(&["access:remove", "view@example.com", "-a", "shared"]));
    assert_eq!(api.call("GET", "/apps/shared", Some(&callers[1].1), None).status, 403);
    assert!(!apps_of(&callers[1].1).contains(&"shared".to_string()));
    assert_eq!(api.call("DELETE", "/apps/shared", Some(&owner), None).status, 200);
    // The team's admin destroys its app, and then the team.
    assert_eq!(api.call("DELETE", "/apps/crew-app", Some(&team_admin), None).status, 200);
    ok(&tina.run(&["teams:destroy", "crew", "--confirm", "crew"]));
    assert_eq!(api.call("GET", "/teams/crew", Some(&team_admin), None).status, 404);
}

#[test]
fn access_on_sqlite() {
    access_is_what_the_permissions_allow(Backend::Sqlite);
}

#[test]
fn access_on_postgres() {
    access_is_what_the_permissions_allow(Backend::postgres());
}

/// An address of this machine that is neither loopback nor on a Docker bridge: where a client
/// on another machine would reach the API.
fn outward_address() -> String {
    let out = Command::new("hostname").arg("-I").output().expect("hostname -I");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|ip| {
            let bridge = ip.octets()[0] == 172 && (16..32).contains(&ip.octets()[1]);
            !(ip.is_loopback() || bridge)
        })
        .unwrap_or_else(|| panic!("this machine has no address beside loopback and the bridge: {text}"))
        .to_string()
}

/// The API speaks HTTPS with a certificate authority of its own: `ouro login` shows its
/// fingerprint and trusts it only when told (`--fingerprint`, as the API printed it, or
/// `--ca-file`), and then works over TLS, from loopback and from another address; plain HTTP
/// from an address that is not loopback or the bridge is refused by the API; the dashboard's
/// cookie is `Secure` over TLS.
#[test]
fn the_api_speaks_https_and_the_cli_trusts_it_explicitly() {
    let outward = outward_address();
    let api = Api::start_with(Backend::Sqlite, &[("OURO_LISTEN", "0.0.0.0:0"), ("OURO_TLS_NAMES", &outward)]);
    let log = api.log();
    let printed = log
        .lines()
        .find_map(|l| l.strip_prefix("ouro-api HTTPS certificate authority fingerprint (SHA-256): "))
        .unwrap_or_else(|| panic!("no fingerprint in the API's output: {log}"))
        .to_string();
    let https = api.https_url();

    // Not trusted until told: the error shows the fingerprint, and nothing is saved.
    let cli = Cli::new(&api);
    let file = cli.config_dir.path().join("credentials.json");
    let err = fails(&cli.run(&["login", "--api", &https, "--token", &api.token]), 2);
    assert!(err.contains(&printed) && err.contains("--fingerprint"), "{err}");
    assert!(!file.exists());
    let wrong = printed.replace(&printed[..2], if &printed[..2] == "00" { "11" } else { "00" });
    let err = fails(&cli.run(&["login", "--api", &https, "--token", &api.token, "--fingerprint", &wrong]), 1);
    assert!(err.contains("someone may be in between"), "{err}");
    assert!(!file.exists());
    let typed = printed.to_lowercase().replace(':', "");
    let out = ok(&cli.run(&["login", "--api", &https, "--token", &api.token, "--fingerprint", &typed]));
    assert!(out.contains("Logged in as admin@ouro.local"), "{out}");
    ok(&cli.run(&["apps:create", "secure-app"]));
    assert!(ok(&cli.run(&["apps"])).contains("secure-app"));
    // A new login to the same API keeps trusting it without being told again.
    ok(&cli.run(&["login", "--api", &https, "--token", &api.token]));

    // From another address: HTTPS works (the certificate names it), plain HTTP is refused by
    // the API itself, whatever the client.
    let remote = format!("https://{outward}:{}", api.url.rsplit(':').next().unwrap());
    let out = cli.command(&["apps"]).env("OURO_API_URL", &remote).output().unwrap();
    assert!(stdout(&out).contains("secure-app"), "{}", stderr(&out));
    // Its git URL is the one that client reached the API at, so that it can push there.
    let out = cli.command(&["apps:info", "-a", "secure-app", "--json"]).env("OURO_API_URL", &remote).output().unwrap();
    let info: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert_eq!(info["git_url"], format!("{remote}/secure-app.git"));
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "10", &format!("http://{outward}:{}/health", api.url.rsplit(':').next().unwrap())])
        .output()
        .unwrap();
    assert!(stdout(&plain).contains("takes HTTPS from your address"), "{}{}", stdout(&plain), stderr(&plain));
    let ca = api.ca_file();
    let curl_tls = |url: &str, extra: &[&str]| {
        let mut args = vec!["-sS", "--max-time", "10", "--cacert", ca.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(url);
        Command::new("curl").args(&args).output().unwrap()
    };
    assert!(stdout(&curl_tls(&format!("{remote}/health"), &[])).contains("ok"));
    // Loopback may still speak plain HTTP (the platform's own components do).
    assert_eq!(api.get("/health").status, 200);

    // The dashboard's session cookie is `Secure` over TLS, and not over plain loopback HTTP.
    let form = format!("token={}", api.token);
    let headers = |out: std::process::Output| stdout(&out).to_lowercase();
    let over_tls = headers(curl_tls(&format!("{https}/dashboard/login"), &["-D", "-", "-o", "/dev/null", "-d", &form]));
    let cookie = over_tls.lines().find(|l| l.starts_with("set-cookie:")).unwrap_or_else(|| panic!("{over_tls}"));
    assert!(cookie.contains("; secure"), "{cookie}");
    let plain = Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "-d", &form, &format!("{}/dashboard/login", api.url)])
        .output()
        .unwrap();
    let plain = headers(plain);
    let cookie = plain.lines().find(|l| l.starts_with("set-cookie:")).unwrap_or_else(|| panic!("{plain}"));
    assert!(!cookie.contains("secure"), "{cookie}");
}
