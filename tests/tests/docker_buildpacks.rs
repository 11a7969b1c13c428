//! The buildpacks (`buildpacks/`) run for real inside the build stack image, on the Docker Engine
//! (through bollard, as the platform does): each sample app under `tests/apps/` is built the way
//! the builder will build it (as the unprivileged `dyno` user, uid 1000, in `/app` owned by it:
//! detect in `buildpacks/ORDER`, compile with a cache dir and an ENV_DIR, release), and the slug it
//! leaves in `/app` is copied into a container of the RUN stack (no compilers there), started as
//! the `dyno` user with `PORT=5000` and fetched from inside that container. Needs a Docker Engine,
//! the stack images (built on first use, minutes) and network access to PyPI, crates.io and the
//! Debian mirror.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::{
    Config, CreateContainerOptions, DownloadFromContainerOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions, UploadToContainerOptions, WaitContainerOptions,
};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{HostConfig, Mount, MountTypeEnum};
use bollard::volume::CreateVolumeOptions;
use futures_util::StreamExt;
use ouro_tests::platform::sample_app;

/// Label of this test process's containers (removed by [`BuildBox`]'s Drop).
const LABEL: &str = "ouro.test";

/// What the builder prepares, as root: the app copied to /app (owned by the dyno user), a cache dir
/// /cache and an ENV_DIR /env holding config vars, both writable by the dyno user. Two of them
/// would break a buildpack that exported ENV_DIR blindly or sourced it: LD_PRELOAD (every later
/// command would complain on stderr, which is in the log) and a value with a command substitution
/// (it would create /tmp/sourced). The arguments (`NAME=value`) are more config vars.
const PREPARE: &str = r#"
set -eu
find /app -mindepth 1 -maxdepth 1 -exec rm -rf {} +
cp -a /src/. /app/ && chown -R 1000:1000 /app
rm -rf /env /tmp/sourced && mkdir -p /env /cache && printf 'bonjour' > /env/GREETING
printf '/nonexistent/preload.so' > /env/LD_PRELOAD
printf '$(touch /tmp/sourced)' > /env/TRICKY
printf 'x' > '/env/not a name'
for var in "$@"; do printf '%s' "${var#*=}" > "/env/${var%%=*}"; done
chown -R 1000:1000 /env && chown 1000:1000 /cache
"#;

/// What the builder runs, as the dyno user: detect in order, compile, release.
const BUILD: &str = r#"
set -u
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

/// A build stack container with the buildpacks at /buildpacks and one app at /src, plus the run
/// stack containers its slugs were started in ("dynos"); all removed on drop.
struct BuildBox {
    runtime: tokio::runtime::Runtime,
    docker: Docker,
    id: String,
    run_image: String,
    dynos: RefCell<Vec<String>>,
    volumes: RefCell<Vec<String>>,
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
        let started = Instant::now();
        let build_image =
            runtime.block_on(ouro_dyno_runner::stack::ensure_build_stack_image(&docker)).expect("build stack image");
        let run_image = runtime.block_on(ouro_dyno_runner::stack::ensure_stack_image(&docker)).expect("stack image");
        println!("stacks: build {build_image}, run {run_image} ({:.1}s)", started.elapsed().as_secs_f64());
        let id = runtime.block_on(start_container(&docker, &build_image, "root"));
        let b = BuildBox {
            runtime,
            docker,
            id,
            run_image,
            dynos: RefCell::new(Vec::new()),
            volumes: RefCell::new(Vec::new()),
        };
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

    /// Runs `script` with bash as `user` in the build container, with `env` (`K=V`), and waits for it.
    fn exec(&self, user: &str, env: &[&str], script: &str) -> Run {
        self.exec_in(&self.id, user, env, script, &[])
    }

