//! WebFiles: the file-reading part of SPECweb99, as Singularity's unsafe-code-tax
//! experiment used it, defined once for the host generator (`webfiles-gen`) and the
//! client SIP.
//!
//! **File set.** `dirs` directories, each holding four classes of nine files. Class `c`
//! has base size `1 KiB × 10^c` (1, 10, 100, 1000 KiB) and its file `i` (0–8) is
//! `(i + 1) / 10` of that: 102 bytes to 921 KiB, as in SPECweb99. File contents are
//! bytes from a ChaCha8 stream seeded by the set's seed and the file's place, so anyone
//! holding the seed can regenerate and check every byte; [`FileSet::checksum`] is their
//! CRC-32.
//!
//! **Request mix.** A class with probability 0.35 / 0.50 / 0.14 / 0.01; a directory and a
//! file within the class, each Zipf-distributed (probability of rank `k` ∝ `1/k`,
//! SPECweb99's exponent); all from a seeded ChaCha8 stream ([`Requests`]).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

#[cfg(feature = "generator")]
extern crate std;

#[cfg(feature = "generator")]
pub mod generator;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// Size classes.
pub const CLASSES: u32 = 4;
/// Files in each class of each directory.
pub const FILES_PER_CLASS: u32 = 9;
/// Probability of each class in the request mix.
pub const CLASS_MIX: [f64; CLASSES as usize] = [0.35, 0.50, 0.14, 0.01];
/// Base size of class 0 (the others are ×10, ×100, ×1000).
pub const BASE: u64 = 1024;
/// Block size of one read through the file-system contract.
pub const READ_BLOCK: u64 = 16 * 1024;

/// One file of the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    pub dir: u32,
    pub class: u32,
    pub index: u32,
}

impl FileId {
    /// Size in bytes: `(index + 1) / 10` of the class's base size.
    pub fn size(&self) -> u64 {
        BASE * 10u64.pow(self.class) * u64::from(self.index + 1) / 10
    }

    /// Position in [`FileSet::files`] order.
    pub fn ordinal(&self) -> usize {
        ((self.dir * CLASSES + self.class) * FILES_PER_CLASS + self.index) as usize
    }

    /// Absolute path in the file system, e.g. `/dir00003/class2_5`.
    pub fn path(&self) -> String {
        format!("/dir{:05}/class{}_{}", self.dir, self.class, self.index)
    }
}

/// A file set: its seed and number of directories decide every byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSet {
    pub seed: u64,
    pub dirs: u32,
}

impl FileSet {
    /// Every file, directory by directory.
    pub fn files(&self) -> impl Iterator<Item = FileId> + '_ {
        (0..self.dirs).flat_map(|dir| {
            (0..CLASSES).flat_map(move |class| {
                (0..FILES_PER_CLASS).map(move |index| FileId { dir, class, index })
            })
        })
    }

    /// Bytes in all files.
    pub fn total_bytes(&self) -> u64 {
        self.files().map(|f| f.size()).sum()
    }

    fn stream(&self, file: FileId) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        // One stream per file, independent of the others.
        rng.set_stream(
            (u64::from(file.dir) << 16) | (u64::from(file.class) << 8) | u64::from(file.index),
        );
        rng
    }

    /// The contents of `file`.
    pub fn contents(&self, file: FileId) -> Vec<u8> {
        let mut data = alloc::vec![0; file.size() as usize];
        self.stream(file).fill_bytes(&mut data);
        data
    }

    /// CRC-32 of the contents of `file`.
    pub fn checksum(&self, file: FileId) -> u32 {
        crc32fast::hash(&self.contents(file))
    }
}

/// A discrete Zipf distribution over ranks 1..=n (probability ∝ 1/k), sampled by
/// inverting its cumulative distribution.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: u32) -> Zipf {
        assert!(n > 0, "a Zipf distribution needs at least one rank");
        let total: f64 = (1..=n).map(|k| 1.0 / f64::from(k)).sum();
        let mut sum = 0.0;
        let cdf = (1..=n)
            .map(|k| {
                sum += 1.0 / f64::from(k) / total;
                sum
            })
            .collect();
        Zipf { cdf }
    }

    /// The 0-based rank for a uniform `u` in [0, 1).
    pub fn sample(&self, u: f64) -> u32 {
        self.cdf
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.cdf.len() - 1) as u32
    }
}

