//! `otc`'s own small line editor: a prompt line with the usual editing
//! keys and a history, and a [`Printer`] that other threads use to print
//! lines (incoming messages, warnings) above the line being typed, which
//! is then drawn again underneath, as it was.
//!
//! # Why our own, and not rustyline or reedline
//!
//! The client used rustyline 17 with its `ExternalPrinter`. While an
//! external printer exists, rustyline waits for input with `select()` on
//! the terminal, but reads keys through its own 1024-byte buffer: when
//! several keys come in one read (a paste, `tmux send-keys`, an IME, a
//! fast typist on a slow link) it takes the first, keeps the rest in its
//! buffer, and `select()` then sleeps until the terminal has *more* input.
//! The user sees `alice> h` after pasting `help` and Enter, until another
//! key is pressed (issue 15, defect 2; rustyline issue #976, fixed on
//! rustyline's master by PR #977, not in any release on crates.io).
//! Carrying a patched copy of rustyline would mean carrying code that is
//! not ours; reedline (0.40 and 0.49 were tried) draws batched external
//! output by clearing and repainting the screen, which lost the lines
//! shown above the prompt in the tmux tests.
//!
//! What `otc` needs is small: one prompt line, a few editing keys, a
//! history, and lines printed above it from another thread. So this
//! module does just that, on the terminal settings of `rustix`:
//!
//! - The terminal is in raw mode (no echo, no line buffering, no signals
//!   from keys) only while [`Editor::readline`] runs, as with rustyline:
//!   between prompts Ctrl-C still stops a command that hangs.
//! - Input is read with plain blocking `read()`s into our buffer, and
//!   *every* whole key in the buffer is handled before the next read: a
//!   paste of several lines runs each line in turn, and bytes after an
//!   Enter wait in the buffer for the next [`Editor::readline`].
//! - The screen (the prompt line and what prints above it) is behind one
//!   mutex shared with the [`Printer`]s: a printer clears the prompt line,
//!   writes its text and draws the prompt line again, all under the lock,
//!   so keys and messages never interleave on the screen.
//! - The line is kept on one row: a line longer than the terminal scrolls
//!   sideways, keeping the cursor in view.
//! - When stdin or stdout is not a terminal (or `TERM=dumb`), lines are
//!   read and printed plainly.
//!
//! Keys: printable characters insert; Enter submits; Backspace, Delete,
//! Ctrl-D (on an empty line: end, as at a shell), Left/Right, Ctrl-B/F,
//! Home/End, Ctrl-A/E, Up/Down and Ctrl-P/N (history), Ctrl-U (clear the
//! line), Ctrl-K (clear to the end), Ctrl-W (clear the word before the
//! cursor), Ctrl-L (clear the screen), Ctrl-C (drop the line). Other keys
//! and escape sequences are ignored.

use crate::style::Shown;
use rustix::termios::{self, InputModes, LocalModes, OptionalActions, SpecialCodeIndex, Termios};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use unicode_width::UnicodeWidthChar;

/// At most this many lines are kept in the history.
const HISTORY_MAX: usize = 500;

/// A key, as read from the terminal's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Char(char),
    Enter,
    Backspace,
    Delete,
    Left,
    Right,
    Home,
    End,
    Up,
    Down,
    /// Ctrl-U.
    KillLine,
    /// Ctrl-K.
    KillToEnd,
    /// Ctrl-W.
    KillWord,
    /// Ctrl-C.
    Interrupt,
    /// Ctrl-D: end on an empty line, else delete.
    EndOrDelete,
    /// Ctrl-L.
    ClearScreen,
    /// A key or escape sequence that does nothing here.
    Ignored,
}

