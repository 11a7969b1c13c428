//! The reconcile loop itself, on an in-memory runtime: dynos, images and networks are entries in
//! a map, and every call is logged. The desired state comes from a stand-in for the API (an
//! HTTP server on loopback, as the runner's client needs one); slugs from `file://` URLs.
//! What these tests show is the loop's own behaviour between the plan and the engine: images
//! made before starts, starts in parallel, routes of up dynos only, crashes recorded and
//! replaced, reports sent, stops drained and removed, networks joined. The Docker runtime runs
//! the same loop in the end-to-end tests (`tests/tests/docker_*.rs`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ouro_types::{DesiredApp, DesiredState, DynoReport, DynoState, RouteTable};
use tokio::sync::{Notify, watch};

use crate::logs::LogQueue;
use crate::runtime::{Container, Runtime};
use crate::{Config, Launch, Result, Runner, attach, follow, health, logs};

/// The engine's state: what a `docker ps -a` would show.
#[derive(Default)]
struct Engine {
    dynos: Vec<Container>,
    images: HashSet<String>,
    networks: HashSet<String>,
    calls: Vec<String>,
    next_id: u32,
}

#[derive(Clone, Default)]
struct FakeRuntime(Arc<Mutex<Engine>>);

impl FakeRuntime {
    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.0.lock().expect("engine")
    }

    fn call(&self, call: String) {
        self.engine().calls.push(call);
    }

    /// The running dynos, as `app process.index vRELEASE`.
    fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .engine()
            .dynos
            .iter()
            .filter(|d| d.running)
            .map(|d| format!("{} {}.{} v{}", d.app, d.process_type, d.index, d.release))
            .collect();
        names.sort();
        names
    }

    /// The dyno `name` (`web.1`) of `app` exits with `status`, as a crash does.
    fn crash(&self, app: &str, name: &str) {
        let mut engine = self.engine();
        let dyno = engine
            .dynos
            .iter_mut()
            .find(|d| d.app == app && format!("{}.{}", d.process_type, d.index) == name && d.running)
            .expect("a running dyno to crash");
        dyno.running = false;
        dyno.addr = None;
    }
}

impl Runtime for FakeRuntime {
    async fn list_dynos(&self) -> Result<Vec<Container>> {
        Ok(self.engine().dynos.clone())
    }

    async fn watch_events(&self, _wake: &Notify) {
        std::future::pending::<()>().await;
    }

    async fn accepts(&self, dyno: &Container) -> bool {
        dyno.running && dyno.addr.is_some()
    }

    async fn said_listening(&self, dyno: &Container) -> bool {
        dyno.running
    }

    async fn kill(&self, id: &str) {
        self.call(format!("kill {id}"));
    }

    async fn exit_reason(&self, _id: &str) -> Option<String> {
        Some("process exited with status 3".into())
    }

    async fn output_tail(&self, _id: &str, _lines: usize) -> Vec<String> {
        vec!["boom".into()]
    }

    async fn ensure_stack(&self) -> Result<String> {
        Ok("stack".into())
    }

    async fn image_exists(&self, image: &str) -> Result<bool> {
        Ok(self.engine().images.contains(image))
    }

    async fn build_image(&self, _stack: &str, _update: Option<&str>, _slug: bytes::Bytes, image: &str) -> Result<()> {
        let mut engine = self.engine();
        engine.images.insert(image.to_string());
        engine.calls.push(format!("build {image}"));
        Ok(())
    }

    async fn ensure_network(&self, app: &str) -> Result<()> {
        self.engine().networks.insert(app.to_string());
        Ok(())
    }

    async fn connect(&self, id: &str, app: &str, network_of: &str) -> Result<()> {
        let mut engine = self.engine();
        engine.calls.push(format!("connect {app} to {network_of}"));
        if let Some(dyno) = engine.dynos.iter_mut().find(|d| d.id == id) {
            dyno.joined.push(network_of.to_string());
        }
        Ok(())
    }