/// The seeded request stream: which file each read asks for.
pub struct Requests {
    rng: ChaCha8Rng,
    dirs: Zipf,
    files: Zipf,
}

impl Requests {
    pub fn new(set: &FileSet, seed: u64) -> Requests {
        Requests {
            rng: ChaCha8Rng::seed_from_u64(seed),
            dirs: Zipf::new(set.dirs),
            files: Zipf::new(FILES_PER_CLASS),
        }
    }

    fn uniform(&mut self) -> f64 {
        // 53 random bits: every double in [0, 1) a multiple of 2^-53.
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next file to read.
    pub fn next_file(&mut self) -> FileId {
        let u = self.uniform();
        let mut class = CLASSES - 1;
        let mut sum = 0.0;
        for (c, p) in CLASS_MIX.iter().enumerate() {
            sum += p;
            if u < sum {
                class = c as u32;
                break;
            }
        }
        let (u_dir, u_file) = (self.uniform(), self.uniform());
        let dir = self.dirs.sample(u_dir);
        let index = self.files.sample(u_file);
        FileId { dir, class, index }
    }
}

/// One line of the generator's manifest: a file and what it must read back as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub crc32: u32,
}

/// The run the client SIP makes, stored on the volume as [`Workload::PATH`] next to the
/// file set's checksums: the client learns what to read and what each file must contain
/// from the disk it measures, so the image alone describes a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub set: FileSet,
    /// Seed of the request stream ([`Requests`]).
    pub request_seed: u64,
    /// Reads before measuring (caches fill, code paths warm up).
    pub warmup: u32,
    /// Reads measured.
    pub reads: u32,
    /// CRC-32 of every file, in [`FileSet::files`] order ([`FileId::ordinal`]).
    pub checksums: Vec<u32>,
}

impl Workload {
    /// Where the workload lives on the volume.
    pub const PATH: &'static str = "/webfiles.conf";

    /// The text form: `key value` lines, then one `crc <hex>` line per file in order.
    pub fn render(&self) -> String {
        let mut text = format!(
            "# WebFiles run (written by webfiles-gen; read by the webfiles client SIP)\n\
             seed {}\ndirs {}\nrequest-seed {}\nwarmup {}\nreads {}\n",
            self.set.seed, self.set.dirs, self.request_seed, self.warmup, self.reads
        );
        for crc in &self.checksums {
            text.push_str(&format!("crc {crc:08x}\n"));
        }
        text
    }

