//! `run`: a command in a one-off dyno (`run.N`) on the current release, attached to this
//! terminal (the default) or detached (`--detached`, its output then in the app's log).
//!
//! Attached, the CLI creates the dyno (`POST /apps/{app}/dynos` with `attach`), then upgrades
//! `GET /apps/{app}/dynos/run.N/attach` to `ouro-attach` (by hand, with `tunnel.rs`'s
//! helpers) and speaks [`ouro_types::attach`] frames: local stdin goes up as `STDIN` (then
//! `STDIN_EOF`), the dyno's output comes down as `STDOUT`/`STDERR`, and its `EXIT` status is
//! this command's exit code. With a terminal on both stdin and stdout the dyno gets a TTY:
//! the local terminal is put in raw mode (keys, Ctrl-C included, go to the dyno as bytes) and
//! its size follows SIGWINCH. The terminal is restored on every way out of the session.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use ouro_types::attach::{self, Decoder};
use ouro_types::{Dyno, OneOffCreate, dyno_size};

use crate::client::{Client, app_path, decode, segment};
use crate::context::{Ctx, Output, pretty};
use crate::credentials;
use crate::error::CliError;
use crate::tunnel::{self, Target};
use crate::upgraded::Upgraded;

/// What `ouro run` was asked to run, as given on the command line.
pub struct Request {
    /// Dyno size, such as `standard-2x`.
    pub size: Option<String>,
    /// Seconds after which the platform stops the dyno.
    pub ttl: Option<u64>,
    /// `KEY=VALUE` config vars for this dyno only.
    pub env: Vec<String>,
    /// The command's words.
    pub command: Vec<String>,
}

/// The message when the attach connection ends without the dyno's exit status.
const BROKE: &str = "the connection to the dyno broke";

/// `ouro run --detached CMD…` (and the older `run:detached`): the dyno's output goes to the
/// app's log only.
pub fn detached(ctx: &Ctx, request: &Request) -> Output {
    let body = one_off(request)?;
    let app = ctx.app()?;
    let raw = ctx.client()?.post(&app_path(&app, "/dynos"), &body)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let dyno: Dyno = decode(raw)?;
    Ok(format!(
        "Running `{}` on {app}... up, {name}\nIts output is in the app's log: ouro logs -a {app} --dyno {name}\n",
        body.command,
        name = dyno.name
    ))
}

/// `ouro run CMD…`: runs the command attached to this terminal and returns the exit code
/// that this process should end with (the dyno's status).
pub fn attached(ctx: &Ctx, request: &Request) -> Result<u8, CliError> {
    let mut body = one_off(request)?;
    let app = ctx.app()?;
    let credentials = credentials::load()?;
    // Before the dyno is created, so that an unusable API URL fails without leaving one behind.
    let (endpoint, tls) = tunnel::reach(&credentials)?;
    let tty = io::stdin().is_terminal() && io::stdout().is_terminal();
    let size = if tty { terminal_size() } else { None };
    body.attach = true;
    body.tty = tty;
    if tty {
        // What the user set with `-e` wins.
        if let Ok(term) = std::env::var("TERM") {
            body.env.entry("TERM".to_string()).or_insert(term);
        }
        if let Some((columns, rows)) = size {
            body.env.entry("COLUMNS".to_string()).or_insert(columns.to_string());
            body.env.entry("LINES".to_string()).or_insert(rows.to_string());
        }
    }
    let client = Client::new(&credentials);
    let dyno: Dyno = decode(client.post(&app_path(&app, "/dynos"), &body)?)?;
    let path = endpoint.prefix.clone() + &app_path(&app, &format!("/dynos/{}/attach", segment(&dyno.name)));
    let target = Target {
        api_url: credentials.api_url,
        endpoint,
        tls,
        path,
        token: credentials.token,
        protocol: attach::UPGRADE,
    };
    let (stream, early) = tunnel::open(&target)?;
    // Only for a person watching: a script's stderr carries the dyno's alone.
    if io::stderr().is_terminal() {
        eprintln!("Running `{}` on {app}... attached to {}", body.command, dyno.name);
    }
    session(stream, &early, tty.then_some(size))
}

/// The body of `POST /apps/{app}/dynos`, detached; the arguments are checked before anything
/// is sent.
fn one_off(request: &Request) -> Result<OneOffCreate, CliError> {
    let size = match &request.size {
        Some(size) => Some(
            dyno_size(size).ok_or_else(|| CliError::usage(format!("unknown dyno size `{size}`")))?.name.to_string(),
        ),
        None => None,
    };
    Ok(OneOffCreate {
        command: command_line(&request.command),
        size,
        env: parse_env(&request.env)?,
        attach: false,
        tty: false,
        time_to_live: request.ttl,
    })
}

