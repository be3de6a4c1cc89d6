//! The fuzz driver the agent's and the controller's fuzz harnesses share (feature `fuzzing`,
//! turned on only by their dev-dependencies): inputs that are either random bytes or a valid
//! seed mangled a few times, run through proptest's runner, which catches a panic and shrinks
//! it to a small input to report. Each crate keeps its own dictionary of tokens to splice in.
//!
//! In CI each harness runs [`DEFAULT_CASES`] inputs (well under a second each in a debug
//! build). For a long run set `HAVEN_FUZZ_CASES`, e.g.
//! `HAVEN_FUZZ_CASES=10000000 cargo test --release -p haven-agent --lib fuzz_ -- --test-threads 1`;
//! each harness prints how many inputs it ran and how long it took (`--nocapture` shows it).

use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Inputs per harness when `HAVEN_FUZZ_CASES` is not set.
pub const DEFAULT_CASES: u32 = 2_000;

/// How many inputs each harness runs.
pub fn cases() -> u32 {
    std::env::var("HAVEN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Runs `check` on `cases()` inputs from `strategy`; a panic or a failed check fails the test
/// with the smallest input proptest could shrink it to.
pub fn run<S: Strategy>(
    name: &str,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = cases();
    let mut runner = TestRunner::new(Config {
        cases,
        // The inputs are small and varied; a failure prints the input, which is what a
        // regression test is made from.
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    if let Err(e) = runner.run(&strategy, check) {
        panic!("fuzz {name}: {e}");
    }
    eprintln!(
        "fuzz {name}: {cases} inputs in {:.1?}, no panic",
        started.elapsed()
    );
}

/// One edit to a seed: what, where (taken modulo the length) and with which byte.
pub type Edit = (u8, u16, u8);

/// `seed` with `edits` applied in turn: bit flips, bytes set, inserted and removed, cuts,
/// repeated chunks, "interesting" bytes, and tokens from `dictionary` spliced in (so a JSON
/// seed becomes deeply nested, gets huge numbers, stray quotes and the like).
pub fn mutate(seed: &[u8], edits: &[Edit], dictionary: &[&[u8]]) -> Vec<u8> {
    const INTERESTING: [u8; 8] = [0, 0xff, 0x7f, 0x80, 0xc0, 0x3f, b'\n', b'"'];
    let mut out = seed.to_vec();
    for &(op, pos, byte) in edits {
        let at = usize::from(pos) % (out.len() + 1);
        match op % 8 {
            0 if at < out.len() => out[at] ^= 1 << (byte % 8),
            1 if at < out.len() => out[at] = byte,
            2 => out.insert(at, byte),
            3 if at < out.len() => {
                out.remove(at);
            }
            4 => out.truncate(at),
            5 => {
                let end = (at + usize::from(byte) + 1).min(out.len());
                let chunk = out[at..end].to_vec();
                let to = usize::from(byte).wrapping_mul(31) % (out.len() + 1);
                out.splice(to..to, chunk);
            }
            6 if at < out.len() => out[at] = INTERESTING[usize::from(byte) % INTERESTING.len()],
            7 if !dictionary.is_empty() => {
                let token = dictionary[usize::from(byte) % dictionary.len()];
                out.splice(at..at, token.iter().copied());
            }
            _ => {}
        }
        if out.len() > 1 << 16 {
            out.truncate(1 << 16);
        }
    }
    out
}

/// Random bytes half the time, a mangled seed the other half.
pub fn bytes_from(
    seeds: Vec<Vec<u8>>,
    dictionary: &'static [&'static [u8]],
    max_random: usize,
) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..max_random),
        (0..n, proptest::collection::vec(any::<Edit>(), 0..10),)
            .prop_map(move |(i, edits)| mutate(&seeds[i], &edits, dictionary)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutate_never_panics_on_the_empty_seed_and_stays_bounded() {
        for op in 0..8u8 {
            for pos in [0u16, 1, 500, u16::MAX] {
                let out = mutate(b"", &[(op, pos, 255), (op, pos, 0)], &[b"{", b"[[[["]);
                assert!(out.len() < 1 << 16);
            }
        }
        assert_eq!(mutate(b"ab", &[(1, 0, b'x')], &[]), b"xb");
    }
}
