//! `certs`, `certs:add` and `certs:remove`: the app's TLS certificates (Heroku's SNI
//! endpoints). The router presents a certificate to clients asking for one of its host names.

use std::path::Path;

use ouro_types::Certificate;

use crate::client::{app_path, segment};
use crate::context::{Ctx, Output, pretty};
use crate::error::CliError;
use crate::table::columns;

pub fn list(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&app_path(&app, "/sni-endpoints"))?;
    ctx.show(raw, |certs: Vec<Certificate>| render(&app, &certs))
}

fn render(app: &str, certs: &[Certificate]) -> String {
    if certs.is_empty() {
        return format!("{app} has no SSL certificates.\nUse `ouro certs:add CERT_FILE KEY_FILE` to add one.\n");
    }
    let mut rows = vec![vec!["ID".to_string(), "Expires".to_string(), "Domains".to_string()]];
    rows.extend(certs.iter().map(|c| vec![c.id.clone(), c.expires_at.clone(), c.hostnames.join(", ")]));
    columns(&rows)
}

pub fn add(ctx: &Ctx, cert_file: &Path, key_file: &Path) -> Output {
    let chain = read_pem(cert_file, "CERTIFICATE", "CERT_FILE")?;
    let key = read_pem(key_file, "PRIVATE KEY", "KEY_FILE")?;
    let app = ctx.app()?;
    let raw = ctx.client()?.post(
        &app_path(&app, "/sni-endpoints"),
        &serde_json::json!({ "certificate_chain": chain, "private_key": key }),
    )?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let cert: Certificate = crate::client::decode(raw)?;
    Ok(format!(
        "Adding SSL certificate to {app}... done\n{}",
        columns(&[
            vec!["ID".into(), "Expires".into(), "Domains".into()],
            vec![cert.id, cert.expires_at, cert.hostnames.join(", ")],
        ])
    ))
}

pub fn remove(ctx: &Ctx, id: &str) -> Output {
    if id.is_empty() || id.contains('/') {
        return Err(CliError::usage(format!("`{id}` is not a certificate id; `ouro certs` lists them")));
    }
    let app = ctx.app()?;
    let raw = ctx.client()?.delete(&app_path(&app, &format!("/sni-endpoints/{}", segment(id))))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Removing SSL certificate {id} from {app}... done\n"))
}

/// A PEM file's text, checked to hold a `-----BEGIN …{label}-----` block (catches swapped or
/// wrong files before anything is sent; the API does the real checks).
fn read_pem(path: &Path, label: &str, what: &str) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read {what} {}: {e}", path.display())))?;
    let has_block = text.lines().any(|line| {
        line.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|l| l.ends_with(label))
    });
    if has_block {
        Ok(text)
    } else {
        Err(CliError::usage(format!("{what} {} holds no PEM `{label}` block", path.display())))
    }
}

/// `certs:auto`: whether automatic certificates are on, and each custom domain's status
/// (Heroku's table: Domain, Status, Last Updated), with the reason of a failure.
pub fn auto(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&app_path(&app, "/acm"))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    if raw["acm"] != true {
        return Ok(format!(
            "Automatic Certificate Management is disabled on {app}.\nUse `ouro certs:auto:enable` to turn it on.\n"
        ));
    }
    let domains = raw["domains"].as_array().cloned().unwrap_or_default();
    if domains.is_empty() {
        return Ok(format!(
            "Automatic Certificate Management is enabled on {app}.\n{app} has no custom domains: `ouro domains:add` adds one.\n"
        ));
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut rows = vec![vec!["Domain".to_string(), "Status".to_string(), "Last Updated".to_string()]];
    let mut reasons = String::new();
    for d in &domains {
        rows.push(vec![text(&d["hostname"]), text(&d["status"]), text(&d["updated_at"])]);
        if let Some(reason) = d["reason"].as_str() {
            reasons.push_str(&format!("{}: {reason}\n", text(&d["hostname"])));
        }
    }
    Ok(format!("Automatic Certificate Management is enabled on {app}.\n\n{}{reasons}", columns(&rows)))
}

pub fn auto_enable(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.post_empty(&app_path(&app, "/acm"))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!(
        "Enabling Automatic Certificate Management... done\nEach custom domain of {app} gets a certificate once its DNS \
         points here: `ouro certs:auto` shows how far they are.\n"
    ))
}

pub fn auto_disable(ctx: &Ctx, confirm: Option<&str>) -> Output {
    let app = ctx.app()?;
    if confirm != Some(app.as_str()) {
        return Err(CliError::usage(format!(
            "this removes {app}'s automatic certificates (its custom domains then get the router's default one): run \
             again with --confirm {app}"
        )));
    }
    let raw = ctx.client()?.delete(&app_path(&app, "/acm"))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok("Disabling Automatic Certificate Management... done\n".into())
}

pub fn auto_refresh(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.patch(&app_path(&app, "/acm"), &serde_json::json!({ "acm_refresh": true }))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok("Refreshing Automatic Certificate Management... done\n".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        std::fs::write(&key, "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n").unwrap();
        assert!(read_pem(&cert, "CERTIFICATE", "CERT_FILE").is_ok());
        assert!(read_pem(&key, "PRIVATE KEY", "KEY_FILE").is_ok());
        assert_eq!(read_pem(&key, "CERTIFICATE", "CERT_FILE").unwrap_err().exit_code(), 2);
        assert_eq!(read_pem(&cert, "PRIVATE KEY", "KEY_FILE").unwrap_err().exit_code(), 2);
        assert_eq!(read_pem(&dir.path().join("missing"), "CERTIFICATE", "CERT_FILE").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn listing() {
        assert!(render("demo", &[]).starts_with("demo has no SSL certificates."));
        let certs = [Certificate {
            id: "c1".into(),
            hostnames: vec!["www.example.com".into(), "example.com".into()],
            expires_at: "2027-01-01T00:00:00Z".into(),
            created_at: "2026-11-26T00:00:00Z".into(),
        }];
        assert_eq!(
            render("demo", &certs),
            "ID  Expires               Domains\nc1  2027-01-01T00:00:00Z  www.example.com, example.com\n"
        );
    }
}
