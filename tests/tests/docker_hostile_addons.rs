//! Add-on servers against a tenant that turns hostile (issue 15), with real PostgreSQL servers
//! made by the platform's own provider: two apps, each with its database. Each server is on a
//! network of its own, which only its provider and the apps it is attached to join (before,
//! every server joined its provider's network: a hub where one server reached all the
//! others); and the role an app gets is no superuser (before, it was the `initdb` superuser, and
//! `COPY … TO PROGRAM` ran a shell in the server's dyno, one hop from every other database).
//! Backups and `ouro pg:psql` still work as the app's role. Needs Docker, the Debian mirror and
//! `psql` on this machine.
//!
//! The checks are gathered and reported together at the end, so that a run on the code before
//! the fix names every hole it had. Run on that code (the API, runner, provider and buildpacks
//! of f2acf1b), it fails with: server X reaches server Y by name, and at the address its
//! provider reaches it at; the app's role is a superuser; COPY TO PROGRAM runs; the superuser
//! logs in over the network.

use std::time::Duration;

use ouro_tests::platform::{Platform, create_addon, sample_app};
use ouro_tests::{json, logged_in, ok, stderr, stdout};

/// Waits until every web dyno of `app` runs its current release.
fn rolled(platform: &Platform, app: &str) {
    platform.wait_until(Duration::from_secs(120), &format!("{app} runs its current release"), || {
        let version = platform.api.get(&format!("/apps/{app}")).body["current_release"].as_i64().unwrap_or(0);
        let dynos = platform.dynos(app);
        let web: Vec<_> = dynos.iter().filter(|d| d["type"] == "web").collect();
        !web.is_empty() && web.iter().all(|d| d["release"] == version && d["state"] == "up")
    });
}

/// Whether the dyno `dyno` of `app` opens a TCP connection to `host:5000` within 5 s.
fn reaches(platform: &Platform, app: &str, dyno: &str, host: &str) -> bool {
    let script = format!("timeout 5 bash -c 'echo > /dev/tcp/{host}/5000' 2>&1");
    platform.exec(app, dyno, &script).0 == 0
}

/// The address `host` resolves to in the dyno `dyno` of `app` (empty when it does not).
fn address(platform: &Platform, app: &str, dyno: &str, host: &str) -> String {
    platform.exec(app, dyno, &format!("getent hosts {host} | cut -d' ' -f1")).1.trim().to_string()
}

