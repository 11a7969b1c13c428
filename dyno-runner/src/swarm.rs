//! Docker Swarm as the runner's engine (`OURO_SWARM=manager`, issue 17): the runner talks to a
//! swarm manager's Engine API and each formation dyno of an app is a Swarm service of one
//! replica, which Swarm places on a node. The runner keeps its plan, its identities (one
//! service per dyno: `web.2` of release 5 is service `<platform>-<app>-web-2-v5`), its
//! roll-outs and its crash back-off: services restart on nothing (`condition: none`), and a
//! task that ended, or whose node is down, is a stopped dyno the plan replaces, with a new
//! service Swarm places on a node that is up. Why one service per dyno rather than one per
//! process type with N replicas: Swarm's rolling update knows nothing of Ouro's three
//! roll-outs, and `DYNO` would have to come from a task slot that Swarm renumbers.
//!
//! - **Images.** Services name their slug image by id (`sha256:…`), which every node has
//!   made alike (`reproducible` slug images on the same stack image, see
//!   `docker::build_slug_image`): a node never pulls (there is no registry, and a tag could
//!   name an image of a public registry), and a node without the image fails the task at
//!   once. Each other node runs a runner with `OURO_SWARM=node`, which only makes images.
//! - **Web dynos** publish `$PORT` in host mode on a port their node's engine picks; the route
//!   table names `<node address>:<port>`, which any router that reaches the nodes reaches. The
//!   routing mesh is not used: its virtual IPs need IPVS, which the test machine's network
//!   namespaces do not have, and a router must reach one dyno, not a balanced address.
//! - **On this node, as containers** (the single-engine runtime, on the same attachable
//!   overlay): the platform's components (host network), one-offs (`ouro run` attaches to a
//!   container, and builds are one-offs), and dynos with volumes or access to the API (add-on
//!   servers and providers: their data is on this node's volumes).
//! - Tasks and nodes are read with plain `GET`s on the manager's socket: bollard 0.18 wraps
//!   services but not tasks or nodes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec,
    EndpointSpecModeEnum, Limit, NetworkAttachmentConfig, Node, NodeState, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecLogDriver, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::service::{ListServicesOptions, UpdateServiceOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::docker::{self, LABEL_APP, LABEL_PLATFORM};
use crate::logs::LogQueue;
use crate::runtime::{Container, DYNO_PORT, DockerRuntime, Runtime};
use crate::{Error, Launch, Result, attach, follow, plan};

/// The Engine API version the raw requests ask for (Docker 20.10's).
const API_VERSION: &str = "v1.41";
/// Labels of a service's task containers: the platform, the app, the dyno (`web.2`).
const TASK_PLATFORM: &str = "ouro.task.platform";
const TASK_APP: &str = "ouro.task.app";
const TASK_DYNO: &str = "ouro.task.dyno";

/// Follows the output of the service tasks' containers on this node into `queue` (each once,
/// in `followed`): every node's runner ships what its node's dynos write, as a single
/// engine's runner does. A container made in the last minute is read from its start, an
/// older one (found by a runner that just started) from now on.
pub async fn follow_task_containers(
    docker: &bollard::Docker,
    platform: &str,
    queue: &LogQueue,
    followed: &Mutex<HashSet<String>>,
) {
    let selector = format!("{TASK_PLATFORM}={platform}");
    let filters = HashMap::from([("label", vec![selector.as_str()])]);
    let options = bollard::container::ListContainersOptions { all: false, filters, ..Default::default() };
    let Ok(containers) = docker.list_containers(Some(options)).await else { return };
    let Ok(mut followed) = followed.lock() else { return };
    let running: HashSet<String> = containers.iter().filter_map(|c| c.id.clone()).collect();
    followed.retain(|id| running.contains(id));
    let now = std::time::SystemTime::now();
    for container in containers {
        let (Some(id), Some(labels)) = (container.id, container.labels) else { continue };
        let (Some(app), Some(name)) = (labels.get(TASK_APP), labels.get(TASK_DYNO)) else { continue };
        if !followed.insert(id.clone()) {
            continue;
        }
        let age = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
            .saturating_sub(container.created.unwrap_or(0));
        let from = if age < 60 { follow::From::Start } else { follow::From::Time(now) };
        let dyno = follow::Dyno { container_id: id, app: app.clone(), name: name.clone() };
        follow::spawn(docker.clone(), queue.clone(), dyno, from);
    }
}

#[derive(Clone)]
pub struct SwarmRuntime {
    /// This node's engine (a manager's): images, one-offs, components, and services.
    pub local: DockerRuntime,
    /// Where that engine's API listens, for the raw requests.
    pub socket: PathBuf,
    /// The grace a service's task gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// What the last listing saw, for the calls of the same tick that follow it.
    seen: Arc<Mutex<Seen>>,
}

/// What [`SwarmRuntime::list_dynos`] read from the manager, kept until the next listing.
#[derive(Default)]
struct Seen {
    /// The services among the dynos (their ids), with why the stopped ones' last task ended.
    services: HashMap<String, Option<String>>,
    /// The swarm's nodes, as `ouro nodes` shows them.
    nodes: Vec<ouro_types::ClusterNode>,
}

/// The socket of the engine that `DOCKER_HOST` names (a `unix://` one), else Docker's default.
pub fn engine_socket() -> Result<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) => Ok(PathBuf::from(path)),
            None => Err(Error::Config(format!(
                "OURO_SWARM needs the manager's engine on a unix socket; DOCKER_HOST is `{host}`"
            ))),
        },
        _ => Ok(PathBuf::from("/var/run/docker.sock")),
    }
}

