//! Issue 15's hostile-input and fault suite, the parts that need the Docker Engine: a whole
//! platform (API, runner, router) on this machine's engine.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ouro_tests::json;
use ouro_tests::platform::Platform;

const BOOT: Duration = Duration::from_secs(120);

/// Nothing of a slug runs as root, and no root helper prepares a volume: a new service volume
/// is the dyno user's from its first mount (Docker copies the slug image's dyno-owned `/data`
/// into it), and every container the runner made in the meantime is a dyno (labelled with its
/// app). On the code before the fix this fails: its runner made each volume with a short root
/// container of the app's own slug image running `chown` (labelled with the platform and
/// `ouro.volume`, no `ouro.app`), which this filter of the engine's create events lists. (Not
/// run against that runner: the harness now needs the runner's secret file, which it did not
/// write; the events query was checked to list the dynos it made.)
#[test]
fn volumes_are_the_dyno_users_and_no_root_helper_runs() {
    let platform = Platform::start();
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("app")).expect("mkdir");
    std::fs::write(dir.path().join("app/README"), "a server that keeps its data in /data\n").expect("write");
    assert_eq!(platform.api.post("/apps", json!({"name": "vault"})).status, 201);
    let service = json!({"mounts": [{"volume": "vault-data", "path": "/data"}]});
    let set = platform.api.call(
        "PUT",
        "/apps/vault/service",
        Some(&platform.api.token),
        Some(service.to_string().as_bytes()),
    );
    assert_eq!(set.status, 200, "{:?}", set.body);
    let v = platform.deploy("vault", dir.path(), json!({"server": "echo started > /data/log && exec sleep 600"}));
    platform.scale("vault", "server", 1);
    platform.wait_until(BOOT, "vault's server is up", || platform.up("vault", "server", v) == 1);
    let (code, said) = platform.exec("vault", "server.1", "stat -c '%u %a' /data && id -u && cat /data/log");
    assert_eq!(code, 0, "{said}");
    assert_eq!(said.split_whitespace().collect::<Vec<_>>(), ["1000", "755", "1000", "started"], "{said}");
    // The stack follows Debian's security suite: its sources name it, and its image says when
    // the updates were installed (issue 15's last finding, in part).
    let (code, sources) = platform.exec("vault", "server.1", "cat /etc/apt/sources.list");
    assert_eq!(code, 0, "{sources}");
    assert!(sources.contains("trixie-security") && sources.contains("trixie-updates"), "{sources}");
    let stack =
        platform.block_on(platform.docker.inspect_image(&ouro_dyno_runner::stack::stack_tag())).expect("the stack");
    let upgraded = stack.config.and_then(|c| c.labels).and_then(|l| l.get("ouro.stack.upgraded").cloned());
    assert!(upgraded.is_some_and(|at| at.starts_with("20")), "the stack's updates are installed at its build");
    // `ouro stack` says so, as the runner reported it.
    let cli = ouro_tests::logged_in(&platform.api);
    platform.wait_until(Duration::from_secs(60), "ouro stack shows the stack's updates", || {
        let said = ouro_tests::stdout(&cli.run(&["stack"]));
        said.contains("* debian-13  ouro/stack:trixie-") && said.contains("updates installed 20")
    });

    // Every container this platform's runner created is a dyno of an app.
    let until = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 1;
    let label = format!("ouro.platform={}", platform.id);
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["create".to_string()]),
        ("label".to_string(), vec![label]),
    ]);
    let options = bollard::system::EventsOptions::<String> {
        since: Some(since.to_string()),
        until: Some(until.to_string()),
        filters,
    };
    let created: Vec<HashMap<String, String>> = platform.block_on(async {
        use futures_util::StreamExt;
        let events = platform.docker.events(Some(options));
        let events =
            tokio::time::timeout(Duration::from_secs(30), events.collect::<Vec<_>>()).await.expect("events end");
        events.into_iter().map(|e| e.expect("an event").actor.and_then(|a| a.attributes).unwrap_or_default()).collect()
    });
    assert!(!created.is_empty(), "the engine reported the dynos' creation");
    let helpers: Vec<_> = created.iter().filter(|attributes| !attributes.contains_key("ouro.app")).collect();
    assert!(helpers.is_empty(), "containers that are no dyno ran: {helpers:?}");
}

