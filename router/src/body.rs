//! Bodies on both sides of the proxy.
//!
//! - [`RequestBody`] forwards the client's body to a dyno, and lets the proxy know whether any of
//!   it was taken: a request whose body has started to be sent is never retried.
//! - [`ResponseBody`] forwards the dyno's response (or carries a router page) and runs the log
//!   phase when the response ends, is broken, or is dropped because the client went away.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::error::{ErrorKind, ProxyError};
use crate::proxy::RequestCtx;
use crate::table::InFlight;

/// The client's body, shared between attempts until one attempt starts sending it.
#[derive(Debug)]
pub(crate) enum BodySource {
    /// No body: every attempt may send "nothing".
    Empty,
    Streaming(Arc<BodySlot>),
}

#[derive(Debug)]
pub(crate) struct BodySlot {
    /// Taken by the first attempt whose connection polls the body.
    body: Mutex<Option<Incoming>>,
    hint: SizeHint,
    /// Set when reading from the client failed (the client went away mid-upload).
    client_failed: AtomicBool,
}

/// The body of one upstream attempt.
#[derive(Debug)]
pub(crate) enum RequestBody {
    Empty,
    Slot { slot: Arc<BodySlot>, taken: Option<Incoming>, done: bool },
}

impl BodySource {
    pub fn new(body: Incoming) -> BodySource {
        if body.is_end_stream() {
            BodySource::Empty
        } else {
            let hint = body.size_hint();
            BodySource::Streaming(Arc::new(BodySlot {
                body: Mutex::new(Some(body)),
                hint,
                client_failed: AtomicBool::new(false),
            }))
        }
    }

    /// A body for the next attempt; it reads from the client only if the attempt gets that far.
    pub fn attempt(&self) -> RequestBody {
        match self {
            BodySource::Empty => RequestBody::Empty,
            BodySource::Streaming(slot) => RequestBody::Slot { slot: Arc::clone(slot), taken: None, done: false },
        }
    }

    /// True while no attempt has taken any of the body: another attempt may still send all of it.
    pub fn untouched(&self) -> bool {
        match self {
            BodySource::Empty => true,
            BodySource::Streaming(slot) => slot.body.lock().unwrap_or_else(PoisonError::into_inner).is_some(),
        }
    }

    /// True when reading the client's body failed.
    pub fn client_failed(&self) -> bool {
        match self {
            BodySource::Empty => false,
            BodySource::Streaming(slot) => slot.client_failed.load(Ordering::Relaxed),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Slot { slot, taken, done } => {
                if *done {
                    return Poll::Ready(None);
                }
                if taken.is_none() {
                    *taken = slot.body.lock().unwrap_or_else(PoisonError::into_inner).take();
                }
                let Some(body) = taken.as_mut() else {
                    // Another attempt took the body; cannot happen since attempts are sequential.
                    *done = true;
                    return Poll::Ready(None);
                };
                let polled = Pin::new(body).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => *done = true,
                    Poll::Ready(Some(Err(_))) => {
                        *done = true;
                        slot.client_failed.store(true, Ordering::Relaxed);
                    }
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Slot { taken: Some(body), done, .. } => *done || body.is_end_stream(),
            RequestBody::Slot { done, .. } => *done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Slot { taken: Some(body), .. } => body.size_hint(),
            RequestBody::Slot { slot, .. } => slot.hint,
        }
    }
}

/// The body of the response sent to the client.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    inner: Inner,
    /// Present for proxied responses until the log phase has run.
    tail: Option<Box<Tail>>,
}

#[derive(Debug)]
enum Inner {
    Upstream { body: Incoming, ended: bool },
    Page(Option<Bytes>),
}

#[derive(Debug)]
struct Tail {
    ctx: RequestCtx,
    _in_flight: InFlight,
    bytes: u64,
}

impl ResponseBody {
    /// A body answered by the router itself (error pages).
    pub(crate) fn page(bytes: Bytes) -> ResponseBody {
        ResponseBody { inner: Inner::Page(Some(bytes)), tail: None }
    }

    pub(crate) fn empty() -> ResponseBody {
        ResponseBody { inner: Inner::Page(None), tail: None }
    }

    /// A dyno's body; the request counts as in flight on that dyno and is logged when it ends.
    pub(crate) fn upstream(body: Incoming, ctx: RequestCtx, in_flight: InFlight) -> ResponseBody {
        ResponseBody {
            inner: Inner::Upstream { body, ended: false },
            tail: Some(Box::new(Tail { ctx, _in_flight: in_flight, bytes: 0 })),
        }
    }

    fn finish(&mut self, error: Option<ErrorKind>) {
        if let Some(mut tail) = self.tail.take() {
            tail.ctx.bytes = Some(tail.bytes);
            if let Some(kind) = error {
                tail.ctx.error = Some(ProxyError::new(kind));
            }
            tail.ctx.log();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let (body, ended) = match &mut this.inner {
            Inner::Page(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream { body, ended } => (body, ended),
        };
        let polled = Pin::new(body).poll_frame(cx);
        let outcome = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(tail)) = (frame.data_ref(), this.tail.as_mut()) {
                    tail.bytes += data.len() as u64;
                }
                return polled;
            }
            Poll::Pending => return polled,
            Poll::Ready(Some(Err(_))) => Some(ErrorKind::ServerInterrupted),
            Poll::Ready(None) => None,
        };
        *ended = true;
        this.finish(outcome);
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Page(bytes) => bytes.is_none(),
            Inner::Upstream { body, ended } => *ended || body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Page(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Upstream { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.tail.is_some() {
            // hyper stops polling once a body reports its end, so a complete body may be dropped
            // without a final `None`; anything else means the client stopped reading.
            let complete = self.is_end_stream();
            self.finish(if complete { None } else { Some(ErrorKind::ClientInterrupted) });
        }
    }
}
