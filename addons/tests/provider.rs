//! The provider contract over HTTP: the provider in-process on port 0 against a stand-in
//! Platform API, stand-in servers and stand-ins for PostgreSQL's tools (see `support`).

mod support;

use ouro_addons::kinds::Kind;
use serde_json::{Value, json};
use support::{FakeApi, FakeRedis, FakeTools, PASSWORD, Provider, basic, config, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROVISION: &[u8] = br#"{"uuid":"0b6c","plan":"standard","app_name":"shop","name":"pg-1"}"#;

#[tokio::test]
async fn health_is_open_and_says_the_kind() {
    let api = FakeApi::start().await;
    let provider = Provider::start(config(Kind::Redis, &api.url)).await;
    let answer = request(provider.addr, "GET", "/health", None, b"").await;
    assert_eq!(answer.parts(), (200, json!({ "kind": "redis" })));
    assert!(api.calls().is_empty());
}

#[tokio::test]
async fn every_other_route_needs_the_contract_credentials() {
    let api = FakeApi::start().await;
    let provider = Provider::start(config(Kind::Postgresql, &api.url)).await;
    let wrong = [
        None,
        Some(basic("postgresql", "wrong")),
        Some(basic("redis", PASSWORD)),
        Some(format!("Bearer {PASSWORD}")),
        Some("Basic !!!".to_string()),
    ];
    for authorization in &wrong {
        for (method, path) in [
            ("POST", "/ouro/resources"),
            ("GET", "/ouro/resources/pg-1"),
            ("DELETE", "/ouro/resources/pg-1"),
            ("GET", "/ouro/resources/pg-1/tunnel"),
            ("POST", "/ouro/resources/pg-1/backups"),
            ("GET", "/elsewhere"),
        ] {
            let answer = request(provider.addr, method, path, authorization.as_deref(), PROVISION).await;
            let expected = (401, json!({ "message": "wrong provider credentials" }));
            assert_eq!(answer.parts(), expected, "{method} {path} with {authorization:?}");
        }
    }
    assert!(api.calls().is_empty(), "nothing reaches the Platform API");
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let api = FakeApi::start().await;
    let provider = Provider::start(config(Kind::Postgresql, &api.url)).await;
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/ouro/resources"),
        ("DELETE", "/ouro/resources"),
        ("PUT", "/ouro/resources/pg-1"),
        ("GET", "/ouro/resources/pg-1/backups"),
        ("GET", "/ouro/resources/pg-1/elsewhere"),
    ] {
        let answer = provider.call(method, path, b"").await;
        assert_eq!(answer.parts(), (404, json!({ "message": "no such route" })), "{method} {path}");
    }
}

#[tokio::test]
async fn provisioning_makes_the_server_app_through_the_platform_api() {
    let api = FakeApi::start().await;
    let provider = Provider::start(config(Kind::Postgresql, &api.url)).await;
    let answer = provider.call("POST", "/ouro/resources", PROVISION).await;
    assert_eq!(
        answer.parts(),
        (202, json!({ "id": "pg-1", "service_app": "pg-1", "message": "starting the postgresql server" }))
    );

    let calls = api.calls();
    let lines: Vec<String> = calls.iter().map(|c| c.line()).collect();
    assert_eq!(
        lines,
        [
            "GET /apps/ouro-postgresql",
            "GET /apps/ouro-postgresql/releases/7",
            "POST /apps",
            "PATCH /apps/pg-1/config-vars",
            "PUT /apps/pg-1/service",
            "PATCH /apps/pg-1/formation",
            "POST /apps/pg-1/releases",
        ]
    );
    assert!(calls.iter().all(|c| c.authorization == "Bearer provider-token"), "{calls:?}");
    assert_eq!(calls[2].body, json!({ "name": "pg-1" }));
    let vars = calls[3].body.as_object().unwrap();
    let keys: Vec<&str> = vars.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "POSTGRES_APP_PASSWORD",
            "POSTGRES_APP_USER",
            "POSTGRES_DB",
            "POSTGRES_PASSWORD",
            "POSTGRES_USER",
            "TLS_SERVER_NAME"
        ]
    );
    assert_eq!(vars["TLS_SERVER_NAME"], "pg-1");
    assert_eq!(
        calls[4].body,
        json!({ "mounts": [{ "volume": "pg-1-data", "path": "/data" }], "listens": true }),
        "a server joins no network: the provider joins its"
    );
    assert_eq!(
        calls[5].body,
        json!({ "updates": [{ "type": "web", "quantity": 0 }, { "type": "server", "quantity": 1 }] })
    );
    assert_eq!(calls[6].body, json!({ "slug": "slug-7", "description": "postgresql server for shop" }));
    assert_eq!(api.app_vars("pg-1").unwrap()["TLS_SERVER_NAME"], "pg-1");
}

