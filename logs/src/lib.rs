//! Ouro's log plumbing (Heroku's logplex): keep, follow and forward app log lines.
//!
//! A [`LogLine`] is one line of an app's log: a dyno's output (`app[web.1]`) or a platform event
//! (`ouro[router]`, `ouro[api]`). Lines go into a [`Hub`], which keeps the most recent ones of
//! each app (`ouro logs`), hands new ones to [`Follower`]s (`ouro logs --tail`), and a [`Drain`]
//! forwards them to a syslog (RFC 5424 over TCP, RFC 6587 octet counting) or HTTPS endpoint
//! (logplex's `application/logplex-1` batches).
//!
//! Bounds (memory never grows with the log volume or with a slow reader):
//! - text: at most [`MAX_TEXT_BYTES`] a line, cut at a char boundary;
//! - the hub: at most `capacity` lines ([`RECENT_LINES`] by default) per app, at most
//!   `max_apps` apps ([`MAX_APPS`] by default; the app touched least recently is forgotten,
//!   and its followers end). Worst case: `capacity × max_apps` lines;
//! - a follower: at most [`FOLLOW_QUEUE`] lines queued; a drain: at most [`DRAIN_QUEUE`]. When
//!   a queue is full, lines for it are dropped and counted, and its reader gets one
//!   `ouro[logs]: Error L10 (output buffer overflow): N messages dropped since …` line once
//!   there is room again;
//! - an HTTP drain retries a failed batch [`HTTP_RETRIES`] times, then drops it (counted);
//!   every connect, write and request has a timeout ([`IO_TIMEOUT`]).
//!
//! What it must never do:
//! - block or await in [`Hub::publish`] or [`Drain::send`]: they are called from the dyno
//!   runner's output readers and the router's request path; a full queue drops, never waits;
//! - hold a lock across an await;
//! - persist anything: logs live in memory (and at the drains) only.

mod drain;
mod filter;
mod hub;
mod overflow;
mod syslog;

pub use drain::{DRAIN_QUEUE, Drain, DrainUrl, HTTP_BATCH, HTTP_RETRIES, IO_TIMEOUT};
pub use filter::{Filter, MAX_PROCESS_FILTER_BYTES};
pub use hub::{FOLLOW_QUEUE, Follower, Hub, MAX_APPS, RECENT_LINES};
/// The line itself lives in `ouro-types` (the router and the runner need only it).
pub use ouro_types::log_line::{LogLine, MAX_TEXT_BYTES, Source, rfc3339};
pub use syslog::{octet_framed, rfc5424};

/// Everything that can go wrong in this crate: bad input from a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A `--dyno`/`--source` filter that is not one.
    #[error("{0}")]
    Filter(String),
    /// A drain URL that is not one this crate can forward to.
    #[error("{0}")]
    DrainUrl(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
