//! A slug from a local directory: a tar.gz of its contents with every entry under `./app/`,
//! built in memory and byte-for-byte the same for the same directory (the API stores slugs
//! by their SHA-256).
//!
//! Determinism: entries in sorted order (a directory before what it holds), mtime 0, owner
//! 0:0, no user or group names, and modes normalised to what git keeps: 0755 for
//! directories and executable files, 0644 for other files. Symlinks stay symlinks; `.git`
//! and whatever `.slugignore` lists are left out.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{Builder, EntryType, Header};

use crate::error::CliError;

/// Where the app lives in the slug (and in a dyno).
const PREFIX: &[u8] = b"./app";
/// Room for a name or link target in a tar header; longer ones get a GNU long-name entry.
const NAME_FIELD: usize = 100;

/// The tar.gz of `dir`, leaving out `.git` and the paths in `ignore` (relative to `dir`).
pub fn build(dir: &Path, ignore: &[String]) -> Result<Vec<u8>, CliError> {
    let mut builder = Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let fail = |e: io::Error| CliError::local(format!("cannot build the slug: {e}"));
    append(&mut builder, header(EntryType::Directory, 0o755, 0), &slug_name(b""), None, &[]).map_err(fail)?;
    let mut walk = Walk { root: dir, ignore, builder: &mut builder };
    walk.dir(dir, &[])?;
    let gzip = builder.into_inner().map_err(fail)?;
    gzip.finish().map_err(fail)
}

struct Walk<'a, W: Write> {
    root: &'a Path,
    ignore: &'a [String],
    builder: &'a mut Builder<W>,
}

impl<W: Write> Walk<'_, W> {
    /// Adds what `path` (the directory at `rel` in the app) holds, by name.
    fn dir(&mut self, path: &Path, rel: &[u8]) -> Result<(), CliError> {
        let unreadable = |e: io::Error| CliError::local(format!("cannot read {}: {e}", path.display()));
        let mut children: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        for entry in fs::read_dir(path).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            children.push((name_bytes(&entry.file_name()), entry.path()));
        }
        children.sort();
        for (name, child) in children {
            let child_rel = if rel.is_empty() { name.clone() } else { [rel, b"/", &name].concat() };
            if name == b".git" || ignored(&child_rel, self.ignore) {
                continue;
            }
            self.entry(&child, &child_rel)?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, rel: &[u8]) -> Result<(), CliError> {
        let unreadable = |e: io::Error| CliError::local(format!("cannot read {}: {e}", path.display()));
        let fail = |e: io::Error| CliError::local(format!("cannot add {} to the slug: {e}", path.display()));
        let meta = fs::symlink_metadata(path).map_err(unreadable)?;
        let kind = meta.file_type();
        let name = slug_name(rel);
        if kind.is_symlink() {
            let target = fs::read_link(path).map_err(unreadable)?;
            if link_escapes(rel, &target) {
                return Err(CliError::local(format!(
                    "{} is a symlink out of the app (to {}): remove it or list it in {}",
                    path.display(),
                    target.display(),
                    self.root.join(".slugignore").display()
                )));
            }
            let target = path_bytes(&target);
            append(self.builder, header(EntryType::Symlink, 0o777, 0), &name, Some(&target), &[]).map_err(fail)
        } else if kind.is_dir() {
            let name = [name.as_slice(), b"/"].concat();
            append(self.builder, header(EntryType::Directory, 0o755, 0), &name, None, &[]).map_err(fail)?;
            self.dir(path, rel)
        } else if kind.is_file() {
            let data = fs::read(path).map_err(unreadable)?;
            let mode = if executable(&meta) { 0o755 } else { 0o644 };
            append(self.builder, header(EntryType::Regular, mode, data.len() as u64), &name, None, &data).map_err(fail)
        } else {
            eprintln!("ouro: warning: leaving out {}: not a file, directory or symlink", path.display());
            Ok(())
        }
    }
}

/// `./app/<rel>`, or `./app/` for the app directory itself (directories end in `/`).
fn slug_name(rel: &[u8]) -> Vec<u8> {
    if rel.is_empty() { [PREFIX, b"/"].concat() } else { [PREFIX, b"/", rel].concat() }
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header
}

