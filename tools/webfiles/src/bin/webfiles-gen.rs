//! `webfiles-gen`: writes a WebFiles file set, deterministically from a seed:
//!
//! - `OUT/tree/`: the files (`/dirNNNNN/classC_I`),
//! - `OUT/webfiles.json`: the set's parameters and every file's path, size and CRC-32,
//! - `OUT/webfiles.img`: an ext4 image of the tree, made by `mkfs.ext4 -d` with a fixed
//!   UUID, hash seed and clock, so the same seed gives the same image byte for byte.
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Parser;
use webfiles::{Entry, FileSet};

/// Generate a WebFiles file set and its ext4 disk image.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Seed of every byte of the file set.
    #[arg(long, default_value_t = 1999)]
    seed: u64,
    /// Directories (each holds 36 files, about 4.9 MiB).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    dirs: u32,
    /// Output directory (created if missing; its `tree/` is replaced).
    #[arg(long)]
    out: PathBuf,
}

/// The file set's description, written next to the image.
#[derive(serde::Serialize)]
struct Manifest {
    set: FileSet,
    total_bytes: u64,
    files: Vec<Entry>,
}

/// Fixed identity and clock for reproducible images.
const UUID: &str = "c0d0c0d0-5eb9-4999-8000-00000000f11e";
const EPOCH: u64 = 946_684_800; // 2000-01-01

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let set = FileSet {
        seed: args.seed,
        dirs: args.dirs,
    };
    let manifest = write_tree(&set, &args.out.join("tree"))?;
    std::fs::write(
        args.out.join("webfiles.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    let image = args.out.join("webfiles.img");
    make_image(&args.out.join("tree"), &image, set.total_bytes())?;
    println!(
        "{}: {} files, {} bytes, seed {} ({} directories); manifest {}",
        image.display(),
        manifest.files.len(),
        manifest.total_bytes,
        set.seed,
        set.dirs,
        args.out.join("webfiles.json").display()
    );
    Ok(())
}

fn write_tree(set: &FileSet, tree: &Path) -> anyhow::Result<Manifest> {
    if tree.exists() {
        std::fs::remove_dir_all(tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    let stamp = SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH);
    let mut files = Vec::new();
    for file in set.files() {
        let path = tree.join(file.path().trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().expect("files live in directories"))?;
        let data = set.contents(file);
        std::fs::write(&path, &data).with_context(|| format!("writing {}", path.display()))?;
        std::fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(stamp)?;
        files.push(Entry {
            path: file.path(),
            size: file.size(),
            crc32: crc32fast::hash(&data),
        });
    }
    Ok(Manifest {
        set: *set,
        total_bytes: set.total_bytes(),
        files,
    })
}

fn make_image(tree: &Path, image: &Path, bytes: u64) -> anyhow::Result<()> {
    let mkfs = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("mkfs.ext4 not found: install e2fsprogs (apt-get install e2fsprogs)")?;
    // Room for the data, its metadata and the journal.
    let mib = bytes * 5 / 4 / (1 << 20) + 16;
    let _ = std::fs::remove_file(image);
    let status = Command::new(mkfs)
        .args([
            "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "webfiles", "-U", UUID,
        ])
        .arg("-E")
        .arg(format!("hash_seed={UUID},root_owner=0:0"))
        .arg("-d")
        .arg(tree)
        .arg(image)
        .arg(format!("{mib}M"))
        .env("E2FSPROGS_FAKE_TIME", EPOCH.to_string())
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .status()
        .with_context(|| format!("running {mkfs}"))?;
    if !status.success() {
        bail!("{mkfs} failed ({status})");
    }
    Ok(())
}
