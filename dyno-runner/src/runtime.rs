//! The seam between reconciling and a container engine: what the loop (`lib.rs`) asks of the
//! engine, in the plan's words (dynos, images, who reaches whose network, volumes), with no
//! engine type in it. [`DockerRuntime`] is the Docker Engine through bollard (`docker.rs`,
//! `stack.rs`, `follow.rs`, `attach.rs`); a test runtime keeps dynos in memory, so the loop
//! itself is tested without Docker (see the tests of `lib.rs`). Another engine (Docker Swarm)
//! is another implementation.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use tokio::sync::Notify;

use crate::logs::LogQueue;
use crate::{Launch, Result, attach, docker, follow, stack};

/// Where slug images live: `ouro/slug:2-<sha256 of the slug>`.
const SLUG_REPO: &str = "ouro/slug";
/// The layout of slug images, in their tags: 2 has the mount points `/data` and `/cache`
/// owned by the dyno user. An image of an older layout is made again, not reused.
const SLUG_LAYOUT: &str = "2";

/// The port every dyno listens on (`$PORT`) on its app's network.
pub const DYNO_PORT: u16 = 5000;

/// The image of a release's slug on its stack, named by the slug's checksum:
/// `ouro/slug:2-<sha256>` on the run stack, `ouro/slug:build-2-<sha256>` on the build stack,
/// each with `-u<update>` after it with a stack update (`ouro stack:update`).
pub fn slug_image(release: &ouro_types::DesiredRelease) -> String {
    let sha = release.slug_checksum.trim_start_matches("SHA256:").to_ascii_lowercase();
    let stack = if release.stack == ouro_types::BUILD_STACK { "build-" } else { "" };
    match release.stack_update.as_deref() {
        Some(update) if ouro_types::valid_stack_update(update) => {
            format!("{SLUG_REPO}:{stack}{SLUG_LAYOUT}-{sha}-u{update}")
        }
        _ => format!("{SLUG_REPO}:{stack}{SLUG_LAYOUT}-{sha}"),
    }
}

/// A slug image as the engine lists it.
#[derive(Debug, Clone)]
pub struct SlugImage {
    pub id: String,
    pub tags: Vec<String>,
    pub age_seconds: i64,
}

/// Which tags of `images` may go: none wanted, no container using the image (by tag or id),
/// and made at least `min_age` ago. Pure.
pub fn slug_images_to_remove(
    images: &[SlugImage],
    wanted: &HashSet<String>,
    in_use: &HashSet<String>,
    min_age: Duration,
) -> Vec<String> {
    images
        .iter()
        .filter(|image| image.age_seconds >= min_age.as_secs() as i64)
        .filter(|image| {
            !in_use.contains(&image.id) && !image.tags.iter().any(|t| wanted.contains(t) || in_use.contains(t))
        })
        .flat_map(|image| image.tags.iter().cloned())
        .collect()
}

/// A dyno as the engine lists it.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub app: String,
    pub release: i64,
    pub process_type: String,
    pub index: u32,
    pub size: String,
    pub running: bool,
    /// `host:port` where its `$PORT` answers, while running: its address on the app's network
    /// (none on the host's network), or on a swarm a node's address and the port published
    /// there.
    pub addr: Option<String>,
    /// The swarm node it runs on (none on a single engine).
    pub node: Option<String>,
    /// Runs on the host's network.
    pub host_network: bool,
    /// Seconds since the epoch.
    pub created: i64,
    /// ms since the epoch, when it was started.
    pub started_ms: u64,
    /// Other apps whose networks it is on.
    pub joined: Vec<String>,
    /// An attached one-off (`ouro run`).
    pub attached: bool,
    /// Reachable by its app's name on its app's own network (`docker::LABEL_NAMED`).
    pub named: bool,
}

/// Whether a dyno's `$PORT` accepts a connection now.
pub async fn probe(dyno: &Container) -> bool {
    let Some(addr) = &dyno.addr else { return false };
    let probe = tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await;
    matches!(probe, Ok(Ok(_)))
}

