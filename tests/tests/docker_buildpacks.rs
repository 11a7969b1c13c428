//! The buildpacks (`buildpacks/`) run for real inside the build stack image, on the Docker Engine
//! (through bollard, as the platform does): each sample app under `tests/apps/` is built the way
//! the builder will build it (as the unprivileged `dyno` user, uid 1000, in `/app` owned by it:
//! detect in `buildpacks/ORDER`, compile with a cache dir and an ENV_DIR, release), and the slug it
//! leaves in `/app` is copied into a container of the RUN stack (no compilers there), started as
//! the `dyno` user with `PORT=5000` and fetched from inside that container. Needs a Docker Engine,
//! the stack images (built on first use, minutes) and network access to PyPI, crates.io and the
//! Debian mirror.

use std::time::{Duration, Instant};

use ouro_tests::build_box::{BuildBox, Run, assert_built, release_yaml};

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

/// The ` !     ` lines of a build, the builder's own last one ("Push rejected, ...") aside.
fn buildpack_errors(run: &Run) -> Vec<&str> {
    run.output.lines().filter(|l| l.starts_with(" !     ") && !l.contains("Push rejected, failed to compile")).collect()
}

/// Sources `.profile.d` as a dyno does, then runs `script` in dyno `id` (PORT=5000, config var
/// GREETING); its output.
fn in_dyno(b: &BuildBox, id: &str, script: &str) -> Run {
    let script = format!("cd /app; for f in /app/.profile.d/*.sh; do . \"$f\"; done\n{script}");
    b.exec_in(id, "dyno", &["PORT=5000", "GREETING=bonjour", "HOME=/app"], &script, &[])
}

/// Imports that need the Python's own shared libraries (libssl, libsqlite3, libffi, liblzma, ...),
/// run on the run stack: what a Python from another Debian release must bring along.
const STDLIB_CHECK: &str = "python -c 'import ssl, sqlite3, termios, ctypes, lzma, bz2, readline, pyexpat, zlib, uuid, \
decimal, hashlib, json, subprocess, sys; \
print(sys.version.split()[0], ssl.OPENSSL_VERSION.split()[0], sqlite3.sqlite_version != \"\", \
subprocess.run([\"/bin/sh\", \"-c\", \"echo sh-ok\"], capture_output=True, text=True).stdout.strip())'";

