//! Where the two halves of an attached one-off dyno meet (`ouro run`): the caller's upgraded
//! connection (`GET /apps/{app}/dynos/run.N/attach`) and the runner's
//! (`GET /runner/attach/{app}/run.N`), in either order. Whichever comes first waits (bounded);
//! the second hands its connection over and the first copies bytes both ways until one side
//! closes or either side's session is ended (its token refused). The bytes are `ouro_types::attach` frames, which the API never reads: it only
//! writes an `ERROR` frame to a side whose partner never came.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

pub type Stream = TokioIo<Upgraded>;

/// Which half a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// `ouro run`: waits for the dyno, whose image may first be built.
    Caller,
    /// The runner, bridging the container.
    Dyno,
}

impl Side {
    /// How long this side waits for the other.
    fn patience(self) -> Duration {
        match self {
            Side::Caller => Duration::from_secs(180),
            Side::Dyno => Duration::from_secs(30),
        }
    }

    fn missing(self) -> &'static str {
        match self {
            Side::Caller => "the dyno did not start within 180 s; `ouro ps` and `ouro logs` say why",
            Side::Dyno => "the caller went away before the dyno started",
        }
    }
}

/// What the second half hands the first: its connection, and a receiver that resolves once the
/// second half is gone (its future dropped: its token was refused), which ends the copy.
type Handover<S> = (S, oneshot::Receiver<()>);

/// A half waiting for its partner: its side, a number telling it from a later waiter of the
/// same key, and where to send the partner's connection.
type Waiting<S> = (Side, u64, oneshot::Sender<Handover<S>>);

pub struct Rendezvous<S = Stream> {
    waiting: Mutex<HashMap<String, Waiting<S>>>,
    next: std::sync::atomic::AtomicU64,
}

impl<S> Default for Rendezvous<S> {
    fn default() -> Self {
        Rendezvous { waiting: Mutex::default(), next: Default::default() }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Rendezvous<S> {
    /// Brings `mine` (of `side`) to the other half of `key` (`<app>/run.N`) and runs until the
    /// session ends, whichever side came first: the first copies between the two once the
    /// other comes; the second hands its connection over and waits for the copy to end.
    /// Dropping either side's future ends the session for both (that is how a refused token
    /// ends it, whichever side it belongs to).
    pub async fn meet(&self, key: String, side: Side, mine: S) {
        enum Next<S> {
            /// Handed over: wait until the copier drops the receiver of this.
            Handed(oneshot::Sender<()>),
            Refuse(S),
            Wait(S),
        }
        let next = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match waiting.remove(&key) {
                Some((other, _, partner)) if other != side => {
                    let (here, gone) = oneshot::channel();
                    match partner.send((mine, gone)) {
                        Ok(()) => Next::Handed(here),
                        // The other side gave up just now: wait in its place.
                        Err((back, _)) => Next::Wait(back),
                    }
                }
                Some(same) => {
                    // A second connection of one side: the first keeps its place.
                    waiting.insert(key.clone(), same);
                    Next::Refuse(mine)
                }
                None => Next::Wait(mine),
            }
        };
        let mut mine = match next {
            Next::Handed(mut here) => {
                // Resolves once the copier dropped `gone`: the session is over.
                here.closed().await;
                return;
            }
            Next::Refuse(mut mine) => {
                refuse(&mut mine, "this one-off dyno is attached already").await;
                return;
            }
            Next::Wait(mine) => mine,
        };
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), (side, id, tx));
        match tokio::time::timeout(side.patience(), rx).await {
            Ok(Ok((mut theirs, gone))) => {
                tokio::select! {
                    copied = tokio::io::copy_bidirectional(&mut mine, &mut theirs) => {
                        tracing::debug!(%key, ?copied, "attached session ended");
                    }
                    _ = gone => tracing::debug!(%key, "attached session ended by the half that came second"),
                }
            }
            _ => {
                {
                    let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                    if waiting.get(&key).is_some_and(|(_, mine, _)| *mine == id) {
                        waiting.remove(&key);
                    }
                }
                refuse(&mut mine, side.missing()).await;
            }
        }
    }
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, reason: &str) {
    let _ = stream.write_all(&ouro_types::attach::frame(ouro_types::attach::ERROR, reason.as_bytes())).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, DuplexStream, duplex};

    /// The two ends a test holds (the user's terminal, the dyno) and the two the API meets.
    fn pipes() -> ((DuplexStream, DuplexStream), (DuplexStream, DuplexStream)) {
        let (user, caller) = duplex(1024);
        let (dyno, runner) = duplex(1024);
        ((user, dyno), (caller, runner))
    }

    async fn ended(end: &mut DuplexStream) -> bool {
        let mut buf = [0u8; 16];
        matches!(tokio::time::timeout(Duration::from_secs(5), end.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
    }

    /// Ending the session of either half — the one that came first or the one that came
    /// second — closes both ends, so a refused token ends `ouro run` whatever the order.
    #[tokio::test]
    async fn either_half_ends_the_session_whichever_came_first() {
        for (first, second, ended_side) in [
            (Side::Dyno, Side::Caller, Side::Caller),
            (Side::Caller, Side::Dyno, Side::Caller),
            (Side::Dyno, Side::Caller, Side::Dyno),
        ] {
            let rendezvous = std::sync::Arc::new(Rendezvous::<DuplexStream>::default());
            let ((mut user, mut dyno), (caller, runner)) = pipes();
            let mut halves =
                std::collections::HashMap::from([(Side::Caller, Some(caller)), (Side::Dyno, Some(runner))]);
            let mut tasks = std::collections::HashMap::new();
            for side in [first, second] {
                let stream = halves.get_mut(&side).and_then(Option::take).expect("a stream");
                let r = rendezvous.clone();
                tasks.insert(side, tokio::spawn(async move { r.meet("a/run.1".into(), side, stream).await }));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            user.write_all(b"ping").await.expect("write");
            let mut buf = [0u8; 4];
            dyno.read_exact(&mut buf).await.expect("the bytes cross");
            assert_eq!(&buf, b"ping");
            tasks[&ended_side].abort();
            assert!(ended(&mut user).await, "{first:?} first, {ended_side:?} ended: the user's end closes");
            assert!(ended(&mut dyno).await, "{first:?} first, {ended_side:?} ended: the dyno's end closes");
        }
    }
}
