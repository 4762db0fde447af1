//! The host side: writes a file set's tree, its JSON manifest and its ext4 image
//! (`mkfs.ext4 -d` with a fixed UUID, hash seed and clock, so the same seed gives the same
//! image byte for byte), plus the run description the client SIP reads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use std::format;
use std::string::ToString;
use std::vec::Vec;

use anyhow::{Context, bail};

use crate::{Entry, FileSet, Workload};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Options {
    pub set: FileSet,
    pub request_seed: u64,
    pub warmup: u32,
    pub reads: u32,
    /// Output directory: `tree/`, `webfiles.json`, `webfiles.img`.
    pub out: PathBuf,
}

/// What was generated.
pub struct Generated {
    pub image: PathBuf,
    pub manifest: PathBuf,
    pub files: usize,
    pub bytes: u64,
}

/// Writes the tree, the manifest and the image.
pub fn generate(options: &Options) -> anyhow::Result<Generated> {
    let set = options.set;
    let tree = options.out.join("tree");
    let manifest = write_tree(&set, &tree)?;
    let workload = Workload {
        set,
        request_seed: options.request_seed,
        warmup: options.warmup,
        reads: options.reads,
        checksums: manifest.files.iter().map(|f| f.crc32).collect(),
    };
    let conf = tree.join(Workload::PATH.trim_start_matches('/'));
    std::fs::write(&conf, workload.render())
        .with_context(|| format!("writing {}", conf.display()))?;
    set_stamp(&conf)?;
    let json = options.out.join("webfiles.json");
    std::fs::write(&json, serde_json::to_string_pretty(&manifest)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let image = options.out.join("webfiles.img");
    make_image(&tree, &image, set.total_bytes())?;
    Ok(Generated {
        image,
        manifest: json,
        files: manifest.files.len(),
        bytes: manifest.total_bytes,
    })
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
    let output = Command::new(mkfs)
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
        .output()
        .with_context(|| format!("running {mkfs}"))?;
    if !output.status.success() {
        bail!(
            "{mkfs} failed ({}): {}{}",
            output.status,
            std::string::String::from_utf8_lossy(&output.stdout),
            std::string::String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
