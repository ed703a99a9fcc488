//! The hand-over between stages: buffer pools allocated once at start, and
//! one-item queues where the newest item wins.
//!
//! A buffer leaves its [`Pool`] for the stage that fills it, travels
//! downstream through [`LatestSender`]s, and goes back to the pool through
//! a [`Recycler`] once its last reader is done with it, so that the steady
//! state allocates nothing. A stage that finds the next queue full takes
//! the stale item back (recycling it, counted as a drop) and puts the newer
//! one in: the next stage always works on the newest item.

use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use vosd_engine::frame::{LabelMask, RgbFrame};

use crate::source::FrameMeta;

/// A captured frame: the frame pool's buffer, filled by the capture stage
/// and read by the segment stage.
pub(super) struct FrameBuf {
    /// What the source said about the frame.
    pub(super) meta: FrameMeta,
    /// Its pixels.
    pub(super) rgb: RgbFrame,
}

impl FrameBuf {
    /// An empty buffer for `width`×`height` frames.
    pub(super) fn new(width: usize, height: usize) -> Self {
        Self {
            meta: FrameMeta::default(),
            rgb: RgbFrame::new(width, height),
        }
    }
}

/// A segmented frame: the mask pool's buffer, filled by the segment stage
/// and read by the publish stage.
pub(super) struct MaskBuf {
    /// The frame's description, copied from its [`FrameBuf`].
    pub(super) meta: FrameMeta,
    /// The frame's label mask.
    pub(super) mask: LabelMask,
    /// Ids of the objects tracked in it (capacity 256, never reallocated).
    pub(super) ids: Vec<u8>,
    /// The segmenter's confidence per object, in the order of `ids`
    /// (capacity 256); empty when the segmenter gives none.
    pub(super) confidences: Vec<f32>,
}

impl MaskBuf {
    /// An empty buffer for `width`×`height` masks.
    pub(super) fn new(width: usize, height: usize) -> Self {
        Self {
            meta: FrameMeta::default(),
            mask: LabelMask::new(width, height),
            ids: Vec::with_capacity(256),
            confidences: Vec::with_capacity(256),
        }
    }
}

/// Buffers allocated once and handed out in turn; the stage that holds the
/// pool takes them, any stage gives them back through a [`Recycler`].
pub(crate) struct Pool<T> {
    back: Sender<T>,
    free: Receiver<T>,
}

impl<T> Pool<T> {
    /// A pool of `n` buffers made by `make`.
    pub(crate) fn new(n: usize, mut make: impl FnMut() -> T) -> Self {
        let (back, free) = bounded(n);
        for _ in 0..n {
            let _ = back.send(make());
        }
        Self { back, free }
    }

    /// A handle that gives buffers back to this pool.
    pub(crate) fn recycler(&self) -> Recycler<T> {
        Recycler(self.back.clone())
    }

    /// Waits up to `timeout` for a free buffer.
    pub(crate) fn take(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.free.recv_timeout(timeout)
    }

    /// Gives a buffer back.
    pub(crate) fn give_back(&self, item: T) {
        let _ = self.back.try_send(item);
    }
}

/// Gives buffers back to their [`Pool`] (dropped if the pool is full,
/// which cannot happen: a pool holds room for all of its buffers).
pub(crate) struct Recycler<T>(Sender<T>);

impl<T> Clone for Recycler<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Recycler<T> {
    /// Gives `item` back to the pool.
    pub(crate) fn give_back(&self, item: T) {
        let _ = self.0.try_send(item);
    }
}

/// The receiving stage has gone: no item will be taken any more.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ConsumerGone;

/// The producing end of a one-item latest-wins queue (see [`latest`]). It
/// holds a receiver of its own, to take a stale item back.
pub(crate) struct LatestSender<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
}

/// A one-item queue whose producer replaces a stale item instead of
/// waiting: its producing end and its consuming end.
pub(crate) fn latest<T>() -> (LatestSender<T>, Receiver<T>) {
    let (tx, rx) = bounded(1);
    (LatestSender { tx, rx: rx.clone() }, rx)
}

impl<T> LatestSender<T> {
    /// Puts `item` in the queue, taking back (and passing to `recycle`) a
    /// stale item first if needed. `Ok(true)`: a stale item was dropped.
    pub(crate) fn send(
        &self,
        mut item: T,
        mut recycle: impl FnMut(T),
    ) -> Result<bool, ConsumerGone> {
        let mut dropped = false;
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return Ok(dropped),
                Err(TrySendError::Disconnected(_)) => return Err(ConsumerGone),
                Err(TrySendError::Full(back)) => {
                    item = back;
                    if let Ok(stale) = self.rx.try_recv() {
                        recycle(stale);
                        dropped = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_wins_recycles_the_stale_item() {
        let (tx, rx) = latest::<u32>();
        let mut recycled = Vec::new();
        assert_eq!(tx.send(1, |s| recycled.push(s)), Ok(false));
        assert_eq!(tx.send(2, |s| recycled.push(s)), Ok(true));
        assert_eq!(recycled, vec![1]);
        assert_eq!(rx.try_recv(), Ok(2));
        drop(rx);
        let (tx2, rx2) = bounded::<u32>(1);
        drop(rx2);
        let dead = LatestSender {
            tx: tx2,
            rx: bounded::<u32>(1).1,
        };
        assert_eq!(dead.send(3, |_| {}), Err(ConsumerGone));
    }

    #[test]
    fn a_pool_hands_out_its_buffers_and_takes_them_back() {
        let mut made = 0;
        let pool = Pool::new(3, || {
            made += 1;
            made
        });
        let tick = Duration::from_millis(5);
        let taken: Vec<u32> = (0..3).map(|_| pool.take(tick).unwrap()).collect();
        assert_eq!(taken, vec![1, 2, 3]);
        assert_eq!(pool.take(tick), Err(RecvTimeoutError::Timeout));
        let recycler = pool.recycler();
        recycler.give_back(2);
        pool.give_back(1);
        assert_eq!(pool.take(tick), Ok(2));
        assert_eq!(pool.take(tick), Ok(1));
    }
}
