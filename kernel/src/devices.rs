//! Devices granted to driver SIPs: the kernel side of `dev_read`, `dev_write`, `dev_wait`
//! and `buf_dma`.
//!
//! Authority comes from the system manifest: it names which SIP gets which device (by
//! vendor:device ids or PCI address). A driver's own manifest lists the devices it needs
//! (`resources`); when the SIP starts, the two must agree — every device the system gives
//! it is one it asks for, and every one it asks for is given — or the SIP does not start.
//! A SIP's own manifest alone grants nothing. The kernel then takes a matching device not
//! already another SIP's, or refuses to start the SIP if there is none. A grant is
//! exactly: the device's I/O-port range (every access is checked against it), its
//! interrupt line (masked when it fires until the driver waits again, so
//! a level-triggered device the driver has not yet acknowledged cannot storm the
//! processor), and the right to learn exchange-heap blocks' physical addresses so the
//! device can DMA straight into them. Grants end with the SIP.
//!
//! What this does not give: protection from a driver that programs its device to DMA
//! somewhere else. Without an IOMMU no software check can stop a bus-mastering device;
//! Singularity had the same limit. The kernel hands out physical addresses only of blocks
//! the driver holds, so a correct driver never needs another.
#![deny(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bootpkg::DeviceSelector;
use cordon_abi::{Resource, status};

use crate::arch::{irq::IrqMutex, lines, port};
use crate::pci;
use crate::process::Pid;
use crate::sched::sync::WaitQueue;

/// One granted device.
#[derive(Clone, Copy, Debug)]
struct Grant {
    pid: Pid,
    /// Index in the SIP's manifest `resources`.
    index: u32,
    device: pci::Device,
}

static GRANTS: IrqMutex<Vec<Grant>> = IrqMutex::new(Vec::new());

/// Per interrupt line: fired since its driver last waited, and who waits.
static PENDING: [AtomicBool; 16] = [const { AtomicBool::new(false) }; 16];
static WAITERS: [WaitQueue; 16] = [const { WaitQueue::new() }; 16];

/// Device interrupts delivered to drivers, and device register accesses made for them.
pub static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
pub static REGISTER_ACCESSES: AtomicU64 = AtomicU64::new(0);

/// Whether system grant `given` can serve `resource`: the same ids, or an address where a
/// device with those ids sits.
fn serves(given: &DeviceSelector, resource: &Resource) -> bool {
    let Resource::PciDevice { vendor, device } = *resource;
    match given.ids() {
        Some(ids) => ids == (vendor, device),
        None => pci::devices().iter().any(|d| {
            given.names((d.bus, d.device, d.function), (d.vendor, d.id))
                && (d.vendor, d.id) == (vendor, device)
        }),
    }
}

