//! The terminal `init` asks on: prompts on stderr, answers read from
//! stdin a line at a time, and secrets read with echo off. Echo is turned
//! off only while a secret is typed and restored on every way out (Enter,
//! Ctrl-D, Ctrl-C, an error, a panic): the terminal is put in
//! non-canonical mode without signals for that read, so Ctrl-C arrives as
//! a byte we handle instead of a signal that would kill us with echo off.

use std::io::{self, Stderr, Stdin, Write};
use std::os::fd::AsFd;

use rustix::termios::{
    LocalModes, OptionalActions, SpecialCodeIndex, Termios, isatty, tcgetattr, tcsetattr,
};

use crate::profile::starter_ask::Asker;

/// The most bytes of one answer kept; the rest of the line is read and
/// dropped (the questions refuse an answer this long anyway).
const MAX_LINE: usize = 4096;

/// Whether stdin and stderr are both terminals: only then does `init` ask.
pub fn interactive() -> bool {
    isatty(io::stdin()) && isatty(io::stderr())
}

pub struct Tty {
    stdin: Stdin,
    stderr: Stderr,
}

impl Tty {
    pub fn new() -> Self {
        Self {
            stdin: io::stdin(),
            stderr: io::stderr(),
        }
    }

    fn prompt(&self, text: &str) -> io::Result<()> {
        let mut err = self.stderr.lock();
        err.write_all(text.as_bytes())?;
        err.flush()
    }

    /// One byte from stdin, read straight from the descriptor (std's
    /// buffered stdin is never used here, so nothing is read ahead);
    /// `None` at end of input.
    fn byte(&self) -> io::Result<Option<u8>> {
        let mut b = [0u8; 1];
        loop {
            match rustix::io::read(self.stdin.as_fd(), &mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => return Ok(Some(b[0])),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The terminal's settings as found; put back when dropped.
struct Restore<'a> {
    stdin: &'a Stdin,
    saved: Termios,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        // Nothing better to do if the terminal went away meanwhile.
        let _ = tcsetattr(self.stdin.as_fd(), OptionalActions::Now, &self.saved);
    }
}

impl Asker for Tty {
    fn line(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.prompt(prompt)?;
        // Canonical mode: the terminal edits the line and hands it over
        // on Enter; Ctrl-D on an empty line reads as end of input.
        let mut line = Vec::new();
        loop {
            match self.byte()? {
                None if line.is_empty() => {
                    // Ctrl-D leaves the cursor after the prompt.
                    self.prompt("\n")?;
                    return Ok(None);
                }
                None | Some(b'\n') => break,
                Some(b) if line.len() < MAX_LINE => line.push(b),
                Some(_) => {}
            }
        }
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }

    fn secret(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.prompt(prompt)?;
        let saved = tcgetattr(self.stdin.as_fd())?;
        let mut quiet = saved.clone();
        quiet
            .local_modes
            .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG | LocalModes::IEXTEN);
        quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
        quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
        let cc = |i| saved.special_codes[i];
        let (intr, quit, eof, erase, kill) = (
            cc(SpecialCodeIndex::VINTR),
            cc(SpecialCodeIndex::VQUIT),
            cc(SpecialCodeIndex::VEOF),
            cc(SpecialCodeIndex::VERASE),
            cc(SpecialCodeIndex::VKILL),
        );
        let restore = Restore {
            stdin: &self.stdin,
            saved,
        };
        // TCSANOW, not TCSAFLUSH: answers typed ahead are kept.
        tcsetattr(self.stdin.as_fd(), OptionalActions::Now, &quiet)?;
        let mut typed = Vec::new();
        let outcome = loop {
            match self.byte()? {
                None => break None,
                Some(b'\n' | b'\r') => break Some(()),
                Some(b) if b == intr || b == quit => {
                    drop(restore);
                    self.prompt("\n")?;
                    return Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "interrupted (Ctrl-C)",
                    ));
                }
                // Ctrl-D stops here even after some typing: with echo
                // off nobody can see what a half-typed line holds.
                Some(b) if b == eof => break None,
                Some(b) if b == erase || b == 0x08 => {
                    typed.pop();
                }
                Some(b) if b == kill => typed.clear(),
                Some(b) if typed.len() < MAX_LINE => typed.push(b),
                Some(_) => {}
            }
        };
        drop(restore);
        // The Enter was not echoed either.
        self.prompt("\n")?;
        Ok(outcome.map(|()| String::from_utf8_lossy(&typed).into_owned()))
    }

    fn say(&mut self, text: &str) -> io::Result<()> {
        let mut err = self.stderr.lock();
        writeln!(err, "{text}")?;
        err.flush()
    }
}