    async fn disconnect(&self, id: &str, network_of: &str) -> Result<()> {
        let mut engine = self.engine();
        if let Some(dyno) = engine.dynos.iter_mut().find(|d| d.id == id) {
            dyno.joined.retain(|n| n != network_of);
        }
        Ok(())
    }

    async fn start(&self, launch: &Launch) -> Result<String> {
        let mut engine = self.engine();
        assert!(engine.images.contains(&launch.image), "started before its image was made: {}", launch.image);
        // A stopped dyno of the same slot makes way (its name is the new one's).
        engine.dynos.retain(|d| {
            d.running
                || (d.app.as_str(), d.release, d.process_type.as_str(), d.index)
                    != (launch.app.as_str(), launch.release, launch.process_type.as_str(), launch.index)
        });
        engine.next_id += 1;
        let number = engine.next_id;
        let id = format!("c{number}");
        engine.calls.push(format!("start {} {}.{}", launch.app, launch.process_type, launch.index));
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        engine.dynos.push(Container {
            id: id.clone(),
            app: launch.app.clone(),
            release: launch.release,
            process_type: launch.process_type.clone(),
            index: launch.index,
            size: launch.size.clone(),
            running: true,
            addr: Some(format!("10.0.0.{number}:5000")),
            node: None,
            host_network: launch.host_network,
            created: (now_ms / 1000) as i64,
            started_ms: now_ms,
            joined: launch.joins.clone(),
            attached: launch.attach,
            named: !launch.host_network,
        });
        Ok(id)
    }

    async fn stop(&self, id: &str, _grace: Duration) {
        let mut engine = self.engine();
        engine.calls.push(format!("stop {id}"));
        if let Some(dyno) = engine.dynos.iter_mut().find(|d| d.id == id) {
            dyno.running = false;
        }
    }

    async fn stop_and_remove(&self, id: &str, _grace: Duration) {
        let mut engine = self.engine();
        engine.calls.push(format!("stop and remove {id}"));
        engine.dynos.retain(|d| d.id != id);
    }

    async fn remove(&self, id: &str) {
        let mut engine = self.engine();
        engine.calls.push(format!("remove {id}"));
        engine.dynos.retain(|d| d.id != id);
    }

    async fn prune_volumes(&self, _wanted: &[String]) -> Result<()> {
        Ok(())
    }

    async fn stacks(&self, _update: Option<&str>) -> Vec<ouro_types::Stack> {
        Vec::new()
    }

    async fn prune_images(&self, _wanted: &HashSet<String>, _min_age: Duration) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn follow(&self, _queue: LogQueue, dyno: follow::Dyno, _from: follow::From) {
        self.call(format!("follow {} {}", dyno.app, dyno.name));
    }

    fn bridge(&self, _api: attach::ApiTarget, launch: Launch, _bridges: attach::SharedBridges, _wake: Arc<Notify>) {
        self.call(format!("bridge {} run.{}", launch.app, launch.index));
    }
}

/// A stand-in for the API's runner endpoints: serves `desired` and keeps the last report.
#[derive(Clone, Default)]
struct StandIn {
    desired: Arc<Mutex<DesiredState>>,
    reports: Arc<Mutex<Vec<DynoReport>>>,
}

