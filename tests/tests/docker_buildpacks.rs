//! The buildpacks (`buildpacks/`) run for real inside the stack image, on the Docker Engine (through
//! bollard, as the platform does): each sample app under `tests/apps/` is built the way the
//! builder will build it (detect in `buildpacks/ORDER`, compile with a cache dir and an ENV_DIR,
//! release), and the slug it leaves in `/app` is started with `PORT=5000` and fetched from inside
//! the container. Needs a Docker Engine and the stack image (built on first use, minutes) and
//! network access to PyPI and the Debian mirror.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::{Config, CreateContainerOptions, RemoveContainerOptions, UploadToContainerOptions};
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use ouro_tests::platform::sample_app;

/// Label of this test process's containers (removed by [`BuildBox`]'s Drop).
const LABEL: &str = "ouro.test";

/// What the builder does, in bash: copy the app to /app, detect in order, compile with /cache and
/// an ENV_DIR holding config vars, release. Two of them would break a buildpack that exported
/// ENV_DIR blindly or sourced it: LD_PRELOAD (every later command would complain on stderr, which
/// is in the log) and a value with a command substitution (it would create /tmp/sourced).
const BUILD: &str = r#"
set -u
rm -rf /app && mkdir -p /app && cp -a /src/. /app/
rm -rf /env && mkdir -p /env /cache && printf 'bonjour' > /env/GREETING
printf '/nonexistent/preload.so' > /env/LD_PRELOAD
printf '$(touch /tmp/sourced)' > /env/TRICKY
printf 'x' > '/env/not a name'
cd /app
found=
while read -r bp; do
  [ -n "$bp" ] || continue
  if name=$(/buildpacks/$bp/bin/detect /app); then found=$bp; break; fi
done < /buildpacks/ORDER
if [ -z "$found" ]; then echo " !     No buildpack applies to this app."; exit 1; fi
echo "-----> $name app detected"
/buildpacks/$found/bin/compile /app /cache /env 2>&1
status=$?
if [ $status -ne 0 ]; then echo " !     Push rejected, failed to compile $name app."; exit $status; fi
if [ -e /tmp/sourced ]; then echo " !     ENV_DIR was sourced"; exit 1; fi
echo "=== release"
/buildpacks/$found/bin/release /app
"#;