/// Heroku's Python getting-started app, the Django way: Python 3.14 from .python-version (not the
/// stack's 3.13: Debian forky's, with its C library), Django 6 from PyPI, collectstatic at build
/// time into STATIC_ROOT (hashed, compressed, with a manifest), served by gunicorn and whitenoise
/// on the run stack, writing to its database. Then DISABLE_COLLECTSTATIC, and a collectstatic that
/// fails the build.
#[test]
fn python_getting_started_django_on_python_3_14_collects_static_files_and_serves() {
    let b = BuildBox::new("python-getting-started");
    let cold = b.build();
    assert_built(&cold, "Python");
    assert!(cold.output.contains("-----> Using Python 3.14 specified in .python-version\n"), "{}", cold.output);
    assert!(cold.output.contains("-----> Installing Python 3.14."), "{}", cold.output);
    assert!(cold.output.contains(" from Debian forky\n"), "{}", cold.output);
    assert!(cold.output.contains("with forky's C library and loader"), "{}", cold.output);
    assert!(
        cold.output.contains("Successfully installed asgiref-3.13.0 dj-database-url-3.1.2 django-6.1.3"),
        "{}",
        cold.output
    );
    assert!(cold.output.contains("-----> $ python manage.py collectstatic --noinput\n"), "{}", cold.output);
    assert!(cold.output.contains("static file copied to '/app/staticfiles'"), "{}", cold.output);
    // The Procfile declares web and release; the buildpack proposes nothing.
    assert_eq!(release_yaml(&cold), "---\ndefault_process_types: {}\n");

    // collectstatic's work: the CSS under a content-hashed name, compressed, and the manifest.
    let manifest = b.exec(
        "dyno",
        &[],
        "cd /app/staticfiles && python3 -c 'import json; print(json.load(open(\"staticfiles.json\"))[\"paths\"][\"hello/style.css\"])'",
    );
    assert_eq!(manifest.code, 0, "{}", manifest.output);
    let hashed = manifest.output.trim().to_string();
    assert!(
        hashed.starts_with("hello/style.")
            && hashed.ends_with(".css")
            && hashed.len() == "hello/style.0123456789ab.css".len(),
        "{hashed}"
    );
    let files = b.exec("dyno", &[], &format!("cd /app/staticfiles && ls {hashed} {hashed}.gz"));
    assert_eq!(files.code, 0, "{}", files.output);

    // On the run stack: the slug's Python (forky's, with its own libc) and the binary psycopg.
    let dyno = b.start_dyno();
    let python = in_dyno(&b, &dyno, &format!("{STDLIB_CHECK}\npython -c 'import psycopg; print(psycopg.pq.__impl__)'"));
    assert_eq!(python.code, 0, "{}", python.output);
    assert!(
        python.output.starts_with("3.14.") && python.output.contains(" OpenSSL True sh-ok\nbinary\n"),
        "{}",
        python.output
    );
    // The release phase's command, then the web process of the Procfile (config: gunicorn.conf.py).
    let migrate = in_dyno(&b, &dyno, "./manage.py migrate --no-input");
    assert_eq!(migrate.code, 0, "{}", migrate.output);
    assert!(migrate.output.contains("Applying hello.0001_initial... OK"), "{}", migrate.output);
    let page = b.serve_in(&dyno, "gunicorn gettingstarted.wsgi");
    assert!(page.contains("<p>Django 6.1.3 on Python 3.14."), "{page}");
    assert!(page.contains(&format!("href=\"/static/{hashed}\"")), "the page links the hashed CSS:\n{page}");
    let get =
        |path: &str| in_dyno(&b, &dyno, &format!("curl -sS -w '\\n%{{http_code}}' 'http://127.0.0.1:5000{path}'"));
    let css = get(&format!("/static/{hashed}"));
    assert!(css.output.contains("font-family") && css.output.ends_with("\n200"), "{}", css.output);
    let added = get("/db/add?item=ouro");
    assert!(added.output.ends_with("sqlite database, 1 items\nouro\n\n200"), "{}", added.output);
    let listed = get("/db");
    assert!(listed.output.ends_with("sqlite database, 1 items\nouro\n\n200"), "{}", listed.output);

    // Warm: Python and the venv come from the cache, nothing is downloaded.
    let warm = b.build();
    assert_built(&warm, "Python");
    assert!(warm.output.contains("-----> Using cached install of Python 3.14."), "{}", warm.output);
    assert!(
        warm.output.contains("-----> Restoring the virtualenv from the build cache (requirements unchanged)"),
        "{}",
        warm.output
    );
    assert!(
        !warm.output.contains("Download") && !warm.output.contains("Updating the package lists"),
        "{}",
        warm.output
    );
    println!("getting started build: cold {:.1}s, warm {:.1}s", cold.took.as_secs_f64(), warm.took.as_secs_f64());

    // DISABLE_COLLECTSTATIC=1 (a config var) skips it, as on Heroku.
    let skipped = b.build_with(&["DISABLE_COLLECTSTATIC=1"]);
    assert_built(&skipped, "Python");
    assert!(
        skipped
            .output
            .contains("-----> Skipping Django collectstatic since the env var DISABLE_COLLECTSTATIC is set.\n"),
        "{}",
        skipped.output
    );
    assert!(!skipped.output.contains("collectstatic --noinput"), "{}", skipped.output);
    assert_ne!(b.exec("dyno", &[], "test -e /app/staticfiles").code, 0, "collectstatic ran anyway");

    // A collectstatic that fails (no STATIC_ROOT) fails the build, after its output.
    let edit = b.exec("root", &[], "sed -i '/^STATIC_ROOT/d' /src/gettingstarted/settings.py");
    assert_eq!(edit.code, 0, "{}", edit.output);
    let broken = b.build();
    assert_ne!(broken.code, 0, "{}", broken.output);
    assert!(
        broken.output.contains("ImproperlyConfigured") && broken.output.contains("STATIC_ROOT"),
        "{}",
        broken.output
    );
    assert_eq!(
        buildpack_errors(&broken).first().copied(),
        Some(" !     Error: Unable to generate Django static files."),
        "{}",
        broken.output
    );
    assert!(!broken.output.contains("=== release"), "{}", broken.output);
}

