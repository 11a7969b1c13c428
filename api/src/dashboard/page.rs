//! The dashboard's HTML, rendered on the server. Everything that comes from the store or the
//! request goes through [`escape`]; the pages load only `/dashboard/assets/*`.

use std::fmt::Write;

use super::view::{FormationView, ProcessView};
use crate::addons::store::AddonRow;
use crate::releases::ReleaseRow;

/// `s` safe in HTML text and in double-quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `who` is the signed-in user's email and CSRF value, for the logout button.
fn layout(title: &str, who: Option<(&str, &str)>, body: &str) -> String {
    let account = match who {
        Some((email, csrf)) => format!(
            "<form method=\"post\" action=\"/dashboard/logout\" class=\"logout\">\
             <span>{}</span><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form>",
            escape(email),
            escape(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Ouro</title><link rel=\"stylesheet\" href=\"/dashboard/assets/dashboard.css\">\
         <script src=\"/dashboard/assets/dashboard.js\" defer></script></head>\
         <body><header><a href=\"/dashboard\" class=\"brand\">Ouro</a>{account}</header><main>{body}</main></body></html>\n",
        escape(title)
    )
}

/// The login form; `error` is one line above it.
pub(crate) fn login(error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default();
    let body = format!(
        "<h1>Log in</h1>{error}\
         <form method=\"post\" action=\"/dashboard/login\" class=\"login\" autocomplete=\"off\">\
         <label for=\"token\">API token</label>\
         <input type=\"password\" id=\"token\" name=\"token\" required placeholder=\"ouro_…\">\
         <button type=\"submit\">Log in</button></form>\
         <p class=\"hint\">The token <code>ouro login</code> stored, or the admin token. It is sent once, \
         in this form's body; the dashboard then keeps a session cookie.</p>"
    );
    layout("Log in", None, &body)
}

/// One line of the apps list.
pub(crate) struct AppLine {
    pub name: String,
    pub release: Option<i64>,
    pub owner: String,
    /// Dynos up on the current release, dynos wanted.
    pub up: usize,
    pub wanted: i64,
}

pub(crate) fn apps(email: &str, csrf: &str, apps: &[AppLine]) -> String {
    let mut rows = String::new();
    for app in apps {
        let class = if app.up as i64 == app.wanted { "ok" } else { "bad" };
        let _ = write!(
            rows,
            "<tr class=\"{class}\"><td><a href=\"/dashboard/apps/{name}\">{name}</a></td><td>{release}</td>\
             <td>{up} of {wanted} up</td><td>{owner}</td></tr>",
            name = escape(&app.name),
            release = app.release.map(|v| format!("v{v}")).unwrap_or_else(|| "–".into()),
            up = app.up,
            wanted = app.wanted,
            owner = escape(&app.owner),
        );
    }
    if apps.is_empty() {
        rows.push_str("<tr><td colspan=\"4\">No apps yet: <code>ouro create</code> makes one.</td></tr>");
    }
    let body = format!(
        "<h1>Apps</h1><table id=\"apps\"><thead><tr><th>App</th><th>Release</th><th>Dynos</th><th>Owner</th></tr>\
         </thead><tbody>{rows}</tbody></table>"
    );
    layout("Apps", Some((email, csrf)), &body)
}

/// What the app page shows.
pub(crate) struct AppPage<'a> {
    pub name: &'a str,
    pub web_url: &'a str,
    /// Newest first; the first is the current release.
    pub releases: &'a [ReleaseRow],
    pub config_keys: Vec<&'a str>,
    pub addons: &'a [AddonRow],
    pub formation: &'a FormationView,
}

pub(crate) fn app(email: &str, csrf: &str, page: &AppPage<'_>) -> String {
    let name = escape(page.name);
    let base = format!("/dashboard/apps/{name}");
    let csrf_field = format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", escape(csrf));
    let mut body =
        format!("<h1>{name}</h1><p class=\"sub\"><a href=\"{url}\">{url}</a></p>", url = escape(page.web_url));

    body.push_str("<section id=\"release\"><h2>Release</h2>");
    match page.releases.first() {
        Some(current) => {
            let _ = write!(
                body,
                "<p class=\"current\"><strong>v{}</strong> {} <span class=\"meta\">by {} at {}</span></p>",
                current.version,
                escape(&current.description),
                escape(&current.actor),
                escape(&current.created_at)
            );
        }
        None => body.push_str("<p>No release.</p>"),
    }
    body.push_str("<table id=\"releases\"><thead><tr><th>Version</th><th>Description</th><th>By</th><th>At</th></tr></thead><tbody>");
    for release in page.releases {
        let _ = write!(
            body,
            "<tr><td>v{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            release.version,
            escape(&release.description),
            escape(&release.actor),
            escape(&release.created_at)
        );
    }
    body.push_str("</tbody></table></section>");

    body.push_str(
        "<section id=\"formation\"><h2>Formation <span id=\"live\" class=\"meta\">…</span></h2>\
         <table><thead><tr><th>Dyno</th><th>State</th><th>Release</th><th>Why</th></tr></thead>\
         <tbody id=\"formation-body\">",
    );
    for process in &page.formation.processes {
        formation_rows(&mut body, process);
    }
    body.push_str("</tbody></table><div class=\"scale\">");
    for process in page.formation.processes.iter().filter(|p| !p.size.is_empty()) {
        let process_type = escape(&process.process_type);
        let _ = write!(
            body,
            "<form method=\"post\" action=\"{base}/scale\" class=\"scale\">{csrf_field}\
             <input type=\"hidden\" name=\"type\" value=\"{process_type}\">\
             <label>{process_type} <input type=\"number\" name=\"quantity\" min=\"0\" max=\"100\" value=\"{}\" \
             data-type=\"{process_type}\"></label><button type=\"submit\">Scale</button></form>",
            process.quantity
        );
    }
    body.push_str("</div></section>");

    body.push_str("<section id=\"config\"><h2>Config vars</h2><table><tbody>");
    for key in &page.config_keys {
        let key = escape(key);
        let _ = write!(
            body,
            "<tr data-key=\"{key}\"><td class=\"key\">{key}</td><td><span class=\"value\"></span>\
             <form method=\"post\" action=\"{base}/config-vars/reveal\" class=\"reveal\">{csrf_field}\
             <input type=\"hidden\" name=\"key\" value=\"{key}\"><button type=\"submit\">show</button></form></td></tr>"
        );
    }
    if page.config_keys.is_empty() {
        body.push_str("<tr><td>None set.</td></tr>");
    }
    body.push_str("</tbody></table></section>");

    body.push_str(
        "<section id=\"addons\"><h2>Add-ons</h2><table><thead><tr><th>Add-on</th><th>Plan</th><th>State</th></tr></thead><tbody>",
    );
    for addon in page.addons {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&addon.name),
            escape(&addon.plan),
            escape(addon.state.as_str())
        );
    }
    if page.addons.is_empty() {
        body.push_str("<tr><td colspan=\"3\">None.</td></tr>");
    }
    body.push_str("</tbody></table></section>");
    // Where the script listens for the formation (no secret: the session is the cookie).
    let _ = write!(body, "<div id=\"events\" data-url=\"{base}/events\" hidden></div>");
    layout(page.name, Some((email, csrf)), &body)
}

