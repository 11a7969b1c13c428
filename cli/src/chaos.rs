//! `ouro chaos -a APP`: the chaos monkey, built in. For `--duration` seconds it sends the app a
//! bounded load of its own (through the platform's router, on loopback only) and, every
//! `--every` seconds, kills one thing through the dyno runner's `POST /chaos/kill`: each of the
//! `--targets` other than `dynos` once, at a random slot, and a random web dyno of the app at
//! every other slot (when `dynos` is a target). For each kill it reports what was killed, the
//! seconds until it served again and the requests that failed until the next kill; at the end,
//! when the app has a PostgreSQL add-on (`DATABASE`), that no row it wrote there before and
//! during the run (through `psql` and the add-on's tunnel, one row every half second, each
//! counted only once acknowledged) is missing.
//!
//! "Served again": a dyno or an add-on server, once a dyno of the same name runs up in a new
//! container (`GET /apps/{app}/dynos`); the router, once a request through it reaches the app;
//! the API, once its `/health` answers; the runner, once its `/health` answers again.
//!
//! Runs where `ouro up` runs (it needs the runner's secret), for admins only, and with
//! `--confirm` only on a platform that runs other users' apps.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use crate::context::{Ctx, Output, pretty};
use crate::credentials;
use crate::error::CliError;
use crate::{pg, tunnel};

/// What may be killed.
const TARGETS: [&str; 5] = ["dynos", "router", "api", "runner", "addons"];
/// How long a kill may take to heal before it counts as not healed.
const HEAL_LIMIT: Duration = Duration::from_secs(120);
/// The longest run allowed.
const MAX_DURATION: u64 = 3600;
/// Between two requests of one load loop: at most 100 requests a second per loop.
const LOAD_PAUSE: Duration = Duration::from_millis(10);
/// After a failed request, as a client would back off (a refused connection fails at once: a
/// loop without it would count hundreds of failures a second while the router is away).
const FAILED_PAUSE: Duration = Duration::from_millis(100);
/// Between two rows written.
const ROW_EVERY: Duration = Duration::from_millis(500);
/// Rows written before the kills start.
const ROWS_BEFORE: u64 = 20;

pub struct Args {
    pub duration: u64,
    pub every: u64,
    pub targets: String,
    pub confirm: bool,
    pub data_dir: Option<PathBuf>,
    pub runner_port: u16,
    pub concurrency: usize,
}

/// One kill and how it went.
#[derive(Debug, Clone, Serialize)]
struct Kill {
    /// Seconds from the start of the run.
    at: f64,
    target: String,
    app: Option<String>,
    dyno: Option<String>,
    /// Seconds from the kill until it served again; `None`: not within [`HEAL_LIMIT`].
    healed_after: Option<f64>,
    /// Requests that failed from this kill to the next one (or the end).
    failed_requests: u64,
    /// Why the kill could not be made, if it could not.
    error: Option<String>,
}

