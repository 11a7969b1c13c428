//! What the API deploys as the platform's own apps: the shipped buildpacks, compiled into the
//! API (see `build.rs`), the programs beside the API's binary (`ouro-build`, `ouro-addons`),
//! and the reproducible tar.gz the API makes of them: the same files give the same bytes, so
//! a checksum names a version.

use std::io::Write;

include!(concat!(env!("OUT_DIR"), "/embedded_files.rs"));

/// The program `name` from `bin_dir` (beside the API's binary), for a system app's slug or
/// source; a missing one is a start-up error that says how to get it.
pub fn program(bin_dir: &std::path::Path, name: &str) -> crate::Result<Vec<u8>> {
    let path = bin_dir.join(name);
    std::fs::read(&path).map_err(|e| {
        crate::Error::Config(format!(
            "cannot read {} ({e}): the API deploys it as part of the platform; build every binary \
             of the workspace (cargo build --workspace --bins) so that it sits beside ouro-api",
            path.display()
        ))
    })
}

/// A tar.gz of `files` under `prefix` (`./app/` for a slug, `` for a build's source): sorted,
/// with parent directories, times and owners zeroed.
pub fn reproducible_tar_gz(files: &[(&str, u32, &[u8])], prefix: &str) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _, _) in files {
        let mut parent = std::path::Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
    }
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    if !prefix.is_empty() {
        tar.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), prefix, std::io::empty())?;
    }
    for dir in &dirs {
        tar.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), format!("{prefix}{dir}/"), std::io::empty())?;
    }
    for (path, mode, content) in files {
        let mut h = header(tar::EntryType::Regular, *mode, content.len() as u64);
        tar.append_data(&mut h, format!("{prefix}{path}"), *content)?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}
