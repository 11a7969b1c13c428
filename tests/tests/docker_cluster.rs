//! Ouro on a Docker Swarm (issue 17). The harness: three Docker engines beside this machine's,
//! each in its own network namespace, form a swarm; a service's replicas spread over the three
//! nodes and answer HTTP over an overlay network from a task on another node; dropping the
//! cluster leaves nothing on the host. Then a platform whose runner drives the swarm's manager
//! (`OURO_SWARM=manager`, the other nodes' runners loading its stack image and making slug
//! images) runs an app's web dynos as services over the three nodes, the router reaches each,
//! `ouro logs` has their output and `ouro nodes` the nodes, and a node lost has its dynos
//! replaced on the others. Needs Docker, root, `ip`, `nsenter`, `unshare` and `iptables`.

use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use ouro_tests::cluster::Cluster;
use ouro_tests::platform::{Platform, runner_env, sample_app};
use ouro_tests::{json, stderr, stdout};

#[test]
fn three_engines_beside_this_one_form_a_swarm_that_spreads_a_service_over_an_overlay() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let image = runtime.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults().expect("Docker Engine");
        ouro_dyno_runner::stack::ensure_stack_image(&docker).await.expect("the stack image")
    });
    let links = || stdout(&std::process::Command::new("ip").args(["-o", "link"]).output().unwrap());
    {
        let cluster = Cluster::start(3);
        assert_eq!(cluster.ready_nodes(), ["node1", "node2", "node3"]);
        let started = Instant::now();
        cluster.load_image(&image);
        println!("the stack image reached 3 nodes in {:?}", started.elapsed());

        let ok = |args: &[&str]| {
            let out = cluster.docker(args);
            assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
            stdout(&out)
        };
        ok(&["network", "create", "-d", "overlay", "--attachable", "web-net"]);
        ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "3",
            "--network",
            "web-net",
            &image,
            "python3",
            "-m",
            "http.server",
            "8000",
        ]);
        let deadline = Instant::now() + Duration::from_secs(120);
        let nodes = loop {
            let tasks = ok(&[
                "service",
                "ps",
                "web",
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Node}} {{.CurrentState}}",
            ]);
            let mut running: Vec<String> = tasks
                .lines()
                .filter(|l| l.contains("Running"))
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect();
            running.sort();
            if running.len() == 3 {
                break running;
            }
            assert!(Instant::now() < deadline, "three running tasks: {tasks}");
            std::thread::sleep(Duration::from_millis(500));
        };
        assert_eq!(nodes, ["node1", "node2", "node3"], "one task per node");

        // From a container on node1, each of the service's three tasks (two of them on other
        // nodes) answers 200 at its own overlay address.
        let script = "import socket, urllib.request, time\n\
            deadline = time.time() + 60\n\
            while True:\n\
            \x20   ips = sorted({a[4][0] for a in socket.getaddrinfo('tasks.web', 8000, proto=socket.IPPROTO_TCP)})\n\
            \x20   if len(ips) == 3 or time.time() > deadline: break\n\
            \x20   time.sleep(1)\n\
            for ip in ips:\n\
            \x20   try:\n\
            \x20       print(ip, urllib.request.urlopen('http://%s:8000/' % ip, timeout=5).status)\n\
            \x20   except OSError as e:\n\
            \x20       print(ip, 'failed', e)\n";
        let out = ok(&["run", "--rm", "--network", "web-net", &image, "python3", "-c", script]);
        let answers: Vec<&str> = out.lines().filter(|l| l.ends_with(" 200")).collect();
        assert_eq!(answers.len(), 3, "{out}");
        ok(&["service", "rm", "web"]);
        // The other nodes lose the stack image: their runners must load the manager's.
        for node in &cluster.nodes[1..] {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let removed = cluster.docker_on(node, &["image", "rm", "-f", &image]);
                if removed.status.success() {
                    break;
                }
                assert!(Instant::now() < deadline, "{} keeps {image}: {}", node.name, stderr(&removed));
                std::thread::sleep(Duration::from_millis(500));
            }
        }

        ouro_on_the_swarm(&cluster);
    }
    // Dropped: the namespaces, the bridge and its veths are gone.
    // (Leftovers of an earlier crashed run may have been swept meanwhile: only this run's
    // names count.)
    let ours = format!(": oc{}x", std::process::id() % 100_000);
    assert!(!links().contains(&ours), "{}", links());
    let namespaces = stdout(&std::process::Command::new("ip").args(["netns", "list"]).output().unwrap());
    assert!(!namespaces.contains(&format!("ourocl-{}-", std::process::id())), "{namespaces}");
}

/// The set of dynos that answered `n` requests through the router, and how many failed.
fn answering(platform: &Platform, app: &str, n: usize) -> (BTreeSet<String>, usize) {
    let mut failed = 0;
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        match platform.get(app, "/") {
            Ok((200, body)) => {
                seen.insert(body.split_whitespace().next().unwrap_or_default().to_string());
            }
            _ => failed += 1,
        }
    }
    (seen, failed)
}