/// Dynos reach the internet, not the host nor private or link-local ranges: a dyno cannot
/// open a connection to a port the host listens on (through its network's gateway, or the
/// host's own address on another interface), while it still fetches from the internet and a
/// dyno with API access reaches the API's port (and only that one). Checked to fail on the
/// code before the fix: there the dyno connected to the host's listener at once.
#[test]
fn dynos_reach_the_internet_but_not_the_host_or_private_ranges() {
    let platform = Platform::start();
    let host = std::net::TcpListener::bind("0.0.0.0:0").expect("a port on the host");
    let port = host.local_addr().unwrap().port();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("app")).expect("mkdir");
    std::fs::write(dir.path().join("app/README"), "a dyno that tries to get out\n").expect("write");
    let v = platform.create_and_deploy("probe", dir.path(), json!({"worker": "exec sleep 600"}));
    platform.scale("probe", "worker", 1);
    platform.wait_until(BOOT, "probe's worker is up", || platform.up("probe", "worker", v) == 1);
    let network = format!("{}-app-probe", platform.id);
    let gateway = platform.block_on(async {
        let inspected = platform.docker.inspect_network::<String>(&network, None).await.expect("the app's network");
        inspected.ipam.and_then(|i| i.config).and_then(|c| c.into_iter().find_map(|c| c.gateway)).expect("a gateway")
    });
    let others: Vec<String> =
        local_ipv4_addresses().into_iter().filter(|a| a != &gateway && a != "127.0.0.1").collect();
    assert!(!others.is_empty(), "the host has an address besides the bridge's");
    let connects = |address: &str| {
        let script = format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/{port}' && echo connected || echo refused");
        platform.exec("probe", "worker.1", &script).1
    };
    for address in std::iter::once(&gateway).chain(&others) {
        let said = connects(address);
        assert!(
            said.contains("refused") && !said.contains("connected"),
            "the dyno reached the host at {address}:{port}: {said}"
        );
    }
    // The internet still answers (a Debian mirror, as builds use).
    let (code, said) = platform.exec(
        "probe",
        "worker.1",
        "curl -sS -m 20 --retry 3 --retry-all-errors -o /dev/null -w '%{http_code}' http://deb.debian.org/debian/dists/trixie/Release",
    );
    assert_eq!((code, said.trim()), (0, "200"), "the dyno reaches the internet");
    drop(host);
}

/// The host's IPv4 addresses, from `/proc/net/fib_trie`'s local routes.
fn local_ipv4_addresses() -> Vec<String> {
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let lines: Vec<&str> = trie.lines().collect();
    let mut found = Vec::new();
    for pair in lines.windows(2) {
        if pair[1].contains("/32 host LOCAL") {
            if let Some(address) = pair[0].split_whitespace().last() {
                if !found.iter().any(|f| f == address) {
                    found.push(address.to_string());
                }
            }
        }
    }
    found
}

/// Builds run as one-offs of `ouro-builder`, all on its network: one app's build must not reach
/// another's (a build listening, say, for a test server). The builder's network keeps its dynos
/// apart while each still reaches the internet. Checked to fail on the code before: there a
/// builder one-off connected to another's listener.
#[test]
fn builds_cannot_reach_each_other() {
    let platform = Platform::start();
    let run = |command: &str| {
        let made = platform.api.post("/apps/ouro-builder/dynos", json!({"command": command}));
        assert_eq!(made.status, 201, "{:?}", made.body);
        made.body["name"].as_str().expect("a name").to_string()
    };
    let listener = run("python3 -m http.server 8000 --bind 0.0.0.0");
    let other = run("exec sleep 600");
    let running = |name: &str| {
        platform.containers().values().any(|(app, dyno, _, running)| app == "ouro-builder" && dyno == name && *running)
    };
    platform.wait_until(BOOT, "both builder one-offs run", || running(&listener) && running(&other));
    // The listener answers itself (it is up), at its address on the builder's network.
    let address = platform.exec("ouro-builder", &listener, "hostname -i | cut -d' ' -f1").1.trim().to_string();
    let ask = format!("curl -s -m 3 -o /dev/null -w '%{{http_code}}' http://{address}:8000/");
    platform.wait_until(Duration::from_secs(30), "the listener answers itself", || {
        platform.exec("ouro-builder", &listener, &ask).1.trim() == "200"
    });
    let (code, said) = platform.exec("ouro-builder", &other, &ask);
    assert!(code != 0 || said.trim() != "200", "one build reached another at {address}: {said}");
}