impl SwarmRuntime {
    pub fn new(local: DockerRuntime, socket: PathBuf, stop_grace: Duration) -> SwarmRuntime {
        SwarmRuntime { local, socket, stop_grace, seen: Arc::default() }
    }

    fn is_service(&self, id: &str) -> bool {
        self.seen.lock().map(|s| s.services.contains_key(id)).unwrap_or(false)
    }

    /// Whether a launch runs as a container of this node rather than as a service.
    fn runs_here(launch: &Launch) -> bool {
        launch.process_type == plan::ONE_OFF
            || !runs_as_services(launch.host_network, !launch.volumes.is_empty(), launch.api_url.is_some())
    }

    async fn service_spec(&self, launch: &Launch) -> Result<ServiceSpec> {
        // By id: no node pulls, and every node has made the same id (see the module's doc).
        let image = self.local.docker.inspect_image(&launch.image).await.map_err(docker::docker_error)?;
        let image = image.id.ok_or_else(|| Error::Docker(format!("{} has no id", launch.image)))?;
        let spec = self.local.spec(launch, Vec::new());
        let size = ouro_types::dyno_size(&launch.size).unwrap_or(&ouro_types::DYNO_SIZES[0]);
        let memory = i64::from(size.memory_mib) * 1024 * 1024;
        let network = docker::network_name(&self.local.platform, &launch.app);
        let networks = std::iter::once(&network)
            .cloned()
            .chain(launch.joins.iter().map(|other| docker::network_name(&self.local.platform, other)))
            .map(|target| NetworkAttachmentConfig {
                target: Some(target),
                aliases: Some(vec![launch.app.clone()]),
                ..Default::default()
            })
            .collect();
        let ports = (launch.process_type == "web").then(|| {
            vec![EndpointPortConfig {
                protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                target_port: Some(i64::from(DYNO_PORT)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            }]
        });
        Ok(ServiceSpec {
            name: Some(service_name(&self.local.platform, launch)),
            labels: Some(docker::dyno_labels(&spec)),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image),
                    command: Some(docker::dyno_command(&launch.command)),
                    env: Some(docker::dyno_env(&spec)),
                    user: Some(docker::DYNO_USER.into()),
                    dir: Some("/app".into()),
                    init: Some(true),
                    capability_drop: Some(vec!["ALL".into()]),
                    // Not a dyno's labels: the engine's own list of dynos (`docker.rs`) must
                    // not take a task's container for one. The node's runner follows its
                    // output by these (see `follow_task_containers`).
                    labels: Some(HashMap::from([
                        (TASK_PLATFORM.to_string(), self.local.platform.clone()),
                        (TASK_APP.to_string(), launch.app.clone()),
                        (TASK_DYNO.to_string(), format!("{}.{}", launch.process_type, launch.index)),
                    ])),
                    stop_grace_period: Some(self.stop_grace.as_nanos() as i64),
                    ..Default::default()
                }),
                resources: Some(TaskSpecResources {
                    limits: Some(Limit {
                        nano_cpus: Some((f64::from(size.cpu) * 1e9) as i64),
                        memory_bytes: Some(memory),
                        pids: Some(512),
                    }),
                    ..Default::default()
                }),
                // The runner restarts dynos (with Heroku's back-off), not Swarm.
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                networks: Some(networks),
                log_driver: Some(TaskSpecLogDriver {
                    name: Some("json-file".into()),
                    options: Some(HashMap::from([("max-size".to_string(), "10m".to_string())])),
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec { mode: Some(EndpointSpecModeEnum::DNSRR), ports }),
            ..Default::default()
        })
    }

    /// Stops a service's task (SIGTERM, SIGKILL after its grace) and keeps the service, with
    /// its last task's end, until it is removed.
    async fn scale_to_zero(&self, id: &str) {
        let docker = &self.local.docker;
        let Ok(service) = docker.inspect_service(id, None).await else { return };
        let (Some(mut spec), Some(version)) = (service.spec, service.version.and_then(|v| v.index)) else { return };
        spec.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
            ..Default::default()
        });
        let options = UpdateServiceOptions { version, ..Default::default() };
        if let Err(e) = docker.update_service(id, spec, options, None).await {
            tracing::warn!(service = id, error = %e, "could not stop a dyno's service");
        }
    }

    async fn delete_service(&self, id: &str) {
        if let Err(e) = self.local.docker.delete_service(id).await {
            if docker::status_of(&e) != Some(404) {
                tracing::warn!(service = id, error = %e, "could not remove a dyno's service");
            }
        }
    }
}