/// `ouro pg:psql -a APP -c SQL` (as the app's role, through the tunnel): success and output.
fn psql(cli: &ouro_tests::Cli, app: &str, sql: &str) -> (bool, String) {
    let out = cli.run(&["pg:psql", "-a", app, "-c", sql]);
    (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
}

#[test]
fn each_add_on_server_has_a_network_of_its_own_and_apps_get_a_role_that_is_no_superuser() {
    let platform = Platform::start_with_api(&[("OURO_ADDON_PROVIDERS", "postgresql")], &[]);
    let cli = logged_in(&platform.api);
    let dir = sample_app("python-web");
    for app in ["appx", "appy"] {
        platform.create_and_deploy(app, &dir, json!({"web": "python3 /app/web.py"}));
    }
    platform.wait_for_provider("postgresql");
    let dbx = create_addon(&cli, "postgresql", "appx");
    let dby = create_addon(&cli, "postgresql", "appy");
    for app in ["appx", "appy"] {
        ok(&cli.run(&["addons:wait", "-a", app]));
        rolled(&platform, app);
    }
    let mut holes: Vec<String> = Vec::new();
    let mut check = |holds: bool, hole: String| {
        if !holds {
            holes.push(hole);
        }
    };

    // Each app reaches its own server, and not the other's, by name or by address.
    let y_on_appy = address(&platform, "appy", "web.1", &dby);
    let y_on_own = address(&platform, "ouro-postgresql", "web.1", &dby);
    assert!(!y_on_appy.is_empty() && !y_on_own.is_empty(), "{dby}: `{y_on_appy}` on appy's network, `{y_on_own}`");
    assert!(reaches(&platform, "appx", "web.1", &dbx), "appx reaches its own server");
    assert!(reaches(&platform, "appy", "web.1", &dby), "appy reaches its own server");
    check(!reaches(&platform, "appx", "web.1", &dby), "appx reaches server Y by name".into());
    for at in [&y_on_appy, &y_on_own] {
        check(!reaches(&platform, "appx", "web.1", at), format!("appx reaches server Y at {at}"));
    }

    // The hub: server X reaches itself, not server Y.
    assert!(reaches(&platform, &dbx, "server.1", &dbx), "server X reaches itself by its name");
    check(!reaches(&platform, &dbx, "server.1", &dby), "server X reaches server Y by name".into());
    check(
        !reaches(&platform, &dbx, "server.1", &y_on_own),
        format!("server X reaches server Y at the address its provider reaches it at ({y_on_own})"),
    );
    check(
        !reaches(&platform, &dbx, "server.1", &y_on_appy),
        format!("server X reaches server Y by its address on appy's network ({y_on_appy})"),
    );
    // The provider reaches both (its tunnels: `pg:psql` on each app).
    for app in ["appx", "appy"] {
        let (done, said) = psql(&cli, app, "SELECT 1");
        assert!(done && said.lines().any(|l| l.trim() == "1"), "pg:psql -a {app}: {said}");
    }

    // The app's role: no superuser, no program run by COPY, owner of its database.
    let (_, said) = psql(&cli, "appx", "SELECT rolsuper FROM pg_roles WHERE rolname = current_user");
    check(said.lines().any(|l| l.trim() == "f"), format!("the app's role is a superuser: {said}"));
    let (done, said) = psql(&cli, "appx", "COPY (SELECT 1) TO PROGRAM 'id'");
    check(!done && said.contains("permission denied"), format!("COPY TO PROGRAM runs: {said}"));
    let (done, said) = psql(&cli, "appx", "CREATE TABLE items (n int); INSERT INTO items VALUES (1), (2)");
    assert!(done, "the app's role creates tables in its database: {said}");
    // The superuser is not to be reached from the network with its password, even from the
    // server's own dyno (only the start script uses it, over the local socket).
    let vars = platform.api.get(&format!("/apps/{dbx}/config-vars")).body;
    let (user, password) =
        (vars["POSTGRES_USER"].as_str().unwrap_or(""), vars["POSTGRES_PASSWORD"].as_str().unwrap_or(""));
    let superuser = format!(
        "for f in /app/.profile.d/*.sh; do . \"$f\"; done; PGPASSWORD={password} timeout 10 \
         /app/.pg/usr/lib/postgresql/17/bin/psql 'host={dbx} port=5000 user={user} dbname=postgres' -tAc 'SELECT 1' 2>&1"
    );
    let (code, said) = platform.exec(&dbx, "server.1", &superuser);
    check(code != 0 && said.contains("pg_hba.conf rejects"), format!("the superuser logs in over the network: {said}"));

    // Backups, as the app's role: capture, change, restore; the restored table is the app's.
    let out = cli.run(&["pg:backups:capture", "-a", "appx"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success() && said.contains("b001"), "{said}");
    assert!(psql(&cli, "appx", "INSERT INTO items VALUES (3)").0);
    ok(&cli.run(&["pg:backups:restore", "b001", "-a", "appx", "--confirm", "appx"]));
    let (done, said) =
        psql(&cli, "appx", "INSERT INTO items VALUES (4); SELECT string_agg(n::text, '+' ORDER BY n) FROM items");
    assert!(done && said.contains("1+2+4"), "restored, and still the app's to write: {said}");

    assert!(holes.is_empty(), "holes:\n{}", holes.join("\n"));
}
