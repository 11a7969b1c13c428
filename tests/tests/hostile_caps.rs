//! Issue 15's hostile suite, the caps: what one user or one app may hold at once (README's
//! "Limits"; `api/src/limits.rs`). Each cap is reached through HTTP against the real `ouro-api`
//! binary, on SQLite and on PostgreSQL: the request past it is refused with `422
//! invalid_params` and a one-line message naming the cap and what to do, and changes nothing.
//! Each test says how it was checked to fail on the code before the cap.

use ouro_tests::{Answer, Api, Backend, Value, json, make_slug, openssl_certificate};

ouro_tests::on_both_backends!(
    a_user_owns_at_most_100_apps,
    an_app_runs_at_most_10_one_offs_at_once,
    a_one_off_env_holds_config_var_names_and_at_most_64_kib,
    an_app_has_at_most_100_custom_domains,
    an_app_has_at_most_10_sni_endpoints,
    an_app_has_at_most_10_drains,
    an_app_runs_at_most_100_dynos_in_all,
);

/// `answer` is a 422 `invalid_params` whose one-line message says `says`.
fn capped(answer: &Answer, says: &str) {
    assert_eq!(answer.status, 422, "{:?}", answer.body);
    assert_eq!(answer.body["id"], "invalid_params", "{:?}", answer.body);
    let message = answer.body["message"].as_str().unwrap_or_default();
    assert!(message.contains(says) && !message.contains('\n'), "{message:?} should say {says:?}");
}

fn created(answer: Answer) -> Value {
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    answer.body
}

fn count(answer: Answer) -> usize {
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body.as_array().map_or(0, Vec::len)
}

/// App `shop`, deployed with a slug (one-offs need one).
fn deployed_shop(api: &Api) {
    created(api.post("/apps", json!({"name": "shop"})));
    let slug = created(api.post("/apps/shop/slugs", json!({"process_types": {"web": "run"}})));
    let slug_id = slug["id"].as_str().expect("slug id");
    let tarball = make_slug(&[("app/run", "#!/bin/sh\n")]);
    let blob = format!("/apps/shop/slugs/{slug_id}/blob");
    assert_eq!(api.raw("PUT", &blob, Some(&api.token), Some(&tarball), "application/gzip").0, 200);
    created(api.post("/apps/shop/releases", json!({"slug": slug_id})));
}

/// A user's 101st app is refused, and no app is made; the platform's own app names are not
/// refused (`ouro up` makes `ouro-api` and the rest with the admin's token), and neither is an
/// add-on provider's user (its apps are the servers of every tenant's add-ons). Checked to fail
/// on the code before the cap (main's `ouro-api` in `target/debug`): the 101st app was made
/// (201).
fn a_user_owns_at_most_100_apps(backend: Backend) {
    let api = Api::start_with(backend, &[("OURO_ADDON_PROVIDERS", "postgresql")]);
    let before = count(api.get("/apps"));
    assert_eq!(before, 0, "the admin owns only the platform's own apps");
    for n in 0..100 {
        created(api.post("/apps", json!({"name": format!("app-{n}")})));
    }
    capped(&api.post("/apps", json!({"name": "one-more"})), "a user may own at most 100 apps");
    capped(&api.post("/apps", json!({})), "delete one first (`ouro apps:destroy`)");
    assert_eq!(count(api.get("/apps")), 100);
    assert_eq!(api.get("/apps/one-more").status, 404, "nothing was made");
    created(api.post("/apps", json!({"name": "ouro-api"})));

    // Deleting one makes room again.
    assert_eq!(api.delete("/apps/app-0").status, 200);
    created(api.post("/apps", json!({"name": "one-more"})));

    // The postgresql provider's token (scoped `provider`) makes a server app per add-on, for
    // every tenant: it is not capped.
    let provider = api.get("/apps/ouro-postgresql/config-vars");
    let token = provider.body["OURO_API_TOKEN"].as_str().unwrap_or_else(|| panic!("{:?}", provider.body));
    for n in 0..101 {
        let body = json!({"name": format!("server-{n}")}).to_string();
        let answer = api.call("POST", "/apps", Some(token), Some(body.as_bytes()));
        created(answer);
    }
}

