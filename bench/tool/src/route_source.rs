//! A static route source for bench/router/run.sh: the dyno runner's `GET /routes` with one
//! route, version 1, so that the router can be measured without Docker.
//!
//! `GET /routes` and `GET /routes?after=0` answer the table at once; `after=N` with N >= 1 is a
//! long poll the table never changes for, held 25 s as the dyno runner holds it, so the router
//! does not poll in a loop. A thread per connection, one request per connection.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How long a poll for a version after the current one is held.
const HOLD: Duration = Duration::from_secs(25);
/// Request heads larger than this are refused (the router's are about 100 bytes).
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// A client that sends no complete head within this is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Listens on 127.0.0.1 at a port the kernel picks, prints
/// `route-source listening on http://ADDR`, and serves until killed.
pub fn serve(host: &str, backend: &str) -> Result<(), String> {
    let table: Arc<str> = table(host, backend).into();
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("route-source listening on http://{addr}");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    for connection in listener.incoming() {
        match connection {
            Ok(stream) => {
                let table = Arc::clone(&table);
                // A client that goes away mid-answer is no concern of the benchmark's.
                std::thread::spawn(move || drop(handle(stream, &table)));
            }
            Err(e) => eprintln!("route-source: accepting a connection: {e}"),
        }
    }
    Ok(())
}

/// The route table: HOST served by one web dyno at BACKEND.
fn table(host: &str, backend: &str) -> String {
    use crate::json::string;
    format!(
        r#"{{"version":1,"routes":[{{"app":"bench","hosts":[{}],"backends":[{{"dyno":"web.1","addr":{}}}]}}]}}"#,
        string(host),
        string(backend)
    )
}

fn handle(mut stream: TcpStream, table: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    let reply = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break answer(&head);
        }
        if head.len() > MAX_HEAD_BYTES {
            break Reply::Status(431, "Request Header Fields Too Large");
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let response = match reply {
        Reply::Table { hold } => {
            if hold {
                std::thread::sleep(HOLD);
            }
            response(200, "OK", "application/json", table)
        }
        Reply::Status(code, reason) => response(code, reason, "text/plain", &format!("{reason}\n")),
    };
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

#[derive(Debug, PartialEq)]
enum Reply {
    /// The table, after the hold time if `hold`.
    Table {
        hold: bool,
    },
    Status(u16, &'static str),
}

/// What a request head asks for.
fn answer(head: &[u8]) -> Reply {
    let head = String::from_utf8_lossy(head);
    let mut request_line = head.lines().next().unwrap_or_default().split_whitespace();
    let (Some(method), Some(target), Some(_version), None) =
        (request_line.next(), request_line.next(), request_line.next(), request_line.next())
    else {
        return Reply::Status(400, "Bad Request");
    };
    if method != "GET" {
        return Reply::Status(405, "Method Not Allowed");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/routes" {
        return Reply::Status(404, "Not Found");
    }
    // The first non-empty `after`, as Python's parse_qs took it; none means 0.
    let after = query.split('&').filter_map(|pair| pair.strip_prefix("after=")).find(|v| !v.is_empty());
    match after.map(str::parse::<i128>) {
        None => Reply::Table { hold: false },
        Some(Ok(after)) => Reply::Table { hold: after >= 1 },
        Some(Err(_)) => Reply::Status(400, "Bad Request"),
    }
}

fn response(code: u16, reason: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn the_table_routes_the_host_to_the_backend() {
        let routes = json::parse(&table("bench.localhost", "127.0.0.1:8080")).unwrap();
        let check = |path: &str, expect: &str| assert_eq!(json::text(json::get(&routes, path).unwrap()), expect);
        check("version", "1");
        check("routes.0.app", "bench");
        check("routes.0.hosts.0", "bench.localhost");
        check("routes.0.backends.0.dyno", "web.1");
        check("routes.0.backends.0.addr", "127.0.0.1:8080");
        assert_eq!(json::get(&routes, "routes.1").ok(), None);
        let odd = json::parse(&table("a\"b", "c\\d")).unwrap();
        assert_eq!(json::text(json::get(&odd, "routes.0.hosts.0").unwrap()), "a\"b");
    }

    #[test]
    fn polls_after_the_version_are_held() {
        let check = |head: &str, expect: Reply| assert_eq!(answer(head.as_bytes()), expect, "{head:?}");
        check("GET /routes HTTP/1.1\r\nHost: x\r\n\r\n", Reply::Table { hold: false });
        check("GET /routes?after=0 HTTP/1.1\r\n\r\n", Reply::Table { hold: false });
        check("GET /routes?after=1 HTTP/1.1\r\n\r\n", Reply::Table { hold: true });
        check("GET /routes?x=2&after=&after=18446744073709551615 HTTP/1.1\r\n\r\n", Reply::Table { hold: true });
        check("GET /routes?after=-1 HTTP/1.0\n\n", Reply::Table { hold: false });
        check("GET /routes?after=x HTTP/1.1\r\n\r\n", Reply::Status(400, "Bad Request"));
        check("GET /other HTTP/1.1\r\n\r\n", Reply::Status(404, "Not Found"));
        check("POST /routes HTTP/1.1\r\n\r\n", Reply::Status(405, "Method Not Allowed"));
        check("GET /routes\r\n\r\n", Reply::Status(400, "Bad Request"));
        check("\r\n\r\n", Reply::Status(400, "Bad Request"));
    }
}
