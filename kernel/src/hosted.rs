//! SIPs run by the hosted runtime in an address space: every isolation configuration
//! except `soft`.
//!
//! The kernel verifies the module as always, then builds the SIP's *window* in an address
//! space: the `sip-hosted` program from the boot package (copied and relocated), its
//! arguments, the module bytes (read-only), for a compiled SIP its artifact (read-only, the
//! text read+execute: mapped here, before the SIP starts, since nothing in the ABI makes
//! memory executable), a stack, and a demand-zero heap sized by the manifest's limits. A
//! SIP with a space of its own gets window 0 of a fresh space; the others share one
//! system-wide space, one window each, and are torn down window by
//! window (the space itself goes when its last SIP does). A space of its own is made by
//! *forking* a prepared image ([`prepare`]): the program is loaded and relocated once at
//! boot, and each SIP gets its pages copy-on-write (text stays shared for good; a data
//! page is copied when the SIP first writes it). Then `arch::user::run` enters
//! the program, in ring 3 or ring 0 as the configuration says, and the system-call table
//! serves it until it reports its end, faults or is killed.
//!
//! Window layout (offsets from the window's base):
//!
//! | offset | what | mapping |
//! |---|---|---|
//! | 0 | arguments (`cordon_abi::hosted::HostedArgs`) | one read-only page |
//! | 2 MiB | the program's segments | as the ELF says (text R+X, data R+W) |
//! | 1 GiB | the module | read-only |
//! | 1.5 GiB | its compiled artifact, if it runs compiled | read-only; its text read+execute |
//! | 2 GiB - 256 KiB | the stack, growing down to a guard gap | read-write |
//! | 4 GiB | the heap | demand-zero read-write, up to 12 GiB |
#![deny(unsafe_code)]

use alloc::format;
use alloc::string::String;

use bootpkg::{Placement, Program};
use cordon_abi::hosted::{ExitReport, HostedArgs};
use sip_runtime::{Exit, Fault, Kernel, Metering};
use x86_64::VirtAddr;

use crate::arch::user::{self, Entry, UserAccess};
use crate::arch::{context, cycles};
use crate::mm::frames::FramePromise;
use crate::mm::vm::{Access, AddressSpace, MapError, user_base};
use crate::process::{Ending, SipKernel, Timings};
use crate::syscall::{self, Outcome};

const GIB: u64 = 1 << 30;
const PAGE: u64 = 4096;
/// Size of one SIP's window.
const WINDOW: u64 = 16 * GIB;
/// Windows in a space (the user region is 512 GiB; window slot 0 stays unused).
const WINDOWS: usize = 31;
const PROGRAM: u64 = 2 << 20;
const MODULE: u64 = GIB;
const ARTIFACT: u64 = GIB + GIB / 2;
/// Largest compiled artifact a window holds (below the stack and its guard gap).
const ARTIFACT_MAX: u64 = GIB / 4;
const STACK_TOP: u64 = 2 * GIB;
const STACK_BYTES: u64 = 256 << 10;
const HEAP: u64 = 4 * GIB;
const HEAP_MAX: u64 = 12 * GIB;

/// How to run one SIP.
pub struct Setup {
    pub placement: Placement,
    pub limits: cordon_abi::Limits,
    pub metering: Metering,
    /// Cycle counter when the kernel began creating the SIP, and after verifying it.
    pub created: u64,
    pub verify: u64,
    /// Run the `syscall-probe` test program instead: (probe, kernel address it targets).
    pub probe: Option<(u64, u64)>,
    /// The module's compiled artifact, checked to belong to it, to run it compiled.
    pub artifact: Option<&'static [u8]>,
}

/// The system-wide space of the `paged` configurations: (space, windows in use).
static SHARED: spin::Mutex<Option<(AddressSpace, [bool; WINDOWS])>> = spin::Mutex::new(None);

/// Prepared runtime images for spaces of their own, by ring (0: ring 0, 1: ring 3): the
/// program loaded and relocated in window 0, never run, only forked.
static TEMPLATES: spin::Mutex<[Option<AddressSpace>; 2]> = spin::Mutex::new([None, None]);