pub fn chaos(ctx: &Ctx, args: &Args) -> Output {
    let app = ctx.app()?;
    let client = ctx.client()?;
    let targets = parse_targets(&args.targets)?;
    if args.every == 0 || args.duration < args.every || args.duration > MAX_DURATION {
        return Err(CliError::usage(format!(
            "--every must be at least 1 s and at most --duration, which is at most {MAX_DURATION} s"
        )));
    }
    let slots = (args.duration / args.every) as usize;
    let once: Vec<&str> = targets.iter().copied().filter(|t| *t != "dynos").collect();
    if once.len() > slots {
        return Err(CliError::usage(format!(
            "{} targets to kill once need as many kills: make --duration at least {} × --every",
            once.len(),
            once.len()
        )));
    }
    let account = client.get("/account")?;
    let me = account["email"].as_str().unwrap_or_default().to_string();
    if account["admin"] != true {
        return Err(CliError::local("ouro chaos is for admins: it kills the platform's own parts"));
    }
    let others = other_users_apps(&client.get("/apps")?, &me);
    if !others.is_empty() && !args.confirm {
        return Err(CliError::usage(format!(
            "this platform runs other users' apps ({}): their requests may fail too; pass --confirm to run anyway",
            others.join(", ")
        )));
    }
    let web_url = client.get(&format!("/apps/{app}"))?["web_url"].as_str().unwrap_or_default().to_string();
    let (host, port) = host_and_port(&web_url)
        .ok_or_else(|| CliError::local(format!("cannot tell the router's port from the app's URL {web_url:?}")))?;
    let runner = Runner::find(args)?;
    let credentials = credentials::load()?;
    let plan = schedule(slots, &once, targets.contains(&"dynos"));

    let rows = Rows::open(ctx, &app);
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.clamp(1, 16) {
        let (stop, load, host) = (stop.clone(), load.clone(), host.clone());
        let deadline = start + Duration::from_secs(args.duration) + HEAL_LIMIT + Duration::from_secs(30);
        workers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let served = request(port, &host).is_ok_and(|status| status < 500);
                load.count(start, served);
                thread::sleep(if served { LOAD_PAUSE } else { FAILED_PAUSE });
            }
        }));
    }
    let writer = rows.as_ref().map(|rows| {
        let (rows, stop) = (rows.clone(), stop.clone());
        thread::spawn(move || rows.write_until(&stop))
    });

    let mut kills = Vec::new();
    let mut watchers = Vec::new();
    for (slot, target) in plan.iter().enumerate() {
        let Some(target) = target else { continue };
        let due = start + Duration::from_secs(args.every * (slot as u64 + 1));
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let at = start.elapsed().as_secs_f64();
        let (killed, error) = match runner.kill(target, &app) {
            Ok(killed) => (Some(killed), None),
            Err(why) => (None, Some(why)),
        };
        let index = kills.len();
        kills.push(Kill {
            at,
            target: target.to_string(),
            app: killed.as_ref().and_then(|k| k["app"].as_str().map(String::from)),
            dyno: killed.as_ref().and_then(|k| k["dyno"].as_str().map(String::from)),
            healed_after: None,
            failed_requests: 0,
            error,
        });
        if let Some(killed) = killed {
            let watch = Watch {
                target: target.to_string(),
                killed,
                api_url: credentials.api_url.clone(),
                token: credentials.token.clone(),
                runner_url: runner.url.clone(),
                host: host.clone(),
                port,
            };
            let kill_at = Instant::now();
            watchers.push((index, thread::spawn(move || watch.healed(kill_at))));
        }
    }
    for (index, watcher) in watchers {
        kills[index].healed_after = watcher.join().unwrap_or(None);
    }
    // A little more load after the last heal, then the rows' count.
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let written = writer.map(|w| w.join().unwrap_or_default());
    let failures = load.failures.lock().map(|f| f.clone()).unwrap_or_default();
    for i in 0..kills.len() {
        let until = kills.get(i + 1).map_or(f64::MAX, |k| k.at);
        kills[i].failed_requests = failures.iter().filter(|t| **t >= kills[i].at && **t < until).count() as u64;
    }
    let before_any = failures.iter().filter(|t| kills.first().is_none_or(|k| **t < k.at)).count() as u64;
    let data = match (&rows, written) {
        (Some(rows), Some(written)) => Some(rows.check(&written)),
        _ => None,
    };
    let total = load.total.load(Ordering::Relaxed);
    let failed = failures.len() as u64;
    let report = json!({
        "app": app,
        "duration": args.duration,
        "every": args.every,
        "kills": kills,
        "requests": {"total": total, "failed": failed, "failed_before_the_first_kill": before_any},
        "rows": data,
    });
    let text = if ctx.json { pretty(&report) } else { render(&report, rows.is_none()) };
    let lost = data.as_ref().and_then(|d| d["lost"].as_array()).is_some_and(|l| !l.is_empty());
    let unhealed = kills.iter().filter(|k| k.error.is_none() && k.healed_after.is_none()).count();
    if lost || unhealed > 0 {
        print!("{text}");
        return Err(CliError::local(match (lost, unhealed) {
            (true, _) => "rows acknowledged by the database are missing after the run".to_string(),
            (false, n) => format!("{n} kill(s) did not heal within {} s", HEAL_LIMIT.as_secs()),
        }));
    }
    Ok(text)
}

fn parse_targets(list: &str) -> Result<Vec<&'static str>, CliError> {
    let mut targets = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let known = TARGETS
            .iter()
            .find(|t| **t == name || t.trim_end_matches('s') == name)
            .ok_or_else(|| CliError::usage(format!("no target `{name}`: --targets takes {}", TARGETS.join(","))))?;
        if !targets.contains(known) {
            targets.push(*known);
        }
    }
    if targets.is_empty() {
        return Err(CliError::usage(format!("--targets names none of {}", TARGETS.join(","))));
    }
    Ok(targets)
}

