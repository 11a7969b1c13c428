//! Buildpacks, Heroku's classic API: found by name among those Ouro ships or fetched by URL,
//! then `bin/detect BUILD`, `bin/compile BUILD CACHE ENV_DIR`, `export` for the next one and
//! `bin/release BUILD`. They run with the build's own environment ([`Env`]), never the
//! builder's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::error::{Context as _, Failure, Result};
use crate::log::Log;
use crate::paths::Paths;
use crate::source::{self, Limits};
use crate::{api, process};

/// The environment buildpacks run with.
pub type Env = BTreeMap<String, String>;

/// Attempts at fetching a buildpack by URL; the pause after the n-th failure is n times
/// [`FETCH_PAUSE`].
const FETCH_ATTEMPTS: u32 = 3;
const FETCH_PAUSE: Duration = Duration::from_secs(2);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
const CLONE_TIMEOUT: Duration = Duration::from_secs(300);
const DETECT_TIMEOUT: Duration = Duration::from_secs(60);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(60);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(60);

/// The names in `<shipped>/ORDER` (one a line, `#` comments), in the order they are tried.
pub fn shipped_order(shipped: &Path) -> Result<Vec<String>> {
    let path = shipped.join("ORDER");
    let text = fs::read_to_string(&path).context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().filter(|line| !line.trim().is_empty() && !line.starts_with('#')).map(|l| l.trim().into()).collect())
}

