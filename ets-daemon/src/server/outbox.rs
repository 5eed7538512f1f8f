//! A connection's outgoing messages with a bound: a client that never reads its replies makes
//! the daemon hold at most `limit` of them, then loses its connection (its jobs end as if it
//! had left), instead of growing the daemon's memory without end.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use ets_core::protocol::Response;
use tokio::sync::{mpsc, Notify};

/// Where a connection's outgoing messages go (cloned by its jobs).
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Response>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queued: AtomicUsize,
    limit: usize,
    overflowed: AtomicBool,
    overflow: Notify,
}

/// The message was not queued: the writer is gone, or the client fell `limit` replies behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// The writer's end of an [`Outbox`].
#[derive(Debug)]
pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Response>,
    shared: Arc<Shared>,
}

/// An outbox holding at most `limit` unwritten messages.
pub fn outbox(limit: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        limit: limit.max(1),
        overflowed: AtomicBool::new(false),
        overflow: Notify::new(),
    });
    (
        Outbox {
            tx,
            shared: shared.clone(),
        },
        OutboxReceiver { rx, shared },
    )
}

impl Outbox {
    /// Queues `message` unless the client already fell too far behind.
    pub fn send(&self, message: Response) -> Result<(), Closed> {
        let s = &self.shared;
        if s.overflowed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        if s.queued.fetch_add(1, Ordering::AcqRel) >= s.limit {
            s.queued.fetch_sub(1, Ordering::AcqRel);
            s.overflowed.store(true, Ordering::Release);
            s.overflow.notify_waiters();
            s.overflow.notify_one();
            return Err(Closed);
        }
        self.tx.send(message).map_err(|_| {
            s.queued.fetch_sub(1, Ordering::AcqRel);
            Closed
        })
    }

    /// Resolves once the client has fallen `limit` replies behind.
    pub async fn overflowed(&self) {
        loop {
            let notified = self.shared.overflow.notified();
            if self.shared.overflowed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Messages queued and not yet written.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}

impl OutboxReceiver {
    /// The next message to write; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Response> {
        self.rx.recv().await
    }

    /// The next queued message, if one is waiting.
    #[cfg(test)]
    pub fn try_recv(&mut self) -> Option<Response> {
        let message = self.rx.try_recv().ok()?;
        self.written();
        Some(message)
    }

    /// Marks one received message as written (or dropped).
    pub fn written(&self) {
        self.shared.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_that_never_reads_overflows_at_the_limit() {
        let (tx, mut rx) = outbox(3);
        for _ in 0..3 {
            tx.send(Response::Done).unwrap();
        }
        assert_eq!(tx.queued(), 3);
        assert_eq!(tx.send(Response::Done), Err(Closed));
        // Overflow is final, even once the writer catches up.
        tokio::time::timeout(std::time::Duration::from_secs(1), tx.overflowed())
            .await
            .expect("overflow is signalled");
        rx.recv().await.unwrap();
        rx.written();
        assert_eq!(tx.send(Response::Done), Err(Closed));
    }

    #[tokio::test]
    async fn written_messages_free_their_place() {
        let (tx, mut rx) = outbox(2);
        for _ in 0..10 {
            tx.send(Response::Done).unwrap();
            tx.send(Response::Done).unwrap();
            rx.recv().await.unwrap();
            rx.written();
            rx.recv().await.unwrap();
            rx.written();
        }
        assert_eq!(tx.queued(), 0);
    }
}