/// The first key in `input` and how many bytes it takes, or `None` when
/// `input` is empty or ends inside a key (read more, then try again).
pub(crate) fn parse_key(input: &[u8]) -> Option<(Key, usize)> {
    let first = *input.first()?;
    let key = match first {
        b'\r' => {
            // A CR LF pair is one Enter.
            let n = if input.get(1) == Some(&b'\n') { 2 } else { 1 };
            return Some((Key::Enter, n));
        }
        b'\n' => Key::Enter,
        0x7f | 0x08 => Key::Backspace,
        0x01 => Key::Home,
        0x02 => Key::Left,
        0x03 => Key::Interrupt,
        0x04 => Key::EndOrDelete,
        0x05 => Key::End,
        0x06 => Key::Right,
        0x0b => Key::KillToEnd,
        0x0c => Key::ClearScreen,
        0x0e => Key::Down,
        0x10 => Key::Up,
        0x15 => Key::KillLine,
        0x17 => Key::KillWord,
        0x1b => return parse_escape(input),
        0x00..=0x1f => Key::Ignored,
        0x20..=0x7e => Key::Char(char::from(first)),
        _ => return parse_utf8(input),
    };
    Some((key, 1))
}

/// An escape sequence at the start of `input` (which starts with ESC).
fn parse_escape(input: &[u8]) -> Option<(Key, usize)> {
    match input.get(1) {
        // A lone Escape so far: wait for what follows it.
        None => None,
        // CSI: ESC [ parameters (0x30..=0x3f), intermediates (0x20..=0x2f),
        // one final byte (0x40..=0x7e).
        Some(b'[') => {
            for (i, &b) in input.iter().enumerate().skip(2) {
                match b {
                    0x20..=0x3f => continue,
                    0x40..=0x7e => {
                        let params = &input[2..i];
                        let key = match b {
                            b'A' => Key::Up,
                            b'B' => Key::Down,
                            b'C' => Key::Right,
                            b'D' => Key::Left,
                            b'H' => Key::Home,
                            b'F' => Key::End,
                            b'~' => {
                                let first = params.split(|&p| p == b';').next().unwrap_or(&[]);
                                match first {
                                    b"1" | b"7" => Key::Home,
                                    b"4" | b"8" => Key::End,
                                    b"3" => Key::Delete,
                                    _ => Key::Ignored,
                                }
                            }
                            _ => Key::Ignored,
                        };
                        return Some((key, i + 1));
                    }
                    // Not a CSI sequence after all: drop what was read.
                    _ => return Some((Key::Ignored, i)),
                }
            }
            None
        }
        // SS3: ESC O and one byte.
        Some(b'O') => {
            let b = *input.get(2)?;
            let key = match b {
                b'A' => Key::Up,
                b'B' => Key::Down,
                b'C' => Key::Right,
                b'D' => Key::Left,
                b'H' => Key::Home,
                b'F' => Key::End,
                _ => Key::Ignored,
            };
            Some((key, 3))
        }
        // Alt and a key, or Escape pressed before a key: the Escape is
        // dropped and the key after it is read on its own.
        Some(_) => Some((Key::Ignored, 1)),
    }
}

/// A UTF-8 character at the start of `input` (its first byte is >= 0x80).
fn parse_utf8(input: &[u8]) -> Option<(Key, usize)> {
    let len = match input[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Some((Key::Ignored, 1)),
    };
    let have = input.len().min(len);
    if input[1..have].iter().any(|b| b & 0xc0 != 0x80) {
        return Some((Key::Ignored, 1));
    }
    if have < len {
        return None;
    }
    match std::str::from_utf8(&input[..len])
        .ok()
        .and_then(|s| s.chars().next())
    {
        Some(c) if !c.is_control() => Some((Key::Char(c), len)),
        _ => Some((Key::Ignored, len)),
    }
}

/// The line being edited.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) chars: Vec<char>,
    /// Where the cursor is, in characters from the start.
    pub(crate) cursor: usize,
}

impl Line {
    fn set(&mut self, text: &[char]) {
        self.chars = text.to_vec();
        self.cursor = self.chars.len();
    }