impl Runtime for SwarmRuntime {
    async fn list_dynos(&self) -> Result<Vec<Container>> {
        let mut dynos = self.local.list_dynos().await?;
        let selector = format!("{LABEL_PLATFORM}={}", self.local.platform);
        let filters = HashMap::from([("label".to_string(), vec![selector])]);
        let options = ListServicesOptions { filters, status: false };
        let services = self.local.docker.list_services(Some(options)).await.map_err(docker::docker_error)?;
        let tasks: Vec<Task> = engine_get(&self.socket, "/tasks").await?;
        let nodes: Vec<Node> = engine_get(&self.socket, "/nodes").await?;
        let latest = latest_tasks(tasks);
        let mut ids = HashMap::new();
        for service in services {
            let Some(id) = service.id.clone() else { continue };
            let labels = service.spec.as_ref().and_then(|s| s.labels.clone()).unwrap_or_default();
            let task = latest.get(&id);
            let Some(dyno) = dyno_of(&id, &labels, service.created_at.as_deref(), task, &nodes) else { continue };
            let ended = task.filter(|_| !dyno.running).map(|task| task_end(task, &nodes));
            ids.insert(id, ended);
            dynos.push(dyno);
        }
        let mut shown: Vec<ouro_types::ClusterNode> = nodes.iter().map(cluster_node).collect();
        shown.sort_by(|a, b| a.name.cmp(&b.name));
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Seen { services: ids, nodes: shown };
        }
        Ok(dynos)
    }

    async fn watch_events(&self, wake: &Notify) {
        self.local.watch_events(wake).await;
    }

    async fn accepts(&self, dyno: &Container) -> bool {
        crate::runtime::probe(dyno).await
    }

    async fn said_listening(&self, dyno: &Container) -> bool {
        self.local.said_listening(dyno).await
    }

    async fn kill(&self, id: &str) {
        match self.is_service(id) {
            true => self.scale_to_zero(id).await,
            false => self.local.kill(id).await,
        }
    }

    async fn exit_reason(&self, id: &str) -> Option<String> {
        if !self.is_service(id) {
            return self.local.exit_reason(id).await;
        }
        self.seen.lock().ok()?.services.get(id).cloned().flatten()
    }

    async fn output_tail(&self, id: &str, lines: usize) -> Vec<String> {
        match self.is_service(id) {
            true => Vec::new(),
            false => self.local.output_tail(id, lines).await,
        }
    }

    async fn ensure_stack(&self) -> Result<String> {
        self.local.ensure_stack().await
    }

    async fn stacks(&self, update: Option<&str>) -> Vec<ouro_types::Stack> {
        self.local.stacks(update).await
    }

    async fn image_exists(&self, image: &str) -> Result<bool> {
        self.local.image_exists(image).await
    }

    async fn build_image(&self, stack: &str, update: Option<&str>, slug: bytes::Bytes, image: &str) -> Result<()> {
        self.local.build_image(stack, update, slug, image).await
    }

    async fn ensure_network(&self, app: &str) -> Result<()> {
        self.local.ensure_network(app).await
    }

    async fn connect(&self, id: &str, app: &str, network_of: &str) -> Result<()> {
        match self.is_service(id) {
            true => Err(Error::Docker(format!(
                "a dyno on a swarm joins {network_of}'s network at its start: it will at its next release"
            ))),
            false => self.local.connect(id, app, network_of).await,
        }
    }

    async fn disconnect(&self, id: &str, network_of: &str) -> Result<()> {
        match self.is_service(id) {
            true => Ok(()),
            false => self.local.disconnect(id, network_of).await,
        }
    }

    async fn start(&self, launch: &Launch) -> Result<String> {
        if Self::runs_here(launch) {
            return self.local.start(launch).await;
        }
        let spec = self.service_spec(launch).await?;
        let docker = &self.local.docker;
        let created = match docker.create_service(spec.clone(), None).await {
            Ok(created) => created,
            // A stopped dyno of the same slot (a crashed one being replaced).
            Err(e) if docker::status_of(&e) == Some(409) => {
                self.delete_service(spec.name.as_deref().unwrap_or_default()).await;
                docker.create_service(spec, None).await.map_err(docker::docker_error)?
            }
            Err(e) => return Err(docker::docker_error(e)),
        };
        let id = created.id.ok_or_else(|| Error::Docker("Swarm made a service without an id".into()))?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.services.insert(id.clone(), None);
        }
        Ok(id)
    }

    async fn stop(&self, id: &str, grace: Duration) {
        match self.is_service(id) {
            true => self.scale_to_zero(id).await,
            false => self.local.stop(id, grace).await,
        }
    }

    async fn stop_and_remove(&self, id: &str, grace: Duration) {
        match self.is_service(id) {
            // Swarm stops the task with the service's grace.
            true => self.delete_service(id).await,
            false => self.local.stop_and_remove(id, grace).await,
        }
    }

    async fn remove(&self, id: &str) {
        match self.is_service(id) {
            true => self.delete_service(id).await,
            false => self.local.remove(id).await,
        }
    }

    async fn prune_volumes(&self, wanted: &[String]) -> Result<()> {
        self.local.prune_volumes(wanted).await
    }

    async fn nodes(&self) -> Vec<ouro_types::ClusterNode> {
        self.seen.lock().map(|s| s.nodes.clone()).unwrap_or_default()
    }

    async fn prune_images(&self, wanted: &HashSet<String>, min_age: Duration) -> Result<Vec<String>> {
        self.local.prune_images(wanted, min_age).await
    }

    fn follow(&self, queue: LogQueue, dyno: follow::Dyno, from: follow::From) {
        // A service's output is on its node: that node's runner follows its container
        // (`follow_tasks`).
        if !self.is_service(&dyno.container_id) {
            self.local.follow(queue, dyno, from);
        }
    }

    async fn follow_tasks(&self, queue: LogQueue) {
        self.local.follow_tasks(queue).await;
    }

    fn bridge(&self, api: attach::ApiTarget, launch: Launch, bridges: attach::SharedBridges, wake: Arc<Notify>) {
        self.local.bridge(api, launch, bridges, wake);
    }
}

