//! Everything the runner asks of the Docker Engine, through bollard: list its dynos, build slug
//! images, create app networks, start, stop and remove dyno containers.
//!
//! Docker is the source of truth for what runs: every container carries the labels below, and
//! a 404 or 409 from Docker is an ordinary outcome (somebody else got there first).

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::container::{
    Config, CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use bollard::errors::Error as DockerError;
use bollard::models::{HostConfig, HostConfigLogConfig};
use bollard::network::{CreateNetworkOptions, ListNetworksOptions};
use futures_util::StreamExt;
use ouro_types::dyno_size;

pub use crate::runtime::{Container, DYNO_PORT};
use crate::{Error, Result};

/// Which Ouro installation a container belongs to: a runner touches only its own.
pub const LABEL_PLATFORM: &str = "ouro.platform";
pub const LABEL_APP: &str = "ouro.app";
pub const LABEL_RELEASE: &str = "ouro.release";
pub const LABEL_TYPE: &str = "ouro.type";
pub const LABEL_INDEX: &str = "ouro.index";
pub const LABEL_SIZE: &str = "ouro.size";
/// ms since the epoch when the runner created the container.
pub const LABEL_STARTED: &str = "ouro.started";
/// `true` on an attached one-off (`ouro run`): its stdin is open and its output goes to a
/// terminal through the API, not to the app's log.
pub const LABEL_ATTACHED: &str = "ouro.attached";
/// `true` on a dyno reachable by its app's name on its app's own network (an alias given at
/// creation: a dyno of another app that joins that network, an add-on provider joining its
/// server's, finds it by that name). Dynos made by a runner from before have no such alias.
pub const LABEL_NAMED: &str = "ouro.named";

/// uid:gid of the `dyno` user of the stack image.
pub(crate) const DYNO_USER: &str = "1000:1000";

pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_local_defaults()
        .map_err(|e| Error::Docker(format!("cannot reach the Docker Engine: {e}")))?;
    docker.negotiate_version().await.map_err(|e| Error::Docker(format!("cannot reach the Docker Engine: {e}")))
}

/// Whether a dyno said, in its first minute of output, that it is `listening on` its port:
/// how the platform's own components (on the host's network, where no probe can tell two
/// listeners on one `SO_REUSEPORT` port apart) say they are up.
pub async fn said_listening(docker: &Docker, container: &Container) -> bool {
    use futures_util::StreamExt;
    let started = (container.started_ms / 1000) as i64;
    let options = bollard::container::LogsOptions::<String> {
        stdout: true,
        stderr: true,
        until: started + 60,
        ..Default::default()
    };
    let mut logs = docker.logs(&container.id, Some(options));
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = logs.next().await {
        let bytes = chunk.into_bytes();
        if String::from_utf8_lossy(&bytes).contains("listening on") {
            return true;
        }
        seen += bytes.len();
        if seen > 1 << 20 {
            break;
        }
    }
    false
}

/// Every dyno container of `platform`, running or not. Containers with unreadable labels are
/// skipped.
pub async fn list_dynos(docker: &Docker, platform: &str) -> Result<Vec<Container>> {
    let selector = format!("{LABEL_PLATFORM}={platform}");
    let filters = HashMap::from([("label", vec![selector.as_str(), LABEL_APP])]);
    let options = ListContainersOptions { all: true, filters, ..Default::default() };
    let summaries = docker.list_containers(Some(options)).await.map_err(docker_error)?;
    let mut dynos = Vec::new();
    for summary in summaries {
        let labels = summary.labels.unwrap_or_default();
        let label = |k: &str| labels.get(k).cloned();
        let (Some(id), Some(app), Some(release), Some(process_type), Some(index)) = (
            summary.id,
            label(LABEL_APP),
            label(LABEL_RELEASE).and_then(|r| r.parse().ok()),
            label(LABEL_TYPE),
            label(LABEL_INDEX).and_then(|i| i.parse().ok()),
        ) else {
            continue;
        };
        let host_network = summary.host_config.and_then(|h| h.network_mode).as_deref() == Some("host");
        let networks = summary.network_settings.and_then(|n| n.networks).unwrap_or_default();
        let addr = networks
            .get(&network_name(platform, &app))
            .and_then(|e| e.ip_address.clone())
            .filter(|ip| !ip.is_empty())
            .map(|ip| format!("{ip}:{DYNO_PORT}"));
        let prefix = network_name(platform, "");
        let joined = networks
            .keys()
            .filter_map(|n| n.strip_prefix(&prefix))
            .filter(|other| *other != app)
            .map(str::to_string)
            .collect();
        dynos.push(Container {
            id,
            size: label(LABEL_SIZE).unwrap_or_default(),
            running: summary.state.as_deref() == Some("running"),
            addr,
            node: None,
            host_network,
            created: summary.created.unwrap_or(0),
            started_ms: label(LABEL_STARTED).and_then(|s| s.parse().ok()).unwrap_or(0),
            joined,
            attached: label(LABEL_ATTACHED).as_deref() == Some("true"),
            named: label(LABEL_NAMED).as_deref() == Some("true"),
            app,
            release,
            process_type,
            index,
        });
    }
    Ok(dynos)
}