/// The buildpack `spec`, ready to run: its directory. A shipped one by name (`python`,
/// `heroku/python`), or one fetched by URL (`index` tells it apart from the others):
/// a tarball (`.tgz`, `.tar.gz`; one top directory holding `bin/` is the buildpack) or a git
/// repository (`https://host/repo.git#ref`), each tried 3 times. Unknown names, other specs,
/// unreachable URLs and buildpacks without `bin/detect` and `bin/compile` fail the build.
pub fn fetch(spec: &str, index: usize, paths: &Paths, log: &Log) -> Result<PathBuf> {
    let (url, reference) = match locate(spec, &paths.shipped())? {
        Location::Shipped(path) => return Ok(path),
        Location::Url { url, reference } => (url, reference),
    };
    log.topic(&format!("Fetching buildpack {spec}"));
    let mut dest = paths.work.join(format!("buildpack-{index}"));
    let cannot_fetch = |e: String| {
        Failure::build(format!("Cannot fetch buildpack {spec} from {} (tried {FETCH_ATTEMPTS} times): {e}", host(&url)))
    };
    if url.ends_with(".tgz") || url.ends_with(".tar.gz") {
        fs::create_dir_all(&dest).context(|| format!("cannot create {}", dest.display()))?;
        let mut archive = OsString::from(&dest);
        archive.push(".tgz");
        let archive = PathBuf::from(archive);
        with_retries(log, FETCH_PAUSE, || download(&url, &archive)).map_err(cannot_fetch)?;
        let unpacked = File::open(&archive)
            .map_err(|e| e.to_string())
            .and_then(|file| source::unpack(file, &dest, Limits::NONE).map_err(|e| e.to_string()));
        unpacked.map_err(|e| Failure::build(format!("Cannot unpack buildpack {spec}: {e}")))?;
        let entries: Vec<PathBuf> = fs::read_dir(&dest)
            .context(|| format!("cannot list {}", dest.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect();
        if let [top] = entries.as_slice() {
            if top.join("bin").is_dir() {
                dest = top.clone();
            }
        }
    } else {
        with_retries(log, FETCH_PAUSE, || git_clone(&url, &reference, &dest)).map_err(cannot_fetch)?;
    }
    for script in ["bin/detect", "bin/compile"] {
        if !dest.join(script).is_file() {
            return Err(Failure::build(format!("Buildpack {spec} has no {script}.")));
        }
    }
    Ok(dest)
}

/// Runs `bin/detect BUILD`: the buildpack's name (the first line it prints, else its directory's
/// name) when it accepts the app, `None` when it exits non-zero. Bounded to 60 s.
pub fn detect(buildpack: &Path, app: &Path, env: &Env) -> Result<Option<String>> {
    let mut command = Command::new(buildpack.join("bin/detect"));
    command.arg(app).current_dir(app).env_clear().envs(env);
    let output = process::run(&mut command, DETECT_TIMEOUT).map_err(Failure::Builder)?;
    if !output.status.success() {
        return Ok(None);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(Some(stdout.trim().lines().next().map_or_else(|| dir_name(buildpack), str::to_string)))
}

/// What runs `bin/compile` (`$1`, with BUILD, CACHE and ENV_DIR as `$2`..`$4`): it takes the
/// app's build cache for itself first (`flock` on the CACHE directory itself, so that no file
/// of Ouro's appears in it; held by the compile and what it starts until they end), waiting,
/// with a line in the log, while another
/// build of the app holds it: two builds of one app at once (a build the API lost track of in
/// a handover, still running, and the one that replaced it) broke each other's files in the
/// shared cache (`tar: ./usr: Cannot mkdir`, in CI and in a benchmark run). Then it makes
/// stderr the same pipe as stdout and becomes bin/compile.
const COMPILE_SCRIPT: &str = r#"if command -v flock >/dev/null 2>&1; then
  exec 9<"$3"
  if ! flock -n 9; then
    echo "       Waiting for another build of this app, which uses its build cache..."
    flock 9
  fi
fi
exec "$@" 2>&1"#;

/// Runs `bin/compile BUILD CACHE ENV_DIR` in the app directory, its stdout and stderr (one
/// stream, in the order written) going to the log line by line; whether it exited 0. One
/// build of an app at a time uses its cache ([`COMPILE_SCRIPT`]). Not bounded: the API's build
/// timeout ends it.
pub fn compile(buildpack: &Path, paths: &Paths, env: &Env, log: &Log) -> Result<bool> {
    let mut command = Command::new("/bin/sh");
    command.args(["-c", COMPILE_SCRIPT, "compile"]);
    command.arg(buildpack.join("bin/compile")).arg(&paths.app).arg(&paths.cache).arg(paths.env_dir());
    command.current_dir(&paths.app).env_clear().envs(env);
    let shown = process::shown(&command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context(|| format!("cannot run `{shown}`"))?;
    if let Some(stdout) = child.stdout.take() {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).context(|| format!("cannot read the output of `{shown}`"))? > 0 {
            log.line(&String::from_utf8_lossy(&line));
            line.clear();
        }
    }
    Ok(child.wait().context(|| format!("cannot wait for `{shown}`"))?.success())
}

/// The environment after sourcing the buildpack's `export` script, if it has one, into `env`
/// (Heroku's buildpack chaining); `env` as it is when the script fails. Bounded to 60 s.
pub fn exported_env(buildpack: &Path, app: &Path, env: &Env) -> Result<Env> {
    let script = buildpack.join("export");
    if !script.is_file() {
        return Ok(env.clone());
    }
    let mut command = Command::new("bash");
    command.args(["-c", r#"set -a; . "$1" >/dev/null 2>&1; env -0"#, "export"]).arg(&script);
    command.current_dir(app).env_clear().envs(env);
    let output = process::run(&mut command, EXPORT_TIMEOUT).map_err(Failure::Builder)?;
    if !output.status.success() {
        return Ok(env.clone());
    }
    let pairs = output.stdout.split(|&b| b == 0).filter_map(|item| {
        let at = item.iter().position(|&b| b == b'=')?;
        Some((String::from_utf8_lossy(&item[..at]).into_owned(), String::from_utf8_lossy(&item[at + 1..]).into_owned()))
    });
    Ok(pairs.collect())
}

/// The `default_process_types` that `bin/release BUILD` prints (none without the script); a
/// failing script fails the build with its stderr. Bounded to 60 s.
pub fn default_process_types(buildpack: &Path, app: &Path, env: &Env) -> Result<BTreeMap<String, String>> {
    let release = buildpack.join("bin/release");
    if !release.is_file() {
        return Ok(BTreeMap::new());
    }
    let mut command = Command::new(&release);
    command.arg(app).current_dir(app).env_clear().envs(env);
    let output = process::run(&mut command, RELEASE_TIMEOUT).map_err(Failure::Builder)?;
    if !output.status.success() {
        let stderr: String = String::from_utf8_lossy(&output.stderr).trim().chars().take(200).collect();
        return Err(Failure::build(format!("bin/release of {} failed: {stderr}", dir_name(buildpack))));
    }
    Ok(parse_default_process_types(&String::from_utf8_lossy(&output.stdout)))
}

/// Where a buildpack comes from.
#[derive(Debug, PartialEq)]
enum Location {
    Shipped(PathBuf),
    /// `url#reference` (the reference may be empty).
    Url {
        url: String,
        reference: String,
    },
}

/// Resolves `spec`: a name (`[a-z0-9-]+`, or `heroku/` and one) must be shipped, anything
/// else must be an http(s) URL.
fn locate(spec: &str, shipped: &Path) -> Result<Location> {
    let name = if spec.starts_with("heroku/") { spec.rsplit('/').next().unwrap_or_default() } else { spec };
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        let path = shipped.join(name);
        if !path.is_dir() {
            let order = shipped_order(shipped)?.join(", ");
            return Err(Failure::build(format!("Unknown buildpack `{spec}`: use a URL or one of {order}.")));
        }
        return Ok(Location::Shipped(path));
    }
    if !(spec.starts_with("http://") || spec.starts_with("https://")) {
        return Err(Failure::build(format!("Buildpack `{spec}` is neither a shipped buildpack nor an http(s) URL.")));
    }
    let (url, reference) = spec.split_once('#').unwrap_or((spec, ""));
    Ok(Location::Url { url: url.to_string(), reference: reference.to_string() })
}

/// Downloads `url` (no credentials sent) into the file `dest`.
fn download(url: &str, dest: &Path) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = api::within(agent.get(url), DOWNLOAD_TIMEOUT).call().map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()));
    }
    let mut file = File::create(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    std::io::copy(&mut response.body_mut().as_reader(), &mut file).map_err(|e| e.to_string())?;
    Ok(())
}

/// `git clone --depth 1 [--branch reference] url dest` (what `dest` held is removed first),
/// bounded to 300 s; the error is git's last line.
fn git_clone(url: &str, reference: &str, dest: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(dest);
    let mut command = Command::new("git");
    command.args(["clone", "--quiet", "--depth", "1"]);
    if !reference.is_empty() {
        command.args(["--branch", reference]);
    }
    // Never a prompt for credentials: a private repository fails at once.
    command.arg(url).arg(dest).env("GIT_TERMINAL_PROMPT", "0");
    let output = process::run(&mut command, CLONE_TIMEOUT)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(stderr.trim().lines().last().unwrap_or("git clone failed").to_string());
    }
    Ok(())
}

