//! `ouro run` against a fake API on 127.0.0.1: the dyno's creation, the `ouro-attach`
//! upgrade and the frames both ways, as the `ouro` binary does them with piped stdio.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use ouro_types::attach::{self, Decoder};

const TOKEN: &str = "t0ken";
/// For every wait in these tests: the fake API's reads, the events, the `ouro` process.
const WAIT: Duration = Duration::from_secs(30);

/// How the fake API behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Reads stdin to its end, then sends output on both streams and `EXIT 3`.
    Exit,
    /// Sends `ERROR` with the 101.
    Error,
    /// Answers the dyno's creation with 422.
    RejectCreation,
    /// Answers the upgrade with 404.
    RefuseAttach,
    /// Sends some output, then closes the connection without `EXIT`.
    HangUp,
}

/// What the fake API saw.
#[derive(Debug)]
enum Event {
    Create {
        authorization: String,
        body: Value,
    },
    Attach {
        head: String,
    },
    /// The frames the CLI sent until `STDIN_EOF`: the `STDIN` bytes and every frame's kind.
    Input {
        stdin: Vec<u8>,
        kinds: Vec<u8>,
    },
}

/// Starts the fake API; its URL and what it sees.
fn fake_api(script: Script) -> (String, Receiver<Event>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (events, seen) = mpsc::channel();
    thread::spawn(move || {
        for connection in listener.incoming() {
            let Ok(connection) = connection else { return };
            let events = events.clone();
            thread::spawn(move || serve(connection, script, &events));
        }
    });
    (url, seen)
}

fn serve(mut connection: TcpStream, script: Script, events: &Sender<Event>) {
    connection.set_read_timeout(Some(WAIT)).unwrap();
    let (head, mut rest) = read_head(&mut connection);
    let request_line = head.lines().next().unwrap_or("").to_string();
    if request_line.starts_with("POST /apps/demo/dynos ") {
        let length: usize = header(&head, "content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        while rest.len() < length {
            let mut chunk = [0u8; 4096];
            let n = connection.read(&mut chunk).unwrap();
            assert!(n > 0, "the body ended early");
            rest.extend_from_slice(&chunk[..n]);
        }
        let body = serde_json::from_slice(&rest[..length]).unwrap();
        let authorization = header(&head, "authorization").unwrap_or_default();
        events.send(Event::Create { authorization, body }).unwrap();
        if script == Script::RejectCreation {
            answer(
                &mut connection,
                "422 Unprocessable Entity",
                r#"{"id":"invalid_params","message":"no release yet"}"#,
            );
        } else {
            let dyno = json!({
                "id": "c0ffee", "app": "demo", "name": "run.1", "type": "run", "state": "starting",
                "size": "basic", "release": 2, "created_at": "2026-11-26T00:25:55Z"
            });
            answer(&mut connection, "201 Created", &dyno.to_string());
        }
        return;
    }
    if !request_line.starts_with("GET /apps/demo/dynos/run.1/attach ") {
        answer(&mut connection, "404 Not Found", r#"{"id":"not_found","message":"no such route"}"#);
        return;
    }
    events.send(Event::Attach { head: head.clone() }).unwrap();
    if script == Script::RefuseAttach {
        answer(&mut connection, "404 Not Found", r#"{"id":"not_found","message":"dyno `run.1` is gone"}"#);
        return;
    }
    let mut out = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ouro-attach\r\n\r\n".to_vec();
    match script {
        Script::Exit => {
            connection.write_all(&out).unwrap();
            let (stdin, kinds) = read_input(&mut connection, rest);
            events.send(Event::Input { stdin, kinds }).unwrap();
            let mut frames = attach::frame(attach::STDOUT, b"out\n");
            frames.extend(attach::frame(attach::STDERR, b"err\n"));
            frames.extend(attach::exit_frame(3));
            connection.write_all(&frames).unwrap();
        }
        Script::Error => {
            // With the 101, so that the CLI finds it among the bytes that came with the head.
            out.extend(attach::frame(attach::ERROR, b"the dyno could not start"));
            connection.write_all(&out).unwrap();
        }
        Script::HangUp => {
            out.extend(attach::frame(attach::STDOUT, b"partial\n"));
            connection.write_all(&out).unwrap();
            // Closed once the CLI's input is read (unread, it would reset the connection).
            read_input(&mut connection, rest);
            return;
        }
        Script::RejectCreation | Script::RefuseAttach => unreachable!(),
    }
    // Until the CLI closes its end: closing first, with its frames unread, could reset the
    // connection before it has read the last frame.
    let mut sink = [0u8; 4096];
    while matches!(connection.read(&mut sink), Ok(n) if n > 0) {}
}

/// The request's head, and the bytes read after it.
fn read_head(connection: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return (String::from_utf8(buffer).unwrap(), rest);
        }
        let n = connection.read(&mut chunk).unwrap();
        assert!(n > 0, "the request ended before its head did");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().to_string())
}

fn answer(connection: &mut TcpStream, status: &str, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    connection.write_all(answer.as_bytes()).unwrap();
}

