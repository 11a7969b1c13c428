//! The Platform API over HTTP, against the real `ouro-api` binary, each scenario on SQLite and
//! on a real PostgreSQL server.

use ouro_tests::{Api, Backend, Value, json, make_slug, openssl_certificate, sha256sum};

ouro_tests::on_both_backends!(
    addons_set_config_vars_attach_detach_and_destroy,
    slow_addons_are_provisioned_in_the_background,
    runner_tokens_reach_only_the_runners_endpoints,
    provider_tokens_manage_only_their_own_server_apps,
    logs_gather_shipped_lines_and_platform_events_and_reach_drains,
    attached_one_offs_pair_the_caller_with_the_runner,
    the_runner_hears_of_changes_at_once,
    releases_follow_config_changes_and_rollbacks,
    slugs_deploy_and_set_the_formation,
    bad_input_gets_4xx_and_changes_nothing,
    tokens_guard_everything_but_health,
    a_restart_loses_nothing,
    concurrent_changes_get_distinct_versions,
    deleting_an_app_removes_everything_of_it,
    domains_and_restarts_reach_the_desired_state,
    every_app_in_the_desired_state_has_its_own_parts,
    sni_endpoints_are_checked_listed_and_reach_the_desired_state,
    stack_updates_release_every_app_on_a_stack,
    the_schedule_updates_a_stack_whose_updates_are_too_old,
);

fn versions(api: &Api, app: &str) -> Vec<(i64, String, bool)> {
    let list = api.get(&format!("/apps/{app}/releases"));
    assert_eq!(list.status, 200, "{:?}", list.body);
    list.body
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["version"].as_i64().unwrap(),
                r["description"].as_str().unwrap().to_string(),
                r["current"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The runner's desired state without the platform's own `ouro-builder` app and the volumes.
fn user_desired(api: &Api) -> Value {
    let mut desired = api.get("/runner/desired-state").body;
    if let Some(apps) = desired["apps"].as_array_mut() {
        apps.retain(|a| a["app_name"] != "ouro-builder");
    }
    desired.as_object_mut().map(|d| d.remove("volumes"));
    desired
}

fn assert_error(answer: &ouro_tests::Answer, status: u16, id: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.body["id"], id, "{:?}", answer.body);
    let message = answer.body["message"].as_str().expect("a message");
    assert!(!message.is_empty() && !message.contains('\n'), "one-line message: {message:?}");
}

/// Everything a user can see of the state, to compare before and after.
fn snapshot(api: &Api) -> Value {
    let apps = api.get("/apps").body;
    let mut per_app = Vec::new();
    for app in apps.as_array().unwrap() {
        let name = app["name"].as_str().unwrap();
        per_app.push(json!({
            "app": app,
            "config": api.get(&format!("/apps/{name}/config-vars")).body,
            "releases": api.get(&format!("/apps/{name}/releases")).body,
            "formation": api.get(&format!("/apps/{name}/formation")).body,
        }));
    }
    Value::Array(per_app)
}

fn releases_follow_config_changes_and_rollbacks(backend: Backend) {
    let api = Api::start(backend);
    let created = api.post("/apps", json!({"name": "demo"}));
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["name"], "demo");
    assert_eq!(created.body["current_release"], 1);
    assert_eq!(created.body["web_url"], "http://demo.localhost/");
    assert_eq!(created.body["git_url"], format!("{}/demo.git", api.url));
    assert_eq!(versions(&api, "demo"), vec![(1, "Initial release".into(), true)]);

    let set = api.patch("/apps/demo/config-vars", json!({"A": "1", "B": "two words"}));
    assert_eq!(set.status, 200);
    assert_eq!(set.body, json!({"A": "1", "B": "two words"}));
    // Setting the same values again changes nothing and makes no release.
    assert_eq!(api.patch("/apps/demo/config-vars", json!({"A": "1"})).status, 200);
    let unset = api.patch("/apps/demo/config-vars", json!({"B": null}));
    assert_eq!(unset.body, json!({"A": "1"}));
    assert_eq!(
        versions(&api, "demo"),
        vec![
            (1, "Initial release".into(), false),
            (2, "Set A, B config vars".into(), false),
            (3, "Remove B config vars".into(), true),
        ]
    );

    let rollback = api.post("/apps/demo/releases", json!({"release": "v2"}));
    assert_eq!(rollback.status, 201, "{:?}", rollback.body);
    assert_eq!(rollback.body["version"], 4);
    assert_eq!(rollback.body["description"], "Rollback to v2");
    assert_eq!(api.get("/apps/demo/config-vars").body, json!({"A": "1", "B": "two words"}));
    let to_v1 = api.post("/apps/demo/releases", json!({"release": 1}));
    assert_eq!(to_v1.body["description"], "Rollback to v1");
    assert_eq!(api.get("/apps/demo/config-vars").body, json!({}));

    let info = api.get("/apps/demo/releases/v5");
    assert_eq!((info.body["version"].as_i64(), info.body["current"].as_bool()), (Some(5), Some(true)));
    let by_id = api.get(&format!("/apps/demo/releases/{}", rollback.body["id"].as_str().unwrap()));
    assert_eq!(by_id.body["version"], 4);
    assert_eq!(by_id.body["user"]["email"], "admin@ouro.local");
    assert_eq!(api.get("/apps/demo").body["current_release"], 5);
}