/// `GET /stack-image` on the manager's runner (behind its secret): the stack image of this
/// build (`stack::stack_tag`) as `docker save` writes it, for the other nodes' runners to
/// load: a stack made on each node would differ (debootstrap), and so would every slug image
/// on it. `engine` is the manager's engine once the runner reaches it.
pub fn stack_routes(engine: tokio::sync::watch::Receiver<Option<bollard::Docker>>) -> axum::Router {
    axum::Router::new().route("/stack-image", axum::routing::get(serve_stack)).with_state(engine)
}

async fn serve_stack(
    axum::extract::State(engine): axum::extract::State<tokio::sync::watch::Receiver<Option<bollard::Docker>>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let unavailable = |why: String| (axum::http::StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    let Some(docker) = engine.borrow().clone() else {
        return unavailable("the runner does not reach its engine yet; try again".into());
    };
    let tag = crate::stack::stack_tag();
    if !docker::image_exists(&docker, &tag).await.unwrap_or(false) {
        return unavailable(format!("{tag} is not made yet on the manager; try again once it is"));
    }
    use futures_util::StreamExt;
    let archive = docker.export_image(&tag).map(|chunk| chunk.map_err(std::io::Error::other));
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-tar")
        .body(axum::body::Body::from_stream(archive))
        .unwrap_or_else(|e| unavailable(e.to_string()))
}

/// On a node's runner: loads the manager's stack image (`GET <manager>/stack-image`) when this
/// engine does not have this build's stack yet. The archive goes through a temporary file.
pub async fn fetch_stack(docker: &bollard::Docker, manager: &str, secret: &str) -> Result<String> {
    let tag = crate::stack::stack_tag();
    if docker::image_exists(docker, &tag).await? {
        return Ok(tag);
    }
    let url = format!("{}/stack-image", manager.trim_end_matches('/'));
    let bearer = format!("Bearer {secret}");
    tracing::info!(%tag, from = %url, "loading the swarm's stack image from the manager's runner");
    let archive = tokio::task::spawn_blocking(move || -> std::result::Result<std::fs::File, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(900)))
            .build()
            .into();
        let mut response =
            agent.get(&url).header("Authorization", &bearer).call().map_err(|e| format!("GET {url}: {e}"))?;
        if response.status() != 200 {
            let said = response.body_mut().read_to_string().unwrap_or_default();
            return Err(format!("GET {url}: {} {}", response.status(), said.trim()));
        }
        let mut file = tempfile::tempfile().map_err(|e| e.to_string())?;
        std::io::copy(&mut response.body_mut().with_config().limit(8 << 30).reader(), &mut file)
            .map_err(|e| format!("GET {url}: {e}"))?;
        std::io::Seek::rewind(&mut file).map_err(|e| e.to_string())?;
        Ok(file)
    })
    .await
    .map_err(|e| Error::Docker(e.to_string()))?
    .map_err(|e| Error::Docker(format!("the manager's stack image: {e}")))?;
    docker::load_archive(docker, archive).await?;
    match docker::image_exists(docker, &tag).await? {
        true => Ok(tag),
        false => Err(Error::Docker(format!(
            "the manager's runner sent a stack image other than {tag}: run the same version of Ouro on every node"
        ))),
    }
}

