//! Hash backends: the double-SHA-256 nonce loop, one sibling file per implementation.
//!
//! Every backend has the same signature, [`ScanFn`]: given a [`Template`] (the
//! puzzle prepared for nonces of one encoded length) and a run of nonces, return the
//! smallest golden nonce of the run. [`Backend::from_env`] gives `auto` (the fastest
//! one for the puzzle's shape, measured on this CPU when first needed: [`auto`]), or
//! the one `CND_BACKEND` names.
//!
//! Only [`Backend`] and [`BackendError`] are public API; the rest is reached by
//! cnd's own benches and tests through [`crate::hazmat`].

use std::fmt;
use std::str::FromStr;

use crate::puzzle::{decimal_digits, write_decimal, NonceBits, NonceFormat, Puzzle, DEFAULT_BLOCK};

pub mod auto;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "x86_64")]
mod lanes;
pub mod scalar;
pub mod sha2_compress;
#[cfg(target_arch = "x86_64")]
pub mod shani;

/// The environment variable that forces a backend (tests, benchmarks).
pub const BACKEND_ENV: &str = crate::worker_env::BACKEND;

/// SHA-256's initial state.
pub const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The signature every backend implements.
///
/// Returns the smallest nonce `n` in `start .. start + count` whose hash has at least
/// `t.difficulty` leading zero bits, or `None`. Callers guarantee `count >= 1` and that
/// the whole run lies in `t.first ..= t.last` (so it never wraps past `2^64 - 1`).
pub type ScanFn = fn(t: &Template, start: u64, count: u32) -> Option<u64>;

/// Why a backend cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// No backend has this name.
    #[error("unknown hash backend {0:?}: expected one of {names}", names = names())]
    Unknown(String),
    /// The backend exists but this CPU (or this build) cannot run it.
    #[error("hash backend {0} is not supported on this CPU")]
    Unsupported(&'static str),
}

/// Every backend's name, `auto` first, for messages.
fn names() -> String {
    let all = Backend::ALL.iter().map(|b| b.name());
    std::iter::once("auto")
        .chain(all)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A hash backend.
///
/// ```
/// use cnd_core::{Backend, Puzzle};
///
/// // What `CND_BACKEND` asks for, `auto` when it is unset.
/// let backend = Backend::from_env().unwrap_or(Backend::Auto);
/// // `auto` measures the others once per puzzle shape and hashes with the fastest.
/// let puzzle = Puzzle::with_default_block(20).unwrap();
/// let used = Backend::Auto.resolve(&puzzle);
/// assert!(used.is_available() && used != Backend::Auto);
/// assert!(Backend::available().contains(&Backend::Scalar));
/// assert_eq!(Backend::from_name("sha2"), Ok(Backend::Sha2));
/// # let _ = backend;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// Portable, written for clarity: the reference every other backend is tested against.
    Scalar,
    /// The `sha2` crate's `compress256` on pre-padded blocks, with a midstate.
    Sha2,
    /// x86-64 SHA extensions (SHA-NI), several independent nonces interleaved.
    Shani,
    /// x86-64 AVX2: 8 nonces per vector.
    Avx2,
    /// x86-64 AVX-512F: 16 nonces per vector.
    Avx512,
    /// x86-64 AVX-512F, the same loop on two vectors at a time: 32 nonces in flight,
    /// so one vector's instructions fill the pipes while the other's wait on their
    /// inputs (faster where latency, not the pipes, binds; `auto` measures which).
    Avx512x2,
    /// Whichever of the others is fastest on this CPU for the puzzle's shape, measured
    /// once per shape and process (see [`Backend::resolve`]).
    Auto,
}

