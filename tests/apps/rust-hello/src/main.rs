//! rust-hello: answers `GET /` on $PORT with "hello from rust" (and `GREETING` when set), using
//! only std for HTTP and `itoa` (from crates.io) for the Content-Length, one request at a time.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(5000);
    let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind $PORT");
    println!("rust-hello listening on 0.0.0.0:{port}");
    let greeting = std::env::var("GREETING").ok().filter(|g| !g.is_empty());
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(err) = answer(stream, greeting.as_deref()) {
                    eprintln!("request failed: {err}");
                }
            }
            Err(err) => eprintln!("accept failed: {err}"),
        }
    }
}

fn answer(mut stream: TcpStream, greeting: Option<&str>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers, up to the blank line; there is no body to read for GET.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 0 && header.trim_end() != "" {
        header.clear();
    }
    let (status, body) = if request_line.starts_with("GET / ") {
        let mut body = String::from("hello from rust");
        if let Some(greeting) = greeting {
            body.push_str(&format!(" ({greeting})"));
        }
        ("200 OK", body + "\n")
    } else {
        ("404 Not Found", "not found\n".to_owned())
    };
    let mut length = itoa::Buffer::new();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        length.format(body.len())
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
