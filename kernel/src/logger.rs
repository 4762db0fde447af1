//! The kernel logger behind the `log` macros: each line carries its level and the timer
//! tick, and goes to the console through `arch::serial`.
#![deny(unsafe_code)]

use crate::arch::serial::print_fmt;

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            print_fmt(format_args!(
                "[{:>5} {:>6}] {}\n",
                record.level(),
                crate::time::ticks(),
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the console logger at `level`.
pub fn init(level: log::LevelFilter) {
    // Only fails if a logger is already set, which means init ran twice: keep the first.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