/// A Poetry project: Poetry from PyPI (into the cache) installs poetry.lock into the venv; the
/// Python is the newest that satisfies requires-python (the stack's 3.13 here). A warm build
/// restores the venv without Poetry; a changed POETRY_* config var rebuilds it with the cached Poetry.
#[test]
fn python_poetry_app_installs_its_lock_file_and_reuses_its_cache() {
    let b = BuildBox::new("python-poetry");
    let cold = b.build();
    assert_built(&cold, "Python");
    assert!(
        cold.output.contains(
            "-----> Using the newest Python that satisfies requires-python '>=3.13,<3.14' in pyproject.toml\n"
        ),
        "{}",
        cold.output
    );
    assert!(cold.output.contains("-----> Using the stack's Python 3.13."), "{}", cold.output);
    assert!(cold.output.contains("-----> Installing Poetry 2.5.1\n"), "{}", cold.output);
    assert!(
        cold.output.contains("-----> Installing dependencies using 'poetry sync --only main'\n"),
        "{}",
        cold.output
    );
    assert!(cold.output.contains("Installing gunicorn (27.0.1)"), "{}", cold.output);
    let page = b.serve("gunicorn app:app");
    assert!(
        page.starts_with("hello from poetry: Python 3.13.") && page.trim_end().ends_with(", gunicorn 27.0.1 (bonjour)"),
        "{page}"
    );

    let warm = b.build();
    assert_built(&warm, "Python");
    assert!(
        warm.output.contains("-----> Restoring the virtualenv from the build cache (poetry.lock unchanged)"),
        "{}",
        warm.output
    );
    assert!(warm.output.contains("poetry: 1 from the build cache, 0 downloaded (poetry not run"), "{}", warm.output);
    assert!(!warm.output.contains("Poetry 2.5.1") && !warm.output.contains("Download"), "{}", warm.output);
    println!("poetry build: cold {:.1}s, warm {:.1}s", cold.took.as_secs_f64(), warm.took.as_secs_f64());

    let changed = b.build_with(&["POETRY_INSTALLER_PARALLEL=false"]);
    assert_built(&changed, "Python");
    assert!(changed.output.contains("(changed: POETRY_INSTALLER_PARALLEL)"), "{}", changed.output);
    assert!(changed.output.contains("-----> Using cached Poetry 2.5.1\n"), "{}", changed.output);
    assert!(!changed.output.contains("Installing Poetry"), "{}", changed.output);
}

/// A uv project on Python 3.14 (its .python-version): uv's binary from its PyPI wheel syncs
/// uv.lock, without the dev group, into the venv of the chosen Python (never one of its own). A
/// uv project without .python-version fails, as on Heroku.
#[test]
fn python_uv_app_syncs_its_lock_file_with_the_chosen_python() {
    let b = BuildBox::new("python-uv");
    let cold = b.build();
    assert_built(&cold, "Python");
    assert!(cold.output.contains("-----> Using Python 3.14 specified in .python-version\n"), "{}", cold.output);
    assert!(cold.output.contains("-----> Installing uv 0.13.9\n"), "{}", cold.output);
    assert!(
        cold.output.contains("-----> Installing dependencies using 'uv sync --locked --no-default-groups'\n"),
        "{}",
        cold.output
    );
    assert!(cold.output.contains(" + idna==3.20") && !cold.output.contains("six"), "{}", cold.output);
    assert!(!cold.output.to_lowercase().contains("downloading cpython"), "{}", cold.output);
    let venv = b.exec("dyno", &[], "readlink /app/.venv/bin/python3.14; ls /app/.cache 2>&1 || true");
    assert!(venv.output.starts_with("/app/.heroku/python/bin/python3.14\n"), "{}", venv.output);
    assert!(venv.output.contains("No such file"), "tools wrote into the slug's home:\n{}", venv.output);
    let page = b.serve("python web.py");
    assert!(page.starts_with("hello from uv: Python 3.14."), "{page}");
    assert!(page.trim_end().ends_with("idna xn--bcher-kva.example, without dev dependencies (bonjour)"), "{page}");

    let warm = b.build();
    assert_built(&warm, "Python");
    assert!(
        warm.output.contains("-----> Restoring the virtualenv from the build cache (uv.lock unchanged)"),
        "{}",
        warm.output
    );
    assert!(warm.output.contains("uv: 1 from the build cache, 0 downloaded (uv not run"), "{}", warm.output);
    assert!(!warm.output.contains("uv 0.13.9") && !warm.output.contains("Download"), "{}", warm.output);
    println!("uv build: cold {:.1}s, warm {:.1}s", cold.took.as_secs_f64(), warm.took.as_secs_f64());

    let changed = b.build_with(&["UV_CONCURRENT_DOWNLOADS=2"]);
    assert_built(&changed, "Python");
    assert!(changed.output.contains("(changed: UV_CONCURRENT_DOWNLOADS)"), "{}", changed.output);
    assert!(changed.output.contains("-----> Using cached uv 0.13.9\n"), "{}", changed.output);

    let edit = b.exec("root", &[], "rm /src/.python-version");
    assert_eq!(edit.code, 0, "{}", edit.output);
    let unpinned = b.build();
    assert_ne!(unpinned.code, 0, "{}", unpinned.output);
    assert_eq!(
        buildpack_errors(&unpinned).first().copied(),
        Some(" !     Error: No .python-version file was found."),
        "{}",
        unpinned.output
    );
}