/// The CLI's frames up to `STDIN_EOF`.
fn read_input(connection: &mut TcpStream, early: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let mut decoder = Decoder::default();
    decoder.push(&early);
    let (mut stdin, mut kinds) = (Vec::new(), Vec::new());
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((kind, payload)) = decoder.next_frame().unwrap() {
            kinds.push(kind);
            match kind {
                attach::STDIN => stdin.extend_from_slice(&payload),
                attach::STDIN_EOF => return (stdin, kinds),
                _ => {}
            }
        }
        let n = connection.read(&mut chunk).unwrap();
        assert!(n > 0, "the CLI closed the connection before STDIN_EOF");
        decoder.push(&chunk[..n]);
    }
}

/// Runs `ouro ARGS` against the API at `url`, with `stdin` piped in; waits for it to end.
fn ouro(url: &str, args: &[&str], stdin: &[u8]) -> Output {
    let config = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ouro"))
        .args(args)
        .env("OURO_API_URL", url)
        .env("OURO_API_TOKEN", TOKEN)
        .env("OURO_CONFIG_DIR", config.path())
        .current_dir(config.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The CLI may have ended already (a refused creation): a closed pipe is fine.
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let (done, output) = mpsc::channel();
    thread::spawn(move || done.send(child.wait_with_output()));
    output.recv_timeout(WAIT).expect("ouro did not end in time").unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn next(events: &Receiver<Event>) -> Event {
    events.recv_timeout(WAIT).expect("the fake API saw nothing")
}

#[test]
fn output_and_exit_status_come_back() {
    let (url, events) = fake_api(Script::Exit);
    let output = ouro(&url, &["run", "-a", "demo", "--ttl", "30", "-e", "K=v", "--", "sh", "-c", "exit 3"], b"hello\n");
    assert_eq!(text(&output.stdout), "out\n");
    assert_eq!(text(&output.stderr), "err\n");
    assert_eq!(output.status.code(), Some(3));

    let Event::Create { authorization, body } = next(&events) else { panic!("no creation first") };
    assert_eq!(authorization, format!("Bearer {TOKEN}"));
    assert_eq!(body["command"], "sh -c 'exit 3'");
    assert_eq!((&body["attach"], &body["tty"], &body["time_to_live"]), (&json!(true), &json!(false), &json!(30)));
    // Not a terminal: no TERM, COLUMNS or LINES.
    assert_eq!(body["env"], json!({"K": "v"}));
    let Event::Attach { head } = next(&events) else { panic!("no attach second") };
    assert!(head.starts_with("GET /apps/demo/dynos/run.1/attach HTTP/1.1\r\n"), "{head}");
    assert_eq!(header(&head, "upgrade").as_deref(), Some("ouro-attach"));
    assert_eq!(header(&head, "authorization"), Some(format!("Bearer {TOKEN}")));
    let Event::Input { stdin, kinds } = next(&events) else { panic!("no input third") };
    assert_eq!(text(&stdin), "hello\n");
    // No RESIZE without a terminal.
    assert!(kinds.iter().all(|k| [attach::STDIN, attach::STDIN_EOF].contains(k)), "{kinds:?}");
}

#[test]
fn a_dyno_that_cannot_start_is_an_error() {
    let (url, _events) = fake_api(Script::Error);
    let output = ouro(&url, &["run", "-a", "demo", "--", "python3", "-c", "print(1)"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), "ouro: the dyno could not start\n");
    assert_eq!(text(&output.stdout), "");
}

#[test]
fn a_refused_creation_is_an_error() {
    let (url, events) = fake_api(Script::RejectCreation);
    let output = ouro(&url, &["run", "-a", "demo", "bash"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), "ouro: no release yet\n");
    assert!(matches!(next(&events), Event::Create { .. }));
    // Nothing else is asked of the API.
    assert!(events.recv_timeout(Duration::from_millis(200)).is_err());
}

#[test]
fn a_refused_attach_is_an_error() {
    let (url, _events) = fake_api(Script::RefuseAttach);
    let output = ouro(&url, &["run", "-a", "demo", "bash"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), "ouro: dyno `run.1` is gone\n");
}

#[test]
fn a_connection_that_breaks_is_an_error() {
    let (url, _events) = fake_api(Script::HangUp);
    let output = ouro(&url, &["run", "-a", "demo", "--", "cat"], b"");
    assert_eq!(text(&output.stdout), "partial\n");
    assert_eq!(text(&output.stderr), "ouro: the connection to the dyno broke\n");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn detached_runs_point_to_the_log() {
    for args in
        [&["run", "--detached", "-a", "demo", "echo", "a b"][..], &["run:detached", "-a", "demo", "echo", "a b"]]
    {
        let (url, events) = fake_api(Script::Exit);
        let output = ouro(&url, args, b"");
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert_eq!(
            text(&output.stdout),
            "Running `echo 'a b'` on demo... up, run.1\nIts output is in the app's log: ouro logs -a demo --dyno run.1\n"
        );
        let Event::Create { body, .. } = next(&events) else { panic!("no creation") };
        assert_eq!((&body["attach"], &body["command"]), (&json!(false), &json!("echo 'a b'")));
    }
}
