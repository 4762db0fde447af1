//! The Cordon kernel.
//!
//! Cordon runs software-isolated processes (SIPs): WebAssembly modules, verified before
//! they run and sealed, that talk only over contract-checked channels. This crate is the
//! kernel: it boots through `bootloader_api`, reads its boot package (boot parameters and
//! SIP modules) from the ramdisk the runner built, starts every processor the firmware
//! lists, and runs its threads on the first (the others serve cross-processor calls).
//!
//! Design rules, kept throughout:
//! - `unsafe` lives only in [`arch`] (processor tables, trap entry, context switch, ports)
//!   and [`mm`] (physical memory, heap); every other module denies it.
//! - Logic that needs no hardware lives in `kernel_core` and is unit-tested on the host.
//! - Anything a SIP does ends at that SIP; the kernel panics only on its own bugs, and a
//!   panic prints a decoded report and powers QEMU off with the failure code.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod bench;
mod console;
mod counters;
mod devices;
mod hosted;
mod ipc;
mod ktest;
mod logger;
mod mm;
mod pci;
mod process;
mod recovery;
mod report;
mod sched;
mod syscall;
mod time;

use alloc::string::String;
use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::{BootInfo, entry_point};
use bootpkg::{BootPackage, LogLevel};
use spin::Once;

use arch::qemu::{ExitCode, exit};

/// What the kernel asks of the bootloader: physical memory mapped at a free offset (the
/// frame allocator and heap reach frames through it) and a roomy boot stack.
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.kernel_stack_size = 256 * 1024;
    config
};

entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

static PACKAGE: Once<BootPackage> = Once::new();

/// The boot package the runner built (after boot has read it).
pub fn boot_package() -> &'static BootPackage {
    PACKAGE.get().expect("the boot package was read at boot")
}

