//! SIP `shell`: a command line on the console. It reads lines from the console SIP over
//! its initial `console` endpoint (Console contract) and prints through it; what it can do
//! to the system is exactly the powers the system manifest gives it — `inspect` (`ps`,
//! `channels`, `contracts`, `counters`, `info`, `wait`), `start` (`run`), `kill`, `bench`,
//! `shutdown`. The `shell` system gives it all of them; a command whose power a system withholds ends the
//! shell at its first use (the kernel faults a SIP that calls beyond its powers).
//! Every figure it shows is the kernel's own accounting (the `report` and `sip_info`
//! operations), never its own.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use cordon_sip::channel::{Error, RecvError};
use cordon_sip::println;
use cordon_sip::process::{self, sip_state};

cordon_sip::sip_main!(main);
cordon_sip::contracts!();

use console::{ImpReadingIn, ImpReady1In};

/// The prompt; the runner's scripted input waits for it before each line.
const PROMPT: &[u8] = b"cordon> ";

/// The shell's end of the console, between commands.
type Console = console::Imp<console::state::Ready>;

/// Prints `text` through the console SIP, in pieces the contract allows.
fn print(mut ep: Console, text: &str) -> Result<Console, Error> {
    let bytes = text.as_bytes();
    // The contract's `Print.text` bound.
    for piece in bytes.chunks(4096) {
        let text = console::Bytes::new(piece.to_vec())?;
        ep = match ep.call_print(console::Print { text }, None) {
            Ok(ImpReady1In::Printed(ep, _)) => ep,
            Err(RecvError::Failed(e)) => return Err(e),
            Err(RecvError::Timeout(_)) => return Err(Error::Timeout),
        };
    }
    Ok(ep)
}

/// What a line asked for.
enum Next {
    Continue(String),
    Shutdown(i32),
}

/// The commands, with the power each needs (`None`: always there) and its help line.
const COMMANDS: &[(&str, &str, &str)] = &[
    ("help", "", "this list"),
    (
        "ps",
        "inspect",
        "every SIP with the kernel's accounting of it",
    ),
    (
        "channels",
        "inspect",
        "every endpoint a running SIP holds: contract, state, queue",
    ),
    (
        "contracts",
        "inspect",
        "the contracts the kernel compiled at boot",
    ),
    (
        "counters",
        "inspect",
        "the kernel's event counters since boot",
    ),
    (
        "info PID",
        "inspect",
        "one SIP's accounting, field by field",
    ),
    (
        "run [-w] NAME [ARGS...]",
        "start",
        "start a SIP from module NAME of the boot package (-w: and wait for its end)",
    ),
    ("kill PID", "kill", "end SIP PID"),
    (
        "wait PID",
        "inspect",
        "wait until SIP PID has ended, and say how",
    ),
    (
        "bench [SUITE]",
        "bench",
        "run the kernel's micro-benchmark suite now (figures print as measured)",
    ),
    (
        "shutdown [STATUS]",
        "shutdown",
        "end every SIP and power off",
    ),
];

/// Runs one command line; what to print, or to shut down.
fn execute(words: &[String]) -> Next {
    let Some(command) = words.first() else {
        return Next::Continue(String::new());
    };
    let args = &words[1..];
    let text = match command.as_str() {
        "help" => help(),
        "ps" => table(process::tables::SIPS),
        "channels" => table(process::tables::CHANNELS),
        "contracts" => table(process::tables::CONTRACTS),
        "counters" => table(process::tables::COUNTERS),
        "info" => match pid_arg(args) {
            Ok(pid) => info(pid),
            Err(why) => why,
        },
        "run" => match args.split_first() {
            Some((flag, rest)) if flag == "-w" => match rest.split_first() {
                Some((name, rest)) => run(name, rest, true),
                None => String::from("usage: run [-w] NAME [ARGS...]\n"),
            },
            Some((name, rest)) => run(name, rest, false),
            None => String::from("usage: run [-w] NAME [ARGS...]\n"),
        },
        "kill" => match pid_arg(args) {
            Ok(pid) => kill(pid),
            Err(why) => why,
        },
        "wait" => match pid_arg(args) {
            Ok(pid) => match process::wait(pid) {
                Ok(info) => format!("pid {pid} {}\n", ending(&info)),
                Err(Error::NotFound) => format!("wait: no SIP {pid}\n"),
                Err(e) => format!("wait {pid}: {e:?}\n"),
            },
            Err(why) => why,
        },
        "bench" => {
            let suite = args.first().map_or("micro", String::as_str);
            match process::bench(suite) {
                Ok(()) => format!("bench: the {suite} suite ran to completion\n"),
                Err(Error::NotFound) => {
                    format!("bench: the {suite} suite cannot run here (see above)\n")
                }
                Err(Error::Busy) => String::from("bench: a suite is running already\n"),
                Err(e) => format!("bench {suite}: did not complete: {e:?}\n"),
            }
        }
        "shutdown" => {
            return match args.first().map(|s| s.parse::<i32>()) {
                None => Next::Shutdown(0),
                Some(Ok(status)) => Next::Shutdown(status),
                Some(Err(_)) => Next::Continue(format!(
                    "shutdown: `{}` is not a status (a number, 0 for success)\n",
                    args[0]
                )),
            };
        }
        other => format!("{other}: no such command (`help` lists them)\n"),
    };
    Next::Continue(text)
}

