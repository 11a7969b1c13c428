//! The cluster harness (issue 17): three Docker engines beside this machine's, each in its own
//! network namespace, form a swarm; a service's replicas spread over the three nodes and answer
//! HTTP over an overlay network from a task on another node; dropping the cluster leaves
//! nothing on the host. Needs Docker, root, `ip`, `nsenter`, `unshare` and `iptables`.

use std::time::{Duration, Instant};

use ouro_tests::cluster::Cluster;
use ouro_tests::{stderr, stdout};

#[test]
fn three_engines_beside_this_one_form_a_swarm_that_spreads_a_service_over_an_overlay() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let image = runtime.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults().expect("Docker Engine");
        ouro_dyno_runner::stack::ensure_stack_image(&docker).await.expect("the stack image")
    });
    let bridge_links = || stdout(&std::process::Command::new("ip").args(["-o", "link"]).output().unwrap());
    let before = bridge_links().lines().count();
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
    }
    // Dropped: the namespaces, the bridge and its veths are gone.
    assert_eq!(bridge_links().lines().count(), before, "{}", bridge_links());
    let namespaces = stdout(&std::process::Command::new("ip").args(["netns", "list"]).output().unwrap());
    assert!(!namespaces.contains(&format!("ourocl-{}-", std::process::id())), "{namespaces}");
}