/// Loads the runtime image that SIPs in spaces of their own are forked from, for every
/// ring the boot's isolation configuration uses. Runs once at boot, before the SIPs.
pub fn prepare(isolation: bootpkg::Isolation) -> Result<(), String> {
    let Some(program) = crate::boot_package().program("sip-hosted") else {
        return Ok(()); // reported when a SIP needs it
    };
    for client in [false, true] {
        let ring3 = match isolation.placement(client) {
            Placement::Kernel => continue,
            // The shared space takes its text from the ring-0 image.
            Placement::SharedSpace => false,
            Placement::OwnSpace { ring3 } => ring3,
        };
        if TEMPLATES.lock()[usize::from(ring3)].is_some() {
            continue;
        }
        let mut space = AddressSpace::new().ok_or("no memory for the runtime image")?;
        load_program(&mut space, user_base() + WINDOW, program, ring3)
            .map_err(|e| format!("cannot load the runtime image: {e:?}"))?;
        TEMPLATES.lock()[usize::from(ring3)] = Some(space);
    }
    Ok(())
}

/// Forks the prepared image for `ring3`, if there is one.
pub fn fork_image(ring3: bool) -> Option<AddressSpace> {
    TEMPLATES.lock()[usize::from(ring3)].as_mut()?.fork()
}

/// A SIP's place: its own space, or a window of the shared one.
enum Home {
    /// A space of its own; true if forked from the prepared image (program in place).
    Own(AddressSpace, bool),
    Shared(usize),
}

impl Home {
    fn new(placement: Placement) -> Result<Home, String> {
        match placement {
            Placement::Kernel => Err("the soft configuration runs SIPs in the kernel".into()),
            Placement::OwnSpace { .. } => AddressSpace::new()
                .map(|space| Home::Own(space, false))
                .ok_or_else(|| "no memory for an address space".into()),
            Placement::SharedSpace => {
                let mut shared = SHARED.lock();
                if shared.is_none() {
                    let space = AddressSpace::new().ok_or("no memory for the shared space")?;
                    *shared = Some((space, [false; WINDOWS]));
                }
                let (_, used) = shared.as_mut().expect("just made");
                let free = used
                    .iter()
                    .position(|u| !u)
                    .ok_or_else(|| format!("the shared space holds at most {WINDOWS} SIPs"))?;
                used[free] = true;
                Ok(Home::Shared(free))
            }
        }
    }

    fn base(&self) -> VirtAddr {
        let index = match self {
            Home::Own(..) => 0,
            Home::Shared(i) => *i as u64,
        };
        user_base() + (index + 1) * WINDOW
    }

    fn with_space<R>(&mut self, f: impl FnOnce(&mut AddressSpace) -> R) -> R {
        match self {
            Home::Own(space, _) => f(space),
            Home::Shared(_) => f(&mut SHARED.lock().as_mut().expect("shared space").0),
        }
    }

    /// Top-level table of the space, for the context switch.
    fn l4(&mut self) -> u64 {
        self.with_space(|space| space.l4().as_u64())
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        if let Home::Shared(index) = *self {
            let base = self.base();
            let mut shared = SHARED.lock();
            let (space, used) = shared.as_mut().expect("shared space");
            space.unmap_range(base, base + WINDOW);
            used[index] = false;
            if used.iter().all(|u| !u) {
                *shared = None;
            }
        }
    }
}

/// Frames a SIP may use at most: program, module, artifact, stack, heap, their page tables.
fn worst_case_frames(program: &Program, module: usize, artifact: usize, heap: u64) -> u64 {
    let pages = program.span() / PAGE
        + (module as u64).div_ceil(PAGE)
        + (artifact as u64).div_ceil(PAGE)
        + STACK_BYTES / PAGE
        + 1;
    let heap_pages = heap / PAGE;
    pages + heap_pages + (pages + heap_pages) / 512 + 8
}