impl Backend {
    /// Every backend that hashes itself (all but `auto`), in the order `bench` lists
    /// them: roughly fastest first where measured (docs/performance.md; `auto`
    /// measures them on the CPU it runs on rather than trusting this order).
    pub const ALL: &'static [Backend] = &[
        Backend::Avx512x2,
        Backend::Avx512,
        Backend::Shani,
        Backend::Avx2,
        Backend::Sha2,
        Backend::Scalar,
    ];

    /// The name used by `CND_BACKEND`, `--backend` and reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Sha2 => "sha2",
            Backend::Shani => "shani",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
            Backend::Avx512x2 => "avx512x2",
            Backend::Auto => "auto",
        }
    }

    /// Whether this CPU can run the backend.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Scalar | Backend::Sha2 | Backend::Auto => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Shani => shani::is_available(),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => avx2::is_available(),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 | Backend::Avx512x2 => avx512::is_available(),
            #[cfg(not(target_arch = "x86_64"))]
            Backend::Shani | Backend::Avx2 | Backend::Avx512 | Backend::Avx512x2 => false,
        }
    }

    /// The backends this CPU can run (not `auto`), in [`ALL`](Self::ALL)'s order.
    pub fn available() -> Vec<Backend> {
        Backend::ALL
            .iter()
            .copied()
            .filter(|b| b.is_available())
            .collect()
    }

    /// The fastest backend this CPU can run for the default puzzle shape (the default
    /// block, 32-bit binary nonces), measured once per process.
    pub fn best() -> Backend {
        let puzzle = Puzzle::new(
            DEFAULT_BLOCK.as_bytes(),
            256,
            NonceBits::B32,
            NonceFormat::Binary,
        )
        .expect("the default puzzle is valid");
        Backend::best_for(&puzzle)
    }

    /// The fastest backend this CPU can run for `puzzle`'s shape (for its largest
    /// nonces, where a search spends its time), measured once per shape and process.
    pub fn best_for(puzzle: &Puzzle) -> Backend {
        let job = Job::new(puzzle);
        let t = job.templates().last().expect("a job has a template");
        auto::choose(t)
    }

    /// `auto` resolved for `puzzle`: the backend it hashes with; any other backend as is.
    pub fn resolve(self, puzzle: &Puzzle) -> Backend {
        match self {
            Backend::Auto => Backend::best_for(puzzle),
            other => other,
        }
    }

    /// The backend called `name`, if this CPU can run it.
    pub fn from_name(name: &str) -> Result<Backend, BackendError> {
        let name = name.trim();
        let backend = Backend::ALL
            .iter()
            .chain([&Backend::Auto])
            .copied()
            .find(|b| b.name() == name)
            .ok_or_else(|| BackendError::Unknown(name.to_string()))?;
        if backend.is_available() {
            Ok(backend)
        } else {
            Err(BackendError::Unsupported(backend.name()))
        }
    }

    /// The backend `CND_BACKEND` names, or `auto` when it is unset or empty.
    pub fn from_env() -> Result<Backend, BackendError> {
        match std::env::var(BACKEND_ENV) {
            Ok(name) if !name.trim().is_empty() => Backend::from_name(&name),
            _ => Ok(Backend::Auto),
        }
    }

    /// This backend's implementation of [`ScanFn`]. Only call it for a backend that
    /// [`is_available`](Self::is_available): the SIMD ones panic on a CPU without
    /// their instructions.
    pub(crate) fn scan_fn(self) -> ScanFn {
        match self {
            Backend::Scalar => scalar::scan,
            Backend::Sha2 => sha2_compress::scan,
            Backend::Auto => auto::scan,
            #[cfg(target_arch = "x86_64")]
            Backend::Shani => shani::scan,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => avx2::scan,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => avx512::scan,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512x2 => avx512::scan_x2,
            #[cfg(not(target_arch = "x86_64"))]
            Backend::Shani | Backend::Avx2 | Backend::Avx512 | Backend::Avx512x2 => unsupported,
        }
    }
}

/// The [`ScanFn`] of a backend this build has no code for.
#[cfg(not(target_arch = "x86_64"))]
fn unsupported(_: &Template, _: u64, _: u32) -> Option<u64> {
    panic!("this hash backend needs an x86-64 CPU")
}

