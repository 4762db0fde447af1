//! A CoreMark-style integer workload: the same Rust code runs natively in the kernel and
//! as the `compute` SIP, so the cycles of the two measure what an engine costs over native
//! code (the wasm/native ratio).
//!
//! Each iteration does what CoreMark's kernels do, on data derived from the iteration
//! number: linked-list work (build, reverse, find, insertion-sort by value), a 12×12
//! integer matrix multiply, a state machine classifying the tokens of a generated string,
//! and a CRC-32 over every result. No allocation, no floating point, no `unsafe`: the
//! same instructions are asked of every engine, and the checksum must agree.
#![no_std]
#![deny(unsafe_code)]

const NODES: usize = 48;
const N: usize = 12;
const TEXT: usize = 96;

/// The checksum of `run(200)`, which the benchmark's native and SIP runs must both give.
pub const EXPECTED_200: u32 = 0x9022_2529;

/// Runs `iterations` iterations; returns the CRC-32 of everything they computed.
pub fn run(iterations: u32) -> u32 {
    let mut crc = !0u32;
    for i in 0..iterations {
        crc = crc32(crc, list(i));
        crc = crc32(crc, matrix(i));
        crc = crc32(crc, state_machine(i));
    }
    !crc
}

/// A pseudo-random sequence (xorshift) from `seed`.
fn next(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}

/// Builds a list in an array (value, next index), reverses it, finds values in it and
/// sorts it by value (insertion sort on the links); returns a digest.
fn list(seed: u32) -> u32 {
    let mut value = [0u32; NODES];
    let mut link = [usize::MAX; NODES];
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    for n in 0..NODES {
        value[n] = next(&mut state) % 1000;
        link[n] = if n + 1 < NODES { n + 1 } else { usize::MAX };
    }
    // Reverse.
    let (mut head, mut prev) = (0usize, usize::MAX);
    while head != usize::MAX {
        let following = link[head];
        link[head] = prev;
        prev = head;
        head = following;
    }
    head = prev;
    // Find a few values.
    let mut found = 0u32;
    for probe in 0..8 {
        let wanted = (seed.wrapping_add(probe * 97)) % 1000;
        let mut at = head;
        while at != usize::MAX {
            if value[at] == wanted {
                found += 1;
                break;
            }
            at = link[at];
        }
    }
    // Insertion sort by value, relinking.
    let mut sorted = usize::MAX;
    let mut at = head;
    while at != usize::MAX {
        let following = link[at];
        if sorted == usize::MAX || value[at] <= value[sorted] {
            link[at] = sorted;
            sorted = at;
        } else {
            let mut cursor = sorted;
            while link[cursor] != usize::MAX && value[link[cursor]] < value[at] {
                cursor = link[cursor];
            }
            link[at] = link[cursor];
            link[cursor] = at;
        }
        at = following;
    }
    let mut digest = found;
    let mut at = sorted;
    let mut position = 1u32;
    while at != usize::MAX {
        digest = digest.wrapping_mul(31).wrapping_add(value[at] ^ position);
        position += 1;
        at = link[at];
    }
    digest
}

/// C = A × B for 12×12 matrices of small integers; returns a digest of C.
#[allow(
    clippy::needless_range_loop,
    reason = "matrix arithmetic reads clearest with indices, as in CoreMark"
)]
fn matrix(seed: u32) -> u32 {
    let mut a = [[0i32; N]; N];
    let mut b = [[0i32; N]; N];
    let mut state = seed ^ 0x9e37_79b9 | 1;
    for r in 0..N {
        for c in 0..N {
            a[r][c] = (next(&mut state) % 256) as i32 - 128;
            b[r][c] = (next(&mut state) % 256) as i32 - 128;
        }
    }
    let mut digest = 0u32;
    for r in 0..N {
        for c in 0..N {
            let mut sum = 0i32;
            for k in 0..N {
                sum = sum.wrapping_add(a[r][k].wrapping_mul(b[k][c]));
            }
            digest = digest.rotate_left(5) ^ sum as u32;
        }
    }
    digest
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Start,
    Int,
    Hex,
    Frac,
    Invalid,
}

/// Classifies the space-separated tokens of a generated string (integers, hex numbers,
/// decimals, invalid) with a state machine; returns a digest of the counts.
fn state_machine(seed: u32) -> u32 {
    const ALPHABET: &[u8; 16] = b"0123456789x.ab  ";
    let mut text = [0u8; TEXT];
    let mut state = seed.wrapping_add(0x1234_5677) | 1;
    for byte in text.iter_mut() {
        *byte = ALPHABET[(next(&mut state) % 16) as usize];
    }
    let mut counts = [0u32; 5];
    let mut current = State::Start;
    for &byte in text.iter().chain(core::iter::once(&b' ')) {
        current = match (current, byte) {
            (State::Start, b' ') => State::Start,
            (_, b' ') => {
                counts[current as usize] += 1;
                State::Start
            }
            (State::Start, b'0'..=b'9') => State::Int,
            (State::Int, b'0'..=b'9') => State::Int,
            (State::Int, b'x') => State::Hex,
            (State::Int, b'.') => State::Frac,
            (State::Hex, b'0'..=b'9' | b'a' | b'b') => State::Hex,
            (State::Frac, b'0'..=b'9') => State::Frac,
            _ => State::Invalid,
        };
    }
    counts
        .iter()
        .fold(0u32, |digest, &c| digest.wrapping_mul(131).wrapping_add(c))
}

/// Bitwise CRC-32 (IEEE) of `word`'s four bytes, continuing from `crc`.
fn crc32(mut crc: u32, word: u32) -> u32 {
    for byte in word.to_le_bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_checksum_is_fixed() {
        // The kernel and the SIP compare against this: a change to the workload changes it.
        assert_eq!(super::run(4), super::run(4));
        assert_ne!(super::run(4), super::run(5));
        assert_eq!(super::run(200), super::EXPECTED_200);
    }
}
