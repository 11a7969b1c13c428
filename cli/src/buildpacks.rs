//! `buildpacks`, `buildpacks:set`, `buildpacks:add`, `buildpacks:remove`, `buildpacks:clear`:
//! which buildpacks build the app on its next push (none set: the builder detects one).

use ouro_types::{BuildpackInstallation, BuildpackInstallationsUpdate, BuildpackUpdate};

use crate::client::{app_path, decode};
use crate::context::{Ctx, Output, pretty};
use crate::error::CliError;
use crate::table::heading;

const PATH: &str = "/buildpack-installations";

pub fn list(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&app_path(&app, PATH))?;
    ctx.show(raw, |list: Vec<BuildpackInstallation>| render(&app, &list))
}

fn render(app: &str, list: &[BuildpackInstallation]) -> String {
    if list.is_empty() {
        return format!("{app} has no buildpack set: the next push detects one.\n");
    }
    let lines: String = list.iter().map(|b| format!("{}. {}\n", b.ordinal + 1, b.buildpack.url)).collect();
    heading(&format!("{app} Buildpack URL{}", if list.len() > 1 { "s" } else { "" })) + &lines
}

/// What a change does to the list (`index` counts from 1, as in Heroku's CLI).
pub enum Change {
    /// Replace the buildpack at `index` (default 1), or the whole list when it has one.
    Set {
        url: String,
        index: Option<usize>,
    },
    /// Insert at `index`, or append.
    Add {
        url: String,
        index: Option<usize>,
    },
    /// Remove the buildpack with this URL, or the one at `index`.
    Remove {
        url: Option<String>,
        index: Option<usize>,
    },
    Clear,
}

pub fn change(ctx: &Ctx, change: Change) -> Output {
    let app = ctx.app()?;
    let client = ctx.client()?;
    let current: Vec<BuildpackInstallation> = decode(client.get(&app_path(&app, PATH))?)?;
    let urls = apply(current.into_iter().map(|b| b.buildpack.url).collect(), &change)?;
    let body = BuildpackInstallationsUpdate {
        updates: urls.iter().map(|url| BuildpackUpdate { buildpack: url.clone() }).collect(),
    };
    let raw = client.put_json(&app_path(&app, PATH), &body)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let list: Vec<BuildpackInstallation> = decode(raw)?;
    let mut out = match change {
        Change::Clear => format!("Buildpacks cleared. The next push to {app} detects one.\n"),
        _ => format!("Buildpacks of {app} changed. The next push will use them.\n"),
    };
    if !list.is_empty() {
        out += &render(&app, &list);
    }
    Ok(out)
}

fn apply(mut urls: Vec<String>, change: &Change) -> Result<Vec<String>, CliError> {
    let position = |index: Option<usize>, len: usize| -> Result<Option<usize>, CliError> {
        match index {
            None => Ok(None),
            Some(0) => Err(CliError::usage("--index counts from 1")),
            Some(i) if i > len + 1 => Err(CliError::usage(format!("--index {i} is past the end of the list ({len})"))),
            Some(i) => Ok(Some(i - 1)),
        }
    };
    match change {
        Change::Set { url, index } => match position(*index, urls.len())? {
            Some(i) if i < urls.len() => urls[i] = url.clone(),
            Some(_) => urls.push(url.clone()),
            None if urls.len() <= 1 => urls = vec![url.clone()],
            None => return Err(CliError::usage("the app has several buildpacks: say which with --index")),
        },
        Change::Add { url, index } => {
            if urls.contains(url) {
                return Err(CliError::usage(format!("{url} is already set")));
            }
            match position(*index, urls.len())? {
                Some(i) => urls.insert(i, url.clone()),
                None => urls.push(url.clone()),
            }
        }
        Change::Remove { url, index } => match (url, position(*index, urls.len())?) {
            (Some(url), None) => {
                let before = urls.len();
                urls.retain(|u| u != url);
                if urls.len() == before {
                    return Err(CliError::usage(format!("{url} is not set")));
                }
            }
            (None, Some(i)) if i < urls.len() => {
                urls.remove(i);
            }
            _ => return Err(CliError::usage("name the buildpack to remove: a URL or --index N")),
        },
        Change::Clear => urls.clear(),
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn changes_follow_heroku() {
        let set = |url: &str, index| Change::Set { url: url.into(), index };
        let add = |url: &str, index| Change::Add { url: url.into(), index };
        assert_eq!(apply(list(&[]), &set("python", None)).unwrap(), list(&["python"]));
        assert_eq!(apply(list(&["go"]), &set("python", None)).unwrap(), list(&["python"]));
        assert!(apply(list(&["go", "rust"]), &set("python", None)).is_err());
        assert_eq!(apply(list(&["go", "rust"]), &set("python", Some(2))).unwrap(), list(&["go", "python"]));
        assert_eq!(apply(list(&["go"]), &add("python", None)).unwrap(), list(&["go", "python"]));
        assert_eq!(apply(list(&["go"]), &add("python", Some(1))).unwrap(), list(&["python", "go"]));
        assert!(apply(list(&["go"]), &add("go", None)).is_err());
        assert!(apply(list(&["go"]), &add("x", Some(0))).is_err());
        assert!(apply(list(&["go"]), &add("x", Some(5))).is_err());
        let remove = Change::Remove { url: Some("go".into()), index: None };
        assert_eq!(apply(list(&["go", "rust"]), &remove).unwrap(), list(&["rust"]));
        let remove = Change::Remove { url: None, index: Some(2) };
        assert_eq!(apply(list(&["go", "rust"]), &remove).unwrap(), list(&["go"]));
        assert!(apply(list(&["go"]), &Change::Remove { url: Some("rust".into()), index: None }).is_err());
        assert_eq!(apply(list(&["go", "rust"]), &Change::Clear).unwrap(), list(&[]));
    }
}
