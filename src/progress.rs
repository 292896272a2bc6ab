//! Progress on stderr for long transfers: an indicatif bar (bytes, rate,
//! ETA) on a terminal, plain lines every few seconds otherwise (CI logs,
//! pipes), nothing with `-q`. Stdout stays free for results.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::io::units::human_size;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    Bar,
    Lines,
    Quiet,
}

/// The bar of a task whose total is known, and of one whose is not.
const SIZED: &str =
    "{msg:13} [{bar:25}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}";
const UNSIZED: &str = "{msg:13} {spinner} {binary_bytes} {binary_bytes_per_sec}";

/// Where progress goes; cheap to share by reference. Bars of tasks that
/// run at once (nodes built concurrently) stack, one line each.
#[derive(Debug, Clone)]
pub struct Progress {
    style: ProgressStyle,
    interval: Duration,
    bars: indicatif::MultiProgress,
}

impl Progress {
    pub fn new(style: ProgressStyle) -> Self {
        Self {
            style,
            interval: Duration::from_secs(5),
            bars: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
        }
    }

    /// A bar when stderr is a terminal, lines otherwise, nothing if `quiet`.
    pub fn for_stderr(quiet: bool) -> Self {
        Self::new(if quiet {
            ProgressStyle::Quiet
        } else if std::io::stderr().is_terminal() {
            ProgressStyle::Bar
        } else {
            ProgressStyle::Lines
        })
    }

    pub fn quiet() -> Self {
        Self::new(ProgressStyle::Quiet)
    }

    /// One line of narrative ("verifying …").
    pub fn note(&self, msg: impl Display) {
        if self.style != ProgressStyle::Quiet {
            let _ = writeln!(std::io::stderr(), "{msg}");
        }
    }

    /// A transfer of `total` bytes (if known) starting at `start` (a resumed
    /// download starts part-way).
    pub fn task(&self, label: &str, start: u64, total: Option<u64>) -> Task {
        let inner = match self.style {
            ProgressStyle::Quiet => Inner::Quiet,
            ProgressStyle::Bar => {
                let bar = match total {
                    Some(t) => indicatif::ProgressBar::new(t),
                    None => indicatif::ProgressBar::no_length(),
                };
                let template = if total.is_some() { SIZED } else { UNSIZED };
                if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                    bar.set_style(style.progress_chars("=> "));
                }
                let bar = self.bars.add(bar);
                bar.set_message(label.to_owned());
                bar.set_position(start);
                bar.reset_eta();
                Inner::Bar(bar)
            }
            ProgressStyle::Lines => Inner::Lines(Mutex::new(Lines {
                label: label.to_owned(),
                total,
                start_pos: start,
                pos: start,
                started: Instant::now(),
                last: Instant::now(),
                interval: self.interval,
            })),
        };
        Task { inner }
    }
}

/// One transfer in progress.
pub struct Task {
    inner: Inner,
}

enum Inner {
    Bar(indicatif::ProgressBar),
    Lines(Mutex<Lines>),
    Quiet,
}

struct Lines {
    label: String,
    total: Option<u64>,
    start_pos: u64,
    pos: u64,
    started: Instant,
    last: Instant,
    interval: Duration,
}

impl Task {
    pub fn set_position(&self, pos: u64) {
        match &self.inner {
            Inner::Bar(b) => b.set_position(pos),
            Inner::Lines(l) => {
                let Ok(mut l) = l.lock() else { return };
                l.pos = pos;
                if l.last.elapsed() >= l.interval {
                    l.last = Instant::now();
                    let line = l.line();
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
            }
            Inner::Quiet => {}
        }
    }

    /// Sets the total once it is known (a task started without one).
    pub fn set_total(&self, total: u64) {
        match &self.inner {
            Inner::Bar(b) => {
                if b.length().is_none()
                    && let Ok(style) = indicatif::ProgressStyle::with_template(SIZED)
                {
                    b.set_style(style.progress_chars("=> "));
                }
                b.set_length(total);
            }
            Inner::Lines(l) => {
                if let Ok(mut l) = l.lock() {
                    l.total = Some(total);
                }
            }
            Inner::Quiet => {}
        }
    }

    /// Restarts from `pos` (a server that ignored a range request).
    pub fn restart_at(&self, pos: u64) {
        match &self.inner {
            Inner::Bar(b) => {
                b.set_position(pos);
                b.reset_eta();
            }
            Inner::Lines(l) => {
                if let Ok(mut l) = l.lock() {
                    l.pos = pos;
                    l.start_pos = pos;
                    l.started = Instant::now();
                }
            }
            Inner::Quiet => {}
        }
    }

    /// Ends the bar (or prints a closing line) with `msg`.
    pub fn finish(&self, msg: impl Display) {
        match &self.inner {
            Inner::Bar(b) => {
                b.finish_and_clear();
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
            Inner::Lines(_) => {
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
            Inner::Quiet => {}
        }
    }

    /// Removes a bar with no closing line: the caller reports the result.
    pub fn done(&self) {
        self.abandon();
    }

    /// Removes a bar without a message (on errors, before the error line).
    pub fn abandon(&self) {
        if let Inner::Bar(b) = &self.inner {
            b.finish_and_clear();
        }
    }
}

/// A task dropped unfinished (an error on the way) takes its bar with it,
/// so the error line that follows stands alone.
impl Drop for Task {
    fn drop(&mut self) {
        if let Inner::Bar(b) = &self.inner
            && !b.is_finished()
        {
            b.finish_and_clear();
        }
    }
}

impl Lines {
    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let moved = self.pos.saturating_sub(self.start_pos);
        let rate = if secs > 0.0 {
            moved as f64 / secs // as: display only
        } else {
            0.0
        };
        let mut s = format!("{}: {}", self.label, human_size(self.pos));
        if let Some(total) = self.total.filter(|t| *t > 0) {
            let pct = self.pos.saturating_mul(100) / total;
            s.push_str(&format!(" / {} ({pct}%)", human_size(total)));
            if rate > 0.0 {
                let left = total.saturating_sub(self.pos) as f64 / rate; // as: display only
                s.push_str(&format!(", ETA {}", human_duration(left)));
            }
        }
        if rate > 0.0 {
            s.push_str(&format!(", {}/s", human_size(rate as u64))); // as: display only
        }
        s
    }
}

/// `1h02m`, `3m12s`, `42s`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64; // as: display only, saturating
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(4.4), "4s");
        assert_eq!(human_duration(192.0), "3m12s");
        assert_eq!(human_duration(3720.0), "1h02m");
    }

    #[test]
    fn a_line_has_size_share_rate_and_eta() {
        let l = Lines {
            label: "downloading x".into(),
            total: Some(100 << 20),
            start_pos: 0,
            pos: 25 << 20,
            started: Instant::now() - Duration::from_secs(5),
            last: Instant::now(),
            interval: Duration::from_secs(5),
        };
        let line = l.line();
        assert!(
            line.starts_with("downloading x: 25 MiB / 100 MiB (25%), ETA 15s, 5"),
            "{line}"
        );
    }
}