fn slugs_deploy_and_set_the_formation(backend: Backend) {
    let api = Api::start(backend);
    api.post("/apps", json!({"name": "shop"}));
    let slug = api.post(
        "/apps/shop/slugs",
        json!({"process_types": {"web": "python3 -m http.server $PORT", "worker": "python3 work.py"}, "commit": "abc1234def"}),
    );
    assert_eq!(slug.status, 201, "{:?}", slug.body);
    let slug_id = slug.body["id"].as_str().unwrap().to_string();
    assert_eq!(slug.body["checksum"], Value::Null);
    let blob_url = slug.body["blob"]["url"].as_str().unwrap().to_string();
    assert_eq!(blob_url, format!("{}/apps/shop/slugs/{slug_id}/blob", api.url));
    let blob_path = blob_url.strip_prefix(&api.url).unwrap().to_string();

    // Not uploaded yet: cannot be released.
    let early = api.post("/apps/shop/releases", json!({"slug": slug_id}));
    assert_error(&early, 422, "invalid_params");

    let tarball = make_slug(&[("app/web.py", "print('hi')\n"), ("app/Procfile", "web: python3 web.py\n")]);
    let (status, body) = api.raw("PUT", &blob_path, Some(&api.token), Some(&tarball), "application/gzip");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let uploaded: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(uploaded["checksum"], format!("SHA256:{}", sha256sum(&tarball)));
    assert_eq!(uploaded["size"], tarball.len());
    let (status, back) = api.raw("GET", &blob_path, Some(&api.token), None, "");
    assert_eq!((status, back == tarball), (200, true));

    let deploy = api.post("/apps/shop/releases", json!({"slug": slug_id}));
    assert_eq!(deploy.status, 201, "{:?}", deploy.body);
    assert_eq!(deploy.body["description"], "Deploy abc1234");
    assert_eq!(deploy.body["slug"]["id"], slug_id);
    // A first deploy scales web to 1 and declares the other types at 0.
    let formation = api.get("/apps/shop/formation").body;
    assert_eq!(formation[0]["type"], "web");
    assert_eq!(formation[0]["quantity"], 1);
    assert_eq!(formation[0]["command"], "python3 -m http.server $PORT");
    assert_eq!((formation[1]["type"].as_str(), formation[1]["quantity"].as_i64()), (Some("worker"), Some(0)));

    let scaled = api.patch(
        "/apps/shop/formation",
        json!({"updates": [{"type": "web", "quantity": 3, "size": "Standard-2X"}, {"type": "worker", "quantity": 2}]}),
    );
    assert_eq!(scaled.status, 200, "{:?}", scaled.body);
    assert_eq!(api.get("/apps/shop/formation/web").body["size"], "standard-2x");
    assert_eq!(api.get("/apps/shop/formation/worker").body["quantity"], 2);
    // Once a slug runs, only its process types can be scaled.
    assert_error(
        &api.patch("/apps/shop/formation", json!({"updates": [{"type": "clock", "quantity": 1}]})),
        422,
        "invalid_params",
    );
    assert_eq!(api.get("/apps/shop/dynos").body, json!([]));

    // The same bytes in a second slug are stored once.
    let again = api.post("/apps/shop/slugs", json!({"process_types": {"web": "x"}}));
    let again_path = format!("/apps/shop/slugs/{}/blob", again.body["id"].as_str().unwrap());
    assert_eq!(api.raw("PUT", &again_path, Some(&api.token), Some(&tarball), "application/gzip").0, 200);
    let blobs = std::fs::read_dir(api.data_dir.path().join("blobs/sha256"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .count();
    assert_eq!(blobs, 2, "this slug's blob and the builder app's slug");
    // A slug's content is immutable.
    let other = make_slug(&[("app/other", "x")]);
    assert_error_raw(&api, &again_path, &other, 409, "conflict");
    // A config change keeps the slug; a rollback to v1 runs no slug.
    api.patch("/apps/shop/config-vars", json!({"A": "1"}));
    assert_eq!(api.get("/apps/shop/releases/v3").body["slug"]["id"], slug_id);
    assert_eq!(api.post("/apps/shop/releases", json!({"release": "v1"})).body["slug"], Value::Null);
    assert_eq!(api.post("/apps/shop/releases", json!({"release": "v2"})).body["slug"]["id"], slug_id);
}

fn assert_error_raw(api: &Api, path: &str, body: &[u8], status: u16, id: &str) {
    let (got, bytes) = api.raw("PUT", path, Some(&api.token), Some(body), "application/gzip");
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_error(&ouro_tests::Answer { status: got, body }, status, id);
}

fn bad_input_gets_4xx_and_changes_nothing(backend: Backend) {
    let api = Api::start_with(backend, &[("OURO_MAX_SLUG_BYTES", "65536")]);
    api.post("/apps", json!({"name": "demo"}));
    api.patch("/apps/demo/config-vars", json!({"KEEP": "me"}));
    api.patch("/apps/demo/formation", json!({"updates": [{"type": "web", "quantity": 1}]}));
    let slug = api.post("/apps/demo/slugs", json!({"process_types": {"web": "run"}}));
    let blob = format!("/apps/demo/slugs/{}/blob", slug.body["id"].as_str().unwrap());
    let before = snapshot(&api);

    for name in ["ab", "Demo", "1demo", "demo-", "de_mo", "a-very-long-name-that-goes-past-30", "dé-mo", ""] {
        assert_error(&api.post("/apps", json!({"name": name})), 422, "invalid_params");
    }
    assert_error(&api.post("/apps", json!({"name": "demo"})), 409, "conflict");
    assert_error(&api.post("/apps", json!({"name": 7})), 422, "invalid_params");
    for key in ["1A", "A-B", "A B", "", "É"] {
        assert_error(&api.patch("/apps/demo/config-vars", json!({"OK": "x", key: "v"})), 422, "invalid_params");
    }
    assert_error(&api.patch("/apps/demo/config-vars", json!({"OK": "x", "NUM": 5})), 422, "invalid_params");
    assert_error(&api.patch("/apps/demo/config-vars", json!({})), 422, "invalid_params");
    assert_error(&api.patch("/apps/demo/config-vars", json!({"BIG": "x".repeat(70 * 1024)})), 422, "invalid_params");
    assert_error(
        &api.call("PATCH", "/apps/demo/config-vars", Some(&api.token), Some(b"{not json")),
        400,
        "bad_request",
    );
    let huge = format!("{{\"A\": \"{}\"}}", "x".repeat(300 * 1024));
    assert_error(
        &api.call("PATCH", "/apps/demo/config-vars", Some(&api.token), Some(huge.as_bytes())),
        413,
        "request_entity_too_large",
    );
    assert_error(&api.patch("/apps/nope/config-vars", json!({"A": "1"})), 404, "not_found");

    for update in [
        json!({"type": "web", "quantity": -1}),
        json!({"type": "web", "quantity": 101}),
        json!({"type": "web", "size": "huge"}),
        json!({"type": "Web", "quantity": 1}),
        json!({"type": "web"}),
    ] {
        assert_error(&api.patch("/apps/demo/formation", json!({"updates": [update]})), 422, "invalid_params");
    }
    // All or nothing: a valid entry next to an invalid one is not applied either.
    let mixed = json!({"updates": [{"type": "web", "quantity": 5}, {"type": "worker", "quantity": -3}]});
    assert_error(&api.patch("/apps/demo/formation", mixed), 422, "invalid_params");
    let twice = json!({"updates": [{"type": "web", "quantity": 2}, {"type": "web", "quantity": 3}]});
    assert_error(&api.patch("/apps/demo/formation", twice), 422, "invalid_params");
    assert_error(&api.patch("/apps/demo/formation", json!({"updates": []})), 422, "invalid_params");

    assert_error(&api.post("/apps/demo/releases", json!({"release": "v99"})), 404, "not_found");
    assert_error(&api.post("/apps/demo/releases", json!({})), 422, "invalid_params");
    assert_error(&api.post("/apps/demo/releases", json!({"slug": "no-such-slug"})), 404, "not_found");
    assert_error(&api.post("/apps/demo/slugs", json!({"process_types": {"We b": "x"}})), 422, "invalid_params");
    assert_error(&api.post("/apps/demo/slugs", json!({"process_types": {"web": " "}})), 422, "invalid_params");

    // Hostile or broken slugs: rejected with a reason; the slug stays without content.
    // A symlink out of the tree, then a file written through it: `app/etc -> /etc`, then
    // `app/etc/passwd`.
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("app")).unwrap();
    std::fs::create_dir_all(outside.path().join("x")).unwrap();
    std::os::unix::fs::symlink("/etc", outside.path().join("app/etc")).unwrap();
    std::fs::write(outside.path().join("x/passwd"), "root::0:0::/:/bin/sh\n").unwrap();
    let escaping = std::process::Command::new("tar")
        .args(["czf", "-", "--transform=s,^x/,app/etc/,", "-C"])
        .arg(outside.path())
        .args(["app/etc", "x/passwd"])
        .output()
        .expect("tar");
    assert!(escaping.status.success());
    assert_error_raw(&api, &blob, &escaping.stdout, 422, "invalid_params");
    let rejected = api.raw("PUT", &blob, Some(&api.token), Some(&escaping.stdout), "application/gzip");
    assert!(String::from_utf8_lossy(&rejected.1).contains("beneath the symlink `app/etc`"), "{rejected:?}");
    assert_error_raw(&api, &blob, b"this is not a tarball", 422, "invalid_params");
    assert_error_raw(&api, &blob, &vec![7u8; 100 * 1024], 413, "request_entity_too_large");
    assert_error_raw(&api, &blob, b"", 422, "invalid_params");

    assert_eq!(snapshot(&api), before);
    assert_eq!(api.get(&blob.replace("/blob", "")).body["checksum"], Value::Null);
    let staged = std::fs::read_dir(api.data_dir.path().join("blobs/staging")).unwrap().count();
    assert_eq!(staged, 0, "failed uploads leave no staged files");
    // Only the builder app's slug is stored.
    assert_eq!(std::fs::read_dir(api.data_dir.path().join("blobs/sha256")).unwrap().count(), 1);
}

fn tokens_guard_everything_but_health(backend: Backend) {
    let api = Api::start(backend);
    assert_eq!(api.call("GET", "/health", None, None).status, 200);
    let token_file = api.data_dir.path().join("admin-token");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&token_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(api.token.starts_with("ouro_"));

    let (id, secret) = api.token.trim_start_matches("ouro_").split_once('_').unwrap();
    let wrong_secret = format!("ouro_{id}_{}", "0".repeat(secret.len()));
    let wrong_id = format!("ouro_{}_{secret}", "0".repeat(id.len()));
    let wrong = ["", "garbage", &wrong_secret, &wrong_id, &api.token[..api.token.len() - 1]];
    let requests: [(&str, &str, Option<&[u8]>); 6] = [
        ("GET", "/apps", None),
        ("POST", "/apps", Some(br#"{"name": "sneaky"}"#)),
        ("GET", "/account", None),
        ("PATCH", "/apps/sneaky/config-vars", Some(br#"{"A": "1"}"#)),
        ("GET", "/audit-events", None),
        ("DELETE", "/apps/sneaky", None),
    ];
    for (method, path, body) in requests {
        assert_error(&api.call(method, path, None, body), 401, "unauthorized");
        for token in wrong {
            assert_error(&api.call(method, path, Some(token), body), 401, "unauthorized");
        }
    }
    assert_eq!(api.get("/apps").body, json!([]), "nothing was created without a valid token");
    let account = api.get("/account");
    assert_eq!(
        (account.body["email"].as_str(), account.body["admin"].as_bool()),
        (Some("admin@ouro.local"), Some(true))
    );

    // The audit log has every mutating request with a valid token, failed ones too, no reads.
    api.post("/apps", json!({"name": "audited"}));
    api.post("/apps", json!({"name": "Bad"}));
    api.patch("/apps/audited/config-vars", json!({"A": "1"}));
    let events = api.get("/audit-events").body;
    let seen: Vec<(String, String, i64)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (e["action"].as_str().unwrap().into(), e["target"].as_str().unwrap().into(), e["status"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("POST /apps".into(), "/apps".into(), 201),
            ("POST /apps".into(), "/apps".into(), 422),
            ("PATCH /apps/{app}/config-vars".into(), "/apps/audited/config-vars".into(), 200),
        ]
    );
    assert!(events.as_array().unwrap().iter().all(|e| e["actor"] == "admin@ouro.local" && e["created_at"].is_string()));
    let for_app = api.get("/audit-events?app=audited").body;
    assert_eq!(for_app.as_array().unwrap().len(), 2, "{for_app:?}");
}

fn a_restart_loses_nothing(backend: Backend) {
    let mut api = Api::start(backend);
    api.post("/apps", json!({"name": "keeper"}));
    api.post("/apps", json!({"name": "other-app"}));
    api.patch("/apps/keeper/config-vars", json!({"DATABASE_URL": "postgres://x", "A": "1"}));
    api.post("/apps/keeper/releases", json!({"release": "v1"}));
    api.patch("/apps/keeper/formation", json!({"updates": [{"type": "web", "quantity": 2, "size": "performance"}]}));
    let slug = api.post("/apps/other-app/slugs", json!({"process_types": {"web": "serve"}}));
    let blob = format!("/apps/other-app/slugs/{}/blob", slug.body["id"].as_str().unwrap());
    let tarball = make_slug(&[("app/serve", "#!/bin/sh\n")]);
    assert_eq!(api.raw("PUT", &blob, Some(&api.token), Some(&tarball), "application/gzip").0, 200);
    api.post("/apps/other-app/releases", json!({"slug": slug.body["id"]}));
    let before = snapshot(&api);
    let audit_before = api.get("/audit-events").body;
    let token_file = std::fs::read_to_string(api.data_dir.path().join("admin-token")).unwrap();

    api.restart();
    assert_eq!(snapshot(&api), before);
    assert_eq!(api.get("/audit-events").body, audit_before);
    assert_eq!(
        std::fs::read_to_string(api.data_dir.path().join("admin-token")).unwrap(),
        token_file,
        "no new admin token"
    );
    assert_eq!(api.raw("GET", &blob, Some(&api.token), None, "").1, tarball);
    // And it keeps working where it left off.
    assert_eq!(api.patch("/apps/keeper/config-vars", json!({"B": "2"})).status, 200);
    assert_eq!(versions(&api, "keeper").last().unwrap().0, 4);
}

fn concurrent_changes_get_distinct_versions(backend: Backend) {
    let api = Api::start(backend);
    api.post("/apps", json!({"name": "busy"}));
    std::thread::scope(|s| {
        for i in 0..8 {
            let api = &api;
            s.spawn(move || {
                let answer = api.patch("/apps/busy/config-vars", json!({format!("K{i}"): "v"}));
                assert_eq!(answer.status, 200, "{:?}", answer.body);
            });
        }
    });
    let got: Vec<i64> = versions(&api, "busy").iter().map(|v| v.0).collect();
    assert_eq!(got, (1..=9).collect::<Vec<_>>());
    assert_eq!(api.get("/apps/busy/config-vars").body.as_object().unwrap().len(), 8, "no change was lost");
}

fn deleting_an_app_removes_everything_of_it(backend: Backend) {
    let api = Api::start(backend);
    api.post("/apps", json!({"name": "gone"}));
    api.post("/apps", json!({"name": "stays"}));
    api.patch("/apps/gone/config-vars", json!({"A": "1"}));
    api.patch("/apps/gone/formation", json!({"updates": [{"type": "web", "quantity": 1}]}));
    let slug = api.post("/apps/gone/slugs", json!({"process_types": {"web": "x"}}));
    let tarball = make_slug(&[("app/x", "x")]);
    let blob = format!("/apps/gone/slugs/{}/blob", slug.body["id"].as_str().unwrap());
    api.raw("PUT", &blob, Some(&api.token), Some(&tarball), "application/gzip");
    api.post("/apps/gone/releases", json!({"slug": slug.body["id"]}));

    let deleted = api.delete("/apps/gone");
    assert_eq!((deleted.status, deleted.body["name"].as_str()), (200, Some("gone")));
    assert_error(&api.get("/apps/gone"), 404, "not_found");
    assert_error(&api.get("/apps/gone/releases"), 404, "not_found");
    let names: Vec<Value> = api.get("/apps").body.as_array().unwrap().iter().map(|a| a["name"].clone()).collect();
    assert_eq!(names, vec![json!("stays")]);
    // The name is free again, and the new app starts from v1 with nothing of the old one.
    api.post("/apps", json!({"name": "gone"}));
    assert_eq!(versions(&api, "gone"), vec![(1, "Initial release".into(), true)]);
    assert_eq!(api.get("/apps/gone/config-vars").body, json!({}));
    assert_eq!(api.get("/apps/gone/formation").body, json!([]));
}

fn domains_and_restarts_reach_the_desired_state(backend: Backend) {
    let api = Api::start(backend);
    api.post("/apps", json!({"name": "site"}));
    api.post("/apps", json!({"name": "other"}));
    let added = api.post("/apps/site/domains", json!({"hostname": "WWW.Example.COM"}));
    assert_eq!((added.status, added.body["hostname"].as_str()), (201, Some("www.example.com")));
    assert_error(&api.post("/apps/other/domains", json!({"hostname": "www.example.com"})), 409, "conflict");
    for bad in ["example", "a..b", "-x.com", "*.example.com", "other.localhost", "x y.com"] {
        assert_error(&api.post("/apps/site/domains", json!({"hostname": bad})), 422, "invalid_params");
    }
    let domains = api.get("/apps/site/domains").body;
    let listed: Vec<(&str, &str)> = domains
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["hostname"].as_str().unwrap(), d["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, vec![("site.localhost", "default"), ("www.example.com", "custom")]);

    // Only apps with a slug are in the desired state; they carry domains and restarts.
    assert_eq!(user_desired(&api), json!({"apps": []}));
    let slug = api.post("/apps/site/slugs", json!({"process_types": {"web": "serve"}}));
    let blob = format!("/apps/site/slugs/{}/blob", slug.body["id"].as_str().unwrap());
    api.raw("PUT", &blob, Some(&api.token), Some(&make_slug(&[("app/serve", "x")])), "application/gzip");
    api.post("/apps/site/releases", json!({"slug": slug.body["id"]}));
    assert_eq!(api.delete("/apps/site/dynos").status, 200);
    assert_eq!(api.delete("/apps/site/dynos/web.2").status, 200);
    assert_eq!(api.call("POST", "/apps/site/dynos/web.1/actions/stop", Some(&api.token), None).status, 200);
    assert_error(&api.delete("/apps/site/dynos/Web!"), 422, "invalid_params");
    assert_error(&api.call("POST", "/apps/site/dynos/web/actions/stop", Some(&api.token), None), 422, "invalid_params");
    let desired = user_desired(&api);
    let site = &desired["apps"][0];
    assert_eq!(site["app_name"], "site");
    assert_eq!(site["domains"], json!(["www.example.com"]));
    let restarts = site["restarts"].as_object().unwrap();
    assert_eq!(restarts.keys().collect::<Vec<_>>(), vec!["*", "web.1", "web.2"]);
    assert_eq!(site["formation"], json!([{"type": "web", "quantity": 1, "size": "basic"}]));
    assert_eq!(site["release"]["process_types"], json!({"web": "serve"}));

    assert_eq!(api.delete("/apps/site/domains/www.example.com").status, 200);
    assert_error(&api.delete("/apps/site/domains/www.example.com"), 404, "not_found");
    assert_eq!(api.post("/apps/other/domains", json!({"hostname": "www.example.com"})).status, 201, "free again");
}

/// The desired state reads each table once for every app and puts the apps together in memory:
/// each app's entry carries its own release, config, formation, domains, restarts and
/// certificates, and nothing of another app's; an app whose slug is not uploaded is absent.
fn every_app_in_the_desired_state_has_its_own_parts(backend: Backend) {
    let api = Api::start(backend);
    let (cert, key) = openssl_certificate("www.beta.example.com", Some("DNS:www.beta.example.com"));
    for name in ["alpha", "beta", "gamma", "delta"] {
        assert_eq!(api.post("/apps", json!({"name": name})).status, 201);
        assert_eq!(
            api.post(&format!("/apps/{name}/domains"), json!({"hostname": format!("www.{name}.example.com")})).status,
            201
        );
        let slug = api.post(&format!("/apps/{name}/slugs"), json!({"process_types": {"web": format!("serve-{name}")}}));
        if name == "gamma" {
            continue; // never uploaded: not desired
        }
        let blob = format!("/apps/{name}/slugs/{}/blob", slug.body["id"].as_str().unwrap());
        let tarball = make_slug(&[("app/serve", name)]);
        assert_eq!(api.raw("PUT", &blob, Some(&api.token), Some(&tarball), "application/gzip").0, 200);
        assert_eq!(api.post(&format!("/apps/{name}/releases"), json!({"slug": slug.body["id"]})).status, 201);
        assert_eq!(api.patch(&format!("/apps/{name}/config-vars"), json!({"WHO": name})).status, 200);
    }
    api.patch("/apps/beta/formation", json!({"updates": [{"type": "web", "quantity": 3}]}));
    assert_eq!(api.delete("/apps/beta/dynos/web.2").status, 200);
    assert_eq!(
        api.post("/apps/beta/sni-endpoints", json!({"certificate_chain": cert, "private_key": key})).status,
        201
    );

    let desired = user_desired(&api);
    let apps = desired["apps"].as_array().unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a["app_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta", "delta"]);
    for app in apps {
        let name = app["app_name"].as_str().unwrap();
        assert_eq!(app["release"]["process_types"], json!({"web": format!("serve-{name}")}), "{name}");
        assert_eq!(app["release"]["config"], json!({"WHO": name}), "{name}");
        assert_eq!(app["release"]["version"], 3, "{name}: deploy, then config");
        let slug_id = app["release"]["slug_id"].as_str().unwrap();
        assert_eq!(app["release"]["slug_url"], format!("{}/apps/{name}/slugs/{slug_id}/blob", api.url));
        assert_eq!(app["domains"], json!([format!("www.{name}.example.com")]), "{name}");
        let quantity = if name == "beta" { 3 } else { 1 };
        assert_eq!(app["formation"], json!([{"type": "web", "quantity": quantity, "size": "basic"}]), "{name}");
        let restarts: Vec<&str> = app["restarts"].as_object().unwrap().keys().map(String::as_str).collect();
        let certificates = app["certificates"].as_array().unwrap().len();
        if name == "beta" {
            assert_eq!((restarts, certificates), (vec!["web.2"], 1));
        } else {
            assert_eq!((restarts.len(), certificates), (0, 0), "{name}");
        }
    }
}

fn sni_endpoints_are_checked_listed_and_reach_the_desired_state(backend: Backend) {
    let api = Api::start(backend);
    api.post("/apps", json!({"name": "site"}));
    let (cert, key) = openssl_certificate("www.example.com", Some("DNS:www.example.com,DNS:Example.com"));
    let (_, other_key) = openssl_certificate("other.example", Some("DNS:other.example"));
    let (no_san, no_san_key) = openssl_certificate("www.example.com", None);

    // Bad input: 422 with one line saying what is wrong, and nothing stored.
    let bad = [
        (json!({"certificate_chain": "junk", "private_key": key}), "certificate_chain holds no"),
        (json!({"certificate_chain": cert, "private_key": "junk"}), "private_key is not a PEM private key"),
        (json!({"certificate_chain": cert, "private_key": other_key}), "does not match"),
        (json!({"certificate_chain": no_san, "private_key": no_san_key}), "subject alternative names"),
        (json!({"certificate_chain": key, "private_key": key}), "certificate_chain holds no"),
    ];
    for (body, message) in bad {
        let answer = api.post("/apps/site/sni-endpoints", body);
        assert_error(&answer, 422, "invalid_params");
        let text = answer.body["message"].as_str().unwrap();
        assert!(text.contains(message) && !text.contains('\n'), "{text:?} should say {message:?}");
    }
    assert_error(&api.post("/apps/site/sni-endpoints", json!({"certificate_chain": cert})), 422, "invalid_params");
    assert_eq!(api.get("/apps/site/sni-endpoints").body, json!([]));

    let added = api.post("/apps/site/sni-endpoints", json!({"certificate_chain": cert, "private_key": key}));
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(added.body["hostnames"], json!(["www.example.com", "example.com"]));
    assert!(added.body.get("private_key").is_none() && added.body.get("certificate_chain").is_none());
    let expires = added.body["expires_at"].as_str().unwrap();
    assert!(expires.len() == 20 && expires.ends_with('Z') && expires > "2026-01-01", "{expires}");
    let id = added.body["id"].as_str().unwrap().to_string();
    let listed = api.get("/apps/site/sni-endpoints").body;
    assert_eq!(listed, json!([added.body]));
    assert!(!listed.to_string().contains("PRIVATE KEY"));
    assert_error(&api.get("/apps/nope/sni-endpoints"), 404, "not_found");

    // The runner gets chain and key once the app has a release with a slug.
    let slug = api.post("/apps/site/slugs", json!({"process_types": {"web": "serve"}}));
    let blob = format!("/apps/site/slugs/{}/blob", slug.body["id"].as_str().unwrap());
    api.raw("PUT", &blob, Some(&api.token), Some(&make_slug(&[("app/serve", "x")])), "application/gzip");
    api.post("/apps/site/releases", json!({"slug": slug.body["id"]}));
    let desired = user_desired(&api);
    assert_eq!(desired["apps"][0]["certificates"], json!([{"chain_pem": cert, "key_pem": key}]));

    assert_eq!(api.delete(&format!("/apps/site/sni-endpoints/{id}")).status, 200);
    assert_error(&api.delete(&format!("/apps/site/sni-endpoints/{id}")), 404, "not_found");
    assert_eq!(api.get("/apps/site/sni-endpoints").body, json!([]));
    assert_eq!(user_desired(&api)["apps"][0]["certificates"], json!([]));
}

/// `GET /runner/changes?after=N` answers as soon as the desired state changed, so a runner
/// waiting on it acts at once; a read or a refused change does not count.
fn the_runner_hears_of_changes_at_once(backend: Backend) {
    let api = Api::start(backend);
    let version = |after: u64| -> (u64, std::time::Duration) {
        let started = std::time::Instant::now();
        let answer = api.get(&format!("/runner/changes?after={after}"));
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        (answer.body["version"].as_u64().expect("version"), started.elapsed())
    };
    // A version other than the current one answers at once.
    let (now, took) = version(u64::MAX);
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    // A change while waiting ends the wait with the next version.
    let waiting = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| version(now));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(api.get("/apps").status, 200);
        assert_eq!(api.post("/apps", json!({"name": "Bad Name"})).status, 422);
        assert_eq!(api.post("/apps", json!({"name": "changed"})).status, 201);
        waiter.join().expect("waiter")
    });
    assert_eq!(waiting.0, now + 1, "one change, counted once");
    assert!(waiting.1 < std::time::Duration::from_secs(10), "{:?}", waiting.1);
    assert_eq!(api.call("GET", "/runner/changes", None, None).status, 401);
}

/// A provider speaking the add-on contract over real HTTP on loopback, recording each call
/// (`METHOD path basic-auth`): what the API must get right is what it sends and how it answers.
struct Provider {
    url: String,
    calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Provider {
    fn start() -> Provider {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = calls.clone();
        // Resources provisioned asynchronously: id → (plan, polls so far, number).
        let polled = std::sync::Mutex::new(std::collections::HashMap::<String, (String, u32, usize)>::new());
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                reader.read_line(&mut line).expect("request line");
                let (mut length, mut auth) = (0usize, String::new());
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).expect("header");
                    if header.trim().is_empty() {
                        break;
                    }
                    let lower = header.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) =
                        header.strip_prefix("Authorization: Basic ").or(header.strip_prefix("authorization: Basic "))
                    {
                        auth = v.trim().to_string();
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).expect("body");
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                log.lock().unwrap().push(format!("{method} {path} {auth}"));
                let (status, answer) = if method == "POST" {
                    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let plan = request["plan"].as_str().unwrap_or_default().to_string();
                    let id = format!("res-{n}");
                    let mut answer =
                        json!({"id": id, "config": {"URL": format!("postgres://u{n}:pw@db-{n}:5000/d?plan={plan}")}});
                    // Plans `:served` and `:ghost` name the app running the server (one that
                    // exists, one that does not); `:slow` and `:doomed` are provisioned
                    // asynchronously (202, then polled), `:doomed` failing.
                    if plan.ends_with(":served") {
                        answer["service_app"] = json!("vaultdb");
                    } else if plan.ends_with(":ghost") {
                        answer["service_app"] = json!("no-such-app");
                    }
                    if plan.ends_with(":slow") || plan.ends_with(":doomed") {
                        polled.lock().unwrap().insert(id.clone(), (plan, 0, n));
                        ("202 Accepted", json!({"id": id}).to_string())
                    } else {
                        ("201 Created", answer.to_string())
                    }
                } else if method == "GET" {
                    let id = path.trim_start_matches("/ouro/resources/");
                    let mut polled = polled.lock().unwrap();
                    match polled.get_mut(id) {
                        Some((plan, polls, n)) => {
                            *polls += 1;
                            let answer = match (plan.ends_with(":doomed"), *polls < 3) {
                                (_, true) => json!({"state": "provisioning"}),
                                (true, false) => json!({"state": "failed", "message": "out of disk"}),
                                (false, false) => {
                                    json!({"state": "provisioned", "config": {"URL": format!("postgres://slow{n}@db:5000/d")}})
                                }
                            };
                            ("200 OK", answer.to_string())
                        }
                        None => ("404 Not Found", json!({"message": "no such resource"}).to_string()),
                    }
                } else {
                    ("204 No Content", String::new())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Provider { url, calls }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

/// A token scoped to the runner reads the desired state, waits for changes, reports dynos and
/// fetches slugs, and is refused everything else; only an admin's full token makes one.
fn runner_tokens_reach_only_the_runners_endpoints(backend: Backend) {
    let api = Api::start(backend);
    assert_eq!(api.post("/apps", json!({"name": "shop"})).status, 201);
    let slug = api.post("/apps/shop/slugs", json!({"process_types": {"web": "run"}}));
    let blob = format!("/apps/shop/slugs/{}/blob", slug.body["id"].as_str().expect("slug id"));
    let tarball = make_slug(&[("app/run", "#!/bin/sh\n")]);
    let (put, _) = api.raw("PUT", &blob, Some(&api.token), Some(&tarball), "application/gzip");
    assert_eq!(put, 200);
    let made = api.post("/runner/tokens", json!({}));
    assert_eq!(made.status, 201, "{:?}", made.body);
    let token = made.body["token"].as_str().expect("the token, once").to_string();

    assert_eq!(api.call("GET", "/runner/desired-state", Some(&token), None).status, 200);
    assert_eq!(api.call("GET", "/runner/changes?after=999999", Some(&token), None).status, 200);
    let report = json!({"dynos": []}).to_string();
    assert_eq!(api.call("PUT", "/runner/dynos", Some(&token), Some(report.as_bytes())).status, 200);
    let (got, bytes) = api.raw("GET", &blob, Some(&token), None, "application/json");
    assert_eq!((got, bytes.len()), (200, tarball.len()));
    for (method, path) in [
        ("GET", "/apps"),
        ("GET", "/apps/shop/config-vars"),
        ("POST", "/apps"),
        ("GET", "/account"),
        ("POST", "/runner/tokens"),
        ("GET", "/audit-events"),
        ("DELETE", "/apps/shop"),
    ] {
        let answer = api.call(method, path, Some(&token), Some(b"{}"));
        assert_eq!(answer.status, 403, "{method} {path}: {:?}", answer.body);
        assert!(
            answer.body["message"].as_str().unwrap_or_default().contains("scoped to the runner"),
            "{:?}",
            answer.body
        );
    }
    assert_eq!(api.get("/apps/shop").status, 200, "nothing was deleted");
}

/// The shipped add-on provider's token (in its app's config) is of a user that is no admin,
/// scoped to `provider`: it reads its own app and manages the server apps it makes, within
/// bounds (volumes named after the app, joins only to its own apps, neither the host's network
/// nor the API), and is refused everything else, other users' apps first.
/// The token of the `ouro-redis` provider app (a user that is no admin), once the API made it
/// (with `OURO_ADDON_PROVIDERS=redis`).
fn provider_token(api: &Api) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let config = api.get("/apps/ouro-redis/config-vars");
        if let Some(token) = config.body["OURO_API_TOKEN"].as_str() {
            return token.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "the provider app got no token: {:?}", config.body);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn provider_tokens_manage_only_their_own_server_apps(backend: Backend) {
    let api = Api::start_with(backend, &[("OURO_ADDON_PROVIDERS", "redis")]);
    assert_eq!(api.post("/apps", json!({"name": "shop"})).status, 201);
    let token = provider_token(&api);
    let call =
        |method: &str, path: &str, body: Value| api.call(method, path, Some(&token), Some(body.to_string().as_bytes()));

    let own = call("GET", "/apps/ouro-redis", json!({}));
    assert_eq!(own.status, 200, "{:?}", own.body);
    let release = own.body["current_release"].as_i64().expect("a release");
    assert_eq!(call("GET", &format!("/apps/ouro-redis/releases/{release}"), json!({})).status, 200);
    assert_eq!(call("POST", "/apps", json!({"name": "redis-x1"})).status, 201);
    assert_eq!(call("PATCH", "/apps/redis-x1/config-vars", json!({"REDIS_PASSWORD": "p"})).status, 200);
    let service =
        json!({"mounts": [{"volume": "redis-x1-data", "path": "/data"}], "joins": ["ouro-redis"], "listens": true});
    let made = call("PUT", "/apps/redis-x1/service", service);
    assert_eq!(made.status, 200, "{:?}", made.body);
    assert_eq!(api.get("/apps/redis-x1/service").body["listens"], true);
    for (service, why) in [
        (json!({"mounts": [{"volume": "ouro-data", "path": "/data"}]}), "volumes are named"),
        (json!({"joins": ["shop"]}), "only apps it owns"),
        (json!({"host_network": true}), "host's network"),
        (json!({"api_access": true}), "host's network"),
    ] {
        let refused = call("PUT", "/apps/redis-x1/service", service);
        assert_eq!(refused.status, 403, "{:?}", refused.body);
        assert!(refused.body["message"].as_str().unwrap_or_default().contains(why), "{:?}", refused.body);
    }
    assert_eq!(api.get("/apps/redis-x1/service").body["mounts"][0]["volume"], "redis-x1-data", "unchanged");
    for (method, path) in [("GET", "/apps/shop"), ("GET", "/apps/shop/config-vars"), ("DELETE", "/apps/shop")] {
        let refused = call(method, path, json!({}));
        assert_eq!(refused.status, 403, "{method} {path}: {:?}", refused.body);
        assert!(refused.body["message"].as_str().unwrap_or_default().contains("access"), "{:?}", refused.body);
    }
    for (method, path) in [
        ("GET", "/apps"),
        ("GET", "/upgrades"),
        ("POST", "/runner/tokens"),
        ("GET", "/runner/desired-state"),
        ("POST", "/apps/shop/addons"),
        ("POST", "/addon-providers"),
        ("GET", "/audit-events"),
    ] {
        let refused = call(method, path, json!({}));
        assert_eq!(refused.status, 403, "{method} {path}: {:?}", refused.body);
        assert!(
            refused.body["message"].as_str().unwrap_or_default().contains("scoped to the provider"),
            "{:?}",
            refused.body
        );
    }
    assert_eq!(call("DELETE", "/apps/redis-x1", json!({})).status, 200);
    assert_eq!(api.get("/apps/shop").status, 200, "nothing of others was touched");
}

/// An app's log: lines the runner ships (`POST /runner/logs`, a runner token), the API's own
/// events (config change, release, scaling) and dyno state changes from the runner's reports
/// (a crash with its exit status), read oldest first with filters, followed live with
/// `tail`, and forwarded to a syslog drain (a real TCP receiver here) in RFC 5424.
fn logs_gather_shipped_lines_and_platform_events_and_reach_drains(backend: Backend) {
    use std::io::{BufRead, BufReader, Read, Write};
    // The drain receiver listens on loopback, which the egress policy opens only if told.
    let api = Api::start_with(backend, &[("OURO_EGRESS_ALLOW", "127.0.0.1/32")]);
    assert_eq!(api.post("/apps", json!({"name": "shop"})).status, 201);
    assert_eq!(api.patch("/apps/shop/config-vars", json!({"GREETING": "hi"})).status, 200);
    let runner = api.post("/runner/tokens", json!({})).body["token"].as_str().expect("a runner token").to_string();
    let ship = |lines: Value| {
        let body = lines.to_string();
        api.call("POST", "/runner/logs", Some(&runner), Some(body.as_bytes())).status
    };
    let line = |process: &str, source: &str, text: &str| json!({"at": "2026-11-26T09:00:00.000001Z", "app": "shop", "source": source, "process": process, "text": text});
    let shipped = ship(json!([
        line("web.1", "app", "listening on 5000"),
        line("router", "ouro", "at=info method=GET path=\"/\" request_id=abc status=200"),
        line("worker.1", "app", "working"),
    ]));
    assert_eq!(shipped, 204);
    let read = |query: &str| {
        let (status, body) = api.raw("GET", &format!("/apps/shop/logs{query}"), Some(&api.token), None, "text/plain");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        String::from_utf8(body).expect("utf-8")
    };
    let all = read("");
    assert!(all.contains("ouro[api]: Set GREETING config vars by"), "{all}");
    assert!(all.contains("ouro[api]: Release v2 created by"), "{all}");
    let web = all.find("app[web.1]: listening on 5000").expect("the dyno's line");
    let router = all.find("ouro[router]: at=info method=GET").expect("the router's line");
    assert!(web < router, "in the order shipped: {all}");
    assert!(all.lines().all(|l| l.len() > 27 && l.as_bytes()[26] == b'Z'), "RFC 3339 with microseconds: {all}");
    assert_eq!(read("?dyno=web").lines().count(), 1);
    assert!(read("?source=ouro").lines().all(|l| l.contains(" ouro[")));
    assert_eq!(read("?lines=1").lines().count(), 1);
    assert_eq!(api.get("/apps/shop/logs?dyno=bad%20name").status, 422);
    assert_eq!(ship(json!([{"app": "shop"}])), 422, "a line that is not one");

    // Dyno reports: the first is a baseline; a crash then says its exit status.
    let dyno = |state: &str, reason: Option<&str>| {
        json!({"dynos": [{"id": "c1", "app": "shop", "name": "web.1", "type": "web", "state": state,
            "size": "standard-1x", "release": 2, "reason": reason, "restarts": 0, "created_at": "2026-11-26T09:00:00Z"}]})
    };
    for report in [dyno("up", None), dyno("crashed", Some("process exited with status 3"))] {
        let body = report.to_string();
        assert_eq!(api.call("PUT", "/runner/dynos", Some(&runner), Some(body.as_bytes())).status, 200);
    }
    let events = read("?dyno=web.1");
    assert!(events.contains("ouro[web.1]: Process exited with status 3"), "{events}");
    assert!(events.contains("ouro[web.1]: State changed from up to crashed"), "{events}");

    // `tail`: the recent lines, then each new one as it comes.
    let address = api.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let request = format!(
        "GET /apps/shop/logs?lines=1&tail=true HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {}\r\n\r\n",
        api.token
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut reader = BufReader::new(stream);
    let mut seen = String::new();
    let mut expect = |what: &str, reader: &mut BufReader<std::net::TcpStream>| {
        while !seen.contains(what) {
            let mut piece = String::new();
            assert!(reader.read_line(&mut piece).expect("a line within 10 s") > 0, "the stream ended: {seen}");
            seen.push_str(&piece);
        }
    };
    expect("State changed from up to crashed", &mut reader);
    assert_eq!(api.patch("/apps/shop/formation", json!({"updates": [{"type": "web", "quantity": 2}]})).status, 200);
    expect("ouro[api]: Scaled to web@2:", &mut reader);
    assert_eq!(ship(json!([line("web.2", "app", "a new line")])), 204);
    expect("app[web.2]: a new line", &mut reader);

    // A drain: a syslog receiver on loopback gets the app's lines from now on.
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("syslog+tcp://127.0.0.1:{}", receiver.local_addr().expect("addr").port());
    assert_eq!(api.post("/apps/shop/log-drains", json!({"url": "ftp://x"})).status, 422);
    let made = api.post("/apps/shop/log-drains", json!({"url": url}));
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(api.post("/apps/shop/log-drains", json!({"url": url})).status, 409);
    assert_eq!(ship(json!([line("web.1", "app", "to the drain")])), 204);
    let (mut connection, _) = receiver.accept().expect("the drain connects");
    connection.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let mut got = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("to the drain") {
        let n = connection.read(&mut buffer).expect("the drain's lines within 10 s");
        assert!(n > 0, "the drain closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buffer[..n]);
    }
    let framed = String::from_utf8_lossy(&got).to_string();
    assert!(framed.contains("<190>1 ") && framed.contains(" shop app web.1 - - to the drain"), "{framed}");
    let listed = api.get("/apps/shop/log-drains");
    assert_eq!(listed.body[0]["url"], url.as_str());
    let encoded: String = url.bytes().map(|b| format!("%{b:02X}")).collect();
    assert_eq!(api.delete(&format!("/apps/shop/log-drains/{encoded}")).status, 200);
    assert_eq!(api.get("/apps/shop/log-drains").body, json!([]));
}

/// `ouro run`'s meeting point: an attached one-off is in the desired state with its terminal
/// and lifetime; the caller's and the runner's upgrades to `ouro-attach` are paired (in either
/// order) and bytes flow both ways untouched; detached or unknown dynos and bad requests get
/// 4xx.
fn attached_one_offs_pair_the_caller_with_the_runner(backend: Backend) {
    use std::io::{Read, Write};
    let api = Api::start(backend);
    assert_eq!(api.post("/apps", json!({"name": "shop"})).status, 201);
    let slug = api.post("/apps/shop/slugs", json!({"process_types": {"web": "run"}}));
    let blob = format!("/apps/shop/slugs/{}/blob", slug.body["id"].as_str().expect("slug id"));
    let (put, _) =
        api.raw("PUT", &blob, Some(&api.token), Some(&make_slug(&[("app/run", "#!/bin/sh\n")])), "application/gzip");
    assert_eq!(put, 200);
    assert_eq!(api.post("/apps/shop/releases", json!({"slug": slug.body["id"]})).status, 201);
    let runner = api.post("/runner/tokens", json!({})).body["token"].as_str().expect("token").to_string();

    for (body, status) in [
        (json!({"command": "sh", "tty": true}), 422),
        (json!({"command": "sh", "attach": true, "time_to_live": 0}), 422),
        (json!({"command": "sh", "attach": true, "time_to_live": 100_000}), 422),
    ] {
        assert_eq!(api.post("/apps/shop/dynos", body).status, status);
    }
    let detached = api.post("/apps/shop/dynos", json!({"command": "sleep 1"}));
    assert_eq!(detached.body["name"], "run.1");
    let made = api.post("/apps/shop/dynos", json!({"command": "sh", "attach": true, "tty": true, "time_to_live": 60}));
    assert_eq!((made.status, made.body["name"].as_str()), (201, Some("run.2")), "{:?}", made.body);
    let desired = api.call("GET", "/runner/desired-state", Some(&runner), None).body;
    let shop = desired["apps"].as_array().expect("apps").iter().find(|a| a["app_name"] == "shop").cloned();
    let shop = shop.expect("shop is desired");
    let one_off = shop["one_offs"].as_array().expect("one-offs").iter().find(|o| o["number"] == 2).cloned();
    let one_off = one_off.expect("run.2 is desired");
    assert_eq!((one_off["attach"].clone(), one_off["tty"].clone()), (json!(true), json!(true)));
    assert_eq!(one_off["time_to_live_seconds"], 60);

    let address = api.url.trim_start_matches("http://").to_string();
    let upgrade = |path: &str, token: &str| -> (u16, std::net::TcpStream) {
        let mut stream = std::net::TcpStream::connect(&address).expect("connect");
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\n\
             Upgrade: ouro-attach\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("send");
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).expect("an answer"), 1, "closed: {}", String::from_utf8_lossy(&answer));
            answer.push(byte[0]);
        }
        let status = String::from_utf8_lossy(&answer).split_whitespace().nth(1).and_then(|s| s.parse().ok());
        (status.unwrap_or(0), stream)
    };
    assert_eq!(upgrade("/apps/shop/dynos/run.1/attach", &api.token).0, 422, "run.1 is detached");
    assert_eq!(upgrade("/apps/shop/dynos/run.9/attach", &api.token).0, 404);
    assert_eq!(upgrade("/apps/shop/dynos/run.2/attach", "ouro_bad_token").0, 401);

    let (status, mut caller) = upgrade("/apps/shop/dynos/run.2/attach", &api.token);
    assert_eq!(status, 101);
    let (status, mut dyno) = upgrade("/runner/attach/shop/run.2", &runner);
    assert_eq!(status, 101);
    let out = ouro_types::attach::frame(ouro_types::attach::STDOUT, b"hello from the dyno\n");
    dyno.write_all(&out).expect("dyno writes");
    let mut got = vec![0u8; out.len()];
    caller.read_exact(&mut got).expect("the caller reads");
    assert_eq!(got, out);
    let input = ouro_types::attach::frame(ouro_types::attach::STDIN, b"ls\n");
    caller.write_all(&input).expect("caller writes");
    let mut got = vec![0u8; input.len()];
    dyno.read_exact(&mut got).expect("the dyno reads");
    assert_eq!(got, input);
}

/// A provider that answers 202 is polled: the add-on is `provisioning` without config vars
/// until the provider says it is provisioned, then its vars come in one release. One whose
/// provider fails is deprovisioned and gone, and asking for it says why.
fn slow_addons_are_provisioned_in_the_background(backend: Backend) {
    let api = Api::start(backend);
    let provider = Provider::start();
    assert_eq!(api.post("/apps", json!({"name": "shop"})).status, 201);
    assert_eq!(api.post("/addon-providers", json!({"name": "postgresql", "url": provider.url})).status, 201);

    let created = api.post("/apps/shop/addons", json!({"plan": "postgresql:slow"}));
    assert_eq!(created.status, 202, "{:?}", created.body);
    assert_eq!(created.body["state"], "provisioning");
    let name = created.body["name"].as_str().expect("name").to_string();
    assert!(api.get("/apps/shop/config-vars").body.get("DATABASE_URL").is_none(), "no var before it is ready");
    let backups = api.get(&format!("/apps/shop/addons/{name}/backups"));
    assert_eq!(backups.status, 200, "listing backups works while provisioning");
    let capture = api.post(&format!("/apps/shop/addons/{name}/backups"), json!({}));
    assert_eq!(capture.status, 409, "{:?}", capture.body);
    assert!(capture.body["message"].as_str().unwrap_or_default().contains("addons:wait"), "{:?}", capture.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while api.get(&format!("/apps/shop/addons/{name}")).body["state"] != "provisioned" {
        assert!(std::time::Instant::now() < deadline, "still provisioning after 30 s");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        api.get("/apps/shop/config-vars").body["DATABASE_URL"]
            .as_str()
            .is_some_and(|u| u.starts_with("postgres://slow"))
    );
    // The attachment name finds it too.
    assert_eq!(api.get("/apps/shop/addons/DATABASE").body["name"], name.as_str());

    let doomed = api.post("/apps/shop/addons", json!({"plan": "postgresql:doomed"}));
    assert_eq!(doomed.status, 202, "{:?}", doomed.body);
    let doomed = doomed.body["name"].as_str().expect("name").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let gone = loop {
        let answer = api.get(&format!("/apps/shop/addons/{doomed}"));
        if answer.status == 404 {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "still there after 30 s: {:?}", answer.body);
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(gone.body["message"].as_str().unwrap_or_default().contains("out of disk"), "{:?}", gone.body);
    let config = api.get("/apps/shop/config-vars").body;
    assert!(config.get("HEROKU_POSTGRESQL_AMBER_URL").is_none(), "{config}");
    assert!(provider.calls().iter().any(|c| c.starts_with("DELETE /ouro/resources/")), "deprovisioned at the provider");
    assert_eq!(api.get("/apps/shop/addons").body.as_array().map(Vec::len), Some(1));
}

/// Add-ons over the API: a provisioned add-on sets `DATABASE_URL` in a new release, a second
/// gets a colour name, attach/detach add and remove the var with releases, destroy needs a
/// confirm and deprovisions, an unreachable provider changes nothing, deleting an app
/// deprovisions its add-ons.
fn addons_set_config_vars_attach_detach_and_destroy(backend: Backend) {
    let api = Api::start(backend);
    let provider = Provider::start();
    for app in ["shop", "blog"] {
        assert_eq!(api.post("/apps", json!({"name": app})).status, 201);
    }
    assert_error(&api.post("/apps/shop/addons", json!({"plan": "postgresql"})), 404, "not_found");
    let registered = api.post("/addon-providers", json!({"name": "postgresql", "url": provider.url}));
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    let password = registered.body["password"].as_str().expect("the password, once").to_string();
    assert!(api.get("/addon-providers").body[0].get("password").is_none(), "never shown again");
    assert_error(&api.post("/addon-providers", json!({"name": "postgresql", "url": provider.url})), 409, "conflict");

    let created = api.post("/apps/shop/addons", json!({"plan": "postgresql"}));
    assert_eq!(created.status, 201, "{:?}", created.body);
    let first = created.body["name"].as_str().expect("name").to_string();
    assert!(first.starts_with("postgresql-"), "{first}");
    assert_eq!(created.body["plan"]["name"], "postgresql:standard");
    assert_eq!(created.body["attachments"][0]["config_vars"], json!(["DATABASE_URL"]));
    let config = api.get("/apps/shop/config-vars").body;
    assert_eq!(config["DATABASE_URL"], "postgres://u0:pw@db-0:5000/d?plan=postgresql:standard");
    assert_eq!(api.get("/apps/shop/releases").body.as_array().map(Vec::len), Some(2), "one release for the var");
    // The provider got the contract's call, with its credentials.
    let expected_auth = {
        let out = std::process::Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("base64");
        use std::io::Write;
        out.stdin.as_ref().expect("stdin").write_all(format!("postgresql:{password}").as_bytes()).expect("write");
        String::from_utf8(out.wait_with_output().expect("base64").stdout).expect("utf-8")
    };
    assert_eq!(provider.calls(), vec![format!("POST /ouro/resources {expected_auth}")]);

    // A second one gets Heroku's colour name.
    let second = api.post("/apps/shop/addons", json!({"plan": "postgresql:large"}));
    assert_eq!(second.status, 201, "{:?}", second.body);
    let second_name = second.body["name"].as_str().expect("name").to_string();
    assert_eq!(second.body["attachments"][0]["name"], "HEROKU_POSTGRESQL_AMBER");
    assert!(api.get("/apps/shop/config-vars").body["HEROKU_POSTGRESQL_AMBER_URL"].as_str().is_some());
    assert_eq!(api.get("/apps/shop/addons").body.as_array().map(Vec::len), Some(2));
    // The CLI shows them, and refuses to destroy without the confirm.
    let cli = ouro_tests::Cli::new(&api);
    ouro_tests::ok(&cli.login(&api.token));
    let listed = ouro_tests::ok(&cli.run(&["addons", "-a", "shop"]));
    assert!(listed.contains(&first) && listed.contains("DATABASE_URL") && listed.contains(&second_name), "{listed}");
    let shown = ouro_tests::ok(&cli.run(&["addons:info", &second_name, "-a", "shop"]));
    assert!(shown.contains("postgresql:large") && shown.contains("shop::HEROKU_POSTGRESQL_AMBER"), "{shown}");
    let refused = cli.run(&["addons:destroy", &second_name, "-a", "shop"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        ouro_tests::stderr(&refused).contains(&format!("--confirm {second_name}")),
        "{}",
        ouro_tests::stderr(&refused)
    );

    // Attach the first to blog; detach removes blog's var in a new release; the add-on stays.
    let attached = api.post("/apps/blog/addon-attachments", json!({"addon": first}));
    assert_eq!(attached.status, 201, "{:?}", attached.body);
    assert_eq!(api.get("/apps/blog/config-vars").body["DATABASE_URL"], config["DATABASE_URL"]);
    assert_error(&api.post("/apps/blog/addon-attachments", json!({"addon": first, "as": "DATABASE"})), 409, "conflict");
    let releases = api.get("/apps/blog/releases").body.as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(api.delete("/apps/blog/addon-attachments/DATABASE").status, 200);
    assert!(api.get("/apps/blog/config-vars").body.get("DATABASE_URL").is_none());
    assert_eq!(api.get("/apps/blog/releases").body.as_array().map(Vec::len), Some(releases + 1));
    assert_error(&api.delete("/apps/shop/addon-attachments/DATABASE"), 422, "invalid_params");

    // Destroy needs the confirm; then the provider is told and the var goes.
    assert_error(&api.delete(&format!("/apps/shop/addons/{first}")), 422, "invalid_params");
    assert!(api.get("/apps/shop/config-vars").body["DATABASE_URL"].as_str().is_some());
    assert_eq!(api.delete(&format!("/apps/shop/addons/{first}?confirm={first}")).status, 200);
    assert!(api.get("/apps/shop/config-vars").body.get("DATABASE_URL").is_none());
    assert_eq!(
        provider.calls().last().map(|c| c.split(' ').take(2).collect::<Vec<_>>().join(" ")),
        Some("DELETE /ouro/resources/res-0".into())
    );

    // An add-on whose server runs as an app on Ouro: that app joins the networks of exactly
    // the apps the add-on is attached to, following attach and detach.
    assert_eq!(api.post("/apps", json!({"name": "vaultdb"})).status, 201);
    let slug = api.post("/apps/vaultdb/slugs", json!({"process_types": {"server": "serve"}}));
    let blob = format!("/apps/vaultdb/slugs/{}/blob", slug.body["id"].as_str().unwrap());
    api.raw("PUT", &blob, Some(&api.token), Some(&make_slug(&[("app/serve", "x")])), "application/gzip");
    assert_eq!(api.post("/apps/vaultdb/releases", json!({"slug": slug.body["id"]})).status, 201);
    let joins = || -> Value {
        let desired = api.get("/runner/desired-state").body;
        let apps = desired["apps"].as_array().cloned().unwrap_or_default();
        apps.into_iter().find(|a| a["app_name"] == "vaultdb").map(|a| a["joins"].clone()).unwrap_or(Value::Null)
    };
    assert_eq!(joins(), json!([]));
    let served = api.post("/apps/shop/addons", json!({"plan": "postgresql:served", "as": "VAULT"}));
    assert_eq!(served.status, 201, "{:?}", served.body);
    let served_name = served.body["name"].as_str().expect("name").to_string();
    assert_eq!(joins(), json!(["shop"]));
    assert_eq!(api.post("/apps/blog/addon-attachments", json!({"addon": served_name})).status, 201);
    assert_eq!(joins(), json!(["blog", "shop"]));
    assert_eq!(api.delete("/apps/blog/addon-attachments/DATABASE").status, 200);
    assert_eq!(joins(), json!(["shop"]));
    // A provider naming an app that does not exist: refused, and deprovisioned at the provider.
    let calls = provider.calls().len();
    assert_error(&api.post("/apps/shop/addons", json!({"plan": "postgresql:ghost"})), 502, "bad_gateway");
    assert!(provider.calls()[calls + 1].starts_with("DELETE /ouro/resources/"), "{:?}", provider.calls());
    assert!(api.get("/apps/shop/addons").body.as_array().is_some_and(|a| a.len() == 2), "nothing recorded");

    // A provider that cannot be reached: a clear 503 and nothing made.
    let down = api.post("/addon-providers", json!({"name": "redis", "url": "http://127.0.0.1:9"}));
    assert_eq!(down.status, 201);
    let before = snapshot(&api);
    let failed = api.post("/apps/shop/addons", json!({"plan": "redis"}));
    assert_error(&failed, 503, "service_unavailable");
    assert!(
        failed.body["message"].as_str().unwrap_or_default().contains("`redis` cannot be reached"),
        "{:?}",
        failed.body
    );
    assert_eq!(snapshot(&api), before);
    let failed = cli.run(&["addons:create", "redis", "-a", "shop"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(ouro_tests::stderr(&failed).contains("cannot be reached"), "{}", ouro_tests::stderr(&failed));

    // Deleting the app deprovisions what it still has.
    let calls = provider.calls().len();
    assert_eq!(api.delete("/apps/shop").status, 200);
    let last = provider.calls();
    assert_eq!(last.len(), calls + 2, "both of shop's add-ons: {last:?}");
    assert!(last[calls..].iter().all(|c| c.starts_with("DELETE /ouro/resources/res-")), "{last:?}");
    assert!(api.get("/apps/blog/addons").body.as_array().is_some_and(|a| a.is_empty()), "{second_name} went with shop");
    assert_eq!(joins(), json!([]), "{served_name} went too");
}

/// Deploys a slug (web only) to a new app `name`; returns the slug's id.
fn deploy_web_slug(api: &Api, name: &str) -> String {
    assert_eq!(api.post("/apps", json!({"name": name})).status, 201);
    let slug = api.post(&format!("/apps/{name}/slugs"), json!({"process_types": {"web": "python3 web.py"}}));
    assert_eq!(slug.status, 201, "{:?}", slug.body);
    let slug_id = slug.body["id"].as_str().unwrap().to_string();
    let blob_path = format!("/apps/{name}/slugs/{slug_id}/blob");
    let tarball = make_slug(&[("app/web.py", &format!("print('{name}')\n"))]);
    assert_eq!(api.raw("PUT", &blob_path, Some(&api.token), Some(&tarball), "application/gzip").0, 200);
    assert_eq!(api.post(&format!("/apps/{name}/releases"), json!({"slug": slug_id})).status, 201);
    slug_id
}

/// `ouro stack:update`'s call: an admin's update releases every app whose slug runs on the run
/// or the build stack (same slug, same config) and the desired state names the update for
/// those releases only; others may not; a stack that is not there is a 404.
fn stack_updates_release_every_app_on_a_stack(backend: Backend) {
    let api = Api::start_with(backend, &[("OURO_ADDON_PROVIDERS", "redis")]);
    let slug_id = deploy_web_slug(&api, "shop");
    api.patch("/apps/shop/config-vars", json!({"GREETING": "hej"}));
    assert_eq!(api.post("/apps", json!({"name": "empty"})).status, 201);
    let stack_update_of = |app: &str| {
        let desired = api.get("/runner/desired-state").body;
        let apps = desired["apps"].as_array().cloned().unwrap_or_default();
        let entry = apps.into_iter().find(|a| a["app_name"] == app).unwrap_or_else(|| panic!("{app} is desired"));
        entry["release"]["stack_update"].clone()
    };
    assert_eq!(stack_update_of("shop"), Value::Null);

    // Not an admin: refused, and nothing released.
    let provider = provider_token(&api);
    let refused = api.call("POST", "/stacks/debian-13/actions/update", Some(&provider), Some(b"{}"));
    assert_error(&refused, 403, "forbidden");
    assert_eq!(versions(&api, "shop").len(), 3);
    assert_error(&api.post("/stacks/heroku-24/actions/update", json!({})), 404, "not_found");

    let builder = api.get("/apps/ouro-builder").body["current_release"].as_i64().expect("the builder's release");
    let update = api.post("/stacks/debian-13/actions/update", json!({}));
    assert_eq!(update.status, 202, "{:?}", update.body);
    let id = update.body["update"]["id"].as_str().expect("an update id").to_string();
    assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    assert_eq!(update.body["update"]["actor"], "admin@ouro.local");
    let mut released: Vec<(String, i64)> = update.body["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["app"].as_str().unwrap().to_string(), r["version"].as_i64().unwrap()))
        .collect();
    released.sort();
    // The provider app has no slug yet (no runner here); the builder's is on the build stack.
    assert_eq!(released, [("ouro-builder".to_string(), builder + 1), ("shop".to_string(), 4)], "{:?}", update.body);
    let v4 = api.get("/apps/shop/releases/v4").body;
    assert_eq!(v4["slug"]["id"], slug_id);
    assert_eq!(v4["description"], format!("Stack update: debian-13 with Debian's latest updates (update {id})"));
    assert_eq!(api.get("/apps/shop/config-vars").body, json!({"GREETING": "hej"}));
    assert_eq!(versions(&api, "empty").len(), 1, "an app with no slug is left alone");
    assert_eq!(stack_update_of("shop"), json!(id));
    assert_eq!(stack_update_of("ouro-builder"), json!(id), "builds run on the updated build stack");
    let builder_release = api.get(&format!("/apps/ouro-builder/releases/v{}", builder + 1)).body;
    assert_eq!(
        builder_release["description"],
        format!("Stack update: debian-13-build with Debian's latest updates (update {id})")
    );

    // A second update is later than the first, and so is every release made after it.
    let again = api.post("/stacks/debian-13/actions/update", json!({}));
    let second = again.body["update"]["id"].as_str().unwrap().to_string();
    assert!(second.parse::<u64>().unwrap() > id.parse::<u64>().unwrap(), "{id} then {second}");
    deploy_web_slug(&api, "blog");
    assert_eq!(stack_update_of("blog"), json!(second));
    assert_eq!(stack_update_of("shop"), json!(second));
}

/// `OURO_STACK_UPDATE_SECONDS`: once the stack the runner reports has updates older than that,
/// the API asks for a stack update by itself (and not before the runner reported any), and
/// `GET /stacks` says it is pending until the runner reports the updated stack.
fn the_schedule_updates_a_stack_whose_updates_are_too_old(backend: Backend) {
    let api = Api::start_with(backend, &[("OURO_STACK_UPDATE_SECONDS", "2")]);
    deploy_web_slug(&api, "shop");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(versions(&api, "shop").len(), 2, "no stack reported yet: nothing to judge");

    let report = |update: Value| {
        let stack = json!({"name": "debian-13", "image": "ouro/stack:trixie-x", "updated_at": "2026-01-01T00:00:00Z", "update": update});
        let body = json!({"dynos": [], "stacks": [stack]}).to_string();
        let answer = api.call("PUT", "/runner/dynos", Some(&api.token), Some(body.as_bytes()));
        assert!(answer.status < 300, "{:?}", answer.body);
    };
    report(Value::Null);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let release = loop {
        let releases = api.get("/apps/shop/releases").body;
        if let Some(r) = releases.as_array().and_then(|r| r.get(2)) {
            break r.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled update: {releases:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let description = release["description"].as_str().unwrap().to_string();
    assert!(description.starts_with("Stack update: debian-13"), "{description}");
    assert_eq!(release["user"]["email"], "ouro (schedule)", "{release:?}");
    let update = description.rsplit("(update ").next().unwrap().trim_end_matches(')').to_string();
    // Pending until the runner reports a stack with it (the schedule goes on every 2 s here:
    // a later one may be pending by then, never this one).
    let pending = api.get("/stacks").body[0]["pending_update"].as_str().expect("an update is pending").to_string();
    assert!(pending.parse::<u64>().unwrap() >= update.parse::<u64>().unwrap(), "{pending} {update}");
    report(json!(pending));
    let after = api.get("/stacks").body[0].clone();
    assert_eq!(after["update"], json!(pending));
    assert!(
        after["pending_update"].as_str().is_none_or(|later| later.parse::<u64>().unwrap() > pending.parse().unwrap()),
        "{after:?}"
    );
}
