//! The `ouro-builder` system app: Ouro builds pushed code with an app of its own.
//!
//! Its slug holds the builder program (`bin/ouro-build`, the `builder/` crate's binary, read
//! from beside the API's own binary) and the shipped buildpacks (`buildpacks/`, compiled into
//! this binary by `build.rs`). At start the API makes sure the app exists (owned by the first
//! admin) and that its current release runs exactly this slug; when either changed (a new
//! Ouro), it uploads the new slug and makes a release, like any deploy. Every build is a one-off dyno of this app (see `build.rs`).

use sha2::{Digest, Sha256};

use crate::apps::AppRow;
use crate::embedded::{BUILDPACK_FILES, program, reproducible_tar_gz};
use crate::releases::{Change, SlugRow};
use crate::{AppState, Error, Result, now};

pub use ouro_types::platform::BUILDER_APP;

/// What a build dyno runs.
pub const BUILD_COMMAND: &str = "/app/bin/ouro-build";

/// The builder's slug: a tar.gz of `./app/bin/ouro-build` (`builder`, the program's bytes)
/// and `./app/buildpacks/...`, byte-for-byte the same for the same files (sorted, times and
/// owners zeroed; entries are `app/...`, as the `tar` crate writes `./app/...`), so its
/// checksum names the builder's version.
pub fn builder_slug(builder: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut files: Vec<(&str, u32, &[u8])> = BUILDPACK_FILES.to_vec();
    files.push(("bin/ouro-build", 0o755, builder));
    files.sort();
    reproducible_tar_gz(&files, "./app/")
}

/// The platform's own app `name`, made (owned by the first admin) when missing.
pub async fn ensure_system_app(state: &AppState, name: &str) -> Result<AppRow> {
    if let Some(app) = state.store.app(name).await? {
        return Ok(app);
    }
    let admin =
        state.store.first_admin().await?.ok_or_else(|| Error::Config(format!("no admin user to own {name}")))?;
    state.store.create_app(name, &admin).await
}

/// Makes the builder app and its release of the embedded slug when missing or different.
pub async fn ensure(state: &AppState) -> Result<()> {
    let app = ensure_system_app(state, BUILDER_APP).await?;
    let bin_dir = state.settings.bin_dir.clone();
    let slug = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        Ok(builder_slug(&program(&bin_dir, "ouro-build")?)?)
    })
    .await
    .map_err(std::io::Error::other)??;
    let digest = hex::encode(Sha256::digest(&slug));
    let checksum = format!("SHA256:{digest}");
    if app.current_release_id.is_some() {
        let release = state.store.current_release(&app).await?;
        if let Some(slug_id) = &release.slug_id {
            let current = state.store.slug(&app.id, slug_id).await?;
            if current.and_then(|s| s.checksum).as_deref() == Some(checksum.as_str()) {
                return Ok(());
            }
        }
    }
    crate::blob::put_bytes(state.blobs.as_ref(), &slug, "builder").await?;
    let row = SlugRow {
        id: uuid::Uuid::new_v4().to_string(),
        process_types: Default::default(),
        commit_sha: None,
        commit_description: Some(format!("ouro-builder {}", env!("CARGO_PKG_VERSION"))),
        expected_checksum: Some(checksum.clone()),
        checksum: None,
        size: None,
        stack: ouro_types::BUILD_STACK.to_string(),
        created_at: now(),
    };
    let row = state.store.create_slug(&app.id, row).await?;
    state.store.set_slug_blob(&row.id, &checksum, slug.len() as i64).await?;
    let description = Some(format!("Deploy builder {}", &digest[..12]));
    let release = state.create_release(&app, "ouro", Change::Deploy { slug_id: row.id, description }).await?;
    tracing::info!(version = release.map(|r| r.version), "builder app released");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_slug_is_reproducible_and_holds_the_builder() {
        let (a, b) = (builder_slug(b"one").unwrap(), builder_slug(b"one").unwrap());
        assert_eq!(a, b);
        assert_ne!(a, builder_slug(b"two").unwrap(), "a new builder program is a new slug");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&a[..]));
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        for expected in ["app/bin/ouro-build", "app/buildpacks/ORDER", "app/buildpacks/python/bin/compile"] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
    }
}
