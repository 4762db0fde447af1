//! Boot images: the kernel plus a ramdisk holding the boot package, as a BIOS or UEFI
//! disk image made with the `bootloader` crate's `DiskImageBuilder`. Images are made per
//! run, so boot parameters never require rebuilding the kernel.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bootloader::{BootConfig as LoaderConfig, DiskImageBuilder};
use bootpkg::BootPackage;

/// Which firmware QEMU boots through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Firmware {
    /// Legacy BIOS (SeaBIOS): the fastest to boot under emulation.
    Bios,
    /// UEFI (OVMF from Debian's `ovmf` package).
    Uefi,
}

/// A boot image on disk, deleted when dropped.
#[derive(Debug)]
pub struct Image {
    pub path: PathBuf,
    pub firmware: Firmware,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Directory for this runner's images and firmware variables.
pub fn work_dir() -> PathBuf {
    Path::new(env!("CORDON_WORK_DIR")).join("run")
}

fn unique_name(stem: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{stem}-{}-{n}", std::process::id())
}

/// Writes `package` into a ramdisk and builds a bootable image of `kernel` with it.
pub fn build_image(
    kernel: &Path,
    package: &BootPackage,
    firmware: Firmware,
) -> anyhow::Result<Image> {
    let dir = work_dir();
    std::fs::create_dir_all(&dir)?;
    let name = unique_name("cordon");
    let ramdisk = dir.join(format!("{name}.pkg"));
    std::fs::write(&ramdisk, package.encode())?;

    // The bootloader's own log would interleave with Cordon's console; its frame-buffer
    // logging also costs seconds under emulation.
    let mut loader = LoaderConfig::default();
    loader.frame_buffer_logging = false;
    loader.serial_logging = false;

    let mut builder = DiskImageBuilder::new(kernel.to_path_buf());
    builder.set_ramdisk(ramdisk.clone());
    builder.set_boot_config(&loader);
    let image = Image {
        path: dir.join(format!("{name}-{firmware:?}.img").to_lowercase()),
        firmware,
    };
    let built = match firmware {
        Firmware::Bios => builder.create_bios_image(&image.path),
        Firmware::Uefi => builder.create_uefi_image(&image.path),
    };
    let _ = std::fs::remove_file(&ramdisk);
    built?;
    Ok(image)
}