/// What the reconcile loop asks of a container engine. Every method's failure is an ordinary
/// outcome the loop copes with (it logs, and the next tick tries again).
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Every dyno of this platform, running or stopped.
    fn list_dynos(&self) -> impl Future<Output = Result<Vec<Container>>> + Send;
    /// Wakes `wake` at every change of a dyno the engine notices by itself (one died, one was
    /// removed); returns when it can no longer watch (the caller watches again after a pause).
    fn watch_events(&self, wake: &Notify) -> impl Future<Output = ()> + Send;
    /// Whether the running dyno accepts connections on its port.
    fn accepts(&self, dyno: &Container) -> impl Future<Output = bool> + Send;
    /// Whether a dyno on the host's network said, in its first minute of output, that it is
    /// `listening on` its port (no probe tells two listeners of one port apart there).
    fn said_listening(&self, dyno: &Container) -> impl Future<Output = bool> + Send;
    /// SIGKILL now (a dyno that did not boot in time).
    fn kill(&self, id: &str) -> impl Future<Output = ()> + Send;
    /// Why a stopped dyno stopped, in Heroku's words where they fit.
    fn exit_reason(&self, id: &str) -> impl Future<Output = Option<String>> + Send;
    /// The last `lines` lines a dyno wrote, for an error message.
    fn output_tail(&self, id: &str, lines: usize) -> impl Future<Output = Vec<String>> + Send;
    /// The run stack is there (made if need be): what every slug image is based on.
    fn ensure_stack(&self) -> impl Future<Output = Result<String>> + Send;
    /// The stacks there are now (for the report): name, image, when their updates went in; the
    /// run stack with stack update `update` once that is made.
    fn stacks(&self, update: Option<&str>) -> impl Future<Output = Vec<ouro_types::Stack>> + Send;
    fn image_exists(&self, image: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Makes `image` of a slug (its tar.gz) on `stack` (`STACK` or `BUILD_STACK`), with stack
    /// update `update` on `STACK` (made first when missing).
    fn build_image(
        &self,
        stack: &str,
        update: Option<&str>,
        slug: bytes::Bytes,
        image: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// App `app` has a network of its own: its dynos reach each other and nobody else.
    fn ensure_network(&self, app: &str) -> impl Future<Output = Result<()>> + Send;
    /// Dyno `id` (of `app`) reaches the dynos of `network_of`, which reach it as `app`.
    fn connect(&self, id: &str, app: &str, network_of: &str) -> impl Future<Output = Result<()>> + Send;
    /// Dyno `id` no longer reaches `network_of`'s dynos.
    fn disconnect(&self, id: &str, network_of: &str) -> impl Future<Output = Result<()>> + Send;
    /// Makes the launch's volumes (first use), then creates and starts its dyno: its id. A
    /// stopped dyno of the same slot (app, release, process type, index) is removed first.
    fn start(&self, launch: &Launch) -> impl Future<Output = Result<String>> + Send;
    /// SIGTERM, SIGKILL after `grace`; the dyno stays (stopped).
    fn stop(&self, id: &str, grace: Duration) -> impl Future<Output = ()> + Send;
    /// [`Runtime::stop`], then removes the dyno.
    fn stop_and_remove(&self, id: &str, grace: Duration) -> impl Future<Output = ()> + Send;
    /// Removes a stopped dyno.
    fn remove(&self, id: &str) -> impl Future<Output = ()> + Send;
    /// Removes this platform's volumes that `wanted` does not name.
    fn prune_volumes(&self, wanted: &[String]) -> impl Future<Output = Result<()>> + Send;
    /// Removes slug images that `wanted` does not name, that no container (of any
    /// installation) uses, and that are older than `min_age`; returns the names removed.
    fn prune_images(
        &self,
        wanted: &HashSet<String>,
        min_age: Duration,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Follows the output of this node's containers of swarm services not followed yet (on a
    /// swarm; nothing on a single engine, whose dynos `follow` covers).
    fn follow_tasks(&self, queue: LogQueue) -> impl Future<Output = ()> + Send {
        let _ = queue;
        async {}
    }
    /// The cluster's nodes, on an engine that has some (a swarm's manager).
    fn nodes(&self) -> impl Future<Output = Vec<ouro_types::ClusterNode>> + Send {
        async { Vec::new() }
    }
    /// Follows a dyno's output into `queue`, in a task of its own.
    fn follow(&self, queue: LogQueue, dyno: follow::Dyno, from: follow::From);
    /// Creates an attached one-off and bridges it to the user's terminal through the API, in a
    /// task of its own (see `attach.rs`).
    fn bridge(&self, api: attach::ApiTarget, launch: Launch, bridges: attach::SharedBridges, wake: Arc<Notify>);
}

/// The Docker Engine, for the dynos labelled with `platform`.
#[derive(Clone)]
pub struct DockerRuntime {
    pub docker: Docker,
    pub platform: String,
    /// What app networks may reach (see `egress.rs`).
    pub egress: std::sync::Arc<crate::egress::Egress>,
    /// The engine is a swarm's manager (`swarm.rs`): slug images are made at the stack's time
    /// (the same id on every node) and app networks are attachable overlays, which this
    /// host's egress rules cannot confine.
    pub swarm: bool,
    /// On a swarm: the task containers whose output this runner follows.
    pub followed_tasks: Arc<std::sync::Mutex<HashSet<String>>>,
    /// On a swarm node's runner: the manager's runner and its secret, whose stack image this
    /// engine loads rather than making its own (`swarm::fetch_stack`).
    pub stack_from: Option<(String, String)>,
}

impl Runtime for DockerRuntime {
    async fn list_dynos(&self) -> Result<Vec<Container>> {
        docker::list_dynos(&self.docker, &self.platform).await
    }

    async fn watch_events(&self, wake: &Notify) {
        let mut events = std::pin::pin!(docker::dyno_events(&self.docker, &self.platform));
        while docker::next_dyno_event(&mut events).await {
            wake.notify_one();
        }
    }

    async fn accepts(&self, dyno: &Container) -> bool {
        probe(dyno).await
    }

    async fn said_listening(&self, dyno: &Container) -> bool {
        docker::said_listening(&self.docker, dyno).await
    }

    async fn kill(&self, id: &str) {
        let _ = self.docker.kill_container::<String>(id, None).await;
    }

    async fn exit_reason(&self, id: &str) -> Option<String> {
        docker::exit_reason(&self.docker, id).await
    }

    async fn output_tail(&self, id: &str, lines: usize) -> Vec<String> {
        docker::output_tail(&self.docker, id, lines).await
    }

    async fn ensure_stack(&self) -> Result<String> {
        match &self.stack_from {
            Some((manager, secret)) => crate::swarm::fetch_stack(&self.docker, manager, secret).await,
            None => Ok(stack::ensure_stack_image(&self.docker).await?),
        }
    }

    async fn stacks(&self, update: Option<&str>) -> Vec<ouro_types::Stack> {
        // The run stack (the build stack is made from it, with its updates), with the update
        // asked for once it is made.
        let Ok(base) = stack::ensure_stack_image(&self.docker).await else { return Vec::new() };
        let updated = update.map(|u| stack::updated_stack_tag(&base, u));
        let mut image = base;
        if let Some(updated) = updated {
            if docker::image_exists(&self.docker, &updated).await.unwrap_or(false) {
                image = updated;
            }
        }
        let Ok(found) = self.docker.inspect_image(&image).await else { return Vec::new() };
        let labels = found.config.and_then(|c| c.labels).unwrap_or_default();
        vec![ouro_types::Stack {
            name: ouro_types::STACK.to_string(),
            image,
            updated_at: labels.get("ouro.stack.upgraded").cloned(),
            update: labels.get("ouro.stack.update").cloned(),
            pending_update: None,
        }]
    }

    async fn image_exists(&self, image: &str) -> Result<bool> {
        docker::image_exists(&self.docker, image).await
    }

    async fn build_image(&self, on: &str, update: Option<&str>, slug: bytes::Bytes, image: &str) -> Result<()> {
        if self.stack_from.is_some() {
            // A node's slug images stand on the manager's stack, the same everywhere.
            if update.is_some() || on == ouro_types::BUILD_STACK {
                return Err(crate::Error::Docker(
                    "on a swarm, nodes make slug images on the run stack without updates only (stack updates there are not done yet)".into(),
                ));
            }
            self.ensure_stack().await?;
        }
        let stack = match on {
            ouro_types::BUILD_STACK => stack::ensure_updated_build_stack_image(&self.docker, update).await?,
            _ => stack::ensure_updated_stack_image(&self.docker, update).await?,
        };
        docker::build_slug_image(&self.docker, &stack, slug, image, self.swarm).await
    }

    async fn ensure_network(&self, app: &str) -> Result<()> {
        let id = docker::ensure_network(&self.docker, &self.platform, app, self.swarm).await?;
        if self.swarm {
            return Ok(());
        }
        self.confine(app, &id).await;
        Ok(())
    }

    async fn connect(&self, id: &str, app: &str, network_of: &str) -> Result<()> {
        let network = docker::ensure_network(&self.docker, &self.platform, network_of, self.swarm).await?;
        self.confine(network_of, &network).await;
        docker::join_network(&self.docker, &self.platform, network_of, id, app).await
    }

    async fn disconnect(&self, id: &str, network_of: &str) -> Result<()> {
        docker::leave_network(&self.docker, &self.platform, network_of, id).await
    }

    async fn start(&self, launch: &Launch) -> Result<String> {
        let mounts = self.mounts(launch).await?;
        docker::start_dyno(&self.docker, &self.spec(launch, mounts)).await
    }

    async fn stop(&self, id: &str, grace: Duration) {
        docker::stop(&self.docker, id, grace).await;
    }

    async fn stop_and_remove(&self, id: &str, grace: Duration) {
        docker::stop_and_remove(&self.docker, id, grace).await;
    }

    async fn remove(&self, id: &str) {
        docker::remove(&self.docker, id).await;
    }

    async fn prune_volumes(&self, wanted: &[String]) -> Result<()> {
        docker::remove_unwanted_volumes(&self.docker, &self.platform, wanted).await
    }

    async fn prune_images(&self, wanted: &HashSet<String>, min_age: Duration) -> Result<Vec<String>> {
        docker::remove_unwanted_slug_images(&self.docker, SLUG_REPO, wanted, min_age).await
    }

    fn follow(&self, queue: LogQueue, dyno: follow::Dyno, from: follow::From) {
        follow::spawn(self.docker.clone(), queue, dyno, from);
    }

    async fn follow_tasks(&self, queue: LogQueue) {
        if self.swarm {
            crate::swarm::follow_task_containers(&self.docker, &self.platform, &queue, &self.followed_tasks).await;
        }
    }

    fn bridge(&self, api: attach::ApiTarget, launch: Launch, bridges: attach::SharedBridges, wake: Arc<Notify>) {
        let one_off = attach::OneOff {
            app: launch.app.clone(),
            number: launch.index,
            tty: launch.tty,
            container_name: docker::container_name(
                &self.platform,
                &launch.app,
                &launch.process_type,
                launch.index,
                launch.release,
            ),
        };
        let runtime = self.clone();
        let create = async move {
            let mounts = runtime.mounts(&launch).await?;
            docker::create_dyno(&runtime.docker, &runtime.spec(&launch, mounts)).await
        };
        attach::spawn(self.docker.clone(), api, one_off, create, bridges, wake);
    }
}

impl DockerRuntime {
    /// Puts app `app`'s network (`network_id`) under the egress policy. A failure is said and
    /// not retried by this process (the network works, unconfined: the runner's log says so).
    async fn confine(&self, app: &str, network_id: &str) {
        if network_id.is_empty() {
            return;
        }
        let (egress, bridge) = (self.egress.clone(), crate::egress::bridge_of(network_id));
        let confined = tokio::task::spawn_blocking(move || egress.confine(&bridge)).await;
        match confined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(%app, error = %e, "the app's network is not confined: its dynos may reach the host and private ranges")
            }
            Err(e) => tracing::error!(%app, error = %e, "confining the app's network failed"),
        }
    }

    /// The launch's volumes, made on first use: (volume name, path in the dyno).
    async fn mounts(&self, launch: &Launch) -> Result<Vec<(String, String)>> {
        let mut mounts = Vec::new();
        for mount in &launch.volumes {
            let volume = docker::ensure_volume(&self.docker, &self.platform, &mount.volume).await?;
            mounts.push((volume, mount.path.clone()));
        }
        Ok(mounts)
    }

    /// The Engine's spec of a launch's dyno, with its volumes made.
    pub(crate) fn spec<'a>(&'a self, launch: &'a Launch, mounts: Vec<(String, String)>) -> docker::DynoSpec<'a> {
        docker::DynoSpec {
            platform: &self.platform,
            app: &launch.app,
            release: launch.release,
            process_type: &launch.process_type,
            index: launch.index,
            size: &launch.size,
            command: &launch.command,
            image: &launch.image,
            config: &launch.config,
            mounts,
            api_url: launch.api_url.as_deref(),
            joins: &launch.joins,
            host_network: launch.host_network,
            attach: launch.attach,
            tty: launch.tty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slug_image_names_its_stack_update() {
        let mut release = ouro_types::DesiredRelease {
            id: "r".into(),
            version: 2,
            slug_id: "s".into(),
            slug_checksum: "SHA256:ABC123".into(),
            slug_url: "http://api/slug".into(),
            process_types: Default::default(),
            config: Default::default(),
            stack: ouro_types::STACK.into(),
            stack_update: None,
        };
        assert_eq!(slug_image(&release), "ouro/slug:2-abc123");
        release.stack_update = Some("1796000000000".into());
        assert_eq!(slug_image(&release), "ouro/slug:2-abc123-u1796000000000");
        // Nothing but digits goes into a tag.
        release.stack_update = Some("1:latest".into());
        assert_eq!(slug_image(&release), "ouro/slug:2-abc123");
        release.stack = ouro_types::BUILD_STACK.into();
        assert_eq!(slug_image(&release), "ouro/slug:build-2-abc123");
        release.stack_update = Some("1796000000000".into());
        assert_eq!(slug_image(&release), "ouro/slug:build-2-abc123-u1796000000000");
    }

    #[test]
    fn slug_images_go_when_nothing_wants_or_uses_them_and_they_are_old_enough() {
        let image =
            |id: &str, tag: &str, age_seconds: i64| SlugImage { id: id.into(), tags: vec![tag.into()], age_seconds };
        let images = [
            image("sha256:1", "ouro/slug:2-old", 7200),
            image("sha256:2", "ouro/slug:2-current", 7200),
            image("sha256:3", "ouro/slug:2-running", 7200),
            image("sha256:4", "ouro/slug:2-by-id", 7200),
            image("sha256:5", "ouro/slug:2-fresh", 60),
            image("sha256:6", "ouro/slug:old-layout", 7200),
        ];
        let wanted: HashSet<String> = ["ouro/slug:2-current".to_string()].into();
        let in_use: HashSet<String> = ["ouro/slug:2-running".to_string(), "sha256:4".to_string()].into();
        let gone = slug_images_to_remove(&images, &wanted, &in_use, Duration::from_secs(3600));
        assert_eq!(gone, ["ouro/slug:2-old", "ouro/slug:old-layout"]);
    }
}