/// What each of `slots` kills is: each of `once` at a random slot of its own, `dynos` (if
/// `dynos`) at the others, nothing otherwise.
fn schedule(slots: usize, once: &[&'static str], dynos: bool) -> Vec<Option<&'static str>> {
    let mut plan: Vec<Option<&'static str>> = vec![if dynos { Some("dynos") } else { None }; slots];
    let mut seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7) | 1;
    let mut free: Vec<usize> = (0..slots).collect();
    for target in once {
        // xorshift: a monkey needs no better randomness.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let slot = free.remove((seed % free.len() as u64) as usize);
        plan[slot] = Some(target);
    }
    plan
}

/// Apps owned by others than `me` and the platform's own users (`…ouro.local`).
fn other_users_apps(apps: &Value, me: &str) -> Vec<String> {
    apps.as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            let owner = a["owner"]["email"].as_str().unwrap_or_default();
            owner != me && !owner.ends_with("ouro.local")
        })
        .filter_map(|a| a["name"].as_str().map(String::from))
        .collect()
}

/// The host and port of an app's URL (`http://shop.localhost:8080/`): the load goes to that
/// port on 127.0.0.1 with that host, whatever the name resolves to.
fn host_and_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((authority.to_string(), 80)),
    }
}

/// One request through the router on loopback, on a new connection: its status.
fn request(port: u16, host: &str) -> Result<u16, String> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: ouro-chaos\r\n\r\n");
    stream.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| "no HTTP answer".to_string())
}

/// The load's tally.
#[derive(Default)]
struct Load {
    total: AtomicU64,
    /// When each failed request was made, in seconds from the start.
    failures: Mutex<Vec<f64>>,
}

impl Load {
    fn count(&self, start: Instant, served: bool) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if !served {
            if let Ok(mut failures) = self.failures.lock() {
                failures.push(start.elapsed().as_secs_f64());
            }
        }
    }
}

/// The dyno runner's listener, with its secret.
struct Runner {
    url: String,
    secret: String,
    agent: ureq::Agent,
}

impl Runner {
    fn find(args: &Args) -> Result<Runner, CliError> {
        let secret = match std::env::var("OURO_RUNNER_SECRET").ok().filter(|s| !s.is_empty()) {
            Some(secret) => secret,
            None => {
                let data = crate::up::data_dir(args.data_dir.as_ref())?;
                let file = data.join("runner").join("runner-secret");
                std::fs::read_to_string(&file).map(|s| s.trim().to_string()).map_err(|e| {
                    CliError::local(format!(
                        "cannot read the runner's secret in {} ({e}): run ouro chaos where ouro up runs, as its user, with its --data-dir (or set OURO_RUNNER_SECRET)",
                        file.display()
                    ))
                })?
            }
        };
        Ok(Runner { url: format!("http://127.0.0.1:{}", args.runner_port), secret, agent: agent(5) })
    }

    /// Kills one `target` (of `app`); tried for up to 15 s (the runner itself may be coming
    /// back from an earlier kill).
    fn kill(&self, target: &str, app: &str) -> Result<Value, String> {
        let body = json!({"target": target.trim_end_matches('s'), "app": app});
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let answer = self
                .agent
                .post(&format!("{}/chaos/kill", self.url))
                .header("Authorization", &format!("Bearer {}", self.secret))
                .send_json(&body);
            let why = match answer {
                Ok(mut answer) => {
                    let status = answer.status().as_u16();
                    let value: Value = answer.body_mut().read_json().unwrap_or(Value::Null);
                    if status == 202 {
                        return Ok(value);
                    }
                    let why = value["message"].as_str().unwrap_or("no reason given").to_string();
                    if status < 500 {
                        return Err(why);
                    }
                    why
                }
                Err(e) => format!("the runner did not answer: {e}"),
            };
            if Instant::now() > deadline {
                return Err(why);
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

fn agent(timeout_seconds: u64) -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .max_idle_age(Duration::from_secs(ouro_types::CLIENT_IDLE_SECONDS))
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(timeout_seconds)))
            .build(),
    )
}

/// How to tell that a kill has healed.
struct Watch {
    target: String,
    killed: Value,
    api_url: String,
    token: String,
    runner_url: String,
    host: String,
    port: u16,
}