/// The one-off dynos of `shop` in the desired state (those not reported finished).
fn one_offs(api: &Api) -> usize {
    let state = api.get("/runner/desired-state");
    assert_eq!(state.status, 200, "{:?}", state.body);
    let apps = state.body["apps"].as_array().cloned().unwrap_or_default();
    let shop = apps.iter().find(|a| a["app_name"] == "shop").cloned().unwrap_or(Value::Null);
    shop["one_offs"].as_array().map_or(0, Vec::len)
}

/// An app's 11th one-off dyno running at once is refused and none is recorded; one that ends
/// makes room for one more. Checked to fail on the code before the cap (main's `ouro-api` in
/// `target/debug`): the 11th one-off was made (201).
fn an_app_runs_at_most_10_one_offs_at_once(backend: Backend) {
    let api = Api::start(backend);
    deployed_shop(&api);
    for _ in 0..10 {
        created(api.post("/apps/shop/dynos", json!({"command": "sleep 60"})));
    }
    assert_eq!(one_offs(&api), 10);
    let refused = api.post("/apps/shop/dynos", json!({"command": "sleep 60", "attach": true}));
    capped(&refused, "an app runs at most 10 one-off dynos at once");
    assert_eq!(one_offs(&api), 10, "nothing was recorded");

    // The runner reports run.1 ended: there is room for one more, and one only.
    let ended = json!({"dynos": [{
        "id": "c-run-1", "app": "shop", "name": "run.1", "type": "run", "state": "crashed",
        "size": "standard-1x", "release": 2, "reason": "exited with status 0", "restarts": 0,
        "created_at": "2025-01-01T00:00:00Z",
    }]});
    let report = api.call("PUT", "/runner/dynos", Some(&api.token), Some(ended.to_string().as_bytes()));
    assert_eq!(report.status, 200, "{:?}", report.body);
    assert_eq!(one_offs(&api), 9);
    let eleventh = created(api.post("/apps/shop/dynos", json!({"command": "sleep 60"})));
    assert_eq!(eleventh["name"], "run.11");
    capped(&api.post("/apps/shop/dynos", json!({"command": "sleep 60"})), "wait for one to finish");
}

/// A one-off's `env` holds config var names and at most 64 KiB of names and values, as an
/// app's config. Checked to fail on the code before the cap (main's `ouro-api` in
/// `target/debug`): the one-off with 64 KiB and 2 bytes of env was made (201). (Names were
/// checked already.)
fn a_one_off_env_holds_config_var_names_and_at_most_64_kib(backend: Backend) {
    let api = Api::start(backend);
    deployed_shop(&api);
    let big = "x".repeat(64 * 1024 - 3);
    capped(&api.post("/apps/shop/dynos", json!({"command": "env", "env": {"1BAD": "x"}})), "env var `1BAD` is invalid");
    let too_big = json!({"command": "env", "env": {"BIG": format!("{big}xy")}});
    capped(&api.post("/apps/shop/dynos", too_big), "a one-off dyno's env is at most 64 KiB");
    assert_eq!(one_offs(&api), 0, "nothing was recorded");
    created(api.post("/apps/shop/dynos", json!({"command": "env", "env": {"BIG": big}})));
    assert_eq!(one_offs(&api), 1);
}

