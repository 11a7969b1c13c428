//! Automatic certificates against a real ACME server: Debian's `pebble` (RFC 8555 test server)
//! on loopback, with `pebble-challtestsrv` as its DNS (every name is 127.0.0.1 unless the test
//! says otherwise). An app's custom domain gets a certificate with `ouro certs:auto:enable`
//! (the HTTP-01 challenge answered by the router), the router serves HTTPS with it, a forced
//! renewal replaces it under load with no failed request, and a domain that cannot be
//! validated shows `Failing` with the reason. Needs Docker, `pebble` and `openssl`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ouro_tests::platform::{Platform, sample_app};
use ouro_tests::{json, logged_in, ok, stderr, stdout};

const HOST: &str = "www.acme-shop.test";
const BAD_HOST: &str = "bad.acme-shop.test";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(program: &str, args: &[&str], env: &[(&str, &str)], log: &Path) -> Running {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs (apt install pebble): {e}"));
    Running(child)
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// A certificate authority and a `localhost` certificate it signed, for pebble's own HTTPS.
fn pebble_tls(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=pebble test ca"],
        ]
        .concat(),
    );
    openssl(dir, &[&["req"][..], &ec, &["-keyout", "key.pem", "-out", "req.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}

/// The SHA-256 fingerprint of the certificate the router presents for `host`.
fn served_fingerprint(tls_port: &str, host: &str) -> String {
    let mut client = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{tls_port}"), "-servername", host])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut text = String::new();
    std::io::Read::read_to_string(client.stdout.as_mut().expect("stdout"), &mut text).expect("read");
    let _ = client.wait();
    let mut parse = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(parse.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = parse.wait_with_output().unwrap();
    stdout(&out).trim().to_string()
}

#[test]
fn certs_auto_gets_renews_and_reports_certificates_from_a_real_acme_server() {
    let files = tempfile::tempdir().expect("temp dir");
    pebble_tls(files.path());
    let (acme_port, management_port, dns_port, dns_management) = (free_port(), free_port(), free_port(), free_port());
    let _dns = run(
        "pebble-challtestsrv",
        &[
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            &format!("127.0.0.1:{dns_port}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{dns_management}"),
        ],
        &[],
        &files.path().join("challtestsrv.log"),
    );
    let ca_file = files.path().join("ca.pem");
    let directory = format!("https://127.0.0.1:{acme_port}/dir");
    let platform = Platform::start_with_api(
        &[("OURO_ACME_DIRECTORY", &directory), ("OURO_ACME_CA_FILE", ca_file.to_str().unwrap())],
        &ouro_tests::platform::runner_env(),
    );
    let router_port = platform.router_addr.rsplit(':').next().unwrap().to_string();
    let config = json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{acme_port}"),
        "managementListenAddress": format!("127.0.0.1:{management_port}"),
        "certificate": files.path().join("cert.pem"),
        "privateKey": files.path().join("key.pem"),
        // HTTP-01 is checked on the router's port (80 in production).
        "httpPort": router_port.parse::<u16>().unwrap(),
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    std::fs::write(files.path().join("pebble.json"), config.to_string()).unwrap();
    let config_path = files.path().join("pebble.json");
    let _pebble = run(
        "pebble",
        &["-config", config_path.to_str().unwrap(), "-dnsserver", &format!("127.0.0.1:{dns_port}"), "-strict=false"],
        &[("PEBBLE_VA_NOSLEEP", "1")],
        &files.path().join("pebble.log"),
    );
    let curl_ca = |url: &str, ca: &Path| {
        Command::new("curl").args(["-sS", "--max-time", "5", "--cacert"]).arg(ca).arg(url).output().expect("curl")
    };
    platform.wait_until(Duration::from_secs(20), "pebble answers", || curl_ca(&directory, &ca_file).status.success());

    let cli = logged_in(&platform.api);
    let v = platform.create_and_deploy("shop", &sample_app("python-web"), json!({"web": "python3 /app/web.py"}));
    platform.wait_until(Duration::from_secs(60), "web.1 is up", || platform.up("shop", "web", v) == 1);
    ok(&cli.run(&["domains:add", HOST, "-a", "shop"]));
    let off = ok(&cli.run(&["certs:auto", "-a", "shop"]));
    assert!(off.contains("disabled"), "{off}");
    let on = ok(&cli.run(&["certs:auto:enable", "-a", "shop"]));
    assert!(on.contains("Enabling Automatic Certificate Management... done"), "{on}");
    let status = |host: &str| -> (String, String) {
        let raw: serde_json::Value =
            serde_json::from_str(&ok(&cli.run(&["certs:auto", "-a", "shop", "--json"]))).unwrap();
        let found = raw["domains"].as_array().unwrap().iter().find(|d| d["hostname"] == host).cloned();
        let found = found.unwrap_or_else(|| panic!("{host} in {raw}"));
        (found["status"].as_str().unwrap_or("").to_string(), found["reason"].as_str().unwrap_or("").to_string())
    };
    let log = || std::fs::read_to_string(files.path().join("pebble.log")).unwrap_or_default();
    platform.wait_until(Duration::from_secs(120), "the domain's certificate is issued", || {
        let (status, reason) = status(HOST);
        assert_ne!(status, "Failed", "{reason}\npebble: {}\napi: {}", log(), platform.api.log());
        status == "OK"
    });
    let shown = ok(&cli.run(&["certs:auto", "-a", "shop"]));
    assert!(shown.lines().any(|l| l.starts_with(HOST) && l.contains("OK")), "{shown}");

    // The router serves HTTPS for the domain with it: a chain to pebble's root of this run.
    let root = Command::new("curl")
        .args(["-sS", "-k", &format!("https://127.0.0.1:{management_port}/roots/0")])
        .output()
        .expect("curl");
    std::fs::write(files.path().join("root.pem"), &root.stdout).unwrap();
    let tls_port = platform.router_tls_addr.rsplit(':').next().unwrap().to_string();
    let root_file = files.path().join("root.pem");
    let fetch = move || {
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert"])
            .arg(&root_file)
            .args(["--resolve", &format!("{HOST}:{tls_port}:127.0.0.1")])
            .arg(format!("https://{HOST}:{tls_port}/"))
            .output()
            .expect("curl")
    };
    platform.wait_until(Duration::from_secs(20), "the router presents the issued certificate", || {
        stdout(&fetch()) == "200"
    });
    let tls_port = platform.router_tls_addr.rsplit(':').next().unwrap().to_string();
    let before = served_fingerprint(&tls_port, HOST);

    // A forced renewal, under load: every request (each a new TLS connection) succeeds, and the
    // router ends up presenting the new certificate.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, sent, failed, fetch) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&failed), fetch.clone());
        std::thread::spawn(move || {
            // Bounded: at most 2,000 requests or until told to stop.
            while !stop.load(Ordering::SeqCst) && sent.load(Ordering::SeqCst) < 2000 {
                let out = fetch();
                sent.fetch_add(1, Ordering::SeqCst);
                if stdout(&out) != "200" {
                    failed.fetch_add(1, Ordering::SeqCst);
                    eprintln!("failed: {} {}", stdout(&out), stderr(&out));
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    ok(&cli.run(&["certs:auto:refresh", "-a", "shop"]));
    platform.wait_until(Duration::from_secs(120), "the router presents a renewed certificate", || {
        status(HOST).0 == "OK" && served_fingerprint(&tls_port, HOST) != before
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load");
    let (sent, failed) = (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    println!("during the renewal: {sent} requests, {failed} failed");
    assert!(sent >= 10, "the load ran: {sent}");
    assert_eq!(failed, 0, "no failed request during the renewal ({sent} sent)");

    // A domain whose name points elsewhere (127.0.0.2, where nothing listens) fails
    // validation, and says why.
    let pointed = Command::new("curl")
        .args(["-sS", "-X", "POST", "-d", &json!({ "host": BAD_HOST, "addresses": ["127.0.0.2"] }).to_string()])
        .arg(format!("http://127.0.0.1:{dns_management}/add-a"))
        .output()
        .expect("curl");
    assert!(pointed.status.success(), "{}", stderr(&pointed));
    ok(&cli.run(&["domains:add", BAD_HOST, "-a", "shop"]));
    platform.wait_until(Duration::from_secs(120), "the unreachable domain is reported failing", || {
        let (status, reason) = status(BAD_HOST);
        status == "Failing" && !reason.is_empty()
    });
    assert_eq!(status(HOST).0, "OK", "the other domain keeps its certificate");
    let shown = ok(&cli.run(&["certs:auto", "-a", "shop"]));
    assert!(shown.contains(BAD_HOST) && shown.contains("Failing"), "{shown}");

    // Off: the automatic certificates go.
    let refused = cli.run(&["certs:auto:disable", "-a", "shop"]);
    assert_eq!(refused.status.code(), Some(2));
    ok(&cli.run(&["certs:auto:disable", "-a", "shop", "--confirm", "shop"]));
    let certs = platform.api.get("/apps/shop/sni-endpoints").body;
    assert_eq!(certs, json!([]), "no automatic certificate is left");
}