impl Watch {
    /// Seconds from `kill_at` until what was killed serves again, polling every 100 ms.
    fn healed(&self, kill_at: Instant) -> Option<f64> {
        let agent = agent(3);
        let get = |url: &str| {
            agent
                .get(url)
                .header("Authorization", &format!("Bearer {}", self.token))
                .call()
                .ok()
                .filter(|a| a.status() == 200)
        };
        // The runner answers before it goes: its health counts from when it has gone.
        if self.target == "runner" {
            thread::sleep(Duration::from_millis(500));
        }
        while kill_at.elapsed() < HEAL_LIMIT {
            let served = match self.target.as_str() {
                "router" => request(self.port, &self.host) == Ok(200),
                "api" => get(&format!("{}/health", self.api_url)).is_some(),
                "runner" => get(&format!("{}/health", self.runner_url)).is_some(),
                _ => {
                    let (app, dyno) = (self.killed["app"].as_str().unwrap_or(""), self.killed["dyno"].as_str());
                    let container = self.killed["container"].as_str();
                    get(&format!("{}/apps/{app}/dynos", self.api_url))
                        .and_then(|mut a| a.body_mut().read_json::<Value>().ok())
                        .and_then(|dynos| dynos.as_array().cloned())
                        .is_some_and(|dynos| {
                            dynos.iter().any(|d| {
                                d["name"].as_str() == dyno && d["id"].as_str() != container && d["state"] == "up"
                            })
                        })
                }
            };
            if served {
                return Some(kill_at.elapsed().as_secs_f64());
            }
            thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

/// Rows written to the app's PostgreSQL add-on through its tunnel, with the real `psql`.
#[derive(Clone)]
struct Rows {
    psql: PathBuf,
    url: String,
    password: Option<String>,
    /// This run's rows are marked with it.
    run: String,
}

impl Rows {
    /// The app's `DATABASE` add-on, if it has one and `psql` is there (else the run says so and
    /// goes on without the data check).
    fn open(ctx: &Ctx, app: &str) -> Option<Rows> {
        let psql = tunnel::find_program("psql")?;
        let (url, port) =
            tunnel::forward(ctx, "DATABASE", &["postgres", "postgresql"], "a PostgreSQL database").ok()?;
        let run = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0).to_string();
        let rows = Rows { psql, url: pg::local_url(&url, port), password: pg::password(&url), run };
        let made = rows.sql("CREATE TABLE IF NOT EXISTS ouro_chaos_rows (run text, n bigint, at timestamptz DEFAULT now(), PRIMARY KEY (run, n))");
        if let Err(e) = made {
            eprintln!("no data check: cannot make the table on {app}'s DATABASE: {e}");
            return None;
        }
        Some(rows)
    }

    fn sql(&self, sql: &str) -> Result<String, String> {
        let mut command = Command::new(&self.psql);
        command.args([self.url.as_str(), "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        command.env("PGCONNECT_TIMEOUT", "5").stdin(Stdio::null());
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password);
        }
        let out = command.output().map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("psql failed").to_string())
        }
    }

    /// Writes [`ROWS_BEFORE`] rows at once, then one every [`ROW_EVERY`] until `stop`; returns the
    /// numbers of the rows the database acknowledged.
    fn write_until(&self, stop: &AtomicBool) -> Vec<u64> {
        let mut acknowledged = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let sql = format!("INSERT INTO ouro_chaos_rows (run, n) VALUES ('{}', {n})", self.run);
            if self.sql(&sql).is_ok() {
                acknowledged.push(n);
            }
            if n > ROWS_BEFORE {
                thread::sleep(ROW_EVERY);
            }
        }
        acknowledged
    }

    /// Which acknowledged rows are there (asked for up to a minute, while the platform heals).
    fn check(&self, acknowledged: &[u64]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let query = format!("SELECT n FROM ouro_chaos_rows WHERE run = '{}'", self.run);
        let found = loop {
            match self.sql(&query) {
                Ok(out) => {
                    break Ok(out.lines().filter_map(|l| l.trim().parse::<u64>().ok()).collect::<BTreeSet<u64>>());
                }
                Err(e) if Instant::now() > deadline => break Err(e),
                Err(_) => thread::sleep(Duration::from_secs(1)),
            }
        };
        match found {
            Ok(found) => {
                let lost: Vec<u64> = acknowledged.iter().copied().filter(|n| !found.contains(n)).collect();
                json!({"written": acknowledged.len(), "found": found.len(), "lost": lost})
            }
            Err(e) => json!({"written": acknowledged.len(), "found": null, "lost": acknowledged, "error": e}),
        }
    }
}

