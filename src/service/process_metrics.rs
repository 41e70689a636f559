//! The process and build metrics every Prometheus exporter is expected to
//! have (`process_*` as the official client libraries name them, and
//! `topic_matcher_build_info`), read from `/proc/self` on each scrape — a
//! few small files, no crate needed. Off Linux only `build_info` and the
//! start time are rendered.

use std::fmt::Write;
use std::sync::OnceLock;

/// Seconds since the Unix epoch when the metrics were first rendered or
/// [`mark_start`] was called.
static START: OnceLock<f64> = OnceLock::new();

/// Records the process start (called when the service starts).
pub fn mark_start() {
    START.get_or_init(|| crate::record::now_ms() as f64 / 1e3);
}

/// A label value in the text format: backslash, double quote and newline
/// escaped.
#[must_use]
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Appends `topic_matcher_build_info` and the `process_*` metrics.
pub fn render(o: &mut String) {
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    let _ = writeln!(
        o,
        "# HELP topic_matcher_build_info The running build (always 1).\n# TYPE topic_matcher_build_info gauge\ntopic_matcher_build_info{{version=\"{}\",librdkafka=\"{}\"}} 1",
        escape_label(env!("CARGO_PKG_VERSION")),
        escape_label(&librdkafka)
    );
    mark_start();
    let mut gauge = |name: &str, kind: &str, help: &str, v: f64| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    if let Some(start) = START.get() {
        gauge(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch in seconds.",
            *start,
        );
    }
    let Some(p) = read_proc() else {
        return;
    };
    gauge(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds,
    );
    gauge(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.resident_bytes,
    );
    gauge(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        p.virtual_bytes,
    );
    gauge(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        p.open_fds,
    );
    if let Some(max) = p.max_fds {
        gauge(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
    gauge(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
        p.threads,
    );
}

struct Proc {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    open_fds: f64,
    max_fds: Option<f64>,
    threads: f64,
}

fn read_proc() -> Option<Proc> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: fields after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 3… of proc(5): utime is 14, stime 15, num_threads 20, vsize 23,
    // rss 24 (pages) — indexes 11, 12, 17, 20, 21 here.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
    Some(Proc {
        cpu_seconds: (num(11)? + num(12)?) / ticks.max(1.0),
        resident_bytes: num(21)? * page,
        virtual_bytes: num(20)?,
        open_fds,
        max_fds,
        threads: num(17)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_label("plain"), "plain");
    }

    #[test]
    fn process_metrics_read_this_process() {
        let mut o = String::new();
        render(&mut o);
        assert!(o.contains("topic_matcher_build_info{version=\""), "{o}");
        let value = |name: &str| -> f64 {
            o.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing in {o}"))
                .parse()
                .unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_start_time_seconds") > 1.7e9);
    }
}
