//! A Docker Swarm on this one machine, for the cluster tests (issue 17): each node is an extra
//! `dockerd` in a network namespace of its own (and a UTS namespace, so each has its own host
//! name), joined by a veth pair to a bridge the harness makes, on a /24 it picks that no route
//! of the host uses. Privileged Docker-in-Docker fails on these machines; engines beside the
//! first do not.
//!
//! What the harness changes on the host, and takes back when the cluster is dropped (and, for a
//! run that crashed, when the next one starts): the namespaces `ourocl-<pid>-<k>-<n>`, the
//! bridge `oc<pid%10^5>x<k>` with its veth pairs, one `DOCKER-USER` rule that lets traffic
//! between the nodes through the host's `FORWARD` chain (policy DROP; without it `swarm join`
//! times out), and the engines' directories under a temporary directory. It never touches the
//! host's own engine, its `docker0`, or any address it did not make.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{stderr, stdout};

/// One engine of the cluster.
pub struct Node {
    /// Its host name (`node1`…), as `docker node ls` shows it.
    pub name: String,
    /// Its address on the cluster's bridge.
    pub addr: String,
    pub socket: PathBuf,
    netns: String,
    /// The engine: `nsenter`, `unshare` and `sh` each exec the next, so this is `dockerd`.
    engine: std::process::Child,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    bridge: String,
    dir: tempfile::TempDir,
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

fn must(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(out.status.success(), "{program} {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// A /24 in 10.213.0.0/16 that no route of the host covers.
fn free_subnet() -> u8 {
    let routes = must("ip", &["-4", "route", "show"]);
    let start = (std::process::id() % 200) as u8;
    (0..200u8)
        .map(|i| 20 + (start.wrapping_add(i) % 200))
        .find(|third| !routes.contains(&format!("10.213.{third}.")))
        .expect("a free 10.213.x.0/24")
}

/// Removes what a run that is gone (its pid no longer alive) left behind.
fn sweep_leftovers() {
    let alive = |pid: &str| Path::new("/proc").join(pid).exists();
    for line in must("ip", &["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some(pid) = name.strip_prefix("ourocl-").and_then(|rest| rest.split('-').next()) {
            if !alive(pid) {
                for engine in stdout(&run("ip", &["netns", "pids", name])).split_whitespace() {
                    let _ = run("kill", &["-9", engine]);
                }
                let _ = run("ip", &["netns", "del", name]);
            }
        }
    }
    for line in must("ip", &["-o", "link", "show", "type", "bridge"]).lines() {
        let name = line.split(':').nth(1).map(str::trim).unwrap_or_default();
        if let Some(pid) = name.strip_prefix("oc").and_then(|rest| rest.split('x').next()) {
            // Only the last five digits of the pid are in the name: a live process that ends in
            // them keeps its bridge, at worst, until it is gone too.
            let owned_by_live = std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
                e.file_name().to_str().is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()) && p.ends_with(pid))
            });
            if !owned_by_live {
                remove_bridge(name);
            }
        }
    }
}

fn remove_bridge(bridge: &str) {
    while run("iptables", &["-D", "DOCKER-USER", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]).status.success() {}
    let _ = run("ip", &["link", "del", bridge]);
}