/// A copy of the SIP module called `name` from the boot package.
pub fn boot_module(name: &str) -> Result<alloc::vec::Vec<u8>, String> {
    boot_package()
        .file(name)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            alloc::format!("the boot package has no `{name}` module (boot with --sip {name})")
        })
}

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    arch::serial::init();
    mm::heap::init_boot_arena();
    logger::init(log::LevelFilter::Info);
    // Interrupts reach the layers above through this one hook (`arch` knows none of them).
    arch::trap::set_interrupt_hook(on_interrupt);
    arch::init();

    // Memory first: the boot package (with the hosted runtime) outgrows the boot arena.
    let memory = mm::init(boot_info);
    let package = match mm::ramdisk(boot_info).map(BootPackage::decode) {
        Some(Ok(package)) => PACKAGE.call_once(|| package),
        Some(Err(err)) => fail(format_args!("cannot read the boot package: {err}")),
        None => fail(format_args!(
            "no boot package: boot Cordon through its runner (`cargo run`), which puts one in the ramdisk"
        )),
    };
    let config = &package.config;
    log::set_max_level(level_filter(config.log_level));
    process::init_artifact_checks(package.artifacts.len());

    // Every other processor runs the scheduler's idle loop once up (it waits there for
    // `sched::init` and `sched::set_processors`).
    arch::smp::set_idle_loop(sched::idle_loop);
    let processors = start_processors(boot_info.rsdp_addr.into_option());

    // A self-test that must run before the scheduler exists (it never returns).
    if let Some(name) = config.self_test.as_deref() {
        ktest::run_early(name);
    }

    println!(
        "Cordon {} booted: isolation={}, engine={}, {} MiB usable memory, {} MiB heap, {} of {} frames free, timer {} Hz",
        env!("CARGO_PKG_VERSION"),
        config.isolation,
        config.engine.name(),
        memory.usable_bytes >> 20,
        memory.heap_bytes >> 20,
        memory.free_frames,
        mm::frames::total_frames(),
        time::TICK_HZ,
    );

    println!("{processors}");

    syscall::check_table();
    let devices = pci::devices();
    for device in devices {
        log::debug!("PCI {device}");
    }
    let disks: alloc::vec::Vec<_> = devices
        .iter()
        .filter(|d| d.name() == "virtio-blk")
        .collect();
    println!(
        "PCI: {} functions; {}",
        devices.len(),
        if disks.is_empty() {
            alloc::string::String::from("no virtio-blk disk")
        } else {
            disks
                .iter()
                .map(|d| alloc::format!("{d}"))
                .collect::<alloc::vec::Vec<_>>()
                .join("; ")
        }
    );
    println!(
        "isolation={}: {}; PCID {} (not used: every CR3 load flushes the TLB), NX {}",
        config.isolation,
        config.isolation.description(),
        if arch::has_pcid() {
            "available"
        } else {
            "not available"
        },
        if mm::vm::nx_enabled() { "on" } else { "off" },
    );
    let cpu = arch::fpu::features();
    let on = |yes: bool| if yes { "on" } else { "not available" };
    println!(
        "processor: SSE on with x87/SSE state saved on every switch, AVX off; UMIP {}; SMEP {}; SMAP {}",
        on(cpu.umip),
        on(cpu.smep_available),
        on(arch::smap::enabled()),
    );
    if config.isolation.needs_client() && package.client.is_none() {
        fail(format_args!(
            "isolation={} isolates the client SIP, and the system manifest names none",
            config.isolation
        ));
    }

    sched::init();
    sched::set_processors(arch::smp::online());
    // A SIP thread that finds one of the compiled engine's locks held gives the processor
    // to others (the holder is a preempted SIP thread) instead of spinning its slice.
    sip_runtime::compiled::set_lock_wait(sched::yield_now);
    if let Err(err) = load_contracts(package) {
        fail(format_args!("{err}"));
    }
    if let Err(err) = hosted::prepare(config.isolation) {
        fail(format_args!("{err}"));
    }
    let baseline = mm::Usage::now();
    let counters = counters::Counters::now();
    let started = match (config.self_test.as_deref(), config.bench.as_deref()) {
        (Some(name), _) => ktest::start(name),
        (None, Some(suite)) => bench::start(suite),
        (None, None) => recovery::init(package).and_then(|()| start_system(package)),
    };
    if let Err(err) = started {
        fail(format_args!("{err}"));
    }
    console::init();
    x86_64::instructions::interrupts::enable();
    sched::run_until_all_exited();
    x86_64::instructions::interrupts::disable();

    log::info!(
        "all threads finished after {} ticks, {} context switches",
        time::ticks(),
        sched::context_switches()
    );
    if config.bench.is_some() && config.self_test.is_none() {
        if bench::failed() {
            fail(format_args!("a benchmark did not run to completion"));
        }
    } else if config.self_test.is_some() {
        let failures = ktest::failures();
        if failures > 0 {
            fail(format_args!("{failures} self-test(s) failed"));
        }
    } else {
        counters.print_since("system run");
        print_processors();
        let unclean = process::print_summary();
        recovery::print_summary();
        let after = mm::Usage::now();
        let channels = ipc::counts();
        println!(
            "reclaim: {}; {} endpoints and {} exchange-heap blocks left",
            baseline.compare(&after),
            channels.endpoints,
            channels.blocks
        );
        if channels.endpoints + channels.blocks > 0 {
            fail(format_args!("endpoints or blocks outlived every SIP"));
        }
        if unclean > 0 {
            fail(format_args!(
                "{unclean} of {} SIPs did not exit with status 0",
                process::started()
            ));
        }
        if after.free_frames != baseline.free_frames {
            fail(format_args!(
                "frames were not reclaimed after every SIP ended"
            ));
        }
        if let Some(status) = process::shutdown_status()
            && status != 0
        {
            fail(format_args!(
                "the system was shut down with status {status}"
            ));
        }
    }
    println!("Cordon: nothing left to run, powering off (success)");
    exit(ExitCode::Success)
}

