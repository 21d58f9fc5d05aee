//! The fuzz smoke that runs with every `cargo test`, on stable Rust: each target replays its
//! committed inputs (`fuzz/seeds/`, `fuzz/minimized/`, `fuzz/regressions/`), then runs a fixed
//! number of pseudo-random mutations of them from a fixed seed, so a failure reproduces
//! exactly. `LAKEPOOL_FUZZ_SMOKE_ITERS` sets the mutation count per target (a longer run);
//! the nightly libFuzzer targets in `fuzz/` are the real thing (FUZZING.md).

use std::path::{Path, PathBuf};

use super::TARGETS;

/// Mutations per target by default: together well under a minute in a debug build.
const DEFAULT_ITERS: &[(&str, usize)] = &[
    ("frame", 60_000),
    ("sql", 100_000),
    ("startup", 300_000),
    ("txn", 5_000),
];

/// Largest regression input the smoke mutates (see [`smoke`]).
const MAX_MUTATED_LEN: usize = 4096;

/// xorshift64*: small, fast, and the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The committed inputs of `target`, in a fixed order.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["seeds", "minimized", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if let Ok(data) = std::fs::read(&p) {
                out.push((p, data));
            }
        }
    }
    out
}

/// Tokens from a libFuzzer dictionary file (`"..."` lines with `\xNN` escapes).
fn dictionary(target: &str) -> Vec<Vec<u8>> {
    let Ok(text) = std::fs::read_to_string(fuzz_dir().join("dicts").join(format!("{target}.dict")))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(q) = line.find('"') else { continue };
        let Some(inner) = line[q + 1..].strip_suffix('"') else {
            continue;
        };
        let mut tok = Vec::new();
        let b = inner.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let hex = (b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len())
                .then(|| u8::from_str_radix(&inner[i + 2..i + 4], 16).ok())
                .flatten();
            if let Some(v) = hex {
                tok.push(v);
                i += 4;
                continue;
            }
            if b[i] == b'\\' && i + 1 < b.len() {
                tok.push(b[i + 1]);
                i += 2;
                continue;
            }
            tok.push(b[i]);
            i += 1;
        }
        out.push(tok);
    }
    out
}

const INTERESTING_U32: &[u32] = &[
    0,
    1,
    3,
    4,
    5,
    8,
    255,
    16_384,
    16_389,
    65_535,
    0x7fff_ffff,
    u32::MAX,
];
const INTERESTING_U8: &[u8] = b"\0\x01\x7f\x80\xff;'\"$()-/*EU&\\ \nQPBDCESHXZ";

/// One to four random edits of `data`.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dict: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING_U8[rng.below(INTERESTING_U8.len())];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                data.drain(a..b);
            }
            5 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(32)).min(len);
                let chunk = data[a..b].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            6 if !other.is_empty() => {
                let a = rng.below(other.len());
                let b = (a + 1 + rng.below(64)).min(other.len());
                let at = rng.below(len + 1);
                data.splice(at..at, other[a..b].iter().copied());
            }
            7 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
                data[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            8 if !dict.is_empty() => {
                let tok = &dict[rng.below(dict.len())];
                let at = rng.below(len + 1);
                data.splice(at..at, tok.iter().copied());
            }
            _ => {}
        }
    }
    data.truncate(64 * 1024);
}

fn smoke(target: &str) {
    let run = TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .map(|(_, f)| *f)
        .unwrap();
    let corpus = inputs(target);
    assert!(!corpus.is_empty(), "no committed inputs for {target}");
    for (path, data) in &corpus {
        let r = std::panic::catch_unwind(|| run(data));
        assert!(r.is_ok(), "{target}: {} fails", path.display());
    }
    let iters = std::env::var("LAKEPOOL_FUZZ_SMOKE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .or_else(|| {
            DEFAULT_ITERS
                .iter()
                .find(|(n, _)| *n == target)
                .map(|(_, n)| *n)
        })
        .unwrap_or(10_000);
    let dict = dictionary(target);
    // Large regression inputs (long pipelines that a finding needed) are replayed above but
    // not mutated: each mutation of one costs as much as hundreds of small ones in a debug
    // build. The seeds are the mutation bases they were chosen to be.
    let bases: Vec<&[u8]> = corpus
        .iter()
        .filter(|(p, d)| {
            d.len() <= MAX_MUTATED_LEN || !p.starts_with(fuzz_dir().join("regressions"))
        })
        .map(|(_, d)| d.as_slice())
        .collect();
    let mut rng = Rng(0x5eed_1a4e_9001 ^ target.len() as u64);
    for i in 0..iters {
        let base = bases[rng.below(bases.len())];
        let other = bases[rng.below(bases.len())];
        let mut data = base.to_vec();
        mutate(&mut rng, &mut data, other, &dict);
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(
            r.is_ok(),
            "{target}: mutation {i} fails; input (hex): {}",
            data.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    }
}

#[test]
fn fuzz_smoke_frame() {
    smoke("frame");
}

#[test]
fn fuzz_smoke_sql() {
    smoke("sql");
}

#[test]
fn fuzz_smoke_startup() {
    smoke("startup");
}

#[test]
fn fuzz_smoke_txn() {
    smoke("txn");
}

/// The mutator and the dictionary reader do what the smoke relies on.
#[test]
fn mutations_are_deterministic_and_change_inputs() {
    let dict = dictionary("sql");
    assert!(dict.iter().any(|t| t == b"SET"), "sql dictionary read");
    let run = |seed| {
        let mut rng = Rng(seed);
        let mut changed = 0;
        let mut all = Vec::new();
        for _ in 0..100 {
            let mut d = b"select 1".to_vec();
            mutate(&mut rng, &mut d, b"other", &dict);
            changed += usize::from(d != b"select 1");
            all.push(d);
        }
        (changed, all)
    };
    let (changed, a) = run(7);
    assert!(changed > 50);
    assert_eq!(a, run(7).1);
}
