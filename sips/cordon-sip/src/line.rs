//! Line editing for a console: bytes as typed on a terminal in, edited lines and the echo
//! that draws them out. Pure logic (no kernel calls), so the host tests it; the console
//! SIP feeds it what `console_read` returns.
//!
//! Keys: printable text (UTF-8 included) is inserted at the end of the line; Backspace
//! (DEL or ^H) removes the last character; ^U erases the line; ^C abandons it; ^D on an
//! empty line ends input; Enter (CR, LF or CR LF) ends the line. Escape sequences (arrow
//! keys and the like) and other control bytes are ignored. A line holds at most
//! [`LineEditor::new`]'s `max` bytes; typing past it rings the bell.

use alloc::string::String;
use alloc::vec::Vec;

/// What a byte did, besides the echo it produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Enter: the finished line (without its end).
    Line(String),
    /// ^C: the line was abandoned.
    Interrupt,
    /// ^D on an empty line: no more input.
    EndOfInput,
}

/// Where the editor is within an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Started,
    /// After ESC [ (a control sequence, ended by a byte in 0x40..=0x7e).
    Sequence,
}

/// One line being typed.
pub struct LineEditor {
    line: Vec<u8>,
    max: usize,
    escape: Escape,
    /// The previous byte was CR: a LF right after it belongs to the same Enter.
    after_cr: bool,
}

const BELL: u8 = 0x07;
const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const CTRL_C: u8 = 0x03;
const CTRL_D: u8 = 0x04;
const CTRL_U: u8 = 0x15;
const ESC: u8 = 0x1b;
/// Moves the cursor back over one character and blanks it.
const RUB_OUT: &[u8] = b"\x08 \x08";

impl LineEditor {
    /// An empty line of at most `max` bytes.
    pub fn new(max: usize) -> LineEditor {
        LineEditor {
            line: Vec::new(),
            max,
            escape: Escape::None,
            after_cr: false,
        }
    }

    /// What has been typed so far.
    pub fn pending(&self) -> &[u8] {
        &self.line
    }

    /// Takes one byte; appends what the terminal should show to `echo`.
    pub fn feed(&mut self, byte: u8, echo: &mut Vec<u8>) -> Option<Event> {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::Started => {
                self.escape = if byte == b'[' {
                    Escape::Sequence
                } else {
                    Escape::None
                };
                return None;
            }
            Escape::Sequence => {
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = Escape::None;
                }
                return None;
            }
            Escape::None => {}
        }
        match byte {
            b'\n' if after_cr => None,
            b'\r' | b'\n' => {
                self.after_cr = byte == b'\r';
                echo.push(b'\n');
                let line = core::mem::take(&mut self.line);
                Some(Event::Line(String::from_utf8_lossy(&line).into_owned()))
            }
            BACKSPACE | DELETE => {
                if self.rub_out_char() {
                    echo.extend_from_slice(RUB_OUT);
                }
                None
            }
            CTRL_U => {
                while self.rub_out_char() {
                    echo.extend_from_slice(RUB_OUT);
                }
                None
            }
            CTRL_C => {
                self.line.clear();
                echo.extend_from_slice(b"^C\n");
                Some(Event::Interrupt)
            }
            CTRL_D if self.line.is_empty() => {
                echo.push(b'\n');
                Some(Event::EndOfInput)
            }
            ESC => {
                self.escape = Escape::Started;
                None
            }
            b if b < 0x20 => None,
            b => {
                if self.line.len() < self.max {
                    self.line.push(b);
                    echo.push(b);
                } else {
                    echo.push(BELL);
                }
                None
            }
        }
    }

    /// Removes the last character (all its UTF-8 bytes); false if the line is empty.
    fn rub_out_char(&mut self) -> bool {
        let Some(mut last) = self.line.pop() else {
            return false;
        };
        // Continuation bytes (10xxxxxx) belong to the character before them.
        while last & 0xc0 == 0x80 {
            match self.line.pop() {
                Some(b) => last = b,
                None => break,
            }
        }
        true
    }
}

/// Splits a command line into words: separated by spaces or tabs; a word in double quotes
/// keeps its spaces (`run hello "big world"`). An unclosed quote runs to the end.
pub fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' | '\t' if !quoted => {
                if in_word {
                    words.push(core::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_at_spaces_and_quotes_keep_them() {
        assert_eq!(words("  run  hello\tworld "), ["run", "hello", "world"]);
        assert_eq!(
            words(r#"run hello "big world" """#),
            ["run", "hello", "big world", ""]
        );
        assert!(words("   ").is_empty());
    }

    /// Feeds `input`; the events and the echo.
    fn typed(input: &[u8], max: usize) -> (Vec<Event>, Vec<u8>) {
        let mut editor = LineEditor::new(max);
        let mut echo = Vec::new();
        let events = input
            .iter()
            .filter_map(|&b| editor.feed(b, &mut echo))
            .collect();
        (events, echo)
    }

    fn line(text: &str) -> Event {
        Event::Line(String::from(text))
    }

    #[test]
    fn enter_ends_a_line_whatever_the_terminal_sends() {
        let (events, echo) = typed(b"ps\rls\nrun x\r\nkill 3\r", 256);
        assert_eq!(
            events,
            [line("ps"), line("ls"), line("run x"), line("kill 3")]
        );
        assert_eq!(echo, b"ps\nls\nrun x\nkill 3\n");
    }

    #[test]
    fn backspace_and_ctrl_u_edit_and_redraw() {
        let (events, echo) = typed(b"pz\x7fs\r", 256);
        assert_eq!(events, [line("ps")]);
        assert_eq!(echo, b"pz\x08 \x08s\n");
        let (events, _) = typed(b"kill 1\x15help\x08\x08lp\r", 256);
        assert_eq!(events, [line("help")]);
        // Backspace on an empty line draws nothing.
        let (events, echo) = typed(b"\x7f\x7fa\r", 256);
        assert_eq!(events, [line("a")]);
        assert_eq!(echo, b"a\n");
    }

    #[test]
    fn backspace_removes_a_whole_utf8_character() {
        let (events, _) = typed("né\x7fe\r".as_bytes(), 256);
        assert_eq!(events, [line("ne")]);
    }

    #[test]
    fn ctrl_c_abandons_and_ctrl_d_ends_only_an_empty_line() {
        let (events, echo) = typed(b"oops\x03\x04", 256);
        assert_eq!(events, [Event::Interrupt, Event::EndOfInput]);
        assert_eq!(echo, b"oops^C\n\n");
        let (events, _) = typed(b"ab\x04c\r", 256);
        assert_eq!(events, [line("abc")]);
    }

    #[test]
    fn escape_sequences_and_control_bytes_are_ignored() {
        // Up arrow, Right arrow, a tab, then text.
        let (events, echo) = typed(b"\x1b[A\x1b[1;5Cp\ts\r", 256);
        assert_eq!(events, [line("ps")]);
        assert_eq!(echo, b"ps\n");
    }

    #[test]
    fn a_full_line_rings_the_bell_and_keeps_what_fits() {
        let (events, echo) = typed(b"abcdef\r", 4);
        assert_eq!(events, [line("abcd")]);
        assert_eq!(echo, b"abcd\x07\x07\n");
    }
}
