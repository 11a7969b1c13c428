//! The blob store: slugs, pushed sources and add-on backups as content-addressed files.
//!
//! An upload is staged as a file first (hashed and checked while it streams in), then
//! committed under its SHA-256, so identical slugs are stored once. [`BlobStore`] is the seam
//! for other backends (object storage for a multi-host setup); [`LocalBlobStore`] keeps them
//! in a directory.

use std::future::Future;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait BlobStore: Send + Sync {
    /// Directory for staging uploads; on the same file system as the store when local.
    fn staging_dir(&self) -> &Path;
    /// Moves a staged file into the store under `digest` (hex SHA-256 of its bytes, the blob's name). Committing a digest that is
    /// already stored keeps the stored one and drops the staged file.
    fn commit<'a>(&'a self, staged: &'a Path, digest: &'a str) -> BoxFuture<'a, io::Result<()>>;
    /// Opens a stored blob for reading; `NotFound` if there is none.
    fn open<'a>(&'a self, digest: &'a str) -> BoxFuture<'a, io::Result<tokio::fs::File>>;
    /// Every stored blob: its digest and when it was stored (or last committed again).
    fn list(&self) -> BoxFuture<'_, io::Result<Vec<(String, std::time::SystemTime)>>>;
    /// Removes a stored blob (gone already is fine).
    fn remove<'a>(&'a self, digest: &'a str) -> BoxFuture<'a, io::Result<()>>;
}

/// Stores `bytes` (made in memory: a system app's slug or source) as a blob; returns the hex
/// SHA-256 that names it.
pub async fn put_bytes(blobs: &dyn BlobStore, bytes: &[u8], what: &str) -> io::Result<String> {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(bytes));
    let staged = blobs.staging_dir().join(format!("{what}-{}", uuid::Uuid::new_v4()));
    tokio::fs::write(&staged, bytes).await?;
    if let Err(e) = blobs.commit(&staged, &digest).await {
        let _ = tokio::fs::remove_file(&staged).await;
        return Err(e);
    }
    Ok(digest)
}

pub struct LocalBlobStore {
    root: PathBuf,
    staging: PathBuf,
}

impl LocalBlobStore {
    pub fn open(root: PathBuf) -> io::Result<LocalBlobStore> {
        let staging = root.join("staging");
        std::fs::create_dir_all(root.join("sha256"))?;
        std::fs::create_dir_all(&staging)?;
        Ok(LocalBlobStore { root, staging })
    }

    fn path(&self, digest: &str) -> io::Result<PathBuf> {
        let valid = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if !valid {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a sha256 digest"));
        }
        Ok(self.root.join("sha256").join(&digest[..2]).join(digest))
    }
}

impl BlobStore for LocalBlobStore {
    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    fn commit<'a>(&'a self, staged: &'a Path, digest: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let dest = self.path(digest)?;
            if tokio::fs::try_exists(&dest).await? {
                // Stored again: young again, so that collection (which spares young blobs)
                // cannot take it before whatever committed it refers to it.
                let touched = dest.clone();
                tokio::task::spawn_blocking(move || {
                    std::fs::File::options().append(true).open(&touched)?.set_modified(std::time::SystemTime::now())
                })
                .await
                .map_err(io::Error::other)??;
                return tokio::fs::remove_file(staged).await;
            }
            tokio::fs::create_dir_all(dest.parent().expect("blob path has a parent")).await?;
            // Same file system: an atomic rename, so a reader never sees half a blob.
            tokio::fs::rename(staged, &dest).await
        })
    }

    fn open<'a>(&'a self, digest: &'a str) -> BoxFuture<'a, io::Result<tokio::fs::File>> {
        Box::pin(async move { tokio::fs::File::open(self.path(digest)?).await })
    }

    fn list(&self) -> BoxFuture<'_, io::Result<Vec<(String, std::time::SystemTime)>>> {
        let root = self.root.join("sha256");
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut found = Vec::new();
                for dir in std::fs::read_dir(&root)? {
                    let dir = dir?;
                    if !dir.file_type()?.is_dir() {
                        continue;
                    }
                    for blob in std::fs::read_dir(dir.path())? {
                        let blob = blob?;
                        let name = blob.file_name().to_string_lossy().into_owned();
                        if name.len() == 64 {
                            found.push((name, blob.metadata()?.modified()?));
                        }
                    }
                }
                Ok(found)
            })
            .await
            .map_err(io::Error::other)?
        })
    }

    fn remove<'a>(&'a self, digest: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(digest)?).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
    }
}