/// Whether an app's formation dynos run as Swarm services (spread over the nodes): not the
/// platform's components (host network), nor dynos with volumes or access to the API (add-on
/// servers and providers), which stay containers of the manager's node.
pub fn runs_as_services(host_network: bool, volumes: bool, api_access: bool) -> bool {
    !host_network && !volumes && !api_access
}

/// A service's name: `<platform>-<app>-<type>-<index>-v<release>` (Swarm takes letters,
/// digits and dashes, at most 63), shortened with a hash of the whole when longer.
fn service_name(platform: &str, launch: &Launch) -> String {
    let full = format!("{platform}-{}-{}-{}-v{}", launch.app, launch.process_type, launch.index, launch.release);
    let clean: String = full.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    if clean.len() <= 63 {
        return clean;
    }
    use sha2::Digest;
    let hash = hex::encode(&sha2::Sha256::digest(full.as_bytes())[..6]);
    format!("{}-{hash}", &clean[..50])
}

/// Each service's latest task (by creation), by service id.
fn latest_tasks(tasks: Vec<Task>) -> HashMap<String, Task> {
    let mut latest: HashMap<String, Task> = HashMap::new();
    for task in tasks {
        let Some(service) = task.service_id.clone() else { continue };
        // Parsed: Docker trims trailing zeros off the nanoseconds, so the text does not sort.
        let when = |t: &Task| t.created_at.as_deref().and_then(|c| humantime::parse_rfc3339_weak(c).ok());
        let newer = latest.get(&service).is_none_or(|t| when(t) < when(&task));
        if newer {
            latest.insert(service, task);
        }
    }
    latest
}

