//! Progress bars at the bottom of a terminal, with log lines scrolling
//! above them.
//!
//! The service logs to stderr; during a catch-up `run`, `replay` and the
//! catch-up bench also draw a bar per class there. Written independently,
//! the two would tear each other: a log line would land in the middle of
//! the bars and the next redraw would overwrite it. So both go through one
//! [`Screen`]: it remembers the bar lines it shows, and every log line first
//! erases them, is written, and has them drawn again below it. With no bars
//! shown a log line is written as is, so the same writer serves pipes and
//! files (where no bars are ever set).

use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// The bottom of a terminal: bar lines that log lines scroll above.
pub struct Screen {
    state: Mutex<State>,
}

struct State {
    out: Box<dyn Write + Send>,
    /// The bar lines drawn last.
    bars: Vec<String>,
}

impl State {
    /// Moves the cursor up over the bars and clears to the end of the screen.
    fn erase(&mut self) -> std::io::Result<()> {
        if !self.bars.is_empty() {
            write!(self.out, "\x1b[{}A\x1b[0J", self.bars.len())?;
        }
        Ok(())
    }

    fn draw(&mut self) -> std::io::Result<()> {
        for l in &self.bars {
            writeln!(self.out, "{l}")?;
        }
        self.out.flush()
    }
}

impl Screen {
    /// A screen writing to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Screen {
        Screen {
            state: Mutex::new(State {
                out,
                bars: Vec::new(),
            }),
        }
    }

    /// The process's stderr.
    pub fn stderr() -> &'static Screen {
        static SCREEN: OnceLock<Screen> = OnceLock::new();
        SCREEN.get_or_init(|| Screen::new(Box::new(std::io::stderr())))
    }

    /// Replaces the bars with `lines` (none: the bars disappear).
    pub fn set_bars(&self, lines: Vec<String>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.bars == lines {
            return;
        }
        let _ = s.erase();
        s.bars = lines;
        let _ = s.draw();
    }

    /// Leaves the bars on the screen as they are, as plain lines: what is
    /// written next goes below them.
    pub fn keep_bars(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.bars.clear();
    }

    /// Writes `text` (whole lines) above the bars.
    pub fn write_above(&self, text: &[u8]) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let _ = s.erase();
        let _ = s.out.write_all(text);
        let _ = s.draw();
    }
}

/// Draws `lines` in place over the `shown` lines drawn last time, for a
/// screen that no log writes to (the demo's dashboard); returns how many
/// are shown now.
///
/// # Errors
///
/// Writing fails.
pub fn redraw(out: &mut dyn Write, lines: &[String], shown: usize) -> std::io::Result<usize> {
    if shown > 0 {
        write!(out, "\x1b[{shown}A")?;
    }
    for l in lines {
        writeln!(out, "\x1b[2K{l}")?;
    }
    Ok(lines.len())
}

/// A log event on its way to [`Screen::stderr`]: collected, then written
/// above the bars in one piece when dropped (tracing makes one writer per
/// event).
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            Screen::stderr().write_above(&self.0);
        }
    }
}

/// The writer of the log subscriber: `fmt().with_writer(terminal::log_line)`.
pub fn log_line() -> LogLine {
    LogLine(Vec::with_capacity(256))
}

/// Draws the drain progress of `metrics` as bars at the bottom of the
/// terminal while a job runs; none otherwise.
pub fn draw_bars(metrics: &crate::service::metrics::Metrics) {
    let (progress, jobs) = metrics.drain.lock().expect("drain lock").clone();
    let running = jobs
        .as_array()
        .is_some_and(|j| j.iter().any(|j| j["state"] == "running"));
    let lines = if running {
        progress.iter().map(bar_line).collect()
    } else {
        Vec::new()
    };
    Screen::stderr().set_bars(lines);
}

/// One class as a progress bar line.
pub fn bar_line(p: &crate::service::drain::ClassProgress) -> String {
    const WIDTH: usize = 30;
    let filled = ((p.drained.clamp(0.0, 1.0)) * WIDTH as f64).round() as usize;
    let eta = match (p.backlog_messages, p.eta_seconds) {
        (0, _) => match p.finished_after_seconds {
            Some(s) => format!("done after {s:.1} s"),
            None => "done".into(),
        },
        (_, Some(e)) => format!("eta {e:.0} s"),
        (_, None) => "waiting".into(),
    };
    format!(
        "{:<10} [{}{}] {:>5.1}%  {:>9} left  {:>8.0} msg/s  {:>8} docs  {}",
        p.class,
        "█".repeat(filled),
        "░".repeat(WIDTH - filled),
        p.drained * 100.0,
        p.backlog_messages,
        p.rate,
        p.documents,
        eta
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A `Write` whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(c: &Captured) -> String {
        String::from_utf8(std::mem::take(&mut *c.0.lock().unwrap())).unwrap()
    }

    #[test]
    fn log_lines_without_bars_pass_through() {
        let out = Captured::default();
        let screen = Screen::new(Box::new(out.clone()));
        screen.write_above(b"INFO started\n");
        assert_eq!(text(&out), "INFO started\n");
    }

    #[test]
    fn a_log_line_erases_the_bars_and_redraws_them_below_it() {
        let out = Captured::default();
        let screen = Screen::new(Box::new(out.clone()));
        screen.set_bars(vec!["critical [##]".into(), "low [..]".into()]);
        assert_eq!(text(&out), "critical [##]\nlow [..]\n");
        screen.write_above(b"INFO class drained\n");
        assert_eq!(
            text(&out),
            "\x1b[2A\x1b[0JINFO class drained\ncritical [##]\nlow [..]\n"
        );
        // Unchanged bars are not redrawn; new ones replace them in place.
        screen.set_bars(vec!["critical [##]".into(), "low [..]".into()]);
        assert_eq!(text(&out), "");
        screen.set_bars(vec!["low [#.]".into()]);
        assert_eq!(text(&out), "\x1b[2A\x1b[0Jlow [#.]\n");
        // Without bars the screen is a plain log again.
        screen.set_bars(Vec::new());
        assert_eq!(text(&out), "\x1b[1A\x1b[0J");
        screen.write_above(b"INFO done\n");
        assert_eq!(text(&out), "INFO done\n");
        // Kept bars stay as they were drawn: nothing erases them later.
        screen.set_bars(vec!["low [##]".into()]);
        screen.keep_bars();
        screen.write_above(b"INFO stopped\n");
        assert_eq!(text(&out), "low [##]\nINFO stopped\n");
    }
}
