//! The pushed tree: fetched from the API and unpacked into the app directory, safely. The same
//! unpacking serves tarball buildpacks.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::read::GzDecoder;
use tar::EntryType;

use crate::api::{self, Api};
use crate::error::{Context as _, Failure, Result};
use crate::paths::Paths;

/// How much an archive may hold: bytes unpacked (as its headers say) and entries.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub bytes: u64,
    pub entries: u64,
}

impl Limits {
    /// The pushed tree's: 1 GiB and 200,000 entries.
    pub const SOURCE: Limits = Limits { bytes: 1024 * 1024 * 1024, entries: 200_000 };
    /// None (a buildpack's tarball).
    pub const NONE: Limits = Limits { bytes: u64::MAX, entries: u64::MAX };
}

/// Why an archive was not unpacked (whole).
#[derive(Debug)]
pub enum UnpackError {
    TooManyEntries(u64),
    TooLarge(u64),
    /// An entry that would land or point outside the tree, or a device: says which.
    Unsafe(String),
    /// A broken archive or a failed write.
    Io(String),
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpackError::TooManyEntries(limit) => write!(f, "it has more than {limit} entries"),
            UnpackError::TooLarge(limit) => write!(f, "it is larger than {} MB unpacked", limit >> 20),
            UnpackError::Unsafe(reason) | UnpackError::Io(reason) => f.write_str(reason),
        }
    }
}

impl From<io::Error> for UnpackError {
    fn from(e: io::Error) -> UnpackError {
        UnpackError::Io(e.to_string())
    }
}

/// Downloads the pushed tree (`GET source`) and unpacks it into the (empty) app directory
/// within [`Limits::SOURCE`]. An unsafe or oversized tree is a build failure that says why.
pub fn fetch(api: &Api, paths: &Paths) -> Result<()> {
    let archive = paths.work.join("source.tgz");
    api.download("/source", &archive, api::SOURCE_TIMEOUT).map_err(Failure::Builder)?;
    let file = File::open(&archive).context(|| format!("cannot open {}", archive.display()))?;
    unpack(file, &paths.app, Limits::SOURCE).map_err(source_failure)?;
    fs::remove_file(&archive).context(|| format!("cannot remove {}", archive.display()))
}

/// How the pushed tree failed to unpack, as the build says it.
fn source_failure(e: UnpackError) -> Failure {
    match e {
        UnpackError::TooManyEntries(limit) => Failure::build(format!("The pushed tree has more than {limit} files.")),
        UnpackError::TooLarge(limit) => {
            Failure::build(format!("The pushed tree is larger than {} MB unpacked.", limit >> 20))
        }
        UnpackError::Unsafe(reason) => {
            Failure::build(format!("The pushed tree has an entry that cannot be unpacked safely: {reason}"))
        }
        UnpackError::Io(reason) => Failure::Builder(format!("cannot unpack the pushed tree: {reason}")),
    }
}

/// Unpacks the tar.gz `archive` into the existing directory `dest` as Python's tarfile `data`
/// filter allows, and checks more:
///
/// - refused: absolute paths, `..` in paths, symlinks or hard links that are absolute or
///   resolve (following the links already unpacked) outside `dest`, devices and fifos, an
///   entry that would land outside `dest` through a link;
/// - files keep their owner-executable bit (and group/other read), owner read-write always;
///   directories get the default mode; no owners; modification times kept;
/// - past `limits` (entries, or bytes as the headers declare them) it stops before writing more.
///
/// A refusal stops at the entry it names; what was unpacked before it stays.
pub fn unpack(archive: impl Read, dest: &Path, limits: Limits) -> Result<(), UnpackError> {
    let dest = fs::canonicalize(dest)?;
    let mut archive = tar::Archive::new(GzDecoder::new(archive));
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut directories = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_pax_global_extensions() {
            continue; // Metadata (`git archive` puts the commit there), not a file.
        }
        entries += 1;
        bytes = bytes.saturating_add(entry.size());
        if entries > limits.entries {
            return Err(UnpackError::TooManyEntries(limits.entries));
        }
        if bytes > limits.bytes {
            return Err(UnpackError::TooLarge(limits.bytes));
        }
        let name = entry.path()?.into_owned();
        match unpack_entry(&mut entry, &name, &dest) {
            Ok(directory) => directories.extend(directory),
            Err(UnpackError::Io(e)) => return Err(UnpackError::Io(format!("cannot unpack '{}': {e}", name.display()))),
            Err(e) => return Err(e),
        }
    }
    // Last, as unpacking into a directory changes its time; deepest first.
    for (directory, mtime) in directories.iter().rev() {
        let _ = File::open(directory).and_then(|dir| dir.set_modified(*mtime));
    }
    Ok(())
}