/// Checks that a staged file is a gzip'd tar whose every entry unpacks inside the slug: no
/// absolute paths, no `..`, no hard links out of the tree, no entry beneath a symlink (which
/// would write through it), no devices or fifos. Symlinks themselves may point anywhere: they
/// resolve inside the dyno's own container at run time (a venv's `python -> /usr/bin/python3`).
/// The entries' sizes may add up to at most `max_unpacked` bytes (no decompression bombs).
/// Returns a one-line reason on the first offending entry.
pub fn check_slug_archive(path: &Path, max_unpacked: u64) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read upload: {e}"))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let entries = archive.entries().map_err(|e| format!("not a tar.gz archive: {e}"))?;
    let (mut count, mut unpacked) = (0usize, 0u64);
    let mut symlinks = std::collections::HashSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("not a valid tar.gz archive: {e}"))?;
        count += 1;
        unpacked = unpacked.saturating_add(entry.size());
        if unpacked > max_unpacked {
            return Err(format!("the slug unpacks to more than {} MiB", max_unpacked / (1024 * 1024)));
        }
        let path = entry.path().map_err(|e| format!("entry with an unreadable path: {e}"))?.into_owned();
        let shown = path.display();
        if !stays_inside(&path) {
            return Err(format!("entry `{shown}` points outside the slug"));
        }
        let normal = normalized(&path);
        // `./` itself is the archive's root, not an entry of the slug.
        if let Some(reason) =
            Some(&normal).filter(|n| !n.as_os_str().is_empty()).and_then(|n| ouro_types::slug_entry_refused(n))
        {
            return Err(format!("entry `{shown}` {reason}"));
        }
        if let Some(link) = normal.ancestors().skip(1).find(|a| symlinks.contains(*a)) {
            return Err(format!("entry `{shown}` is beneath the symlink `{}`", link.display()));
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            entry.link_name().map_err(|e| format!("entry `{shown}` has an unreadable link: {e}"))?;
            symlinks.insert(normal);
        } else if kind.is_hard_link() {
            let target = entry.link_name().map_err(|e| format!("entry `{shown}` has an unreadable link: {e}"))?;
            let target = target.ok_or_else(|| format!("link `{shown}` has no target"))?;
            // A hard link names a file of the archive, from its root.
            if target.is_absolute() || !stays_inside(&target) {
                return Err(format!("link `{shown}` points outside the slug"));
            }
        } else if !(kind.is_file()
            || kind.is_dir()
            || kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink())
        {
            return Err(format!("entry `{shown}` is a device, fifo or other special file"));
        }
    }
    if count == 0 {
        return Err("the archive is empty".into());
    }
    Ok(())
}