/// Starts every processor the firmware's MADT lists and says, in one line for the boot
/// log, which run and what they do.
fn start_processors(rsdp: Option<u64>) -> String {
    let platform = match rsdp.map(arch::acpi::platform) {
        Some(Ok(platform)) => platform,
        Some(Err(err)) => {
            arch::smp::start(0, &[]);
            return alloc::format!("CPUs: 1 (the others are not known: {err})");
        }
        None => {
            arch::smp::start(0, &[]);
            return String::from("CPUs: 1 (the firmware gave no ACPI tables)");
        }
    };
    // Device lines through the I/O APIC and the tick from each processor's local APIC
    // timer, when the MADT lists an I/O APIC; the 8259s and the PIT otherwise.
    let io_apic = platform
        .io_apics
        .iter()
        .find(|io| io.first_gsi == 0)
        .filter(|_| !arch::apic::x2apic_enabled());
    if let Some(io) = io_apic {
        arch::lines::use_io_apic(io.address, io.first_gsi, &platform.overrides);
    }
    let listed: alloc::vec::Vec<u32> = core::iter::once(platform.boot_apic_id)
        .chain(platform.application_processors.iter().copied())
        .collect();
    let results = arch::smp::start(platform.boot_apic_id, &listed);
    let mut line = alloc::format!(
        "CPUs: {} running (local APIC IDs {})",
        arch::smp::online(),
        arch::smp::apic_ids()
            .iter()
            .map(|id| alloc::format!("{id}"))
            .collect::<alloc::vec::Vec<_>>()
            .join(", ")
    );
    for (id, result) in &results {
        if let Err(err) = result {
            line += &alloc::format!("; APIC {id} not started: {err}");
        }
    }
    if platform.disabled > 0 {
        line += &alloc::format!("; {} listed as disabled", platform.disabled);
    }
    if arch::smp::online() > 1 {
        line += "; threads run on every CPU (per-CPU run queues, work stealing, reschedule IPIs)";
    }
    line += &match (io_apic, arch::apic::timer_counts_per_tick()) {
        (Some(io), Some(counts)) => alloc::format!(
            "; device lines through I/O APIC {} at {:#x} (GSI {}-, {} override(s)); tick: each CPU's local APIC timer ({counts} counts of 16 bus clocks, measured against the PIT)",
            io.id,
            io.address,
            io.first_gsi,
            platform.overrides.len()
        ),
        _ => String::from(
            "; no I/O APIC for lines 0-15 usable: device lines through the 8259 PICs, tick from the PIT",
        ),
    };
    line
}

/// With more than one processor: what each did, so an idle one cannot pass for a working
/// one (CPU 0's idle and busy cycles are the counters line's).
fn print_processors() {
    if arch::smp::online() < 2 {
        return;
    }
    let percent = |part: u64, whole: u64| {
        let tenths = part * 1000 / whole.max(1);
        alloc::format!("{}.{}%", tenths / 10, tenths % 10)
    };
    for cpu in arch::smp::report() {
        let (threads, switches) = sched::processor_usage(cpu.cpu);
        println!(
            "  CPU {} (local APIC {}): ran threads {} cycles ({}), halted {} ({}) of the {} since it started; {} context switches, {} ticks, {} calls served in {} cycles",
            cpu.cpu,
            cpu.apic_id,
            threads,
            percent(threads, cpu.cycles),
            cpu.halted_cycles,
            percent(cpu.halted_cycles, cpu.cycles),
            cpu.cycles,
            switches,
            cpu.ticks,
            cpu.calls_served,
            cpu.serving_cycles,
        );
    }
    let (migrations, steals) = sched::migrations();
    println!(
        "  threads moved between processors {migrations} times ({steals} taken by an idle processor from another's queue); {} reschedule IPIs",
        arch::smp::KICKS_SENT.load(core::sync::atomic::Ordering::Relaxed)
    );
}

