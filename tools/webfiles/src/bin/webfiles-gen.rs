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
use webfiles::{Entry, FileSet, Workload};

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
    /// Seed of the request stream the client SIP follows.
    #[arg(long, default_value_t = 7)]
    request_seed: u64,
    /// Reads the client makes before it starts measuring.
    #[arg(long, default_value_t = 20)]
    warmup: u32,
    /// Reads the client measures.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    reads: u32,
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
    let workload = Workload {
        set,
        request_seed: args.request_seed,
        warmup: args.warmup,
        reads: args.reads,
        checksums: manifest.files.iter().map(|f| f.crc32).collect(),
    };
    let conf = args
        .out
        .join("tree")
        .join(Workload::PATH.trim_start_matches('/'));
    std::fs::write(&conf, workload.render())
        .with_context(|| format!("writing {}", conf.display()))?;
    set_stamp(&conf)?;
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
    let mut files = Vec::new();
    for file in set.files() {
        let path = tree.join(file.path().trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().expect("files live in directories"))?;
        let data = set.contents(file);
        std::fs::write(&path, &data).with_context(|| format!("writing {}", path.display()))?;
        set_stamp(&path)?;
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

/// Gives a file the fixed clock, so the image does not depend on when it was made.
fn set_stamp(path: &Path) -> anyhow::Result<()> {
    let stamp = SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH);
    std::fs::File::options()
        .write(true)
        .open(path)?
        .set_modified(stamp)?;
    Ok(())
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
