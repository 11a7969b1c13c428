//! The web dashboard in a real browser: headless Chromium (Debian's `chromium` package) driven
//! over the DevTools protocol against the real API, with the dyno runner played by `PUT
//! /runner/dynos` reports, so no Docker is needed. Saves screenshots under
//! `<target>/test-artifacts/`.

use std::time::Instant;

use cdp::Browser;
use ouro_tests::{Api, Backend, Value, json, make_slug};

#[test]
fn the_dashboard_logs_in_shows_desired_against_live_and_scales_live() {
    let started = Instant::now();
    let api = Api::start(Backend::Sqlite);
    // An app on release v3 (a deploy, then config vars) wanting one web and one worker dyno.
    assert_eq!(api.post("/apps", json!({"name": "shop"})).status, 201);
    let slug = api.post("/apps/shop/slugs", json!({"process_types": {"web": "run web", "worker": "run worker"}}));
    let slug_id = slug.body["id"].as_str().expect("slug id").to_string();
    let tarball = make_slug(&[("app/run", "#!/bin/sh\n")]);
    let blob = format!("/apps/shop/slugs/{slug_id}/blob");
    assert_eq!(api.raw("PUT", &blob, Some(&api.token), Some(&tarball), "application/gzip").0, 200);
    assert_eq!(api.post("/apps/shop/releases", json!({"slug": slug_id})).status, 201);
    let secret = "hunter2-<value>";
    let config = api.patch("/apps/shop/config-vars", json!({"SECRET_KEY": secret, "DATABASE_URL": "postgres://db/x"}));
    assert_eq!(config.status, 200, "{:?}", config.body);
    let formation = json!({"updates": [{"type": "web", "quantity": 1}, {"type": "worker", "quantity": 1}]});
    assert_eq!(api.patch("/apps/shop/formation", formation).status, 200);
    assert_eq!(api.get("/apps/shop").body["current_release"], 3);
    let crashed = dyno("worker.1", "crashed", Some("process exited with status 3"));
    report(&api, &[dyno("web.1", "up", None), crashed.clone()]);

    // Outside the browser: the door and the headers.
    let form = "application/x-www-form-urlencoded";
    let (status, body) = api.raw("POST", "/dashboard/login", None, Some(b"token=ouro_nope_nope"), form);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid token") && body.contains("name=\"token\""), "{body}");
    assert_eq!(api.raw("GET", "/dashboard/apps/shop/events", None, None, form).0, 401);
    let answer = ureq::get(format!("{}/dashboard", api.url)).call().expect("GET /dashboard");
    let header = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(header("content-security-policy").starts_with("default-src 'self'"), "{:?}", answer.headers());
    assert_eq!(header("x-frame-options"), "DENY");

    let browser = Browser::launch();
    let page = browser.page();
    let home = format!("{}/dashboard", api.url);
    page.navigate(&home);
    page.wait_until("document.getElementById('token') !== null", "the login form");
    assert_eq!(page.eval("document.querySelector('form.login').method"), json!("post"));
    page.eval(&format!("document.getElementById('token').value = {}", json!(api.token)));
    page.eval("document.querySelector('form.login button').click()");
    page.wait_until("document.getElementById('apps') !== null", "the apps list after logging in");
    assert_eq!(page.eval("location.href"), json!(home));
    let urls = page.eval(
        "[location.href].concat(performance.getEntriesByType('navigation').map(e => e.name), \
         performance.getEntriesByType('resource').map(e => e.name)).join(' ')",
    );
    assert!(!urls.as_str().expect("urls").contains(&api.token), "a URL holds the token: {urls}");
    assert_eq!(page.eval("document.cookie"), json!(""), "the session cookie is HttpOnly");
    assert!(page.text("#apps").contains("shop"), "{}", page.text("body"));

    page.eval("document.querySelector('a[href=\"/dashboard/apps/shop\"]').click()");
    page.wait_until("document.getElementById('formation-body') !== null", "the app page");
    assert!(page.text("#release .current").contains("v3"), "{}", page.text("#release"));
    assert!(page.text("#releases").contains("v1"), "{}", page.text("#releases"));
    let config = page.text("#config");
    assert!(config.contains("SECRET_KEY") && config.contains("DATABASE_URL"), "{config}");
    let html = page.eval("document.documentElement.outerHTML");
    assert!(!html.as_str().unwrap_or_default().contains("hunter2"), "a config value is in the page before asked");
    page.wait_until(
        "(r => r && r.className === 'bad' && r.textContent.includes('crashed: process exited with status 3'))\
         (document.querySelector('tr[data-dyno=\"worker.1\"]'))",
        "worker.1 red with its reason",
    );
    assert_eq!(page.eval("document.querySelector('tr[data-dyno=\"web.1\"]').className"), json!("ok"));

    page.eval("document.querySelector('tr[data-key=\"SECRET_KEY\"] form.reveal button').click()");
    page.wait_until(
        &format!("document.querySelector('tr[data-key=\"SECRET_KEY\"] .value').textContent === {}", json!(secret)),
        "SECRET_KEY's value after `show`",
    );
    assert_eq!(page.eval("document.querySelector('tr[data-key=\"DATABASE_URL\"] .value').textContent"), json!(""));

    // Forged or stale forms are refused and change nothing.
    let forged = |path: &str, fields: &str| {
        page.eval(&format!(
            "fetch({}, {{method: 'POST', body: new URLSearchParams({fields})}}).then(r => r.status)",
            json!(path)
        ))
    };
    assert_eq!(forged("/dashboard/apps/shop/scale", "{csrf: 'forged', type: 'web', quantity: '7'}"), json!(403));
    assert_eq!(forged("/dashboard/apps/shop/scale", "{type: 'web', quantity: '7'}"), json!(403));
    assert_eq!(forged("/dashboard/apps/shop/config-vars/reveal", "{csrf: 'x', key: 'SECRET_KEY'}"), json!(403));
    assert_eq!(forged("/dashboard/logout", "{csrf: ''}"), json!(403));
    assert_eq!(quantity(&api, "web"), 1);

    // Scale from the page; the page comes back with web.2 wanted and missing.
    page.eval("document.querySelector('input[data-type=\"web\"]').value = '2'");
    page.eval("window.reloaded = false; document.querySelector('input[data-type=\"web\"]').form.querySelector('button').click()");
    page.wait_until(
        "window.reloaded === undefined && (r => r && r.className === 'bad' && r.textContent.includes('missing'))\
         (document.querySelector('tr[data-dyno=\"web.2\"]'))",
        "web.2 wanted and missing after scaling",
    );
    assert_eq!(quantity(&api, "web"), 2, "the page scaled through the API's formation");
    let audit = api.get("/audit-events?app=shop");
    assert!(audit.body.to_string().contains("/dashboard/apps/shop/scale"), "{:?}", audit.body);

    // The runner reports web.2 up: the open page turns it green without a reload.
    page.eval("window.samePage = true");
    report(&api, &[dyno("web.1", "up", None), dyno("web.2", "up", None), crashed]);
    page.wait_until(
        "(r => r && r.className === 'ok')(document.querySelector('tr[data-dyno=\"web.2\"]'))",
        "web.2 green from the event stream",
    );
    assert_eq!(page.eval("window.samePage"), json!(true), "the page was reloaded");

    let artifacts = artifacts_dir();
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1100, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    );
    let desktop = artifacts.join("dashboard.png");
    page.screenshot(&desktop);
    println!("screenshot: {}", desktop.display());

    // A phone: nothing wider than its screen.
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    page.wait_until("document.documentElement.clientWidth === 390", "the phone viewport");
    let width = page.eval("document.documentElement.scrollWidth");
    assert!(width.as_i64().expect("a width") <= 390, "the app page overflows a 390 px screen: {width}");
    let phone = artifacts.join("dashboard-phone.png");
    page.screenshot(&phone);
    println!("screenshot: {}", phone.display());

    // Logging out ends the session.
    page.eval("document.querySelector('form.logout button').click()");
    page.wait_until("document.getElementById('token') !== null", "the login form after logging out");
    page.navigate(&format!("{}/dashboard/apps/shop", api.url));
    page.wait_until("document.getElementById('token') !== null", "the login form for a logged-out visitor");
    println!("dashboard test took {:.1} s", started.elapsed().as_secs_f64());
}

