//! Releases running as real containers (Docker Engine), behind the real router: scale, heal,
//! zero-downtime redeploy, isolation, adoption after restarts.
//! Needs a Docker Engine and builds the stack image on first use (minutes, then cached).

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use ouro_tests::json;
use ouro_tests::platform::{Platform, http_get, sample_app};

const BOOT: Duration = Duration::from_secs(180);

fn web_app() -> serde_json::Value {
    json!({"web": "python3 /app/web.py"})
}

/// The set of dynos that answered `n` requests through the router.
fn answering(platform: &Platform, app: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| platform.get(app, "/").ok())
        .filter(|(status, _)| *status == 200)
        .filter_map(|(_, body)| body.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn scale_heal_and_scale_to_zero() {
    let platform = Platform::start();
    let v = platform.create_and_deploy("scaler", &sample_app("python-web"), web_app());
    platform.wait_until(BOOT, "web.1 is up", || platform.up("scaler", "web", v) == 1);
    let (status, body) = platform.get("scaler", "/").expect("router answers");
    assert_eq!((status, body.trim()), (200, "web.1 hello"));

    platform.scale("scaler", "web", 3);
    platform.wait_until(BOOT, "3 web dynos are up", || platform.up("scaler", "web", v) == 3);
    let all: BTreeSet<String> = ["web.1", "web.2", "web.3"].iter().map(|s| s.to_string()).collect();
    platform.wait_until(Duration::from_secs(10), "all three answer through the router", || {
        answering(&platform, "scaler", 30) == all
    });

    // Kill one behind Ouro's back: it is replaced and the router stops using it meanwhile.
    let containers = platform.containers();
    let (victim, _) = containers.iter().find(|(_, (_, name, _, _))| name == "web.2").expect("web.2 exists");
    platform.block_on(platform.docker.kill_container::<String>(victim, None)).expect("kill");
    platform.wait_until(Duration::from_secs(30), "web.2 runs again in a new container", || {
        platform.containers().iter().any(|(id, (_, name, _, running))| name == "web.2" && *running && id != victim)
    });
    platform.wait_until(Duration::from_secs(30), "web.2 is up again", || platform.up("scaler", "web", v) == 3);
    platform
        .wait_until(Duration::from_secs(10), "all three answer again", || answering(&platform, "scaler", 30) == all);
    let restarted = platform.dynos("scaler").into_iter().find(|d| d["name"] == "web.2").expect("web.2 reported");
    assert!(restarted["restarts"].as_u64() >= Some(1), "{restarted:?}");

    // A container removed behind Ouro's back is recreated.
    let (gone, _) = platform.containers().into_iter().find(|(_, (_, name, _, _))| name == "web.3").expect("web.3");
    let force = bollard::container::RemoveContainerOptions { force: true, ..Default::default() };
    platform.block_on(platform.docker.remove_container(&gone, Some(force))).expect("remove");
    platform.wait_until(Duration::from_secs(30), "web.3 is recreated and up", || {
        platform.containers().iter().any(|(id, (_, name, _, _))| name == "web.3" && *id != gone)
            && platform.up("scaler", "web", v) == 3
    });

    platform.scale("scaler", "web", 0);
    platform.wait_until(Duration::from_secs(30), "all dynos are gone", || platform.containers().is_empty());
    let (status, body) = platform.get("scaler", "/").expect("router answers");
    assert_eq!(status, 503, "{body}");
    // The router writes a request's line once the answer went out: it may come just after.
    platform.wait_until(Duration::from_secs(5), "the router logs H14", || platform.router_log().contains("H14"));
}

#[test]
fn redeploy_under_load_fails_no_request() {
    let platform = Platform::start();
    let app = sample_app("python-web");
    let v1 = platform.create_and_deploy("steady", &app, web_app());
    platform.scale("steady", "web", 2);
    platform.wait_until(BOOT, "2 web dynos are up", || platform.up("steady", "web", v1) == 2);

    let stop = AtomicBool::new(false);
    let (ok, failed) = (AtomicU32::new(0), AtomicU32::new(0));
    let greetings = std::sync::Mutex::new(HashSet::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    match http_get(&platform.router_addr, "steady.localhost", "/") {
                        Ok((200, body)) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            greetings.lock().unwrap().insert(body.split_whitespace().nth(1).unwrap_or("").to_string());
                        }
                        other => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("failed request: {other:?}");
                        }
                    }
                }
            });
        }
        // A config change is a new release: new dynos boot, old ones drain.
        let set = platform.api.patch("/apps/steady/config-vars", json!({"GREETING": "bonjour"}));
        assert_eq!(set.status, 200);
        platform.wait_until(Duration::from_secs(8), "the new release serves", || {
            platform.get("steady", "/").map(|(_, b)| b.contains("bonjour")).unwrap_or(false)
        });
        // Keep the load on a little longer, so that it crosses the hand-over and hits the new
        // release too (the loops stop by themselves after 10 s anyway).
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, Ordering::Relaxed);
    });
    let (ok, failed) = (ok.into_inner(), failed.into_inner());
    assert!(ok > 20, "{ok} requests succeeded");
    assert_eq!(failed, 0, "{failed} of {} requests failed during the redeploy", ok + failed);
    assert!(greetings.into_inner().unwrap().contains("bonjour"));
    platform.wait_until(Duration::from_secs(30), "the old release's dynos are gone", || {
        platform.containers().values().all(|(_, _, release, _)| *release == v1 + 1)
    });
}