/// Resolves at the next container event (die, start, destroy, ...) of `platform`'s dynos, or
/// when the event stream breaks (the caller then re-subscribes after a pause).
pub async fn next_dyno_event(
    events: &mut (impl futures_util::Stream<Item = Result<bollard::models::EventMessage, DockerError>> + Unpin),
) -> bool {
    matches!(events.next().await, Some(Ok(_)))
}

/// A stream of the container events of `platform`'s dynos.
pub fn dyno_events(
    docker: &Docker,
    platform: &str,
) -> impl futures_util::Stream<Item = Result<bollard::models::EventMessage, DockerError>> + use<> {
    let label = format!("{LABEL_PLATFORM}={platform}");
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("label".to_string(), vec![label]),
        ("event".to_string(), vec!["die".to_string(), "destroy".to_string(), "oom".to_string()]),
    ]);
    docker.events(Some(bollard::system::EventsOptions::<String> { filters, ..Default::default() }))
}

/// Why a stopped container stopped, in Heroku's words where they fit.
pub async fn exit_reason(docker: &Docker, id: &str) -> Option<String> {
    let inspect = docker.inspect_container(id, None::<InspectContainerOptions>).await.ok()?;
    let state = inspect.state?;
    if state.oom_killed == Some(true) {
        return Some("R15: memory quota exceeded, killed".into());
    }
    match state.exit_code {
        Some(code) => Some(format!("process exited with status {code}")),
        None => state.error.filter(|e| !e.is_empty()),
    }
}

