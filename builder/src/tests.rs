//! Whole builds against a stand-in build API, in temporary directories, with real processes
//! (sh, bash, tar) and a trivial shell buildpack.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::test_api::{Reply, Request, StandIn};

#[test]
fn procfile_lines_name_process_types() {
    let check = |line: &str, expect: Option<&str>| assert_eq!(process_type(line), expect, "{line:?}");
    check("web: gunicorn app:app", Some("web"));
    check("  worker_2 : python w.py", Some("worker_2"));
    check("release-phase:x", Some("release-phase"));
    check("Web: x", None);
    check("# web: x", None);
    check("web x", None);
    check(": x", None);
    check("", None);
}

#[test]
fn a_procfile_declares_types_in_its_order() {
    let app = tempfile::tempdir().unwrap();
    assert_eq!(procfile_types(app.path()).unwrap(), Vec::<String>::new());
    fs::write(app.path().join("Procfile"), "web: a\r\n\n# comment\nworker: b\nclock:c\nweb: again\n").unwrap();
    assert_eq!(procfile_types(app.path()).unwrap(), ["web", "worker", "clock", "web"]);
}

/// A build dyno's directories under a temporary root, with the builder's own files in `app`
/// as its slug holds them: `bin/ouro-build` and `buildpacks/` (ORDER: `nothing`, `trivial`).
/// `trivial` detects `Trivial` when the app has a Procfile and its compile runs `compile`.
fn build_dyno(compile: &str) -> (tempfile::TempDir, Paths) {
    let root = tempfile::tempdir().unwrap();
    let paths =
        Paths { app: root.path().join("app"), cache: root.path().join("cache"), work: root.path().join("work") };
    let script = |path: &str, text: &str| {
        let path = paths.app.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    };
    script("bin/ouro-build", "the builder itself");
    script("buildpacks/ORDER", "# tried in this order\nnothing\ntrivial\n");
    script("buildpacks/nothing/bin/detect", "#!/bin/sh\nexit 1\n");
    script("buildpacks/nothing/bin/compile", "#!/bin/sh\nexit 1\n");
    script("buildpacks/trivial/bin/detect", "#!/bin/sh\n[ -f \"$1/Procfile\" ] && echo Trivial\n");
    script("buildpacks/trivial/bin/compile", compile);
    script(
        "buildpacks/trivial/bin/release",
        "#!/bin/sh\ncat <<'EOF'\n---\ndefault_process_types:\n  web: \"./serve --port $PORT\"\n  \
         console: ./console\naddons: []\nEOF\n",
    );
    script("buildpacks/trivial/export", "export BUILT_BY=trivial\n");
    fs::create_dir(&paths.cache).unwrap();
    (root, paths)
}

