//! `deploy [DIR]`: releases a local directory as it is, as a slug, without a build (`git push`
//! builds from source).
//! The Procfile gives the process types, the directory's contents become `/app`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use ouro_types::{Release, ReleaseCreate, Slug, SlugCreate};

use crate::client::{app_path, decode};
use crate::context::{Ctx, Output, pretty};
use crate::error::CliError;
use crate::{git, slug};

pub fn deploy(ctx: &Ctx, dir: &Path) -> Output {
    // Everything local that can be wrong is checked before the first request.
    let process_types = read_procfile(dir)?;
    let app = ctx.app()?;
    let client = ctx.client()?;
    let ignore = slug::read_slugignore(dir)?;
    let commit = git::head_commit(dir);
    let progress = Progress { enabled: !ctx.json };

    let tarball = progress.step("Compressing", || {
        let tarball = slug::build(dir, &ignore)?;
        Ok((format!("done, {}", slug::human_size(tarball.len() as u64)), tarball))
    })?;
    let slug = progress.step("Uploading slug", || {
        let create = SlugCreate { process_types, commit, ..SlugCreate::default() };
        let slug: Slug = decode(client.post(&app_path(&app, "/slugs"), &create)?)?;
        client.put_bytes(&slug.blob.url, "application/gzip", &tarball)?;
        Ok(("done".to_string(), slug))
    })?;
    let raw = progress.step("Releasing", || {
        let body = ReleaseCreate { slug: Some(slug.id.clone()), ..ReleaseCreate::default() };
        let raw = client.post(&app_path(&app, "/releases"), &body)?;
        let release: Release = decode(raw.clone())?;
        Ok((format!("done, v{}", release.version), raw))
    })?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(String::new())
}

/// The process types of `dir/Procfile`; a missing directory or Procfile is a usage error.
fn read_procfile(dir: &Path) -> Result<BTreeMap<String, String>, CliError> {
    let shown = dir.display();
    if !dir.is_dir() {
        return Err(CliError::usage(format!("{shown} is not a directory")));
    }
    let path = dir.join("Procfile");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CliError::usage(format!(
                "no Procfile in {shown}: add one with lines like `web: python3 app.py`"
            )));
        }
        Err(e) => return Err(CliError::local(format!("cannot read {}: {e}", path.display()))),
    };
    ouro_types::procfile::parse(&text).map_err(CliError::usage)
}

/// Heroku-style `-----> Step... done` lines, written as each step starts and ends so that a
/// slow upload shows where it is. Off with `--json`, whose stdout is only the JSON.
struct Progress {
    enabled: bool,
}

impl Progress {
    fn step<T>(&self, label: &str, work: impl FnOnce() -> Result<(String, T), CliError>) -> Result<T, CliError> {
        self.say(&format!("-----> {label}... "));
        match work() {
            Ok((done, value)) => {
                self.say(&format!("{done}\n"));
                Ok(value)
            }
            Err(error) => {
                self.say("failed\n");
                Err(error)
            }
        }
    }

    fn say(&self, text: &str) {
        if self.enabled {
            let mut stdout = io::stdout().lock();
            // As in `main`: a closed stdout is not worth failing the deploy for.
            let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfile_is_required() {
        let dir = std::env::temp_dir().join(format!("ouro-cli-deploy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let missing = read_procfile(&dir).unwrap_err();
        assert_eq!((missing.exit_code(), missing.to_string()), (2, format!("{} is not a directory", dir.display())));
        fs::create_dir_all(&dir).unwrap();
        let error = read_procfile(&dir).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert_eq!(
            error.to_string(),
            format!("no Procfile in {}: add one with lines like `web: python3 app.py`", dir.display())
        );
        fs::write(dir.join("Procfile"), "web: python3 app.py\nbad line\n").unwrap();
        assert_eq!(read_procfile(&dir).unwrap_err().to_string(), "Procfile line 2: expected \"type: command\"");
        fs::write(dir.join("Procfile"), "web: python3 app.py\n").unwrap();
        assert_eq!(read_procfile(&dir).unwrap()["web"], "python3 app.py");
        fs::remove_dir_all(&dir).unwrap();
    }
}