/// The last `lines` lines a container wrote (stdout and stderr), for an error message; empty
/// when Docker cannot give them.
pub async fn output_tail(docker: &Docker, id: &str, lines: usize) -> Vec<String> {
    use futures_util::StreamExt;
    let options = bollard::container::LogsOptions::<String> {
        stdout: true,
        stderr: true,
        tail: lines.to_string(),
        ..Default::default()
    };
    let mut logs = docker.logs(id, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text.lines().map(str::trim_end).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

pub fn network_name(platform: &str, app: &str) -> String {
    format!("{platform}-app-{app}")
}

/// Docker's bridge option that, `false`, keeps the containers of one network from reaching
/// each other (they still reach the internet and the host as the egress policy allows).
const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";

/// The app's own bridge network, so that its dynos cannot reach other apps' dynos. Docker
/// allows two networks of one name (and then refuses to attach to either), so duplicates left
/// by a race are removed, keeping the oldest. The builder's network (every build is a one-off
/// of `ouro-builder`) also keeps its dynos apart: one app's build cannot reach another's; a
/// builder network made before that is made again once no build runs on it.
pub async fn ensure_network(docker: &Docker, platform: &str, app: &str, overlay: bool) -> Result<String> {
    let name = network_name(platform, app);
    let apart = app == ouro_types::platform::BUILDER_APP && !overlay;
    let filters = HashMap::from([("name", vec![name.as_str()])]);
    let found = docker.list_networks(Some(ListNetworksOptions { filters })).await.map_err(docker_error)?;
    let mut same: Vec<_> = found.into_iter().filter(|n| n.name.as_deref() == Some(name.as_str())).collect();
    if !same.is_empty() {
        same.sort_by(|a, b| a.created.cmp(&b.created));
        for duplicate in &same[1..] {
            let id = duplicate.id.clone().unwrap_or_default();
            if let Err(e) = docker.remove_network(&id).await {
                tracing::warn!(network = %name, error = %e, "could not remove a duplicate network");
            }
        }
        let id = same[0].id.clone().unwrap_or_default();
        let kept_apart = same[0].options.as_ref().and_then(|o| o.get(ICC_OPTION)).is_some_and(|v| v == "false");
        // Docker refuses while a container is on it (a build): then it stays until later.
        if !apart || kept_apart || docker.remove_network(&id).await.is_err() {
            return Ok(id);
        }
        tracing::info!(network = %name, "made the builder's network again, its builds kept apart");
    }
    let options = CreateNetworkOptions {
        name: name.clone(),
        driver: if overlay { "overlay" } else { "bridge" }.to_string(),
        // On a swarm, services and plain containers (one-offs) alike join it.
        attachable: overlay,
        check_duplicate: true,
        labels: HashMap::from([
            (LABEL_PLATFORM.to_string(), platform.to_string()),
            (LABEL_APP.to_string(), app.to_string()),
        ]),
        options: match apart {
            true => HashMap::from([(ICC_OPTION.to_string(), "false".to_string())]),
            false => HashMap::new(),
        },
        ..Default::default()
    };
    let created = docker.create_network(options).await.map_err(docker_error)?;
    Ok(created.id)
}

/// Puts container `id` (a dyno of `app`) on `other`'s network, reachable there as `app`.
pub async fn join_network(docker: &Docker, platform: &str, other: &str, id: &str, app: &str) -> Result<()> {
    let options = bollard::network::ConnectNetworkOptions {
        container: id.to_string(),
        endpoint_config: bollard::models::EndpointSettings {
            aliases: Some(vec![app.to_string()]),
            ..Default::default()
        },
    };
    match docker.connect_network(&network_name(platform, other), options).await {
        Ok(()) => Ok(()),
        // Already on it.
        Err(e) if status_of(&e) == Some(403) || status_of(&e) == Some(409) => Ok(()),
        Err(e) => Err(docker_error(e)),
    }
}

/// Takes container `id` off `other`'s network.
pub async fn leave_network(docker: &Docker, platform: &str, other: &str, id: &str) -> Result<()> {
    let options = bollard::network::DisconnectNetworkOptions { container: id.to_string(), force: true };
    match docker.disconnect_network(&network_name(platform, other), options).await {
        Ok(()) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        Err(e) => Err(docker_error(e)),
    }
}

/// The volume `<platform>-<name>`, made on first use. No helper container touches it: its
/// root gets the dyno user as owner from the slug image's mount point (see
/// `slug_layer::MOUNT_POINTS`), which Docker copies into an empty volume when a dyno first
/// mounts it, so there is no moment when it is made but not yet the dyno user's.
pub async fn ensure_volume(docker: &Docker, platform: &str, name: &str) -> Result<String> {
    let full = format!("{platform}-{name}");
    match docker.inspect_volume(&full).await {
        Ok(_) => return Ok(full),
        Err(e) if status_of(&e) == Some(404) => {}
        Err(e) => return Err(docker_error(e)),
    }
    let options = bollard::volume::CreateVolumeOptions {
        name: full.clone(),
        labels: HashMap::from([(LABEL_PLATFORM.to_string(), platform.to_string())]),
        ..Default::default()
    };
    docker.create_volume(options).await.map_err(docker_error)?;
    Ok(full)
}

/// Removes `platform`'s volumes that `wanted` (names without the platform prefix) does not
/// name. A volume still in use is left for a later pass (Docker refuses to remove it).
pub async fn remove_unwanted_volumes(docker: &Docker, platform: &str, wanted: &[String]) -> Result<()> {
    let label = format!("{LABEL_PLATFORM}={platform}");
    let filters = HashMap::from([("label", vec![label.as_str()])]);
    let list =
        docker.list_volumes(Some(bollard::volume::ListVolumesOptions { filters })).await.map_err(docker_error)?;
    let prefix = format!("{platform}-");
    for volume in list.volumes.unwrap_or_default() {
        let Some(short) = volume.name.strip_prefix(&prefix) else { continue };
        if wanted.iter().any(|w| w == short) {
            continue;
        }
        match docker.remove_volume(&volume.name, None).await {
            Ok(()) => tracing::info!(volume = %volume.name, "removed a volume nothing needs any more"),
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => {}
            Err(e) => tracing::warn!(volume = %volume.name, error = %e, "could not remove a volume"),
        }
    }
    Ok(())
}

/// Removes the images of `repository` (`ouro/slug`) that `wanted` does not name, no container
/// uses (of any installation on this engine: they share slug images) and that were made more
/// than `min_age` ago (another installation may have just made one for a dyno it is about to
/// start). Returns the tags removed. An image Docker refuses to remove is left for later.
pub async fn remove_unwanted_slug_images(
    docker: &Docker,
    repository: &str,
    wanted: &std::collections::HashSet<String>,
    min_age: Duration,
) -> Result<Vec<String>> {
    let filters = HashMap::from([("reference".to_string(), vec![repository.to_string()])]);
    let images = docker
        .list_images(Some(bollard::image::ListImagesOptions { filters, ..Default::default() }))
        .await
        .map_err(docker_error)?;
    let containers = docker
        .list_containers(Some(ListContainersOptions::<String> { all: true, ..Default::default() }))
        .await
        .map_err(docker_error)?;
    let in_use: std::collections::HashSet<String> =
        containers.iter().flat_map(|c| [c.image.clone(), c.image_id.clone()]).flatten().collect();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let images: Vec<crate::runtime::SlugImage> = images
        .into_iter()
        .map(|i| crate::runtime::SlugImage { id: i.id, tags: i.repo_tags, age_seconds: now - i.created })
        .collect();
    let mut removed = Vec::new();
    for tag in crate::runtime::slug_images_to_remove(&images, wanted, &in_use, min_age) {
        let options = bollard::image::RemoveImageOptions { force: false, noprune: false };
        match docker.remove_image(&tag, Some(options), None).await {
            Ok(_) => removed.push(tag),
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => {}
            Err(e) => tracing::warn!(image = %tag, error = %e, "could not remove a slug image"),
        }
    }
    Ok(removed)
}

pub(crate) fn volume_mount(volume: &str, path: &str) -> bollard::models::Mount {
    bollard::models::Mount {
        target: Some(path.to_string()),
        source: Some(volume.to_string()),
        typ: Some(bollard::models::MountTypeEnum::VOLUME),
        ..Default::default()
    }
}

pub async fn image_exists(docker: &Docker, image: &str) -> Result<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(docker_error(e)),
    }
}