/// Runs `fetch` up to [`FETCH_ATTEMPTS`] times, pausing `pause` times the attempt after each
/// failure (a host that fails once must not fail the build) and saying so in the log; the
/// last error when none succeeds.
fn with_retries<T>(log: &Log, pause: Duration, mut fetch: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let mut attempt = 1;
    loop {
        match fetch() {
            Ok(value) => return Ok(value),
            Err(e) if attempt == FETCH_ATTEMPTS => return Err(e),
            Err(e) => {
                log.info(&format!("Fetching failed ({e}); trying again"));
                thread::sleep(pause * attempt);
            }
        }
        attempt += 1;
    }
}

/// The host name of `url` (lower case, without user or port), or `url` when it has none.
fn host(url: &str) -> String {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() { url.to_string() } else { host.to_ascii_lowercase() }
}

fn dir_name(path: &Path) -> String {
    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `default_process_types` out of bin/release's YAML, the subset buildpacks print: the key on
/// a line of its own (or with `{}`, `~`, `null`), then indented `type: command` lines, a
/// command possibly quoted; an unindented line ends it.
fn parse_default_process_types(yaml: &str) -> BTreeMap<String, String> {
    let mut types = BTreeMap::new();
    let mut inside = false;
    for line in yaml.lines() {
        if let Some(rest) = line.strip_prefix("default_process_types:") {
            if matches!(rest.trim(), "" | "{}" | "~" | "null") {
                inside = true;
                continue;
            }
        }
        if !inside {
            continue;
        }
        match process_type_line(line) {
            Some((name, command)) => {
                types.insert(name.to_string(), command.to_string());
            }
            None if !line.trim().is_empty() && !line.starts_with(' ') => inside = false,
            None => {}
        }
    }
    types
}

/// `  name: command` (indented; the command trimmed and unquoted).
fn process_type_line(line: &str) -> Option<(&str, &str)> {
    let body = line.trim_start();
    if body.len() == line.len() {
        return None;
    }
    let (name, command) = body.split_once(':')?;
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || !name.chars().all(is_name_char) {
        return None;
    }
    let command = command.trim();
    let quoted = command.len() >= 2
        && (command.starts_with('"') && command.ends_with('"') || command.starts_with('\'') && command.ends_with('\''));
    Some((name, if quoted { &command[1..command.len() - 1] } else { command }))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::api::Api;
    use crate::test_api::{Reply, StandIn};

    fn shipped_dir() -> tempfile::TempDir {
        let shipped = tempfile::tempdir().unwrap();
        fs::write(shipped.path().join("ORDER"), "python\nnodejs\n# not shipped yet\n\n  static  \n").unwrap();
        for name in ["python", "nodejs", "static"] {
            fs::create_dir(shipped.path().join(name)).unwrap();
        }
        shipped
    }

    #[test]
    fn buildpacks_are_found_by_shipped_name_or_url() {
        let shipped = shipped_dir();
        let shipped = shipped.path();
        let location = |spec: &str| locate(spec, shipped);
        assert_eq!(location("python"), Ok(Location::Shipped(shipped.join("python"))));
        assert_eq!(location("heroku/python"), Ok(Location::Shipped(shipped.join("python"))));
        assert_eq!(
            location("https://github.com/heroku/heroku-buildpack-python.git#v1"),
            Ok(Location::Url {
                url: "https://github.com/heroku/heroku-buildpack-python.git".into(),
                reference: "v1".into()
            })
        );
        assert_eq!(
            location("http://example.com/bp.tgz"),
            Ok(Location::Url { url: "http://example.com/bp.tgz".into(), reference: String::new() })
        );
        assert_eq!(
            location("heroku/cobol"),
            Err(Failure::build("Unknown buildpack `heroku/cobol`: use a URL or one of python, nodejs, static."))
        );
        for spec in ["git@github.com:a/b.git", "ftp://example.com/bp.tgz", "Python", "heroku/", "HTTPS://x/y.git"] {
            let expect = format!("Buildpack `{spec}` is neither a shipped buildpack nor an http(s) URL.");
            assert_eq!(location(spec), Err(Failure::build(expect)));
        }
    }

    #[test]
    fn hosts_are_named_as_urlsplit_does() {
        assert_eq!(host("https://GitHub.com/heroku/x.git"), "github.com");
        assert_eq!(host("https://user:pw@example.com:8443/bp.tgz"), "example.com");
        assert_eq!(host("http://[::1]:7700/bp.tgz"), "::1");
        assert_eq!(host("https:///nohost"), "https:///nohost");
    }

    #[test]
    fn default_process_types_are_read_from_release_yaml() {
        let check = |yaml: &str, expect: &[(&str, &str)]| {
            let expect: BTreeMap<String, String> = expect.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(parse_default_process_types(yaml), expect, "{yaml}");
        };
        let yaml = "---\naddons: []\ndefault_process_types:\n  web: gunicorn app:app --bind 0.0.0.0:$PORT\n  \
                    worker: \"python worker.py --queue 'a'\"\n  clock: 'bin/clock'  \n\tlint: ruff\n  \
                    empty:\nconfig_vars:\n  FOO: bar\n";
        check(
            yaml,
            &[
                ("web", "gunicorn app:app --bind 0.0.0.0:$PORT"),
                ("worker", "python worker.py --queue 'a'"),
                ("clock", "bin/clock"),
                ("lint", "ruff"),
                ("empty", ""),
            ],
        );
        check("---\ndefault_process_types: {}\n", &[]);
        check("---\ndefault_process_types: ~\n", &[]);
        check("default_process_types: {web: x}\n  web: no\n", &[]);
        check("config_vars:\n  web: not a type\n", &[]);
        check(
            "default_process_types:\n  web: \"a\"\n\n  # comment\n  web.1: x\n  worker: w\n",
            &[("web", "a"), ("worker", "w")],
        );
        check("default_process_types:\n  web: '\n", &[("web", "'")]);
    }

    fn log_to(api: &StandIn) -> Log {
        Log::start(Api::new(&api.url, "b1", "secret"))
    }

    fn sent(api: &StandIn) -> String {
        api.requests()
            .iter()
            .filter(|r| r.path.ends_with("/output"))
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }

    /// A tar.gz of `files` (path, mode, text).
    fn tarball(files: &[(&str, u32, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (path, mode, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(*mode);
            builder.append_data(&mut header, path, text.as_bytes()).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn temp_paths(shipped: &tempfile::TempDir) -> (tempfile::TempDir, Paths) {
        let root = tempfile::tempdir().unwrap();
        let paths =
            Paths { app: root.path().join("app"), cache: root.path().join("cache"), work: root.path().join("work") };
        fs::create_dir_all(&paths.work).unwrap();
        std::os::unix::fs::symlink(shipped.path(), paths.shipped()).unwrap();
        (root, paths)
    }

    #[test]
    fn a_tarball_buildpack_is_downloaded_and_its_top_directory_unwrapped() {
        let good =
            tarball(&[("bp-main/bin/detect", 0o755, "#!/bin/sh\n"), ("bp-main/bin/compile", 0o755, "#!/bin/sh\n")]);
        let broken = tarball(&[("bin/detect", 0o755, "#!/bin/sh\n")]);
        let api = StandIn::start(move |request| match request.path.as_str() {
            "/good.tgz" => Reply::body(200, good.clone()),
            "/broken.tar.gz" => Reply::body(200, broken.clone()),
            _ => Reply::status(204),
        });
        let shipped = shipped_dir();
        let (_root, paths) = temp_paths(&shipped);
        let log = log_to(&api);
        let spec = format!("{}/good.tgz", api.url);
        let path = fetch(&spec, 0, &paths, &log).unwrap();
        assert_eq!(path, paths.work.join("buildpack-0/bp-main"));
        let mode = fs::metadata(path.join("bin/detect")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let spec = format!("{}/broken.tar.gz", api.url);
        assert_eq!(fetch(&spec, 1, &paths, &log), Err(Failure::build(format!("Buildpack {spec} has no bin/compile."))));
        log.close();
        assert!(sent(&api).starts_with(&format!("-----> Fetching buildpack {}/good.tgz\n", api.url)), "{}", sent(&api));
        let downloads = api.requests().into_iter().filter(|r| r.method == "GET").collect::<Vec<_>>();
        assert!(
            downloads.iter().all(|r| r.header("authorization").is_none()),
            "no credential leaves for a buildpack host"
        );
    }

    #[test]
    fn fetching_is_tried_three_times() {
        let api = StandIn::start(|_| Reply::status(204));
        let log = log_to(&api);
        let mut attempts = 0;
        let fetched = with_retries(&log, Duration::from_millis(1), || {
            attempts += 1;
            if attempts < 3 { Err(format!("refused {attempts}")) } else { Ok(attempts) }
        });
        assert_eq!(fetched, Ok(3));
        let failed: Result<(), String> = with_retries(&log, Duration::from_millis(1), || Err("down".to_string()));
        assert_eq!(failed, Err("down".to_string()));
        log.close();
        assert_eq!(
            sent(&api),
            "       Fetching failed (refused 1); trying again\n       Fetching failed (refused 2); trying again\n       \
             Fetching failed (down); trying again\n       Fetching failed (down); trying again\n"
        );
    }

    #[test]
    fn a_git_buildpack_is_cloned_at_its_reference() {
        let repo = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let status = Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"])
                .args(args)
                .current_dir(repo.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "git {args:?}");
        };
        git(&["init", "-q"]);
        fs::create_dir(repo.path().join("bin")).unwrap();
        fs::write(repo.path().join("bin/detect"), "v1").unwrap();
        git(&["add", "."]);
        git(&["commit", "-qm", "v1"]);
        git(&["tag", "v1"]);
        fs::write(repo.path().join("bin/detect"), "v2").unwrap();
        git(&["commit", "-qam", "v2"]);

        let dest = tempfile::tempdir().unwrap();
        let dest = dest.path().join("buildpack-0");
        let url = format!("file://{}", repo.path().display());
        git_clone(&url, "v1", &dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("bin/detect")).unwrap(), "v1");
        git_clone(&url, "", &dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("bin/detect")).unwrap(), "v2");
        let error = git_clone(&url, "v9", &dest).unwrap_err();
        assert!(error.contains("v9") && !error.contains('\n'), "{error}");
    }

    #[test]
    fn detect_release_and_export_run_with_the_build_env() {
        let buildpack = tempfile::tempdir().unwrap();
        let app = tempfile::tempdir().unwrap();
        let script = |name: &str, text: &str| {
            let path = buildpack.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        };
        script("bin/detect", "#!/bin/sh\n[ -f \"$1/app.py\" ] && echo \"Python $STACK\"\n");
        script(
            "bin/release",
            "#!/bin/sh\necho '---'\nprintf 'default_process_types:\\n  web: \"%s\"\\n' \"$GREETING\"\n",
        );
        script("export", "export GREETING=\"hello $STACK\"\nPATH=\"/opt/x/bin:$PATH\"\n");
        let env = Env::from([("PATH".into(), "/usr/bin:/bin".into()), ("STACK".into(), "debian-13".into())]);

        assert_eq!(detect(buildpack.path(), app.path(), &env), Ok(None));
        fs::write(app.path().join("app.py"), "").unwrap();
        assert_eq!(detect(buildpack.path(), app.path(), &env), Ok(Some("Python debian-13".into())));

        let exported = exported_env(buildpack.path(), app.path(), &env).unwrap();
        assert_eq!(exported["GREETING"], "hello debian-13");
        assert_eq!(exported["PATH"], "/opt/x/bin:/usr/bin:/bin");
        assert!(!exported.contains_key("OURO_BUILD_TOKEN"));
        let types = default_process_types(buildpack.path(), app.path(), &exported).unwrap();
        assert_eq!(types, BTreeMap::from([("web".to_string(), "hello debian-13".to_string())]));

        script("bin/release", "#!/bin/sh\necho 'no YAML for you' >&2\nexit 1\n");
        let name = dir_name(buildpack.path());
        assert_eq!(
            default_process_types(buildpack.path(), app.path(), &env),
            Err(Failure::build(format!("bin/release of {name} failed: no YAML for you")))
        );
    }

    /// Two builds of one app never use its cache at once: a compile waits, saying so, while
    /// another holds the cache's lock, and starts once it is let go.
    #[test]
    fn a_compile_waits_for_another_build_that_holds_the_cache() {
        let api = StandIn::start(|_| Reply::status(204));
        let buildpack = tempfile::tempdir().unwrap();
        let compile_script = buildpack.path().join("bin/compile");
        fs::create_dir_all(compile_script.parent().unwrap()).unwrap();
        fs::write(&compile_script, "#!/bin/sh\necho \"compiled at $(date +%s%N)\"\ntouch \"$2/used\"\n").unwrap();
        fs::set_permissions(&compile_script, fs::Permissions::from_mode(0o755)).unwrap();
        let root = tempfile::tempdir().unwrap();
        let paths =
            Paths { app: root.path().join("app"), cache: root.path().join("cache"), work: root.path().join("work") };
        fs::create_dir_all(&paths.app).unwrap();
        fs::create_dir_all(&paths.cache).unwrap();
        let env = Env::from([("PATH".into(), "/usr/bin:/bin".into())]);
        // Another build holds the cache for 1.5 s.
        let mut other = std::process::Command::new("flock").arg(&paths.cache).args(["sleep", "1.5"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let started = std::time::Instant::now();
        let log = log_to(&api);
        assert_eq!(compile(buildpack.path(), &paths, &env, &log), Ok(true));
        let waited = started.elapsed();
        other.wait().unwrap();
        log.close();
        assert!(waited >= std::time::Duration::from_millis(900), "compiled after {waited:?}, while the lock was held");
        let said = sent(&api);
        assert!(said.contains("Waiting for another build of this app"), "{said}");
        assert!(said.contains("compiled at"), "{said}");
        // The buildpack's file, and nothing of Ouro's: the cache is the buildpacks'.
        let files: Vec<_> = fs::read_dir(&paths.cache).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files, ["used"]);
        // Free: no wait, no line.
        let api = StandIn::start(|_| Reply::status(204));
        let log = log_to(&api);
        assert_eq!(compile(buildpack.path(), &paths, &env, &log), Ok(true));
        log.close();
        assert!(!sent(&api).contains("Waiting"), "{}", sent(&api));
    }
}