    pub(crate) fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// Applies an editing key; the keys that are not edits (Enter, Up,
    /// Ctrl-C, ...) are left to the caller.
    pub(crate) fn edit(&mut self, key: Key) {
        match key {
            Key::Char(c) => {
                self.chars.insert(self.cursor, c);
                self.cursor += 1;
            }
            Key::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.chars.remove(self.cursor);
            }
            Key::Delete | Key::EndOrDelete if self.cursor < self.chars.len() => {
                self.chars.remove(self.cursor);
            }
            Key::Left => self.cursor = self.cursor.saturating_sub(1),
            Key::Right => self.cursor = (self.cursor + 1).min(self.chars.len()),
            Key::Home => self.cursor = 0,
            Key::End => self.cursor = self.chars.len(),
            Key::KillLine => {
                self.chars.clear();
                self.cursor = 0;
            }
            Key::KillToEnd => self.chars.truncate(self.cursor),
            Key::KillWord => {
                let mut start = self.cursor;
                while start > 0 && self.chars[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.chars[start - 1] != ' ' {
                    start -= 1;
                }
                self.chars.drain(start..self.cursor);
                self.cursor = start;
            }
            _ => {}
        }
    }
}

fn width(chars: &[char]) -> usize {
    chars.iter().map(|c| c.width().unwrap_or(0)).sum()
}

/// What the prompt row shows after a prompt `prompt_w` columns wide, in a
/// terminal `cols` columns wide: the part of `line` in view and the
/// cursor's column. A line too long for the row scrolls sideways to keep
/// the cursor in view; `scroll` (the first character shown) is kept from
/// one drawing to the next so the view does not jump. The last column is
/// left free, so the cursor never wraps to the next row.
pub(crate) fn visible(
    prompt_w: usize,
    line: &Line,
    cols: usize,
    scroll: &mut usize,
) -> (String, usize) {
    let room = cols.saturating_sub(prompt_w + 1).max(1);
    if width(&line.chars) <= room {
        *scroll = 0;
    }
    *scroll = (*scroll).min(line.cursor);
    while width(&line.chars[*scroll..line.cursor]) > room {
        *scroll += 1;
    }
    let mut shown = String::new();
    let mut used = 0;
    for &c in &line.chars[*scroll..] {
        let w = c.width().unwrap_or(0);
        if used + w > room {
            break;
        }
        used += w;
        shown.push(c);
    }
    (shown, prompt_w + width(&line.chars[*scroll..line.cursor]))
}

/// The prompt line while [`Editor::readline`] runs.
struct View {
    prompt: String,
    prompt_w: usize,
    line: Line,
    scroll: usize,
}

impl View {
    /// Draws the prompt row again and puts the cursor in its place.
    fn draw(&mut self, out: &mut impl Write) -> io::Result<()> {
        let cols = termios::tcgetwinsize(io::stdout())
            .map(|w| usize::from(w.ws_col))
            .ok()
            .filter(|&c| c > 0)
            .unwrap_or(80);
        let (shown, col) = visible(self.prompt_w, &self.line, cols, &mut self.scroll);
        write!(out, "\r{}{shown}\x1b[K\r", self.prompt)?;
        if col > 0 {
            write!(out, "\x1b[{col}C")?;
        }
        Ok(())
    }

    /// Ends the prompt row with the whole line and `mark` shown, and moves
    /// to the next row.
    fn finish(&self, out: &mut impl Write, mark: &str) -> io::Result<()> {
        write!(out, "\r{}{}{mark}\x1b[K\r\n", self.prompt, self.line.text())
    }
}

/// The screen, shared by the editor and its printers.
struct Screen {
    /// The prompt line, while a readline runs.
    active: Option<View>,
}

fn lock(screen: &Mutex<Screen>) -> MutexGuard<'_, Screen> {
    screen.lock().unwrap_or_else(|e| e.into_inner())
}

/// Prints lines above the prompt line; made by [`Editor::printer`], used
/// from any thread.
#[derive(Clone)]
pub struct Printer {
    screen: Arc<Mutex<Screen>>,
}