/// `ouro stack:update` under load: the runner rebuilds the stack with Debian's latest updates
/// (a container of the stack runs apt and is committed), makes the app's slug image on it, and
/// the app's web dynos move onto it as for a release, old ones serving until the new ones are up:
/// no request fails. Then the dynos run on an image of that update and `ouro stack` shows it,
/// and a build after it runs on the build stack with the update installed.
#[test]
fn stack_update_moves_an_app_under_load_onto_the_rebuilt_stack_without_a_failed_request() {
    let platform = Platform::start();
    let cli = ouro_tests::logged_in(&platform.api);
    let v1 = platform.create_and_deploy("patched", &sample_app("python-web"), web_app());
    platform.scale("patched", "web", 2);
    platform.wait_until(BOOT, "2 web dynos are up", || platform.up("patched", "web", v1) == 2);

    let stop = AtomicBool::new(false);
    let (ok, failed) = (AtomicU32::new(0), AtomicU32::new(0));
    let update = std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                // Bounded: at most 50 requests a second per loop, for at most 7 minutes.
                let deadline = std::time::Instant::now() + Duration::from_secs(420);
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    match http_get(&platform.router_addr, "patched.localhost", "/") {
                        Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("failed request: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        let said = ouro_tests::ok(&cli.run(&["stack:update"]));
        assert!(said.contains(&format!("\n  patched  v{}\n", v1 + 1)), "{said}");
        let update = said
            .split("(update ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap_or_else(|| panic!("no update id in {said:?}"))
            .to_string();
        // Making the stack (apt from the mirror, a commit) takes a minute or two.
        platform.wait_until(Duration::from_secs(400), "both web dynos of the new release are up", || {
            platform.up("patched", "web", v1 + 1) == 2
        });
        platform.wait_until(Duration::from_secs(60), "the old release's dynos are gone", || {
            platform.containers().values().all(|(_, _, release, _)| *release == v1 + 1)
        });
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, Ordering::Relaxed);
        update
    });
    let (ok, failed) = (ok.into_inner(), failed.into_inner());
    assert!(ok > 100, "{ok} requests succeeded");
    assert_eq!(failed, 0, "{failed} of {} requests failed during the stack update", ok + failed);

    // The dynos run an image made on the updated stack, which was made from the stack anew.
    for (id, (_, name, _, running)) in platform.containers() {
        assert!(running, "{name} runs");
        let image =
            platform.block_on(platform.docker.inspect_container(&id, None)).expect("inspect").config.unwrap().image;
        let image = image.unwrap_or_default();
        assert!(image.ends_with(&format!("-u{update}")), "{name} runs {image}");
        let labels = platform.block_on(platform.docker.inspect_image(&image)).expect("image").config.unwrap().labels;
        let labels = labels.unwrap_or_default();
        assert_eq!(labels.get("ouro.stack.update"), Some(&update), "{labels:?}");
        let base = labels.get("ouro.stack.base").expect("the stack it was made from").clone();
        let base_labels =
            platform.block_on(platform.docker.inspect_image(&base)).expect("base").config.unwrap().labels.unwrap();
        let (made, base_made) = (&labels["ouro.stack.upgraded"], &base_labels["ouro.stack.upgraded"]);
        assert!(made > base_made, "updates installed {made}, on a stack whose were {base_made}");
    }
    // `ouro stack` says so once the runner has reported it.
    platform.wait_until(Duration::from_secs(60), "ouro stack shows the update", || {
        let shown = ouro_tests::ok(&cli.run(&["stack"]));
        shown.contains(&format!("-u{update}  updates installed")) && !shown.contains("asked for")
    });
    let release = platform.api.get(&format!("/apps/patched/releases/v{}", v1 + 1)).body;
    assert_eq!(
        release["description"],
        format!("Stack update: debian-13 with Debian's latest updates (update {update})")
    );

    // The builder was released onto the update too: a build after it runs on the build stack
    // with the update installed (made when the build needs it).
    let repo = ouro_tests::platform::sample_repo(&platform, &cli, "rebuilt", "static-site");
    ouro_tests::platform::push(&repo, &["main"]);
    let images = platform.block_on(platform.docker.list_images(Some(bollard::image::ListImagesOptions::<String> {
        filters: std::collections::HashMap::from([("reference".to_string(), vec!["ouro/slug".to_string()])]),
        ..Default::default()
    })));
    let tags: Vec<String> = images.expect("images").into_iter().flat_map(|i| i.repo_tags).collect();
    let builder = tags
        .iter()
        .find(|t| t.starts_with("ouro/slug:build-") && t.ends_with(&format!("-u{update}")))
        .unwrap_or_else(|| panic!("no builder image on the updated build stack in {tags:?}"));
    let labels = platform.block_on(platform.docker.inspect_image(builder)).expect("image").config.unwrap().labels;
    let labels = labels.unwrap_or_default();
    assert_eq!(labels.get("ouro.stack.update"), Some(&update), "{labels:?}");
    let base = labels.get("ouro.stack.base").expect("the stack it was made from");
    assert!(base.starts_with("ouro/stack-build:"), "{base}");
}

