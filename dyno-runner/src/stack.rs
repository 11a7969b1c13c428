//! The stack image: the Debian 13 ("trixie") root file system every slug image and dyno is based on.
//!
//! `ouro/stack:trixie-<hash>` is made from a recipe (see `dyno-runner/stack/README.md`):
//! `debootstrap --variant=minbase` with the package list in `dyno-runner/stack/packages`, then the
//! host CA bundle, a `dyno` user (uid/gid 1000, home `/app`) and some trimming, imported into the
//! Docker Engine with `POST /images/create?fromSrc=-`. The hash is the first 12 hex digits of the
//! SHA-256 of the recipe text, so the tag changes exactly when the recipe does, and an image with
//! the current tag is reused as it is.
//!
//! `OURO_STACK_IMAGE=<image>` names an image to use instead; it is then never built.
//!
//! The build stack `ouro/stack-build:trixie-<hash>` (like Heroku's `heroku-24-build`) is where
//! buildpacks run: the run stack plus compilers and headers (`dyno-runner/stack/build-packages`),
//! installed with apt in a container of the run stack and committed. Its hash covers the run stack
//! (name and image id) and that package list. `OURO_BUILD_STACK_IMAGE=<image>` names an image to
//! use instead. Dynos never run on the build stack.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{PermissionsExt as _, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::{Config, CreateContainerOptions, LogsOptions, RemoveContainerOptions, WaitContainerOptions};
use bollard::errors::Error as DockerError;
use bollard::image::{CommitContainerOptions, CreateImageOptions};
use bytes::Bytes;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;

/// Repository of the stack image.
pub const STACK_REPO: &str = "ouro/stack";
/// Debian suite of the stack (Debian 13).
pub const STACK_SUITE: &str = "trixie";
/// Bump when the way the image is built changes in code (not just in the data below), so that
/// hosts build the new image instead of reusing the old one.
pub const RECIPE_VERSION: &str = "2";
/// The package list, one per line, `#` comments (`dyno-runner/stack/packages`).
pub const PACKAGES: &str = include_str!("../stack/packages");
/// Environment variable naming an existing image to use instead of building the stack.
pub const STACK_IMAGE_ENV: &str = "OURO_STACK_IMAGE";
/// Repository of the build stack image (the run stack plus compilers; buildpacks run there).
pub const BUILD_STACK_REPO: &str = "ouro/stack-build";
/// Bump when the way the build stack is made changes in code (not just in the data below).
pub const BUILD_RECIPE_VERSION: &str = "1";
/// The build stack's extra packages, one per line, `#` comments (`dyno-runner/stack/build-packages`).
pub const BUILD_PACKAGES: &str = include_str!("../stack/build-packages");
/// Environment variable naming an existing image to use instead of building the build stack.
pub const BUILD_STACK_IMAGE_ENV: &str = "OURO_BUILD_STACK_IMAGE";
/// Environment variable naming the Debian mirror for debootstrap.
pub const MIRROR_ENV: &str = "OURO_STACK_MIRROR";
/// Debian mirror used unless `OURO_STACK_MIRROR` is set.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Environment variable naming the Debian security mirror (`trixie-security`).
pub const SECURITY_MIRROR_ENV: &str = "OURO_STACK_SECURITY_MIRROR";
/// Debian security mirror used unless `OURO_STACK_SECURITY_MIRROR` is set.
pub const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// The user dynos run as, and its ids.
pub const DYNO_USER: &str = "dyno";
pub const DYNO_UID: u32 = 1000;
pub const DYNO_GID: u32 = 1000;
/// Home and working directory of the `dyno` user; slugs are extracted here.
pub const APP_DIR: &str = "/app";

