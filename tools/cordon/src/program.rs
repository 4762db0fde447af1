//! Programs the kernel runs in SIP address spaces (the hosted SIP runtime, the
//! system-call probe), taken apart here so the kernel needs no ELF parser: the `object`
//! crate reads the position-independent executable, and the boot package carries its
//! loadable segments and relative relocations (`bootpkg::Program`).

use anyhow::{Context, bail};
use bootpkg::{Program, Segment};
use object::elf;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Object, ObjectSegment, RelocationFlags, RelocationTarget};

/// The hosted runtime and the probe, built for x86_64-unknown-none by build.rs.
pub fn bundled() -> anyhow::Result<Vec<Program>> {
    Ok(vec![
        load("sip-hosted", env!("CORDON_SIP_HOSTED_ELF"))?,
        load("syscall-probe", env!("CORDON_SYSCALL_PROBE_ELF"))?,
    ])
}

fn load(name: &str, path: &str) -> anyhow::Result<Program> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    parse(name, &bytes).with_context(|| format!("{name} ({path})"))
}

/// Extracts a [`Program`] from the bytes of an x86_64 ELF executable.
pub fn parse(name: &str, bytes: &[u8]) -> anyhow::Result<Program> {
    let file = ElfFile64::<object::Endianness>::parse(bytes).context("not a 64-bit ELF file")?;
    if file.architecture() != object::Architecture::X86_64 {
        bail!("not an x86_64 program");
    }
    let endian = file.endian();
    let mut segments = Vec::new();
    for (segment, header) in file.segments().zip(
        file.elf_program_headers()
            .iter()
            .filter(|h| h.p_type(endian) == elf::PT_LOAD),
    ) {
        let flags = header.p_flags(endian);
        segments.push(Segment {
            address: segment.address(),
            size: segment.size(),
            writable: flags & elf::PF_W != 0,
            executable: flags & elf::PF_X != 0,
            data: segment.data().context("segment data")?.to_vec(),
        });
    }
    if segments.is_empty() {
        bail!("no loadable segments");
    }
    let mut relocations = Vec::new();
    for (offset, relocation) in file.dynamic_relocations().into_iter().flatten() {
        match (relocation.flags(), relocation.target()) {
            (
                RelocationFlags::Elf {
                    r_type: elf::R_X86_64_RELATIVE,
                },
                RelocationTarget::Absolute,
            ) => relocations.push((offset, relocation.addend() as u64)),
            (flags, target) => bail!(
                "relocation at {offset:#x} is {flags:?} against {target:?}; the kernel applies only R_X86_64_RELATIVE (build it as a static PIE)"
            ),
        }
    }
    Ok(Program {
        name: name.into(),
        entry: file.entry(),
        segments,
        relocations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosted_runtime_is_loadable() {
        let programs = bundled().unwrap();
        let runtime = &programs[0];
        assert!(runtime.segments.iter().any(|s| s.executable && !s.writable));
        assert!(runtime.segments.iter().any(|s| s.writable && !s.executable));
        assert!(runtime.entry < runtime.span());
        for (offset, _) in &runtime.relocations {
            assert!(*offset + 8 <= runtime.span());
        }
    }

    #[test]
    fn junk_is_refused() {
        let err = parse("junk", b"\x7fELF nonsense").unwrap_err();
        assert!(format!("{err:#}").contains("ELF"), "{err:#}");
    }
}
