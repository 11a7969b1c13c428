//! Issue 15's hostile-input suite, the Platform API's part: what a tenant, an add-on provider
//! or a build could send to get more than its share, against the real `ouro-api` binary, each
//! scenario on SQLite and on PostgreSQL. Each test says how it was checked to fail on the code
//! before its fix.

use ouro_tests::{Api, Backend, Value, json, make_slug, openssl_certificate};

ouro_tests::on_both_backends!(
    slugs_hold_only_the_app,
    volumes_belong_to_the_app_that_mounted_them_first,
    tls_private_keys_are_sealed_at_rest,
    log_drains_obey_the_egress_policy,
);

fn put(api: &Api, path: &str, body: Value) -> ouro_tests::Answer {
    api.call("PUT", path, Some(&api.token), Some(body.to_string().as_bytes()))
}

fn refused(answer: &ouro_tests::Answer, status: u16, says: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    let message = answer.body["message"].as_str().unwrap_or_default();
    assert!(message.contains(says) && !message.contains('\n'), "{message:?} should say {says:?}");
}

/// A tar.gz holding one file at `path` (written raw, as a hostile client would).
fn slug_with(path: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(2);
    header.set_mode(0o644);
    header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_cksum();
    builder.append(&header, &b"hi"[..]).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

/// A slug is `./app` and what is beneath it, as Heroku's are: an entry elsewhere (it would
/// land in the stack's `/etc` when unpacked at `/`) or a layer whiteout (it would delete a
/// stack file in the slug's image) is refused at upload with a one-line reason, and no slug
/// is stored. Before this fix the API took both (201), and the runner unpacked such a slug at
/// `/` as root in a container of the stack (the slow path): checked by running this test on
/// the previous commit, where the two uploads answered 201.
fn slugs_hold_only_the_app(backend: Backend) {
    let api = Api::start(backend);
    assert_eq!(api.post("/apps", json!({"name": "shop"})).status, 201);
    for (path, says) in [
        ("./etc/cron.d/evil", "entry `./etc/cron.d/evil` is not under app/"),
        ("app/../usr/bin/python3", "is not under app/"),
        ("app/bin/.wh.python", "would be a layer whiteout"),
    ] {
        let slug = api.post("/apps/shop/slugs", json!({"process_types": {"web": "run"}}));
        assert_eq!(slug.status, 201, "{:?}", slug.body);
        let blob = format!("/apps/shop/slugs/{}/blob", slug.body["id"].as_str().unwrap());
        let (status, body) = api.raw("PUT", &blob, Some(&api.token), Some(&slug_with(path)), "application/gzip");
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        refused(&ouro_tests::Answer { status, body }, 422, says);
        let kept = api.get(&format!("/apps/shop/slugs/{}", slug.body["id"].as_str().unwrap()));
        assert!(kept.body["checksum"].is_null(), "no blob kept: {:?}", kept.body);
    }
    let fine = api.post("/apps/shop/slugs", json!({"process_types": {"web": "run"}}));
    let blob = format!("/apps/shop/slugs/{}/blob", fine.body["id"].as_str().unwrap());
    let (status, _) = api.raw("PUT", &blob, Some(&api.token), Some(&slug_with("./app/run")), "application/gzip");
    assert!((200..300).contains(&status), "an ordinary slug is taken: {status}");
}

/// Who owns a volume is recorded when an app first mounts it, not inferred from names: an
/// add-on provider whose server app is `redis-x` cannot mount `redis-x-1-data`, the volume of
/// its other server `redis-x-1`, though the name starts with `redis-x-` (the old check, which
/// let it: checked on the previous commit, where the PUT answered 200); nor can an admin give
/// one app's volume to another; the platform's volumes (build caches, the API's data) are no
/// app's to take; volumes mount only where the image has a dyno-owned directory. Deleting the
/// owner frees the name.
fn volumes_belong_to_the_app_that_mounted_them_first(backend: Backend) {
    let api = Api::start_with(backend, &[("OURO_ADDON_PROVIDERS", "redis")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let token = loop {
        if let Some(token) = api.get("/apps/ouro-redis/config-vars").body["OURO_API_TOKEN"].as_str() {
            break token.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "the provider app got no token");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let provider =
        |method: &str, path: &str, body: Value| api.call(method, path, Some(&token), Some(body.to_string().as_bytes()));
    for name in ["redis-x-1", "redis-x"] {
        assert_eq!(provider("POST", "/apps", json!({"name": name})).status, 201);
    }
    let mount = |volume: &str| json!({"mounts": [{"volume": volume, "path": "/data"}], "listens": true});
    assert_eq!(provider("PUT", "/apps/redis-x-1/service", mount("redis-x-1-data")).status, 200);
    refused(&provider("PUT", "/apps/redis-x/service", mount("redis-x-1-data")), 409, "belongs to another app");
    assert_eq!(api.get("/apps/redis-x/service").body["mounts"], json!([]), "nothing changed");

    // Admins too: one volume, one app.
    assert_eq!(api.post("/apps", json!({"name": "vault"})).status, 201);
    refused(&put(&api, "/apps/vault/service", mount("redis-x-1-data")), 409, "belongs to another app");
    let cache = format!("cache-{}", api.get("/apps/redis-x-1").body["id"].as_str().unwrap());
    refused(&put(&api, "/apps/vault/service", mount(&cache)), 403, "is the platform's");
    refused(&put(&api, "/apps/vault/service", mount("ouro-data")), 403, "is the platform's");
    let elsewhere = json!({"mounts": [{"volume": "vault-data", "path": "/etc"}]});
    refused(&put(&api, "/apps/vault/service", elsewhere), 422, "at /data or /cache");
    let twice = json!({"mounts": [{"volume": "a-data", "path": "/data"}, {"volume": "b-data", "path": "/data"}]});
    refused(&put(&api, "/apps/vault/service", twice), 422, "one volume each");

    // Letting go: a service that no longer mounts it, or its app deleted.
    assert_eq!(provider("DELETE", "/apps/redis-x-1", json!({})).status, 200);
    assert_eq!(provider("PUT", "/apps/redis-x/service", mount("redis-x-1-data")).status, 200, "free again");
    assert_eq!(provider("PUT", "/apps/redis-x/service", json!({"mounts": []})).status, 200);
    assert_eq!(put(&api, "/apps/vault/service", mount("redis-x-1-data")).status, 200, "let go");
}

/// A TLS private key is kept sealed with the platform key: the database (SQLite's file and
/// its WAL, or PostgreSQL's table) holds no line of it, while the runner still gets it in its
/// desired state, after a restart too. The key file is the API's alone (0600). Before this
/// fix the key was in clear: checked on the previous commit, where the PEM's lines were found
/// in the database.
fn tls_private_keys_are_sealed_at_rest(backend: Backend) {
    let mut api = Api::start(backend.clone());
    assert_eq!(api.post("/apps", json!({"name": "site"})).status, 201);
    let (cert, key) = openssl_certificate("www.example.com", Some("DNS:www.example.com"));
    let added = api.post("/apps/site/sni-endpoints", json!({"certificate_chain": cert, "private_key": key}));
    assert_eq!(added.status, 201, "{:?}", added.body);
    let secret_line = key.lines().nth(1).expect("a PEM body").to_string();
    let stored = match &backend {
        Backend::Sqlite => ["ouro.db", "ouro.db-wal"]
            .iter()
            .map(|file| std::fs::read(api.data_dir.path().join(file)).unwrap_or_default())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect::<String>(),
        Backend::Postgres(url) => {
            let out = std::process::Command::new("psql")
                .args([url.as_str(), "-Atc", "SELECT private_key FROM certificates"])
                .output()
                .expect("psql runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8(out.stdout).unwrap();
            assert!(text.starts_with("sealed:v1:"), "{text}");
            text
        }
    };
    assert!(!stored.contains(&secret_line) && !stored.contains("BEGIN PRIVATE KEY"), "the key is in clear in SQL");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(api.data_dir.path().join("platform-key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // The runner gets the key in clear once the app has a release, after a restart too.
    let slug = api.post("/apps/site/slugs", json!({"process_types": {"web": "serve"}}));
    let blob = format!("/apps/site/slugs/{}/blob", slug.body["id"].as_str().unwrap());
    api.raw("PUT", &blob, Some(&api.token), Some(&make_slug(&[("app/serve", "x")])), "application/gzip");
    assert_eq!(api.post("/apps/site/releases", json!({"slug": slug.body["id"]})).status, 201);
    for _ in 0..2 {
        let desired = api.get("/runner/desired-state").body;
        let site = desired["apps"].as_array().unwrap().iter().find(|a| a["app_name"] == "site").cloned();
        let certificates = site.map(|s| s["certificates"].clone()).unwrap_or(Value::Null);
        assert_eq!(certificates, json!([{"chain_pem": cert, "key_pem": key}]), "the runner gets the key in clear");
        api.restart();
    }
}

/// A log drain is the platform connecting somewhere on a tenant's word: like a dyno, it may
/// not reach loopback, private or link-local addresses (the host's services, a cloud's metadata
/// service) unless the operator allows a range; the refusal says why and stores nothing.
/// Checked to fail on the code before: there each of these drains was added (201).
fn log_drains_obey_the_egress_policy(backend: Backend) {
    let api = Api::start(backend.clone());
    assert_eq!(api.post("/apps", json!({"name": "shop"})).status, 201);
    for url in [
        "syslog+tcp://127.0.0.1:7701",
        "syslog+tcp://localhost:5432",
        "https://169.254.169.254/latest",
        "http://10.0.0.8/logs",
    ] {
        refused(&api.post("/apps/shop/log-drains", json!({"url": url})), 422, "log drains may not reach");
    }
    assert_eq!(api.get("/apps/shop/log-drains").body, json!([]), "nothing stored");
    // An operator's allowance opens a range, and only that one.
    let fresh = match backend {
        Backend::Sqlite => Backend::Sqlite,
        Backend::Postgres(_) => Backend::postgres(),
    };
    let open = Api::start_with(fresh, &[("OURO_EGRESS_ALLOW", "10.0.0.0/24")]);
    assert_eq!(open.post("/apps", json!({"name": "shop"})).status, 201);
    assert_eq!(open.post("/apps/shop/log-drains", json!({"url": "http://10.0.0.8/logs"})).status, 201);
    refused(&open.post("/apps/shop/log-drains", json!({"url": "http://10.0.1.8/logs"})), 422, "10.0.1.8");
}