/// A dyno of `shop` on release v3, as the runner reports it.
fn dyno(name: &str, state: &str, reason: Option<&str>) -> Value {
    json!({
        "id": format!("container-{name}"), "app": "shop", "name": name,
        "type": name.split('.').next().unwrap_or_default(), "state": state, "size": "standard-1x",
        "release": 3, "reason": reason, "restarts": 0, "created_at": "2025-01-01T00:00:00Z",
    })
}

/// Plays the dyno runner: its whole report of live dynos.
fn report(api: &Api, dynos: &[Value]) {
    let body = json!({"dynos": dynos}).to_string();
    let answer = api.call("PUT", "/runner/dynos", Some(&api.token), Some(body.as_bytes()));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

fn quantity(api: &Api, process_type: &str) -> i64 {
    let answer = api.get(&format!("/apps/shop/formation/{process_type}"));
    answer.body["quantity"].as_i64().unwrap_or_else(|| panic!("{:?}", answer.body))
}

/// `<target>/test-artifacts`, beside the profile directory this test runs from.
fn artifacts_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/<profile>/deps/<test>
    let target = exe.ancestors().nth(3).expect("target dir");
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create test-artifacts");
    dir
}

/// Just enough of the Chrome DevTools protocol, over just enough of a WebSocket client.
mod cdp {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::Mutex;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    /// How long any one wait may take.
    const TIMEOUT: Duration = Duration::from_secs(20);

