//! Drains against real receivers on 127.0.0.1: a syslog server reading the octet-counted
//! stream, and an HTTP server reading logplex POSTs.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use ouro_logs::{DRAIN_QUEUE, Drain, DrainUrl, LogLine, Source, rfc5424};

const WAIT: Duration = Duration::from_secs(20);

fn line(i: usize) -> LogLine {
    LogLine::new("shop", Source::App, format!("web.{}", i % 3 + 1), format!("line {i} héllo"))
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Reads one octet-counted message (`<len> <msg>`); `None` at EOF between messages.
async fn read_framed(stream: &mut (impl AsyncRead + Unpin)) -> Option<String> {
    let mut len = Vec::new();
    loop {
        let mut byte = [0u8];
        if stream.read(&mut byte).await.unwrap() == 0 {
            assert!(len.is_empty(), "EOF inside a frame's length");
            return None;
        }
        match byte[0] {
            b' ' => break,
            b @ b'0'..=b'9' if len.len() < 8 => len.push(b),
            b => panic!("not octet-counted: byte {b:?} after {len:?}"),
        }
    }
    let len: usize = String::from_utf8(len).unwrap().parse().unwrap();
    let mut msg = vec![0u8; len];
    stream.read_exact(&mut msg).await.unwrap();
    Some(String::from_utf8(msg).unwrap())
}

/// Splits a body of octet-counted messages.
fn split_framed(mut body: &[u8]) -> Vec<String> {
    let mut messages = Vec::new();
    while !body.is_empty() {
        let space = body.iter().position(|b| *b == b' ').expect("a length");
        let len: usize = std::str::from_utf8(&body[..space]).unwrap().parse().unwrap();
        messages.push(String::from_utf8(body[space + 1..space + 1 + len].to_vec()).unwrap());
        body = &body[space + 1 + len..];
    }
    messages
}

#[tokio::test]
async fn syslog_drain_writes_rfc5424_and_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = DrainUrl::parse(&format!("syslog+tcp://127.0.0.1:{port}")).unwrap();
    let drain = Drain::spawn(url, "shop", loopback());

    let mut lines: Vec<LogLine> = (0..5).map(line).collect();
    lines.push(LogLine::new("shop", Source::Ouro, "web 1\n<13>1 évil", "multi\nline"));
    for line in &lines {
        drain.send(line);
    }
    let (mut first, _) = within("first connection", listener.accept()).await.unwrap();
    for line in &lines {
        let message = within("a message", read_framed(&mut first)).await.expect("a message");
        assert_eq!(message, rfc5424(line));
    }
    assert!(rfc5424(&lines[5]).contains(" shop ouro web_1_<13>1__vil - - multi\nline"));
    until("6 sent", || drain.sent() == 6).await;

    // The receiver goes away; the next lines arrive on a new connection.
    drop(first);
    let more: Vec<LogLine> = (100..103).map(line).collect();
    for line in &more {
        drain.send(line);
    }
    let (mut second, _) = within("second connection", listener.accept()).await.unwrap();
    for line in &more {
        let message = within("a message", read_framed(&mut second)).await.expect("a message");
        assert_eq!(message, rfc5424(line));
    }
    until("9 sent", || drain.sent() == 9).await;
    assert_eq!(drain.dropped(), 0);

    // Dropping the drain stops it: its connection closes.
    drop(drain);
    assert_eq!(within("EOF", read_framed(&mut second)).await, None);
}

#[tokio::test]
async fn syslog_drain_bounds_its_queue_and_reports_the_gap() {
    // Nothing listens at first: the drain retries its first batch while its queue fills.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let drain = Drain::spawn(DrainUrl::parse(&format!("syslog+tcp://127.0.0.1:{port}")).unwrap(), "shop", loopback());
    let total = 2 * DRAIN_QUEUE + 500;
    for i in 0..total {
        drain.send(&line(i));
    }
    let dropped = drain.dropped();
    // The worker holds at most one batch out of the queue.
    assert!((total - DRAIN_QUEUE - 100..=total - DRAIN_QUEUE).contains(&(dropped as usize)), "{dropped}");

    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (mut stream, _) = within("a connection", listener.accept()).await.unwrap();
    let delivered = total - dropped as usize;
    for i in 0..delivered {
        let message = within("a message", read_framed(&mut stream)).await.unwrap();
        assert!(message.ends_with(&format!(" - - line {i} héllo")), "{message}");
    }
    let l10 = within("the L10 line", read_framed(&mut stream)).await.unwrap();
    let expect = format!(" shop ouro logs - - Error L10 (output buffer overflow): {dropped} messages dropped since ");
    assert!(l10.contains(&expect), "{l10}");
    until("all sent", || drain.sent() == delivered as u64 + 1).await;
    assert_eq!(drain.dropped(), dropped);
}

