//! The searches file watcher.

use super::*;

/// Watches the file's directory (an editor's rename replaces the file's
/// inode, so watching the file alone would miss it) and, once changes
/// have been quiet for `debounce`, asks the worker to look at the file.
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
            if ev.paths.iter().any(|p| p.file_name() == name.as_deref()) {
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
