//! A stand-in for the build API in tests: a tiny HTTP/1.1 server on 127.0.0.1 that answers
//! each request as its handler says (one request per connection) and records what it got.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// What the stand-in answers.
pub struct Reply {
    status: u16,
    body: Vec<u8>,
    delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, body: Vec::new(), delay: Duration::ZERO }
    }

    pub fn body(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply { status, body: body.into(), delay: Duration::ZERO }
    }

    /// The same reply, sent after `delay`.
    pub fn after(self, delay: Duration) -> Reply {
        Reply { delay, ..self }
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running stand-in; it serves until the test process ends.
pub struct StandIn {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl StandIn {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let (handler, recorded) = (Arc::clone(&handler), Arc::clone(&recorded));
                thread::spawn(move || serve(stream.unwrap(), &*handler, &recorded));
            }
        });
        StandIn { url, requests }
    }

    /// The requests answered so far, in the order they were answered.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, handler: &Handler, recorded: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap().to_string(), parts.next().unwrap().to_string());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (key, value) = line.split_once(':').unwrap();
        headers.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut request = Request { method, path, headers, body: Vec::new() };
    assert!(request.header("transfer-encoding").is_none(), "the stand-in takes Content-Length bodies only");
    let length = request.header("content-length").map_or(0, |n| n.parse().unwrap());
    request.body = vec![0; length];
    reader.read_exact(&mut request.body).unwrap();
    let reply = handler(&request);
    thread::sleep(reply.delay);
    recorded.lock().unwrap().push(request);
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 {} Stand-in\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&reply.body));
}