/// Compiles every contract source in the boot package into the channel manager's tables.
fn load_contracts(package: &BootPackage) -> Result<(), String> {
    let mut protocols = alloc::vec::Vec::new();
    for file in package
        .files
        .iter()
        .filter(|f| f.name.ends_with(".contract"))
    {
        let source = core::str::from_utf8(&file.data)
            .map_err(|_| alloc::format!("{}: not UTF-8", file.name))?;
        let compiled = contracts::compile(source)
            .map_err(|err| alloc::format!("contract error:\n{}", err.render(&file.name, source)))?;
        protocols.extend(compiled);
    }
    ipc::init(protocols);
    log::info!("contracts: {}", ipc::contract_names().join(", "));
    Ok(())
}

/// Starts the SIPs of the system manifest, in order, and connects their channels. The
/// SIP threads are held until every channel exists (another processor could run them at
/// once). Entries started on request wait for a SIP with the `start` power; their
/// channels are made then.
fn start_system(package: &BootPackage) -> Result<(), String> {
    // The runner checked the wiring; a package built some other way is checked again.
    bootpkg::check_wiring(&package.sips, &package.on_request, &package.channels)?;
    bootpkg::SipArgs::check_all(&package.sips, &package.args)?;
    let mut pids = alloc::vec::Vec::new();
    let mut threads = alloc::vec::Vec::new();
    let wired = start_and_connect(package, &mut pids, &mut threads);
    // Whatever happened, nothing stays held: a SIP whose channel is missing says so.
    for thread in &threads {
        thread.release();
    }
    wired
}

fn start_and_connect(
    package: &BootPackage,
    pids: &mut alloc::vec::Vec<Option<process::Pid>>,
    threads: &mut alloc::vec::Vec<sched::JoinHandle>,
) -> Result<(), String> {
    for (index, name) in package.sips.iter().enumerate() {
        let index = index as u32;
        if !package.starts_at_boot(index) {
            pids.push(None);
            continue;
        }
        let module = package
            .file(name)
            .ok_or_else(|| alloc::format!("SIP `{name}` is not in the boot package"))?;
        let options = process::StartOptions {
            client: package.client == Some(index),
            system_index: Some(index),
            held: true,
            ..Default::default()
        };
        let (pid, thread) = process::start_with(name, module.to_vec(), options)
            .map_err(|err| alloc::format!("cannot start SIP `{name}`: {err:?}"))?;
        pids.push(Some(pid));
        threads.push(thread);
    }
    for c in &package.channels {
        if let (Some(exp), Some(imp)) =
            (pids[c.exporter.sip as usize], pids[c.importer.sip as usize])
        {
            ipc::connect(
                &c.contract,
                (exp, &c.exporter.endpoint),
                (imp, &c.importer.endpoint),
            )?;
        }
    }
    Ok(())
}

fn level_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}

/// Interrupt line `irq` fired and was acknowledged (the hook `arch::trap` calls; it masked
/// a device line first). The timer drives time and scheduling; COM1 is the kernel's
/// console; every other line belongs to a driver SIP's device.
fn on_interrupt(irq: u8) {
    if irq == arch::lines::TIMER {
        time::on_timer_interrupt();
    } else if irq == arch::lines::CPU_TICK {
        time::on_processor_tick();
    } else if irq == arch::lines::RESCHEDULE {
        sched::preempt();
    } else if irq == arch::serial::IRQ {
        console::on_interrupt();
    } else {
        devices::on_interrupt(irq);
    }
}

/// Reports a failure that is not a kernel bug (bad boot package, unavailable mode) and
/// powers off with the failure code.
fn fail(message: core::fmt::Arguments<'_>) -> ! {
    println!("Cordon: error: {message}");
    println!("Cordon: powering off (failure)");
    exit(ExitCode::Failure)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    let location = info
        .location()
        .map(|l| (l.file(), l.line(), l.column()))
        .unwrap_or(("<unknown>", 0, 0));
    arch::serial::panic_print(format_args!(
        "\nKERNEL PANIC at {}:{}:{}: {}\nCordon: powering off (failure)\n",
        location.0,
        location.1,
        location.2,
        info.message()
    ));
    exit(ExitCode::Failure)
}