/// Appends one entry with its name (and link target) written as given: `tar`'s own path
/// setters would drop the leading `./`.
fn append<W: Write>(
    builder: &mut Builder<W>,
    mut header: Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: &[u8],
) -> io::Result<()> {
    if name.len() > NAME_FIELD {
        append_long(builder, EntryType::GNULongName, name)?;
    }
    let gnu = header.as_gnu_mut().ok_or_else(|| io::Error::other("not a GNU header"))?;
    copy_truncated(&mut gnu.name, name);
    if let Some(link) = link {
        if link.len() > NAME_FIELD {
            append_long(builder, EntryType::GNULongLink, link)?;
        }
        copy_truncated(&mut gnu.linkname, link);
    }
    header.set_cksum();
    builder.append(&header, data)
}

/// The GNU entry that carries a name or link target too long for the header that follows.
fn append_long<W: Write>(builder: &mut Builder<W>, kind: EntryType, value: &[u8]) -> io::Result<()> {
    let data = [value, b"\0"].concat();
    let mut header = header(kind, 0o644, data.len() as u64);
    copy_truncated(
        &mut header.as_gnu_mut().ok_or_else(|| io::Error::other("not a GNU header"))?.name,
        b"././@LongLink",
    );
    header.set_cksum();
    builder.append(&header, data.as_slice())
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let len = value.len().min(field.len());
    field[..len].copy_from_slice(&value[..len]);
}

/// True if a symlink at `rel` (relative to the app) pointing at `target` leads out of the
/// app: an absolute target, or one that climbs above the app's root. Such links would be
/// refused by the API, or dangle in a dyno.
fn link_escapes(rel: &[u8], target: &Path) -> bool {
    // The link's own directory: its depth below the app root.
    let mut depth = rel.iter().filter(|b| **b == b'/').count();
    for part in target.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

/// The paths that a `.slugignore` lists, one per line, relative to the app directory:
/// `tmp` leaves out `tmp` and everything under it. `#` starts a comment line; a leading
/// `/` or `./` and a trailing `/` are dropped. There are no globs.
pub fn parse_slugignore(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut path = line;
            loop {
                let next = path.trim_start_matches('/');
                let next = next.strip_prefix("./").unwrap_or(next);
                if next == path {
                    break;
                }
                path = next;
            }
            let path = path.trim_end_matches('/');
            (!path.is_empty() && path != ".").then(|| path.to_string())
        })
        .collect()
}

/// `dir/.slugignore`, parsed; none is no list.
pub fn read_slugignore(dir: &Path) -> Result<Vec<String>, CliError> {
    let path = dir.join(".slugignore");
    match fs::read_to_string(&path) {
        Ok(text) => Ok(parse_slugignore(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CliError::local(format!("cannot read {}: {e}", path.display()))),
    }
}

/// True if `rel` is one of `patterns` or lies under one.
fn ignored(rel: &[u8], patterns: &[String]) -> bool {
    patterns.iter().map(String::as_bytes).any(|p| rel == p || (rel.starts_with(p) && rel.get(p.len()) == Some(&b'/')))
}

/// `512B`, `12.3K`, `4.0M`, `1.2G`, as Heroku prints slug sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["K", "M", "G"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1}{}", UNITS[unit])
}

#[cfg(unix)]
fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().to_vec()
}

#[cfg(not(unix))]
fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    name.to_string_lossy().replace('\\', "/").into_bytes()
}

fn path_bytes(path: &Path) -> Vec<u8> {
    name_bytes(path.as_os_str())
}

