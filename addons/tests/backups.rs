//! PostgreSQL backups and restores over HTTP, with shell scripts standing in for `pg_dump` and
//! `pg_restore` (they record how they were run; see `support`).

mod support;

use ouro_addons::kinds::Kind;
use serde_json::json;
use support::{FakeApi, FakeTools, PASSWORD, Provider, basic, config};
use tokio::io::AsyncWriteExt;

const VARS: &[(&str, &str)] = &[("POSTGRES_USER", "u1"), ("POSTGRES_PASSWORD", "secret"), ("POSTGRES_DB", "d1")];

/// `pg_dump` prints `dump.bin` of its directory, or fails with what `dump.fail` says.
const PG_DUMP: &str = r#"here=$(dirname "$0")
if [ -f "$here/dump.fail" ]; then cat "$here/dump.fail" >&2; exit 1; fi
cat "$here/dump.bin""#;

/// `pg_restore` copies the file it is given (its last argument) to `restored.bin`, or fails
/// with what `restore.fail` says.
const PG_RESTORE: &str = r#"here=$(dirname "$0")
for last; do :; done
cp "$last" "$here/restored.bin"
if [ -f "$here/restore.fail" ]; then cat "$here/restore.fail" >&2; exit 1; fi"#;

/// A PostgreSQL provider whose server `pg-1` exists, with the stand-in tools.
async fn provider() -> (FakeApi, FakeTools, Provider, u16) {
    let api = FakeApi::start().await;
    api.add_app("pg-1", VARS);
    let tools = FakeTools::new(&[("pg_dump", PG_DUMP), ("pg_restore", PG_RESTORE)]);
    let mut config = config(Kind::Postgresql, &api.url);
    config.pg_bin = tools.path().to_path_buf();
    config.pg_lib = "/opt/pg/lib".into();
    let port = config.servers.port;
    (api, tools, Provider::start(config).await, port)
}