fn node_of<'a>(task: &Task, nodes: &'a [Node]) -> Option<&'a Node> {
    let id = task.node_id.as_deref()?;
    nodes.iter().find(|n| n.id.as_deref() == Some(id))
}

fn node_name(node: &Node) -> String {
    node.description.as_ref().and_then(|d| d.hostname.clone()).or_else(|| node.id.clone()).unwrap_or_default()
}

fn node_up(node: &Node) -> bool {
    node.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY)
}

/// The address other machines reach a node at: its status's, or (a manager whose status
/// says `0.0.0.0`) its manager address's host.
fn node_addr(node: &Node) -> Option<String> {
    let status = node.status.as_ref().and_then(|s| s.addr.clone()).filter(|a| !a.is_empty() && a != "0.0.0.0");
    status.or_else(|| {
        let manager = node.manager_status.as_ref()?.addr.clone()?;
        manager.rsplit_once(':').map(|(host, _)| host.to_string())
    })
}

/// A node as `ouro nodes` shows it (its dynos counted by the API).
fn cluster_node(node: &Node) -> ouro_types::ClusterNode {
    let words = |value: Option<String>| value.unwrap_or_else(|| "unknown".into()).to_lowercase();
    ouro_types::ClusterNode {
        name: node_name(node),
        addr: node_addr(node).unwrap_or_default(),
        state: words(node.status.as_ref().and_then(|s| s.state).map(|s| s.to_string())),
        role: words(node.spec.as_ref().and_then(|s| s.role).map(|r| r.to_string())),
        availability: words(node.spec.as_ref().and_then(|s| s.availability).map(|a| a.to_string())),
        dynos: 0,
    }
}

/// A task that may still run: the runner waits for it rather than replacing it.
fn task_alive(task: &Task) -> bool {
    use TaskState::*;
    let state = task.status.as_ref().and_then(|s| s.state);
    task.desired_state == Some(RUNNING)
        && matches!(state, Some(NEW | PENDING | ASSIGNED | ACCEPTED | PREPARING | READY | STARTING | RUNNING))
}

