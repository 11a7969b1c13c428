//! Issue 15's hostile suite, the dashboard's sessions: they are kept in SQL, so an API restart
//! (or a self-upgrade, whose new API process takes over) does not log anyone out, and they
//! still end as they should (logout, a revoked token). Plain HTTP as a browser sends it (a
//! form POST, the cookie sent back), no browser; each scenario on SQLite and on PostgreSQL.

use std::process::Command;

use ouro_tests::{Api, Backend, json};

ouro_tests::on_both_backends!(dashboard_sessions_survive_a_restart_and_still_end);

const FORM: &str = "application/x-www-form-urlencoded";

/// A browser's view of one request: status, `Set-Cookie`, `Location` and the body as text.
struct Page {
    status: u16,
    set_cookie: String,
    location: String,
    body: String,
}

/// One request to the dashboard, redirects not followed, with the session `cookie` if any and
/// a form body if any.
fn request(api: &Api, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> Page {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build(),
    );
    let mut request = ureq::http::Request::builder().method(method).uri(format!("{}{path}", api.url));
    if let Some(cookie) = cookie {
        request = request.header("Cookie", format!("ouro_session={cookie}"));
    }
    let result = match form {
        Some(form) => agent.run(request.header("Content-Type", FORM).body(form.as_bytes().to_vec()).expect("request")),
        None => agent.run(request.body(()).expect("request")),
    };
    let mut response = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let header =
        |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (set_cookie, location) = (header("set-cookie"), header("location"));
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Page { status: response.status().as_u16(), set_cookie, location, body }
}

/// Logs in with `token` through the login form; answers the session cookie's value.
fn log_in(api: &Api, token: &str) -> String {
    let page = request(api, "POST", "/dashboard/login", None, Some(&format!("token={token}")));
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(page.set_cookie.contains("HttpOnly; SameSite=Strict; Path=/dashboard"), "{}", page.set_cookie);
    let value = page.set_cookie.strip_prefix("ouro_session=").and_then(|rest| rest.split(';').next());
    value.filter(|v| v.len() == 64).unwrap_or_else(|| panic!("a session cookie: {}", page.set_cookie)).to_string()
}

/// The apps page for `cookie`: answers its CSRF value; panics on the login form.
fn apps_page(api: &Api, cookie: &str) -> String {
    let page = request(api, "GET", "/dashboard", Some(cookie), None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"apps\"") && page.body.contains(">shop<"), "the apps list: {}", page.body);
    let at = page.body.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page.body[at..].split('"').next().unwrap_or_default().to_string()
}

/// The visitor of `cookie` gets the login form: the session ended.
fn logged_out(api: &Api, cookie: &str) {
    let page = request(api, "GET", "/dashboard", Some(cookie), None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"token\"") && !page.body.contains("id=\"apps\""), "{}", page.body);
}

/// Revokes a token as an operator would (there is no route for it yet): its row goes.
fn revoke(backend: &Backend, api: &Api, token: &str) {
    let id = token.strip_prefix("ouro_").and_then(|rest| rest.split_once('_')).expect("token shape").0;
    let sql = format!("DELETE FROM tokens WHERE id = '{id}'");
    let out = match backend {
        Backend::Sqlite => Command::new("sqlite3")
            .arg("-cmd")
            .arg(".timeout 10000")
            .arg(api.data_dir.path().join("ouro.db"))
            .arg(&sql)
            .output(),
        Backend::Postgres(url) => {
            Command::new("psql").args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", &sql]).output()
        }
    }
    .expect("the database's client runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A dashboard session outlives `api.restart()`: the same cookie opens the apps page after it
/// (not the login form), and a POST with its CSRF value (revealing a config value) works, as
/// does refusing a wrong CSRF value. Logging out ends it (the cookie no longer opens anything,
/// even after another restart), and so does revoking the token it was made with. Checked to fail
/// on the code before this change (sessions in memory): with main's `ouro-api` swapped into
/// `target/debug`, the first page after the restart was the login form.
fn dashboard_sessions_survive_a_restart_and_still_end(backend: Backend) {
    let mut api = Api::start(backend.clone());
    assert_eq!(api.post("/apps", json!({"name": "shop"})).status, 201);
    assert_eq!(api.patch("/apps/shop/config-vars", json!({"SECRET_KEY": "hunter2"})).status, 200);

    let cookie = log_in(&api, &api.token);
    let csrf = apps_page(&api, &cookie);
    api.restart();
    assert_eq!(apps_page(&api, &cookie), csrf, "the same session, after a restart");
    let app = request(&api, "GET", "/dashboard/apps/shop", Some(&cookie), None);
    assert!(app.status == 200 && app.body.contains("SECRET_KEY"), "{} {}", app.status, app.body);
    let reveal = "/dashboard/apps/shop/config-vars/reveal";
    let shown = request(&api, "POST", reveal, Some(&cookie), Some(&format!("key=SECRET_KEY&csrf={csrf}")));
    assert_eq!((shown.status, shown.body.as_str()), (200, "hunter2"));
    let forged = request(&api, "POST", reveal, Some(&cookie), Some("key=SECRET_KEY&csrf=0000"));
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(!forged.body.contains("hunter2"));

    // Logging out ends the session for good: its row is gone, not just the browser's cookie.
    let out = request(&api, "POST", "/dashboard/logout", Some(&cookie), Some(&format!("csrf={csrf}")));
    assert_eq!((out.status, out.location.as_str()), (303, "/dashboard"), "{}", out.body);
    assert!(out.set_cookie.contains("Max-Age=0"), "{}", out.set_cookie);
    logged_out(&api, &cookie);
    let after = request(&api, "POST", reveal, Some(&cookie), Some(&format!("key=SECRET_KEY&csrf={csrf}")));
    assert_eq!(after.status, 401, "{}", after.body);
    api.restart();
    logged_out(&api, &cookie);

    // Revoking the token ends a session made with it, across a restart too.
    let cookie = log_in(&api, &api.token);
    apps_page(&api, &cookie);
    api.restart();
    apps_page(&api, &cookie);
    revoke(&backend, &api, &api.token);
    logged_out(&api, &cookie);
    let app = request(&api, "GET", "/dashboard/apps/shop", Some(&cookie), None);
    assert_eq!((app.status, app.location.as_str()), (303, "/dashboard"), "{}", app.body);
}