impl FromStr for Backend {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::from_name(s)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A puzzle prepared for nonces whose encoding has one length.
///
/// The block's full 64-byte blocks before the nonce are hashed once into
/// `midstate`; what is left, the nonce and SHA-256's padding form one or two
/// blocks, `tail`. A binary puzzle has one template; a decimal one has one per
/// digit count, because the message length (and so the padding) changes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// SHA-256 state after the full blocks that precede the nonce's block.
    pub midstate: [u32; 8],
    /// The padded rest of the message, bytes; the nonce's bytes are zero.
    pub tail_bytes: [u8; 128],
    /// The same, as big-endian words.
    pub tail: [u32; 32],
    /// 1 or 2: how many of `tail`'s 64-byte blocks are used.
    pub tail_blocks: usize,
    /// Byte offset of the nonce's first byte in `tail_bytes`.
    pub nonce_offset: usize,
    /// Length of the encoded nonce in bytes: 4 or 8 (binary) or the digit count (decimal).
    pub nonce_len: usize,
    /// The nonce format.
    pub format: NonceFormat,
    /// The smallest nonce with this encoded length.
    pub first: u64,
    /// The largest nonce with this encoded length.
    pub last: u64,
    /// D: the leading zero bits a golden hash needs.
    pub difficulty: u32,
}

impl Template {
    fn new(puzzle: &Puzzle, nonce_len: usize, first: u64, last: u64) -> Template {
        let block = puzzle.block();
        let full_blocks = block.len() / 64;
        let mut midstate = IV;
        for chunk in block[..full_blocks * 64].chunks_exact(64) {
            let chunk: &[u8; 64] = chunk.try_into().expect("64-byte chunk");
            sha2::block_api::compress256(&mut midstate, std::slice::from_ref(chunk));
        }
        let rest = &block[full_blocks * 64..];
        let message_len = block.len() + nonce_len;
        let tail_len = rest.len() + nonce_len;
        // Padding: 0x80, zeros, then the bit length in 8 bytes.
        let tail_blocks = if tail_len + 9 <= 64 { 1 } else { 2 };
        let mut tail_bytes = [0u8; 128];
        tail_bytes[..rest.len()].copy_from_slice(rest);
        tail_bytes[tail_len] = 0x80;
        let end = tail_blocks * 64;
        tail_bytes[end - 8..end].copy_from_slice(&((message_len as u64) * 8).to_be_bytes());
        let mut tail = [0u32; 32];
        for (word, bytes) in tail.iter_mut().zip(tail_bytes.chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().expect("4 bytes"));
        }
        Template {
            midstate,
            tail_bytes,
            tail,
            tail_blocks,
            nonce_offset: rest.len(),
            nonce_len,
            format: puzzle.nonce_format(),
            first,
            last,
            difficulty: puzzle.difficulty(),
        }
    }

    /// Writes the encoded `nonce` into `tail` (bytes) in place.
    #[inline(always)]
    pub fn write_nonce(&self, nonce: u64, tail: &mut [u8; 128]) {
        let field = &mut tail[self.nonce_offset..self.nonce_offset + self.nonce_len];
        match self.format {
            NonceFormat::Binary => {
                let bytes = nonce.to_be_bytes();
                field.copy_from_slice(&bytes[8 - self.nonce_len..]);
            }
            NonceFormat::Decimal => write_decimal(nonce, field),
        }
    }

    /// The tail with `start` written in, and the offset of the first nonce byte
    /// that changes between `start` and `last`: the bytes before it are shared by
    /// every nonce of the run, so SIMD backends treat them as message constants.
    /// The offset is at most the nonce's last byte.
    pub fn run_bytes(&self, start: u64, last: u64) -> ([u8; 128], usize) {
        let end = self.nonce_offset + self.nonce_len;
        let mut first_bytes = self.tail_bytes;
        self.write_nonce(start, &mut first_bytes);
        let mut last_bytes = self.tail_bytes;
        self.write_nonce(last, &mut last_bytes);
        let mut varying_from = self.nonce_offset;
        while varying_from + 1 < end && first_bytes[varying_from] == last_bytes[varying_from] {
            varying_from += 1;
        }
        (first_bytes, varying_from)
    }

    /// The tail's 32 message words for the run `start ..= last`: every byte the
    /// run's nonces share written in, the varying ones (from `varying_from`, see
    /// [`run_bytes`](Self::run_bytes)) zero, so a backend adds each nonce's bytes in.
    pub(super) fn shared_words(&self, first_bytes: &[u8; 128], varying_from: usize) -> [u32; 32] {
        let mut common = *first_bytes;
        common[varying_from..self.nonce_offset + self.nonce_len].fill(0);
        let mut words = [0u32; 32];
        for (word, bytes) in words.iter_mut().zip(common.as_chunks::<4>().0) {
            *word = u32::from_be_bytes(*bytes);
        }
        words
    }

    /// The largest value the hash's first word may have for the nonce to be a
    /// candidate: every golden nonce passes; for `D <= 32` every candidate is golden.
    pub fn first_word_max(&self) -> u32 {
        if self.difficulty >= 32 {
            0
        } else {
            u32::MAX >> self.difficulty
        }
    }

    /// Whether `nonce` is golden, by the portable scalar code: how SIMD backends
    /// confirm a candidate whose first word passed when `D > 32`.
    pub fn confirm(&self, nonce: u64) -> bool {
        leading_zeros(&scalar::double_hash(self, nonce)) >= self.difficulty
    }
}

