//! Where a build happens, and how those places are prepared before the app's source arrives.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Context as _, Result};

/// The build's directories. The build dyno uses [`Paths::default`]; tests use temporary ones.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The app, built where its slug runs (`/app`); the builder's own files start here too.
    pub app: PathBuf,
    /// The app's cache volume (`/cache`), kept from one build to the next.
    pub cache: PathBuf,
    /// The builder's scratch space (`/tmp/ouro-build`): shipped buildpacks, ENV_DIR, the slug.
    pub work: PathBuf,
}

impl Default for Paths {
    fn default() -> Paths {
        Paths { app: "/app".into(), cache: "/cache".into(), work: "/tmp/ouro-build".into() }
    }
}

impl Paths {
    /// The buildpacks Ouro ships, moved here out of the app directory.
    pub fn shipped(&self) -> PathBuf {
        self.work.join("buildpacks")
    }

    /// ENV_DIR: one file per config var.
    pub fn env_dir(&self) -> PathBuf {
        self.work.join("env")
    }

    pub fn slug(&self) -> PathBuf {
        self.work.join("slug.tgz")
    }

    /// Copies the builder's buildpacks (`<app>/buildpacks`) to [`Paths::shipped`] and empties
    /// the app directory for the app's source. Fails if the shipped copy already exists.
    pub fn stage_self(&self) -> Result<()> {
        fs::create_dir_all(&self.work).context(|| format!("cannot create {}", self.work.display()))?;
        let (from, to) = (self.app.join("buildpacks"), self.shipped());
        copy_tree(&from, &to).context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        let entries = fs::read_dir(&self.app).context(|| format!("cannot list {}", self.app.display()))?;
        for entry in entries {
            let path = entry.context(|| format!("cannot list {}", self.app.display()))?.path();
            let removed = match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            removed.context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }

    /// Writes ENV_DIR (Heroku's): one file per config var, named after it, holding its value.
    /// Names that are not variable names (`[A-Za-z_][A-Za-z0-9_]*`) are left out.
    pub fn write_env_dir(&self, config: &BTreeMap<String, String>) -> Result<()> {
        let dir = self.env_dir();
        fs::create_dir_all(&dir).context(|| format!("cannot create {}", dir.display()))?;
        for (name, value) in config.iter().filter(|(name, _)| is_variable_name(name)) {
            let path = dir.join(name);
            fs::write(&path, value).context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Copies the tree `from` to the new directory `to`: symlinks as symlinks, modes kept.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let entries = fs::read_dir(from)?;
    fs::create_dir(to)?;
    for entry in entries {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source)?, &target)?;
        } else if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            fs::copy(&source, &target)?;
        }
    }
    fs::set_permissions(to, fs::metadata(from)?.permissions())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_paths() -> (tempfile::TempDir, Paths) {
        let root = tempfile::tempdir().unwrap();
        let paths =
            Paths { app: root.path().join("app"), cache: root.path().join("cache"), work: root.path().join("work") };
        (root, paths)
    }

    #[test]
    fn the_env_dir_holds_one_file_per_variable_name() {
        let (_root, paths) = temp_paths();
        let config = BTreeMap::from(
            [("DATABASE_URL", "postgres://x"), ("_under", "u"), ("bad-name", "b"), ("1ST", "n"), ("", "e"), ("É", "x")]
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        paths.write_env_dir(&config).unwrap();
        let mut names: Vec<String> =
            fs::read_dir(paths.env_dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["DATABASE_URL", "_under"]);
        assert_eq!(fs::read_to_string(paths.env_dir().join("DATABASE_URL")).unwrap(), "postgres://x");
    }

    #[test]
    fn staging_moves_the_buildpacks_aside_and_empties_the_app_dir() {
        use std::os::unix::fs::PermissionsExt as _;
        let (_root, paths) = temp_paths();
        let bin = paths.app.join("buildpacks/python/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("detect"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(bin.join("detect"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("python", paths.app.join("buildpacks/alias")).unwrap();
        fs::create_dir_all(paths.app.join("bin")).unwrap();
        fs::write(paths.app.join("bin/ouro-build"), "x").unwrap();
        fs::write(paths.app.join("Procfile"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", paths.app.join("etc")).unwrap();

        paths.stage_self().unwrap();

        assert_eq!(fs::read_dir(&paths.app).unwrap().count(), 0);
        let detect = paths.shipped().join("python/bin/detect");
        assert_eq!(fs::metadata(&detect).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::read_link(paths.shipped().join("alias")).unwrap(), Path::new("python"));
        assert!(Path::new("/etc").is_dir(), "a symlink is removed, not what it points to");
    }
}
