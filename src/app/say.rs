//! What the commands tell the user on stderr besides errors and logs:
//! warnings, notes and "wrote …" lines. `-q` silences every one of them
//! (errors are still printed, by `report_error`); set once by
//! `init_logging` before any command runs.

use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `warning: …`
pub fn warning(what: impl Display) {
    line(format_args!("warning: {what}"));
}

/// `note: …`
pub fn note(what: impl Display) {
    line(format_args!("note: {what}"));
}

/// A plain line: what was written, what is being done.
pub fn line(what: impl Display) {
    if !quiet() {
        // stderr gone (closed terminal): nothing left to tell.
        let _ = writeln!(std::io::stderr().lock(), "{what}");
    }
}
