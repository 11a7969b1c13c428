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