const VARIANT: &str = "minbase";
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// How many times debootstrap runs before the stack build fails (a mirror may drop a connection).
const DEBOOTSTRAP_ATTEMPTS: u32 = 3;
/// Importing a few hundred MB can outlast bollard's default 2 minute request timeout.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The build stack's `apt-get update && apt-get install` (a few hundred MB from the mirror).
const APT_INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Committing the build stack container (writing its layer, ~1 GB).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What runs (as root, `bash -c`) in a container of the freshly imported run stack, which is then
/// committed as the stack: the updates of `trixie-updates` and `trixie-security` (Heroku's stacks
/// follow their distribution's security updates too). The host's CA bundle is put back.
const STACK_UPGRADE_SCRIPT: &str = r#"set -eu
export DEBIAN_FRONTEND=noninteractive
ca=/etc/ssl/certs/ca-certificates.crt
cp "$ca" /tmp/ouro-host-ca.crt
apt="apt-get -q -o Acquire::Retries=5 -o Acquire::http::Timeout=30"
$apt update
$apt -y -o Dpkg::Options::=--force-confold dist-upgrade
cp /tmp/ouro-host-ca.crt "$ca"
rm -f /tmp/ouro-host-ca.crt
apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log /var/cache/debconf/*-old
"#;

/// What runs (as root, `bash -c`, packages as arguments) in the run stack container that becomes the
/// build stack. A package's dpkg trigger may regenerate the CA bundle: the host's is put back.
const BUILD_STACK_SCRIPT: &str = r#"set -eu
export DEBIAN_FRONTEND=noninteractive
ca=/etc/ssl/certs/ca-certificates.crt
cp "$ca" /tmp/ouro-host-ca.crt
apt="apt-get -q -o Acquire::Retries=5 -o Acquire::http::Timeout=30"
$apt update
$apt install -y --no-install-recommends "$@"
cp /tmp/ouro-host-ca.crt "$ca"
rm -f /tmp/ouro-host-ca.crt
apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log /var/cache/debconf/*-old
cc --version | head -1
rustc --version
cargo --version
"#;

const PASSWD_LINE: &str = "dyno:x:1000:1000:Ouro dyno:/app:/bin/bash";
const GROUP_LINE: &str = "dyno:x:1000:";
const SHADOW_LINE: &str = "dyno:!::0:99999:7:::";
const GSHADOW_LINE: &str = "dyno:!::";

/// Image config set at import (Dockerfile instructions accepted by `docker import --change`).
const IMAGE_CHANGES: &[&str] = &[
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "WORKDIR /app",
    r#"CMD ["/bin/bash"]"#,
];

/// Directories (relative to the root file system) whose contents are removed.
const EMPTIED_DIRS: &[&str] = &[
    "var/lib/apt/lists",
    "usr/share/man",
    "usr/share/info",
    "usr/share/groff",
    "usr/share/lintian",
    "usr/share/linda",
    "usr/share/locale",
    "var/log/apt",
    "dev",
];
/// Files removed, given as (directory, file name suffix).
const REMOVED_FILES: &[(&str, &str)] = &[
    ("var/cache/apt/archives", ".deb"),
    ("var/cache/apt", ".bin"),
    ("var/log", ".log"),
    ("var/cache/debconf", "-old"),
];
/// Later `apt-get install`s in the image stay as slim as the image itself (as Debian's `-slim`).
const DPKG_SLIM_CFG_PATH: &str = "etc/dpkg/dpkg.cfg.d/ouro-slim";
const DPKG_SLIM_CFG: &str = "\
# Ouro stack: no docs, man pages or translations (like Debian's -slim images).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
";
/// Every apt in the image (buildpacks fetching packages, the build stack's install) retries a
/// mirror that drops a connection or answers late, instead of failing the build.
const APT_RETRIES_CFG_PATH: &str = "etc/apt/apt.conf.d/80ouro-retries";
const APT_RETRIES_CFG: &str = "\
// Ouro stack: a mirror that fails once does not fail a build.
Acquire::Retries \"5\";
Acquire::http::Timeout \"30\";
Acquire::https::Timeout \"30\";
";
/// Host files debootstrap copies in, replaced by neutral ones (Docker bind-mounts its own).
const NEUTRAL_FILES: &[(&str, &str)] = &[("etc/resolv.conf", ""), ("etc/hostname", "localhost\n")];

/// Everything that can go wrong making sure the stack image exists. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("image {0} not found in the Docker Engine: build or load it there, or unset OURO_STACK_IMAGE")]
    ImageNotFound(String),
    #[error("Docker Engine error while {action}: {source}; check that the Docker Engine is running and reachable")]
    Docker {
        action: String,
        #[source]
        source: DockerError,
    },
    #[error("debootstrap not found: apt-get install debootstrap")]
    DebootstrapMissing,
    #[error("Debian archive keyring {0} not found: apt-get install debian-archive-keyring")]
    KeyringMissing(String),
    #[error("host CA bundle {path} unreadable ({source}): apt-get install ca-certificates")]
    HostCaMissing {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "building the stack image needs root (debootstrap): run the dyno runner as root, or set OURO_STACK_IMAGE to a prebuilt image"
    )]
    NotRoot,
    #[error(
        "debootstrap {suite} failed ({status}): {detail}; check that the mirror {mirror} is reachable (or set OURO_STACK_MIRROR)"
    )]
    Debootstrap { suite: &'static str, status: String, detail: String, mirror: String },
    #[error("debootstrap left mounts under {0}: unmount them (umount -R {0}) and delete that directory by hand")]
    LeftMounts(String),
    #[error("stack build step failed ({step}): {source}; check free space and permissions in the temp dir (TMPDIR)")]
    Io {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("tar of the stack root file system failed ({0}): check free space in the temp dir (TMPDIR)")]
    Tar(String),
    #[error("stack image import reported no image {0}: look at the Docker Engine's log and retry")]
    ImportLost(String),
    #[error("stack build task died: {0}; see the log above and retry")]
    Task(String),
    #[error(
        "build stack image {0} not found in the Docker Engine: build or load it there, or unset OURO_BUILD_STACK_IMAGE"
    )]
    BuildImageNotFound(String),
    #[error(
        "installing the build stack packages into {base} failed ({status}): {detail}; check that the Debian mirror is reachable from containers and that dyno-runner/stack/build-packages names {suite} packages"
    )]
    BuildStackInstall { base: String, status: String, detail: String, suite: &'static str },
    #[error(
        "installing the build stack packages took longer than {minutes} minutes: check that containers reach the Debian mirror quickly enough, then retry"
    )]
    BuildStackTimeout { minutes: u64 },
    #[error(
        "installing Debian's updates into the stack image {base} failed ({status}): {detail}; check that containers reach the Debian mirror and the security mirror (OURO_STACK_SECURITY_MIRROR), then retry"
    )]
    StackUpgrade { base: String, status: String, detail: String },
    #[error(
        "installing Debian's updates into the stack took longer than {minutes} minutes: check that containers reach the Debian mirrors quickly enough, then retry"
    )]
    StackUpgradeTimeout { minutes: u64 },
    #[error(
        "stack update {0:?} is not an update's id (digits): the API sent something else; upgrade the runner or the API"
    )]
    BadUpdate(String),
}

fn io_err(step: impl Into<String>) -> impl FnOnce(io::Error) -> StackError {
    let step = step.into();
    move |source| StackError::Io { step, source }
}

fn docker_err(action: impl Into<String>) -> impl FnOnce(DockerError) -> StackError {
    let action = action.into();
    move |source| StackError::Docker { action, source }
}

/// The packages of a package list text: one per line, `#` comments, sorted and deduplicated.
pub fn parse_packages(list: &str) -> Vec<String> {
    let mut packages: Vec<String> = list
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    packages.sort();
    packages.dedup();
    packages
}

/// The recipe text for a package list text: every input of the build that ends up in the image.
pub fn recipe_text(package_list: &str) -> String {
    let mut text = String::new();
    let mut line = |key: &str, value: &str| {
        text.push_str(key);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    };
    line("recipe-version", RECIPE_VERSION);
    line("debootstrap", &format!("--variant={VARIANT} {STACK_SUITE}"));
    line("suites", &format!("{STACK_SUITE} {STACK_SUITE}-updates {STACK_SUITE}-security"));
    line("upgrade", &format!("{STACK_UPGRADE_SCRIPT:?}"));
    line("packages", &parse_packages(package_list).join(","));
    line("ca-bundle", HOST_CA_BUNDLE);
    for (key, value) in
        [("passwd", PASSWD_LINE), ("group", GROUP_LINE), ("shadow", SHADOW_LINE), ("gshadow", GSHADOW_LINE)]
    {
        line(key, value);
    }
    line("app-dir", &format!("{APP_DIR} {DYNO_UID}:{DYNO_GID} 0755"));
    for dir in EMPTIED_DIRS {
        line("empty", dir);
    }
    for (dir, suffix) in REMOVED_FILES {
        line("remove", &format!("{dir}/*{suffix}"));
    }
    for (path, content) in NEUTRAL_FILES {
        line("write", &format!("{path} {content:?}"));
    }
    line("write", &format!("{DPKG_SLIM_CFG_PATH} {DPKG_SLIM_CFG:?}"));
    line("write", &format!("{APT_RETRIES_CFG_PATH} {APT_RETRIES_CFG:?}"));
    for change in IMAGE_CHANGES {
        line("change", change);
    }
    text
}

/// First 12 hex digits of the SHA-256 of a recipe text.
pub fn recipe_hash(recipe: &str) -> String {
    let digest = Sha256::digest(recipe.as_bytes());
    hex::encode(&digest[..6])
}

/// The stack image tag for a recipe text: `ouro/stack:trixie-<hash>`.
pub fn stack_tag_for(recipe: &str) -> String {
    format!("{STACK_REPO}:{STACK_SUITE}-{}", recipe_hash(recipe))
}

/// The tag of the stack image of this build of Ouro.
pub fn stack_tag() -> String {
    stack_tag_for(&recipe_text(PACKAGES))
}

/// One build at a time per process; the second caller waits and then finds the image.
static BUILD_LOCK: Mutex<()> = Mutex::const_new(());

/// Makes sure the stack image exists in the Docker Engine, building it if it is missing, and returns
/// its name. With `OURO_STACK_IMAGE` set, returns that image if it exists and never builds.
pub async fn ensure_stack_image(docker: &Docker) -> Result<String, StackError> {
    if let Some(image) = std::env::var(STACK_IMAGE_ENV).ok().filter(|image| !image.trim().is_empty()) {
        return require_image(docker, image.trim()).await;
    }
    let tag = stack_tag();
    if image_exists(docker, &tag).await? {
        return Ok(tag);
    }
    build_once(&BUILD_LOCK, docker, tag, |docker, tag| async move { build_stack_image(&docker, &tag).await }).await
}

/// Returns `image` if the Docker Engine has it, else [`StackError::ImageNotFound`].
pub async fn require_image(docker: &Docker, image: &str) -> Result<String, StackError> {
    if image_exists(docker, image).await? {
        Ok(image.to_owned())
    } else {
        Err(StackError::ImageNotFound(image.to_owned()))
    }
}

/// The build stack's recipe text: the run stack it starts from (`base`, its name, and `base_id`, its
/// image id, so a rebuilt or replaced run stack gives a new build stack), the sorted package list
/// and how they are installed.
pub fn build_recipe_text(base: &str, base_id: &str, build_package_list: &str) -> String {
    let mut text = String::new();
    for (key, value) in [
        ("build-recipe-version", BUILD_RECIPE_VERSION),
        ("base", base),
        ("base-id", base_id),
        ("packages", &parse_packages(build_package_list).join(",")),
        ("script", &format!("{BUILD_STACK_SCRIPT:?}")),
        ("config", "user=root workdir=/app cmd=/bin/bash env=base"),
    ] {
        text.push_str(key);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    }
    text
}

/// The build stack image tag for a build recipe text: `ouro/stack-build:trixie-<hash>`.
pub fn build_stack_tag_for(recipe: &str) -> String {
    format!("{BUILD_STACK_REPO}:{STACK_SUITE}-{}", recipe_hash(recipe))
}

/// One build stack build at a time per process (apart from the run stack's lock, which a build
/// stack build takes first through [`ensure_stack_image`]).
static BUILD_STACK_LOCK: Mutex<()> = Mutex::const_new(());

/// Makes sure the build stack image exists in the Docker Engine and returns its name: the run stack
/// ([`ensure_stack_image`], so `OURO_STACK_IMAGE` applies) plus `dyno-runner/stack/build-packages`,
/// made on first use (apt in a container of the run stack, a few minutes) and reused while neither
/// changes. With `OURO_BUILD_STACK_IMAGE` set, returns that image if it exists and never builds.
pub async fn ensure_build_stack_image(docker: &Docker) -> Result<String, StackError> {
    if let Some(image) = std::env::var(BUILD_STACK_IMAGE_ENV).ok().filter(|image| !image.trim().is_empty()) {
        let image = image.trim();
        return if image_exists(docker, image).await? {
            Ok(image.to_owned())
        } else {
            Err(StackError::BuildImageNotFound(image.to_owned()))
        };
    }
    let base = ensure_stack_image(docker).await?;
    let base_id = docker
        .inspect_image(&base)
        .await
        .map_err(docker_err(format!("inspecting image {base}")))?
        .id
        .unwrap_or_default();
    let recipe = build_recipe_text(&base, &base_id, BUILD_PACKAGES);
    let tag = build_stack_tag_for(&recipe);
    if image_exists(docker, &tag).await? {
        return Ok(tag);
    }
    build_once(&BUILD_STACK_LOCK, docker, tag, move |docker, tag| async move {
        build_build_stack_image(&docker, &base, &tag).await
    })
    .await
}

async fn image_exists(docker: &Docker, image: &str) -> Result<bool, StackError> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
        Err(err) => Err(docker_err(format!("inspecting image {image}"))(err)),
    }
}

/// Makes image `tag` with `build` unless it exists by the time `lock` is held. The build runs in
/// its own task holding the lock, so a caller that gives up waiting neither leaves a half-done
/// build behind nor lets a second build start next to it.
async fn build_once<F, Fut>(
    lock: &'static Mutex<()>,
    docker: &Docker,
    tag: String,
    build: F,
) -> Result<String, StackError>
where
    F: FnOnce(Docker, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), StackError>> + Send + 'static,
{
    let guard = lock.lock().await;
    let docker = docker.clone();
    let task = tokio::spawn(async move {
        let _guard = guard;
        if !image_exists(&docker, &tag).await? {
            build(docker, tag.clone()).await?;
        }
        Ok(tag)
    });
    task.await.map_err(|err| StackError::Task(err.to_string()))?
}

async fn build_stack_image(docker: &Docker, tag: &str) -> Result<(), StackError> {
    let started = Instant::now();
    let mirror =
        std::env::var(MIRROR_ENV).ok().filter(|m| !m.trim().is_empty()).unwrap_or_else(|| DEFAULT_MIRROR.to_owned());
    tracing::info!(%tag, %mirror, "building the stack image with debootstrap (takes a few minutes)");
    let rootfs_tar = tokio::task::spawn_blocking(move || build_rootfs_tar(&mirror))
        .await
        .map_err(|err| StackError::Task(err.to_string()))??;
    tracing::info!(
        %tag,
        tar_mb = rootfs_tar.len() / (1024 * 1024),
        elapsed = ?started.elapsed(),
        "stack root file system ready; importing it into the Docker Engine"
    );

    let (repo, tag_part) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    let hash = tag_part.rsplit('-').next().unwrap_or(tag_part);
    let labels = [format!("LABEL ouro.stack.suite={STACK_SUITE}"), format!("LABEL ouro.stack.recipe={hash}")];
    let changes: Vec<&str> = IMAGE_CHANGES.iter().copied().chain(labels.iter().map(String::as_str)).collect();
    let options = CreateImageOptions { from_src: "-", repo, tag: tag_part, changes, ..Default::default() };
    let importer = docker.clone().with_timeout(IMPORT_TIMEOUT);
    let mut progress = importer.create_image(Some(options), Some(Bytes::from(rootfs_tar)), None);
    while let Some(item) = progress.next().await {
        let info = item.map_err(docker_err(format!("importing the stack image {tag}")))?;
        tracing::debug!(status = ?info.status, "stack image import");
    }
    if !image_exists(docker, tag).await? {
        return Err(StackError::ImportLost(tag.to_owned()));
    }
    tracing::info!(%tag, elapsed = ?started.elapsed(), "stack imported; installing Debian's updates and security updates");
    let imported = docker.inspect_image(tag).await.map_err(docker_err(format!("inspecting image {tag}")))?;
    let labels = vec![
        ("ouro.stack.suite".to_owned(), STACK_SUITE.to_owned()),
        ("ouro.stack.recipe".to_owned(), hash.to_owned()),
    ];
    upgrade_image(docker, tag, tag, &format!("ouro-stack-upgrade-{hash}"), labels).await?;
    // The image as imported, now untagged, is not needed any more.
    if let Some(old) = imported.id {
        let _ = docker.remove_image(&old, None, None).await;
    }
    tracing::info!(%tag, elapsed = ?started.elapsed(), "stack image built");
    Ok(())
}

/// Installs Debian's updates and security updates ([`STACK_UPGRADE_SCRIPT`]) in a container of
/// `from` (named `name`: one left by a process that died mid-way is replaced) and commits it as
/// `tag` with `labels` and the time (`ouro.stack.upgraded`); the container is removed whatever
/// happens.
async fn upgrade_image(
    docker: &Docker,
    from: &str,
    tag: &str,
    name: &str,
    mut labels: Vec<(String, String)>,
) -> Result<(), StackError> {
    let (repo, tag_part) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    let config = Config::<String> {
        image: Some(from.to_owned()),
        user: Some("root".into()),
        cmd: Some(vec!["bash".into(), "-c".into(), STACK_UPGRADE_SCRIPT.into()]),
        ..Default::default()
    };
    let options = CreateContainerOptions { name: name.to_owned(), platform: None };
    let created = match docker.create_container(Some(options.clone()), config.clone()).await {
        Err(DockerError::DockerResponseServerError { status_code: 409, .. }) => {
            remove_container(docker, name).await;
            docker.create_container(Some(options), config).await
        }
        other => other,
    };
    let id = created.map_err(docker_err(format!("creating the stack upgrade container from {from}")))?.id;
    labels.push((
        "ouro.stack.upgraded".to_owned(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    ));
    labels.sort();
    let result = run_and_commit(docker, &id, from, repo, tag_part, labels, "Ouro stack").await;
    remove_container(docker, &id).await;
    result
}

/// The tag of `base` (a run or build stack image) with stack update `update` installed:
/// `ouro/stack:trixie-<hash>-u<update>` (`ouro/stack-build:…` for the build stack), or, for an
/// image named by `OURO_STACK_IMAGE` or `OURO_BUILD_STACK_IMAGE`,
/// `ouro/stack:custom-<hash of its name>-u<update>`.
pub fn updated_stack_tag(base: &str, update: &str) -> String {
    let ours = [STACK_REPO, BUILD_STACK_REPO].iter().any(|repo| base.starts_with(&format!("{repo}:")));
    if ours { format!("{base}-u{update}") } else { format!("{STACK_REPO}:custom-{}-u{update}", recipe_hash(base)) }
}

/// One stack update build at a time per process.
static UPDATE_LOCK: Mutex<()> = Mutex::const_new(());

/// The run stack image with stack update `update` (`ouro stack:update`) installed, made when
/// missing: Debian's updates and security updates installed in a container of the run stack
/// ([`ensure_stack_image`]) and committed (a minute or two; the dynos keep running meanwhile).
/// Without an update, the run stack itself. Images of this stack's older updates are untagged
/// once the new one is there (the dynos still on them keep their layers until they stop).
pub async fn ensure_updated_stack_image(docker: &Docker, update: Option<&str>) -> Result<String, StackError> {
    let base = ensure_stack_image(docker).await?;
    ensure_updated(docker, base, update).await
}

/// [`ensure_updated_stack_image`] for the build stack ([`ensure_build_stack_image`]): builds
/// get the same updates, their compilers and headers included.
pub async fn ensure_updated_build_stack_image(docker: &Docker, update: Option<&str>) -> Result<String, StackError> {
    let base = ensure_build_stack_image(docker).await?;
    ensure_updated(docker, base, update).await
}

async fn ensure_updated(docker: &Docker, base: String, update: Option<&str>) -> Result<String, StackError> {
    let Some(update) = update else { return Ok(base) };
    if !ouro_types::valid_stack_update(update) {
        return Err(StackError::BadUpdate(update.to_owned()));
    }
    let tag = updated_stack_tag(&base, update);
    if image_exists(docker, &tag).await? {
        return Ok(tag);
    }
    let labels =
        vec![("ouro.stack.update".to_owned(), update.to_owned()), ("ouro.stack.base".to_owned(), base.clone())];
    // The run and the build stack's updates have containers of their own.
    let container = format!("ouro-stack-update-{update}-{}", &recipe_hash(&base)[..12]);
    let made = build_once(&UPDATE_LOCK, docker, tag, move |docker, tag| async move {
        let started = Instant::now();
        tracing::info!(%tag, %base, "updating the stack: installing Debian's latest updates");
        upgrade_image(&docker, &base, &tag, &container, labels).await?;
        tracing::info!(%tag, elapsed = ?started.elapsed(), "stack updated");
        untag_older_updates(&docker, &base, &tag).await;
        Ok(())
    })
    .await?;
    Ok(made)
}

/// Untags the images of `base`'s stack updates other than `keep`. Docker keeps what a container
/// or a slug image still stands on.
async fn untag_older_updates(docker: &Docker, base: &str, keep: &str) {
    let prefix = updated_stack_tag(base, "");
    let repo = prefix.split_once(':').map_or(STACK_REPO, |(repo, _)| repo).to_string();
    let filters = std::collections::HashMap::from([("reference".to_string(), vec![repo])]);
    let options = bollard::image::ListImagesOptions { filters, ..Default::default() };
    let Ok(images) = docker.list_images(Some(options)).await else { return };
    for tag in images.iter().flat_map(|i| i.repo_tags.iter()).filter(|t| t.starts_with(&prefix) && *t != keep) {
        let options = bollard::image::RemoveImageOptions { noprune: true, ..Default::default() };
        match docker.remove_image(tag, Some(options), None).await {
            Ok(_) => tracing::info!(%tag, "untagged an older stack update"),
            Err(e) => tracing::debug!(%tag, error = %e, "an older stack update stays"),
        }
    }
}

/// Runs the container `id` (made from `base`) to its end and commits it as `repo:tag` with
/// `base`'s env, working directory and command and `labels`; fails with the container's last
/// error line when it ends otherwise than 0.
async fn run_and_commit(
    docker: &Docker,
    id: &str,
    base: &str,
    repo: &str,
    tag: &str,
    labels: Vec<(String, String)>,
    comment: &str,
) -> Result<(), StackError> {
    docker.start_container::<String>(id, None).await.map_err(docker_err("starting the stack upgrade container"))?;
    let waiter = docker.clone().with_timeout(APT_INSTALL_TIMEOUT + Duration::from_secs(60));
    let wait = async {
        let mut waits = waiter.wait_container(id, None::<WaitContainerOptions<String>>);
        match waits.next().await {
            None => Ok(0),
            Some(Ok(exit)) => Ok(exit.status_code),
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(err)) => Err(docker_err("waiting for the stack's updates to install")(err)),
        }
    };
    let status = match tokio::time::timeout(APT_INSTALL_TIMEOUT, wait).await {
        Ok(status) => status?,
        Err(_) => return Err(StackError::StackUpgradeTimeout { minutes: APT_INSTALL_TIMEOUT.as_secs() / 60 }),
    };
    let output = container_log_tail(docker, id, 40).await;
    if status != 0 {
        for line in output.lines() {
            tracing::warn!(%line, "stack apt");
        }
        return Err(StackError::StackUpgrade {
            base: base.to_owned(),
            status: format!("exit status {status}"),
            detail: error_detail(&output),
        });
    }
    let base_config = docker
        .inspect_image(base)
        .await
        .map_err(docker_err(format!("inspecting image {base}")))?
        .config
        .unwrap_or_default();
    let mut all_labels = base_config.labels.unwrap_or_default();
    all_labels.extend(labels);
    let image_config = Config::<String> {
        working_dir: base_config.working_dir.filter(|d| !d.is_empty()).or_else(|| Some(APP_DIR.into())),
        env: base_config.env.filter(|env| !env.is_empty()).or_else(|| {
            Some(IMAGE_CHANGES.iter().filter_map(|change| change.strip_prefix("ENV ")).map(str::to_owned).collect())
        }),
        cmd: Some(vec!["/bin/bash".into()]),
        labels: Some(all_labels),
        ..Default::default()
    };
    let commit = CommitContainerOptions { container: id, repo, tag, comment, pause: false, ..Default::default() };
    docker
        .clone()
        .with_timeout(COMMIT_TIMEOUT)
        .commit_container(commit, image_config)
        .await
        .map_err(docker_err(format!("committing the stack image {repo}:{tag}")))?;
    Ok(())
}

/// Installs the build packages in a container of `base` and commits it as `tag`; the container is
/// removed whatever happens.
async fn build_build_stack_image(docker: &Docker, base: &str, tag: &str) -> Result<(), StackError> {
    let started = Instant::now();
    let packages = parse_packages(BUILD_PACKAGES);
    let (repo, tag_part) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    let hash = tag_part.rsplit('-').next().unwrap_or(tag_part);
    tracing::info!(%tag, %base, packages = %packages.join(" "), "building the build stack image with apt (takes a few minutes)");
    // One name per recipe: a container left by a process that died mid-build is replaced.
    let name = format!("ouro-stack-build-{hash}");
    let mut cmd: Vec<String> = vec!["bash".into(), "-c".into(), BUILD_STACK_SCRIPT.into(), "ouro-build-stack".into()];
    cmd.extend(packages);
    // No env or labels of its own: the commit merges the container's into the image's config.
    let config = Config::<String> {
        image: Some(base.to_owned()),
        user: Some("root".into()),
        cmd: Some(cmd),
        ..Default::default()
    };
    let options = CreateContainerOptions { name: name.clone(), platform: None };
    let created = match docker.create_container(Some(options.clone()), config.clone()).await {
        Err(DockerError::DockerResponseServerError { status_code: 409, .. }) => {
            tracing::warn!(container = %name, "removing a build stack container left by an earlier run");
            remove_container(docker, &name).await;
            docker.create_container(Some(options), config).await
        }
        other => other,
    };
    let id = created.map_err(docker_err(format!("creating the build stack container from {base}")))?.id;
    let result = install_and_commit(docker, &id, base, repo, tag_part, hash).await;
    remove_container(docker, &id).await;
    result?;
    if !image_exists(docker, tag).await? {
        return Err(StackError::ImportLost(tag.to_owned()));
    }
    tracing::info!(%tag, elapsed = ?started.elapsed(), "build stack image built");
    Ok(())
}

async fn install_and_commit(
    docker: &Docker,
    id: &str,
    base: &str,
    repo: &str,
    tag: &str,
    hash: &str,
) -> Result<(), StackError> {
    docker.start_container::<String>(id, None).await.map_err(docker_err("starting the build stack container"))?;
    // bollard's own request timeout (2 minutes by default) must not cut the wait short.
    let waiter = docker.clone().with_timeout(APT_INSTALL_TIMEOUT + Duration::from_secs(60));
    let wait = async {
        let mut waits = waiter.wait_container(id, None::<WaitContainerOptions<String>>);
        match waits.next().await {
            None => Ok(0),
            Some(Ok(exit)) => Ok(exit.status_code),
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(err)) => Err(docker_err("waiting for the build stack packages to install")(err)),
        }
    };
    let status = match tokio::time::timeout(APT_INSTALL_TIMEOUT, wait).await {
        Ok(status) => status?,
        Err(_) => return Err(StackError::BuildStackTimeout { minutes: APT_INSTALL_TIMEOUT.as_secs() / 60 }),
    };
    let output = container_log_tail(docker, id, 40).await;
    if status != 0 {
        for line in output.lines() {
            tracing::warn!(%line, "build stack apt");
        }
        let detail = error_detail(&output);
        return Err(StackError::BuildStackInstall {
            base: base.to_owned(),
            status: format!("exit status {status}"),
            detail,
            suite: STACK_SUITE,
        });
    }
    for line in tail(&output, 3) {
        tracing::info!(%line, "build stack toolchain");
    }

    // The run stack's config (env, workdir, cmd) with the build stack's labels over its own.
    let base_config = docker
        .inspect_image(base)
        .await
        .map_err(docker_err(format!("inspecting image {base}")))?
        .config
        .unwrap_or_default();
    let mut labels = base_config.labels.unwrap_or_default();
    labels.extend([
        ("ouro.stack.suite".to_owned(), STACK_SUITE.to_owned()),
        ("ouro.stack.recipe".to_owned(), hash.to_owned()),
        ("ouro.stack.kind".to_owned(), "build".to_owned()),
        ("ouro.stack.base".to_owned(), base.to_owned()),
    ]);
    let image_config = Config::<String> {
        user: Some("root".into()),
        working_dir: Some(APP_DIR.into()),
        env: base_config.env.filter(|env| !env.is_empty()).or_else(|| {
            Some(IMAGE_CHANGES.iter().filter_map(|change| change.strip_prefix("ENV ")).map(str::to_owned).collect())
        }),
        cmd: Some(vec!["/bin/bash".into()]),
        labels: Some(labels),
        ..Default::default()
    };
    let commit = CommitContainerOptions {
        container: id,
        repo,
        tag,
        comment: "Ouro build stack",
        pause: false,
        ..Default::default()
    };
    docker
        .clone()
        .with_timeout(COMMIT_TIMEOUT)
        .commit_container(commit, image_config)
        .await
        .map_err(docker_err(format!("committing the build stack image {repo}:{tag}")))?;
    Ok(())
}

/// The last `lines` lines of a container's output (empty if Docker cannot give them).
async fn container_log_tail(docker: &Docker, id: &str, lines: usize) -> String {
    let options = LogsOptions::<String> { stdout: true, stderr: true, tail: lines.to_string(), ..Default::default() };
    let mut logs = docker.logs(id, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text
}

async fn remove_container(docker: &Docker, id: &str) {
    let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
    if let Err(err) = docker.remove_container(id, Some(options)).await {
        if !matches!(err, DockerError::DockerResponseServerError { status_code: 404, .. }) {
            tracing::warn!(container = %id, error = %err, "could not remove the build stack container");
        }
    }
}

/// Runs debootstrap and the rootfs steps in a temp dir and returns the tar of the root file system.
/// Blocking; the temp dir is removed whatever happens (unless mounts are left in it).
fn build_rootfs_tar(mirror: &str) -> Result<Vec<u8>, StackError> {
    if !running_as_root() {
        return Err(StackError::NotRoot);
    }
    let debootstrap = find_program("debootstrap").ok_or(StackError::DebootstrapMissing)?;
    if !Path::new(KEYRING).is_file() {
        return Err(StackError::KeyringMissing(KEYRING.to_owned()));
    }
    let ca_bundle = fs::read(HOST_CA_BUNDLE)
        .and_then(|bytes| if bytes.is_empty() { Err(io::Error::other("empty file")) } else { Ok(bytes) })
        .map_err(|source| StackError::HostCaMissing { path: HOST_CA_BUNDLE.to_owned(), source })?;

    let temp = tempfile::Builder::new().prefix("ouro-stack-").tempdir().map_err(io_err("creating a temp dir"))?;
    let work = temp.path().canonicalize().map_err(io_err("resolving the temp dir"))?;
    let root = work.join("rootfs");

    // A mirror that fails once (a dropped connection) must not fail the platform's start: the
    // whole debootstrap is tried again, from an empty directory, a few times.
    for attempt in 1..=DEBOOTSTRAP_ATTEMPTS {
        let outcome = run_debootstrap(&debootstrap, &root, &work.join("debootstrap.out"), mirror);
        // debootstrap unmounts what it mounted, even when it fails; make sure of it before anything
        // is deleted, and leave the directory alone rather than delete through a mount.
        if let Err(err) = unmount_all_under(&work) {
            let kept = temp.keep();
            tracing::error!(dir = %kept.display(), error = %err, "mounts left under the stack build dir");
            return Err(StackError::LeftMounts(kept.display().to_string()));
        }
        match outcome {
            Ok(()) => break,
            Err(err @ StackError::Debootstrap { .. }) if attempt < DEBOOTSTRAP_ATTEMPTS => {
                let pause = Duration::from_secs(5 * u64::from(attempt));
                tracing::warn!(error = %err, attempt, retry_in = ?pause, "debootstrap failed; trying again");
                fs::remove_dir_all(&root).map_err(io_err("emptying the stack build dir for another try"))?;
                std::thread::sleep(pause);
            }
            Err(err) => return Err(err),
        }
    }

    customize_rootfs(&root, &ca_bundle, &apt_sources(mirror))?;
    let tar = tar_rootfs(&root)?;
    let dir = temp.path().display().to_string();
    if let Err(err) = temp.close() {
        tracing::warn!(%dir, error = %err, "could not remove the stack build dir");
    }
    Ok(tar)
}

fn run_debootstrap(debootstrap: &Path, root: &Path, log: &Path, mirror: &str) -> Result<(), StackError> {
    let packages = parse_packages(PACKAGES).join(",");
    let out = fs::File::create(log).map_err(io_err("creating the debootstrap log"))?;
    let err = out.try_clone().map_err(io_err("creating the debootstrap log"))?;
    // debootstrap needs chroot & co. from sbin, which a non-login PATH may lack.
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    path.push(":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin");
    let status = Command::new(debootstrap)
        .arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={packages}"))
        .arg(format!("--keyring={KEYRING}"))
        .arg(STACK_SUITE)
        .arg(root)
        .arg(mirror)
        .env("PATH", path)
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                StackError::DebootstrapMissing
            } else {
                io_err("running debootstrap")(err)
            }
        })?;
    if status.success() {
        return Ok(());
    }
    let output = fs::read_to_string(log).unwrap_or_default();
    let detailed = fs::read_to_string(root.join("debootstrap/debootstrap.log")).unwrap_or_default();
    for tail_line in tail(&detailed, 20).iter().chain(tail(&output, 20).iter()) {
        tracing::warn!(line = %tail_line, "debootstrap");
    }
    let detail = error_detail(&output);
    Err(StackError::Debootstrap { suite: STACK_SUITE, status: status.to_string(), detail, mirror: mirror.to_owned() })
}

/// The line of a failed apt or debootstrap run that says why: the last `E:` line, else the
/// last line with text.
fn error_detail(output: &str) -> String {
    output
        .lines()
        .rev()
        .find(|line| line.starts_with("E:"))
        .or_else(|| output.lines().rev().find(|line| !line.trim().is_empty()))
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// The steps after debootstrap, on the root file system at `root`.
fn customize_rootfs(root: &Path, ca_bundle: &[u8], sources: &str) -> Result<(), StackError> {
    write_file(root, "etc/ssl/certs/ca-certificates.crt", ca_bundle, 0o644)?;
    write_file(root, "etc/apt/sources.list", sources.as_bytes(), 0o644)?;

    for (file, line) in [
        ("etc/passwd", PASSWD_LINE),
        ("etc/group", GROUP_LINE),
        ("etc/shadow", SHADOW_LINE),
        ("etc/gshadow", GSHADOW_LINE),
    ] {
        append_entry(root, file, line)?;
    }
    let app = root.join(APP_DIR.trim_start_matches('/'));
    fs::create_dir_all(&app).map_err(io_err("creating /app"))?;
    fs::set_permissions(&app, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod /app"))?;
    chown(&app, Some(DYNO_UID), Some(DYNO_GID)).map_err(io_err("chown /app"))?;

    for dir in EMPTIED_DIRS {
        empty_dir(&root.join(dir)).map_err(io_err(format!("emptying {dir}")))?;
    }
    for (dir, suffix) in REMOVED_FILES {
        remove_files(&root.join(dir), suffix).map_err(io_err(format!("removing {dir}/*{suffix}")))?;
    }
    slim_docs(&root.join("usr/share/doc")).map_err(io_err("trimming usr/share/doc"))?;
    for (path, content) in NEUTRAL_FILES {
        write_file(root, path, content.as_bytes(), 0o644)?;
    }
    write_file(root, DPKG_SLIM_CFG_PATH, DPKG_SLIM_CFG.as_bytes(), 0o644)?;
    write_file(root, APT_RETRIES_CFG_PATH, APT_RETRIES_CFG.as_bytes(), 0o644)?;
    Ok(())
}

/// The stack's apt sources: the suite, its updates and its security updates.
fn apt_sources(mirror: &str) -> String {
    let security = std::env::var(SECURITY_MIRROR_ENV)
        .ok()
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SECURITY_MIRROR.to_owned());
    format!(
        "deb {mirror} {STACK_SUITE} main\ndeb {mirror} {STACK_SUITE}-updates main\ndeb {security} {STACK_SUITE}-security main\n"
    )
}

/// Replaces `root/rel` with `content`, never writing through a symlink (it could point to the host).
fn write_file(root: &Path, rel: &str, content: &[u8], mode: u32) -> Result<(), StackError> {
    let path = root.join(rel);
    let step = || format!("writing {rel}");
    if let Ok(meta) = fs::symlink_metadata(&path) {
        if meta.is_dir() {
            return Err(io_err(step())(io::Error::other("is a directory")));
        }
        fs::remove_file(&path).map_err(io_err(step()))?;
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err(step()))?;
    }
    fs::write(&path, content).map_err(io_err(step()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_err(step()))
}

/// Appends a `name:...` line to a passwd-style file unless that name is there already.
fn append_entry(root: &Path, rel: &str, line: &str) -> Result<(), StackError> {
    let path = root.join(rel);
    let step = || format!("adding the dyno user to {rel}");
    let meta = fs::symlink_metadata(&path).map_err(io_err(step()))?;
    if !meta.is_file() {
        return Err(io_err(step())(io::Error::other("not a regular file")));
    }
    let current = fs::read_to_string(&path).map_err(io_err(step()))?;
    let name = line.split(':').next().unwrap_or(line);
    if current.lines().any(|existing| existing.split(':').next() == Some(name)) {
        return Ok(());
    }
    let mut file = fs::OpenOptions::new().append(true).open(&path).map_err(io_err(step()))?;
    let separator = if current.is_empty() || current.ends_with('\n') { "" } else { "\n" };
    writeln!(file, "{separator}{line}").map_err(io_err(step()))
}

/// Removes everything in `dir` (not following symlinks), keeping `dir`. A missing `dir` is fine.
fn empty_dir(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let path = entry?.path();
        if fs::symlink_metadata(&path)?.is_dir() { fs::remove_dir_all(&path)? } else { fs::remove_file(&path)? }
    }
    Ok(())
}

/// Removes the files (not directories) directly in `dir` whose names end with `suffix`.
fn remove_files(dir: &Path, suffix: &str) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(suffix) && !entry.file_type()?.is_dir() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Keeps only the `copyright` files in `usr/share/doc/<package>/`.
fn slim_docs(doc: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(doc) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        for item in fs::read_dir(entry.path())? {
            let item = item?;
            if item.file_name() == "copyright" {
                continue;
            }
            if item.file_type()?.is_dir() { fs::remove_dir_all(item.path())? } else { fs::remove_file(item.path())? }
        }
    }
    Ok(())
}

/// `tar --numeric-owner -C root -c .` into memory.
fn tar_rootfs(root: &Path) -> Result<Vec<u8>, StackError> {
    let output = Command::new(find_program("tar").unwrap_or_else(|| PathBuf::from("tar")))
        .arg("--numeric-owner")
        .arg("-C")
        .arg(root)
        .args(["-c", "."])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|err| StackError::Tar(err.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("no output");
        return Err(StackError::Tar(format!("{}: {}", output.status, last.trim())));
    }
    Ok(output.stdout)
}

/// Whether this process runs with effective uid 0 (from /proc, as `unsafe` is not allowed here).
fn running_as_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// `program` in `PATH` or the sbin/bin directories.
fn find_program(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|dir| dir.join(program))
        .find(|path| fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0))
}

/// Mount points at or under `dir`, deepest first (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_path(field)))
        .filter(|mount| mount.starts_with(dir))
        .collect();
    mounts.sort_by_key(|mount| std::cmp::Reverse(mount.components().count()));
    mounts.dedup();
    Ok(mounts)
}

/// Undoes the octal escapes (`\040` for space...) of mountinfo paths.
fn unescape_mount_path(field: &str) -> OsString {
    use std::os::unix::ffi::OsStringExt as _;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push(bytes[i + 1..i + 4].iter().fold(0u8, |acc, b| acc.wrapping_mul(8).wrapping_add(b - b'0')));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    OsString::from_vec(out)
}

/// Unmounts every mount under `dir`; fails if any is left.
fn unmount_all_under(dir: &Path) -> io::Result<()> {
    let mounts = mounts_under(dir)?;
    if mounts.is_empty() {
        return Ok(());
    }
    let umount = find_program("umount").unwrap_or_else(|| PathBuf::from("umount"));
    for mount in &mounts {
        tracing::warn!(mount = %mount.display(), "unmounting what debootstrap left mounted");
        let unmounted = Command::new(&umount).arg(mount).status().is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new(&umount).arg("-l").arg(mount).status();
        }
    }
    let left = mounts_under(dir)?;
    if left.is_empty() { Ok(()) } else { Err(io::Error::other(format!("still mounted: {}", left[0].display()))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_detail_is_apt_s_last_error_line() {
        assert_eq!(error_detail("Get:1 x\nE: Unable to locate package nope\nE: last one\n\n"), "E: last one");
        assert_eq!(error_detail("W: something\nfinal words  \n"), "final words");
        assert_eq!(error_detail(""), "no output");
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/tmp/a\040b/proc"), OsString::from("/tmp/a b/proc"));
        assert_eq!(unescape_mount_path(r"/plain"), OsString::from("/plain"));
        assert_eq!(unescape_mount_path(r"/end\04"), OsString::from(r"/end\04"));
    }

    #[test]
    fn package_list_parses() {
        let packages = parse_packages("b\n# comment\n  a  # why\n\nb\n");
        assert_eq!(packages, ["a", "b"]);
        let stack = parse_packages(PACKAGES);
        for needed in ["ca-certificates", "bash", "curl", "python3", "procps", "netbase", "git", "tar", "gzip"] {
            assert!(stack.iter().any(|p| p == needed), "{needed} missing from stack/packages");
        }
    }

    #[test]
    fn an_updated_stack_is_tagged_after_its_base_and_update() {
        assert_eq!(
            updated_stack_tag("ouro/stack:trixie-5640189d52c3", "1796000000000"),
            "ouro/stack:trixie-5640189d52c3-u1796000000000"
        );
        // An operator's image (OURO_STACK_IMAGE) is never retagged in its own repository.
        let custom = updated_stack_tag("registry.example/debian:13", "7");
        assert_eq!(custom, format!("ouro/stack:custom-{}-u7", recipe_hash("registry.example/debian:13")));
        assert!(
            updated_stack_tag("ouro/stack:trixie-1", "10").starts_with(&updated_stack_tag("ouro/stack:trixie-1", ""))
        );
        assert_eq!(
            updated_stack_tag("ouro/stack-build:trixie-0badc0ffee00", "7"),
            "ouro/stack-build:trixie-0badc0ffee00-u7"
        );
    }

    #[test]
    fn build_stack_tag_follows_the_run_stack_and_the_build_packages() {
        let base = stack_tag();
        let recipe = build_recipe_text(&base, "sha256:aa", BUILD_PACKAGES);
        assert_eq!(recipe, build_recipe_text(&base, "sha256:aa", BUILD_PACKAGES), "deterministic");
        let tag = build_stack_tag_for(&recipe);
        assert_eq!(tag, format!("{BUILD_STACK_REPO}:{STACK_SUITE}-{}", recipe_hash(&recipe)));
        assert!(tag.starts_with("ouro/stack-build:trixie-"), "{tag}");
        assert_ne!(recipe_hash(&recipe), recipe_hash(&recipe_text(PACKAGES)), "not the run stack's hash");

        // Another run stack (tag or image id) or another build package gives another tag ...
        let other_base =
            build_stack_tag_for(&build_recipe_text("ouro/stack:trixie-000000000000", "sha256:aa", BUILD_PACKAGES));
        let other_id = build_stack_tag_for(&build_recipe_text(&base, "sha256:bb", BUILD_PACKAGES));
        let more = build_stack_tag_for(&build_recipe_text(&base, "sha256:aa", &format!("{BUILD_PACKAGES}\ncmake\n")));
        for other in [&other_base, &other_id, &more] {
            assert_ne!(other, &tag);
        }
        // ... comments, blank lines and order do not.
        let mut reordered: Vec<&str> = BUILD_PACKAGES.lines().collect();
        reordered.reverse();
        let reordered = format!("# a comment\n\n{}", reordered.join("\n"));
        assert_eq!(build_stack_tag_for(&build_recipe_text(&base, "sha256:aa", &reordered)), tag);

        let packages = parse_packages(BUILD_PACKAGES);
        for needed in ["gcc", "libc6-dev", "make", "pkgconf", "rustc", "cargo", "libssl-dev"] {
            assert!(packages.iter().any(|p| p == needed), "{needed} missing from stack/build-packages");
        }
        // Packages reach apt as arguments, never through the shell: still, they are plain names.
        assert!(packages.iter().all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))));
    }

    #[test]
    fn editing_files_in_a_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash").unwrap();
        append_entry(root, "etc/passwd", PASSWD_LINE).unwrap();
        append_entry(root, "etc/passwd", PASSWD_LINE).unwrap();
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert_eq!(passwd, format!("root:x:0:0:root:/root:/bin/bash\n{PASSWD_LINE}\n"));

        // A symlink in the rootfs is replaced, never written through.
        let outside = root.join("outside");
        fs::write(&outside, "host").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc/resolv.conf")).unwrap();
        write_file(root, "etc/resolv.conf", b"", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "host");
        assert!(fs::symlink_metadata(root.join("etc/resolv.conf")).unwrap().is_file());

        fs::create_dir_all(root.join("var/cache/apt/archives/partial")).unwrap();
        fs::write(root.join("var/cache/apt/archives/x.deb"), "").unwrap();
        fs::write(root.join("var/cache/apt/archives/lock"), "").unwrap();
        remove_files(&root.join("var/cache/apt/archives"), ".deb").unwrap();
        assert!(!root.join("var/cache/apt/archives/x.deb").exists());
        assert!(root.join("var/cache/apt/archives/lock").exists());
        empty_dir(&root.join("var/cache/apt")).unwrap();
        assert_eq!(fs::read_dir(root.join("var/cache/apt")).unwrap().count(), 0);
        empty_dir(&root.join("does/not/exist")).unwrap();
    }
}
