//! Real Heroku Python apps deploy unmodified with `git push`, on the real platform: an app
//! built like Heroku's Python getting-started app (Django, whitenoise's manifest storage,
//! `dj-database-url` with `ssl_require=True`, gunicorn on `[::]`, `.python-version` 3.14,
//! release-phase migrations) with a PostgreSQL add-on over TLS, through the router on HTTP and
//! HTTPS; the add-on's server restarted while a client holds a connection; a Poetry app, a uv
//! app, and a build asking for a Python the platform cannot provide. Needs Docker, PyPI and the
//! Debian mirror (bookworm, trixie, forky), and `psql` and `curl` on this machine.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ouro_tests::platform::{Platform, create_addon, page, push, sample_repo, wait_for_page};
use ouro_tests::{Cli, logged_in, ok, stderr, stdout};

/// git pads `remote:` lines to clear the terminal's line: without the padding.
fn unpadded(said: &str) -> String {
    said.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}

/// `curl` over HTTPS through the router's TLS listener (its default, self-signed certificate):
/// (status, body).
fn https(platform: &Platform, app: &str, path: &str) -> (u16, String) {
    let port = platform.router_tls_addr.rsplit(':').next().expect("a TLS port").to_string();
    let host = format!("{app}.localhost");
    let out = std::process::Command::new("curl")
        .args(["-sS", "-k", "-m", "20", "-w", "\n%{http_code}", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = stdout(&out);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// `ouro pg:psql -a APP -c SQL`: its output, when it succeeded.
fn psql(cli: &Cli, app: &str, sql: &str) -> Result<String, String> {
    let out = cli.run(&["pg:psql", "-a", app, "-c", sql]);
    if out.status.success() { Ok(stdout(&out)) } else { Err(stderr(&out)) }
}

#[test]
fn heroku_python_apps_deploy_unmodified() {
    let platform = Platform::start_with_api(&[("OURO_ADDON_PROVIDERS", "postgresql")], &[]);
    let cli = logged_in(&platform.api);

    // A Python the platform cannot provide: the push fails with one line naming those it can,
    // and nothing is released.
    let repo = sample_repo(&platform, &cli, "oldsnake", "python-wrong-version");
    let out = repo.git(&["push", "ouro", "main"]);
    let said = unpadded(&stderr(&out));
    assert!(!out.status.success(), "a Python 3.9 app was built:\n{said}");
    let errors: Vec<&str> =
        said.lines().filter_map(|l| l.strip_prefix("remote: ")).filter(|l| l.starts_with(" !     Python")).collect();
    assert_eq!(errors.len(), 1, "{said}");
    assert!(
        errors[0].starts_with(" !     Python 3.9 is not available: this platform offers 3.11, 3.13, 3.14"),
        "{said}"
    );
    assert_eq!(platform.api.get("/apps/oldsnake").body["current_release"], 1, "nothing released");

    // Poetry and uv, each from its lock file, on the Python each asks for.
    for (app, sample, says) in
        [("poet", "python-poetry", "hello from poetry"), ("astral", "python-uv", "hello from uv")]
    {
        let repo = sample_repo(&platform, &cli, app, sample);
        let said = push(&repo, &["main"]);
        assert!(said.contains("Released v"), "{said}");
        let page = wait_for_page(&platform, app, says);
        println!("{app}: {page}");
    }

    // Heroku's getting-started app with a PostgreSQL add-on: TLS required by the app.
    platform.wait_for_provider("postgresql");
    let repo = sample_repo(&platform, &cli, "gettingstarted", "python-getting-started");
    let database = create_addon(&cli, "postgresql", "gettingstarted");
    ok(&cli.run(&["addons:wait", "-a", "gettingstarted"]));
    let said = unpadded(&push(&repo, &["main"]));
    for step in [
        "-----> Using Python 3.14 specified in .python-version\n",
        "-----> $ python manage.py collectstatic --noinput\n",
        "-----> Running release command: ./manage.py migrate --no-input\n",
        // The release command's own output, streamed.
        "       Applying hello.0001_initial... OK\n",
        "       Release command succeeded\n",
    ] {
        assert!(said.contains(step), "expected {step:?} in the push:\n{said}");
    }
    let index = page(&platform, "gettingstarted", "/", "Getting started with Python on Ouro");
    assert!(index.contains("on Python 3.14."), "{index}");
    // The stylesheet by its hashed name (whitenoise's manifest), over HTTP and HTTPS.
    let css = index
        .split('"')
        .find(|s| s.starts_with("/static/hello/style.") && s.ends_with(".css"))
        .unwrap_or_else(|| panic!("no hashed stylesheet in {index}"))
        .to_string();
    let style = page(&platform, "gettingstarted", &css, "{");
    let (status, body) = https(&platform, "gettingstarted", &css);
    assert_eq!((status, body.as_str()), (200, style.as_str()), "the stylesheet over HTTPS");
    let (status, body) = https(&platform, "gettingstarted", "/");
    assert!(status == 200 && body.contains("Getting started with Python on Ouro"), "{status} {body}");
    // Rows written and listed, in PostgreSQL over TLS.
    page(&platform, "gettingstarted", "/db/add?item=apple", "postgresql database, 1 items\napple\n");
    let (status, body) = https(&platform, "gettingstarted", "/db/add?item=pear");
    assert!(status == 200 && body.contains("postgresql database, 2 items\napple\npear"), "{status} {body}");
    // The app's own session (Django keeps it) is a TLS one.
    let sessions = "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                    WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()";
    let tls = psql(&cli, "gettingstarted", sessions).expect("pg_stat_ssl");
    assert!(tls.lines().any(|l| l.trim() == "t") && !tls.lines().any(|l| l.trim() == "f"), "{tls}");

    // The database server restarted while a client holds a connection: new connections work
    // again within 10 s, the server shut down fast (no crash recovery), the rows are there.
    let mut held = cli
        .command(&["pg:psql", "-a", "gettingstarted", "-c", "SELECT pg_sleep(300)"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("a held psql");
    platform.wait_until(Duration::from_secs(30), "the held session runs", || {
        psql(&cli, "gettingstarted", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")
            .is_ok_and(|out| out.lines().any(|l| l.trim() == "1"))
    });
    let restarted = Instant::now();
    ok(&cli.run(&["ps:restart", "-a", &database]));
    let mut last;
    loop {
        match psql(&cli, "gettingstarted", "SELECT name FROM hello_item ORDER BY id") {
            Ok(out) if out.contains("apple") && out.contains("pear") => break,
            Ok(out) => last = out,
            Err(e) => last = e,
        }
        assert!(restarted.elapsed() < Duration::from_secs(10), "no new connection 10 s after the restart: {last}");
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("the server took new connections {:?} after its restart", restarted.elapsed());
    let version = platform.api.get(&format!("/apps/{database}")).body["current_release"].as_i64().expect("release");
    platform.wait_until(Duration::from_secs(30), "the restarted server is up", || {
        platform.dynos(&database).iter().any(|d| d["state"] == "up" && d["release"] == version)
    });
    let status = held.wait().expect("the held psql ends");
    let mut said = String::new();
    held.stderr.take().expect("stderr").read_to_string(&mut said).expect("read stderr");
    assert!(!status.success() && said.contains("terminating connection due to administrator command"), "{said}");
    let log = ok(&cli.run(&["logs", "-a", &database, "-n", "1500"]));
    let shutdowns = log.matches("database system is shut down").count();
    assert!(shutdowns >= 1, "no clean shutdown in the server's log:\n{log}");
    for crash in ["was not properly shut down", "automatic recovery in progress", "redo starts at"] {
        assert!(!log.contains(crash), "{crash:?} in the server's log:\n{log}");
    }
    page(&platform, "gettingstarted", "/db", "postgresql database, 2 items\napple\npear\n");
}