/// Grants `pid` every resource its manifest lists, all or nothing, from what the system
/// manifest gives it (`given`); the two must agree.
pub fn claim(pid: Pid, resources: &[Resource], given: &[DeviceSelector]) -> Result<(), String> {
    if let Some(extra) = given
        .iter()
        .find(|g| !resources.iter().any(|r| serves(g, r)))
    {
        return Err(format!(
            "the system manifest gives it device {extra}, which its own manifest does not ask for (it asks for {})",
            if resources.is_empty() {
                String::from("no device")
            } else {
                resources
                    .iter()
                    .map(|r| format!("{r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    }
    let mut grants = GRANTS.lock();
    let mut mine = Vec::new();
    for (index, resource) in resources.iter().enumerate() {
        let Resource::PciDevice { vendor, device } = *resource;
        let allowed: Vec<&DeviceSelector> = given.iter().filter(|g| serves(g, resource)).collect();
        if allowed.is_empty() {
            return Err(format!(
                "resource {index} ({resource}): the system manifest gives this SIP no such device (a SIP's own manifest only asks)"
            ));
        }
        let taken = |d: &pci::Device| {
            grants
                .iter()
                .chain(mine.iter())
                .any(|g: &Grant| g.device == *d)
        };
        let candidates = || {
            pci::devices().iter().filter(|d| {
                d.vendor == vendor
                    && d.id == device
                    && allowed
                        .iter()
                        .any(|g| g.names((d.bus, d.device, d.function), (d.vendor, d.id)))
            })
        };
        let Some(found) = candidates().find(|d| !taken(d)) else {
            return Err(if candidates().next().is_some() {
                format!(
                    "resource {index} ({resource}): every such device is granted to another SIP"
                )
            } else {
                format!("resource {index} ({resource}): no such device on this machine")
            });
        };
        if found.io_base().is_none() || found.io_size == 0 {
            return Err(format!(
                "resource {index} ({resource}): the device has no I/O-port registers (only legacy I/O BARs are supported)"
            ));
        }
        mine.push(Grant {
            pid,
            index: index as u32,
            device: *found,
        });
    }
    for grant in &mine {
        grant.device.enable();
        if let Some(irq) = grant.device.irq() {
            PENDING[irq as usize].store(false, Ordering::Relaxed);
        }
    }
    grants.extend(mine);
    Ok(())
}

/// Ends `pid`'s grants (the SIP ended): each device is quiesced (bus mastering off, reset
/// where the kernel knows how) and its interrupt line masked again. The caller frees the
/// SIP's blocks only after this, so a device cannot DMA into memory that was given back.
pub fn release(pid: Pid) {
    let mut ended = Vec::new();
    {
        let mut grants = GRANTS.lock();
        for grant in grants.iter().filter(|g| g.pid == pid) {
            let reset = grant.device.quiesce();
            if let Some(irq) = grant.device.irq() {
                lines::set_masked(irq, true);
                PENDING[irq as usize].store(false, Ordering::Relaxed);
            }
            ended.push((grant.device, reset));
        }
        grants.retain(|g| g.pid != pid);
    }
    for (d, reset) in ended {
        crate::println!(
            "[kernel] {} at {:02x}:{:02x}.{} quiesced before pid {pid}'s blocks are freed: bus mastering off{}",
            d.name(),
            d.bus,
            d.device,
            d.function,
            if reset { ", device reset" } else { "" }
        );
    }
}

/// Whether `pid` holds any device (and so may ask for DMA addresses).
pub fn is_driver(pid: Pid) -> bool {
    GRANTS.lock().iter().any(|g| g.pid == pid)
}

fn grant(pid: Pid, index: u32) -> Result<Grant, String> {
    GRANTS
        .lock()
        .iter()
        .find(|g| g.pid == pid && g.index == index)
        .copied()
        .ok_or_else(|| format!("resource {index} was not granted to this SIP"))
}

/// The port for an access of `width` bytes at `offset` into the device's registers.
fn port(grant: &Grant, offset: u32, width: u32) -> Result<u16, String> {
    if !matches!(width, 1 | 2 | 4) {
        return Err(format!("register width {width} (1, 2 or 4 bytes)"));
    }
    let size = u32::from(grant.device.io_size);
    if !offset.is_multiple_of(width) || offset.checked_add(width).is_none_or(|end| end > size) {
        return Err(format!(
            "register [{offset:#x}, +{width}) is not an aligned access inside the device's {size:#x} bytes of I/O space"
        ));
    }
    let base = grant
        .device
        .io_base()
        .expect("granted devices have I/O BARs");
    Ok(base + offset as u16)
}

pub fn read(pid: Pid, index: u32, offset: u32, width: u32) -> Result<i64, String> {
    let grant = grant(pid, index)?;
    let port = port(&grant, offset, width)?;
    REGISTER_ACCESSES.fetch_add(1, Ordering::Relaxed);
    Ok(i64::from(port::read(port, width)))
}

pub fn write(pid: Pid, index: u32, offset: u32, width: u32, value: u32) -> Result<i32, String> {
    let grant = grant(pid, index)?;
    let port = port(&grant, offset, width)?;
    REGISTER_ACCESSES.fetch_add(1, Ordering::Relaxed);
    port::write(port, width, value);
    Ok(status::OK)
}

/// Unmasks the device's line and waits for its interrupt.
pub fn wait(pid: Pid, index: u32, timeout: Option<u64>) -> Result<i32, String> {
    let grant = grant(pid, index)?;
    let Some(irq) = grant.device.irq() else {
        return Err(format!(
            "resource {index}: the device has no interrupt line"
        ));
    };
    let line = irq as usize;
    let mut arrived = false;
    // A kill ends the wait too (the runtime then ends the SIP).
    let mut fired = || {
        arrived = PENDING[line].swap(false, Ordering::AcqRel);
        arrived || crate::process::kill_requested(pid)
    };
    lines::set_masked(irq, false);
    // Waiting for the device is not hanging (the supervisor's watchdog skips it).
    crate::process::set_waiting(pid, true);
    match timeout {
        None => WAITERS[line].wait_until(&mut fired),
        Some(ticks) => {
            WAITERS[line].wait_until_timeout(&mut fired, ticks);
        }
    }
    crate::process::set_waiting(pid, false);
    Ok(if arrived { status::OK } else { status::TIMEOUT })
}

/// Wakes every driver waiting for an interrupt, to re-check (a kill was requested).
pub fn wake_waiters() {
    for waiters in &WAITERS {
        waiters.notify_all();
    }
}

/// Interrupt `irq` (not the timer) fired: mask it until its driver has dealt with the
/// device, and wake the driver. A line no driver holds stays masked.
pub fn on_interrupt(irq: u8) {
    lines::set_masked(irq, true);
    if let Some(line) = PENDING.get(irq as usize) {
        line.store(true, Ordering::Release);
        INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        WAITERS[irq as usize].notify_one();
    }
}