/// Builds `image` from the stack and a slug tar.gz: the slug becomes one layer on top of the
/// stack's (owned by the dyno user), loaded with `docker load` (see `slug_layer.rs`). The
/// layer and the archive go through temporary files, so a slug that unpacks to gigabytes
/// costs disk, not memory. A slug that cannot be a layer (an entry outside `app/`: the API
/// refuses those) makes no image: nothing of a slug ever runs as root. `reproducible`: made at
/// the stack's time rather than now, so that every engine with the same stack image makes an
/// image of the same id from the same slug (a swarm's services name slug images by id).
pub async fn build_slug_image(
    docker: &Docker,
    stack: &str,
    slug: bytes::Bytes,
    image: &str,
    reproducible: bool,
) -> Result<()> {
    let base = docker.inspect_image(stack).await.map_err(docker_error)?;
    let layers = base.root_fs.and_then(|r| r.layers).unwrap_or_default();
    if layers.is_empty() {
        return Err(Error::Docker(format!("stack image {stack} lists no layers")));
    }
    let stack_config = base.config.unwrap_or_default();
    let mut env: Vec<String> = stack_config
        .env
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e.starts_with("PATH=") && !e.starts_with("HOME="))
        .collect();
    env.extend(["HOME=/app".to_string(), "PATH=/app/bin:/usr/local/bin:/usr/bin:/bin".to_string()]);
    let architecture = base.architecture.unwrap_or_else(|| "amd64".into());
    let labels = stack_config.labels.unwrap_or_default().into_iter().collect();
    let created = match (reproducible, base.created) {
        (true, Some(created)) => created,
        _ => humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    let tag = image.to_string();
    let archive = tokio::task::spawn_blocking(move || {
        let failed = |e: std::io::Error| format!("writing the image's layer: {e}");
        let mut layer = tempfile::tempfile().map_err(failed)?;
        let diff_id = crate::slug_layer::write_slug_layer(&slug[..], std::io::BufWriter::new(&mut layer))?;
        let layer_len = std::io::Seek::seek(&mut layer, std::io::SeekFrom::End(0)).map_err(failed)?;
        std::io::Seek::rewind(&mut layer).map_err(failed)?;
        let config = crate::slug_layer::ImageConfig {
            architecture: &architecture,
            env,
            user: DYNO_USER,
            working_dir: "/app",
            labels,
            created,
        };
        let mut archive = tempfile::tempfile().map_err(failed)?;
        let out = std::io::BufWriter::new(&mut archive);
        let layer = std::io::BufReader::new(layer);
        crate::slug_layer::write_load_archive(out, &tag, &layers, layer, layer_len, &diff_id, &config)
            .map_err(failed)?;
        std::io::Seek::rewind(&mut archive).map_err(failed)?;
        Ok::<_, String>(archive)
    })
    .await
    .map_err(|e| Error::Docker(e.to_string()))?
    .map_err(|e| Error::Docker(format!("the slug cannot be an image: {e}")))?;
    load_archive(docker, archive).await?;
    if !image_exists(docker, image).await? {
        return Err(Error::Docker(format!("docker load did not make {image}")));
    }
    Ok(())
}