/// A process type's heading row and one row per dyno, as `dashboard.js` renders them too.
fn formation_rows(out: &mut String, process: &ProcessView) {
    let class = |ok: bool| if ok { "ok" } else { "bad" };
    let _ = write!(
        out,
        "<tr class=\"proc {}\"><th colspan=\"4\">{}</th></tr>",
        class(process.ok),
        escape(&process.summary)
    );
    for dyno in &process.dynos {
        let _ = write!(
            out,
            "<tr class=\"{}\" data-dyno=\"{name}\"><td>{name}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            class(dyno.ok),
            escape(&dyno.state),
            dyno.release.map(|v| format!("v{v}")).unwrap_or_else(|| "–".into()),
            escape(&dyno.reason),
            name = escape(&dyno.name),
        );
    }
}

/// A failure, with a way back.
pub(crate) fn error(who: Option<(&str, &str)>, message: &str) -> String {
    let body = format!(
        "<h1>Sorry</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"/dashboard\">Back to the apps</a></p>",
        escape(message)
    );
    layout("Error", who, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        for (input, expect) in [
            ("plain", "plain"),
            ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("a & b", "a &amp; b"),
            ("\"quoted\" 'single'", "&quot;quoted&quot; &#39;single&#39;"),
            ("&amp;", "&amp;amp;"),
            ("é ✓", "é ✓"),
            ("", ""),
        ] {
            assert_eq!(escape(input), expect, "{input}");
        }
    }

    #[test]
    fn pages_escape_what_they_show() {
        let page = error(Some(("<b>@x", "\"csrf")), "app `<x>` not found");
        assert!(page.contains("app `&lt;x&gt;` not found"));
        assert!(page.contains("&lt;b&gt;@x") && page.contains("value=\"&quot;csrf\""));
        assert!(!page.contains("<b>@x"));
        let login = login(Some("bad <token>"));
        assert!(login.contains("bad &lt;token&gt;") && login.contains("method=\"post\""));
    }
}