#[test]
fn a_failed_boot_leaves_the_old_release_serving() {
    let platform = Platform::start();
    let app = sample_app("python-web");
    let v1 = platform.create_and_deploy("sturdy", &app, web_app());
    platform.wait_until(BOOT, "web.1 is up", || platform.up("sturdy", "web", v1) == 1);
    // This release's web process exits at once.
    let v2 = platform.deploy("sturdy", &app, json!({"web": "echo broken; exit 3"}));
    platform.wait_until(Duration::from_secs(30), "the new dyno is reported crashed", || {
        platform.dynos("sturdy").iter().any(|d| d["release"] == v2 && d["state"] == "crashed")
    });
    let crashed = platform.dynos("sturdy").into_iter().find(|d| d["release"] == v2).expect("v2 dyno");
    assert!(crashed["reason"].as_str().unwrap_or("").contains("status 3"), "{crashed:?}");
    // `ouro releases` shows why the current release is not running.
    let release = platform.api.get(&format!("/apps/sturdy/releases/v{v2}")).body;
    assert!(
        release["failure"].as_str().unwrap_or("").contains("web.1 crashed: process exited with status 3"),
        "{release}"
    );
    for _ in 0..10 {
        let (status, body) = platform.get("sturdy", "/").expect("router answers");
        assert_eq!((status, body.trim()), (200, "web.1 hello"), "the old release still serves");
    }
    assert_eq!(platform.up("sturdy", "web", v1), 1);
}