/// `docker load` of an archive in a file.
pub(crate) async fn load_archive(docker: &Docker, archive: std::fs::File) -> Result<()> {
    let options = bollard::image::ImportImageOptions { quiet: true };
    let mut progress = docker.import_image_stream(options, file_chunks(archive), None);
    while let Some(item) = progress.next().await {
        let info = item.map_err(docker_error)?;
        if let Some(error) = info.error {
            return Err(Error::Docker(format!("docker load: {error}")));
        }
    }
    Ok(())
}

/// A file's bytes as a stream of chunks of at most 1 MiB (a read error ends it early, which
/// Docker then reports as a damaged archive).
fn file_chunks(file: std::fs::File) -> impl futures_util::Stream<Item = bytes::Bytes> + Send + 'static {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::from_std(file);
    futures_util::stream::unfold(file, |mut file| async move {
        let mut chunk = vec![0u8; 1 << 20];
        match file.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((bytes::Bytes::from(chunk), file))
            }
        }
    })
}

/// What a dyno needs to start.
pub struct DynoSpec<'a> {
    pub platform: &'a str,
    pub app: &'a str,
    pub release: i64,
    pub process_type: &'a str,
    pub index: u32,
    pub size: &'a str,
    pub command: &'a str,
    pub image: &'a str,
    pub config: &'a std::collections::BTreeMap<String, String>,
    /// Volumes (already made, full names) and where to mount them.
    pub mounts: Vec<(String, String)>,
    /// The API's address as a container reaches it, for dynos that may call it (builds).
    pub api_url: Option<&'a str>,
    /// Other apps whose networks the dyno joins before it starts (as `app` there).
    pub joins: &'a [String],
    /// On the host's network instead of the app's own (the platform's API and router): no
    /// network, no DNS alias, no joins; `PORT` only for `web`, since every port is the host's
    /// (such an app's processes take their addresses from their config, e.g. `OURO_LISTEN`).
    pub host_network: bool,
    /// An attached one-off: stdin open (closed once its attached input ends), attachable.
    pub attach: bool,
    /// With `attach`: a terminal.
    pub tty: bool,
}

pub fn container_name(platform: &str, app: &str, process_type: &str, index: u32, release: i64) -> String {
    format!("{platform}-{app}.{process_type}.{index}.v{release}")
}

/// A dyno's environment: its config, `PORT` (for `web` only on the host's network), `DYNO`,
/// `PS`, `HOME`, and the API's address for the dynos that may call it.
pub(crate) fn dyno_env(spec: &DynoSpec<'_>) -> Vec<String> {
    let dyno = format!("{}.{}", spec.process_type, spec.index);
    let mut env: Vec<String> = spec.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !spec.host_network || spec.process_type == "web" {
        env.push(format!("PORT={DYNO_PORT}"));
    }
    env.extend([format!("DYNO={dyno}"), format!("PS={dyno}"), "HOME=/app".into()]);
    if let Some(url) = spec.api_url {
        env.push(format!("OURO_API_URL={url}"));
    }
    env
}

