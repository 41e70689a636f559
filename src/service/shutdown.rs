//! The stop request shared by the service's threads: the pipeline, the
//! admin server, the lag monitor and the signal handler. A request is
//! graceful (docs/operations.md §5.1: finish the batch, checkpoint, leave the
//! group); a second signal does not go through here but exits at once.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

/// Whether a stop was asked; cheap to clone and to poll.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// Not stopping.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every holder to stop gracefully.
    pub fn request(&self) {
        self.0.store(true, Relaxed);
    }

    /// Whether a stop was asked.
    pub fn is_requested(&self) -> bool {
        self.0.load(Relaxed)
    }
}
