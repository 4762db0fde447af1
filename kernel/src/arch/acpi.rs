//! ACPI tables, read through the `acpi` crate: which processors the firmware lists (the
//! MADT) and how its interrupt controllers are laid out. Only static tables are read;
//! Cordon has no AML interpreter, so nothing that needs one (PCI interrupt routing
//! through `_PRT`, power management) comes from here.

use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::platform::ProcessorState;
use acpi::platform::interrupt::{InterruptModel, Polarity, TriggerMode};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use x86_64::PhysAddr;

/// Maps ACPI tables through the bootloader's physical-memory mapping (which covers the
/// first 4 GiB, where firmware puts them): nothing to map or unmap.
#[derive(Clone, Copy)]
struct Handler;

impl AcpiHandler for Handler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = crate::mm::phys_to_virt(PhysAddr::new(physical_address as u64));
        let pointer = NonNull::new(virt.as_mut_ptr::<T>()).expect("the physical map is not at 0");
        // SAFETY: the physical mapping maps every address below 4 GiB (and all RAM) for
        // the kernel's whole life at `virt`; the crate only reads the tables.
        unsafe { PhysicalMapping::new(physical_address, pointer, size, size, Handler) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// An I/O APIC the MADT lists.
#[derive(Clone, Copy, Debug)]
pub struct IoApic {
    pub id: u8,
    pub address: u32,
    pub first_gsi: u32,
}

/// What the firmware's MADT says about processors and interrupt controllers.
#[derive(Clone, Debug, Default)]
pub struct Platform {
    /// Local APIC ID of the processor that booted.
    pub boot_apic_id: u32,
    /// Local APIC IDs of the other processors marked usable, in MADT order.
    pub application_processors: Vec<u32>,
    /// Processors the MADT lists as disabled (not started).
    pub disabled: usize,
    pub io_apics: Vec<IoApic>,
    /// ISA interrupt source overrides: how a line reaches the I/O APIC.
    pub overrides: Vec<super::ioapic::Override>,
}

/// Reads the MADT through the RSDP at physical `rsdp`.
pub fn platform(rsdp: u64) -> Result<Platform, String> {
    // SAFETY: `rsdp` is the address the bootloader found (BIOS scan or UEFI system
    // table); the handler maps it and every table it points to read-only.
    let tables = unsafe { AcpiTables::from_rsdp(Handler, rsdp as usize) }
        .map_err(|err| alloc::format!("cannot read the ACPI tables at {rsdp:#x}: {err:?}"))?;
    let info = tables
        .platform_info()
        .map_err(|err| alloc::format!("cannot read the MADT: {err:?}"))?;
    let mut platform = Platform::default();
    if let Some(processors) = info.processor_info {
        platform.boot_apic_id = processors.boot_processor.local_apic_id;
        for ap in processors.application_processors.iter() {
            match ap.state {
                ProcessorState::Disabled => platform.disabled += 1,
                _ => platform.application_processors.push(ap.local_apic_id),
            }
        }
    }
    if let InterruptModel::Apic(apic) = info.interrupt_model {
        platform.io_apics = apic
            .io_apics
            .iter()
            .map(|io| IoApic {
                id: io.id,
                address: io.address,
                first_gsi: io.global_system_interrupt_base,
            })
            .collect();
        platform.overrides = apic
            .interrupt_source_overrides
            .iter()
            .map(|o| super::ioapic::Override {
                line: o.isa_source,
                gsi: o.global_system_interrupt,
                level: o.trigger_mode == TriggerMode::Level,
                active_low: o.polarity == Polarity::ActiveLow,
            })
            .collect();
    }
    Ok(platform)
}