#[test]
fn dynos_are_isolated() {
    let platform = Platform::start();
    let app = sample_app("python-web");
    let va = platform.create_and_deploy("alpha", &app, web_app());
    let vb = platform.create_and_deploy("beta", &app, web_app());
    platform.wait_until(BOOT, "both apps are up", || {
        platform.up("alpha", "web", va) == 1 && platform.up("beta", "web", vb) == 1
    });

    let (_, inspect) = platform.get("alpha", "/inspect").expect("inspect");
    let inspect: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    assert_eq!(inspect["uid"], 1000, "not root: {inspect}");
    assert_eq!(inspect["cap_eff"], "0000000000000000", "no capabilities: {inspect}");
    assert_eq!(inspect["docker_socket"], false, "no Docker socket: {inspect}");
    assert_eq!(inspect["env_token"], false, "no platform token in the env: {inspect}");
    assert_eq!(inspect["profile"], "yes", ".profile.d was sourced: {inspect}");
    assert_eq!((inspect["port"].as_str(), inspect["ps"].as_str()), (Some("5000"), Some("web.1")));

    // Alpha's dyno cannot open a connection to beta's dyno.
    let (beta_id, _) = platform.containers().into_iter().find(|(_, (a, _, _, _))| a == "beta").expect("beta dyno");
    let beta = platform.block_on(platform.docker.inspect_container(&beta_id, None)).expect("inspect beta");
    let networks = beta.network_settings.and_then(|n| n.networks).expect("networks");
    let beta_ip = networks.values().next().and_then(|e| e.ip_address.clone()).expect("beta ip");
    let (_, reach) = platform.get("alpha", &format!("/connect?addr={beta_ip}:5000")).expect("connect answer");
    let reach: serde_json::Value = serde_json::from_str(&reach).expect("json");
    assert_eq!(reach["connected"], false, "alpha reached beta: {reach}");
    // The check itself works: beta reaches itself.
    let (_, own) = platform.get("beta", &format!("/connect?addr={beta_ip}:5000")).expect("connect answer");
    assert!(own.contains("true"), "{own}");

    // Memory limit and no-new-privileges are set on the container.
    let (id, _) = platform.containers().into_iter().find(|(_, (a, _, _, _))| a == "alpha").expect("alpha dyno");
    let host =
        platform.block_on(platform.docker.inspect_container(&id, None)).expect("inspect").host_config.expect("hc");
    assert_eq!(host.memory, Some(512 * 1024 * 1024));
    assert!(host.security_opt.unwrap_or_default().iter().any(|o| o.contains("no-new-privileges")));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
}

#[test]
fn restarting_runner_and_router_adopts_running_dynos() {
    let mut platform = Platform::start();
    let v = platform.create_and_deploy("adopted", &sample_app("python-web"), web_app());
    platform.scale("adopted", "web", 2);
    platform.wait_until(BOOT, "2 web dynos are up", || platform.up("adopted", "web", v) == 2);
    let before: HashSet<String> = platform.containers().keys().cloned().collect();

    platform.restart_runner();
    platform.restart_router();
    platform.wait_until(Duration::from_secs(30), "the router serves again", || {
        platform.get("adopted", "/").map(|(s, _)| s == 200).unwrap_or(false)
    });
    std::thread::sleep(Duration::from_secs(3)); // a few reconcile ticks
    let after: HashSet<String> = platform.containers().keys().cloned().collect();
    assert_eq!(before, after, "the same containers run: adopted, not restarted");
    assert_eq!(platform.up("adopted", "web", v), 2);
}

/// The data plane without the control plane, and a cold start from local state: with the API
/// down, a runner started after every container is gone (a host restart) brings the dynos back
/// from the desired state it kept, the router serves them, and a crashed one is replaced. When
/// the API is back, it hears of them again.
#[test]
fn without_the_api_a_restarted_runner_brings_the_dynos_back_and_heals_them() {
    let mut platform = Platform::start();
    let v = platform.create_and_deploy("steady", &sample_app("python-web"), web_app());
    platform.scale("steady", "web", 2);
    platform.wait_until(BOOT, "2 web dynos are up", || platform.up("steady", "web", v) == 2);

    platform.api.stop();
    platform.stop_runner();
    platform.remove_all_containers();
    assert!(platform.containers().is_empty());
    platform.restart_runner();
    platform.wait_until(BOOT, "both dynos serve again, the API still down", || {
        answering(&platform, "steady", 20).len() == 2
    });
    let running = |name: &str| {
        let all = platform.containers().into_iter();
        all.filter(|(_, (app, dyno, _, up))| app == "steady" && dyno == name && *up)
            .map(|(id, _)| id)
            .collect::<Vec<_>>()
    };
    let crashed = running("web.1").pop().expect("web.1 runs");
    platform.kill_container(&crashed);
    platform.wait_until(BOOT, "web.1 is replaced", || running("web.1").iter().any(|id| *id != crashed));
    platform.wait_until(BOOT, "both serve", || answering(&platform, "steady", 20).len() == 2);

    platform.api.start_again();
    platform
        .wait_until(Duration::from_secs(60), "the API hears of both dynos", || platform.up("steady", "web", v) == 2);
}