    /// Runs `script` with bash as `user` in container `id`, with `env` and the arguments `args`.
    fn exec_in(&self, id: &str, user: &str, env: &[&str], script: &str, args: &[&str]) -> Run {
        let started = Instant::now();
        let (output, code) = self.runtime.block_on(async {
            let mut cmd = vec!["bash", "-c", script, "bash"];
            cmd.extend_from_slice(args);
            let options = CreateExecOptions {
                cmd: Some(cmd),
                env: Some(env.to_vec()),
                user: Some(user),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
            let exec = self.docker.create_exec(id, options).await.expect("create exec").id;
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

    /// Builds /src into /app as the builder will: prepared as root, built as the dyno user.
    fn build(&self) -> Run {
        self.build_with(&[])
    }

    /// [`BuildBox::build`] with more config vars (`NAME=value`) in ENV_DIR.
    fn build_with(&self, config_vars: &[&str]) -> Run {
        let prepare = self.exec_in(&self.id, "root", &[], PREPARE, config_vars);
        assert_eq!(prepare.code, 0, "preparing the build failed:\n{}", prepare.output);
        let run = self.exec_in(&self.id, "dyno", &[], BUILD, &[]);
        println!("--- build ({:.1}s, exit {}) ---\n{}", run.took.as_secs_f64(), run.code, run.output);
        run
    }

    /// A container of the run stack with the slug (the build's /app) at /app, as a dyno has it.
    fn start_dyno(&self) -> String {
        let id = self.runtime.block_on(start_container(&self.docker, &self.run_image, "dyno"));
        self.dynos.borrow_mut().push(id.clone());
        self.upload_slug(&id);
        id
    }

    /// Copies the slug (the build's /app, a tar) to /app of container `id`, started or not.
    fn upload_slug(&self, id: &str) {
        let slug = self.runtime.block_on(async {
            let options = DownloadFromContainerOptions { path: "/app" };
            let mut tar = Vec::new();
            let mut chunks = self.docker.download_from_container(&self.id, Some(options));
            while let Some(chunk) = chunks.next().await {
                tar.extend_from_slice(&chunk.expect("download the slug"));
            }
            tar
        });
        let options = UploadToContainerOptions { path: "/".to_string(), ..Default::default() };
        self.runtime
            .block_on(self.docker.upload_to_container(id, Some(options), slug.into()))
            .expect("upload the slug to the dyno");
    }

    /// A new Docker volume whose root the dyno user owns, as the dyno runner makes them (a short
    /// root container chowns it); removed on drop.
    fn volume(&self, name: &str) -> String {
        let name = format!("docker_buildpacks-{}-{name}", std::process::id());
        self.runtime.block_on(async {
            let options = CreateVolumeOptions { name: name.clone(), labels: test_labels(), ..Default::default() };
            self.docker.create_volume(options).await.expect("create volume");
            self.volumes.borrow_mut().push(name.clone());
            let config = Config {
                image: Some(self.run_image.clone()),
                cmd: Some(vec!["chown".to_string(), "1000:1000".to_string(), "/volume".to_string()]),
                user: Some("root".to_string()),
                labels: Some(test_labels()),
                host_config: Some(HostConfig {
                    mounts: Some(vec![volume_mount(&name, "/volume")]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let id = self
                .docker
                .create_container(None::<CreateContainerOptions<String>>, config)
                .await
                .expect("create container")
                .id;
            self.dynos.borrow_mut().push(id.clone());
            self.docker.start_container::<String>(&id, None).await.expect("start container");
            let mut waits = self.docker.wait_container(&id, None::<WaitContainerOptions<String>>);
            let exit = tokio::time::timeout(Duration::from_secs(60), waits.next()).await.expect("chown within 60 s");
            assert!(matches!(exit, Some(Ok(ref e)) if e.status_code == 0), "chown of the volume failed: {exit:?}");
        });
        name
    }

    /// Starts `command` as a dyno runs a process (run stack, dyno user, `.profile.d` sourced, then
    /// `exec bash -c command`, under an init, no capabilities) with the slug at /app, `env` and
    /// `mounts` (volume, path).
    fn start_process(&self, command: &str, env: &[&str], mounts: &[(&str, &str)]) -> String {
        let script = r#"for f in /app/.profile.d/*.sh; do if [ -r "$f" ]; then . "$f"; fi; done; unset f; exec /bin/bash -c "$1""#;
        let mut env: Vec<String> = env.iter().map(|e| e.to_string()).collect();
        env.extend(["HOME=/app".to_string(), "PATH=/app/bin:/usr/local/bin:/usr/bin:/bin".to_string()]);
        let config = Config {
            image: Some(self.run_image.clone()),
            cmd: Some(["/bin/bash", "-c", script, "dyno", command].map(String::from).to_vec()),
            env: Some(env),
            user: Some("dyno".to_string()),
            working_dir: Some("/app".to_string()),
            labels: Some(test_labels()),
            host_config: Some(HostConfig {
                init: Some(true),
                cap_drop: Some(vec!["ALL".to_string()]),
                security_opt: Some(vec!["no-new-privileges".to_string()]),
                mounts: Some(mounts.iter().map(|(volume, path)| volume_mount(volume, path)).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self
            .runtime
            .block_on(self.docker.create_container(None::<CreateContainerOptions<String>>, config))
            .expect("create container")
            .id;
        self.dynos.borrow_mut().push(id.clone());
        self.upload_slug(&id);
        self.runtime.block_on(self.docker.start_container::<String>(&id, None)).expect("start container");
        id
    }

    /// Stops container `id` as the dyno runner does (SIGTERM, SIGKILL after 20 s) and returns its
    /// exit code and output.
    fn stop(&self, id: &str) -> (i64, String) {
        self.runtime.block_on(async {
            let options = StopContainerOptions { t: 20 };
            self.docker.stop_container(id, Some(options)).await.expect("stop container");
            let state = self.docker.inspect_container(id, None).await.expect("inspect container").state;
            let code = state.and_then(|s| s.exit_code).unwrap_or(-1);
            let options = LogsOptions::<String> { stdout: true, stderr: true, ..Default::default() };
            let mut logs = self.docker.logs(id, Some(options));
            let mut text = String::new();
            while let Some(Ok(chunk)) = logs.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
            (code, text)
        })
    }

    /// Starts `web` in a new dyno (run stack, dyno user, PORT=5000, a config var) and returns what
    /// `/` says.
    fn serve(&self, web: &str) -> String {
        let dyno = self.start_dyno();
        self.serve_in(&dyno, web)
    }

    fn serve_in(&self, dyno: &str, web: &str) -> String {
        let web_env = format!("WEB={web}");
        let run = self.exec_in(dyno, "dyno", &["PORT=5000", "GREETING=bonjour", "HOME=/app", &web_env], SERVE, &[]);
        assert_eq!(run.code, 0, "the built app does not answer:\n{}", run.output);
        run.output
    }
}

/// The labels of this test process's containers and volumes.
fn test_labels() -> HashMap<String, String> {
    HashMap::from([(LABEL.to_string(), format!("docker_buildpacks-{}", std::process::id()))])
}

fn volume_mount(volume: &str, path: &str) -> Mount {
    Mount {
        target: Some(path.to_string()),
        source: Some(volume.to_string()),
        typ: Some(MountTypeEnum::VOLUME),
        ..Default::default()
    }
}

/// Creates and starts a container of `image` that sleeps, labelled as this test's.
async fn start_container(docker: &Docker, image: &str, user: &str) -> String {
    let config = Config {
        image: Some(image.to_string()),
        cmd: Some(vec!["sleep".to_string(), "infinity".to_string()]),
        user: Some(user.to_string()),
        labels: Some(test_labels()),
        ..Default::default()
    };
    let id =
        docker.create_container(None::<CreateContainerOptions<String>>, config).await.expect("create container").id;
    docker.start_container::<String>(&id, None).await.expect("start container");
    id
}

impl Drop for BuildBox {
    fn drop(&mut self) {
        for id in self.dynos.borrow().iter().chain([&self.id]) {
            let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
            let _ = self.runtime.block_on(self.docker.remove_container(id, Some(options)));
        }
        // After the containers that use them.
        for name in self.volumes.borrow().iter() {
            let _ = self.runtime.block_on(self.docker.remove_volume(name, None));
        }
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
    assert!(
        cold.output.contains("-----> Creating virtualenv\n       No virtualenv in the build cache yet"),
        "{}",
        cold.output
    );
    assert!(cold.output.contains("Successfully installed idna-3.10 six-1.17.0"), "{}", cold.output);
    assert!(cold.output.contains("pip: 0 from the build cache, 2 downloaded"), "{}", cold.output);
    assert!(cold.output.contains("Saved the virtualenv in the build cache"), "{}", cold.output);
    assert_eq!(release_yaml(&cold), "---\ndefault_process_types: {}\n");

    // Second build, same cache and requirements: the venv is copied back, pip does not run and
    // nothing is downloaded.
    let warm = b.build();
    assert_built(&warm, "Python");
    assert!(warm.output.contains("Using cached pip-"), "{}", warm.output);
    assert!(
        warm.output.contains("-----> Restoring the virtualenv from the build cache (requirements unchanged)"),
        "{}",
        warm.output
    );
    assert!(warm.output.contains("pip: 2 from the build cache, 0 downloaded"), "{}", warm.output);
    assert!(!warm.output.contains("Creating virtualenv"), "{}", warm.output);
    assert!(!warm.output.contains("Installing pip"), "{}", warm.output);
    assert!(!warm.output.contains("Download"), "{}", warm.output);
    println!("python build: cold {:.1}s, warm {:.1}s", cold.took.as_secs_f64(), warm.took.as_secs_f64());

    // The slug works: .profile.d puts the venv first on PATH, so `python` finds six and idna.
    let profile = b.exec("dyno", &[], "cat /app/.profile.d/python.sh");
    assert!(profile.output.contains("/app/.venv/bin"), "{}", profile.output);
    let page = b.serve("python web.py");
    assert_eq!(page.trim(), "hello from six 1.17.0 and idna xn--bcher-kva.example (bonjour)");

    // Changed requirements: the venv is built again (from the wheelhouse), without idna.
    let edit = b.exec("root", &[], "printf 'six==1.17.0\\n' > /src/requirements.txt");
    assert_eq!(edit.code, 0, "{}", edit.output);
    let changed = b.build();
    assert_built(&changed, "Python");
    assert!(changed.output.contains("-----> Creating virtualenv"), "{}", changed.output);
    assert!(changed.output.contains("(changed: requirements.txt)"), "{}", changed.output);
    assert!(changed.output.contains("pip: 1 from the build cache, 0 downloaded"), "{}", changed.output);
    // And that venv replaced the cached one: the next build restores it, still without idna.
    let again = b.build();
    assert_built(&again, "Python");
    assert!(again.output.contains("pip: 1 from the build cache, 0 downloaded (pip not run"), "{}", again.output);
    let imports =
        b.exec("dyno", &[], "cd /app && .venv/bin/python -c 'import six' && ! .venv/bin/python -c 'import idna'");
    assert_eq!(imports.code, 0, "idna is still in the venv:\n{}", imports.output);
}

#[test]
fn python_project_venv_is_rebuilt_when_its_code_changes() {
    // `pip install .` puts the app's own code in the venv: a warm build with the same code restores
    // the venv, a build with changed code (same pyproject.toml) installs it again.
    let b = BuildBox::new("python-requests");
    let project = r#"
set -e
rm -rf /src && mkdir /src && cd /src
printf '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n[project]\nname = "greeting"\nversion = "1.0"\n[tool.setuptools]\npy-modules = ["greeting"]\n' > pyproject.toml
echo 'WORD = "one"' > greeting.py
"#;
    let edit = b.exec("root", &[], project);
    assert_eq!(edit.code, 0, "{}", edit.output);
    let greeting = || b.exec("dyno", &[], "cd / && /app/.venv/bin/python -c 'import greeting; print(greeting.WORD)'");
    let cold = b.build();
    assert_built(&cold, "Python");
    assert!(cold.output.contains("-----> Installing the project with pip"), "{}", cold.output);
    assert_eq!(greeting().output.trim(), "one");

    let warm = b.build();
    assert_built(&warm, "Python");
    assert!(
        warm.output.contains("-----> Restoring the virtualenv from the build cache (project unchanged)"),
        "{}",
        warm.output
    );
    assert_eq!(greeting().output.trim(), "one");

    let edit = b.exec("root", &[], "echo 'WORD = \"two\"' > /src/greeting.py");
    assert_eq!(edit.code, 0, "{}", edit.output);
    let changed = b.build();
    assert_built(&changed, "Python");
    assert!(changed.output.contains("(changed: the app's files)"), "{}", changed.output);
    assert!(changed.output.contains("-----> Installing the project with pip"), "{}", changed.output);
    assert_eq!(greeting().output.trim(), "two");
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
fn node_app_with_vendored_node_modules_uses_them() {
    let b = BuildBox::new("node-nodeps");
    // The app now depends on a module it vendors (no registry is needed, nor npm).
    let edit = b.exec(
        "root",
        &[],
        r#"set -e
python3 -c 'import json; p = json.load(open("/src/package.json")); p["dependencies"] = {"shout": "1.0.0"}; json.dump(p, open("/src/package.json", "w"))'
mkdir -p /src/node_modules/shout
echo '{"name": "shout", "version": "1.0.0", "main": "index.js"}' > /src/node_modules/shout/package.json
echo 'module.exports = (s) => s.toUpperCase() + "!";' > /src/node_modules/shout/index.js
sed -i 's/res.end(`hello/res.end(require("shout")("vendored") + ` hello/' /src/index.js
"#,
    );
    assert_eq!(edit.code, 0, "{}", edit.output);
    let run = b.build();
    assert_built(&run, "Node.js");
    assert!(run.output.contains("Using the vendored node_modules (1 entries)"), "{}", run.output);
    let page = b.serve("node index.js");
    assert!(page.starts_with("VENDORED! hello from node v20."), "{page}");
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
fn build_stack_is_made_once_from_the_run_stack_and_reused() {
    use ouro_dyno_runner::stack::{BUILD_STACK_IMAGE_ENV, ensure_build_stack_image, ensure_stack_image};
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let docker = Docker::connect_with_local_defaults().expect("Docker Engine");
        let docker = docker.negotiate_version().await.expect("Docker Engine answers");
        // Two callers at once: one builds (if needed), the other waits for it.
        let (first, second) = tokio::join!(ensure_build_stack_image(&docker), ensure_build_stack_image(&docker));
        let tag = first.expect("build stack image");
        assert_eq!(second.expect("build stack image"), tag);
        let before = docker.inspect_image(&tag).await.expect("inspect the build stack");
        if std::env::var_os(BUILD_STACK_IMAGE_ENV).is_none() {
            assert!(tag.starts_with("ouro/stack-build:trixie-"), "{tag}");
            let run_stack = ensure_stack_image(&docker).await.expect("run stack");
            let config = before.config.clone().expect("image config");
            let labels = config.labels.unwrap_or_default();
            assert_eq!(labels.get("ouro.stack.kind").map(String::as_str), Some("build"), "{labels:?}");
            assert_eq!(labels.get("ouro.stack.base"), Some(&run_stack), "{labels:?}");
            assert_eq!(config.working_dir.as_deref(), Some("/app"));
            let env = config.env.unwrap_or_default();
            assert!(env.iter().any(|e| e == "LANG=C.UTF-8") && env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
        }
        // Again: cached, nothing rebuilt.
        let started = Instant::now();
        assert_eq!(ensure_build_stack_image(&docker).await.expect("cached build stack"), tag);
        assert!(started.elapsed() < Duration::from_secs(10), "cached lookup took {:?}", started.elapsed());
        let after = docker.inspect_image(&tag).await.expect("inspect the build stack");
        assert_eq!(after.id, before.id, "the build stack was rebuilt");
    });
}

#[test]
fn rust_app_builds_in_the_build_stack_reuses_its_cache_and_runs_on_the_run_stack() {
    let b = BuildBox::new("rust-hello");
    let cold = b.build();
    assert_built(&cold, "Rust");
    assert!(cold.output.contains("       rustc 1.85"), "{}", cold.output);
    assert!(cold.output.contains("-----> Building with cargo build --release --locked\n"), "{}", cold.output);
    // itoa comes from crates.io.
    assert!(cold.output.contains("       Downloaded itoa v1."), "{}", cold.output);
    assert!(cold.output.contains("Compiling itoa v1."), "{}", cold.output);
    assert!(cold.output.contains("       cargo: 2 crates compiled, 1 downloaded"), "{}", cold.output);
    assert!(cold.output.contains("       bin/rust-hello ("), "{}", cold.output);
    assert_eq!(release_yaml(&cold), "---\ndefault_process_types:\n  web: /app/bin/rust-hello\n");

    // Second build, same cache, with a config var that keeps cargo off the network (so it reaches
    // cargo, and nothing needs downloading): nothing is downloaded or compiled again.
    let warm = b.build_with(&["CARGO_NET_OFFLINE=true"]);
    assert_built(&warm, "Rust");
    assert!(warm.output.contains("       cargo: 0 crates compiled, 0 downloaded"), "{}", warm.output);
    assert!(!warm.output.contains("Compiling itoa") && !warm.output.contains("Download"), "{}", warm.output);
    assert_eq!(release_yaml(&warm), release_yaml(&cold));
    println!("rust build: cold {:.1}s, warm {:.1}s", cold.took.as_secs_f64(), warm.took.as_secs_f64());

    // The slug runs on the run stack, which has no toolchain: the binary needs only glibc & co.,
    // and the target dir (in the cache) is not in the slug.
    let dyno = b.start_dyno();
    let check = "ldd /app/bin/rust-hello; for t in cc cargo rustc; do command -v $t || echo no-$t; done; ls -A /app";
    let run = b.exec_in(&dyno, "dyno", &[], check, &[]);
    assert_eq!(run.code, 0, "{}", run.output);
    assert!(run.output.contains("libc.so.6 => "), "{}", run.output);
    assert!(!run.output.contains("not found"), "a library is missing on the run stack:\n{}", run.output);
    assert!(run.output.contains("no-cc\nno-cargo\nno-rustc\n"), "{}", run.output);
    assert!(!run.output.contains("target"), "{}", run.output);
    let page = b.serve_in(&dyno, "/app/bin/rust-hello");
    assert_eq!(page.trim(), "hello from rust (bonjour)");
}

#[test]
fn detection_follows_the_order_and_needs_a_match() {
    let b = BuildBox::new("static-site");
    // index.html, requirements.txt, package.json, Cargo.toml and a Procfile: Python comes first, and
    // so on.
    // Then python's release: a web default only with gunicorn and app.py or wsgi.py.
    let detect = r#"
d=$(mktemp -d); touch $d/index.html $d/requirements.txt $d/Procfile $d/package.json $d/Cargo.toml
while read -r bp; do if name=$(/buildpacks/$bp/bin/detect $d); then echo "$name"; break; fi; done < /buildpacks/ORDER
rm $d/requirements.txt; while read -r bp; do if name=$(/buildpacks/$bp/bin/detect $d); then echo "$name"; break; fi; done < /buildpacks/ORDER
rm $d/package.json; while read -r bp; do if name=$(/buildpacks/$bp/bin/detect $d); then echo "$name"; break; fi; done < /buildpacks/ORDER
rm $d/Cargo.toml; while read -r bp; do if name=$(/buildpacks/$bp/bin/detect $d); then echo "$name"; break; fi; done < /buildpacks/ORDER
rm $d/index.html; while read -r bp; do if name=$(/buildpacks/$bp/bin/detect $d); then echo "$name"; break; fi; done < /buildpacks/ORDER
rm $d/Procfile
/buildpacks/python/bin/release $d | tail -1
echo gunicorn==23.0.0 > $d/requirements.txt; touch $d/app.py; /buildpacks/python/bin/release $d | tail -1
touch $d/wsgi.py; /buildpacks/python/bin/release $d | tail -1
rm $d/*; for bp in $(cat /buildpacks/ORDER); do /buildpacks/$bp/bin/detect $d && echo "$bp matched an empty app"; done
echo end
"#;
    let run = b.exec("dyno", &[], detect);
    assert_eq!(
        run.output,
        "Python\nNode.js\nRust\nStatic\nProcfile\ndefault_process_types: {}\n  web: gunicorn app:app --bind 0.0.0.0:$PORT\n  web: gunicorn wsgi --bind 0.0.0.0:$PORT\nend\n"
    );
}

/// `redis-cli -p $PORT ARGS...` from the slug, in a dyno of it, bounded by 10 s; its password is
/// REDISCLI_AUTH (the exec's environment), so it is on no command line.
const REDIS_CLI: &str = r#"
for f in /app/.profile.d/*.sh; do . "$f"; done
exec timeout 10 redis-cli -p "$PORT" "$@"
"#;

/// Waits until the Redis server of this dyno answers PING (with REDISCLI_AUTH), for 30 s at most.
const REDIS_READY: &str = r#"
for f in /app/.profile.d/*.sh; do . "$f"; done
for i in $(seq 1 150); do
  [ "$(timeout 5 redis-cli -p "$PORT" PING 2>&1)" = PONG ] && exit 0
  sleep 0.2
done
echo "redis-server does not answer PING on port $PORT within 30 s"
exit 1
"#;

/// The `redis-server` buildpack (named only, like `postgresql-server`: the server half of a Redis
/// add-on) puts Debian's Redis in the slug. Run as a dyno (run stack, dyno user, a volume at
/// /data), it wants its password and keeps it out of `ps`, and a key it acknowledged survives a
/// SIGTERM and a new container on the same volume.
#[test]
fn redis_server_buildpack_wants_its_password_and_keeps_data_across_restarts() {
    let b = BuildBox::new("static-site");
    // An app of only `.ouro-redis`: no buildpack of ORDER takes it, the redis-server one does.
    let app = b.exec("root", &[], "rm -rf /src && mkdir /src && echo 'Redis, from Debian' > /src/.ouro-redis");
    assert_eq!(app.code, 0, "{}", app.output);
    let detect = r#"
for bp in $(cat /buildpacks/ORDER); do /buildpacks/$bp/bin/detect /src && echo "($bp took it)"; done
/buildpacks/redis-server/bin/detect /src
"#;
    assert_eq!(b.exec("dyno", &[], detect).output, "Redis server\n");
    // The app names it, as `ouro buildpacks:set redis-server` does: the build tries that one only.
    let named = b.exec("root", &[], "echo redis-server > /buildpacks/ORDER");
    assert_eq!(named.code, 0, "{}", named.output);

    let cold = b.build();
    assert_built(&cold, "Redis server");
    assert!(cold.output.contains("       Redis server v=8."), "{}", cold.output);
    assert_eq!(release_yaml(&cold), "---\ndefault_process_types:\n  server: redis-server-start\n");
    let warm = b.build();
    assert_built(&warm, "Redis server");
    assert!(!warm.output.contains("Downloading "), "the .debs come from the cache:\n{}", warm.output);
    println!("redis build: cold {:.1}s, warm {:.1}s", cold.took.as_secs_f64(), warm.took.as_secs_f64());

    // Quotes, spaces and a backslash: the start script must pass it to Redis as it is.
    let password = r#"s3cret "quoted" \ spaced"#;
    let config = format!("REDIS_PASSWORD={password}");
    let auth = format!("REDISCLI_AUTH={password}");
    let env = ["PORT=5000", config.as_str()];
    let volume = b.volume("redis");
    let mounts = [(volume.as_str(), "/data")];
    let cli = |dyno: &str, env: &[&str], args: &[&str]| b.exec_in(dyno, "dyno", env, REDIS_CLI, args).output;

    let server = b.start_process("redis-server-start", &env, &mounts);
    let ready = b.exec_in(&server, "dyno", &[&auth], REDIS_READY, &[]);
    assert_eq!(ready.code, 0, "{}\n--- server ---\n{}", ready.output, b.stop(&server).1);
    assert_eq!(cli(&server, &[&auth], &["SET", "k", "v"]), "OK\n");
    let wrong = cli(&server, &["REDISCLI_AUTH=wrong"], &["SET", "k", "x"]);
    assert!(wrong.contains("WRONGPASS") && !wrong.lines().any(|l| l == "OK"), "{wrong}");
    let none = cli(&server, &[], &["GET", "k"]);
    assert!(none.contains("NOAUTH") && !none.lines().any(|l| l == "v"), "{none}");
    // The wrapper exec'd the server (so SIGTERM reaches it), whose command line has no password.
    let ps = b.exec_in(&server, "dyno", &[], "ps -eo args", &[]).output;
    assert!(ps.contains("/app/.redis/usr/bin/redis-server *:5000"), "{ps}");
    assert!(!ps.contains("s3cret") && !ps.lines().any(|l| l.starts_with("/bin/bash")), "{ps}");
    // Without a password it refuses to start.
    let bare = b.exec_in(&server, "dyno", &[], "unset REDIS_PASSWORD; redis-server-start", &[]);
    assert!(bare.code != 0 && bare.output.contains("set REDIS_PASSWORD"), "{}", bare.output);

    let (code, log) = b.stop(&server);
    println!("--- first server ---\n{log}");
    assert_eq!(code, 0, "redis-server did not shut down cleanly:\n{log}");
    assert!(log.contains("Received SIGTERM") && log.contains("DB saved on disk"), "{log}");
    assert!(!log.contains("s3cret"), "{log}");

    let again = b.start_process("redis-server-start", &env, &mounts);
    let ready = b.exec_in(&again, "dyno", &[&auth], REDIS_READY, &[]);
    assert_eq!(ready.code, 0, "{}\n--- server ---\n{}", ready.output, b.stop(&again).1);
    assert_eq!(cli(&again, &[&auth], &["GET", "k"]), "v\n");
    let files = b.exec_in(&again, "dyno", &[], "ls /data/redis /data/redis/appendonlydir", &[]).output;
    assert!(files.contains("dump.rdb") && files.contains("appendonly.aof.manifest"), "{files}");
}