/// Unpacks one entry, named `name`, into `dest` (canonical) as [`unpack`] says; a directory
/// comes back with its time, to be set at the end.
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &Path,
    dest: &Path,
) -> Result<Option<(PathBuf, SystemTime)>, UnpackError> {
    let Some(relative) = relative_path(name)? else { return Ok(None) }; // The root itself.
    let unsafe_entry = |why: &str| UnpackError::Unsafe(format!("'{}' {why}", name.display()));
    let outside = |path: &Path| !path.starts_with(dest);
    let outside_error = |path: &Path| {
        unsafe_entry(&format!("would be extracted to '{}', which is outside the destination", path.display()))
    };
    // Where it lands: its directory with the links in it resolved, then its own name.
    let parent = realpath(&dest.join(relative.parent().unwrap_or(Path::new(""))));
    let target = parent.join(relative.file_name().unwrap_or_default());
    if outside(&target) {
        return Err(outside_error(&target));
    }
    let kind = entry.header().entry_type();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(entry.header().mtime().unwrap_or(0));
    match kind {
        EntryType::Directory => {
            let real = realpath(&target);
            if outside(&real) {
                return Err(outside_error(&real));
            }
            fs::create_dir_all(&real)?;
            return Ok(Some((real, mtime)));
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            if !make_room(&parent, &target)? {
                return Err(unsafe_entry("would replace a directory"));
            }
            let mut file = File::create(&target)?;
            io::copy(entry, &mut file)?;
            let mut mode = entry.header().mode().unwrap_or(0o644) & 0o755;
            if mode & 0o100 == 0 {
                mode &= !0o111;
            }
            file.set_permissions(fs::Permissions::from_mode(mode | 0o600))?;
            file.set_modified(mtime)?;
        }
        EntryType::Symlink | EntryType::Link => {
            let link = entry.link_name()?.unwrap_or_default().into_owned();
            if link.has_root() {
                return Err(unsafe_entry("is a link to an absolute path"));
            }
            // A symlink is relative to its directory, a hard link to the archive's root.
            let points_to = realpath(&if kind == EntryType::Symlink { parent.join(&link) } else { dest.join(&link) });
            if outside(&points_to) {
                let why = format!("would link to '{}', which is outside the destination", points_to.display());
                return Err(unsafe_entry(&why));
            }
            if !make_room(&parent, &target)? {
                return Err(unsafe_entry("would replace a directory"));
            }
            if kind == EntryType::Symlink {
                std::os::unix::fs::symlink(&link, &target)?;
            } else if points_to.is_file() {
                fs::hard_link(&points_to, &target)?;
            } else {
                let why = format!("is a hard link to '{}', which is not a file unpacked before it", link.display());
                return Err(unsafe_entry(&why));
            }
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => return Err(unsafe_entry("is a special file")),
        _ => return Err(unsafe_entry("has an entry type that cannot be unpacked")),
    }
    Ok(None)
}

/// `name` without `.` parts; `None` for the root itself. Absolute paths and `..` are refused.
fn relative_path(name: &Path) -> Result<Option<PathBuf>, UnpackError> {
    let mut relative = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::Unsafe(format!("'{}' has an absolute path", name.display())));
            }
            Component::ParentDir => {
                return Err(UnpackError::Unsafe(format!("'{}' has `..` in its path", name.display())));
            }
        }
    }
    Ok((!relative.as_os_str().is_empty()).then_some(relative))
}

/// Creates `parent` and removes a file or link at `target`; false when `target` is a directory.
fn make_room(parent: &Path, target: &Path) -> io::Result<bool> {
    fs::create_dir_all(parent)?;
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => Ok(false),
        Ok(_) => fs::remove_file(target).map(|()| true),
        Err(_) => Ok(true),
    }
}