/// Leading zero bits of a hash given as big-endian words (SPEC §1): the same
/// count as [`leading_zero_bits`](crate::verify::leading_zero_bits) of its bytes.
#[inline]
pub fn leading_zeros(hash: &[u32; 8]) -> u32 {
    let mut bytes = [0u8; 32];
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(hash) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    crate::verify::leading_zero_bits(&bytes)
}

/// A puzzle prepared for every backend: its templates and the ranges they cover.
#[derive(Debug, Clone)]
pub struct Job {
    templates: Vec<Template>,
}

impl Job {
    /// Prepares `puzzle`: hashes the block's prefix once per template.
    pub fn new(puzzle: &Puzzle) -> Job {
        let max = puzzle.nonce_bits().max_nonce();
        let templates = match puzzle.nonce_format() {
            NonceFormat::Binary => {
                let width = puzzle.nonce_bits().bits() as usize / 8;
                vec![Template::new(puzzle, width, 0, max)]
            }
            NonceFormat::Decimal => (1..=decimal_digits(max))
                .map(|digits| {
                    let first = if digits == 1 {
                        0
                    } else {
                        10u64.pow(digits as u32 - 1)
                    };
                    let last = 10u64.checked_pow(digits as u32).map_or(u64::MAX, |p| p - 1);
                    Template::new(puzzle, digits, first, last.min(max))
                })
                .collect(),
        };
        Job { templates }
    }

    /// The templates, in nonce order.
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// The smallest golden nonce in `start .. start + count`, by `scan`; the run may
    /// cross decimal digit-count boundaries. Needs `start + count - 1 <= max nonce`.
    pub fn scan(&self, scan: ScanFn, start: u64, count: u32) -> Option<u64> {
        debug_assert!(count > 0);
        let last = start + u64::from(count - 1);
        let mut from = start;
        for t in &self.templates {
            if t.last < from {
                continue;
            }
            let to = last.min(t.last);
            if let Some(found) = scan(t, from, (to - from + 1) as u32) {
                return Some(found);
            }
            if to == last {
                break;
            }
            from = to + 1;
        }
        None
    }
}

/// The CPU's model name, from `/proc/cpuinfo` (the first `model name`), with its
/// family and model numbers where given: a VM may name only the brand ("AMD EPYC"),
/// and the numbers tell the generations apart (family 25: model 1 is Zen 3, model 17
/// Zen 4), which decide which backend is fastest. "unknown CPU" where there is no
/// `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|text| cpu_model_in(&text))
        .unwrap_or_else(|_| "unknown CPU".to_string())
}

/// [`cpu_model`] of a `/proc/cpuinfo` text.
fn cpu_model_in(cpuinfo: &str) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let name = field("model name")
        .filter(|model| !model.is_empty())
        .unwrap_or_else(|| "unknown CPU".to_string());
    match (field("cpu family"), field("model")) {
        (Some(family), Some(model)) if !family.is_empty() && !model.is_empty() => {
            format!("{name} (family {family}, model {model})")
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_model_in;

    #[test]
    fn cpu_model_names_the_brand_and_the_generation() {
        let zen4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nstepping\t: 1\n";
        assert_eq!(cpu_model_in(zen4), "AMD EPYC (family 25, model 17)");
        // Without the numbers (not x86), the name alone; without a name, a placeholder.
        assert_eq!(cpu_model_in("model name\t: Some CPU\n"), "Some CPU");
        assert_eq!(cpu_model_in(""), "unknown CPU");
    }
}