/// Starts `$WEB` from /app as a dyno would (sources .profile.d, PORT=5000), then fetches `/`.
const SERVE: &str = r#"
cd /app
setsid bash -c 'for f in /app/.profile.d/*.sh; do [ -f "$f" ] && . "$f"; done; exec '"$WEB" >/tmp/web.log 2>&1 < /dev/null &
for i in $(seq 1 150); do
  if out=$(curl -fsS -m 5 http://127.0.0.1:5000/ 2>/dev/null); then echo "$out"; exit 0; fi
  sleep 0.2
done
echo "no answer on port 5000 within 30 s; the process's output:"
cat /tmp/web.log
exit 1
"#;

/// A stack container with the buildpacks at /buildpacks and one app at /src; removed on drop.
struct BuildBox {
    runtime: tokio::runtime::Runtime,
    docker: Docker,
    id: String,
}

/// The output (stdout and stderr, in order) and exit code of one exec.
struct Run {
    output: String,
    code: i64,
    took: Duration,
}

impl BuildBox {
    fn new(app: &str) -> BuildBox {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let docker = runtime.block_on(async {
            let docker = Docker::connect_with_local_defaults().expect("Docker Engine");
            docker.negotiate_version().await.expect("Docker Engine answers")
        });
        let image = runtime.block_on(ouro_dyno_runner::stack::ensure_stack_image(&docker)).expect("stack image");
        let labels = HashMap::from([(LABEL.to_string(), format!("docker_buildpacks-{}", std::process::id()))]);
        let config = Config {
            image: Some(image),
            cmd: Some(vec!["sleep".to_string(), "infinity".to_string()]),
            user: Some("root".to_string()),
            labels: Some(labels),
            ..Default::default()
        };
        let id = runtime
            .block_on(docker.create_container(None::<CreateContainerOptions<String>>, config))
            .expect("create container")
            .id;
        let b = BuildBox { runtime, docker, id };
        b.runtime.block_on(b.docker.start_container::<String>(&b.id, None)).expect("start container");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf();
        b.upload(&root.join("buildpacks"), "buildpacks");
        b.upload(&sample_app(app), "src");
        b
    }

    /// Uploads `dir` as `/<name>` (a tar.gz made by the `tar` command).
    fn upload(&self, dir: &Path, name: &str) {
        let out = Command::new("tar")
            .args(["czf", "-", "--owner=0", "--group=0", "-C"])
            .arg(dir)
            .arg(format!("--transform=s,^\\.,{name},"))
            .arg(".")
            .output()
            .expect("tar runs");
        assert!(out.status.success(), "tar failed: {}", String::from_utf8_lossy(&out.stderr));
        let options = UploadToContainerOptions { path: "/".to_string(), ..Default::default() };
        self.runtime
            .block_on(self.docker.upload_to_container(&self.id, Some(options), out.stdout.into()))
            .expect("upload to container");
    }

    /// Runs `script` with bash as `user`, with `env` (`K=V`), and waits for it.
    fn exec(&self, user: &str, env: &[&str], script: &str) -> Run {
        let started = Instant::now();
        let (output, code) = self.runtime.block_on(async {
            let options = CreateExecOptions {
                cmd: Some(vec!["bash", "-c", script]),
                env: Some(env.to_vec()),
                user: Some(user),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
            let exec = self.docker.create_exec(&self.id, options).await.expect("create exec").id;
            let mut text = String::new();
            if let StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&exec, None).await.expect("start exec")
            {
                while let Some(chunk) = output.next().await {
                    match chunk {
                        Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                        Err(e) => panic!("exec output: {e}"),
                    }
                }
            }
            let code = self.docker.inspect_exec(&exec).await.expect("inspect exec").exit_code.unwrap_or(-1);
            (text, code)
        });
        Run { output, code, took: started.elapsed() }
    }

    /// Builds /src into /app as the builder will.
    fn build(&self) -> Run {
        let run = self.exec("root", &[], BUILD);
        println!("--- build ({:.1}s, exit {}) ---\n{}", run.took.as_secs_f64(), run.code, run.output);
        run
    }

    /// Starts `web` as the dyno user with PORT=5000 and a config var, and returns what `/` says.
    fn serve(&self, web: &str) -> String {
        let web_env = format!("WEB={web}");
        let run = self.exec("dyno", &["PORT=5000", "GREETING=bonjour", "HOME=/app", &web_env], SERVE);
        assert_eq!(run.code, 0, "the built app does not answer:\n{}", run.output);
        run.output
    }
}

impl Drop for BuildBox {
    fn drop(&mut self) {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        let _ = self.runtime.block_on(self.docker.remove_container(&self.id, Some(options)));
    }
}

/// Asserts a successful build that detected `name` and shows Heroku-style steps.
fn assert_built(run: &Run, name: &str) {
    assert_eq!(run.code, 0, "build failed:\n{}", run.output);
    assert!(run.output.starts_with(&format!("-----> {name} app detected\n")), "{}", run.output);
    let steps = run.output.lines().filter(|l| l.starts_with("-----> ")).count();
    assert!(steps >= 2, "expected Heroku-style steps:\n{}", run.output);
    for line in run.output.lines().take_while(|l| *l != "=== release") {
        assert!(
            line.starts_with("-----> ") || line.starts_with("       ") || line.starts_with(" !     "),
            "a build log line not in Heroku's style: {line:?}\n{}",
            run.output
        );
    }
}

/// The release YAML printed after `=== release`.
fn release_yaml(run: &Run) -> &str {
    run.output.split_once("=== release\n").map(|(_, yaml)| yaml).unwrap_or_default()
}

#[test]
fn python_requests_builds_with_pip_uses_its_cache_and_serves() {
    let b = BuildBox::new("python-requests");
    let cold = b.build();
    assert_built(&cold, "Python");
    assert!(cold.output.contains("-----> Creating virtualenv"), "{}", cold.output);
    assert!(cold.output.contains("Successfully installed idna-3.10 six-1.17.0"), "{}", cold.output);
    assert!(cold.output.contains("pip: 0 from the build cache, 2 downloaded"), "{}", cold.output);
    assert_eq!(release_yaml(&cold), "---\ndefault_process_types: {}\n");

    // Second build, same cache: nothing is downloaded.
    let warm = b.build();
    assert_built(&warm, "Python");
    assert!(warm.output.contains("Using cached pip-"), "{}", warm.output);
    assert!(warm.output.contains("pip: 2 from the build cache, 0 downloaded"), "{}", warm.output);
    assert!(!warm.output.contains("Downloading "), "{}", warm.output);
    println!("python build: cold {:.1}s, warm {:.1}s", cold.took.as_secs_f64(), warm.took.as_secs_f64());

    // The slug works: .profile.d puts the venv first on PATH, so `python` finds six and idna.
    let profile = b.exec("root", &[], "cat /app/.profile.d/python.sh");
    assert!(profile.output.contains("/app/.venv/bin"), "{}", profile.output);
    let page = b.serve("python web.py");
    assert_eq!(page.trim(), "hello from six 1.17.0 and idna xn--bcher-kva.example (bonjour)");
}

#[test]
fn python_missing_package_fails_with_a_clear_error() {
    let b = BuildBox::new("python-broken");
    let run = b.build();
    assert_ne!(run.code, 0, "{}", run.output);
    assert!(run.output.starts_with("-----> Python app detected\n"), "{}", run.output);
    let errors: Vec<&str> = run.output.lines().filter(|l| l.starts_with(" !     ")).collect();
    assert!(errors.iter().any(|l| l.contains("failed to install the requirements with pip")), "{}", run.output);
    assert!(
        errors.iter().any(|l| l.contains("this-package-does-not-exist-ouro-4242")),
        "the error names the package:\n{}",
        run.output
    );
    assert!(!run.output.contains("=== release"), "{}", run.output);
}

#[test]
fn static_site_is_detected_and_served() {
    let b = BuildBox::new("static-site");
    let run = b.build();
    assert_built(&run, "Static");
    let web = "python3 -m http.server $PORT --bind 0.0.0.0 --directory /app";
    assert_eq!(release_yaml(&run), format!("---\ndefault_process_types:\n  web: {web}\n"));
    let page = b.serve(web);
    assert!(page.contains("<h1>Hello from a static site on Ouro</h1>"), "{page}");
}

#[test]
fn procfile_app_builds_nothing_and_its_shell_loop_serves() {
    let b = BuildBox::new("procfile-shell");
    let run = b.build();
    assert_built(&run, "Procfile");
    assert!(run.output.contains("-----> Procfile app detected"), "{}", run.output);
    assert_eq!(release_yaml(&run), "---\ndefault_process_types: {}\n");
    // The Procfile's web command.
    let page = b.serve("bash serve.sh");
    assert_eq!(page.trim(), "hello from a shell loop, turn 1");
}

#[test]
fn node_app_without_dependencies_gets_node_from_debian_and_serves() {
    let b = BuildBox::new("node-nodeps");
    let cold = b.build();
    assert_built(&cold, "Node.js");
    assert!(cold.output.contains("       node v20."), "{}", cold.output);
    assert!(cold.output.contains("package.json has no dependencies"), "{}", cold.output);
    assert_eq!(release_yaml(&cold), "---\ndefault_process_types:\n  web: node index.js\n");
    let warm = b.build();
    assert_built(&warm, "Node.js");
    assert!(!warm.output.contains("Downloading "), "the .debs come from the cache:\n{}", warm.output);
    println!("node build: cold {:.1}s, warm {:.1}s", cold.took.as_secs_f64(), warm.took.as_secs_f64());
    let page = b.serve("node index.js");
    assert!(page.starts_with("hello from node v20.") && page.trim_end().ends_with("(bonjour)"), "{page}");
}

#[test]
fn node_app_with_dependencies_and_no_node_modules_fails_clearly() {
    let b = BuildBox::new("node-nodeps");
    // The same app, now declaring a dependency it does not vendor.
    let edit = b.exec(
        "root",
        &[],
        r#"python3 -c 'import json; p = json.load(open("/src/package.json")); p["dependencies"] = {"left-pad": "1.3.0"}; json.dump(p, open("/src/package.json", "w"))'"#,
    );
    assert_eq!(edit.code, 0, "{}", edit.output);
    let run = b.build();
    assert_ne!(run.code, 0, "{}", run.output);
    assert!(
        run.output.contains(" !     package.json has 1 dependencies but there is no node_modules"),
        "{}",
        run.output
    );
    assert!(run.output.contains("commit node_modules"), "{}", run.output);
}

#[test]
fn go_app_builds_with_debian_go_and_serves() {
    let b = BuildBox::new("go-hello");
    let cold = b.build();
    assert_built(&cold, "Go");
    assert!(cold.output.contains("       go version go1.24"), "{}", cold.output);
    assert!(cold.output.contains("       bin/go-hello"), "{}", cold.output);
    assert_eq!(release_yaml(&cold), "---\ndefault_process_types:\n  web: /app/bin/go-hello\n");
    let warm = b.build();
    assert_built(&warm, "Go");
    assert!(!warm.output.contains("Downloading "), "the toolchain comes from the cache:\n{}", warm.output);
    println!("go build: cold {:.1}s, warm {:.1}s", cold.took.as_secs_f64(), warm.took.as_secs_f64());
    let page = b.serve("/app/bin/go-hello");
    assert!(page.starts_with("hello from go1.24"), "{page}");
}

#[test]
fn detection_follows_the_order_and_needs_a_match() {
    let b = BuildBox::new("static-site");
    // index.html, requirements.txt, package.json and a Procfile: Python comes first, and so on.
    // Then python's release: a web default only with gunicorn and app.py or wsgi.py.
    let detect = r#"
d=$(mktemp -d); touch $d/index.html $d/requirements.txt $d/Procfile $d/package.json
while read -r bp; do if name=$(/buildpacks/$bp/bin/detect $d); then echo "$name"; break; fi; done < /buildpacks/ORDER
rm $d/requirements.txt; while read -r bp; do if name=$(/buildpacks/$bp/bin/detect $d); then echo "$name"; break; fi; done < /buildpacks/ORDER
rm $d/package.json; while read -r bp; do if name=$(/buildpacks/$bp/bin/detect $d); then echo "$name"; break; fi; done < /buildpacks/ORDER
rm $d/index.html; while read -r bp; do if name=$(/buildpacks/$bp/bin/detect $d); then echo "$name"; break; fi; done < /buildpacks/ORDER
rm $d/Procfile
/buildpacks/python/bin/release $d | tail -1
echo gunicorn==23.0.0 > $d/requirements.txt; touch $d/app.py; /buildpacks/python/bin/release $d | tail -1
touch $d/wsgi.py; /buildpacks/python/bin/release $d | tail -1
rm $d/*; for bp in $(cat /buildpacks/ORDER); do /buildpacks/$bp/bin/detect $d && echo "$bp matched an empty app"; done
echo end
"#;
    let run = b.exec("root", &[], detect);
    assert_eq!(
        run.output,
        "Python\nNode.js\nStatic\nProcfile\ndefault_process_types: {}\n  web: gunicorn app:app --bind 0.0.0.0:$PORT\n  web: gunicorn wsgi --bind 0.0.0.0:$PORT\nend\n"
    );
}