fn dump() -> Vec<u8> {
    // Not text, and over a few chunks.
    (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()
}

#[tokio::test]
async fn a_backup_answers_the_dump() {
    let (_api, tools, provider, port) = provider().await;
    std::fs::write(tools.path().join("dump.bin"), dump()).unwrap();
    let answer = provider.call("POST", "/ouro/resources/pg-1/backups", b"").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/octet-stream"));
    assert_eq!(answer.header("content-length"), Some("300000"));
    assert!(answer.body == dump(), "the body is the dump");
    let port = port.to_string();
    let expected = ["-Fc", "--no-owner", "--no-acl", "-h", "127.0.0.1", "-p", &port, "-U", "u1", "-d", "d1"];
    assert_eq!(tools.args("pg_dump"), expected);
    let env = tools.env("pg_dump");
    assert_eq!(env["PGSSLMODE"], "prefer");
    assert_eq!(env["PGPASSWORD"], "secret");
    assert_eq!(env["PGCONNECT_TIMEOUT"], "5");
    assert_eq!(env["LD_LIBRARY_PATH"], "/opt/pg/lib");
}

#[tokio::test]
async fn an_empty_database_is_an_empty_dump() {
    let (_api, tools, provider, _) = provider().await;
    std::fs::write(tools.path().join("dump.bin"), b"").unwrap();
    let answer = provider.call("POST", "/ouro/resources/pg-1/backups", b"").await;
    assert_eq!((answer.status, answer.header("content-length"), answer.body.len()), (200, Some("0"), 0));
}

#[tokio::test]
async fn a_failed_dump_is_a_502_with_its_last_line() {
    let (_api, tools, provider, _) = provider().await;
    let stderr = "pg_dump: error: connection to server at \"pg-1\" failed\n\
                  pg_dump: detail: FATAL:  password authentication failed for user \"u1\"\n";
    std::fs::write(tools.path().join("dump.fail"), stderr).unwrap();
    let answer = provider.call("POST", "/ouro/resources/pg-1/backups", b"").await;
    let message = "pg_dump failed: pg_dump: detail: FATAL:  password authentication failed for user \"u1\"";
    assert_eq!(answer.parts(), (502, json!({ "message": message })));
}

#[tokio::test]
async fn a_backup_takes_no_big_body() {
    let (_api, _tools, provider, _) = provider().await;
    let answer = provider.call("POST", "/ouro/resources/pg-1/backups", &vec![b'x'; (1 << 16) + 1]).await;
    assert_eq!(answer.parts(), (413, json!({ "message": "the body is over 65536 bytes" })));
}

#[tokio::test]
async fn a_restore_runs_pg_restore_of_the_body_in_one_transaction() {
    let (_api, tools, provider, port) = provider().await;
    let answer = provider.call("POST", "/ouro/resources/pg-1/restore", &dump()).await;
    assert_eq!(answer.parts(), (200, json!({ "id": "pg-1" })));
    assert!(std::fs::read(tools.path().join("restored.bin")).unwrap() == dump(), "pg_restore got the body");
    let mut args = tools.args("pg_restore");
    let file = args.pop().unwrap();
    let port = port.to_string();
    let expected = [
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-acl",
        "--single-transaction",
        "--exit-on-error",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        "u1",
        "-d",
        "d1",
    ];
    assert_eq!(args, expected);
    assert!(!std::path::Path::new(&file).exists(), "the dump's file {file} is removed");
    assert_eq!(tools.env("pg_restore")["PGSSLMODE"], "prefer");
}

#[tokio::test]
async fn a_chunked_restore_is_read_too() {
    let (_api, tools, provider, _) = provider().await;
    let mut raw = format!(
        "POST /ouro/resources/pg-1/restore HTTP/1.1\r\nHost: p\r\nAuthorization: {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        basic("postgresql", PASSWORD)
    )
    .into_bytes();
    for chunk in dump().chunks(70_000) {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let answer = support::send_raw(provider.addr, &raw).await;
    assert_eq!(answer.parts(), (200, json!({ "id": "pg-1" })));
    assert!(std::fs::read(tools.path().join("restored.bin")).unwrap() == dump());
}

#[tokio::test]
async fn a_failed_restore_is_a_502_with_its_last_line() {
    let (_api, tools, provider, _) = provider().await;
    let stderr = "pg_restore: error: could not execute query: ERROR:  relation \"t\" does not exist\n";
    std::fs::write(tools.path().join("restore.fail"), stderr).unwrap();
    let answer = provider.call("POST", "/ouro/resources/pg-1/restore", b"not a dump").await;
    let message =
        "pg_restore failed: pg_restore: error: could not execute query: ERROR:  relation \"t\" does not exist";
    assert_eq!(answer.parts(), (502, json!({ "message": message })));
}

#[tokio::test]
async fn a_restore_over_4_gib_is_refused_before_it_is_read() {
    let (_api, tools, provider, _) = provider().await;
    let raw = format!(
        "POST /ouro/resources/pg-1/restore HTTP/1.1\r\nHost: p\r\nAuthorization: {}\r\n\
         Content-Length: {}\r\n\r\nPGDMP",
        basic("postgresql", PASSWORD),
        (4u64 << 30) + 1
    );
    let answer = support::send_raw(provider.addr, raw.as_bytes()).await;
    assert_eq!(answer.parts(), (413, json!({ "message": "the backup is too large" })));
    assert!(!tools.path().join("pg_restore.args").exists(), "pg_restore did not run");
}

#[tokio::test]
async fn a_restore_that_ends_early_is_a_400() {
    let (_api, tools, provider, _) = provider().await;
    tokio::time::timeout(support::STEP, async {
        let mut stream = tokio::net::TcpStream::connect(provider.addr).await.unwrap();
        let raw = format!(
            "POST /ouro/resources/pg-1/restore HTTP/1.1\r\nHost: p\r\nAuthorization: {}\r\n\
             Content-Length: 1000\r\n\r\nPGDMP",
            basic("postgresql", PASSWORD)
        );
        stream.write_all(raw.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let (status, _, body) = support::read_head(&mut stream).await;
        let mut body = body;
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut body).await.unwrap();
        assert_eq!(status, 400);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({ "message": "the backup ended early" }));
    })
    .await
    .expect("an answer in time");
    assert!(!tools.path().join("pg_restore.args").exists(), "pg_restore did not run");
}

#[tokio::test]
async fn redis_has_no_backups() {
    let api = FakeApi::start().await;
    api.add_app("redis-1", &[("REDIS_PASSWORD", "p")]);
    let provider = Provider::start(config(Kind::Redis, &api.url)).await;
    for path in ["/ouro/resources/redis-1/backups", "/ouro/resources/redis-1/restore"] {
        let answer = provider.call("POST", path, b"").await;
        assert_eq!(answer.parts(), (404, json!({ "message": "no such route" })), "{path}");
    }
}

#[tokio::test]
async fn a_backup_of_a_gone_server_is_404() {
    let (_api, tools, provider, _) = provider().await;
    for path in ["/ouro/resources/pg-2/backups", "/ouro/resources/pg-2/restore"] {
        let answer = provider.call("POST", path, b"PGDMP").await;
        assert_eq!(answer.parts(), (404, json!({ "message": "no postgresql server `pg-2`" })), "{path}");
    }
    assert!(!tools.path().join("pg_dump.args").exists());
}