/// An app's 101st custom domain is refused and not stored; removing one makes room. Checked
/// to fail on the code before the cap (main's `ouro-api` in `target/debug`): the 101st domain
/// was stored (201).
fn an_app_has_at_most_100_custom_domains(backend: Backend) {
    let api = Api::start(backend);
    created(api.post("/apps", json!({"name": "shop"})));
    for n in 0..100 {
        created(api.post("/apps/shop/domains", json!({"hostname": format!("d{n}.example.com")})));
    }
    let refused = api.post("/apps/shop/domains", json!({"hostname": "more.example.com"}));
    capped(&refused, "an app has at most 100 custom domains");
    // The default domain and the 100 custom ones.
    assert_eq!(count(api.get("/apps/shop/domains")), 101);
    assert_eq!(api.delete("/apps/shop/domains/d0.example.com").status, 200);
    created(api.post("/apps/shop/domains", json!({"hostname": "more.example.com"})));
}

/// An app's 11th SNI endpoint is refused and not stored; removing one makes room. Checked to
/// fail on the code before the cap (main's `ouro-api` in `target/debug`): the 11th certificate
/// was stored (201).
fn an_app_has_at_most_10_sni_endpoints(backend: Backend) {
    let api = Api::start(backend);
    created(api.post("/apps", json!({"name": "shop"})));
    let (chain, key) = openssl_certificate("www.example.com", Some("DNS:www.example.com"));
    let certificate = json!({"certificate_chain": chain, "private_key": key});
    let mut first = String::new();
    for n in 0..10 {
        let made = created(api.post("/apps/shop/sni-endpoints", certificate.clone()));
        if n == 0 {
            first = made["id"].as_str().expect("id").to_string();
        }
    }
    capped(&api.post("/apps/shop/sni-endpoints", certificate.clone()), "an app has at most 10 SNI endpoints");
    assert_eq!(count(api.get("/apps/shop/sni-endpoints")), 10);
    assert_eq!(api.delete(&format!("/apps/shop/sni-endpoints/{first}")).status, 200);
    created(api.post("/apps/shop/sni-endpoints", certificate));
}

/// An app's 11th log drain is refused and not stored. This cap is older than the others (it
/// came with the drains, issue 7): the test passes on the code before this change too; it is
/// here so that the whole table of README's "Limits" is tested in one place.
fn an_app_has_at_most_10_drains(backend: Backend) {
    let api = Api::start(backend);
    created(api.post("/apps", json!({"name": "shop"})));
    for n in 0..10 {
        created(api.post("/apps/shop/log-drains", json!({"url": format!("syslog+tcp://drain{n}.example.com:514")})));
    }
    let refused = api.post("/apps/shop/log-drains", json!({"url": "syslog+tcp://more.example.com:514"}));
    capped(&refused, "an app has at most 10 drains");
    assert_eq!(count(api.get("/apps/shop/log-drains")), 10);
}

/// An app's formation holds at most 100 dynos in all (each process type at most 100 alone
/// already): a batch past it is refused whole and changes nothing; scaling another type down
/// makes room. Checked to fail on the code before the cap: 60 web and 60 worker dynos were
/// taken (200).
fn an_app_runs_at_most_100_dynos_in_all(backend: Backend) {
    let api = Api::start(backend);
    created(api.post("/apps", json!({"name": "shop"})));
    let scale = |updates: Value| api.patch("/apps/shop/formation", json!({"updates": updates}));
    assert_eq!(scale(json!([{"type": "web", "quantity": 60}])).status, 200);
    capped(&scale(json!([{"type": "worker", "quantity": 60}])), "an app runs at most 100 dynos in all");
    capped(&scale(json!([{"type": "web", "quantity": 50}, {"type": "worker", "quantity": 51}])), "this would be 101");
    let formation = api.get("/apps/shop/formation").body;
    let quantities: Vec<(String, i64)> = formation
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["type"].as_str().unwrap().to_string(), f["quantity"].as_i64().unwrap()))
        .collect();
    assert_eq!(quantities, [("web".to_string(), 60)], "nothing changed");
    assert_eq!(scale(json!([{"type": "web", "quantity": 50}, {"type": "worker", "quantity": 50}])).status, 200);
}