/// Why a task ended, in the words the runner reports.
fn task_end(task: &Task, nodes: &[Node]) -> String {
    if let Some(node) = node_of(task, nodes).filter(|n| !node_up(n)) {
        return format!("its node {} was lost", node_name(node));
    }
    let status = task.status.clone().unwrap_or_default();
    if let Some(code) = status.container_status.and_then(|c| c.exit_code) {
        return format!("process exited with status {code}");
    }
    status.err.or(status.message).unwrap_or_else(|| "stopped".into())
}

/// The dyno a service of the platform is, from its labels and latest task.
fn dyno_of(
    id: &str,
    labels: &HashMap<String, String>,
    created_at: Option<&str>,
    task: Option<&Task>,
    nodes: &[Node],
) -> Option<Container> {
    let label = |k: &str| labels.get(k).cloned();
    let node = task.and_then(|t| node_of(t, nodes));
    // A service Swarm has not made a task for yet (just created) is booting, not stopped.
    let running = task.is_none_or(task_alive) && node.is_none_or(node_up);
    let state = task.and_then(|t| t.status.as_ref()).and_then(|s| s.state);
    let port = task
        .and_then(|t| t.status.as_ref())
        .and_then(|s| s.port_status.as_ref())
        .and_then(|p| p.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.target_port == Some(i64::from(DYNO_PORT))))
        .and_then(|p| p.published_port);
    let addr = match (running && state == Some(TaskState::RUNNING), node.and_then(node_addr), port) {
        (true, Some(host), Some(port)) => Some(format!("{host}:{port}")),
        _ => None,
    };
    let created = created_at
        .and_then(|t| humantime::parse_rfc3339_weak(t.split('.').next().unwrap_or(t)).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    Some(Container {
        id: id.to_string(),
        app: label(LABEL_APP)?,
        release: label(docker::LABEL_RELEASE)?.parse().ok()?,
        process_type: label(docker::LABEL_TYPE)?,
        index: label(docker::LABEL_INDEX)?.parse().ok()?,
        size: label(docker::LABEL_SIZE).unwrap_or_default(),
        running,
        addr,
        node: node.map(node_name),
        host_network: false,
        created,
        started_ms: label(docker::LABEL_STARTED).and_then(|s| s.parse().ok()).unwrap_or(0),
        joined: Vec::new(),
        attached: false,
        named: true,
    })
}

