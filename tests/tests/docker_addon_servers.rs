//! The add-on servers (`buildpacks/postgresql-server`, `buildpacks/redis-server`) built by their
//! buildpack and run as the platform runs a server app's `server` process: a dyno of the run
//! stack (dyno user, under an init, no capabilities, a volume at /data, PORT=5000), stopped as
//! the runner stops it (SIGTERM, then SIGKILL after the grace). Their clients are real clients
//! from the slug (`psql`, `redis-cli`, the stack's `openssl s_client`) in another dyno, over
//! Docker's bridge, as an app's dynos reach an add-on server. Needs a Docker Engine, the stack
//! images and the Debian mirror.

use std::time::{Duration, Instant};

use ouro_tests::build_box::{BuildBox, assert_built, release_yaml};

/// The stop grace of [`BuildBox::stop`] (the runner's is 30 s): a clean stop must take a small
/// part of it.
const QUICK_STOP: Duration = Duration::from_secs(5);

/// `psql` from the slug against the server at `$SERVER`, as the user `$DBUSER` (default `ouro`)
/// of the database `shop` (password in PGPASSWORD), with sslmode `$1`, running `$2`; bounded by
/// 10 s.
const PSQL: &str = r#"
for f in /app/.profile.d/*.sh; do . "$f"; done
exec timeout 10 psql "host=$SERVER port=5000 user=${DBUSER:-ouro} dbname=shop sslmode=$1 connect_timeout=5" -X -q -tA \
  -v ON_ERROR_STOP=1 -c "$2" 2>&1
"#;

/// Waits until the server at `$SERVER` accepts a TLS session (`sslmode=require`) as `$DBUSER`
/// (default `ouro`), for `$1` s at most; then says why not.
const PSQL_READY: &str = r#"
for f in /app/.profile.d/*.sh; do . "$f"; done
conninfo="host=$SERVER port=5000 user=${DBUSER:-ouro} dbname=shop sslmode=require connect_timeout=2"
deadline=$((SECONDS + $1))
while [ "$SECONDS" -lt "$deadline" ]; do
  timeout 5 psql "$conninfo" -X -tAc 'SELECT 1' >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo "no TLS session with the server within $1 s:"
timeout 5 psql "$conninfo" -X -tAc 'SELECT 1' 2>&1
exit 1
"#;

/// A client holding a session open in the background: `psql` with sslmode `$1` in
/// `SELECT pg_sleep(300)`; its output in /tmp/held-$1.log.
const PSQL_HOLD: &str = r#"
for f in /app/.profile.d/*.sh; do . "$f"; done
setsid psql "host=$SERVER port=5000 user=ouro dbname=shop sslmode=$1" -X -c 'SELECT pg_sleep(300)' \
  >"/tmp/held-$1.log" 2>&1 </dev/null &
"#;

/// The certificate a TLS client is shown by `$SERVER:$1` (`$2`: `-starttls postgres` or
/// nothing): its SHA-256 fingerprint and subject, or why there is none.
const SERVED_CERTIFICATE: &str = r#"
pem=$(timeout 10 openssl s_client -connect "$SERVER:$1" $2 </dev/null 2>&1) || true
printf '%s\n' "$pem" | openssl x509 -noout -fingerprint -sha256 -subject 2>/dev/null || printf 'no certificate:\n%s\n' "$pem"
"#;

/// The PostgreSQL server offers TLS with a certificate made for it (sslmode=require gets TLS,
/// sslmode=disable a plain session, a wrong password is refused over both); SIGTERM, with clients
/// holding sessions, is a fast shutdown that takes a second, not the grace; the next start on
/// the volume needs no recovery, has the rows and serves the same certificate; and a data
/// directory without a certificate (one the buildpack made before TLS) gets one at its next start.
#[test]
fn postgresql_server_speaks_tls_and_stops_fast_without_recovery() {
    let b = BuildBox::new("postgresql-server");
    // Named, as `ouro buildpacks:set postgresql-server` (the provider's system app) does.
    let named = b.exec("root", &[], "echo postgresql-server > /buildpacks/ORDER");
    assert_eq!(named.code, 0, "{}", named.output);
    let build = b.build();
    assert_built(&build, "PostgreSQL server");
    assert_eq!(release_yaml(&build), "---\ndefault_process_types:\n  server: postgresql-server\n");

    let password = "s3cret pass'word";
    let config = format!("POSTGRES_PASSWORD={password}");
    let env =
        ["PORT=5000", "POSTGRES_USER=ouro", config.as_str(), "POSTGRES_DB=shop", "TLS_SERVER_NAME=postgresql-test-42"];
    let volume = b.volume("pgdata");
    let mounts = [(volume.as_str(), "/data")];
    let client = b.start_dyno();
    let pgpassword = format!("PGPASSWORD={password}");
    let psql = |server: &str, password: &str, sslmode: &str, sql: &str| {
        let env = [format!("SERVER={server}"), format!("PGPASSWORD={password}")];
        let env: Vec<&str> = env.iter().map(String::as_str).collect();
        b.exec_in(&client, "dyno", &env, PSQL, &[sslmode, sql])
    };
    let ready = |server: &str, seconds: &str| {
        let at = format!("SERVER={server}");
        b.exec_in(&client, "dyno", &[&at, &pgpassword], PSQL_READY, &[seconds])
    };
    let served = |server: &str| {
        let at = format!("SERVER={server}");
        b.exec_in(&client, "dyno", &[&at], SERVED_CERTIFICATE, &["5000", "-starttls postgres"]).output
    };

    // First start: initialises the data directory and makes the certificate.
    let server = b.start_process("postgresql-server", &env, &mounts);
    let at = b.address(&server);
    let up = ready(&at, "60");
    assert_eq!(up.code, 0, "{}\n--- server ---\n{}", up.output, b.stop(&server).1);

    let tls = psql(&at, password, "require", "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    assert!(matches!(tls.output.as_str(), "t|TLSv1.3\n" | "t|TLSv1.2\n"), "sslmode=require: {}", tls.output);
    let plain = psql(&at, password, "disable", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    assert_eq!(plain.output, "f\n", "sslmode=disable (a plain session)");
    for sslmode in ["require", "disable"] {
        let wrong = psql(&at, "wrong", sslmode, "SELECT 1");
        assert!(
            wrong.code != 0 && wrong.output.contains("password authentication failed for user \"ouro\""),
            "a wrong password with sslmode={sslmode}: {}",
            wrong.output
        );
    }
    let files =
        b.exec_in(&server, "dyno", &[], "stat -c '%n %a %U' /data/pgdata/server.key /data/pgdata/server.crt", &[]);
    assert_eq!(files.output, "/data/pgdata/server.key 600 dyno\n/data/pgdata/server.crt 644 dyno\n");
    let certificate = served(&at);
    assert!(
        certificate.contains("sha256 Fingerprint=") && certificate.contains("subject=CN=postgresql-test-42"),
        "{certificate}"
    );

    // Made by the superuser, as an app of a server made before app roles did.
    let write = psql(
        &at,
        password,
        "require",
        "CREATE TABLE orders (n int); INSERT INTO orders SELECT generate_series(1, 3); \
         CREATE TABLE items (id serial PRIMARY KEY, name text); \
         CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2'",
    );
    assert_eq!(write.code, 0, "{}", write.output);

    // Two clients hold sessions, over TLS and plain: a smart shutdown would wait for them.
    for sslmode in ["require", "disable"] {
        let at = format!("SERVER={at}");
        let hold = b.exec_in(&client, "dyno", &[&at, &pgpassword], PSQL_HOLD, &[sslmode]);
        assert_eq!(hold.code, 0, "{}", hold.output);
    }
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(300)'";
    wait_until(Duration::from_secs(10), "two sessions in pg_sleep", || {
        psql(&at, password, "require", sleeping).output == "2\n"
    });

    let stopping = Instant::now();
    let (code, log) = b.stop(&server);
    let took = stopping.elapsed();
    println!("--- first server (stopped in {:.1}s) ---\n{log}", took.as_secs_f64());
    assert!(took < QUICK_STOP, "the stop took {took:?} (the grace is 20 s):\n{log}");
    assert_eq!(code, 0, "postgresql-server did not exit cleanly:\n{log}");
    assert!(log.contains("received fast shutdown request"), "{log}");
    assert!(log.contains("database system is shut down"), "{log}");
    assert!(!log.contains(password), "{log}");
    for sslmode in ["require", "disable"] {
        let held = b.exec_in(&client, "dyno", &[], &format!("cat /tmp/held-{sslmode}.log"), &[]).output;
        assert!(held.contains("terminating connection due to administrator command"), "{sslmode}: {held}");
    }

    // Second start on the same volume: connections within seconds, no recovery, same rows and
    // the same certificate.
    let again = b.start_process("postgresql-server", &env, &mounts);
    let at = b.address(&again);
    let starting = Instant::now();
    let up = ready(&at, "30");
    let took = starting.elapsed();
    assert_eq!(up.code, 0, "{}\n--- server ---\n{}", up.output, b.stop(&again).1);
    assert!(took < Duration::from_secs(10), "the second start took {took:?} to accept a connection");
    let rows = psql(&at, password, "require", "SELECT sum(n) FROM orders");
    assert_eq!(rows.output, "6\n", "the rows written before the restart");
    assert_eq!(served(&at), certificate, "the certificate after a restart");

    let (code, log) = b.stop(&again);
    println!("--- second server ---\n{log}");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("database system was shut down at"), "{log}");
    for recovery in ["not properly shut down", "automatic recovery in progress", "redo starts", "crash"] {
        assert!(!log.contains(recovery), "the second start recovered ({recovery:?}):\n{log}");
    }
    assert!(!log.contains("making a self-signed TLS certificate"), "{log}");

    // A data directory made before TLS is this one without its certificate (the settings are on
    // the command line, pg_hba's `host` lines match TLS too): its next start makes one.
    let old =
        b.start_process("rm /data/pgdata/server.crt /data/pgdata/server.key && exec postgresql-server", &env, &mounts);
    let at = b.address(&old);
    let up = ready(&at, "30");
    assert_eq!(up.code, 0, "{}\n--- server ---\n{}", up.output, b.stop(&old).1);
    let tls = psql(&at, password, "require", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    assert_eq!(tls.output, "t\n");
    assert_eq!(psql(&at, password, "require", "SELECT sum(n) FROM orders").output, "6\n");
    let renewed = served(&at);
    assert!(renewed.contains("subject=CN=postgresql-test-42") && renewed != certificate, "{renewed}");
    let files = b.exec_in(&old, "dyno", &[], "stat -c '%a %U' /data/pgdata/server.key", &[]);
    assert_eq!(files.output, "600 dyno\n");
    let (code, log) = b.stop(&old);
    println!("--- server on the data directory without a certificate ---\n{log}");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("postgresql-server: making a self-signed TLS certificate for postgresql-test-42"), "{log}");
    assert!(log.contains("database system was shut down at"), "{log}");

    // That server made before app roles, started with an app's role (`ouro
    // pg:credentials:rotate`): the role is made, owns what the superuser made, and the
    // superuser is refused over the network; then a new password (a rotation) replaces the old.
    let as_app = |server: &str, password: &str, sql: &str| {
        let env = [format!("SERVER={server}"), format!("PGPASSWORD={password}"), "DBUSER=shopapp".to_string()];
        let env: Vec<&str> = env.iter().map(String::as_str).collect();
        b.exec_in(&client, "dyno", &env, PSQL, &["require", sql])
    };
    let app_ready = |server: &str, password: &str| {
        let env = [format!("SERVER={server}"), format!("PGPASSWORD={password}"), "DBUSER=shopapp".to_string()];
        let env: Vec<&str> = env.iter().map(String::as_str).collect();
        b.exec_in(&client, "dyno", &env, PSQL_READY, &["30"])
    };
    let with_role = |app_password: &str| -> Vec<String> {
        let mut env: Vec<String> = env.iter().map(|v| v.to_string()).collect();
        env.extend(["POSTGRES_APP_USER=shopapp".to_string(), format!("POSTGRES_APP_PASSWORD={app_password}")]);
        env
    };
    let first = with_role("app pass'1");
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let migrated = b.start_process("postgresql-server", &first, &mounts);
    let at = b.address(&migrated);
    let up = app_ready(&at, "app pass'1");
    assert_eq!(up.code, 0, "{}\n--- server ---\n{}", up.output, b.stop(&migrated).1);
    let owners = as_app(
        &at,
        "app pass'1",
        "SELECT string_agg(o, ',' ORDER BY o) FROM (SELECT tablename || '=' || tableowner FROM pg_tables \
         WHERE schemaname = 'public' UNION ALL SELECT 'twice=' || pg_get_userbyid(proowner) FROM pg_proc \
         WHERE proname = 'twice' UNION ALL SELECT 'shop=' || pg_get_userbyid(datdba) FROM pg_database \
         WHERE datname = 'shop') t(o)",
    );
    assert_eq!(owners.output, "items=shopapp,orders=shopapp,shop=shopapp,twice=shopapp\n", "{}", owners.output);
    let used = as_app(
        &at,
        "app pass'1",
        "INSERT INTO orders VALUES (4); INSERT INTO items (name) VALUES ('a'); \
         SELECT sum(n) || ' ' || (SELECT max(id) FROM items) || ' ' || twice(21) FROM orders",
    );
    assert_eq!(used.output, "10 1 42\n", "the app's role uses what the superuser made: {}", used.output);
    let not_super = as_app(&at, "app pass'1", "COPY (SELECT 1) TO PROGRAM 'true'");
    assert!(not_super.code != 0 && not_super.output.contains("permission denied"), "{}", not_super.output);
    let superuser = psql(&at, password, "require", "SELECT 1");
    assert!(
        superuser.code != 0
            && superuser.output.contains("pg_hba.conf rejects connection")
            && superuser.output.contains("user \"ouro\""),
        "the superuser over the network: {}",
        superuser.output
    );
    let (code, log) = b.stop(&migrated);
    println!("--- server given an app's role ---\n{log}");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("postgresql-server: setting the app's role shopapp"), "{log}");
    assert!(!log.contains("app pass'1"), "{log}");

    // A new password: the old one is refused, the data is there. The next start with the same
    // vars changes nothing and does not say it does.
    let second = with_role("app pass'2");
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    for round in 0..2 {
        let rotated = b.start_process("postgresql-server", &second, &mounts);
        let at = b.address(&rotated);
        let up = app_ready(&at, "app pass'2");
        assert_eq!(up.code, 0, "{}\n--- server ---\n{}", up.output, b.stop(&rotated).1);
        let old = as_app(&at, "app pass'1", "SELECT 1");
        assert!(
            old.code != 0 && old.output.contains("password authentication failed for user \"shopapp\""),
            "the old password: {}",
            old.output
        );
        assert_eq!(as_app(&at, "app pass'2", "SELECT sum(n) FROM orders").output, "10\n");
        let (code, log) = b.stop(&rotated);
        println!("--- server, round {round} with the new password ---\n{log}");
        assert_eq!(code, 0, "{log}");
        assert_eq!(log.contains("setting the app's role"), round == 0, "{log}");
    }
}

/// `redis-cli` from the slug against `$SERVER` (the password in REDISCLI_AUTH, if any), bounded
/// by 10 s.
const REDIS_CLI: &str = r#"
for f in /app/.profile.d/*.sh; do . "$f"; done
exec timeout 10 redis-cli -h "$SERVER" "$@" 2>&1
"#;

/// Waits until `$SERVER` answers PING on both ports, for 30 s at most.
const REDIS_READY: &str = r#"
for f in /app/.profile.d/*.sh; do . "$f"; done
for i in $(seq 1 150); do
  [ "$(timeout 5 redis-cli -h "$SERVER" -p 5000 PING 2>&1)" = PONG ] &&
    [ "$(timeout 5 redis-cli -h "$SERVER" -p 5001 --tls --insecure PING 2>&1)" = PONG ] && exit 0
  sleep 0.2
done
echo "redis-server does not answer PING on ports 5000 and 5001 within 30 s"
exit 1
"#;

/// A client blocked in `BLPOP` in the background, on port `$1` with the options `$2`.
const REDIS_HOLD: &str = r#"
for f in /app/.profile.d/*.sh; do . "$f"; done
setsid redis-cli -h "$SERVER" -p "$1" $2 BLPOP queue 300 >"/tmp/held-$1.log" 2>&1 </dev/null &
"#;

/// The Redis server offers `rediss://` on PORT+1 beside the plain port, with a certificate made
/// for it and kept on the volume, the password needed on both; SIGTERM with clients blocked on
/// both ports stops it at once, saving; the next start has the data and the same certificate.
#[test]
fn redis_server_offers_tls_beside_plain_and_stops_at_once() {
    let b = BuildBox::new("redis-server");
    let named = b.exec("root", &[], "echo redis-server > /buildpacks/ORDER");
    assert_eq!(named.code, 0, "{}", named.output);
    let build = b.build();
    assert_built(&build, "Redis server");
    assert_eq!(release_yaml(&build), "---\ndefault_process_types:\n  server: redis-server-start\n");

    let env = ["PORT=5000", "REDIS_PASSWORD=s3cret", "TLS_SERVER_NAME=redis-test-42"];
    let volume = b.volume("redis");
    let mounts = [(volume.as_str(), "/data")];
    let client = b.start_dyno();
    let cli = |server: &str, password: Option<&str>, args: &[&str]| {
        let mut env = vec![format!("SERVER={server}")];
        env.extend(password.map(|p| format!("REDISCLI_AUTH={p}")));
        let env: Vec<&str> = env.iter().map(String::as_str).collect();
        b.exec_in(&client, "dyno", &env, REDIS_CLI, args).output
    };
    let tls = ["-p", "5001", "--tls", "--insecure"];
    let with_tls = |args: &[&'static str]| [&tls[..], args].concat();
    let ready = |server: &str| {
        let env = [format!("SERVER={server}"), "REDISCLI_AUTH=s3cret".to_string()];
        let env: Vec<&str> = env.iter().map(String::as_str).collect();
        b.exec_in(&client, "dyno", &env, REDIS_READY, &[])
    };
    let served = |server: &str| {
        let at = format!("SERVER={server}");
        b.exec_in(&client, "dyno", &[&at], SERVED_CERTIFICATE, &["5001", ""]).output
    };

    let server = b.start_process("redis-server-start", &env, &mounts);
    let at = b.address(&server);
    let up = ready(&at);
    assert_eq!(up.code, 0, "{}\n--- server ---\n{}", up.output, b.stop(&server).1);
    assert_eq!(cli(&at, Some("s3cret"), &with_tls(&["SET", "k", "over TLS"])), "OK\n");
    assert_eq!(cli(&at, Some("s3cret"), &["-p", "5000", "GET", "k"]), "over TLS\n");
    let wrong = cli(&at, Some("wrong"), &with_tls(&["GET", "k"]));
    assert!(wrong.contains("WRONGPASS") && !wrong.contains("over TLS"), "{wrong}");
    let none = cli(&at, None, &with_tls(&["GET", "k"]));
    assert!(none.contains("NOAUTH") && !none.contains("over TLS"), "{none}");
    let files =
        b.exec_in(&server, "dyno", &[], "stat -c '%n %a %U' /data/redis/server.key /data/redis/server.crt", &[]);
    assert_eq!(files.output, "/data/redis/server.key 600 dyno\n/data/redis/server.crt 644 dyno\n");
    let certificate = served(&at);
    assert!(
        certificate.contains("sha256 Fingerprint=") && certificate.contains("subject=CN=redis-test-42"),
        "{certificate}"
    );

    for (port, options) in [("5000", ""), ("5001", "--tls --insecure")] {
        let env = [format!("SERVER={at}"), "REDISCLI_AUTH=s3cret".to_string()];
        let env: Vec<&str> = env.iter().map(String::as_str).collect();
        let hold = b.exec_in(&client, "dyno", &env, REDIS_HOLD, &[port, options]);
        assert_eq!(hold.code, 0, "{}", hold.output);
    }
    wait_until(Duration::from_secs(10), "two clients in BLPOP", || {
        cli(&at, Some("s3cret"), &["-p", "5000", "CLIENT", "LIST"]).matches("cmd=blpop").count() == 2
    });

    let stopping = Instant::now();
    let (code, log) = b.stop(&server);
    let took = stopping.elapsed();
    println!("--- first server (stopped in {:.1}s) ---\n{log}", took.as_secs_f64());
    assert!(took < QUICK_STOP, "the stop took {took:?} (the grace is 20 s):\n{log}");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("Ready to accept connections tls"), "{log}");
    assert!(log.contains("Received SIGTERM") && log.contains("DB saved on disk"), "{log}");
    assert!(!log.contains("s3cret"), "{log}");

    let again = b.start_process("redis-server-start", &env, &mounts);
    let at = b.address(&again);
    let up = ready(&at);
    assert_eq!(up.code, 0, "{}\n--- server ---\n{}", up.output, b.stop(&again).1);
    assert_eq!(cli(&at, Some("s3cret"), &with_tls(&["GET", "k"])), "over TLS\n");
    assert_eq!(served(&at), certificate, "the certificate after a restart");
    let (code, log) = b.stop(&again);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("making a self-signed TLS certificate"), "{log}");
}

/// Polls `done` every 100 ms until it holds; panics after `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
