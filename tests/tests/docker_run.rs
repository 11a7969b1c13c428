//! `ouro run` end to end: the real `ouro` binary, API, dyno runner and Docker Engine. A one-off
//! dyno of the app's current release runs a command with the app's config, attached to the
//! caller through the API (plain pipes here: the test's stdin is not a terminal), and `ouro`
//! exits with the command's status; stdin reaches it; `--detached` runs it in the background
//! with its output in the app's log. Needs Docker and the stack image (built on first use).

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ouro_tests::platform::{Platform, sample_app};
use ouro_tests::{Cli, binary, logged_in, ok, stderr, stdout};

/// `ouro run -a APP ARGS…` with `input` on its stdin.
fn run(cli: &Cli, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(binary("ouro"))
        .arg("run")
        .args(args)
        .env("OURO_CONFIG_DIR", cli.config_dir.path())
        .env_remove("OURO_API_URL")
        .env_remove("OURO_API_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ouro run");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("ouro run finishes");
    println!("--- ouro run {} ---\n{}{}", args.join(" "), stdout(&out), stderr(&out));
    out
}

#[test]
fn ouro_run_attaches_a_one_off_and_exits_with_its_status() {
    let platform = Platform::start();
    let cli = logged_in(&platform.api);
    platform.create_and_deploy("oneoff", &sample_app("python-web"), serde_json::json!({"web": "python3 /app/web.py"}));
    ok(&cli.run(&["config:set", "GREETING=bonjour", "-a", "oneoff"]));

    // Output on both streams, the exit status, and the release's config.
    let out = run(&cli, &["-a", "oneoff", "--", "sh", "-c", "echo \"out $GREETING\"; echo err >&2; exit 3"], "");
    assert_eq!(out.status.code(), Some(3), "the command's status");
    assert!(stdout(&out).contains("out bonjour"), "{}", stdout(&out));
    assert!(stderr(&out).contains("err"), "{}", stderr(&out));

    // A script's one-liner, and stdin through to the command.
    let out = run(&cli, &["-a", "oneoff", "--", "python3", "-c", "print(6 * 7)"], "");
    assert_eq!((out.status.code(), stdout(&out).trim()), (Some(0), "42"));
    let out = run(&cli, &["-a", "oneoff", "--", "sh", "-c", "tr a-z A-Z"], "shout this\n");
    assert_eq!((out.status.code(), stdout(&out).trim()), (Some(0), "SHOUT THIS"));

    // Detached: in the background, listed by `ouro ps`, its output in the logs.
    let out = run(&cli, &["-a", "oneoff", "--detached", "--", "sh", "-c", "echo detached-line; sleep 3"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    let dyno = said.split_whitespace().find(|w| w.starts_with("run.")).expect("run.N").trim_matches(',').to_string();
    let ps = ok(&cli.run(&["ps", "-a", "oneoff"]));
    assert!(ps.contains(&dyno), "ouro ps lists {dyno}: {ps}");
    platform.wait_until(Duration::from_secs(60), "the detached dyno's output is in the log", || {
        ok(&cli.run(&["logs", "-a", "oneoff", "--dyno", &dyno])).contains("detached-line")
    });

    // A command that is not there: the shell's status 127, and the platform says nothing worse.
    let out = run(&cli, &["-a", "oneoff", "--", "no-such-command"], "");
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
}