impl Cluster {
    /// `nodes` engines, the first the swarm's manager and the others workers, every node
    /// `Ready` before it returns.
    pub fn start(nodes: usize) -> Cluster {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        sweep_leftovers();
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let bridge = format!("oc{}x{k}", pid % 100_000);
        let third = free_subnet();
        let dir = tempfile::tempdir().expect("temp dir");
        must("ip", &["link", "add", &bridge, "type", "bridge"]);
        must("ip", &["addr", "add", &format!("10.213.{third}.1/24"), "dev", &bridge]);
        must("ip", &["link", "set", &bridge, "up"]);
        must("iptables", &["-I", "DOCKER-USER", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"]);
        let mut cluster = Cluster { nodes: Vec::new(), bridge: bridge.clone(), dir };
        for n in 1..=nodes {
            let netns = format!("ourocl-{pid}-{k}-{n}");
            let veth = format!("{bridge}v{n}");
            let addr = format!("10.213.{third}.{}", 10 + n);
            let home = cluster.dir.path().join(format!("node{n}"));
            std::fs::create_dir_all(&home).expect("node dir");
            must("ip", &["netns", "add", &netns]);
            must("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns]);
            must("ip", &["link", "set", &veth, "master", &bridge, "up"]);
            must("ip", &["-n", &netns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            must("ip", &["-n", &netns, "link", "set", "eth0", "up"]);
            must("ip", &["-n", &netns, "link", "set", "lo", "up"]);
            must("ip", &["-n", &netns, "route", "add", "default", "via", &format!("10.213.{third}.1")]);
            let config = home.join("daemon.json");
            let data = home.join("data");
            std::fs::write(&config, crate::json!({ "data-root": data }).to_string()).expect("daemon.json");
            let socket = home.join("docker.sock");
            let name = format!("node{n}");
            // `nsenter --net`, not `ip netns exec`: the latter remounts /sys and dockerd then
            // finds no devices cgroup.
            let script = format!(
                "hostname {name} && exec dockerd --config-file {} --exec-root {} -H unix://{} --pidfile {}",
                config.display(),
                home.join("exec").display(),
                socket.display(),
                home.join("docker.pid").display()
            );
            let log = std::fs::File::create(home.join("dockerd.log")).expect("log");
            let engine = Command::new("nsenter")
                .arg(format!("--net=/var/run/netns/{netns}"))
                .args(["unshare", "--uts", "--", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("dockerd starts");
            cluster.nodes.push(Node { name, addr, socket, netns, engine });
        }
        for node in &cluster.nodes {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !cluster.docker_on(node, &["info"]).status.success() {
                assert!(Instant::now() < deadline, "{} did not start: {}", node.name, cluster.engine_log(node));
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let manager = &cluster.nodes[0];
        let init = cluster.docker_on(manager, &["swarm", "init", "--advertise-addr", &manager.addr]);
        assert!(init.status.success(), "swarm init: {}", stderr(&init));
        let token = stdout(&cluster.docker_on(manager, &["swarm", "join-token", "-q", "worker"])).trim().to_string();
        for node in &cluster.nodes[1..] {
            let joined =
                cluster.docker_on(node, &["swarm", "join", "--token", &token, &format!("{}:2377", manager.addr)]);
            assert!(joined.status.success(), "{} joins: {}", node.name, stderr(&joined));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while cluster.ready_nodes().len() < nodes {
            assert!(Instant::now() < deadline, "nodes ready: {:?}", cluster.ready_nodes());
            std::thread::sleep(Duration::from_millis(250));
        }
        cluster
    }

    /// `docker` against one node's engine.
    pub fn docker_on(&self, node: &Node, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", node.socket.display()))
            .args(args)
            .env_remove("DOCKER_HOST")
            .output()
            .expect("docker runs")
    }

    /// `docker` against the manager.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_on(&self.nodes[0], args)
    }

    /// The host names of the nodes the manager sees `Ready`.
    pub fn ready_nodes(&self) -> Vec<String> {
        let out = self.docker(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
        let mut ready: Vec<String> =
            stdout(&out).lines().filter_map(|l| l.strip_suffix(" Ready").map(str::to_string)).collect();
        ready.sort();
        ready
    }

    /// Copies `image` from this machine's engine into every node's (there is no registry).
    pub fn load_image(&self, image: &str) {
        let tar = self.dir.path().join("image.tar");
        must("docker", &["save", "-o", tar.to_str().expect("UTF-8 path"), image]);
        for node in &self.nodes {
            let loaded = self.docker_on(node, &["load", "-q", "-i", tar.to_str().expect("UTF-8 path")]);
            assert!(loaded.status.success(), "{} loads {image}: {}", node.name, stderr(&loaded));
        }
        let _ = std::fs::remove_file(tar);
    }

    /// Cuts node `n` (0-based) off the cluster's network, as a machine lost would be: its
    /// engine and dynos keep running where nobody reaches them. (Killing its `dockerd` alone
    /// would leave its containers answering.)
    pub fn lose_node(&self, n: usize) {
        must("ip", &["link", "set", &format!("{}v{}", self.bridge, n + 1), "down"]);
    }

    /// Puts node `n` back on the network.
    pub fn bring_back_node(&self, n: usize) {
        must("ip", &["link", "set", &format!("{}v{}", self.bridge, n + 1), "up"]);
    }

    fn engine_log(&self, node: &Node) -> String {
        std::fs::read_to_string(node.socket.with_file_name("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = run("kill", &[&node.engine.id().to_string()]);
        }
        for node in &mut self.nodes {
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(node.engine.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = node.engine.kill();
            let _ = node.engine.wait();
            for left in stdout(&run("ip", &["netns", "pids", &node.netns])).split_whitespace() {
                let _ = run("kill", &["-9", left]);
            }
            let _ = run("ip", &["netns", "del", &node.netns]);
        }
        remove_bridge(&self.bridge);
        // What the engines mounted under their directories (overlay layers, netns files).
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let root = self.dir.path().display().to_string();
        let mut under: Vec<&str> =
            mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&root)).collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in under {
            let _ = run("umount", &["-l", mount]);
        }
    }
}