/// Runs a verified SIP (or the probe) as `setup` says; returns how it ended.
pub fn execute(kernel: SipKernel, module: &[u8], setup: Setup) -> Ending {
    let program_name = if setup.probe.is_none() {
        "sip-hosted"
    } else {
        "syscall-probe"
    };
    let Some(program) = crate::boot_package().program(program_name) else {
        return Ending::LoadFailed(format!(
            "the boot package has no `{program_name}` program (boot through the runner)"
        ));
    };
    let heap = (crate::process::worst_case_bytes(&setup.limits, module.len()) as u64)
        .next_multiple_of(PAGE);
    if heap > HEAP_MAX {
        return Ending::LoadFailed(format!(
            "its limits need a {} MiB heap; a SIP window holds {} MiB",
            heap >> 20,
            HEAP_MAX >> 20
        ));
    }
    let code = match setup.artifact.map(code_of).transpose() {
        Ok(code) => code,
        Err(why) => return Ending::LoadFailed(why),
    };
    let artifact_len = code.as_ref().map_or(0, |code| code.bytes.len());
    let frames = worst_case_frames(program, module.len(), artifact_len, heap);
    let _promise = match FramePromise::new(frames) {
        Ok(promise) => promise,
        Err((asked, available)) => {
            return Ending::LoadFailed(format!(
                "not enough memory for its declared limits ({} pages of memory, {} KiB of kernel objects): needs up to {} KiB of frames, {} KiB available",
                setup.limits.max_memory_pages,
                setup.limits.max_kernel_bytes >> 10,
                asked * 4,
                available * 4
            ));
        }
    };
    let ring3 = setup.placement == (Placement::OwnSpace { ring3: true });
    let forked = match setup.placement {
        Placement::OwnSpace { ring3 } if setup.probe.is_none() => fork_image(ring3),
        _ => None,
    };
    let home = match forked {
        Some(space) => Ok(Home::Own(space, true)),
        None => Home::new(setup.placement),
    };
    let mut home = match home {
        Ok(home) => home,
        Err(why) => return Ending::LoadFailed(why),
    };
    let program_loaded = matches!(home, Home::Own(_, true));
    let base = home.base();
    let args = HostedArgs {
        module: match setup.probe {
            Some((_, target)) => target,
            None => (base + MODULE).as_u64(),
        },
        module_len: module.len() as u64,
        heap: (base + HEAP).as_u64(),
        heap_len: heap,
        max_memory_pages: setup.limits.max_memory_pages.into(),
        max_table_elements: setup.limits.max_table_elements.into(),
        max_call_depth: setup.limits.max_call_depth.into(),
        fuel: setup.limits.fuel.unwrap_or(u64::MAX),
        metering: u64::from(setup.metering == Metering::Fuel),
        gate: if ring3 { 0 } else { user::gate_address() },
        probe: setup.probe.map_or(0, |(probe, _)| probe),
        artifact: if code.is_some() {
            (base + ARTIFACT).as_u64()
        } else {
            0
        },
        artifact_len: artifact_len as u64,
    };
    let built = home.with_space(|space| {
        if !program_loaded {
            load_program(space, base, program, ring3)?;
        }
        build(space, base, module, &args, ring3)?;
        match &code {
            Some(code) => map_code(space, base + ARTIFACT, code, ring3),
            None => Ok(()),
        }
    });
    if let Err(err) = built {
        return Ending::LoadFailed(format!("cannot build its address space: {err:?}"));
    }
    let entry = Entry {
        rip: (base + PROGRAM).as_u64() + program.entry,
        // As if called: rsp % 16 == 8 at the entry function's first instruction.
        rsp: (base + STACK_TOP).as_u64() - 8,
        arg: (base).as_u64(),
        ring3,
        program: (base.as_u64(), (base + WINDOW).as_u64()),
    };
    let pid = kernel.pid();
    let mut sip = Hosted {
        kernel,
        ending: None,
        report: None,
    };
    context::set_address_space(home.l4());
    let entered = cycles::start();
    user::run(entry, &mut sip);
    let run = cycles::stop() - entered;
    context::set_address_space(0);
    drop(home);
    let first_call = sip.kernel.first_call();
    let report = sip.report.unwrap_or_default();
    crate::process::update(pid, |record| {
        record.timings = Timings {
            verify: setup.verify,
            instantiate: report.instantiated_at.saturating_sub(setup.created),
            first_call,
            run,
        };
        record.abi_calls = report.abi_calls;
        record.fuel_used = report.fuel_used;
        record.engine = Some(if code.is_some() {
            bootpkg::Engine::Compiled
        } else {
            bootpkg::Engine::Interp
        });
    });
    sip.ending
        .unwrap_or_else(|| Ending::Ran(Exit::Fault(Fault::Other("ended without a report".into()))))
}

/// A compiled artifact and where its text lies in it.
struct Code {
    bytes: &'static [u8],
    text: core::ops::Range<usize>,
}

fn code_of(artifact: &'static [u8]) -> Result<Code, String> {
    if artifact.len() as u64 > ARTIFACT_MAX {
        return Err(format!(
            "its compiled artifact of {} MiB exceeds the {} MiB a SIP window holds",
            artifact.len() >> 20,
            ARTIFACT_MAX >> 20
        ));
    }
    let text = sip_runtime::compiled::text_range(artifact).map_err(|e| format!("{e}"))?;
    Ok(Code {
        bytes: artifact,
        text,
    })
}

