//! The searches file watcher.

use super::*;

/// Watches the file's directory (an editor's rename replaces the file's
/// inode, so watching the file alone would miss it) and, once changes
/// have been quiet for `debounce`, asks the worker to look at the file.
/// Only events that can change the file count ([`can_change_the_file`]):
/// a process that opens or reads it (the service itself at start, a
/// `check`, a backup) is no reason to read it again.
pub(super) fn watch(
    file: &std::path::Path,
    debounce: Duration,
    searches: Weak<SearchVersions>,
    components: &Arc<crate::service::components::Components>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let name = file.file_name().map(ToOwned::to_owned);
    let dir: PathBuf = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if can_change_the_file(&ev.kind)
                && ev.paths.iter().any(|p| p.file_name() == name.as_deref())
            {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    crate::service::components::spawn(components, "searches-watch", move || {
        while rx.recv().is_ok() {
            // Wait for quiet: editors write in several steps.
            loop {
                match rx.recv_timeout(debounce) {
                    Ok(()) => {}
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            let Some(s) = searches.upgrade() else { return };
            s.send(WorkerTask::FileChanged);
        }
    })
    .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(watcher)
}

/// Whether a file event may have changed the file's bytes: anything but an
/// access, and of the accesses only the close of a file written.
fn can_change_the_file(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(access) => *access == AccessKind::Close(AccessMode::Write),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::Watcher;

    /// The events of one real (inotify) watcher of `dir` that
    /// [`can_change_the_file`] lets through, gathered for half a second.
    fn changes_after(dir: &std::path::Path, action: impl FnOnce()) -> Vec<notify::EventKind> {
        let (tx, rx) = mpsc::channel();
        let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if can_change_the_file(&ev.kind) {
                    let _ = tx.send(ev.kind);
                }
            }
        })
        .unwrap();
        w.watch(dir, notify::RecursiveMode::NonRecursive).unwrap();
        action();
        std::thread::sleep(Duration::from_millis(500));
        rx.try_iter().collect()
    }

    #[test]
    fn reading_the_file_is_not_a_change_and_writing_it_is() {
        let dir = std::env::temp_dir().join(format!("tm-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("searches.json");
        std::fs::write(&file, "{}").unwrap();
        let read = changes_after(&dir, || {
            for _ in 0..3 {
                assert_eq!(std::fs::read_to_string(&file).unwrap(), "{}");
            }
        });
        assert!(read.is_empty(), "reads seen as changes: {read:?}");
        let written = changes_after(&dir, || std::fs::write(&file, "{\"topics\": []}").unwrap());
        assert!(!written.is_empty(), "a write was not seen");
        let renamed = changes_after(&dir, || {
            std::fs::write(dir.join("new.json"), "{}").unwrap();
            std::fs::rename(dir.join("new.json"), &file).unwrap();
        });
        assert!(!renamed.is_empty(), "an editor's rename was not seen");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