fn help() -> String {
    let mut text =
        String::from("commands (each needs the power named, from the system manifest):\n");
    for (usage, power, what) in COMMANDS {
        let power = if power.is_empty() {
            String::new()
        } else {
            format!(" [{power}]")
        };
        text.push_str(&format!("  {usage:<24} {what}{power}\n"));
    }
    text
}

/// The one argument of `kill` and `info`.
fn pid_arg(args: &[String]) -> Result<process::Pid, String> {
    match args {
        [pid] => pid
            .parse()
            .map_err(|_| format!("`{pid}` is not a pid (a number `ps` shows)\n")),
        _ => Err(String::from("usage: kill PID, wait PID, info PID\n")),
    }
}

fn table(which: u32) -> String {
    match process::report(which) {
        Ok(text) => text,
        Err(e) => format!("the kernel refused the table: {e:?}\n"),
    }
}

fn info(pid: process::Pid) -> String {
    match process::info(pid) {
        Ok(i) => {
            let state = ending(&i);
            format!(
                "pid {pid}: {state}\n  cycles {}\n  ticks {}\n  kernel calls {}\n  messages sent {}, received {}\n  bytes copied {}\n  kernel objects {} ({} bytes) now, {} ({} bytes) at most\n  memory promised {} KiB\n  page faults {}\n  slot generation {}\n",
                i.cycles,
                i.ticks,
                i.kernel_calls,
                i.messages_sent,
                i.messages_received,
                i.bytes_copied,
                i.objects,
                i.object_bytes,
                i.peak_objects,
                i.peak_bytes,
                i.memory_bytes.div_ceil(1024),
                i.faults,
                i.generation
            )
        }
        Err(Error::NotFound) => format!("no SIP {pid}\n"),
        Err(e) => format!("info {pid}: {e:?}\n"),
    }
}

/// How a SIP stands, in words.
fn ending(info: &process::SipInfo) -> String {
    match (info.state, info.ending) {
        (sip_state::RUNNING, _) => String::from("running"),
        (_, sip_state::KILLED) => String::from("was killed"),
        (_, sip_state::FAULTED) => String::from("faulted"),
        (_, sip_state::NOT_LOADED) => String::from("was not loaded"),
        (_, status) => format!("exited with status {status}"),
    }
}

fn run(name: &str, args: &[String], wait: bool) -> String {
    let started = if args.is_empty() {
        process::start(name)
    } else {
        process::start_with_args(name, args)
    };
    match started {
        Ok(pid) if wait => match process::wait(pid) {
            Ok(info) => format!("started {name}: pid {pid}; it {}\n", ending(&info)),
            Err(e) => format!("started {name}: pid {pid}; lost it: {e:?}\n"),
        },
        Ok(pid) => format!("started {name}: pid {pid}\n"),
        Err(Error::NotFound) => format!(
            "run: no module `{name}` in the boot package (add it on the host: --sip PATH, or `modules` in the system manifest)\n"
        ),
        Err(Error::Busy) => format!(
            "run: {name} is running already (one incarnation of a system-manifest entry at a time)\n"
        ),
        Err(Error::PeerClosed) => {
            format!("run: a SIP that {name}'s channels lead to is not running (start it first)\n")
        }
        Err(Error::OutOfMemory) => format!("run: no process slot or memory for {name}\n"),
        Err(e) => format!("run {name}: {e:?}\n"),
    }
}

fn kill(pid: process::Pid) -> String {
    match process::info(pid) {
        Ok(info) if info.state == sip_state::ENDED => {
            return format!("kill: pid {pid} has ended already\n");
        }
        _ => {}
    }
    match process::kill(pid) {
        Ok(()) => match process::wait(pid) {
            Ok(info) if info.ending == sip_state::KILLED => format!("killed pid {pid}\n"),
            Ok(_) => format!("pid {pid} had ended already\n"),
            Err(e) => format!("kill {pid}: {e:?}\n"),
        },
        Err(Error::NotFound) => format!("kill: no SIP {pid}\n"),
        Err(e) => format!("kill {pid}: {e:?}\n"),
    }
}

fn main() -> i32 {
    let mut ep: Console = match console::Imp::initial("console") {
        Ok(ep) => ep,
        Err(e) => {
            println!("no `console` endpoint: {e:?}");
            return 1;
        }
    };
    let banner = "Cordon shell: `help` lists the commands.\n";
    ep = match print(ep, banner) {
        Ok(ep) => ep,
        Err(e) => {
            println!("console gone: {e:?}");
            return 1;
        }
    };
    loop {
        let prompt = console::Bytes::new(PROMPT.to_vec()).unwrap_or_default();
        let line = match ep.call_read_line(console::ReadLine { prompt }, None) {
            Ok(ImpReadingIn::Line(next, line)) => {
                ep = next;
                String::from_utf8_lossy(&line.text).into_owned()
            }
            Ok(ImpReadingIn::EndOfInput(next, _)) => {
                ep = next;
                String::from("shutdown")
            }
            Err(e) => {
                println!("console gone: {e:?}");
                return 1;
            }
        };
        let words: Vec<String> = cordon_sip::line::words(&line);
        match execute(&words) {
            Next::Continue(text) => {
                ep = match print(ep, &text) {
                    Ok(ep) => ep,
                    Err(e) => {
                        println!("console gone: {e:?}");
                        return 1;
                    }
                };
            }
            Next::Shutdown(status) => process::shutdown(status),
        }
    }
}