/// Maps a compiled artifact at `at`: read-only, except its text, read+execute. Never
/// writable and executable at once (the bytes go in through the kernel's own mapping of
/// the frames).
fn map_code(
    space: &mut AddressSpace,
    at: VirtAddr,
    code: &Code,
    user: bool,
) -> Result<(), MapError> {
    let pages = |from: usize, to: usize| (to as u64).div_ceil(PAGE) - from as u64 / PAGE;
    let (start, end) = (code.text.start, code.text.end);
    for (from, to, executable) in [
        (0, start, false),
        (start, end, true),
        (end, code.bytes.len(), false),
    ] {
        if to > from {
            let access = Access {
                writable: false,
                executable,
                user,
            };
            space.map_pages(at + from as u64, pages(from, to), access)?;
        }
    }
    space.write_bytes(at, code.bytes)
}

/// Copies and relocates the program into the window at `base`. Read-only segments
/// without relocations (text, constants) are not copied when the prepared ring-0 image
/// exists and this is the shared space: their frames are mapped from the image, so every
/// SIP runs the same physical code (less memory; under emulation, QEMU also reuses its
/// translation of that code instead of translating each copy again).
fn load_program(
    space: &mut AddressSpace,
    base: VirtAddr,
    program: &Program,
    user: bool,
) -> Result<(), MapError> {
    let load = base + PROGRAM;
    let mut templates = TEMPLATES.lock();
    // Ring 3 is forked from its own image, never loaded here.
    let mut image = if user { None } else { templates[0].as_mut() };
    let image_load = user_base() + WINDOW + PROGRAM;
    for segment in &program.segments {
        let start = (load + segment.address).align_down(PAGE);
        let end = (load + segment.address + segment.size).align_up(PAGE);
        let relocated = program.relocations.iter().any(|&(offset, _)| {
            let at = load + offset;
            at >= start && at < end
        });
        if let Some(image) = image.as_deref_mut()
            && !segment.writable
            && !relocated
        {
            let from = (image_load + segment.address).align_down(PAGE);
            space.alias_from(image, from, start, (end - start) / PAGE)?;
            continue;
        }
        let access = Access {
            writable: segment.writable,
            executable: segment.executable,
            user,
        };
        space.map_pages(start, (end - start) / PAGE, access)?;
        space.write_bytes(load + segment.address, &segment.data)?;
    }
    for &(offset, addend) in &program.relocations {
        let value = load.as_u64() + addend;
        space.write_bytes(load + offset, &value.to_le_bytes())?;
    }
    Ok(())
}

/// Maps the arguments, module, stack and heap of one window.
fn build(
    space: &mut AddressSpace,
    base: VirtAddr,
    module: &[u8],
    args: &HostedArgs,
    user: bool,
) -> Result<(), MapError> {
    let read_only = Access {
        writable: false,
        executable: false,
        user,
    };
    space.map_pages(base, 1, read_only)?;
    let words: alloc::vec::Vec<u8> = args
        .to_words()
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    space.write_bytes(base, &words)?;
    if !module.is_empty() {
        space.map_pages(
            base + MODULE,
            (module.len() as u64).div_ceil(PAGE),
            read_only,
        )?;
        space.write_bytes(base + MODULE, module)?;
    }
    let data = Access {
        writable: true,
        executable: false,
        user,
    };
    space.map_pages(base + STACK_TOP - STACK_BYTES, STACK_BYTES / PAGE, data)?;
    space.reserve_lazy(base + HEAP, args.heap_len.max(PAGE), data)
}

/// The kernel's side of one hosted SIP: serves its system calls, records its end.
struct Hosted {
    kernel: SipKernel,
    ending: Option<Ending>,
    report: Option<ExitReport>,
}

impl user::Handler for Hosted {
    fn syscall(&mut self, access: &UserAccess, op: u64, args: [u64; 6]) -> Option<[u64; 2]> {
        if let Some(op) = syscall::op(op)
            && let Err(why) = self.kernel.on_kernel_call(op)
        {
            self.ending = Some(Ending::Ran(Exit::Fault(Fault::Injected(why))));
            return None;
        }
        match syscall::dispatch(&mut self.kernel, access, op, args) {
            Outcome::Return(first, second) => Some([first, second]),
            Outcome::End(ending, report) => {
                self.ending = Some(ending);
                self.report = report;
                None
            }
        }
    }

    fn fault(&mut self, report: String) {
        self.ending = Some(Ending::Ran(Exit::Fault(Fault::Other(report))));
    }

    fn should_stop(&mut self) -> bool {
        if self.kernel.kill_requested() {
            self.ending = Some(Ending::Ran(Exit::Killed));
            return true;
        }
        false
    }
}
