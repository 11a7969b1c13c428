//! `ouro-bench`: what the benchmark scripts under `bench/` need on the host besides the
//! platform's binaries, so that they need no Python: a free loopback port, the timing of a
//! `git push` (`timed`), a static route source for the router benchmark, and reading a field
//! or counting items of the API's JSON.
//!
//! A tool of the scripts, not part of the platform: std only, no platform crate links it, and it
//! never talks to Docker or the API itself (the scripts pipe the API's answers into it).
//! Errors are messages for the person running the benchmark, hence plain `String`s.

mod json;
mod route_source;
mod timed;

use std::ffi::OsString;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "\
usage: ouro-bench free-port
         prints a free TCP port on 127.0.0.1, picked by the kernel.
       ouro-bench timed push LOG -- COMMAND...
         runs COMMAND, writes `START <t>`, then `<t> <line>` for each line of its stdout and
         stderr as it arrives (the last part of a line that carriage returns rewrite, as git's
         progress), then `EXIT <t> <status>` to LOG; exits with its status.
       ouro-bench timed phases LOG SERVED
         prints receive build slug release boot total (seconds) from LOG and SERVED (epoch
         seconds of the first good answer).
       ouro-bench timed lines LOG
         prints each line with the seconds since the push started.
       ouro-bench timed runner LOG RUNNER_LOG APP SERVED
         prints, from the dyno runner's log, when the build dyno started (seconds since the push
         started) and how the boot phase splits: the runner sees the release, builds the slug
         image, starts the web dyno, which then answers through the router.
       ouro-bench route-source HOST BACKEND
         serves GET /routes[?after=N] with one route (HOST to BACKEND, version 1) on 127.0.0.1 at
         a port the kernel picks, printed as `route-source listening on http://ADDR`; polls with
         after>=1 are held 25 s, as the dyno runner holds them.
       ouro-bench json-get PATH
         prints the value at PATH (`a.b.0.c`; a negative index counts from the end) of the JSON
         on stdin: a string as its text, anything else as JSON.
       ouro-bench json-count [PATH=VALUE]...
         prints how many items of the JSON array on stdin have, at every PATH (as json-get's),
         VALUE (a string field compares its text, any other its JSON).";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(Failure::Usage) => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Message(message)) => {
            eprintln!("ouro-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage,
    Message(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Message(message)
    }
}

fn run(args: &[OsString]) -> Result<ExitCode, Failure> {
    let words: Vec<&str> = args.iter().map(|a| a.to_str().unwrap_or("")).collect();
    match words.as_slice() {
        ["free-port"] => {
            let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            println!("{port}");
        }
        ["timed", "push", log, "--", _, ..] => {
            return Ok(timed::push(Path::new(log), &args[4..])?);
        }
        ["timed", "phases", log, served] => {
            println!("{}", timed::phases(&timed::read_log(Path::new(log))?, number(served)?)?);
        }
        ["timed", "lines", log] => {
            print!("{}", timed::lines(&timed::read_log(Path::new(log))?)?);
        }
        ["timed", "runner", log, runner_log, app, served] => {
            let push = timed::read_log(Path::new(log))?;
            let runner_log = std::fs::read(runner_log).map_err(|e| format!("reading {runner_log}: {e}"))?;
            println!("{}", timed::runner(&push, &String::from_utf8_lossy(&runner_log), app, number(served)?)?);
        }
        ["route-source", host, backend] => route_source::serve(host, backend)?,
        ["json-get", path] => println!("{}", json::text(json::get(&stdin_json()?, path)?)),
        ["json-count", filters @ ..] => {
            let filters = filters
                .iter()
                .map(|f| f.split_once('=').ok_or(Failure::Usage))
                .collect::<Result<Vec<(&str, &str)>, Failure>>()?;
            println!("{}", json::count(&stdin_json()?, &filters)?);
        }
        _ => return Err(Failure::Usage),
    }
    Ok(ExitCode::SUCCESS)
}

fn number(text: &str) -> Result<f64, String> {
    text.trim().parse().map_err(|_| format!("`{text}` is not a number of seconds"))
}

fn stdin_json() -> Result<json::Value, String> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).map_err(|e| format!("reading stdin: {e}"))?;
    json::parse(&input).map_err(|e| format!("stdin is not JSON: {e}"))
}