fn render(report: &Value, no_rows: bool) -> String {
    let mut out = format!(
        "=== Chaos on {}: {} s, a kill every {} s\n",
        report["app"].as_str().unwrap_or("?"),
        report["duration"],
        report["every"]
    );
    out.push_str(&format!("{:>7}  {:<7}  {:<28}  {:>10}  {:>6}\n", "at", "target", "killed", "healed in", "failed"));
    for kill in report["kills"].as_array().into_iter().flatten() {
        let killed = match (&kill["app"], &kill["dyno"], &kill["error"]) {
            (_, _, Value::String(why)) => format!("not killed: {why}"),
            (Value::String(app), Value::String(dyno), _) => format!("{app} {dyno}"),
            (_, Value::String(dyno), _) => dyno.clone(),
            _ => "?".to_string(),
        };
        let healed = kill["healed_after"].as_f64().map_or("not healed".to_string(), |s| format!("{s:.1} s"));
        out.push_str(&format!(
            "{:>6.1}s  {:<7}  {:<28}  {:>10}  {:>6}\n",
            kill["at"].as_f64().unwrap_or(0.0),
            kill["target"].as_str().unwrap_or("?"),
            killed,
            healed,
            kill["failed_requests"]
        ));
    }
    let (total, failed) =
        (report["requests"]["total"].as_u64().unwrap_or(0), report["requests"]["failed"].as_u64().unwrap_or(0));
    let share = if total == 0 { 0.0 } else { failed as f64 * 100.0 / total as f64 };
    out.push_str(&format!("Requests: {total}, failed {failed} ({share:.2}%)\n"));
    let rows = &report["rows"];
    if no_rows || rows.is_null() {
        out.push_str("Data: no check (the app has no PostgreSQL add-on as DATABASE, or psql is missing)\n");
    } else {
        let lost = rows["lost"].as_array().map_or(0, Vec::len);
        let verdict = if lost == 0 { "nothing lost".to_string() } else { format!("{lost} LOST") };
        out.push_str(&format!("Data: {} rows acknowledged, {} there: {verdict}\n", rows["written"], rows["found"]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_and_singular_names_accepted() {
        assert_eq!(parse_targets("dynos,router,api").unwrap(), ["dynos", "router", "api"]);
        assert_eq!(parse_targets("dyno, runner,runner").unwrap(), ["dynos", "runner"]);
        assert!(parse_targets("dynos,database").is_err());
        assert!(parse_targets(",").is_err());
    }

    #[test]
    fn each_once_target_gets_one_slot_and_dynos_the_rest() {
        for _ in 0..20 {
            let plan = schedule(12, &["router", "api", "runner"], true);
            assert_eq!(plan.len(), 12);
            for target in ["router", "api", "runner"] {
                assert_eq!(plan.iter().filter(|t| **t == Some(target)).count(), 1, "{plan:?}");
            }
            assert_eq!(plan.iter().filter(|t| **t == Some("dynos")).count(), 9, "{plan:?}");
        }
        let plan = schedule(3, &["api"], false);
        assert_eq!(plan.iter().flatten().collect::<Vec<_>>(), [&"api"]);
    }

    #[test]
    fn the_load_goes_to_the_router_s_port_on_loopback() {
        assert_eq!(host_and_port("http://shop.localhost:8080/"), Some(("shop.localhost".into(), 8080)));
        assert_eq!(host_and_port("http://shop.example.com/"), Some(("shop.example.com".into(), 80)));
        assert_eq!(host_and_port("https://x/"), None);
    }

    #[test]
    fn other_users_apps_exclude_mine_and_the_platform_s() {
        let apps = json!([
            {"name": "mine", "owner": {"email": "ada@example.com"}},
            {"name": "ouro-api", "owner": {"email": "admin@ouro.local"}},
            {"name": "pg-1", "owner": {"email": "postgresql@addons.ouro.local"}},
            {"name": "theirs", "owner": {"email": "bob@example.com"}},
        ]);
        assert_eq!(other_users_apps(&apps, "ada@example.com"), ["theirs"]);
    }

    #[test]
    fn the_report_says_what_was_killed_and_what_was_lost() {
        let report = json!({
            "app": "shop", "duration": 60, "every": 5,
            "kills": [
                {"at": 5.0, "target": "dynos", "app": "shop", "dyno": "web.2", "healed_after": 3.25, "failed_requests": 0, "error": null},
                {"at": 10.0, "target": "runner", "app": null, "dyno": "runner", "healed_after": null, "failed_requests": 2, "error": null},
            ],
            "requests": {"total": 1000, "failed": 2},
            "rows": {"written": 140, "found": 140, "lost": []},
        });
        let text = render(&report, false);
        assert!(text.contains("   5.0s  dynos    shop web.2"), "{text}");
        assert!(text.contains("3.2 s") || text.contains("3.3 s"), "{text}");
        assert!(text.contains("not healed"), "{text}");
        assert!(text.contains("Requests: 1000, failed 2 (0.20%)"), "{text}");
        assert!(text.ends_with("Data: 140 rows acknowledged, 140 there: nothing lost\n"), "{text}");
    }
}
