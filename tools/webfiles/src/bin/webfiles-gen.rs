//! `webfiles-gen`: writes a WebFiles file set, deterministically from a seed:
//!
//! - `OUT/tree/`: the files (`/dirNNNNN/classC_I`) and `/webfiles.conf` (the run the client
//!   SIP makes and every file's CRC-32),
//! - `OUT/webfiles.json`: the set's parameters and every file's path, size and CRC-32,
//! - `OUT/webfiles.img`: an ext4 image of the tree, made by `mkfs.ext4 -d` with a fixed
//!   UUID, hash seed and clock, so the same seed gives the same image byte for byte.
#![deny(unsafe_code)]

use std::path::PathBuf;

use clap::Parser;
use webfiles::FileSet;
use webfiles::generator::{Options, generate};

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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let generated = generate(&Options {
        set: FileSet {
            seed: args.seed,
            dirs: args.dirs,
        },
        request_seed: args.request_seed,
        warmup: args.warmup,
        reads: args.reads,
        out: args.out,
    })?;
    println!(
        "{}: {} files, {} bytes, seed {} ({} directories), {} + {} reads; manifest {}",
        generated.image.display(),
        generated.files,
        generated.bytes,
        args.seed,
        args.dirs,
        args.warmup,
        args.reads,
        generated.manifest.display()
    );
    Ok(())
}