impl StandIn {
    async fn serve(&self) -> String {
        use axum::routing::{get, put};
        let (desired, reports) = (self.desired.clone(), self.reports.clone());
        let app = axum::Router::new()
            .route("/runner/desired-state", get(move || async move { axum::Json(desired.lock().unwrap().clone()) }))
            .route(
                "/runner/dynos",
                put(move |axum::Json(report): axum::Json<DynoReport>| async move {
                    reports.lock().unwrap().push(report);
                    axum::Json(serde_json::json!({"status": "ok"}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn set(&self, apps: Vec<DesiredApp>) {
        *self.desired.lock().unwrap() = DesiredState { apps, volumes: Vec::new(), seed: false };
    }

    /// The states of the last report, as `process.index state`.
    fn reported(&self) -> Vec<String> {
        let reports = self.reports.lock().unwrap();
        let mut states: Vec<String> = reports
            .last()
            .map(|r| r.dynos.iter().map(|d| format!("{} {}", d.name, d.state)).collect())
            .unwrap_or_default();
        states.sort();
        states
    }
}

/// An app whose release `version` runs `web` (and `worker`) dynos, on a slug in `dir`.
fn app(dir: &std::path::Path, name: &str, version: i64, formation: &[(&str, i64)]) -> DesiredApp {
    let slug = dir.join(format!("{name}-{version}.tgz"));
    let bytes = format!("slug of {name} v{version}");
    std::fs::write(&slug, &bytes).unwrap();
    let checksum = format!("SHA256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes.as_bytes())));
    let mut app = crate::plan::tests::app(name, version, formation);
    app.release.slug_checksum = checksum;
    app.release.slug_url = format!("file://{}", slug.display());
    app
}

struct Harness {
    runner: Runner<FakeRuntime>,
    runtime: FakeRuntime,
    api: StandIn,
    routes: watch::Receiver<RouteTable>,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Harness {
        let api = StandIn::default();
        let url = api.serve().await;
        let config = Config {
            api_url: url.clone(),
            api_token: "token".into(),
            api_url_for_dynos: url,
            listen: "127.0.0.1:0".parse().unwrap(),
            domain: "example.test".into(),
            platform: "test".into(),
            drain: Duration::ZERO,
            stop_grace: Duration::ZERO,
            boot_timeout: Duration::from_secs(60),
            tick: Duration::from_millis(50),
            state_file: None,
            secret: "test-secret".into(),
            egress_allow: Vec::new(),
            component_stop_grace: Duration::ZERO,
            image_gc_every: Duration::from_secs(600),
            image_gc_age: Duration::from_secs(3600),
            limits: crate::LIMITS,
            swarm: None,
            swarm_manager_url: None,
        };
        let runtime = FakeRuntime::default();
        let (routes_tx, routes) = watch::channel(RouteTable { version: 1, routes: Vec::new() });
        let (queue, _receiver) = logs::queue(16);
        let runner = Runner::new(config, runtime.clone(), routes_tx, queue, health::Problems::default());
        Harness { runner, runtime, api, routes, dir: tempfile::tempdir().unwrap() }
    }

    /// Reconciles until nothing is in motion (builds, stops) and the engine is steady, at most
    /// 100 passes.
    async fn settle(&mut self) {
        let mut last = Vec::new();
        for _ in 0..100 {
            let busy = self.runner.reconcile().await.expect("reconcile");
            let now = self.runtime.running();
            if !busy && now == last {
                return;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the loop did not settle: {:?}", self.runtime.engine().calls);
    }

    /// The backends routed for `app`, as dyno names.
    fn routed(&self, app: &str) -> Vec<String> {
        let table = self.routes.borrow();
        let route = table.routes.iter().find(|r| r.app == app);
        let mut dynos: Vec<String> =
            route.map(|r| r.backends.iter().map(|b| b.dyno.clone()).collect()).unwrap_or_default();
        dynos.sort();
        dynos
    }
}

#[tokio::test]
async fn builds_the_image_then_starts_the_formation_routes_and_reports_it() {
    let mut h = Harness::new().await;
    h.api.set(vec![app(h.dir.path(), "shop", 3, &[("web", 2), ("worker", 1)])]);
    h.settle().await;
    assert_eq!(h.runtime.running(), ["shop web.1 v3", "shop web.2 v3", "shop worker.1 v3"]);
    let calls = h.runtime.engine().calls.clone();
    let built = calls.iter().position(|c| c.starts_with("build ")).expect("the image is built");
    let first_start = calls.iter().position(|c| c.starts_with("start ")).expect("dynos start");
    assert!(built < first_start, "{calls:?}");
    assert_eq!(calls.iter().filter(|c| c.starts_with("build ")).count(), 1, "one image for the release: {calls:?}");
    assert!(calls.contains(&"follow shop web.1".to_string()), "{calls:?}");
    assert_eq!(h.routed("shop"), ["web.1", "web.2"], "web dynos only, once up");
    assert!(h.runtime.engine().networks.contains("shop"), "the app has a network of its own");
    assert_eq!(h.api.reported(), ["web.1 up", "web.2 up", "worker.1 up"]);
}

#[tokio::test]
async fn scaling_down_stops_and_removes_the_highest_dynos_and_unroutes_them() {
    let mut h = Harness::new().await;
    h.api.set(vec![app(h.dir.path(), "shop", 1, &[("web", 3)])]);
    h.settle().await;
    h.api.set(vec![app(h.dir.path(), "shop", 1, &[("web", 1)])]);
    h.settle().await;
    assert_eq!(h.runtime.running(), ["shop web.1 v1"]);
    assert_eq!(h.runtime.engine().dynos.len(), 1, "the stopped dynos are removed");
    assert_eq!(h.routed("shop"), ["web.1"]);
}

#[tokio::test]
async fn a_crashed_dyno_is_reported_with_its_reason_and_replaced() {
    let mut h = Harness::new().await;
    h.api.set(vec![app(h.dir.path(), "shop", 1, &[("web", 2)])]);
    h.settle().await;
    h.runtime.crash("shop", "web.2");
    // The first pass sees the crash: reported, out of the routes.
    h.runner.reconcile().await.unwrap();
    assert!(h.api.reported().contains(&"web.2 crashed".to_string()), "{:?}", h.api.reported());
    let report = h.api.reports.lock().unwrap().last().cloned().unwrap();
    let crashed = report.dynos.iter().find(|d| d.state == DynoState::Crashed).unwrap();
    assert_eq!(crashed.reason.as_deref(), Some("process exited with status 3"));
    assert_eq!(h.routed("shop"), ["web.1"]);
    // The first crash is replaced at once (back-off starts with the second).
    h.settle().await;
    assert_eq!(h.runtime.running(), ["shop web.1 v1", "shop web.2 v1"]);
    assert_eq!(h.routed("shop"), ["web.1", "web.2"]);
}

#[tokio::test]
async fn a_new_release_hands_web_over_only_once_its_dynos_are_up() {
    let mut h = Harness::new().await;
    h.api.set(vec![app(h.dir.path(), "shop", 1, &[("web", 1)])]);
    h.settle().await;
    h.api.set(vec![app(h.dir.path(), "shop", 2, &[("web", 1)])]);
    // One pass: the new image is asked for; the old dyno keeps serving meanwhile.
    h.runner.reconcile().await.unwrap();
    assert_eq!(h.routed("shop"), ["web.1"]);
    assert!(h.runtime.running().contains(&"shop web.1 v1".to_string()));
    h.settle().await;
    assert_eq!(h.runtime.running(), ["shop web.1 v2"]);
    assert_eq!(h.routed("shop"), ["web.1"]);
}

#[tokio::test]
async fn an_add_on_server_joins_the_networks_of_the_apps_it_serves() {
    let mut h = Harness::new().await;
    let mut server = app(h.dir.path(), "db", 1, &[("web", 1)]);
    server.joins = vec!["shop".into()];
    h.api.set(vec![app(h.dir.path(), "shop", 1, &[("web", 1)]), server]);
    h.settle().await;
    let engine = h.runtime.engine();
    assert!(engine.networks.contains("shop") && engine.networks.contains("db"));
    let db = engine.dynos.iter().find(|d| d.app == "db").unwrap();
    assert_eq!(db.joined, ["shop"], "started on its own network and the served app's");
}

#[tokio::test]
async fn an_app_no_longer_desired_has_its_dynos_stopped() {
    let mut h = Harness::new().await;
    h.api.set(vec![app(h.dir.path(), "shop", 1, &[("web", 1)]), app(h.dir.path(), "blog", 1, &[("web", 1)])]);
    h.settle().await;
    h.api.set(vec![app(h.dir.path(), "shop", 1, &[("web", 1)])]);
    h.settle().await;
    assert_eq!(h.runtime.running(), ["shop web.1 v1"]);
}
