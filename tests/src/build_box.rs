//! A build box for tests of the buildpacks: a build stack container with `buildpacks/` at
//! /buildpacks and one sample app at /src, built the way the builder builds (as the `dyno`
//! user in /app), plus run stack containers ("dynos") the slug is started in; all removed on
//! drop. Through bollard, as the platform talks to Docker.

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

use crate::platform::sample_app;

/// Label of this test process's containers (removed by [`BuildBox`]'s Drop).
pub const LABEL: &str = "ouro.test";

/// What the builder prepares, as root: the app copied to /app (owned by the dyno user), a cache dir
/// /cache and an ENV_DIR /env holding config vars, both writable by the dyno user. Two of them
/// would break a buildpack that exported ENV_DIR blindly or sourced it: LD_PRELOAD (every later
/// command would complain on stderr, which is in the log) and a value with a command substitution
/// (it would create /tmp/sourced). The arguments (`NAME=value`) are more config vars.
pub const PREPARE: &str = r#"
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
pub const BUILD: &str = r#"
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
pub const SERVE: &str = r#"
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
pub struct BuildBox {
    pub runtime: tokio::runtime::Runtime,
    pub docker: Docker,
    pub id: String,
    pub run_image: String,
    pub dynos: RefCell<Vec<String>>,
    pub volumes: RefCell<Vec<String>>,
}

/// The output (stdout and stderr, in order) and exit code of one exec.
pub struct Run {
    pub output: String,
    pub code: i64,
    pub took: Duration,
}

impl BuildBox {
    pub fn new(app: &str) -> BuildBox {
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
    pub fn upload(&self, dir: &Path, name: &str) {
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
    pub fn exec(&self, user: &str, env: &[&str], script: &str) -> Run {
        self.exec_in(&self.id, user, env, script, &[])
    }

    /// Runs `script` with bash as `user` in container `id`, with `env` and the arguments `args`.
    pub fn exec_in(&self, id: &str, user: &str, env: &[&str], script: &str, args: &[&str]) -> Run {
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
    pub fn build(&self) -> Run {
        self.build_with(&[])
    }

    /// [`BuildBox::build`] with more config vars (`NAME=value`) in ENV_DIR.
    pub fn build_with(&self, config_vars: &[&str]) -> Run {
        let prepare = self.exec_in(&self.id, "root", &[], PREPARE, config_vars);
        assert_eq!(prepare.code, 0, "preparing the build failed:\n{}", prepare.output);
        let run = self.exec_in(&self.id, "dyno", &[], BUILD, &[]);
        println!("--- build ({:.1}s, exit {}) ---\n{}", run.took.as_secs_f64(), run.code, run.output);
        run
    }

    /// A container of the run stack with the slug (the build's /app) at /app, as a dyno has it.
    pub fn start_dyno(&self) -> String {
        self.start_dyno_with(HostConfig::default())
    }

    /// [`BuildBox::start_dyno`] with a memory limit in bytes, as a dyno size sets one.
    pub fn start_dyno_with_memory(&self, bytes: i64) -> String {
        self.start_dyno_with(HostConfig { memory: Some(bytes), ..Default::default() })
    }

    fn start_dyno_with(&self, host_config: HostConfig) -> String {
        let id = self.runtime.block_on(start_container_with(&self.docker, &self.run_image, "dyno", host_config));
        self.dynos.borrow_mut().push(id.clone());
        self.upload_slug(&id);
        id
    }

    /// Copies the slug (the build's /app, a tar) to /app of container `id`, started or not.
    pub fn upload_slug(&self, id: &str) {
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
    pub fn volume(&self, name: &str) -> String {
        let name = format!("build_box-{}-{name}", std::process::id());
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
    pub fn start_process(&self, command: &str, env: &[&str], mounts: &[(&str, &str)]) -> String {
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
    pub fn stop(&self, id: &str) -> (i64, String) {
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

    /// The address of container `id` on Docker's default bridge, where the box's other
    /// containers reach it (a client dyno reaching a server dyno).
    pub fn address(&self, id: &str) -> String {
        let inspect = self.runtime.block_on(self.docker.inspect_container(id, None)).expect("inspect container");
        let networks = inspect.network_settings.and_then(|n| n.networks).unwrap_or_default();
        networks
            .get("bridge")
            .and_then(|endpoint| endpoint.ip_address.clone())
            .filter(|address| !address.is_empty())
            .unwrap_or_else(|| panic!("container {id} has no address on the default bridge: {networks:?}"))
    }

    /// Starts `web` in a new dyno (run stack, dyno user, PORT=5000, a config var) and returns what
    /// `/` says.
    pub fn serve(&self, web: &str) -> String {
        let dyno = self.start_dyno();
        self.serve_in(&dyno, web)
    }

    pub fn serve_in(&self, dyno: &str, web: &str) -> String {
        let web_env = format!("WEB={web}");
        let run = self.exec_in(dyno, "dyno", &["PORT=5000", "GREETING=bonjour", "HOME=/app", &web_env], SERVE, &[]);
        assert_eq!(run.code, 0, "the built app does not answer:\n{}", run.output);
        run.output
    }
}

/// The labels of this test process's containers and volumes.
pub fn test_labels() -> HashMap<String, String> {
    HashMap::from([(LABEL.to_string(), format!("build_box-{}", std::process::id()))])
}

pub fn volume_mount(volume: &str, path: &str) -> Mount {
    Mount {
        target: Some(path.to_string()),
        source: Some(volume.to_string()),
        typ: Some(MountTypeEnum::VOLUME),
        ..Default::default()
    }
}

/// Creates and starts a container of `image` that sleeps, labelled as this test's.
pub async fn start_container(docker: &Docker, image: &str, user: &str) -> String {
    start_container_with(docker, image, user, HostConfig::default()).await
}

/// [`start_container`] with `host_config` (limits).
pub async fn start_container_with(docker: &Docker, image: &str, user: &str, host_config: HostConfig) -> String {
    let config = Config {
        image: Some(image.to_string()),
        cmd: Some(vec!["sleep".to_string(), "infinity".to_string()]),
        user: Some(user.to_string()),
        labels: Some(test_labels()),
        host_config: Some(host_config),
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
pub fn assert_built(run: &Run, name: &str) {
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
pub fn release_yaml(run: &Run) -> &str {
    run.output.split_once("=== release\n").map(|(_, yaml)| yaml).unwrap_or_default()
}
