//! Test support: a small filesystem that fills up, for the tests of what
//! happens when a disk is full (the state store, the file output).

use std::path::PathBuf;

/// A tmpfs of a few MiB, unmounted when dropped (also on a failed
/// assertion).
pub(crate) struct SmallFs(pub(crate) PathBuf);

impl SmallFs {
    /// Fills it up with a file named `filler`; returns that file's path.
    pub(crate) fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", filler.display()))
            .output();
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Mounts a tmpfs of `mib` MiB at a new directory; `None` when that is not
/// allowed (not root).
pub(crate) fn small_fs(name: &str, mib: u32) -> Option<SmallFs> {
    let dir = std::env::temp_dir().join(format!("tm-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(SmallFs(dir))
}
