//! The commands of docs/operations.md §4 other than `run` and `demo`: the
//! offline ones (`match`, `check`, `explain`, `bench`) and the clients of a running
//! service (`replay`, `searches`, `status`, through [`admin_client`]). Each
//! takes typed options, writes to the given streams and returns an
//! [`Outcome`], so `main` only maps outcomes to exit codes and tests can
//! drive them.

pub mod admin_client;
pub mod bench;
pub mod check;
pub mod cost;
pub mod explain;
pub mod matching;
pub mod replay;
pub mod searches;
pub mod status;

use crate::searches::CatalogError;

/// How a command ended, mapped to the exit codes of docs/operations.md §4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: invalid input (searches, config, arguments, bad lines with
    /// `--strict`).
    InvalidInput,
}

/// Prints every problem of a rejected searches file.
pub fn print_problems(err: &CatalogError, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    writeln!(out, "{}", err.render())
}

/// Peak resident memory of this process in bytes (Linux), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `1.2 MiB` style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