/// One request the HTTP receiver got.
#[derive(Debug)]
struct Request {
    request_line: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP/1.1 server that answers each request with the next status of `statuses` (then
/// 200) and hands the requests to the test.
async fn http_receiver(statuses: Vec<u16>) -> (u16, mpsc::UnboundedReceiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut statuses = statuses.into_iter();
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            // One connection at a time: the drain sends one batch at a time.
            while let Some(request) = read_request(&mut stream).await {
                let status = statuses.next().unwrap_or(200);
                let _ = tx.send(request);
                let answer = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 2\r\n\r\nok");
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    });
    (port, rx)
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
        assert!(head.len() < 64 * 1024, "head too long");
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_string();
    let headers: HashMap<String, String> = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    let len: usize = headers.get("content-length").expect("a Content-Length").parse().unwrap();
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.ok()?;
    Some(Request { request_line, headers, body })
}

#[tokio::test]
async fn http_drain_posts_logplex_batches() {
    let (port, mut requests) = http_receiver(vec![]).await;
    let url = DrainUrl::parse(&format!("http://user:secret@127.0.0.1:{port}/logs?token=t1")).unwrap();
    let drain = Drain::spawn(url, "shop", loopback());
    let lines: Vec<LogLine> = (0..250).map(line).collect();
    for line in &lines {
        drain.send(line);
    }
    // Batches of at most 100, in order, until every line is there.
    let mut messages = Vec::new();
    while messages.len() < lines.len() {
        let request = within("a POST", requests.recv()).await.unwrap();
        assert_eq!(request.request_line, "POST /logs?token=t1 HTTP/1.1");
        let header = |name: &str| request.headers.get(name).map(String::as_str);
        assert_eq!(header("content-type"), Some("application/logplex-1"));
        assert_eq!(header("user-agent"), Some("ouro-logs"));
        assert_eq!(header("authorization"), Some("Basic dXNlcjpzZWNyZXQ="));
        let batch = split_framed(&request.body);
        assert!(!batch.is_empty() && batch.len() <= 100, "{}", batch.len());
        assert_eq!(header("logplex-msg-count"), Some(batch.len().to_string().as_str()));
        messages.extend(batch);
    }
    let expect: Vec<String> = lines.iter().map(rfc5424).collect();
    assert_eq!(messages, expect);
    until("250 sent", || drain.sent() == 250).await;
    assert_eq!(drain.dropped(), 0);
}

#[tokio::test]
async fn http_drain_retries_a_failed_batch() {
    let (port, mut requests) = http_receiver(vec![500]).await;
    let drain = Drain::spawn(DrainUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap(), "shop", loopback());
    let one = line(7);
    drain.send(&one);
    let failed = within("the first POST", requests.recv()).await.unwrap();
    let retried = within("the retry", requests.recv()).await.unwrap();
    assert_eq!(failed.body, retried.body);
    assert_eq!(split_framed(&retried.body), [rfc5424(&one)]);
    until("1 sent", || drain.sent() == 1).await;
    assert_eq!(drain.dropped(), 0);
}

#[tokio::test]
async fn http_drain_drops_a_batch_after_its_retries() {
    let (port, mut requests) = http_receiver(vec![503; 4]).await;
    let drain = Drain::spawn(DrainUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap(), "shop", loopback());
    let started = SystemTime::now();
    drain.send(&line(1));
    for _ in 0..4 {
        within("a POST", requests.recv()).await.unwrap();
    }
    until("1 dropped", || drain.dropped() == 1).await;
    assert_eq!(drain.sent(), 0);
    // Retries back off: 0.5 s + 1 s + 2 s between the four attempts.
    assert!(started.elapsed().unwrap() >= Duration::from_millis(3500));

    // The drain goes on with the next lines.
    let next = line(2);
    drain.send(&next);
    let request = within("the next POST", requests.recv()).await.unwrap();
    assert_eq!(split_framed(&request.body), [rfc5424(&next)]);
    until("1 sent", || drain.sent() == 1).await;
}

/// The test's receivers listen on loopback, which the egress policy keeps drains from unless
/// an operator allows it: these tests allow it.
fn loopback() -> std::sync::Arc<[ouro_types::egress::Cidr]> {
    vec![ouro_types::egress::Cidr::parse("127.0.0.1").unwrap()].into()
}

/// Drains obey the egress policy as dynos do: without an operator's allowance a drain to a
/// loopback (or private) address never connects, whatever the URL, and an HTTP drain drops
/// its batches; the check is made on the addresses resolved at each connection. Checked to
/// fail on the code before: there the receiver got the lines.
#[tokio::test]
async fn drains_do_not_reach_private_or_loopback_addresses() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let nothing: std::sync::Arc<[ouro_types::egress::Cidr]> = Vec::new().into();
    for url in [
        format!("syslog+tcp://127.0.0.1:{port}"),
        format!("syslog+tcp://localhost:{port}"),
        format!("http://localhost:{port}/"),
    ] {
        let parsed = DrainUrl::parse(&url).unwrap();
        let why = parsed.refused(&nothing).await.expect("refused");
        assert!(why.contains("127.0.0.1") && why.contains("OURO_EGRESS_ALLOW"), "{why}");
        assert_eq!(parsed.refused(&loopback()).await, None, "allowed by the operator");
        let drain = Drain::spawn(parsed, "shop", nothing.clone());
        drain.send(&line(1));
        let accepted = tokio::time::timeout(Duration::from_secs(2), listener.accept()).await;
        assert!(accepted.is_err(), "{url}: the drain connected");
        assert_eq!(drain.sent(), 0);
    }
}