/// A tar.gz of `files` (path, text), as `git archive` would send them.
fn source(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        builder.append_data(&mut header, path, text.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A stand-in for build `b1`'s endpoints serving `settings` and `source`.
fn build_api(settings: serde_json::Value, source: Vec<u8>) -> StandIn {
    StandIn::start(move |request| match (request.method.as_str(), request.path.as_str()) {
        _ if request.header("authorization") != Some("Bearer build-token") => Reply::status(403),
        ("GET", "/build-api/b1/env") => Reply::body(200, settings.to_string()),
        ("GET", "/build-api/b1/source") => Reply::body(200, source.clone()),
        ("POST", "/build-api/b1/output" | "/build-api/b1/result") => Reply::status(204),
        ("PUT", "/build-api/b1/slug") => Reply::body(200, r#"{"checksum":"SHA256:x","size":1}"#),
        (_, path) => panic!("unexpected call {path}"),
    })
}

fn config(api: &StandIn) -> Config {
    Config {
        api_url: format!("{}/", api.url),
        build_id: "b1".into(),
        token: "build-token".into(),
        max_slug_bytes: 1 << 20,
    }
}

fn calls(api: &StandIn, path: &str) -> Vec<Request> {
    api.requests().into_iter().filter(|r| r.path == format!("/build-api/b1/{path}")).collect()
}

fn log_text(api: &StandIn) -> String {
    calls(api, "output").iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect()
}

fn result(api: &StandIn) -> serde_json::Value {
    let results = calls(api, "result");
    assert_eq!(results.len(), 1, "one result");
    serde_json::from_slice(&results[0].body).unwrap()
}

const COMPILE: &str = "#!/bin/sh\nset -e\necho \"-----> Installing\"\necho \"a warning\" >&2\n\
                       echo \"built with $(cat \"$3/GREETING\")\" > \"$1/compiled\"\ntouch \"$2/cached\"\n\
                       env > \"$1/.compile-env\"\necho done\n";

#[test]
fn a_build_turns_the_pushed_tree_into_a_slug_and_reports_it() {
    let (root, paths) = build_dyno(COMPILE);
    let settings = serde_json::json!({
        "app": "demo", "commit": "c0ffee", "stack": "debian-13", "buildpacks": [],
        "config": {"GREETING": "hello", "not-a-name": "x"},
    });
    let tree = source(&[
        ("Procfile", "web: ./serve\nworker: ./work\n"),
        ("hello.txt", "hi"),
        (".slugignore", "# not needed at run time\n*.log\n/secret\n"),
        ("debug.log", "x"),
        ("sub/trace.log", "x"),
        ("secret", "x"),
        ("sub/secret", "kept: only /secret is anchored"),
    ]);
    let api = build_api(settings, tree);

    assert_eq!(run(&config(&api), &paths), 0);

    assert_eq!(
        result(&api),
        serde_json::json!({
            "ok": true,
            "process_types": {"web": "./serve --port $PORT", "console": "./console"},
            "buildpacks": ["Trivial"],
            "message": "",
        })
    );
    let log = log_text(&api);
    let expect = "-----> Removed 3 paths named in .slugignore\n\
                  -----> Building on the Debian 13 (trixie) stack\n\
                  -----> Trivial app detected\n\
                  -----> Installing\n\
                  a warning\n\
                  done\n\
                  -----> Discovering process types\n       \
                  Procfile declares types     -> web, worker\n       \
                  Default types for buildpack -> console, web\n\
                  -----> Compressing...\n       \
                  Done: ";
    assert!(log.starts_with(expect), "{log}");
    assert!(log.ends_with("M\n") && log.lines().count() == 11, "{log}");

    // The buildpack saw the config only as ENV_DIR files, the build's env only.
    assert_eq!(fs::read_to_string(paths.app.join("compiled")).unwrap(), "built with hello\n");
    assert!(!paths.env_dir().join("not-a-name").exists());
    let compile_env = fs::read_to_string(paths.app.join(".compile-env")).unwrap();
    assert!(compile_env.contains("STACK=debian-13\n") && compile_env.contains("SOURCE_VERSION=c0ffee\n"));
    assert!(compile_env.contains(&format!("HOME={}\n", paths.app.display())));
    assert!(!compile_env.contains("CARGO"), "the builder's environment leaked: {compile_env}");
    assert!(paths.cache.join("cached").exists());

    let slugs = calls(&api, "slug");
    assert_eq!(slugs.len(), 1);
    let slug = &slugs[0];
    assert_eq!(slug.header("content-type"), Some("application/gzip"));
    assert_eq!(slug.header("content-length"), Some(slug.body.len().to_string().as_str()));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(slug.body.as_slice()));
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        assert_eq!((entry.header().uid().unwrap(), entry.header().gid().unwrap()), (1000, 1000));
        let path = entry.path().unwrap().display().to_string();
        if path == "./app/hello.txt" {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            assert_eq!(text, "hi");
        }
        entries.push(path);
    }
    entries.sort();
    assert_eq!(
        entries,
        [
            "./app/",
            "./app/.compile-env",
            "./app/.slugignore",
            "./app/Procfile",
            "./app/compiled",
            "./app/hello.txt",
            "./app/sub/",
            "./app/sub/secret"
        ]
    );
    drop(root);
}

#[test]
fn a_failing_compile_fails_the_build_with_its_reason() {
    let (_root, paths) = build_dyno("#!/bin/sh\necho 'pip: no such package' >&2\nexit 1\n");
    let settings = serde_json::json!({"commit": "c0ffee", "buildpacks": ["heroku/trivial"], "config": {}});
    let api = build_api(settings, source(&[("Procfile", "web: ./serve\n")]));

    assert_eq!(run(&config(&api), &paths), 1);

    let result = result(&api);
    assert_eq!(result["ok"], false);
    assert_eq!(result["message"], "Push rejected, failed to compile Trivial app.");
    assert_eq!(
        log_text(&api),
        "-----> Building on the Debian 13 (trixie) stack\n\
         -----> Using buildpack: heroku/trivial\n\
         -----> Trivial app detected\n\
         pip: no such package\n \
         !     Push rejected, failed to compile Trivial app.\n"
    );
    assert!(calls(&api, "slug").is_empty());
}

#[test]
fn an_app_no_buildpack_detects_fails_the_build() {
    let (_root, paths) = build_dyno(COMPILE);
    let api = build_api(serde_json::json!({}), source(&[("README", "no Procfile")]));
    assert_eq!(run(&config(&api), &paths), 1);
    assert_eq!(result(&api)["message"], "No default language could be detected for this app.");
    assert!(log_text(&api).ends_with(
        " !     No default language could be detected for this app.\n \
         !     Add a Procfile, requirements.txt, package.json, go.mod, Cargo.toml or index.html,\n \
         !     or set a buildpack: ouro buildpacks:set URL\n"
    ));
}

#[test]
fn a_slug_over_the_limit_is_refused_before_upload() {
    let (_root, paths) = build_dyno("#!/bin/sh\nhead -c 3000000 /dev/urandom > \"$1/blob\"\n");
    let api = build_api(serde_json::json!({"buildpacks": ["trivial"]}), source(&[("Procfile", "web: x\n")]));
    assert_eq!(run(&config(&api), &paths), 1);
    let message = result(&api)["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with("Compiled slug size: 2.") && message.ends_with("M is too large (max is 1.0M)."),
        "{message}"
    );
    assert!(
        log_text(&api).ends_with(" !     Remove files the app does not need at run time: list them in .slugignore.\n")
    );
    assert!(calls(&api, "slug").is_empty());
}

#[test]
fn an_unsafe_source_or_an_api_error_fails_the_build_with_a_reason() {
    let (_root, paths) = build_dyno(COMPILE);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_path("etc").unwrap();
    header.set_link_name("/etc").unwrap();
    header.set_cksum();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    builder.append(&header, std::io::empty()).unwrap();
    let tree = builder.into_inner().unwrap().finish().unwrap();
    let api = build_api(serde_json::json!({}), tree);
    assert_eq!(run(&config(&api), &paths), 1);
    let message = "The pushed tree has an entry that cannot be unpacked safely: 'etc' is a link to an absolute path";
    assert_eq!(result(&api)["message"], message);
    assert_eq!(log_text(&api), format!(" !     {message}\n"));

    let (_root, paths) = build_dyno(COMPILE);
    let api = StandIn::start(|request| match request.path.as_str() {
        "/build-api/b1/env" => Reply::body(410, r#"{"id":"gone","message":"build `b1` is not running"}"#),
        _ => Reply::status(204),
    });
    assert_eq!(run(&config(&api), &paths), 1);
    let reason = "GET /env: the API answered 410 Gone: build `b1` is not running";
    assert_eq!(result(&api)["message"], format!("the builder failed: {reason}"));
    assert_eq!(log_text(&api), format!(" !     The builder failed: {reason}\n"));
}