/// `KEY=VALUE` arguments as a map (a later one for the same key wins).
fn parse_env(vars: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    vars.iter()
        .map(|var| match var.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(CliError::usage(format!("`{var}` is not KEY=VALUE"))),
        })
        .collect()
}

/// The command line that the dyno's shell runs. One word is taken as a command line already
/// (`ouro run "rake db:migrate"`, as on Heroku); several are each quoted for a POSIX shell
/// where needed, so `ouro run -- sh -c 'exit 3'` runs exactly that.
pub fn command_line(words: &[String]) -> String {
    match words {
        [line] => line.clone(),
        _ => words.iter().map(|word| shell_quote(word)).collect::<Vec<_>>().join(" "),
    }
}

/// A word as a shell reads it back: as it is when it has no special character, else in
/// single quotes (a `'` inside becoming `'\''`).
fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The exit code for a dyno's exit status: 0 to 255 as they are, anything else 255.
pub fn exit_code(status: i32) -> u8 {
    u8::try_from(status).unwrap_or(u8::MAX)
}

/// The attached session, on an upgraded connection (`early`: frames that came with the 101).
/// `tty` holds the terminal's size when the dyno has a TTY.
fn session(stream: Upgraded, early: &[u8], tty: Option<Option<(u16, u16)>>) -> Result<u8, CliError> {
    let local = |e: io::Error| CliError::local(format!("attach: {e}"));
    let writer = Arc::new(Mutex::new(stream.clone()));
    // Dropped (the terminal restored) when this function returns, whichever way.
    let _raw = match tty {
        Some(size) => {
            let raw = RawMode::enter()?;
            if let Some((columns, rows)) = size {
                send(&writer, &attach::resize_frame(columns, rows)).map_err(local)?;
            }
            follow_resizes(Arc::clone(&writer)).map_err(local)?;
            restore_on_termination(&raw.saved).map_err(local)?;
            Some(raw)
        }
        None => None,
    };
    {
        let writer = Arc::clone(&writer);
        // The thread is left blocked on stdin when the dyno exits: the process ends with it.
        thread::spawn(move || send_stdin(io::stdin().lock(), &writer));
    }
    receive(stream, early, &mut io::stdout(), &mut io::stderr())
}

/// Writes one whole frame (frames from several threads must not interleave).
fn send<W: Write>(writer: &Mutex<W>, frame: &[u8]) -> io::Result<()> {
    let mut writer = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    writer.write_all(frame).and_then(|()| writer.flush())
}

/// Sends everything read from `input` as `STDIN` frames, then `STDIN_EOF`; stops early when
/// the connection is gone.
fn send_stdin<W: Write>(mut input: impl Read, writer: &Mutex<W>) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let n = match input.read(&mut buffer) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Unreadable stdin ends like an empty one.
            Err(_) => 0,
        };
        if n == 0 {
            let _ = send(writer, &attach::frame(attach::STDIN_EOF, b""));
            return;
        }
        if send(writer, &attach::frame(attach::STDIN, &buffer[..n])).is_err() {
            return;
        }
    }
}

/// Copies the dyno's output to `out` and `err` until its `EXIT` frame, whose status it
/// returns as an exit code. An `ERROR` frame, a broken frame or the connection closing
/// first is an error.
fn receive(mut from: impl Read, early: &[u8], out: &mut impl Write, err: &mut impl Write) -> Result<u8, CliError> {
    let mut decoder = Decoder::default();
    decoder.push(early);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        while let Some((kind, payload)) = decoder.next_frame().map_err(|e| CliError::local(format!("{BROKE}: {e}")))? {
            match kind {
                attach::STDOUT => {
                    // Local output closed (`ouro run -- yes | head`): end as a process
                    // killed by SIGPIPE would (128 + 13), quietly; the API sees the
                    // connection close and stops the dyno.
                    let written = out.write_all(&payload).and_then(|()| out.flush());
                    if written.is_err() {
                        return Ok(141);
                    }
                }
                attach::STDERR => {
                    let _ = err.write_all(&payload).and_then(|()| err.flush());
                }
                attach::EXIT => {
                    return attach::exit_status(&payload)
                        .map(exit_code)
                        .ok_or_else(|| CliError::local(format!("{BROKE}: a malformed exit status")));
                }
                attach::ERROR => return Err(CliError::local(String::from_utf8_lossy(&payload).into_owned())),
                // A kind from a newer API: not for this CLI.
                _ => {}
            }
        }
        match from.read(&mut buffer) {
            Ok(0) => return Err(CliError::local(BROKE)),
            Ok(n) => decoder.push(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(CliError::local(BROKE)),
        }
    }
}