/// A Pipenv project: the Python version from Pipfile.lock, Pipenv from PyPI, `pipenv install
/// --deploy` into the venv, without the dev packages.
#[test]
fn python_pipenv_app_installs_its_lock_file() {
    let b = BuildBox::new("python-pipenv");
    let cold = b.build();
    assert_built(&cold, "Python");
    assert!(cold.output.contains("-----> Using Python 3.13 specified in Pipfile.lock\n"), "{}", cold.output);
    assert!(cold.output.contains("-----> Installing Pipenv 2026.10.3\n"), "{}", cold.output);
    assert!(
        cold.output.contains("-----> Installing dependencies using 'pipenv install --deploy'\n"),
        "{}",
        cold.output
    );
    assert!(cold.output.contains("Installing dependencies from Pipfile.lock"), "{}", cold.output);
    assert!(!cold.output.contains("Courtesy Notice"), "{}", cold.output);
    let page = b.serve("python web.py");
    assert!(page.starts_with("hello from pipenv: Python 3.13."), "{page}");
    assert!(page.trim_end().ends_with("six 1.17.0, without dev packages (bonjour)"), "{page}");

    let warm = b.build();
    assert_built(&warm, "Python");
    assert!(
        warm.output.contains("-----> Restoring the virtualenv from the build cache (Pipfile.lock unchanged)"),
        "{}",
        warm.output
    );
    assert!(!warm.output.contains("Pipenv 2026.10.3") && !warm.output.contains("Download"), "{}", warm.output);
}

/// A Python version the platform cannot offer fails the build with one line that names those it
/// can (read from the mirror's indexes), for a minor and for an exact version alike; so do
/// malformed version files and several package managers, before anything is downloaded.
#[test]
fn python_version_that_cannot_be_had_fails_naming_those_that_can() {
    let b = BuildBox::new("python-wrong-version");
    let run = b.build();
    assert_ne!(run.code, 0, "{}", run.output);
    assert!(run.output.contains("-----> Using Python 3.9 specified in .python-version\n"), "{}", run.output);
    let errors = buildpack_errors(&run);
    assert_eq!(errors.len(), 1, "{}", run.output);
    assert!(
        errors[0].starts_with(" !     Python 3.9 is not available: this platform offers 3.11, 3.13, 3.14"),
        "{}",
        run.output
    );
    assert!(errors[0].ends_with(" (from Debian bookworm, trixie and forky)."), "{}", run.output);
    assert!(!run.output.contains("=== release"), "{}", run.output);

    let stack = b.exec("dyno", &[], "python3 -c 'import platform; print(platform.python_version())'").output;
    let cases = [
        // (.python-version, the error's start)
        ("3.13.7\n", " !     Python 3.13.7 is not available: this platform offers 3.11.".to_string()),
        ("# two versions\n3.13\n3.14\n", " !     Error: Invalid Python version in .python-version.".to_string()),
        ("python-3.14\n", " !     Error: Invalid Python version in .python-version.".to_string()),
        ("\u{feff}3.14\n", " !     Error: Invalid Python version in .python-version.".to_string()),
    ];
    for (content, expected) in cases {
        let edit = b.exec("root", &[], &format!("printf '%s' '{content}' > /src/.python-version"));
        assert_eq!(edit.code, 0, "{}", edit.output);
        let run = b.build();
        assert_ne!(run.code, 0, "{}", run.output);
        let errors = buildpack_errors(&run);
        assert!(errors.first().is_some_and(|e| e.starts_with(&expected)), "{content:?}:\n{}", run.output);
        if content == "3.13.7\n" {
            assert_eq!(errors.len(), 1, "{}", run.output);
            assert!(
                errors[0].contains(&format!(", {}, ", stack.trim())),
                "the stack's {stack} is on offer:\n{}",
                run.output
            );
        }
    }
    let misspelled = b.exec("root", &[], "rm /src/.python-version && echo 3.14 > /src/python-version");
    assert_eq!(misspelled.code, 0, "{}", misspelled.output);
    let run = b.build();
    assert_eq!(
        buildpack_errors(&run).first().copied(),
        Some(" !     Error: Found a 'python-version' file instead of '.python-version'."),
        "{}",
        run.output
    );
    let several = b.exec("root", &[], "rm /src/python-version && touch /src/poetry.lock");
    assert_eq!(several.code, 0, "{}", several.output);
    let run = b.build();
    assert_eq!(
        buildpack_errors(&run).first().copied(),
        Some(" !     Error: Multiple Python package manager files were found: requirements.txt, poetry.lock."),
        "{}",
        run.output
    );
}

