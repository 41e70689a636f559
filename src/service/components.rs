//! Liveness of the service's background threads (docs/operations.md §6).
//!
//! The pipeline is the service's main thread: when it ends, the process
//! ends. The others — the searches worker, the searches-topic reader, the
//! file watcher and the lag monitor — run beside it, and a dead one would
//! otherwise go unnoticed while the service looks healthy. Each is started
//! through [`spawn`], which registers it as up and marks it down, with the
//! reason, when its body returns or panics. `/healthz` answers 503 naming
//! every component that is down, and `/metrics` has
//! `topic_matcher_component_up{component="…"}`.
//!
//! Restarting is left to each component where it is safe: the lag monitor
//! survives a failed round by itself (it only reads), while a dead searches
//! worker means reloads stop, which only a restart of the process repairs
//! safely — hence the failing health check.

//!
//! For the fault tests, the environment variable
//! `TOPIC_MATCHER_FAULT_KILL_COMPONENT` names a component that panics at its
//! next [`fault_point`] (unset in production).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The components and whether each is up (`None`) or down (why).
#[derive(Debug, Default)]
pub struct Components {
    states: Mutex<BTreeMap<&'static str, Option<String>>>,
}

impl Components {
    /// Marks `name` up.
    pub fn up(&self, name: &'static str) {
        self.lock().insert(name, None);
    }

    /// Marks `name` down, saying why.
    pub fn down(&self, name: &'static str, why: impl Into<String>) {
        self.lock().insert(name, Some(why.into()));
    }

    /// Every component, sorted by name, with the reason when it is down.
    pub fn snapshot(&self) -> Vec<(&'static str, Option<String>)> {
        self.lock().iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// The components that are down, with their reasons.
    pub fn down_now(&self) -> Vec<(&'static str, String)> {
        self.lock()
            .iter()
            .filter_map(|(k, v)| v.clone().map(|why| (*k, why)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Option<String>>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The environment variable of the fault tests (module doc).
pub const FAULT_KILL_ENV: &str = "TOPIC_MATCHER_FAULT_KILL_COMPONENT";

/// Panics when the fault tests asked `name` to die (module doc).
pub fn fault_point(name: &str) {
    static KILL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let kill = KILL.get_or_init(|| std::env::var(FAULT_KILL_ENV).ok());
    if kill.as_deref() == Some(name) {
        panic!("fault injected by {FAULT_KILL_ENV}");
    }
}

/// Runs `body` on a thread named `name`, registered in `components`: up
/// while it runs, down (with the panic message, or "stopped") once it ends.
///
/// # Errors
///
/// When the thread cannot be started.
pub fn spawn(
    components: &Arc<Components>,
    name: &'static str,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    components.up(name);
    let components = components.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            let why = match ended {
                Ok(()) => "stopped".to_string(),
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(component = name, panic = %msg, "a background component died");
                    format!("panicked: {msg}")
                }
            };
            components.down(name, why);
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_panics_is_reported_down_with_its_message() {
        let c = Arc::new(Components::default());
        // "ok" runs until the test lets it go (no timing involved).
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let ok = spawn(&c, "ok", move || {
            let _ = hold.recv();
        })
        .unwrap();
        spawn(&c, "bad", || panic!("boom")).unwrap().join().unwrap();
        let down = c.down_now();
        assert_eq!(down, vec![("bad", "panicked: boom".to_string())]);
        assert_eq!(c.snapshot().len(), 2);
        drop(release);
        ok.join().unwrap();
        assert_eq!(c.down_now().len(), 2, "a thread that ends is down too");
    }
}