impl Printer {
    /// Prints `text` (a newline is added when it has none) above the
    /// prompt line, which is drawn again under it.
    /// Prints a line above the prompt. Only [`Shown`] text: whatever came
    /// from a device or a relay went through the cleaner on its way here.
    pub fn print(&self, text: &Shown) {
        let text = text.as_str();
        let mut screen = lock(&self.screen);
        let mut out = io::stdout().lock();
        let newline = if text.ends_with('\n') { "" } else { "\n" };
        // Nothing more can be done about a terminal that cannot be written.
        let _ = (|| {
            if screen.active.is_some() {
                write!(out, "\r\x1b[K")?;
            }
            write!(out, "{text}{newline}")?;
            if let Some(view) = screen.active.as_mut() {
                view.draw(&mut out)?;
            }
            out.flush()
        })();
    }
}

/// What [`Editor::readline`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// A line, submitted with Enter.
    Line(String),
    /// Ctrl-C: the line was dropped.
    Interrupted,
    /// Ctrl-D on an empty line, or the input ended.
    End,
}

/// Puts the terminal back as it was when dropped.
struct RawMode(Termios);

impl RawMode {
    fn enter() -> io::Result<RawMode> {
        let saved = termios::tcgetattr(io::stdin())?;
        let mut raw = saved.clone();
        raw.local_modes
            .remove(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG | LocalModes::IEXTEN);
        raw.input_modes.remove(
            InputModes::ICRNL
                | InputModes::INLCR
                | InputModes::IGNCR
                | InputModes::IXON
                | InputModes::ISTRIP,
        );
        raw.special_codes[SpecialCodeIndex::VMIN] = 1;
        raw.special_codes[SpecialCodeIndex::VTIME] = 0;
        // `Now`, not `Flush`: keys already typed (a paste) must be kept.
        termios::tcsetattr(io::stdin(), OptionalActions::Now, &raw)?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin(), OptionalActions::Now, &self.0);
    }
}

/// The line editor.
pub struct Editor {
    screen: Arc<Mutex<Screen>>,
    /// Editing on a terminal (else plain lines).
    tty: bool,
    /// Bytes read but not handled yet (after an Enter, or a key cut
    /// between two reads).
    pending: Vec<u8>,
    history: Vec<String>,
}

impl Default for Editor {
    fn default() -> Self {
        Self::new()
    }
}

impl Editor {
    pub fn new() -> Editor {
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Editor {
            screen: Arc::new(Mutex::new(Screen { active: None })),
            tty: io::stdin().is_terminal() && io::stdout().is_terminal() && !dumb,
            pending: Vec::new(),
            history: Vec::new(),
        }
    }

    pub fn printer(&self) -> Printer {
        Printer {
            screen: self.screen.clone(),
        }
    }

    /// Adds `line` to the history (Up and Down), unless it repeats the
    /// last entry.
    pub fn add_history(&mut self, line: &str) {
        if self.history.last().is_some_and(|l| l == line) {
            return;
        }
        if self.history.len() == HISTORY_MAX {
            self.history.remove(0);
        }
        self.history.push(line.to_string());
    }

    /// Clears the terminal (nothing when it is not a terminal).
    pub fn clear_screen(&self) {
        if self.tty {
            let _screen = lock(&self.screen);
            let mut out = io::stdout().lock();
            let _ = write!(out, "\x1b[H\x1b[2J").and_then(|()| out.flush());
        }
    }

    /// Reads a line after `prompt`.
    pub fn readline(&mut self, prompt: &str) -> io::Result<Input> {
        if !self.tty {
            return self.read_plain(prompt);
        }
        let _raw = RawMode::enter()?;
        {
            let mut screen = lock(&self.screen);
            let mut view = View {
                prompt: prompt.to_string(),
                prompt_w: prompt.chars().map(|c| c.width().unwrap_or(0)).sum(),
                line: Line::default(),
                scroll: 0,
            };
            let mut out = io::stdout().lock();
            view.draw(&mut out)?;
            out.flush()?;
            screen.active = Some(view);
        }
        let result = self.edit();
        // Whatever happened, the prompt line is no longer being edited.
        lock(&self.screen).active = None;
        result
    }