/// runtime.txt still works (with Heroku's deprecation warning): `python-3.11` is Debian bookworm's,
/// which runs on the stack's C library with its other libraries vendored. The next build without a
/// version keeps 3.11 ("sticky").
#[test]
fn python_runtime_txt_selects_bookworm_3_11_and_the_next_build_keeps_it() {
    let b = BuildBox::new("python-requests");
    let edit = b.exec("root", &[], "echo python-3.11 > /src/runtime.txt");
    assert_eq!(edit.code, 0, "{}", edit.output);
    let cold = b.build();
    assert_built(&cold, "Python");
    assert!(cold.output.contains(" !     Warning: The runtime.txt file is deprecated"), "{}", cold.output);
    assert!(cold.output.contains("-----> Using Python 3.11 specified in runtime.txt\n"), "{}", cold.output);
    assert!(cold.output.contains("-----> Installing Python 3.11."), "{}", cold.output);
    assert!(cold.output.contains(" from Debian bookworm\n"), "{}", cold.output);
    assert!(!cold.output.contains("C library"), "bookworm's libc is older than the stack's:\n{}", cold.output);
    let dyno = b.start_dyno();
    let python = in_dyno(&b, &dyno, STDLIB_CHECK);
    assert!(
        python.output.starts_with("3.11.") && python.output.ends_with(" OpenSSL True sh-ok\n"),
        "{}",
        python.output
    );
    let page = b.serve_in(&dyno, "python web.py");
    assert_eq!(page.trim(), "hello from six 1.17.0 and idna xn--bcher-kva.example (bonjour)");

    let edit = b.exec("root", &[], "rm /src/runtime.txt");
    assert_eq!(edit.code, 0, "{}", edit.output);
    let sticky = b.build();
    assert_built(&sticky, "Python");
    assert!(
        sticky.output.contains(
            "-----> No Python version was specified. Using the same version as the last build: Python 3.11\n"
        ),
        "{}",
        sticky.output
    );
    assert!(sticky.output.contains("-----> Using cached install of Python 3.11."), "{}", sticky.output);
    assert!(sticky.output.contains("(requirements unchanged)"), "{}", sticky.output);
}