#[test]
fn https_with_an_sni_certificate_reaches_the_dyno() {
    let platform = Platform::start();
    let v = platform.create_and_deploy("tlsapp", &sample_app("python-web"), web_app());
    platform.wait_until(BOOT, "web.1 is up", || platform.up("tlsapp", "web", v) == 1);
    let (cert, key) = ouro_tests::openssl_certificate("tlsapp.localhost", Some("DNS:tlsapp.localhost"));
    let added = platform
        .api
        .post("/apps/tlsapp/sni-endpoints", json!({"certificate_chain": cert.as_str(), "private_key": key}));
    assert_eq!(added.status, 201, "{:?}", added.body);
    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let port = platform.router_tls_addr.rsplit(':').next().unwrap().to_string();
    // curl, trusting only the app's certificate: it succeeds once the router presents it.
    let curl = || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("tlsapp.localhost:{port}:127.0.0.1"), "-w", "\n%{http_version}"])
            .arg(format!("https://tlsapp.localhost:{port}/headers"))
            .output()
            .expect("curl runs")
    };
    let mut answer = String::new();
    platform.wait_until(Duration::from_secs(15), "the router presents the app's certificate", || {
        let out = curl();
        answer = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    let (headers, version) = answer.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "h2 by ALPN: {answer}");
    let headers: serde_json::Value = serde_json::from_str(headers).unwrap();
    let header = |name: &str| {
        headers.as_object().unwrap().iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-forwarded-proto"), Some(json!("https")), "{headers}");
    assert_eq!(header("x-forwarded-port"), Some(json!(port)), "{headers}");
    platform.wait_until(Duration::from_secs(5), "the router logs the https request", || {
        platform.router_log().contains("protocol=https")
    });
}

#[test]
fn a_web_dyno_that_never_binds_its_port_crashes_with_r10() {
    let mut env = ouro_tests::platform::runner_env();
    env.retain(|(k, _)| *k != "OURO_BOOT_TIMEOUT_SECONDS");
    env.push(("OURO_BOOT_TIMEOUT_SECONDS", "3"));
    let platform = Platform::start_with(&env);
    let v = platform.create_and_deploy("sleepy", &sample_app("python-web"), json!({"web": "sleep 600"}));
    platform.wait_until(BOOT, "the dyno is reported crashed with R10", || {
        platform.dynos("sleepy").iter().any(|d| {
            d["release"] == v && d["state"] == "crashed" && d["reason"].as_str().unwrap_or("").starts_with("R10")
        })
    });
    let (status, _) = platform.get("sleepy", "/").expect("router answers");
    assert_eq!(status, 503, "a dyno that never bound its port gets no traffic");
}

#[test]
fn custom_domains_are_routed() {
    let platform = Platform::start();
    let v = platform.create_and_deploy("branded", &sample_app("python-web"), web_app());
    platform.wait_until(BOOT, "web.1 is up", || platform.up("branded", "web", v) == 1);
    let added = platform.api.post("/apps/branded/domains", json!({"hostname": "www.branded.test"}));
    assert_eq!(added.status, 201, "{:?}", added.body);
    platform.wait_until(Duration::from_secs(10), "the custom domain is routed", || {
        http_get(&platform.router_addr, "www.branded.test", "/")
            .map(|(s, b)| s == 200 && b.starts_with("web.1"))
            .unwrap_or(false)
    });
    platform.api.delete("/apps/branded/domains/www.branded.test");
    platform.wait_until(Duration::from_secs(10), "the removed domain is no longer routed", || {
        http_get(&platform.router_addr, "www.branded.test", "/").map(|(s, _)| s == 404).unwrap_or(false)
    });
}

#[test]
fn one_off_dynos_run_once_and_report_how_they_ended() {
    let platform = Platform::start();
    platform.api.post("/apps", json!({"name": "oneoff"}));
    // Nothing to run on before a deploy.
    let early = platform.api.post("/apps/oneoff/dynos", json!({"command": "true"}));
    assert_eq!(early.status, 422, "{:?}", early.body);
    let v = platform.deploy("oneoff", &sample_app("python-web"), web_app());
    platform.wait_until(BOOT, "web.1 is up", || platform.up("oneoff", "web", v) == 1);

    let failing = platform
        .api
        .post("/apps/oneoff/dynos", json!({"command": "test \"$ONE_OFF\" = yes && exit 4", "env": {"ONE_OFF": "yes"}}));
    assert_eq!((failing.status, failing.body["name"].as_str()), (201, Some("run.1")), "{:?}", failing.body);
    let sleeper = platform.api.post("/apps/oneoff/dynos", json!({"command": "sleep 300"}));
    assert_eq!(sleeper.body["name"], "run.2");
    platform.wait_until(Duration::from_secs(60), "run.2 is up", || {
        platform.dynos("oneoff").iter().any(|d| d["name"] == "run.2" && d["state"] == "up")
    });
    // run.1 ran once with its env, exited 4, and was cleaned up after being reported: its
    // container is gone and nothing started it again.
    platform.wait_until(Duration::from_secs(60), "run.1 is gone after exiting", || {
        !platform.containers().values().any(|(_, name, _, _)| name == "run.1")
    });
    let desired = platform.api.get("/runner/desired-state").body;
    let numbers: Vec<u64> =
        desired["apps"][0]["one_offs"].as_array().unwrap().iter().map(|o| o["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, vec![2], "only the running one-off is still desired");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!platform.containers().values().any(|(_, name, _, _)| name == "run.1"), "run.1 was not run again");
    // The web dyno was left alone throughout.
    assert_eq!(platform.up("oneoff", "web", v), 1);
}

/// A service app (what an add-on server will be): its volume outlives its dynos, and only the
/// apps it joins can reach it, by its name; leaving a network cuts the app off at once. It
/// listens on $PORT, so its dyno is up only once it accepts connections there.
#[test]
fn service_apps_keep_their_volume_and_are_reachable_only_from_joined_apps() {
    let platform = Platform::start();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("app")).expect("mkdir");
    // Counts its boots in /data and answers with the count on $PORT, 3 s after it starts.
    std::fs::write(
        dir.path().join("app/server.py"),
        "import http.server, os, time\n\
         time.sleep(3)\n\
         path = '/data/boots'\n\
         boots = int(open(path).read()) + 1 if os.path.exists(path) else 1\n\
         open(path, 'w').write(str(boots))\n\
         class H(http.server.BaseHTTPRequestHandler):\n    \
         def do_GET(self):\n        \
         body = f'boots={boots}\\n'.encode()\n        \
         self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n        \
         self.wfile.write(body)\n\
         http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n",
    )
    .expect("write");
    for app in ["shop", "stranger"] {
        let v = platform.create_and_deploy(app, &sample_app("python-web"), web_app());
        platform.wait_until(BOOT, &format!("{app} is up"), || platform.up(app, "web", v) == 1);
    }
    platform.api.post("/apps", json!({"name": "vault"}));
    let service = json!({
        "mounts": [{"volume": "vault-data", "path": "/data"}], "joins": ["shop"], "api_access": true, "listens": true
    });
    let set = platform.api.call(
        "PUT",
        "/apps/vault/service",
        Some(&platform.api.token),
        Some(service.to_string().as_bytes()),
    );
    assert_eq!(set.status, 200, "{:?}", set.body);
    let bad = json!({"mounts": [{"volume": "x", "path": "/app/data"}], "joins": []});
    let refused =
        platform.api.call("PUT", "/apps/vault/service", Some(&platform.api.token), Some(bad.to_string().as_bytes()));
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    let v = platform.deploy("vault", dir.path(), json!({"server": "python3 /app/server.py"}));
    platform.scale("vault", "server", 1);
    platform.wait_until(BOOT, "vault's server is up", || platform.up("vault", "server", v) == 1);
    // Up means it answers (it sleeps 3 s before it listens).
    let local = "curl -fsS -m 2 http://127.0.0.1:5000/";
    let (code, said) = platform.exec("vault", "server.1", local);
    assert_eq!((code, said.trim()), (0, "boots=1"), "the server was up before it listened");
    let ask = "curl -fsS -m 5 http://vault:5000/";

    // Reachable by name from the app it joins, not from another (not even by address).
    platform.wait_until(Duration::from_secs(30), "shop reaches vault", || platform.exec("shop", "web.1", ask).0 == 0);
    assert_eq!(platform.exec("shop", "web.1", ask).1.trim(), "boots=1");
    let (code, said) = platform.exec("stranger", "web.1", ask);
    assert_ne!(code, 0, "stranger must not reach vault: {said}");
    let address = platform.exec("shop", "web.1", "getent hosts vault | cut -d' ' -f1").1;
    let by_address = format!("curl -fsS -m 3 http://{}:5000/", address.trim());
    assert_ne!(platform.exec("stranger", "web.1", &by_address).0, 0, "stranger reached vault at {address}");

    // A service with API access reaches the API (add-on providers will); other dynos have no
    // OURO_API_URL.
    let (code, said) = platform.exec("vault", "server.1", "curl -fsS -m 5 \"$OURO_API_URL/health\"");
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("\"ok\""), "{said}");
    assert_eq!(platform.exec("shop", "web.1", "test -z \"$OURO_API_URL\"").0, 0);

    // A restart makes a new container; the volume keeps the data.
    assert_eq!(platform.api.delete("/apps/vault/dynos").status, 200);
    platform.wait_until(BOOT, "vault restarted and counts a second boot", || {
        platform.exec("shop", "web.1", ask).1.trim() == "boots=2"
    });

    // Leaving shop's network cuts shop off, without a restart.
    let service = json!({"mounts": [{"volume": "vault-data", "path": "/data"}], "joins": []});
    platform.api.call("PUT", "/apps/vault/service", Some(&platform.api.token), Some(service.to_string().as_bytes()));
    platform.wait_until(Duration::from_secs(30), "shop no longer reaches vault", || {
        platform.exec("shop", "web.1", ask).0 != 0
    });
    assert_eq!(platform.up("vault", "server", v), 1, "the server kept running");
}

/// An add-on provider that is itself an app on the platform: registered as `app:prov`, the API
/// calls it through the router; it checks the password the API generated.
#[test]
fn an_addon_provider_running_as_an_app_is_called_through_the_router() {
    let platform = Platform::start();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("app")).expect("mkdir");
    std::fs::write(
        dir.path().join("app/provider.py"),
        r#"import base64, http.server, json, os
class H(http.server.BaseHTTPRequestHandler):
    def authorized(self):
        expected = "Basic " + base64.b64encode(f"kv:{os.environ.get('PROVIDER_PASSWORD', '')}".encode()).decode()
        return os.environ.get("PROVIDER_PASSWORD") and self.headers.get("Authorization") == expected
    def answer(self, status, body=b""):
        self.send_response(status); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.authorized():
            return self.answer(401, b"wrong credentials")
        body = {"id": "kv-" + request["uuid"][:8], "config": {"URL": f"kv://store/{request['app_name']}"}}
        self.answer(201, json.dumps(body).encode())
    def do_DELETE(self):
        self.answer(204 if self.authorized() else 401)
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#,
    )
    .expect("write");
    let v = platform.create_and_deploy("prov", dir.path(), json!({"web": "python3 /app/provider.py"}));
    platform.wait_until(BOOT, "the provider is up", || platform.up("prov", "web", v) == 1);
    let registered = platform.api.post("/addon-providers", json!({"name": "kv", "url": "app:prov"}));
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    let password = registered.body["password"].as_str().expect("password").to_string();
    assert_eq!(platform.api.post("/apps", json!({"name": "shop"})).status, 201);

    // Without the password, the provider refuses; the API says so and makes nothing.
    let refused = platform.api.post("/apps/shop/addons", json!({"plan": "kv"}));
    assert_eq!(refused.status, 502, "{:?}", refused.body);
    assert!(refused.body["message"].as_str().unwrap_or_default().contains("answered 401"), "{:?}", refused.body);
    assert!(platform.api.get("/apps/shop/config-vars").body.get("KV_URL").is_none());

    // With it (a config var of the provider app: a new release), provisioning works.
    assert_eq!(platform.api.patch("/apps/prov/config-vars", json!({"PROVIDER_PASSWORD": password})).status, 200);
    let v = v + 1;
    platform.wait_until(BOOT, "the provider's new release is up", || {
        platform.up("prov", "web", v) == 1 && platform.up("prov", "web", v - 1) == 0
    });
    let created = platform.api.post("/apps/shop/addons", json!({"plan": "kv"}));
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(platform.api.get("/apps/shop/config-vars").body["KV_URL"], "kv://store/shop");
    let name = created.body["name"].as_str().expect("name").to_string();
    let destroyed = platform.api.delete(&format!("/apps/shop/addons/{name}?confirm={name}"));
    assert_eq!(destroyed.status, 200, "{:?}", destroyed.body);
    assert!(platform.api.get("/apps/shop/config-vars").body.get("KV_URL").is_none());
}