#[tokio::test]
async fn a_provision_request_is_checked_before_any_call() {
    let api = FakeApi::start().await;
    let provider = Provider::start(config(Kind::Redis, &api.url)).await;
    let answer = provider.call("POST", "/ouro/resources", b"").await;
    assert_eq!(answer.parts(), (422, json!({ "message": "`` cannot name a server app" })));
    let answer = provider.call("POST", "/ouro/resources", br#"{"uuid":"u","plan":"p","app_name":"shop"}"#).await;
    assert_eq!(answer.parts(), (422, json!({ "message": "`` cannot name a server app" })));
    let answer = provider.call("POST", "/ouro/resources", br#"{"name":"Redis_1"}"#).await;
    assert_eq!(answer.parts(), (422, json!({ "message": "`Redis_1` cannot name a server app" })));
    let answer = provider.call("POST", "/ouro/resources", b"{\"name\":").await;
    assert_eq!(answer.status, 400);
    assert!(answer.json()["message"].as_str().unwrap().starts_with("the body is not JSON"));
    let big = format!(r#"{{"name":"redis-1","pad":"{}"}}"#, "x".repeat(1 << 16));
    let answer = provider.call("POST", "/ouro/resources", big.as_bytes()).await;
    assert_eq!(answer.parts(), (413, json!({ "message": "the body is over 65536 bytes" })));
    assert!(api.calls().is_empty());
}

#[tokio::test]
async fn a_failed_step_removes_the_half_made_server_app() {
    let api = FakeApi::start().await;
    let provider = Provider::start(config(Kind::Postgresql, &api.url)).await;
    api.fail("POST /apps/pg-1/releases", 422, "the slug `slug-7` is not yours");
    let answer = provider.call("POST", "/ouro/resources", PROVISION).await;
    let expected = json!({ "message": "POST /apps/pg-1/releases: 422 the slug `slug-7` is not yours" });
    assert_eq!(answer.parts(), (422, expected));
    let lines = api.take_lines();
    assert_eq!(lines[lines.len() - 2..], ["POST /apps/pg-1/releases", "DELETE /apps/pg-1"]);
    assert_eq!(api.app_vars("pg-1"), None);
}

#[tokio::test]
async fn a_taken_name_is_the_apis_answer_and_nothing_is_removed() {
    let api = FakeApi::start().await;
    api.add_app("pg-1", &[]);
    let provider = Provider::start(config(Kind::Postgresql, &api.url)).await;
    let answer = provider.call("POST", "/ouro/resources", PROVISION).await;
    assert_eq!(answer.parts(), (409, json!({ "message": "POST /apps: 409 app `pg-1` already exists" })));
    assert_eq!(api.take_lines().last().unwrap(), "POST /apps");
    assert!(api.app_vars("pg-1").is_some());
}

#[tokio::test]
async fn without_a_slug_or_an_api_nothing_is_made() {
    let api = FakeApi::start().await;
    api.set_current_release(Value::Null);
    let provider = Provider::start(config(Kind::Postgresql, &api.url)).await;
    let answer = provider.call("POST", "/ouro/resources", PROVISION).await;
    assert_eq!(answer.parts(), (503, json!({ "message": "the provider app has no slug yet" })));
    assert_eq!(api.take_lines(), ["GET /apps/ouro-postgresql"]);

    let nowhere = format!("http://127.0.0.1:{}", support::closed_port());
    let provider = Provider::start(config(Kind::Postgresql, &nowhere)).await;
    let answer = provider.call("POST", "/ouro/resources", PROVISION).await;
    assert_eq!(answer.status, 503);
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(message.starts_with("GET /apps/ouro-postgresql: the API cannot be reached ("), "{message}");
}

#[tokio::test]
async fn a_redis_server_is_provisioning_until_both_its_ports_answer() {
    let api = FakeApi::start().await;
    let provisioning = json!({ "state": "provisioning" });
    let mut config = config(Kind::Redis, &api.url);
    // Nothing listens yet.
    let provider = Provider::start(config.clone()).await;
    let answer = provider.call("POST", "/ouro/resources", br#"{"app_name":"shop","name":"redis-1"}"#).await;
    assert_eq!(answer.status, 202);
    let password = api.app_vars("redis-1").unwrap()["REDIS_PASSWORD"].clone();
    assert_eq!(provider.call("GET", "/ouro/resources/redis-1", b"").await.parts(), (200, provisioning.clone()));

    // The plain port answers, the TLS one does not yet: the provider keeps no state, so a new
    // one pointed at the stand-ins sees the same server.
    let plain = FakeRedis::start(&password, false).await;
    config.servers.port = plain.port;
    let provider = Provider::start(config.clone()).await;
    assert_eq!(provider.call("GET", "/ouro/resources/redis-1", b"").await.parts(), (200, provisioning.clone()));

    // Both answer, but to another password.
    let (other_plain, other_tls) = (FakeRedis::start("other", false).await, FakeRedis::start("other", true).await);
    config.servers.port = other_plain.port;
    config.servers.tls_port = other_tls.port;
    let provider = Provider::start(config.clone()).await;
    assert_eq!(provider.call("GET", "/ouro/resources/redis-1", b"").await.parts(), (200, provisioning.clone()));

    // Both answer to its password.
    let tls = FakeRedis::start(&password, true).await;
    config.servers.port = plain.port;
    config.servers.tls_port = tls.port;
    let provider = Provider::start(config).await;
    let answer = provider.call("GET", "/ouro/resources/redis-1", b"").await;
    let urls = json!({
        "URL": format!("redis://:{password}@redis-1:5000"),
        "TLS_URL": format!("rediss://:{password}@redis-1:5001"),
    });
    assert_eq!(answer.parts(), (200, json!({ "state": "provisioned", "config": urls })));
    assert_eq!(tls.server_names.lock().unwrap().as_slice(), ["redis-1"], "SNI names the server app");
}

#[tokio::test]
async fn a_postgresql_server_is_provisioned_once_psql_connects_over_tls() {
    let api = FakeApi::start().await;
    let tools = FakeTools::new(&[("psql", "exit \"$(cat \"$(dirname \"$0\")/psql.exit\")\"")]);
    std::fs::write(tools.path().join("psql.exit"), "2").unwrap();
    let mut config = config(Kind::Postgresql, &api.url);
    config.pg_bin = tools.path().to_path_buf();
    config.pg_lib = "/opt/pg/lib".into();
    let port = config.servers.port;
    let provider = Provider::start(config).await;
    assert_eq!(provider.call("POST", "/ouro/resources", PROVISION).await.status, 202);
    let vars = api.app_vars("pg-1").unwrap();

    let answer = provider.call("GET", "/ouro/resources/pg-1", b"").await;
    assert_eq!(answer.parts(), (200, json!({ "state": "provisioning" })));
    let expected_args = [
        "-h",
        "127.0.0.1",
        &port.to_string(),
        "-U",
        &vars["POSTGRES_APP_USER"],
        "-d",
        &vars["POSTGRES_DB"],
        "-tAc",
        "SELECT 1",
    ];
    let mut args = tools.args("psql");
    args.remove(2); // "-p"
    assert_eq!(args, expected_args);
    let env = tools.env("psql");
    assert_eq!(env["PGSSLMODE"], "require");
    assert_eq!(env["PGPASSWORD"], vars["POSTGRES_APP_PASSWORD"], "the app's role, not the superuser");
    assert_eq!(env["PGCONNECT_TIMEOUT"], "5");
    assert_eq!(env["LD_LIBRARY_PATH"], "/opt/pg/lib");

    std::fs::write(tools.path().join("psql.exit"), "0").unwrap();
    let answer = provider.call("GET", "/ouro/resources/pg-1", b"").await;
    let url = format!(
        "postgres://{}:{}@pg-1:5000/{}",
        vars["POSTGRES_APP_USER"], vars["POSTGRES_APP_PASSWORD"], vars["POSTGRES_DB"]
    );
    assert_eq!(answer.parts(), (200, json!({ "state": "provisioned", "config": { "URL": url } })));
}

#[tokio::test]
async fn a_gone_server_is_404() {
    let api = FakeApi::start().await;
    let provider = Provider::start(config(Kind::Redis, &api.url)).await;
    for path in ["/ouro/resources/redis-9", "/ouro/resources/redis-9/tunnel"] {
        let answer = provider.call("GET", path, b"").await;
        assert_eq!(answer.parts(), (404, json!({ "message": "no redis server `redis-9`" })), "{path}");
    }
    let answer = provider.call("POST", "/ouro/resources/redis-9/backups", b"").await;
    assert_eq!(answer.parts(), (404, json!({ "message": "no redis server `redis-9`" })));
    assert_eq!(
        api.take_lines(),
        ["GET /apps/redis-9/config-vars", "GET /apps/redis-9/config-vars", "GET /apps/redis-9/config-vars"]
    );
    // A name that cannot name a server app is not asked for.
    let answer = provider.call("GET", "/ouro/resources/Redis_9", b"").await;
    assert_eq!(answer.parts(), (404, json!({ "message": "no redis server `Redis_9`" })));
    assert!(api.take_lines().is_empty());
}

#[tokio::test]
async fn deprovisioning_deletes_the_server_app() {
    let api = FakeApi::start().await;
    let provider = Provider::start(config(Kind::Postgresql, &api.url)).await;
    assert_eq!(provider.call("POST", "/ouro/resources", PROVISION).await.status, 202);
    api.take_lines();

    let answer = provider.call("DELETE", "/ouro/resources/pg-1", b"").await;
    assert_eq!(answer.parts(), (200, json!({ "id": "pg-1" })));
    assert_eq!(api.take_lines(), ["DELETE /apps/pg-1"]);
    assert_eq!(api.app_vars("pg-1"), None);

    // Gone already: the same answer.
    let answer = provider.call("DELETE", "/ouro/resources/pg-1", b"").await;
    assert_eq!(answer.parts(), (200, json!({ "id": "pg-1" })));
    assert_eq!(api.take_lines(), ["DELETE /apps/pg-1"]);

    // Not a server app's name: nothing to delete.
    let answer = provider.call("DELETE", "/ouro/resources/no", b"").await;
    assert_eq!(answer.parts(), (200, json!({ "id": "no" })));
    assert!(api.take_lines().is_empty());

    // Any other failure is the API's.
    api.add_app("pg-2", &[]);
    api.fail("DELETE /apps/pg-2", 403, "not yours");
    let answer = provider.call("DELETE", "/ouro/resources/pg-2", b"").await;
    assert_eq!(answer.parts(), (403, json!({ "message": "DELETE /apps/pg-2: 403 not yours" })));
}

#[tokio::test]
async fn a_tunnel_carries_bytes_both_ways() {
    let api = FakeApi::start().await;
    api.add_app("pg-1", &[("POSTGRES_USER", "u"), ("POSTGRES_PASSWORD", "p"), ("POSTGRES_DB", "d")]);
    let mut config = config(Kind::Postgresql, &api.url);
    config.servers.port = support::greeter().await;
    let provider = Provider::start(config).await;

    tokio::time::timeout(support::STEP, async {
        let mut stream = tokio::net::TcpStream::connect(provider.addr).await.unwrap();
        let head = format!(
            "GET /ouro/resources/pg-1/tunnel HTTP/1.1\r\nHost: ouro-postgresql.ouro.local\r\nAuthorization: {}\r\n\
             Connection: Upgrade\r\nUpgrade: ouro-tunnel\r\n\r\nearly bytes|",
            basic("postgresql", PASSWORD)
        );
        // The first bytes come right after the head, in the same write.
        stream.write_all(head.as_bytes()).await.unwrap();
        let (status, headers, mut rest) = support::read_head(&mut stream).await;
        assert_eq!(status, 101);
        let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        assert_eq!(header("upgrade"), Some("ouro-tunnel"));
        assert_eq!(header("connection").map(str::to_ascii_lowercase).as_deref(), Some("upgrade"));

        let expected = b"hello from the server\nearly bytes|";
        while rest.len() < expected.len() {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the tunnel closed early: {}", String::from_utf8_lossy(&rest));
            rest.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(rest, expected);

        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        stream.write_all(&big).await.unwrap();
        // Closing our side ends the server's, and so the tunnel.
        stream.shutdown().await.unwrap();
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(echoed.len(), big.len());
        assert!(echoed == big);
    })
    .await
    .expect("the tunnel works in time");
}

#[tokio::test]
async fn a_tunnel_needs_an_upgrade_and_a_reachable_server() {
    let api = FakeApi::start().await;
    api.add_app("redis-1", &[("REDIS_PASSWORD", "p")]);
    let provider = Provider::start(config(Kind::Redis, &api.url)).await;
    let answer = provider.call("GET", "/ouro/resources/redis-1/tunnel", b"").await;
    assert_eq!(answer.parts(), (400, json!({ "message": "a tunnel needs Connection: Upgrade" })));

    let raw = format!(
        "GET /ouro/resources/redis-1/tunnel HTTP/1.1\r\nHost: p\r\nAuthorization: {}\r\nConnection: Upgrade\r\n\
         Upgrade: ouro-tunnel\r\n\r\n",
        basic("redis", PASSWORD)
    );
    let answer = support::send_raw(provider.addr, raw.as_bytes()).await;
    assert_eq!(answer.status, 503);
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(message.starts_with("the server `redis-1` cannot be reached: "), "{message}");
}