/// The app's bin/pre_compile and bin/post_compile run with the config vars (post_compile with the
/// venv's python), as on Heroku; one that fails fails the build. The dyno's runtime env follows
/// Heroku's, WEB_CONCURRENCY from the dyno's memory limit and CPUs.
#[test]
fn python_hooks_run_and_the_profile_sets_heroku_runtime_env() {
    let b = BuildBox::new("python-requests");
    let hooks = r#"set -e
mkdir -p /src/bin
printf '#!/bin/sh\necho "pre_compile: GREETING=$GREETING"\necho pre > pre_compile.txt\n' > /src/bin/pre_compile
printf '#!/bin/sh\necho "post_compile: $(python -c "import six, sys; print(six.__version__, sys.prefix)")"\nexit "${POST_COMPILE_EXIT:-0}"\n' > /src/bin/post_compile
"#;
    let edit = b.exec("root", &[], hooks);
    assert_eq!(edit.code, 0, "{}", edit.output);
    let run = b.build();
    assert_built(&run, "Python");
    let pre = run.output.find("-----> Running bin/pre_compile hook\n       pre_compile: GREETING=bonjour\n");
    let python = run.output.find("-----> No Python version was specified.");
    assert!(pre.is_some() && pre < python, "pre_compile runs first:\n{}", run.output);
    assert!(
        run.output.contains("-----> Running bin/post_compile hook\n       post_compile: 1.17.0 /app/.venv\n"),
        "{}",
        run.output
    );
    assert_eq!(b.exec("dyno", &[], "cat /app/pre_compile.txt").output, "pre\n");

    let failing = b.build_with(&["POST_COMPILE_EXIT=3"]);
    assert_ne!(failing.code, 0, "{}", failing.output);
    assert_eq!(
        buildpack_errors(&failing).first().copied(),
        Some(" !     Error: Failed to run the bin/post_compile script (exit 3)."),
        "{}",
        failing.output
    );

    // The runtime env of a dyno of the (good) slug.
    let run = b.build();
    assert_built(&run, "Python");
    let env = "echo \"$PYTHONUNBUFFERED|$LANG|$PYTHONPATH|$FORWARDED_ALLOW_IPS|$GUNICORN_CMD_ARGS|$(command -v python)|${WEB_CONCURRENCY-unset}|${DYNO_RAM-unset}|$(nproc)\"";
    let values = |dyno: &str| in_dyno(&b, dyno, env).output.trim().split('|').map(String::from).collect::<Vec<_>>();
    // LANG is the dyno's own when set; C.UTF-8 otherwise (the stack has no en_US.UTF-8).
    let unlimited = values(&b.start_dyno());
    assert_eq!(
        unlimited[..7],
        ["true", "C.UTF-8", "/app", "*", "--access-logfile -", "/app/.venv/bin/python", "unset"],
        "{unlimited:?}"
    );
    let small = values(&b.start_dyno_with_memory(512 << 20));
    let cpus: u32 = small[8].parse().expect("nproc");
    assert_eq!(small[6..8], [(2 * cpus + 1).min(2).to_string(), "512".to_string()], "{small:?}");
    let bigger = values(&b.start_dyno_with_memory(1 << 30));
    assert_eq!(bigger[6], (2 * cpus + 1).min(4).to_string(), "{bigger:?}");
    let dyno = b.start_dyno_with_memory(512 << 20);
    let set = b.exec_in(
        &dyno,
        "dyno",
        &["WEB_CONCURRENCY=7"],
        "for f in /app/.profile.d/*.sh; do . \"$f\"; done; echo $WEB_CONCURRENCY",
        &[],
    );
    assert_eq!(set.output, "7\n", "a config var wins");
}

/// Downloads retry and, when they still fail, say which host failed: apt (an unreachable mirror,
/// APT_MIRROR, retried once with APT_RETRIES=1 to keep the test short) and curl.
#[test]
fn python_downloads_retry_and_name_the_host_that_failed() {
    let b = BuildBox::new("python-uv");
    let run = b.build_with(&["APT_MIRROR=http://127.0.0.1:9/debian", "APT_RETRIES=1"]);
    assert_ne!(run.code, 0, "{}", run.output);
    assert!(
        run.output.contains("       Ign:1 http://127.0.0.1:9/debian bookworm InRelease"),
        "apt retried:\n{}",
        run.output
    );
    let errors = buildpack_errors(&run);
    assert_eq!(errors.len(), 1, "{}", run.output);
    assert!(
        errors[0].starts_with(" !     Could not download the package lists of bookworm from 127.0.0.1: E: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease"),
        "{}",
        run.output
    );
    let curl = b.exec(
        "dyno",
        &[],
        "source /buildpacks/lib/common.sh; CURL_RETRIES=1 curl_fetch http://127.0.0.1:9/simple/pip/ 2>&1; echo \"exit $?\"",
    );
    assert!(
        curl.output.starts_with("Could not download http://127.0.0.1:9/simple/pip/ from 127.0.0.1: curl: (7) "),
        "{}",
        curl.output
    );
    assert!(curl.output.ends_with("exit 7\n"), "{}", curl.output);
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