/// An app on the host's network (what the platform's own API and router are under `ouro up`):
/// its dyno listens on a host port named by its config, reached from the host at 127.0.0.1,
/// with no network of its own, and still runs as the dyno user with nothing but its config.
#[test]
fn host_network_dynos_listen_on_the_host_as_the_dyno_user() {
    let platform = Platform::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let listener = json!({"listener": "python3 -m http.server $LISTEN_PORT --bind 127.0.0.1"});
    let v = platform.create_and_deploy("hostnet", &sample_app("python-web"), listener);
    let service = json!({"host_network": true});
    let set = platform.api.call(
        "PUT",
        "/apps/hostnet/service",
        Some(&platform.api.token),
        Some(service.to_string().as_bytes()),
    );
    assert_eq!(set.status, 200, "{:?}", set.body);
    let config = platform.api.patch("/apps/hostnet/config-vars", json!({"LISTEN_PORT": port.to_string()}));
    assert_eq!(config.status, 200, "{:?}", config.body);
    let v = v + 1; // the config change is a release
    platform.scale("hostnet", "listener", 1);

    let addr = format!("127.0.0.1:{port}");
    platform.wait_until(BOOT, "the listener answers on the host's loopback", || {
        matches!(http_get(&addr, "localhost", "/"), Ok((200, _)))
    });
    platform.wait_until(Duration::from_secs(30), "listener.1 is reported up", || {
        platform.up("hostnet", "listener", v) == 1
    });
    assert_eq!(platform.exec("hostnet", "listener.1", "id -u").1.trim(), "1000");
    // Its config and its name, but no $PORT: a process type other than web on the host's
    // network takes its port from its config.
    let (code, env) = platform.exec("hostnet", "listener.1", "echo \"$DYNO $LISTEN_PORT ${PORT:-none}\"");
    assert_eq!((code, env.trim()), (0, format!("listener.1 {port} none").as_str()));

    let (id, _) = platform.containers().into_iter().find(|(_, (a, _, _, _))| a == "hostnet").expect("the dyno");
    let inspect = platform.block_on(platform.docker.inspect_container(&id, None)).expect("inspect");
    let host = inspect.host_config.expect("host config");
    assert_eq!(host.network_mode.as_deref(), Some("host"));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert!(host.security_opt.unwrap_or_default().iter().any(|o| o.contains("no-new-privileges")));
    assert_eq!(host.memory, Some(512 * 1024 * 1024));
    let networks = inspect.network_settings.and_then(|n| n.networks).unwrap_or_default();
    assert_eq!(networks.keys().collect::<Vec<_>>(), vec!["host"], "on no network of its own");
    let label = format!("ouro.platform={}", platform.id);
    let filters = std::collections::HashMap::from([("label", vec![label.as_str()])]);
    let options = bollard::network::ListNetworksOptions { filters };
    let made = platform.block_on(platform.docker.list_networks(Some(options))).expect("list networks");
    assert!(made.is_empty(), "no app network was made: {made:?}");
}