/// The labels that make a container (or a swarm service) a dyno of the platform.
pub(crate) fn dyno_labels(spec: &DynoSpec<'_>) -> HashMap<String, String> {
    let size = dyno_size(spec.size).unwrap_or(&ouro_types::DYNO_SIZES[0]);
    let mut labels = HashMap::from([
        (LABEL_PLATFORM.to_string(), spec.platform.to_string()),
        (LABEL_APP.to_string(), spec.app.to_string()),
        (LABEL_RELEASE.to_string(), spec.release.to_string()),
        (LABEL_TYPE.to_string(), spec.process_type.to_string()),
        (LABEL_INDEX.to_string(), spec.index.to_string()),
        (LABEL_SIZE.to_string(), size.name.to_string()),
        (LABEL_STARTED.to_string(), now_ms().to_string()),
    ]);
    if spec.attach {
        labels.insert(LABEL_ATTACHED.to_string(), "true".to_string());
    }
    if !spec.host_network {
        labels.insert(LABEL_NAMED.to_string(), "true".to_string());
    }
    labels
}

/// What a dyno runs: `.profile.d` scripts first, as on Heroku; then the command replaces the
/// shell.
pub(crate) fn dyno_command(command: &str) -> Vec<String> {
    let script =
        r#"for f in /app/.profile.d/*.sh; do if [ -r "$f" ]; then . "$f"; fi; done; unset f; exec /bin/bash -c "$1""#;
    vec!["/bin/bash".into(), "-c".into(), script.into(), "dyno".into(), command.to_string()]
}

/// Creates and starts a dyno. A stopped container of the same name (a crashed dyno being
/// replaced) is removed first.
pub async fn start_dyno(docker: &Docker, spec: &DynoSpec<'_>) -> Result<String> {
    let id = create_dyno(docker, spec).await?;
    docker.start_container::<String>(&id, None).await.map_err(docker_error)?;
    Ok(id)
}

