//! The build log: lines go to the API (`POST output`) in batches, at most every 0.2 s, from a
//! thread of their own, so the pusher sees them live and a slow API never blocks the build.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crate::api::Api;

/// The pause between two batches.
const BATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How long [`Log::close`] waits for the last lines to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The log of one build.
pub struct Log {
    queue: Arc<Queue>,
    /// Disconnected when the sending thread has ended.
    ended: mpsc::Receiver<()>,
}

#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    lines: Vec<String>,
    closed: bool,
}

impl Log {
    /// Starts the thread that sends the lines through `api`.
    pub fn start(api: Api) -> Log {
        let queue = Arc::new(Queue::default());
        let (ended_tx, ended) = mpsc::channel::<()>();
        let sender = Arc::clone(&queue);
        thread::spawn(move || {
            let _ended = ended_tx;
            send_forever(&sender, &api);
        });
        Log { queue, ended }
    }

    /// Adds one line (its trailing newlines replaced by one); never waits for the API.
    pub fn line(&self, text: &str) {
        let mut state = self.queue.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.lines.push(format!("{}\n", text.trim_end_matches('\n')));
        self.queue.changed.notify_one();
    }

    /// `-----> text`: a step of the build.
    pub fn topic(&self, text: &str) {
        self.line(&format!("-----> {text}"));
    }

    /// `       text`: a detail of the current step.
    pub fn info(&self, text: &str) {
        self.line(&format!("       {text}"));
    }

    /// Sends what is left and ends the thread, waiting for it at most [`CLOSE_TIMEOUT`].
    pub fn close(self) {
        {
            let mut state = self.queue.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.closed = true;
            self.queue.changed.notify_one();
        }
        let _ = self.ended.recv_timeout(CLOSE_TIMEOUT);
    }
}

/// Sends batches until the log is closed and every line has been sent (or given up on after
/// the API's retries).
fn send_forever(queue: &Queue, api: &Api) {
    loop {
        let (batch, closed) = take(queue);
        if !batch.is_empty() {
            // A batch the API does not take after its retries is dropped: the build goes on.
            let _ = api.post_output(&batch.concat());
        }
        if closed {
            return;
        }
        thread::sleep(BATCH_INTERVAL);
    }
}

/// Waits for lines or the close; takes all lines queued, and whether the log is closed (then
/// no line comes after them).
fn take(queue: &Queue) -> (Vec<String>, bool) {
    let state = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut state = queue
        .changed
        .wait_while(state, |state| state.lines.is_empty() && !state.closed)
        .unwrap_or_else(PoisonError::into_inner);
    (std::mem::take(&mut state.lines), state.closed)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::test_api::{Reply, StandIn};

    #[test]
    fn lines_arrive_in_batches_in_order_and_none_is_lost_at_close() {
        let api = StandIn::start(|_| Reply::status(204));
        let log = Log::start(Api::new(&api.url, "b1", "secret"));
        let mut expected = String::new();
        for n in 0..2000 {
            log.line(&format!("line {n}\n"));
            expected.push_str(&format!("line {n}\n"));
            if n % 500 == 0 {
                thread::sleep(Duration::from_millis(250));
            }
        }
        log.topic("Compressing...");
        log.info("Done: 1.0M");
        expected.push_str("-----> Compressing...\n       Done: 1.0M\n");
        log.close();

        let posts = api.requests();
        assert!(posts.iter().all(|r| r.method == "POST" && r.path == "/build-api/b1/output"), "{posts:?}");
        assert!(posts.iter().all(|r| r.header("authorization") == Some("Bearer secret")));
        assert!(posts.len() > 1 && posts.len() < 100, "{} batches for 2002 lines", posts.len());
        let sent: String = posts.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
        let differs = sent.lines().zip(expected.lines()).position(|(got, want)| got != want);
        assert_eq!((sent.lines().count(), differs), (expected.lines().count(), None), "lines sent, first out of place");
        assert_eq!(sent, expected);
    }

    #[test]
    fn a_slow_api_does_not_block_the_build() {
        let api = StandIn::start(|_| Reply::status(204).after(Duration::from_millis(700)));
        let log = Log::start(Api::new(&api.url, "b1", "secret"));
        log.line("first");
        thread::sleep(Duration::from_millis(100)); // The first batch is on its way.
        let started = Instant::now();
        for n in 0..1000 {
            log.line(&format!("line {n}"));
        }
        assert!(started.elapsed() < Duration::from_millis(300), "adding lines took {:?}", started.elapsed());
        log.close();
        let sent: String = api.requests().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
        assert_eq!(sent.lines().count(), 1001);
        assert!(sent.ends_with("line 999\n"));
    }

    #[test]
    fn an_api_that_refuses_lines_does_not_stop_the_log() {
        let api = StandIn::start(|_| Reply::status(410));
        let log = Log::start(Api::new(&api.url, "b1", "secret"));
        log.line("lost");
        log.close();
        // Three attempts at the one batch, then the thread ends.
        assert_eq!(api.requests().len(), 3);
    }
}
