//! The COM1 console and the kernel logger behind the `log` macros.
//!
//! Everything the kernel prints goes to COM1 (QEMU's `-serial stdio`): `print!`/`println!`
//! write raw text (SIP output, banners, the log lines of `crate::logger`). What is typed
//! arrives through the receive interrupt ([`receive`]), which the console module drains.

use core::fmt::{self, Write};
use uart_16550::{Config, Uart16550, backend::PioBackend, spec::registers::IER};

use super::irq::IrqMutex;

const COM1: u16 = 0x3f8;
/// COM1's interrupt line on the PC's interrupt controller.
pub const IRQ: u8 = 4;

struct Console {
    uart: Option<Uart16550<PioBackend>>,
}

impl Console {
    fn write_bytes(&mut self, bytes: &[u8]) {
        if let Some(uart) = self.uart.as_mut() {
            for &byte in bytes {
                if byte == b'\n' {
                    uart.send_bytes_exact(b"\r");
                }
                uart.send_bytes_exact(&[byte]);
            }
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

static CONSOLE: IrqMutex<Console> = IrqMutex::new(Console { uart: None });

/// Opens COM1. Until this runs, output is dropped.
pub fn init() {
    // SAFETY: 0x3f8..0x3ff are COM1's registers on every PC and QEMU machine, and only this
    // console ever touches them.
    let uart = unsafe { Uart16550::new_port(COM1) };
    if let Ok(mut uart) = uart
        && uart.init(Config::default()).is_ok()
    {
        // Received bytes raise IRQ 4 (the kernel keeps them for the console SIP).
        uart.enable_interrupts(IER::DATA_READY);
        CONSOLE.lock().uart = Some(uart);
    }
}

/// Most bytes one receive interrupt takes (the UART's FIFO holds 16): the loop runs with
/// interrupts masked.
const RECEIVE_MAX: usize = 64;

/// Hands the bytes the UART has received to `take`, oldest first (from the receive
/// interrupt; draining the receive buffer also clears the interrupt).
pub fn receive(mut take: impl FnMut(u8)) {
    let mut console = CONSOLE.lock();
    if let Some(uart) = console.uart.as_mut() {
        for _ in 0..RECEIVE_MAX {
            let Ok(byte) = uart.try_receive_byte() else {
                break;
            };
            take(byte);
        }
    }
}

/// Writes formatted text to the console.
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Bytes written per console-lock section: the lock masks interrupts, so a SIP's long
/// write is cut into pieces with interrupts let in between.
const WRITE_CHUNK: usize = 64;

/// Writes raw bytes (a SIP's output) to the console.
pub fn write_bytes(bytes: &[u8]) {
    for chunk in bytes.chunks(WRITE_CHUNK) {
        CONSOLE.lock().write_bytes(chunk);
    }
}

/// Console output for the panic path: takes the console if it is free, else opens COM1
/// afresh, so a panic while printing still gets its report out.
pub fn panic_print(args: fmt::Arguments<'_>) {
    if let Some(mut console) = CONSOLE.try_lock() {
        let _ = console.write_fmt(args);
        return;
    }
    // SAFETY: the console lock is held by the code that panicked on this (only) processor
    // and will never be released; writing to the port directly interleaves at worst one
    // half-written line with the report.
    if let Ok(mut uart) = unsafe { Uart16550::new_port(COM1) } {
        let mut console = Console { uart: None };
        if uart.init(Config::default()).is_ok() {
            console.uart = Some(uart);
        }
        let _ = console.write_fmt(args);
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::arch::serial::print_fmt(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::print!("{}\n", format_args!($($arg)*)) };
}