#[cfg(unix)]
fn executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn executable(_meta: &fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn slugignore_lines() {
        let text = "# build leftovers\n\ntmp\n/log/\n./docs/big.pdf\n  spec  \n*.psd\n/\n.\n#x\n";
        assert_eq!(parse_slugignore(text), ["tmp", "log", "docs/big.pdf", "spec", "*.psd"]);
        assert!(parse_slugignore("").is_empty());
    }

    #[test]
    fn ignored_paths() {
        let patterns: Vec<String> = ["tmp", "docs/big.pdf"].iter().map(|s| s.to_string()).collect();
        let cases: &[(&[u8], bool)] = &[
            (b"tmp", true),
            (b"tmp/cache/x", true),
            (b"tmpfile", false),
            (b"src/tmp", false),
            (b"docs", false),
            (b"docs/big.pdf", true),
            (b"docs/big.pdf.txt", false),
            (b"web.py", false),
        ];
        for (rel, expect) in cases {
            assert_eq!(ignored(rel, &patterns), *expect, "{}", String::from_utf8_lossy(rel));
        }
        assert!(!ignored(b"tmp", &[]));
    }

    #[test]
    fn escaping_links() {
        let cases: &[(&[u8], &str, bool)] = &[
            (b"current", "web.py", false),
            (b"lib/up", "../web.py", false),
            (b"lib/x", "./y/../z", false),
            (b"a/b/c", "../../web.py", false),
            (b"up", "../web.py", true),
            (b"lib/up", "../../etc/passwd", true),
            (b"venv/bin/python", "/usr/bin/python3", true),
            (b"x", "..", true),
            (b"lib/x", "..", false),
        ];
        for (rel, target, expect) in cases {
            assert_eq!(link_escapes(rel, Path::new(target)), *expect, "{} -> {target}", String::from_utf8_lossy(rel));
        }
    }

    #[test]
    fn sizes() {
        let cases = [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1.0K"),
            (12_595, "12.3K"),
            (1024 * 1024, "1.0M"),
            (5 * 1024 * 1024 + 300 * 1024, "5.3M"),
            (3 * 1024 * 1024 * 1024, "3.0G"),
            (5000 * 1024 * 1024 * 1024, "5000.0G"),
        ];
        for (bytes, expect) in cases {
            assert_eq!(human_size(bytes), expect, "{bytes}");
        }
    }

    /// Every entry of a tar.gz: (path, type, mode, mtime, uid, link target, contents).
    type Listed = (String, EntryType, u32, u64, u64, Option<String>, Vec<u8>);

    fn list(tarball: &[u8]) -> Vec<Listed> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
                let header = entry.header();
                let (kind, mode, mtime, uid) =
                    (header.entry_type(), header.mode().unwrap(), header.mtime().unwrap(), header.uid().unwrap());
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                (path, kind, mode, mtime, uid, link, data)
            })
            .collect()
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let path = std::env::temp_dir().join(format!("ouro-cli-slug-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        fn write(&self, rel: &str, data: &str) -> PathBuf {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, data).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[cfg(unix)]
    #[test]
    fn archives_a_directory_deterministically() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = TempDir::new("archive");
        dir.write("Procfile", "web: ./bin/web\n");
        let web = dir.write("bin/web", "#!/bin/sh\n");
        fs::set_permissions(&web, fs::Permissions::from_mode(0o700)).unwrap();
        dir.write(".profile.d/x.sh", "export A=1\n");
        dir.write(".git/HEAD", "ref: refs/heads/main\n");
        dir.write("vendor/lib/.git", "gitdir: ../../.git/modules/lib\n");
        dir.write("tmp/cache", "junk");
        dir.write("docs/big.pdf", "junk");
        dir.write("docs/small.txt", "keep");
        let long = format!("{}/{}.txt", "d".repeat(60), "f".repeat(60));
        dir.write(&long, "long");
        fs::create_dir_all(dir.0.join("empty")).unwrap();
        symlink("bin/web", dir.0.join("current")).unwrap();
        let ignore = vec!["tmp".to_string(), "docs/big.pdf".to_string()];

        let first = build(&dir.0, &ignore).unwrap();
        assert_eq!(build(&dir.0, &ignore).unwrap(), first, "same directory, same bytes");
        let entries = list(&first);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        let long_name = format!("./app/{long}");
        let long_dir = format!("./app/{}/", "d".repeat(60));
        let expect = [
            "./app/",
            "./app/.profile.d/",
            "./app/.profile.d/x.sh",
            "./app/Procfile",
            "./app/bin/",
            "./app/bin/web",
            "./app/current",
            long_dir.as_str(),
            long_name.as_str(),
            "./app/docs/",
            "./app/docs/small.txt",
            "./app/empty/",
            "./app/vendor/",
            "./app/vendor/lib/",
        ];
        assert_eq!(names, expect);
        for (path, kind, mode, mtime, uid, link, data) in &entries {
            assert_eq!((*mtime, *uid), (0, 0), "{path}");
            let expect_mode = match path.as_str() {
                "./app/bin/web" => 0o755,
                _ if kind.is_dir() => 0o755,
                _ if kind.is_symlink() => 0o777,
                _ => 0o644,
            };
            assert_eq!(*mode, expect_mode, "{path}");
            if path == "./app/current" {
                assert!(kind.is_symlink());
                assert_eq!(link.as_deref(), Some("bin/web"));
            }
            if path == &long_name {
                assert_eq!(data, b"long");
            }
        }

        symlink("/etc/passwd", dir.0.join("passwd")).unwrap();
        let error = build(&dir.0, &ignore).unwrap_err();
        assert!(error.to_string().contains("is a symlink out of the app (to /etc/passwd)"), "{error}");
        assert_eq!(error.exit_code(), 1);
        let ignore = vec!["tmp".to_string(), "passwd".to_string()];
        assert!(build(&dir.0, &ignore).is_ok());
    }
}