    /// The edit loop of [`Editor::readline`], in raw mode.
    fn edit(&mut self) -> io::Result<Input> {
        // Where Up and Down are in the history (`None`: the new line), and
        // the new line while a history entry is shown.
        let mut recalled: Option<usize> = None;
        let mut draft: Vec<char> = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // Every whole key read so far, then one drawing.
            if !self.pending.is_empty() {
                let mut screen = lock(&self.screen);
                let mut out = io::stdout().lock();
                let Some(view) = screen.active.as_mut() else {
                    return Ok(Input::End);
                };
                while let Some((key, n)) = parse_key(&self.pending) {
                    self.pending.drain(..n);
                    match key {
                        Key::Enter => {
                            view.finish(&mut out, "")?;
                            out.flush()?;
                            return Ok(Input::Line(view.line.text()));
                        }
                        Key::Interrupt => {
                            view.finish(&mut out, "^C")?;
                            out.flush()?;
                            return Ok(Input::Interrupted);
                        }
                        Key::EndOrDelete if view.line.chars.is_empty() => {
                            view.finish(&mut out, "")?;
                            out.flush()?;
                            return Ok(Input::End);
                        }
                        Key::ClearScreen => write!(out, "\x1b[H\x1b[2J")?,
                        Key::Up => {
                            let to = match recalled {
                                None => self.history.len().checked_sub(1),
                                Some(i) => Some(i.saturating_sub(1)),
                            };
                            if let Some(i) = to {
                                if recalled.is_none() {
                                    draft = view.line.chars.clone();
                                }
                                recalled = Some(i);
                                let entry: Vec<char> = self.history[i].chars().collect();
                                view.line.set(&entry);
                            }
                        }
                        Key::Down => match recalled {
                            Some(i) if i + 1 < self.history.len() => {
                                recalled = Some(i + 1);
                                let entry: Vec<char> = self.history[i + 1].chars().collect();
                                view.line.set(&entry);
                            }
                            Some(_) => {
                                recalled = None;
                                view.line.set(&draft);
                            }
                            None => {}
                        },
                        other => view.line.edit(other),
                    }
                }
                view.draw(&mut out)?;
                out.flush()?;
            }
            match io::stdin().lock().read(&mut buf) {
                Ok(0) => return Ok(Input::End),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Not a terminal: a plain line from stdin (the prompt is shown only
    /// when stdin is a terminal, for a person typing).
    fn read_plain(&mut self, prompt: &str) -> io::Result<Input> {
        if io::stdin().is_terminal() {
            let _screen = lock(&self.screen);
            let mut out = io::stdout().lock();
            write!(out, "{prompt}")?;
            out.flush()?;
        }
        let mut line = String::new();
        if io::stdin().lock().read_line(&mut line)? == 0 {
            return Ok(Input::End);
        }
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        Ok(Input::Line(line.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All the keys in `bytes`, and what is left.
    fn keys(bytes: &[u8]) -> (Vec<Key>, &[u8]) {
        let mut rest = bytes;
        let mut out = Vec::new();
        while let Some((k, n)) = parse_key(rest) {
            out.push(k);
            rest = &rest[n..];
        }
        (out, rest)
    }

    #[test]
    fn a_paste_in_one_read_is_every_key_of_it() {
        let (k, rest) = keys(b"help\rid\r\n");
        assert_eq!(
            k,
            [
                Key::Char('h'),
                Key::Char('e'),
                Key::Char('l'),
                Key::Char('p'),
                Key::Enter,
                Key::Char('i'),
                Key::Char('d'),
                Key::Enter,
            ]
        );
        assert!(rest.is_empty());
    }

    #[test]
    fn a_key_cut_between_reads_waits_for_its_end() {
        // An arrow key cut after ESC [ and a 3-byte character cut after 2.
        assert_eq!(keys(b"a\x1b["), (vec![Key::Char('a')], &b"\x1b["[..]));
        assert_eq!(keys(b"\x1b[D"), (vec![Key::Left], &b""[..]));
        assert_eq!(keys(b"\xe2\x82").0, []);
        assert_eq!(keys(b"\xe2\x82\xac").0, [Key::Char('€')]);
        assert_eq!(keys(b"\x1b").0, []);
        assert_eq!(keys(b"\x1bO").0, []);
    }

    #[test]
    fn escape_sequences_and_control_keys() {
        let (k, rest) =
            keys(b"\x1b[A\x1bOB\x1b[1;5C\x1b[3~\x1b[H\x1b[4~\x1b[200~x\x1bb\x03\x04\x15");
        assert_eq!(
            k,
            [
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Delete,
                Key::Home,
                Key::End,
                Key::Ignored,
                Key::Char('x'),
                Key::Ignored,
                Key::Char('b'),
                Key::Interrupt,
                Key::EndOrDelete,
                Key::KillLine,
            ]
        );
        assert!(rest.is_empty());
        // Bytes that are no UTF-8 are dropped one by one, not kept.
        assert_eq!(
            keys(b"\xff\xc3(").0,
            [Key::Ignored, Key::Ignored, Key::Char('(')]
        );
        // A pasted control character is not put in the line.
        assert_eq!(keys(b"\x1a\t").0, [Key::Ignored, Key::Ignored]);
    }

    fn typed(text: &str) -> Line {
        let mut l = Line::default();
        for c in text.chars() {
            l.edit(Key::Char(c));
        }
        l
    }

    #[test]
    fn editing_keys() {
        let mut l = typed("send bob hi");
        l.edit(Key::Left);
        l.edit(Key::Left);
        l.edit(Key::Char('X'));
        assert_eq!((l.text(), l.cursor), ("send bob Xhi".into(), 10));
        l.edit(Key::Backspace);
        l.edit(Key::Delete);
        assert_eq!((l.text(), l.cursor), ("send bob i".into(), 9));
        l.edit(Key::KillWord);
        assert_eq!((l.text(), l.cursor), ("send i".into(), 5));
        l.edit(Key::Home);
        l.edit(Key::Right);
        l.edit(Key::KillToEnd);
        assert_eq!((l.text(), l.cursor), ("s".into(), 1));
        l.edit(Key::End);
        l.edit(Key::KillLine);
        assert_eq!((l.text(), l.cursor), (String::new(), 0));
        // At the ends, nothing to delete or move.
        l.edit(Key::Backspace);
        l.edit(Key::Left);
        l.edit(Key::Delete);
        assert_eq!(l, Line::default());
    }

    #[test]
    fn a_long_line_scrolls_sideways_around_the_cursor() {
        // Prompt 5 columns, terminal 16: room for 10 characters.
        let mut scroll = 0;
        let l = typed("0123456789");
        assert_eq!(visible(5, &l, 16, &mut scroll), ("0123456789".into(), 15));
        let mut l = typed("0123456789abc");
        assert_eq!(visible(5, &l, 16, &mut scroll), ("3456789abc".into(), 15));
        assert_eq!(scroll, 3);
        // Moving left inside the view keeps it; past its start scrolls.
        for _ in 0..5 {
            l.edit(Key::Left);
        }
        assert_eq!(visible(5, &l, 16, &mut scroll), ("3456789abc".into(), 10));
        l.edit(Key::Home);
        assert_eq!(visible(5, &l, 16, &mut scroll), ("0123456789".into(), 5));
        // Wide characters count two columns.
        let l = typed("日本語日本語");
        let mut scroll = 0;
        assert_eq!(visible(5, &l, 16, &mut scroll), ("本語日本語".into(), 15));
    }
}