/// Creates a dyno, on its networks, without starting it (see [`start_dyno`]); an attached
/// one-off is attached to before it starts, so that none of its output is lost.
pub async fn create_dyno(docker: &Docker, spec: &DynoSpec<'_>) -> Result<String> {
    let name = container_name(spec.platform, spec.app, spec.process_type, spec.index, spec.release);
    let env = dyno_env(spec);
    let size = dyno_size(spec.size).unwrap_or(&ouro_types::DYNO_SIZES[0]);
    let memory = i64::from(size.memory_mib) * 1024 * 1024;
    let labels = dyno_labels(spec);
    let config = Config {
        image: Some(spec.image.to_string()),
        cmd: Some(dyno_command(spec.command)),
        env: Some(env),
        user: Some(DYNO_USER.into()),
        working_dir: Some("/app".into()),
        labels: Some(labels),
        // Attached: stdin stays open until the attached input ends (`stdin_once`).
        open_stdin: spec.attach.then_some(true),
        stdin_once: spec.attach.then_some(true),
        attach_stdin: spec.attach.then_some(true),
        attach_stdout: spec.attach.then_some(true),
        attach_stderr: spec.attach.then_some(true),
        tty: (spec.attach && spec.tty).then_some(true),
        host_config: Some(HostConfig {
            network_mode: Some(if spec.host_network {
                "host".to_string()
            } else {
                network_name(spec.platform, spec.app)
            }),
            init: Some(true),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some((f64::from(size.cpu) * 1e9) as i64),
            pids_limit: Some(512),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            // Docker refuses `net.*` sysctls in the host's network namespace.
            sysctls: (!spec.host_network)
                .then(|| HashMap::from([("net.ipv6.conf.all.disable_ipv6".to_string(), "0".to_string())])),
            mounts: Some(spec.mounts.iter().map(|(volume, path)| volume_mount(volume, path)).collect()),
            // `host.docker.internal` is the host, where the API listens.
            extra_hosts: spec.api_url.map(|_| vec!["host.docker.internal:host-gateway".to_string()]),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([("max-size".to_string(), "10m".to_string())])),
            }),
            ..Default::default()
        }),
        // On its own network too, the dyno answers to its app's name: the apps that join that
        // network (an add-on's provider) reach it there by that name.
        networking_config: (!spec.host_network).then(|| bollard::container::NetworkingConfig {
            endpoints_config: HashMap::from([(
                network_name(spec.platform, spec.app),
                bollard::models::EndpointSettings { aliases: Some(vec![spec.app.to_string()]), ..Default::default() },
            )]),
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions { name: name.clone(), platform: None };
    let created = match docker.create_container(Some(options.clone()), config.clone()).await {
        Ok(created) => created,
        Err(e) if status_of(&e) == Some(409) => {
            remove(docker, &name).await;
            docker.create_container(Some(options), config).await.map_err(docker_error)?
        }
        Err(e) => return Err(docker_error(e)),
    };
    let joins = if spec.host_network { &[][..] } else { spec.joins };
    for other in joins {
        join_network(docker, spec.platform, other, &created.id, spec.app).await?;
    }
    Ok(created.id)
}

/// Starts a created dyno.
pub async fn start(docker: &Docker, id: &str) -> Result<()> {
    docker.start_container::<String>(id, None).await.map_err(docker_error)
}

/// Attaches to a created dyno's stdin, stdout and stderr, from now on (no earlier logs).
pub async fn attach(docker: &Docker, id: &str) -> Result<bollard::container::AttachContainerResults> {
    let options = bollard::container::AttachContainerOptions::<String> {
        stdin: Some(true),
        stdout: Some(true),
        stderr: Some(true),
        stream: Some(true),
        logs: Some(false),
        detach_keys: None,
    };
    docker.attach_container(id, Some(options)).await.map_err(docker_error)
}

/// Waits until the started dyno `id` is not running; its exit status (`None` if Docker
/// cannot say: the container is gone, the engine away).
pub async fn exit_status(docker: &Docker, id: &str) -> Option<i64> {
    let mut waits = docker.wait_container(id, None::<WaitContainerOptions<String>>);
    match waits.next().await {
        Some(Ok(exit)) => Some(exit.status_code),
        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Some(code),
        _ => {
            let inspect = docker.inspect_container(id, None::<InspectContainerOptions>).await.ok()?;
            inspect.state?.exit_code
        }
    }
}

/// The id of container `name`, if there is one.
pub async fn id_of(docker: &Docker, name: &str) -> Option<String> {
    docker.inspect_container(name, None::<InspectContainerOptions>).await.ok()?.id
}

/// Sets a TTY dyno's terminal size; errors (not started yet, gone) are ignored.
pub async fn resize(docker: &Docker, id: &str, columns: u16, rows: u16) {
    let options = bollard::container::ResizeContainerTtyOptions { width: columns, height: rows };
    if let Err(e) = docker.resize_container_tty(id, options).await {
        tracing::debug!(container = id, error = %e, "could not resize a dyno's terminal");
    }
}

/// SIGTERM, then SIGKILL after `grace`; the container stays (for its exit status and the
/// reason the runner reports). A container already stopped, or gone, is fine.
pub async fn stop(docker: &Docker, id: &str, grace: Duration) {
    let options = StopContainerOptions { t: grace.as_secs() as i64 };
    if let Err(e) = docker.stop_container(id, Some(options)).await {
        if !matches!(status_of(&e), Some(304 | 404)) {
            tracing::warn!(container = id, error = %e, "stopping a dyno failed");
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`; then removes the container.
pub async fn stop_and_remove(docker: &Docker, id: &str, grace: Duration) {
    stop(docker, id, grace).await;
    remove(docker, id).await;
}

/// Force-removes a container; a missing one is fine.
pub async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptions { force: true, ..Default::default() };
    if let Err(e) = docker.remove_container(id, Some(options)).await {
        if status_of(&e) != Some(404) {
            tracing::warn!(container = id, error = %e, "removing a container failed");
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(crate) fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub(crate) fn docker_error(e: DockerError) -> Error {
    Error::Docker(e.to_string())
}