    /// Reads the text form; the error names the line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Workload, String> {
        let (mut seed, mut dirs, mut request_seed, mut warmup, mut reads) =
            (None, None, None, None, None);
        let mut checksums = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("{}:{}: {why}: `{line}`", Self::PATH, n + 1);
            let (key, value) = line
                .split_once(' ')
                .ok_or_else(|| bad("expected `key value`"))?;
            let number = || value.trim().parse::<u64>().map_err(|_| bad("not a number"));
            match key {
                "seed" => seed = Some(number()?),
                "dirs" => dirs = Some(number()?),
                "request-seed" => request_seed = Some(number()?),
                "warmup" => warmup = Some(number()?),
                "reads" => reads = Some(number()?),
                "crc" => checksums
                    .push(u32::from_str_radix(value.trim(), 16).map_err(|_| bad("not a CRC-32"))?),
                _ => return Err(bad("unknown key")),
            }
        }
        let need =
            |v: Option<u64>, key: &str| v.ok_or_else(|| format!("{}: no `{key}` line", Self::PATH));
        let small = |v: Option<u64>, key: &str| {
            u32::try_from(need(v, key)?).map_err(|_| format!("{}: `{key}` too large", Self::PATH))
        };
        let set = FileSet {
            seed: need(seed, "seed")?,
            dirs: small(dirs, "dirs")?,
        };
        if set.dirs == 0 {
            return Err(format!("{}: `dirs` must be at least 1", Self::PATH));
        }
        let files = set.files().count();
        if checksums.len() != files {
            return Err(format!(
                "{}: {} checksums for a set of {files} files",
                Self::PATH,
                checksums.len()
            ));
        }
        Ok(Workload {
            set,
            request_seed: need(request_seed, "request-seed")?,
            warmup: small(warmup, "warmup")?,
            reads: small(reads, "reads")?,
            checksums,
        })
    }

    /// The checksum `file` must have.
    pub fn checksum(&self, file: FileId) -> Option<u32> {
        self.checksums.get(file.ordinal()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_round_trips_and_bad_text_is_located() {
        let set = FileSet { seed: 3, dirs: 1 };
        let w = Workload {
            set,
            request_seed: 9,
            warmup: 2,
            reads: 5,
            checksums: set.files().map(|f| f.ordinal() as u32 * 7).collect(),
        };
        let back = Workload::parse(&w.render()).unwrap();
        assert_eq!(back, w);
        let f = FileId {
            dir: 0,
            class: 2,
            index: 4,
        };
        assert_eq!(back.checksum(f), Some(((2 * 9 + 4) * 7) as u32));
        assert_eq!(set.files().nth(f.ordinal()), Some(f));
        let err = Workload::parse("seed 1\ndirs x\n").unwrap_err();
        assert!(err.contains(":2:") && err.contains("not a number"), "{err}");
        let err = Workload::parse(&w.render().replace("crc 00000000\n", "")).unwrap_err();
        assert!(err.contains("35 checksums for a set of 36 files"), "{err}");
        assert!(
            Workload::parse("seed 1\n")
                .unwrap_err()
                .contains("no `dirs`")
        );
        assert!(
            Workload::parse("colour blue\n")
                .unwrap_err()
                .contains("unknown key")
        );
    }

    #[test]
    fn sizes_follow_specweb99() {
        let f = |class, index| {
            FileId {
                dir: 0,
                class,
                index,
            }
            .size()
        };
        assert_eq!(f(0, 0), 102);
        assert_eq!(f(0, 8), 921);
        assert_eq!(f(1, 0), 1024);
        assert_eq!(f(3, 8), 921_600);
        let set = FileSet { seed: 1, dirs: 2 };
        assert_eq!(set.files().count(), 72);
        // 4.5 base sizes per class and directory, less the bytes rounded off 102.4 etc.
        let exact = 2 * 45 * 1111 * 1024 / 10;
        assert!(exact - set.total_bytes() < 72, "{}", set.total_bytes());
    }

    #[test]
    fn contents_are_deterministic_and_distinct() {
        let set = FileSet { seed: 7, dirs: 1 };
        let a = FileId {
            dir: 0,
            class: 1,
            index: 2,
        };
        let b = FileId {
            dir: 0,
            class: 1,
            index: 3,
        };
        assert_eq!(set.contents(a), set.contents(a));
        assert_eq!(set.contents(a).len() as u64, a.size());
        assert_ne!(set.contents(a)[..100], set.contents(b)[..100]);
        let other = FileSet { seed: 8, dirs: 1 };
        assert_ne!(set.checksum(a), other.checksum(a));
    }

    #[test]
    fn zipf_favours_low_ranks_in_the_right_proportion() {
        let z = Zipf::new(9);
        assert_eq!(z.sample(0.0), 0);
        assert_eq!(z.sample(0.999_999), 8);
        let mut counts = [0u32; 9];
        let n = 100_000;
        for i in 0..n {
            counts[z.sample((f64::from(i) + 0.5) / f64::from(n)) as usize] += 1;
        }
        // Rank 1 is twice as likely as rank 2 and nine times as likely as rank 9.
        let ratio = |a: usize, b: usize| f64::from(counts[a]) / f64::from(counts[b]);
        assert!((ratio(0, 1) - 2.0).abs() < 0.01, "{counts:?}");
        assert!((ratio(0, 8) - 9.0).abs() < 0.05, "{counts:?}");
    }

    #[test]
    fn request_mix_matches_the_class_probabilities() {
        let set = FileSet { seed: 1, dirs: 5 };
        let mut requests = Requests::new(&set, 42);
        let n = 200_000;
        let mut classes = [0u32; 4];
        let mut dirs = [0u32; 5];
        for _ in 0..n {
            let f = requests.next_file();
            classes[f.class as usize] += 1;
            dirs[f.dir as usize] += 1;
            assert!(f.index < FILES_PER_CLASS);
        }
        for (c, want) in CLASS_MIX.iter().enumerate() {
            let got = f64::from(classes[c]) / f64::from(n);
            assert!((got - want).abs() < 0.005, "class {c}: {got} vs {want}");
        }
        assert!(dirs[0] > dirs[1] && dirs[1] > dirs[4], "{dirs:?}");
        // The same seed gives the same stream.
        let mut again = Requests::new(&set, 42);
        let mut first = Requests::new(&set, 42);
        for _ in 0..100 {
            assert_eq!(again.next_file(), first.next_file());
        }
    }
}