/// `GET path` of the Engine API on `socket`, as JSON: HTTP/1.0, so the engine closes the
/// connection after a body that is neither chunked nor kept alive. Bounded in time and size.
async fn engine_get<T: serde::de::DeserializeOwned>(socket: &Path, path: &str) -> Result<T> {
    let fetch = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await?;
        let request = format!("GET /{API_VERSION}{path} HTTP/1.0\r\nHost: docker\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(64 << 20).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(15), fetch)
        .await
        .map_err(|_| Error::Docker(format!("the engine did not answer GET {path} within 15 s")))?
        .map_err(|e| Error::Docker(format!("GET {path} from the engine: {e}")))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::Docker(format!("GET {path}: the engine's answer has no end of headers")))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    if head.lines().next().is_none_or(|status| status.split_whitespace().nth(1) != Some("200")) {
        return Err(Error::Docker(format!(
            "GET {path}: {} {}",
            head.lines().next().unwrap_or_default(),
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )));
    }
    serde_json::from_slice(body).map_err(|e| Error::Docker(format!("GET {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(service: &str, created: &str, state: TaskState, node: &str) -> Task {
        serde_json::from_value(serde_json::json!({
            "ServiceID": service, "CreatedAt": created, "DesiredState": "running", "NodeID": node,
            "Status": {"State": state.to_string(), "PortStatus": {"Ports": [
                {"Protocol": "tcp", "TargetPort": 5000, "PublishedPort": 30001, "PublishMode": "host"}]}},
        }))
        .expect("a task")
    }

    fn node(id: &str, name: &str, state: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "ID": id, "Description": {"Hostname": name}, "Status": {"State": state, "Addr": "10.0.0.7"},
        }))
        .expect("a node")
    }

    fn labels() -> HashMap<String, String> {
        [("ouro.app", "shop"), ("ouro.release", "3"), ("ouro.type", "web"), ("ouro.index", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A service's dyno runs while its latest task may run on a node that is up, and is
    /// reached at that node's address and the port published there; a task on a lost node
    /// is a stopped dyno (which the plan replaces), and says so.
    #[test]
    fn a_dyno_is_its_service_latest_task_on_a_node_that_is_up() {
        let nodes = [node("n1", "node1", "ready"), node("n2", "node2", "down")];
        let old = task("s", "2026-12-07T10:00:00Z", TaskState::FAILED, "n1");
        let new = task("s", "2026-12-07T10:01:00Z", TaskState::RUNNING, "n1");
        let latest = latest_tasks(vec![new.clone(), old]);
        let trimmed = task("t", "2026-12-07T10:01:00.1480402Z", TaskState::FAILED, "n1");
        let later = task("t", "2026-12-07T10:01:00.148040234Z", TaskState::RUNNING, "n1");
        let both = latest_tasks(vec![trimmed, later]);
        assert_eq!(both["t"].status.as_ref().and_then(|s| s.state), Some(TaskState::RUNNING), "by time, not by text");
        let dyno = dyno_of("s", &labels(), None, latest.get("s"), &nodes).expect("a dyno");
        assert!(dyno.running);
        assert_eq!(dyno.addr.as_deref(), Some("10.0.0.7:30001"));
        assert_eq!(dyno.node.as_deref(), Some("node1"));
        assert_eq!((dyno.app.as_str(), dyno.release, dyno.process_type.as_str(), dyno.index), ("shop", 3, "web", 2));

        let booting = task("s", "2026-12-07T10:01:00Z", TaskState::PREPARING, "n1");
        let dyno = dyno_of("s", &labels(), None, Some(&booting), &nodes).expect("a dyno");
        assert!(dyno.running && dyno.addr.is_none(), "booting: waited for, not routed");

        let lost = task("s", "2026-12-07T10:01:00Z", TaskState::RUNNING, "n2");
        let dyno = dyno_of("s", &labels(), None, Some(&lost), &nodes).expect("a dyno");
        assert!(!dyno.running && dyno.addr.is_none());
        assert_eq!(task_end(&lost, &nodes), "its node node2 was lost");

        let shown = cluster_node(&nodes[1]);
        assert_eq!((shown.name.as_str(), shown.addr.as_str(), shown.state.as_str()), ("node2", "10.0.0.7", "down"));

        let fresh = dyno_of("s", &labels(), None, None, &nodes).expect("a dyno");
        assert!(fresh.running && fresh.addr.is_none(), "no task yet: booting, not stopped");

        let unlabelled = HashMap::new();
        assert!(dyno_of("s", &unlabelled, None, Some(&new), &nodes).is_none());
    }

    #[test]
    fn service_names_fit_swarm() {
        let launch = |app: &str| Launch {
            app: app.into(),
            release: 12,
            process_type: "web".into(),
            index: 3,
            size: "standard-1x".into(),
            command: String::new(),
            image: String::new(),
            config: Default::default(),
            volumes: Vec::new(),
            api_url: None,
            joins: Vec::new(),
            host_network: false,
            attach: false,
            tty: false,
        };
        assert_eq!(service_name("ouro", &launch("shop")), "ouro-shop-web-3-v12");
        let long = service_name("ourotest1234x5", &launch(&"a".repeat(60)));
        assert!(long.len() <= 63 && long.starts_with("ourotest1234x5-aaa"), "{long}");
        assert_ne!(long, service_name("ourotest1234x5", &launch(&"a".repeat(59))));
    }
}
