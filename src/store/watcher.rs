//! The handle to a running expiry watcher.

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running expiry watcher, returned by
/// [`RedisStore::watch_expired`](crate::RedisStore::watch_expired) and
/// [`MemoryStore::watch_expired`](crate::MemoryStore::watch_expired).
///
/// Dropping it leaves the watcher running for the life of the runtime; call
/// [`abort`](Self::abort) to stop it.
#[derive(Debug)]
pub struct ExpiryWatcher {
    task: JoinHandle<()>,
    subscribed: watch::Receiver<bool>,
}

impl ExpiryWatcher {
    pub(crate) fn new(task: JoinHandle<()>, subscribed: watch::Receiver<bool>) -> Self {
        Self { task, subscribed }
    }

    /// Waits until the watcher listens on every node, so that an expiry from now on is
    /// reported. After a reconnect it waits for the new subscriptions. Returns at once
    /// if the watcher has stopped.
    pub async fn subscribed(&self) {
        let mut rx = self.subscribed.clone();
        // An error means the watcher task ended: nothing more to wait for.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Stops the watcher.
    pub fn abort(&self) {
        self.task.abort();
    }
}
