//! The bounded queue of messages waiting to be written to one connection.
//!
//! Messages leave in the order they were queued, except that a `metrics` message replaces
//! the pending one of the same VM and takes its place, so a connection that falls behind
//! by a cycle receives only the newest values. Other messages (alerts, pongs, errors) are
//! never dropped one by one: when the queue is full, the connection is closed as a slow
//! consumer instead, so a client never misses an alert silently.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// An encoded message, shared by every connection that receives it.
pub type Frame = Arc<str>;

/// A server-side close: its code, reason and telemetry label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub code: u16,
    pub reason: String,
    /// The label the close is counted under in the telemetry.
    pub counted_as: &'static str,
}

/// The outcome of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The message replaced a pending `metrics` message of the same VM.
    Replaced,
    /// The queue was full; the connection is now closing as a slow consumer.
    Overflow,
    /// The connection is already closing; the message was dropped.
    Closing,
}

/// Messages taken from the queue to be written together.
#[derive(Debug, Default)]
pub struct Batch {
    pub frames: Vec<Frame>,
    pub closing: Option<Closing>,
}

/// A place in the queue: a message, or the newest `metrics` message of a VM.
#[derive(Debug)]
enum Slot {
    Message(Frame),
    Metrics(Arc<str>),
}

#[derive(Debug, Default)]
struct Pending {
    order: VecDeque<Slot>,
    /// The newest `metrics` message of each VM with a slot in `order`.
    metrics: HashMap<Arc<str>, Frame>,
    closing: Option<Closing>,
}

impl Pending {
    fn len(&self) -> usize {
        self.order.len()
    }
}

/// One connection's queue; the fan-out and the connection's reader push, its writer takes.
#[derive(Debug)]
pub struct Outbox {
    capacity: usize,
    pending: Mutex<Pending>,
    ready: Notify,
}

impl Outbox {
    /// Creates a queue of at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            pending: Mutex::new(Pending::default()),
            ready: Notify::new(),
        }
    }

    /// Queues a message; wakes the writer when `wake`.
    pub fn push(&self, frame: Frame, overflow: &Closing, wake: bool) -> Pushed {
        let pushed = {
            let mut pending = self.lock();
            if pending.closing.is_some() {
                return Pushed::Closing;
            }
            if pending.len() >= self.capacity {
                pending.closing = Some(overflow.clone());
                Pushed::Overflow
            } else {
                pending.order.push_back(Slot::Message(frame));
                Pushed::Queued
            }
        };
        if wake || pushed == Pushed::Overflow {
            self.wake();
        }
        pushed
    }

    /// Queues the newest `metrics` message of `vm_id`, replacing a pending one.
    pub fn push_metrics(
        &self,
        vm_id: &Arc<str>,
        frame: Frame,
        overflow: &Closing,
        wake: bool,
    ) -> Pushed {
        let pushed = {
            let mut pending = self.lock();
            if pending.closing.is_some() {
                return Pushed::Closing;
            }
            if let Some(slot) = pending.metrics.get_mut(vm_id) {
                *slot = frame;
                Pushed::Replaced
            } else if pending.len() >= self.capacity {
                pending.closing = Some(overflow.clone());
                Pushed::Overflow
            } else {
                pending.order.push_back(Slot::Metrics(vm_id.clone()));
                pending.metrics.insert(vm_id.clone(), frame);
                Pushed::Queued
            }
        };
        if wake || pushed == Pushed::Overflow {
            self.wake();
        }
        pushed
    }

    /// Drops the pending `metrics` messages of VMs no longer subscribed.
    pub fn forget_metrics(&self, keep: impl Fn(&str) -> bool) {
        let mut pending = self.lock();
        let Pending { order, metrics, .. } = &mut *pending;
        metrics.retain(|vm_id, _| keep(vm_id));
        order.retain(|slot| match slot {
            Slot::Message(_) => true,
            Slot::Metrics(vm_id) => metrics.contains_key(vm_id),
        });
    }

    /// Asks the writer to close the connection; the first request wins.
    pub fn close(&self, closing: Closing) {
        {
            let mut pending = self.lock();
            if pending.closing.is_some() {
                return;
            }
            pending.closing = Some(closing);
        }
        self.wake();
    }

    /// Wakes the writer; a wake with no writer waiting is kept for its next wait.
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// Waits until there may be something to take.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Takes everything pending, in queue order.
    pub fn take(&self) -> Batch {
        let mut pending = self.lock();
        let order = std::mem::take(&mut pending.order);
        let mut metrics = std::mem::take(&mut pending.metrics);
        let mut frames = Vec::with_capacity(order.len());
        for slot in order {
            match slot {
                Slot::Message(frame) => frames.push(frame),
                Slot::Metrics(vm_id) => frames.extend(metrics.remove(&vm_id)),
            }
        }
        Batch {
            frames,
            closing: pending.closing.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overflow() -> Closing {
        Closing {
            code: 1013,
            reason: "slow".to_owned(),
            counted_as: "slow_consumer",
        }
    }

    #[test]
    fn metrics_of_one_vm_coalesce() {
        let outbox = Outbox::new(4);
        let vm: Arc<str> = Arc::from("vm-1");

        let first = outbox.push_metrics(&vm, Arc::from("old"), &overflow(), false);
        let second = outbox.push_metrics(&vm, Arc::from("new"), &overflow(), false);
        let batch = outbox.take();

        assert_eq!(first, Pushed::Queued);
        assert_eq!(second, Pushed::Replaced);
        assert_eq!(batch.frames, vec![Arc::<str>::from("new")]);
        assert!(batch.closing.is_none());
    }

    #[test]
    fn full_queue_closes_instead_of_dropping() {
        let outbox = Outbox::new(2);
        outbox.push(Arc::from("a"), &overflow(), false);
        outbox.push(Arc::from("b"), &overflow(), false);

        let third = outbox.push(Arc::from("c"), &overflow(), false);
        let after = outbox.push(Arc::from("d"), &overflow(), false);
        let batch = outbox.take();

        assert_eq!(third, Pushed::Overflow);
        assert_eq!(after, Pushed::Closing);
        assert_eq!(batch.frames.len(), 2);
        assert_eq!(batch.closing, Some(overflow()));
    }

    #[test]
    fn replaced_metrics_keep_their_place() {
        let outbox = Outbox::new(8);
        let vm: Arc<str> = Arc::from("vm-1");
        outbox.push_metrics(&vm, Arc::from("old metrics"), &overflow(), false);
        outbox.push(Arc::from("pong"), &overflow(), false);
        outbox.push_metrics(&vm, Arc::from("new metrics"), &overflow(), false);

        let batch = outbox.take();

        assert_eq!(
            batch.frames,
            vec![Arc::<str>::from("new metrics"), Arc::from("pong")]
        );
    }

    #[test]
    fn forgotten_metrics_are_not_sent() {
        let outbox = Outbox::new(8);
        let kept: Arc<str> = Arc::from("kept");
        let dropped: Arc<str> = Arc::from("dropped");
        outbox.push_metrics(&kept, Arc::from("k"), &overflow(), false);
        outbox.push_metrics(&dropped, Arc::from("d"), &overflow(), false);

        outbox.forget_metrics(|vm_id| vm_id == "kept");

        assert_eq!(outbox.take().frames, vec![Arc::<str>::from("k")]);
    }
}
