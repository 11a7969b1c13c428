//! An upgraded connection to the API (a tunnel, an attached dyno), in clear or over TLS, that
//! one thread reads while others write: a handle ([`Upgraded`], cheap to clone) with `Read`,
//! `Write` and half-close.
//!
//! Over TLS the socket is read outside the lock (a blocked read holds nothing), and the TLS
//! state is locked only to decrypt what came or to encrypt and send what goes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone)]
pub struct Upgraded(Arc<Inner>);

enum Inner {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

struct Tls {
    socket: TcpStream,
    state: Mutex<rustls::ClientConnection>,
    /// Bytes read from the socket that rustls has not taken yet (its buffer was full).
    pending: Mutex<Vec<u8>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Upgraded {
    pub fn plain(socket: TcpStream) -> Self {
        Self(Arc::new(Inner::Plain(socket)))
    }

    /// A TLS connection whose handshake is done.
    pub fn tls(socket: TcpStream, state: rustls::ClientConnection) -> Self {
        Self(Arc::new(Inner::Tls(Box::new(Tls { socket, state: Mutex::new(state), pending: Mutex::new(Vec::new()) }))))
    }

    /// Ends what this side sends (`Write`: a TLS close_notify first); `Both` closes the socket.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match &*self.0 {
            Inner::Plain(socket) => socket.shutdown(how),
            Inner::Tls(tls) => {
                let mut state = locked(&tls.state);
                state.send_close_notify();
                let _ = flush(&mut state, &tls.socket);
                tls.socket.shutdown(how)
            }
        }
    }
}

/// Sends whatever rustls has to send.
fn flush(state: &mut rustls::ClientConnection, mut socket: &TcpStream) -> io::Result<()> {
    while state.wants_write() {
        state.write_tls(&mut socket)?;
    }
    Ok(())
}

impl Read for Upgraded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let tls = match &*self.0 {
            Inner::Plain(socket) => return (&*socket).read(buf),
            Inner::Tls(tls) => tls,
        };
        loop {
            {
                let mut state = locked(&tls.state);
                match state.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                let mut pending = locked(&tls.pending);
                if !pending.is_empty() {
                    let mut rest = &pending[..];
                    state.read_tls(&mut rest)?;
                    let taken = pending.len() - rest.len();
                    pending.drain(..taken);
                    state.process_new_packets().map_err(io::Error::other)?;
                    flush(&mut state, &tls.socket)?;
                    continue;
                }
            }
            let mut raw = [0u8; 16 * 1024];
            let n = (&tls.socket).read(&mut raw)?;
            if n == 0 {
                // Closed without a close_notify: the end all the same.
                return Ok(0);
            }
            locked(&tls.pending).extend_from_slice(&raw[..n]);
        }
    }
}

impl Write for Upgraded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &*self.0 {
            Inner::Plain(socket) => (&*socket).write(buf),
            Inner::Tls(tls) => {
                let mut state = locked(&tls.state);
                let n = state.writer().write(buf)?;
                flush(&mut state, &tls.socket)?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &*self.0 {
            Inner::Plain(socket) => (&*socket).flush(),
            Inner::Tls(tls) => flush(&mut locked(&tls.state), &tls.socket),
        }
    }
}
