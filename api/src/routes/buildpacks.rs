//! `/apps/{app}/buildpack-installations`: which buildpacks build the app, in order (Heroku's
//! resource). Empty means "detect": the builder tries the shipped buildpacks in
//! `buildpacks/ORDER`. An entry is a shipped buildpack's name (`python`, or `heroku/python`) or
//! the URL of a classic buildpack (a git repository, `#ref` allowed, or a `.tgz`).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Router};
use ouro_types::{BuildpackInstallation, BuildpackInstallationsUpdate, BuildpackRef};

use crate::apps::find_app;
use crate::auth::User;
use crate::error::Json;
use crate::{ApiError, AppState};

/// At most this many buildpacks per app.
const MAX_BUILDPACKS: usize = 10;

pub fn routes() -> Router<AppState> {
    Router::new().route("/apps/{app}/buildpack-installations", get(list).put(replace))
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Vec<BuildpackInstallation>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    Ok(axum::Json(installations(state.store.buildpacks(&app.id).await?)))
}

async fn replace(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<BuildpackInstallationsUpdate>,
) -> Result<axum::Json<Vec<BuildpackInstallation>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    if body.updates.len() > MAX_BUILDPACKS {
        return Err(ApiError::invalid_params(format!("an app may have at most {MAX_BUILDPACKS} buildpacks")));
    }
    let urls: Vec<String> = body.updates.into_iter().map(|u| u.buildpack.trim().to_string()).collect();
    for url in &urls {
        check(url)?;
    }
    state.store.set_buildpacks(&app.id, &urls).await?;
    Ok(axum::Json(installations(urls)))
}

fn installations(urls: Vec<String>) -> Vec<BuildpackInstallation> {
    urls.into_iter()
        .enumerate()
        .map(|(i, url)| BuildpackInstallation {
            ordinal: i as i64,
            buildpack: BuildpackRef { name: url.rsplit('/').next().unwrap_or(&url).to_string(), url },
        })
        .collect()
}

/// A shipped buildpack's name, or an http(s) URL without spaces or control characters.
fn check(url: &str) -> Result<(), ApiError> {
    let name = url.strip_prefix("heroku/").unwrap_or(url);
    let shipped = !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let link = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && url.bytes().all(|b| b.is_ascii_graphic());
    if shipped || link {
        Ok(())
    } else {
        Err(ApiError::invalid_params(format!(
            "buildpack `{url}` is neither a shipped buildpack's name (like `python`) nor an http(s) URL"
        )))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_urls() {
        for good in
            ["python", "heroku/nodejs", "https://github.com/heroku/heroku-buildpack-ruby.git#v1", "http://x/bp.tgz"]
        {
            assert!(super::check(good).is_ok(), "{good}");
        }
        for bad in ["", "Python", "ftp://x/bp", "https://x/a b", "file:///etc", "../bp", "heroku/"] {
            assert!(super::check(bad).is_err(), "{bad:?}");
        }
    }
}
