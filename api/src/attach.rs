//! Where the two halves of an attached one-off dyno meet (`ouro run`): the caller's upgraded
//! connection (`GET /apps/{app}/dynos/run.N/attach`) and the runner's
//! (`GET /runner/attach/{app}/run.N`), in either order. Whichever comes first waits (bounded);
//! the second hands its connection over and the first copies bytes both ways until one side
//! closes. The bytes are `ouro_types::attach` frames, which the API never reads: it only
//! writes an `ERROR` frame to a side whose partner never came.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

pub type Stream = TokioIo<Upgraded>;

/// Which half a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// A half waiting for its partner: its side, a number telling it from a later waiter of the
/// same key, and where to send the partner's connection.
type Waiting = (Side, u64, oneshot::Sender<Stream>);

#[derive(Default)]
pub struct Rendezvous {
    waiting: Mutex<HashMap<String, Waiting>>,
    next: std::sync::atomic::AtomicU64,
}

impl Rendezvous {
    /// Brings `mine` (of `side`) to the other half of `key` (`<app>/run.N`) and, if this side
    /// came first, copies between the two once the other comes. Runs until the session ends.
    pub async fn meet(&self, key: String, side: Side, mut mine: Stream) {
        let waiting = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match waiting.remove(&key) {
                Some((other, _, partner)) if other != side => match partner.send(mine) {
                    Ok(()) => return,
                    // The other side gave up just now: wait in its place.
                    Err(back) => {
                        mine = back;
                        None
                    }
                },
                Some(same) => {
                    // A second connection of one side: the first keeps its place.
                    waiting.insert(key.clone(), same);
                    Some(())
                }
                None => None,
            }
        };
        if waiting.is_some() {
            refuse(&mut mine, "this one-off dyno is attached already").await;
            return;
        }
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), (side, id, tx));
        match tokio::time::timeout(side.patience(), rx).await {
            Ok(Ok(mut theirs)) => {
                let copied = tokio::io::copy_bidirectional(&mut mine, &mut theirs).await;
                tracing::debug!(%key, ?copied, "attached session ended");
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

async fn refuse(stream: &mut Stream, reason: &str) {
    let _ = stream.write_all(&ouro_types::attach::frame(ouro_types::attach::ERROR, reason.as_bytes())).await;
    let _ = stream.shutdown().await;
}
