//! The buildpacks (`buildpacks/`) run for real inside the build stack image, on the Docker Engine
//! (through bollard, as the platform does): each sample app under `tests/apps/` is built the way
//! the builder will build it (as the unprivileged `dyno` user, uid 1000, in `/app` owned by it:
//! detect in `buildpacks/ORDER`, compile with a cache dir and an ENV_DIR, release), and the slug it
//! leaves in `/app` is copied into a container of the RUN stack (no compilers there), started as
//! the `dyno` user with `PORT=5000` and fetched from inside that container. Needs a Docker Engine,
//! the stack images (built on first use, minutes) and network access to PyPI, crates.io and the
//! Debian mirror.

use std::time::{Duration, Instant};

use ouro_tests::build_box::{BuildBox, assert_built, release_yaml};

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
        let docker = bollard::Docker::connect_with_local_defaults().expect("Docker Engine");
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