/// The nodes of `app`'s `up` web dynos, as `ouro ps` (the API) shows them.
fn nodes_of(platform: &Platform, app: &str) -> Vec<String> {
    let mut nodes: Vec<String> = platform
        .dynos(app)
        .iter()
        .filter(|d| d["type"] == "web" && d["state"] == "up")
        .map(|d| d["node"].as_str().unwrap_or("(none)").to_string())
        .collect();
    nodes.sort();
    nodes
}

fn ouro_on_the_swarm(cluster: &Cluster) {
    let manager = format!("unix://{}", cluster.nodes[0].socket.display());
    let mut env = runner_env();
    env.extend([("OURO_SWARM", "manager"), ("DOCKER_HOST", manager.as_str())]);
    let mut platform = Platform::start_with(&env);
    for node in &cluster.nodes[1..] {
        platform.start_swarm_node(&node.name, &node.socket);
    }
    let web = json!({"web": "echo \"booting $DYNO\" && exec python3 /app/web.py"});
    let v = platform.create_and_deploy("spread", &sample_app("python-web"), web);
    platform.scale("spread", "web", 3);
    platform.wait_until(Duration::from_secs(240), "three web dynos up, one on each node", || {
        platform.up("spread", "web", v) == 3 && nodes_of(&platform, "spread") == ["node1", "node2", "node3"]
    });
    // Services of one replica each, by image id (no node pulls: every node made the same
    // image from the slug), web's port published in host mode on its node.
    let services = stdout(&cluster.docker(&["service", "ls", "--format", "{{.Name}} {{.Image}}"]));
    assert_eq!(services.lines().filter(|l| l.contains("-spread-web-")).count(), 3, "{services}");
    assert!(services.lines().all(|l| l.contains(" sha256:")), "{services}");
    let name = services.lines().next().and_then(|l| l.split_whitespace().next()).unwrap_or_default().to_string();
    let ports = stdout(&cluster.docker(&["service", "ps", &name, "--format", "{{.Ports}}"]));
    assert!(ports.contains("->5000/tcp"), "{ports}");
    let (seen, failed) = answering(&platform, "spread", 30);
    assert_eq!(failed, 0);
    assert_eq!(
        seen,
        BTreeSet::from(["web.1".into(), "web.2".into(), "web.3".into()]),
        "the router reaches each node's dyno"
    );
    let cli = ouro_tests::logged_in(&platform.api);
    let ps = stdout(&cli.run(&["ps", "-a", "spread"]));
    for node in ["node1", "node2", "node3"] {
        assert!(ps.contains(&format!(") on {node} since")), "ouro ps shows each dyno's node: {ps}");
    }
    // Each node's runner ships what its dynos write: `ouro logs` has all three.
    platform.wait_until(Duration::from_secs(30), "each dyno's output in the app's log", || {
        let logs = stdout(&cli.run(&["logs", "-a", "spread", "-n", "200"]));
        (1..=3).all(|n| logs.contains(&format!("app[web.{n}]: booting web.{n}")))
    });
    // `ouro nodes`: each node, its state and role, and the dyno on it.
    let nodes = |cli: &ouro_tests::Cli| -> Vec<Vec<String>> {
        let shown = ouro_tests::ok(&cli.run(&["nodes"]));
        shown.lines().skip(2).map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
    };
    let shown = nodes(&cli);
    let row = |name: &str, state: &str, role: &str, dynos: &str| {
        let addr = &cluster.nodes.iter().find(|n| n.name == name).expect("a node").addr;
        [name, addr.as_str(), state, role, "active", dynos].map(String::from).to_vec()
    };
    assert_eq!(
        shown,
        [
            row("node1", "ready", "manager", "1"),
            row("node2", "ready", "worker", "1"),
            row("node3", "ready", "worker", "1")
        ]
    );

    // node3 is lost: once Swarm has noticed, its dyno is replaced on another node and the
    // router stops sending to the lost one.
    let lost_at = Instant::now();
    cluster.lose_node(2);
    platform.wait_until(Duration::from_secs(120), "three web dynos up again, none on node3", || {
        let nodes = nodes_of(&platform, "spread");
        platform.up("spread", "web", v) == 3 && !nodes.contains(&"node3".to_string())
    });
    println!("node3 lost: its dyno served elsewhere after {:?}", lost_at.elapsed());
    let shown = nodes(&cli);
    let node3 = shown.iter().find(|r| r[0] == "node3").expect("node3 is listed");
    assert_eq!(node3[2], "down", "{shown:?}");
    let (seen, failed) = answering(&platform, "spread", 30);
    assert_eq!(failed, 0, "no request goes to the lost node");
    assert_eq!(seen.len(), 3, "{seen:?}");
    // Deploys go on.
    let v2 = platform.deploy("spread", &sample_app("python-web"), json!({"web": "GREETING=again python3 /app/web.py"}));
    platform.wait_until(Duration::from_secs(180), "the new release's three dynos up", || {
        platform.up("spread", "web", v2) == 3
    });
    platform.wait_until(Duration::from_secs(30), "the router sends to the new release only", || {
        (0..6).all(|_| platform.get("spread", "/").is_ok_and(|(status, body)| status == 200 && body.contains("again")))
    });
    cluster.bring_back_node(2);
}