/// The absolute `path` with every symlink resolved as far as the path exists, the rest kept
/// as it is (Python's `os.path.realpath`): `..` goes up from where the links led. After 40
/// links (a loop) the rest is kept as it is.
fn realpath(path: &Path) -> PathBuf {
    let mut resolved = PathBuf::from("/");
    let mut parts: VecDeque<OsString> = path.components().map(|c| c.as_os_str().to_owned()).collect();
    let mut followed = 0;
    while let Some(part) = parts.pop_front() {
        if part == "/" {
            resolved = PathBuf::from("/");
        } else if part == ".." {
            resolved.pop();
        } else if part != "." {
            let next = resolved.join(&part);
            // Only a symlink has a link to read.
            match fs::read_link(&next) {
                Ok(target) if followed < 40 => {
                    followed += 1;
                    for component in target.components().rev() {
                        parts.push_front(component.as_os_str().to_owned());
                    }
                }
                _ => resolved = next,
            }
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    /// A tar.gz of raw entries (type, name, link name, data): names are written as they are,
    /// `..` and absolute ones too. Scripts (`#!`) have mode 0775, the rest 0664.
    fn archive(entries: &[(EntryType, &str, &str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for &(kind, name, link, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(if data.starts_with(b"#!") { 0o775 } else { 0o664 });
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn file(name: &str) -> (EntryType, &str, &'static str, &'static [u8]) {
        (EntryType::Regular, name, "", b"data")
    }

    fn dir(name: &str) -> (EntryType, &str, &'static str, &'static [u8]) {
        (EntryType::Directory, name, "", b"")
    }

    fn symlink<'a>(name: &'a str, to: &'a str) -> (EntryType, &'a str, &'a str, &'static [u8]) {
        (EntryType::Symlink, name, to, b"")
    }

    /// Unpacks into `<temp>/app`: the outcome, and what is in `<temp>` besides `app` after.
    fn unpack_into_app(
        entries: &[(EntryType, &str, &str, &[u8])],
        limits: Limits,
    ) -> (Result<(), String>, Vec<String>) {
        let root = tempfile::tempdir().unwrap();
        let app = root.path().join("app");
        fs::create_dir(&app).unwrap();
        let outcome = unpack(archive(entries).as_slice(), &app, limits).map_err(|e| e.to_string());
        let mut beside: Vec<String> =
            fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        beside.retain(|name| name != "app");
        (outcome, beside)
    }

    #[test]
    fn hostile_entries_are_refused_by_name_and_nothing_lands_outside() {
        let check = |entries: &[(EntryType, &str, &str, &[u8])], expect: &str| {
            let (outcome, beside) = unpack_into_app(entries, Limits::SOURCE);
            let error = outcome.expect_err(expect);
            assert!(error.contains(expect), "{error:?} should say {expect:?}");
            assert!(!error.contains('\n'), "one line: {error:?}");
            assert_eq!(beside, Vec::<String>::new(), "written outside for {expect:?}");
        };
        check(&[file("/etc/cron.d/evil")], "'/etc/cron.d/evil' has an absolute path");
        check(&[file("../x")], "'../x' has `..` in its path");
        check(&[file("ok"), file("a/../../x")], "'a/../../x' has `..` in its path");
        check(&[symlink("etc", "/etc")], "'etc' is a link to an absolute path");
        check(&[symlink("up", "../..")], "'up' would link to '");
        check(&[symlink("up", "../x")], "which is outside the destination");
        // `..` after a link goes up from where the link leads, as the kernel does.
        check(&[dir("d"), symlink("d/s", ".."), symlink("e", "d/s/../x")], "'e' would link to '");
        // A link made harmless at first, then the link under it turned: writing through it is refused.
        check(
            &[dir("m/n"), symlink("x", "m/n"), symlink("l", "x/.."), symlink("x", "."), file("l/escape")],
            "'l/escape' would be extracted to '",
        );
        check(&[(EntryType::Link, "h", "/etc/passwd", b"")], "'h' is a link to an absolute path");
        check(&[(EntryType::Link, "h", "../x", b"")], "'h' would link to '");
        check(&[(EntryType::Link, "h", "missing", b"")], "'h' is a hard link to 'missing', which is not a file");
        check(&[(EntryType::Char, "dev/null", "", b"")], "'dev/null' is a special file");
        check(&[(EntryType::Block, "sda", "", b"")], "'sda' is a special file");
        check(&[(EntryType::Fifo, "pipe", "", b"")], "'pipe' is a special file");
        check(&[dir("a"), file("a")], "'a' would replace a directory");
        check(&[file("a"), file("a/b")], "cannot unpack 'a/b': ");
    }

    #[test]
    fn safe_links_and_files_unpack() {
        let root = tempfile::tempdir().unwrap();
        let entries = [
            dir("./"),
            (EntryType::Regular, "bin/run", "", b"#!/bin/sh\n" as &[u8]),
            file("lib/a.txt"),
            symlink("lib/b.txt", "a.txt"),
            symlink("current", "lib"),
            symlink("dangling", "not/yet"),
            (EntryType::Link, "hard.txt", "lib/a.txt", b""),
            file("current/c.txt"),
        ];
        let bytes = archive(&entries);
        unpack(bytes.as_slice(), root.path(), Limits::SOURCE).unwrap();
        let mode = |path: &str| fs::symlink_metadata(root.path().join(path)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("bin/run"), 0o755);
        assert_eq!(mode("lib/a.txt"), 0o644);
        assert_eq!(fs::read_to_string(root.path().join("lib/b.txt")).unwrap(), "data");
        assert_eq!(fs::read_link(root.path().join("dangling")).unwrap(), Path::new("not/yet"));
        assert_eq!(fs::read_to_string(root.path().join("hard.txt")).unwrap(), "data");
        assert!(root.path().join("lib/c.txt").is_file(), "written through an inside link");
    }

    #[test]
    fn a_git_archive_unpacks_with_modes_and_times() {
        let repo = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let output = Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .current_dir(repo.path())
                .stderr(Stdio::null())
                .output()
                .unwrap();
            assert!(output.status.success(), "git {args:?}");
            output.stdout
        };
        git(&["init", "-q"]);
        fs::create_dir(repo.path().join("bin")).unwrap();
        fs::write(repo.path().join("bin/start"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(repo.path().join("bin/start"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(repo.path().join("Procfile"), "web: bin/start\n").unwrap();
        std::os::unix::fs::symlink("bin/start", repo.path().join("start")).unwrap();
        git(&["add", "."]);
        git(&["commit", "-qm", "first"]);
        // Its first entry is a pax global header holding the commit id.
        let tree = git(&["archive", "--format=tar.gz", "HEAD"]);

        let dest = tempfile::tempdir().unwrap();
        unpack(tree.as_slice(), dest.path(), Limits::SOURCE).unwrap();
        let mut names: Vec<String> =
            fs::read_dir(dest.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["Procfile", "bin", "start"]);
        let start = fs::metadata(dest.path().join("bin/start")).unwrap();
        assert_eq!(start.permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::metadata(dest.path().join("Procfile")).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(fs::read_link(dest.path().join("start")).unwrap(), Path::new("bin/start"));
        let committed: u64 = String::from_utf8(git(&["log", "-1", "--format=%ct"])).unwrap().trim().parse().unwrap();
        let modified = start.modified().unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(modified, committed);
    }

    #[test]
    fn limits_stop_before_writing_more() {
        let few = Limits { bytes: u64::MAX, entries: 3 };
        let (outcome, _) = unpack_into_app(&[file("a"), file("b"), file("c")], few);
        assert_eq!(outcome, Ok(()));
        let (outcome, _) = unpack_into_app(&[file("a"), file("b"), file("c"), file("d")], few);
        assert_eq!(outcome, Err("it has more than 3 entries".to_string()));

        let root = tempfile::tempdir().unwrap();
        let small = Limits { bytes: 6, entries: u64::MAX };
        let error = unpack(archive(&[file("a"), file("b")]).as_slice(), root.path(), small).unwrap_err();
        assert!(matches!(error, UnpackError::TooLarge(6)), "{error:?}");
        assert!(root.path().join("a").exists() && !root.path().join("b").exists());
    }

    #[test]
    fn the_pushed_tree_fails_with_the_python_builders_messages() {
        let check = |error: UnpackError, expect: &str| assert_eq!(source_failure(error), Failure::build(expect));
        check(UnpackError::TooManyEntries(Limits::SOURCE.entries), "The pushed tree has more than 200000 files.");
        check(UnpackError::TooLarge(Limits::SOURCE.bytes), "The pushed tree is larger than 1024 MB unpacked.");
        check(
            UnpackError::Unsafe("'dev' is a special file".into()),
            "The pushed tree has an entry that cannot be unpacked safely: 'dev' is a special file",
        );
        let broken = source_failure(UnpackError::Io("corrupt deflate stream".into()));
        assert_eq!(broken, Failure::Builder("cannot unpack the pushed tree: corrupt deflate stream".into()));
    }
}