    /// A headless Chromium, killed when dropped.
    pub struct Browser {
        child: Child,
        socket: Mutex<WebSocket>,
        _profile: tempfile::TempDir,
    }

    /// One tab, reached through the browser's socket with a flat session.
    pub struct Page<'a> {
        browser: &'a Browser,
        session: String,
    }

    impl Browser {
        pub fn launch() -> Browser {
            let profile = tempfile::tempdir().expect("temp dir");
            let spawned = Command::new("chromium")
                .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
                .args(["--no-first-run", "--remote-debugging-port=0"])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("about:blank")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn();
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "the dashboard test needs headless Chromium and `chromium` is not installed: \
                     install Debian's package (`apt-get install -y chromium`)"
                ),
                Err(e) => panic!("chromium does not start: {e}"),
            };
            let stderr = child.stderr.take().expect("piped stderr");
            let (tx, rx) = mpsc::channel();
            // Reads on to the end, so chromium never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            });
            let url = match rx.recv_timeout(TIMEOUT) {
                Ok(url) => url,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("chromium did not say `DevTools listening on ws://…` within {TIMEOUT:?}");
                }
            };
            let socket = Mutex::new(WebSocket::connect(&url));
            Browser { child, socket, _profile: profile }
        }

        /// A new tab.
        pub fn page(&self) -> Page<'_> {
            let target = self.send(None, "Target.createTarget", json!({"url": "about:blank"}));
            let target_id = target["targetId"].as_str().expect("targetId").to_string();
            let attached = self.send(None, "Target.attachToTarget", json!({"targetId": target_id, "flatten": true}));
            let session = attached["sessionId"].as_str().expect("sessionId").to_string();
            Page { browser: self, session }
        }

        /// A command's result; panics on a protocol error.
        fn send(&self, session: Option<&str>, method: &str, params: Value) -> Value {
            self.try_send(session, method, params).unwrap_or_else(|e| panic!("{method}: {e}"))
        }

        fn try_send(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value, String> {
            static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut message = json!({"id": id, "method": method, "params": params});
            if let Some(session) = session {
                message["sessionId"] = json!(session);
            }
            let mut socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
            socket.send_text(&message.to_string());
            let deadline = Instant::now() + TIMEOUT;
            loop {
                assert!(Instant::now() < deadline, "no answer to {method} within {TIMEOUT:?}");
                let answer: Value = serde_json::from_str(&socket.recv_text()).expect("DevTools sends JSON");
                // Events (no id) and answers to nothing we wait for are skipped.
                if answer["id"] != json!(id) {
                    continue;
                }
                return match answer.get("error") {
                    Some(error) => Err(error.to_string()),
                    None => Ok(answer["result"].clone()),
                };
            }
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Page<'_> {
        pub fn call(&self, method: &str, params: Value) -> Value {
            self.browser.send(Some(&self.session), method, params)
        }

        pub fn navigate(&self, url: &str) {
            let answer = self.call("Page.navigate", json!({"url": url}));
            assert!(answer.get("errorText").is_none(), "navigating to {url}: {answer}");
        }

        /// The value of a JavaScript expression (awaited when it is a promise).
        pub fn eval(&self, expression: &str) -> Value {
            self.try_eval(expression).unwrap_or_else(|e| panic!("{expression}: {e}"))
        }

        fn try_eval(&self, expression: &str) -> Result<Value, String> {
            let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
            let answer = self.browser.try_send(Some(&self.session), "Runtime.evaluate", params)?;
            if let Some(exception) = answer.get("exceptionDetails") {
                return Err(exception.to_string());
            }
            Ok(answer["result"]["value"].clone())
        }

        /// The text of the first element matching `selector`.
        pub fn text(&self, selector: &str) -> String {
            let expression = format!("(e => e ? e.innerText : '')(document.querySelector({}))", json!(selector));
            self.eval(&expression).as_str().unwrap_or_default().to_string()
        }

        /// Polls `condition` (JavaScript) until it is `true`; errors while a page loads count as
        /// not yet.
        pub fn wait_until(&self, condition: &str, what: &str) {
            let deadline = Instant::now() + TIMEOUT;
            while Instant::now() < deadline {
                if self.try_eval(condition) == Ok(Value::Bool(true)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let page = self.try_eval("location.href + '\\n' + document.body.innerText");
            panic!("waited {TIMEOUT:?} for {what}; the page: {}", page.map_or_else(|e| e, |v| v.to_string()));
        }

        /// A PNG of the viewport, written to `path`.
        pub fn screenshot(&self, path: &Path) {
            let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
            let png = decode_base64(shot["data"].as_str().expect("base64 data"));
            assert!(png.starts_with(b"\x89PNG"), "not a PNG");
            std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
    }

    /// A WebSocket client (RFC 6455): masked text frames out; whole messages in, however
    /// fragmented; pings answered.
    struct WebSocket {
        stream: TcpStream,
    }

    impl WebSocket {
        fn connect(url: &str) -> WebSocket {
            let rest = url.strip_prefix("ws://").unwrap_or_else(|| panic!("not a ws:// URL: {url}"));
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            let mut stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("connecting to {host}: {e}"));
            stream.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
            stream.set_nodelay(true).expect("nodelay");
            let key = encode_base64(&random_bytes::<16>());
            let request = format!(
                "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).expect("send the handshake");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).expect("read the handshake's answer");
                head.push(byte[0]);
                assert!(head.len() < 16 * 1024, "endless handshake answer");
            }
            let head = String::from_utf8_lossy(&head);
            assert!(head.starts_with("HTTP/1.1 101"), "DevTools refused the WebSocket: {head}");
            WebSocket { stream }
        }

        fn send_text(&mut self, text: &str) {
            self.send_frame(0x1, text.as_bytes());
        }

        fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
            let mut frame = vec![0x80 | opcode];
            match payload.len() {
                n if n < 126 => frame.push(0x80 | n as u8),
                n if n < 65536 => {
                    frame.push(0x80 | 126);
                    frame.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    frame.push(0x80 | 127);
                    frame.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            let mask = random_bytes::<4>();
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            self.stream.write_all(&frame).expect("send a WebSocket frame");
        }

        fn recv_text(&mut self) -> String {
            let mut message = Vec::new();
            loop {
                let mut head = [0u8; 2];
                self.read(&mut head);
                let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
                let len = match head[1] & 0x7f {
                    126 => {
                        let mut n = [0u8; 2];
                        self.read(&mut n);
                        u64::from(u16::from_be_bytes(n))
                    }
                    127 => {
                        let mut n = [0u8; 8];
                        self.read(&mut n);
                        u64::from_be_bytes(n)
                    }
                    n => u64::from(n),
                };
                let mask = if head[1] & 0x80 != 0 {
                    let mut m = [0u8; 4];
                    self.read(&mut m);
                    Some(m)
                } else {
                    None
                };
                let mut payload = vec![0u8; len as usize];
                self.read(&mut payload);
                if let Some(mask) = mask {
                    payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= mask[i % 4]);
                }
                match opcode {
                    0x0..=0x2 => {
                        message.extend_from_slice(&payload);
                        if fin {
                            return String::from_utf8(message).expect("UTF-8 text");
                        }
                    }
                    0x8 => panic!("DevTools closed the WebSocket"),
                    0x9 => self.send_frame(0xA, &payload),
                    _ => {}
                }
            }
        }

        fn read(&mut self, buf: &mut [u8]) {
            self.stream
                .read_exact(buf)
                .unwrap_or_else(|e| panic!("reading from DevTools (waited up to {TIMEOUT:?}): {e}"));
        }
    }

    /// Not cryptographic; a WebSocket key and masks need only vary.
    fn random_bytes<const N: usize>() -> [u8; N] {
        use std::hash::{BuildHasher, Hasher};
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
            );
            chunk.copy_from_slice(&hasher.finish().to_le_bytes()[..chunk.len()]);
        }
        out
    }

    const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    fn encode_base64(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                out.push(if i <= chunk.len() { BASE64[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
            }
        }
        out
    }

    fn decode_base64(text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0u32);
        for byte in text.bytes().filter(|b| *b != b'=' && !b.is_ascii_whitespace()) {
            let value = BASE64.iter().position(|c| *c == byte).expect("base64") as u32;
            acc = (acc << 6) | value;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        out
    }

    #[test]
    fn base64_round_trips() {
        for input in ["", "f", "fo", "foo", "foob", "\u{89}PNG"] {
            assert_eq!(decode_base64(&encode_base64(input.as_bytes())), input.as_bytes());
        }
        assert_eq!(encode_base64(b"postgresql:pw"), "cG9zdGdyZXNxbDpwdw==");
    }
}