/// The local terminal in raw mode, until dropped.
///
/// Why `stty`: switching the terminal needs termios calls, which std does not offer; through
/// `libc` they are `unsafe` (forbidden in this workspace), and a terminal crate would be a new
/// dependency for a few lines. `stty` is on every Unix and does exactly this, reading the
/// terminal from its stdin (`/dev/tty`, even when our stdin is redirected).
struct RawMode {
    /// `stty -g`'s output: the settings to put back.
    saved: String,
}

impl RawMode {
    fn enter() -> Result<Self, CliError> {
        let fail = |e: String| CliError::local(format!("cannot put the terminal in raw mode: {e}"));
        let saved = stty(&["-g"]).map_err(fail)?.trim().to_string();
        // Before the switch, so that a panic at any later point restores the terminal before
        // its message is printed (the guard's drop only runs after).
        let settings = saved.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = stty(&[&settings]);
            previous(info);
        }));
        stty(&["raw", "-echo"]).map_err(fail)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = stty(&[&self.saved]);
    }
}

/// Runs `stty ARGS` on the controlling terminal; its output.
fn stty(args: &[&str]) -> Result<String, String> {
    let tty = File::open("/dev/tty").map_err(|e| format!("cannot open /dev/tty: {e}"))?;
    let output = Command::new("stty")
        .args(args)
        .stdin(tty)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run stty: {e}"))?;
    if !output.status.success() {
        return Err(format!("stty {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The terminal's (columns, rows), if it has a size.
fn terminal_size() -> Option<(u16, u16)> {
    parse_stty_size(&stty(&["size"]).ok()?)
}

/// `stty size` prints `ROWS COLUMNS`.
fn parse_stty_size(text: &str) -> Option<(u16, u16)> {
    let mut numbers = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    let (rows, columns) = (numbers.next()??, numbers.next()??);
    (rows > 0 && columns > 0 && numbers.next().is_none()).then_some((columns, rows))
}

/// Sends a `RESIZE` frame whenever the terminal's size changes (SIGWINCH), from a thread
/// woken through a socket pair (signal-hook's self-pipe: no `unsafe` here).
fn follow_resizes(writer: Arc<Mutex<Upgraded>>) -> io::Result<()> {
    let mut wake = signal_pipe(signal_hook::consts::SIGWINCH)?;
    thread::spawn(move || {
        let mut bytes = [0u8; 64];
        loop {
            match wake.read(&mut bytes) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
            if let Some((columns, rows)) = terminal_size() {
                if send(&writer, &attach::resize_frame(columns, rows)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(())
}

/// SIGHUP (the terminal went away) and SIGTERM would end the process without the guard's
/// drop: restore the terminal first, then end as the signal would have.
fn restore_on_termination(saved: &str) -> io::Result<()> {
    for signal in [signal_hook::consts::SIGHUP, signal_hook::consts::SIGTERM] {
        let mut wake = signal_pipe(signal)?;
        let saved = saved.to_string();
        thread::spawn(move || {
            let mut byte = [0u8; 1];
            loop {
                match wake.read(&mut byte) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) | Ok(0) => return,
                    Ok(_) => break,
                }
            }
            let _ = stty(&[&saved]);
            let _ = signal_hook::low_level::emulate_default_handler(signal);
        });
    }
    Ok(())
}

/// The read end of a socket pair that receives a byte each time `signal` arrives.
fn signal_pipe(signal: i32) -> io::Result<UnixStream> {
    let (read, write) = UnixStream::pair()?;
    signal_hook::low_level::pipe::register(signal, write)?;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn words(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn command_lines() {
        let check = |input: &[&str], expect: &str| assert_eq!(command_line(&words(input)), expect, "{input:?}");
        check(&["sh", "-c", "exit 3"], "sh -c 'exit 3'");
        check(&["python3", "-c", "print(1)"], "python3 -c 'print(1)'");
        check(&["echo", "it's"], r"echo 'it'\''s'");
        check(&["echo", ""], "echo ''");
        check(&["ls", "-la", "/app/bin", "a=b", "x@y:1,2+%"], "ls -la /app/bin a=b x@y:1,2+%");
        check(&["echo", "$HOME", "*", "a;b", "\"q\""], r#"echo '$HOME' '*' 'a;b' '"q"'"#);
        check(&["echo", "é"], "echo 'é'");
        // One word is a command line already.
        check(&["rake db:migrate"], "rake db:migrate");
        check(&["bash"], "bash");
    }

    #[test]
    fn exit_statuses() {
        for (status, code) in [(0, 0), (3, 3), (255, 255), (256, 255), (-1, 255), (i32::MIN, 255), (i32::MAX, 255)] {
            assert_eq!(exit_code(status), code, "{status}");
        }
    }

    #[test]
    fn env_args() {
        let env = parse_env(&words(&["A=1", "B=x=y", "C=", "A=2"])).unwrap();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("A", "2"), ("B", "x=y"), ("C", "")]);
        for bad in ["A", "=1", ""] {
            assert_eq!(parse_env(&words(&[bad])).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn request_bodies() {
        let request = Request {
            size: Some("Standard-2X".into()),
            ttl: Some(60),
            env: words(&["K=v"]),
            command: words(&["sh", "-c", "exit 3"]),
        };
        assert_eq!(
            serde_json::to_value(one_off(&request).unwrap()).unwrap(),
            json!({"command": "sh -c 'exit 3'", "size": "standard-2x", "env": {"K": "v"}, "attach": false,
                   "tty": false, "time_to_live": 60})
        );
        let bad = Request { size: Some("huge".into()), ttl: None, env: vec![], command: words(&["ls"]) };
        assert_eq!(one_off(&bad).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn stty_sizes() {
        assert_eq!(parse_stty_size("24 80\n"), Some((80, 24)));
        for bad in ["", "24", "0 0", "24 x", "24 80 1"] {
            assert_eq!(parse_stty_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn stdin_goes_up_in_frames_then_eof() {
        let writer = Mutex::new(Vec::new());
        send_stdin(&b"hello\n"[..], &writer);
        let mut decoder = Decoder::default();
        decoder.push(&writer.into_inner().unwrap());
        assert_eq!(decoder.next_frame().unwrap(), Some((attach::STDIN, b"hello\n".to_vec())));
        assert_eq!(decoder.next_frame().unwrap(), Some((attach::STDIN_EOF, Vec::new())));
        assert_eq!(decoder.next_frame().unwrap(), None);
    }

    fn received(early: &[u8], stream: &[u8]) -> (Result<u8, CliError>, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = receive(stream, early, &mut out, &mut err);
        (result, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn output_goes_down_to_the_right_streams() {
        let early = attach::frame(attach::STDOUT, b"out\n");
        let mut stream = attach::frame(attach::STDERR, b"err\n");
        stream.extend(attach::frame(9, b"unknown kind"));
        stream.extend(attach::frame(attach::STDOUT, b"more\n"));
        stream.extend(attach::exit_frame(3));
        stream.extend(attach::frame(attach::STDOUT, b"after the end\n"));
        let (result, out, err) = received(&early, &stream);
        assert_eq!(result.unwrap(), 3);
        assert_eq!(out, "out\nmore\n");
        assert_eq!(err, "err\n");
    }

    #[test]
    fn sessions_that_end_badly() {
        let (result, _, _) = received(&[], &attach::frame(attach::ERROR, b"the dyno could not start"));
        assert_eq!(result.unwrap_err().to_string(), "the dyno could not start");
        let (result, out, _) = received(&[], &attach::frame(attach::STDOUT, b"partial"));
        assert_eq!(result.unwrap_err().to_string(), BROKE);
        assert_eq!(out, "partial");
        let (result, _, _) = received(&[], &attach::frame(attach::EXIT, b"\0"));
        assert!(result.unwrap_err().to_string().starts_with(BROKE));
        let (result, _, _) = received(&[], &[attach::STDOUT, 0xff, 0xff, 0xff, 0xff]);
        assert!(result.unwrap_err().to_string().starts_with(BROKE));
        let (result, _, _) = received(&[], &attach::exit_frame(-9));
        assert_eq!(result.unwrap(), 255);
    }

    #[test]
    fn closed_local_output_ends_the_session() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let stream = attach::frame(attach::STDOUT, b"y\n");
        assert_eq!(receive(&stream[..], &[], &mut Closed, &mut Vec::new()).unwrap(), 141);
    }
}
