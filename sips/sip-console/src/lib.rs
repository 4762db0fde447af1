//! SIP `console`: the console's one reader. The system manifest gives it the kernel's
//! `console` power, so it alone receives what is typed on COM1 (`console_read`) and its
//! output is drawn unlabelled. It serves the Console contract on its initial endpoint
//! `clients`: `ReadLine(prompt)` prints the prompt, then edits the line as it is typed
//! (`cordon_sip::line`: echo, Backspace, ^U, ^C, ^D) and answers `Line` (or `EndOfInput`);
//! what is typed past a line's end waits for the next `ReadLine`;
//! `Print(text)` prints the text and answers `Printed`. Exits 0 when its client goes away.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use cordon_sip::channel::{Error, RecvError};
use cordon_sip::line::{Event, LineEditor};
use cordon_sip::{console_read, println, write_str};

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use console::{EndOfInput, ExpReadyIn, Line, Printed};

/// Longest line (the contract's `Line.text` bound).
const MAX_LINE: usize = 256;

/// What reading one line came to.
enum Read {
    Line(alloc::string::String),
    End,
}

/// The keyboard side: one line editor for the whole session, and what was typed past the
/// end of the line just answered (typed ahead, or pasted), kept for the next `ReadLine`.
struct Keyboard {
    editor: LineEditor,
    ahead: VecDeque<u8>,
}

impl Keyboard {
    /// Prints `prompt`, then reads and edits one line from the console.
    fn read_line(&mut self, prompt: &[u8]) -> Result<Read, Error> {
        cordon_sip::sys::console_write(prompt);
        // What was typed ahead is echoed now, after the prompt it belongs to.
        let mut echo = Vec::new();
        let mut typed = [0u8; 64];
        loop {
            while let Some(byte) = self.ahead.pop_front() {
                match self.editor.feed(byte, &mut echo) {
                    None => {}
                    Some(Event::Line(text)) => {
                        cordon_sip::sys::console_write(&echo);
                        return Ok(Read::Line(text));
                    }
                    Some(Event::Interrupt) => {
                        // The line is abandoned: a fresh prompt, as a shell's ^C gives.
                        echo.extend_from_slice(prompt);
                    }
                    Some(Event::EndOfInput) => {
                        cordon_sip::sys::console_write(&echo);
                        return Ok(Read::End);
                    }
                }
            }
            // Typed bytes that arrived together are echoed together.
            cordon_sip::sys::console_write(&echo);
            echo.clear();
            let n = console_read(&mut typed, None)?;
            self.ahead.extend(&typed[..n]);
        }
    }
}

fn main() -> i32 {
    let clients = match console::Exp::initial("clients") {
        Ok(ep) => ep,
        Err(e) => {
            println!("no `clients` endpoint: {e:?}");
            return 1;
        }
    };
    let mut keyboard = Keyboard {
        editor: LineEditor::new(MAX_LINE),
        ahead: VecDeque::new(),
    };
    let mut next = clients.recv(None);
    loop {
        next = match next {
            Ok(ExpReadyIn::ReadLine(ep, ask)) => match keyboard.read_line(&ask.prompt[..]) {
                Ok(Read::Line(text)) => {
                    // At most MAX_LINE bytes: the editor keeps no more.
                    let text = console::Bytes::new(text.into_bytes()).unwrap_or_default();
                    ep.reply_line(Line { text }, None)
                        .map_err(RecvError::without_timeout)
                }
                Ok(Read::End) => ep
                    .reply_end_of_input(EndOfInput {}, None)
                    .map_err(RecvError::without_timeout),
                Err(e) => {
                    println!("console input failed: {e:?}");
                    return 1;
                }
            },
            Ok(ExpReadyIn::Print(ep, print)) => {
                cordon_sip::sys::console_write(&print.text[..]);
                ep.reply_printed(Printed {}, None)
                    .map_err(RecvError::without_timeout)
            }
            Err(RecvError::Failed(Error::PeerClosed)) => return 0,
            Err(_) => {
                write_str("console: receive failed\n");
                return 1;
            }
        };
    }
}