/// True if the relative path never climbs above its root.
fn stays_inside(path: &Path) -> bool {
    let mut depth = 0i32;
    for part in path.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// The path without `.` parts and with `..` applied (it stays inside: checked before).
fn normalized(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn archive(build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>)) -> tempfile::NamedTempFile {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        build(&mut builder);
        let bytes = builder.into_inner().unwrap().finish().unwrap();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        io::Write::write_all(&mut file, &bytes).unwrap();
        file
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    fn add_file(b: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>, path: &str) {
        let mut h = header(tar::EntryType::Regular, 2);
        // `append_data` refuses `..`; write the raw name to build hostile archives.
        h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, &b"hi"[..]).unwrap();
    }

    fn add_link(
        b: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
        kind: tar::EntryType,
        path: &str,
        target: &str,
    ) {
        let mut h = header(kind, 0);
        h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_link_name(target).unwrap();
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
    }

    #[test]
    fn accepts_an_ordinary_slug() {
        let file = archive(|b| {
            add_file(b, "./");
            add_file(b, "./app/web.py");
            add_link(b, tar::EntryType::Symlink, "app/current", "web.py");
            add_link(b, tar::EntryType::Symlink, "app/lib/up", "../web.py");
            add_link(b, tar::EntryType::Symlink, "app/.venv/bin/python", "/usr/bin/python3");
            add_link(b, tar::EntryType::Symlink, "app/etc", "../../etc");
        });
        assert_eq!(check_slug_archive(file.path(), 1 << 20), Ok(()));
    }

    #[test]
    fn rejects_hostile_archives() {
        let cases: Vec<(tempfile::NamedTempFile, &str)> = vec![
            (archive(|b| add_file(b, "../etc/passwd")), "points outside"),
            (archive(|b| add_file(b, "/etc/passwd")), "points outside"),
            (archive(|b| add_file(b, "app/../../x")), "points outside"),
            (
                archive(|b| {
                    add_link(b, tar::EntryType::Symlink, "app/x", "/etc");
                    add_file(b, "app/x/passwd");
                }),
                "entry `app/x/passwd` is beneath the symlink `app/x`",
            ),
            (
                archive(|b| {
                    add_link(b, tar::EntryType::Symlink, "./app/x", "../../etc");
                    add_file(b, "app/./x/y/z");
                }),
                "is beneath the symlink `app/x`",
            ),
            (archive(|b| add_link(b, tar::EntryType::Link, "app/x", "../etc/passwd")), "link `app/x`"),
            (
                archive(|b| {
                    b.append(
                        &{
                            let mut h = header(tar::EntryType::Char, 0);
                            h.set_path("app/dev").unwrap();
                            h.set_cksum();
                            h
                        },
                        io::empty(),
                    )
                    .unwrap()
                }),
                "special file",
            ),
            (archive(|_| {}), "empty"),
            (archive(|b| add_file(b, "./etc/passwd")), "entry `./etc/passwd` is not under app/"),
            (archive(|b| add_file(b, "app/../etc/cron.d/x")), "is not under app/"),
            (archive(|b| add_file(b, "app/bin/.wh.python")), "would be a layer whiteout"),
            (
                archive(|b| {
                    b.append(
                        &{
                            let mut h = header(tar::EntryType::Regular, 3 << 20);
                            h.set_path("big").unwrap();
                            h.set_cksum();
                            h
                        },
                        io::repeat(0).take(3 << 20),
                    )
                    .unwrap()
                }),
                "more than 1 MiB",
            ),
        ];
        for (file, expect) in cases {
            let err = check_slug_archive(file.path(), 1 << 20).unwrap_err();
            assert!(err.contains(expect), "{err:?} should mention {expect:?}");
        }
        let mut not_gzip = tempfile::NamedTempFile::new().unwrap();
        io::Write::write_all(&mut not_gzip, b"plain text, not a slug").unwrap();
        assert!(check_slug_archive(not_gzip.path(), 1 << 20).unwrap_err().contains("tar.gz"));
    }

    #[tokio::test]
    async fn identical_blobs_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path().join("blobs")).unwrap();
        let digest = "ab".repeat(32);
        for _ in 0..2 {
            let staged = store.staging_dir().join("upload");
            std::fs::write(&staged, b"slug").unwrap();
            store.commit(&staged, &digest).await.unwrap();
            assert!(!staged.exists());
        }
        let stored: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256/ab")).unwrap().collect();
        assert_eq!(stored.len(), 1);
        assert!(store.open("../../etc/passwd").await.is_err());
    }
}
