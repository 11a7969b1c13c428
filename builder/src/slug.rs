//! The slug: the built app directory packed as `./app` in a tar.gz, checked against the size
//! limit and uploaded.

use std::process::Command;
use std::time::Duration;

use crate::api::Api;
use crate::error::{Context as _, Failure, Result};
use crate::log::Log;
use crate::paths::Paths;
use crate::process;

/// The largest slug, unless `OURO_MAX_SLUG_BYTES` says otherwise: 500 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 500 * 1024 * 1024;
const TAR_TIMEOUT: Duration = Duration::from_secs(900);

/// Packs the app directory into [`Paths::slug`] with GNU tar, as `./<name>` (`./app`) owned by
/// 1000:1000, bounded to 900 s, and logs its size; a slug over `max_bytes` fails the build.
/// Returns its size.
pub fn pack(paths: &Paths, max_bytes: u64, log: &Log) -> Result<u64> {
    log.topic("Compressing...");
    let (Some(parent), Some(name)) = (paths.app.parent(), paths.app.file_name()) else {
        return Err(Failure::Builder(format!("{} cannot be packed", paths.app.display())));
    };
    let mut member = std::ffi::OsString::from("./");
    member.push(name);
    let slug = paths.slug();
    let mut command = Command::new("tar");
    command.arg("-C").arg(parent).args(["--owner=1000", "--group=1000", "-czf"]).arg(&slug).arg(member);
    let output = process::run(&mut command, TAR_TIMEOUT).map_err(Failure::Builder)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr.trim().lines().last().unwrap_or_default().to_string();
        return Err(Failure::Builder(format!("`{}` failed ({}): {reason}", process::shown(&command), output.status)));
    }
    let size = std::fs::metadata(&slug).context(|| format!("cannot read {}", slug.display()))?.len();
    log.info(&format!("Done: {}", human_size(size)));
    if size > max_bytes {
        return Err(Failure::Build(vec![
            format!("Compiled slug size: {} is too large (max is {}).", human_size(size), human_size(max_bytes)),
            "Remove files the app does not need at run time: list them in .slugignore.".into(),
        ]));
    }
    Ok(size)
}

/// Uploads [`Paths::slug`] (`PUT slug`).
pub fn upload(api: &Api, paths: &Paths) -> Result<()> {
    api.put_slug(&paths.slug()).map_err(Failure::Builder)
}

/// `12.3M`: bytes in MiB, one decimal.
pub fn human_size(bytes: u64) -> String {
    format!("{:.1}M", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_in_mib_with_one_decimal() {
        assert_eq!(human_size(0), "0.0M");
        assert_eq!(human_size(1024 * 1024), "1.0M");
        assert_eq!(human_size(DEFAULT_MAX_BYTES), "500.0M");
        assert_eq!(human_size(1_572_864 + 1), "1.5M");
        assert_eq!(human_size(123_456_789), "117.7M");
    }
}
