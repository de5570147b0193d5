//! The worker's configuration, read from the environment of SPEC §4.
//!
//! [`WorkerConfig::from_lookup`] takes the variables from a closure so tests (and
//! launchers checking what they are about to send) need no process environment;
//! [`WorkerConfig::from_env`] reads the real one. Every error names the variable
//! and the value that was wrong: a worker never searches with a guessed value.
//!
//! Every whole number (D, nonce bits, shard count and index, threads, expiry)
//! is plain decimal digits: no sign, no spaces, no exponent. A value that is not
//! UTF-8 is an error for every `CND_` variable, never read lossily.

use std::ffi::OsString;

use uuid::Uuid;

use crate::distributed::Destination;
use crate::puzzle::{
    parse_block_hex, parse_difficulty, NonceBits, NonceFormat, Puzzle, PuzzleError,
};
use crate::resume::Searched;
use crate::run_key::{RunKey, RunKeyError};
use crate::search::available_threads;
use crate::shard::{NonceRange, RangeError};

// The variables' names, here as before (`worker_config::RUN_ID` …).
pub use crate::worker_env::{
    BLOCK, BLOCK_HEX, DIFFICULTY, EXPIRES, JOB_COMPLETION_INDEX, NONCE_BITS, NONCE_FORMAT,
    QUEUE_URL, RANGE, RUN_ID, RUN_KEY, SEARCHED, SHARD_COUNT, SHARD_INDEX, THREADS, WORKER_NAME,
};

/// The most search threads a worker (`CND_THREADS`) or the CLI (`--threads`)
/// accepts: each costs a stack, so a typo such as 100000 would exhaust a small
/// pod's memory before it searched. Below it, [`max_threads`] is the real cap.
pub const MAX_THREADS: usize = 4096;
/// Search threads allowed per CPU this process may use (see [`max_threads`]).
pub const THREADS_PER_CPU: usize = 4;
/// The thread cap on a machine with few CPUs (see [`max_threads`]).
pub const MIN_THREAD_CAP: usize = 64;
/// The longest name a worker reports (`CND_WORKER_NAME`): a DNS name's, as a
/// pod's name is. A longer one would make every report too big to deliver.
pub const MAX_WORKER_NAME: usize = 253;

/// The most search threads this process searches with: [`THREADS_PER_CPU`] per
/// CPU it may use ([`available_threads`]: cgroup quota and affinity aware), at
/// least [`MIN_THREAD_CAP`] and at most [`MAX_THREADS`].
///
/// More threads than that only wait: the search pool's idle threads look for
/// work in every other thread's queue, so starting and ending a search costs
/// time that grows with the square of the thread count (measured on 2 CPUs:
/// 1,024 threads 8 s, 4,096 threads 47 to 99 s, for a search of 1,000 nonces).
pub fn max_threads() -> usize {
    available_threads()
        .saturating_mul(THREADS_PER_CPU)
        .clamp(MIN_THREAD_CAP, MAX_THREADS)
}
/// Why the worker environment is not usable. Every message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerConfigError {
    /// A required variable is unset or empty.
    #[error("{variable} is not set: the worker needs it (see SPEC §4)")]
    Missing {
        /// The variable.
        variable: &'static str,
    },
    /// Neither `CND_BLOCK` nor `CND_BLOCK_HEX` is set.
    #[error("neither CND_BLOCK nor CND_BLOCK_HEX is set: set exactly one of them")]
    NoBlock,
    /// Both `CND_BLOCK` and `CND_BLOCK_HEX` are set, so the block is ambiguous.
    #[error("both CND_BLOCK={block:?} and CND_BLOCK_HEX={hex:?} are set: set exactly one of them")]
    TwoBlocks {
        /// The value of `CND_BLOCK`.
        block: String,
        /// The value of `CND_BLOCK_HEX`.
        hex: String,
    },
    /// `CND_RUN_ID` is not a UUID.
    #[error("CND_RUN_ID={0:?} is not a UUID")]
    RunId(String),
    /// A variable's value is not UTF-8 text (on Unix an environment value may
    /// be any bytes): none of them is read lossily.
    #[error("{}", not_unicode(variable))]
    NotUnicode {
        /// The variable.
        variable: String,
    },
    /// `CND_BLOCK_HEX`, `CND_DIFFICULTY`, `CND_NONCE_BITS` or `CND_NONCE_FORMAT` is malformed.
    ///
    /// The message says the reason; it is not also the error's `source()`, so a
    /// printed chain says it once.
    #[error("{variable}={value:?} is invalid: {reason}")]
    Puzzle {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: PuzzleError,
    },
    /// `CND_SHARD_COUNT`, `CND_SHARD_INDEX` or `JOB_COMPLETION_INDEX` is not a whole number.
    #[error(
        "{variable}={value:?} is not a whole number (plain decimal digits: no sign, no spaces)"
    )]
    NotANumber {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// `CND_RANGE` is malformed or reaches past the nonce space.
    #[error("CND_RANGE={value:?} is invalid: {reason}")]
    Range {
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: RangeError,
    },
    /// The shard count or index does not fit the range (zero shards, more shards
    /// than nonces, an index at or past the count).
    #[error("{variable}={value:?} is invalid: {reason}")]
    Shard {
        /// The variable at fault (the index, or the count).
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: RangeError,
    },
    /// `CND_SEARCHED` is malformed, or its entry for this shard leaves no rest.
    #[error("CND_SEARCHED={value:?}: {reason}")]
    Searched {
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `CND_QUEUE_URL` is neither a queue URL, `stdout:` nor `termination-log:PATH`.
    #[error("CND_QUEUE_URL: {0}")]
    Destination(String),
    /// `CND_EXPIRES` is not a whole number of Unix seconds.
    #[error("CND_EXPIRES={0:?} is not a time in Unix seconds (plain decimal digits)")]
    Expires(String),
    /// `CND_RUN_KEY` is not 64 hex digits (its value is never shown: it is a secret).
    #[error("CND_RUN_KEY is invalid: {0}")]
    RunKey(RunKeyError),
    /// `CND_THREADS` is zero, above [`MAX_THREADS`] or not a whole number.
    #[error("CND_THREADS={0:?} is not a thread count: use a whole number from 1 to {MAX_THREADS}")]
    Threads(String),
    /// `CND_WORKER_NAME` is longer than [`MAX_WORKER_NAME`] bytes or holds a
    /// control character.
    #[error("CND_WORKER_NAME {0}")]
    WorkerName(String),
}

/// The sentence for a variable whose value is not UTF-8.
fn not_unicode(variable: &str) -> String {
    if variable == BLOCK {
        format!("{BLOCK} is not UTF-8 text: give a block of any bytes as hex in {BLOCK_HEX}")
    } else {
        format!("{variable} is not UTF-8 text: every CND_ variable must be (see SPEC §4)")
    }
}

/// The first variable of `vars` that the worker reads (`CND_*`,
/// `JOB_COMPLETION_INDEX`) and whose value is not UTF-8.
pub fn non_unicode_variable(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Option<WorkerConfigError> {
    let mut bad: Vec<String> = vars
        .into_iter()
        .filter(|(_, value)| value.to_str().is_none())
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("CND_") || name == JOB_COMPLETION_INDEX)
        .collect();
    // The same variable named whatever order the environment lists them in.
    bad.sort();
    bad.into_iter()
        .next()
        .map(|variable| WorkerConfigError::NotUnicode { variable })
}

/// Everything a worker needs, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// The run's id; every report carries it.
    pub run_id: Uuid,
    /// The puzzle.
    pub puzzle: Puzzle,
    /// The part of the space the whole run searches (`CND_RANGE`, else all of it).
    pub range: NonceRange,
    /// S.
    pub shard_count: u64,
    /// This worker's shard index, below `shard_count`.
    pub shard_index: u64,
    /// This worker's nonces: shard `shard_index` of `shard_count` of `range`.
    pub shard: NonceRange,
    /// What of `shard` earlier attempts searched (`CND_SEARCHED`): `None` when
    /// they searched all of it (the worker reports `exhausted` at once), else
    /// the rest to search, from the first nonce not yet tried.
    pub rest: Option<NonceRange>,
    /// Where reports go, as given (`CND_QUEUE_URL`).
    pub queue_url: String,
    /// The same, parsed: an SQS queue, stdout, or a termination-message file.
    pub destination: Destination,
    /// The key reports are signed with.
    pub run_key: RunKey,
    /// When the run's lifetime ends (Unix seconds), if the launcher said.
    pub expires: Option<u64>,
    /// Threads to search with, at least 1.
    pub threads: usize,
    /// The name reported back.
    pub worker_name: String,
}

impl WorkerConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<WorkerConfig, WorkerConfigError> {
        // A value that is not UTF-8 cannot be any of ours: it is named, never
        // read lossily (a block of U+FFFD) nor taken as unset (a default).
        if let Some(err) = non_unicode_variable(std::env::vars_os()) {
            return Err(err);
        }
        WorkerConfig::from_lookup(|name| std::env::var_os(name).and_then(|v| v.into_string().ok()))
    }

    /// Reads the variables through `lookup` (`None` for an unset variable).
    ///
    /// An empty value counts as unset, except for `CND_BLOCK` and `CND_BLOCK_HEX`,
    /// where it is the empty block.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<WorkerConfig, WorkerConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let required =
            |name: &'static str| get(name).ok_or(WorkerConfigError::Missing { variable: name });

        let run_id = required(RUN_ID)?;
        let run_id =
            Uuid::parse_str(run_id.trim()).map_err(|_| WorkerConfigError::RunId(run_id))?;

        let block = match (lookup(BLOCK), lookup(BLOCK_HEX)) {
            (Some(block), Some(hex)) => return Err(WorkerConfigError::TwoBlocks { block, hex }),
            // Taken as is: spaces at either end are part of the block.
            (Some(block), None) => block.into_bytes(),
            (None, Some(hex)) => parse_block_hex(&hex).map_err(puzzle_error(BLOCK_HEX, &hex))?,
            (None, None) => return Err(WorkerConfigError::NoBlock),
        };
        let difficulty = required(DIFFICULTY)?;
        let difficulty = if is_plain_number(&difficulty) {
            parse_difficulty(&difficulty)
        } else {
            Err(PuzzleError::DifficultyNotANumber(difficulty.clone()))
        }
        .map_err(puzzle_error(DIFFICULTY, &difficulty))?;
        let bits = match get(NONCE_BITS) {
            Some(v) if is_plain_number(&v) => v
                .parse::<NonceBits>()
                .map_err(puzzle_error(NONCE_BITS, &v))?,
            Some(v) => {
                let reason = PuzzleError::NonceBits(v.clone());
                return Err(puzzle_error(NONCE_BITS, &v)(reason));
            }
            None => NonceBits::default(),
        };
        let format = match get(NONCE_FORMAT) {
            Some(v) => v
                .parse::<NonceFormat>()
                .map_err(puzzle_error(NONCE_FORMAT, &v))?,
            None => NonceFormat::default(),
        };
        let puzzle =
            Puzzle::new(block, difficulty, bits, format).expect("parse_difficulty checked D");

        let range = match get(RANGE) {
            Some(v) => {
                // `START..END` in plain digits, as every other number here.
                let parsed = if v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                    NonceRange::parse_within(&v, &puzzle.space())
                } else {
                    Err(RangeError::Syntax(v.clone()))
                };
                parsed.map_err(|reason| WorkerConfigError::Range {
                    value: v.clone(),
                    reason,
                })?
            }
            None => puzzle.space(),
        };

        let count_text = required(SHARD_COUNT)?;
        let shard_count = parse_u64(SHARD_COUNT, &count_text)?;
        let (index_variable, index_text) = match get(SHARD_INDEX) {
            Some(v) => (SHARD_INDEX, v),
            None => match get(JOB_COMPLETION_INDEX) {
                Some(v) => (JOB_COMPLETION_INDEX, v),
                None => {
                    return Err(WorkerConfigError::Missing {
                        variable: SHARD_INDEX,
                    })
                }
            },
        };
        let shard_index = parse_u64(index_variable, &index_text)?;
        let shard = range.shard(shard_index, shard_count).map_err(|reason| {
            let (variable, value) = match reason {
                RangeError::ShardIndex { .. } => (index_variable, index_text.clone()),
                _ => (SHARD_COUNT, count_text.clone()),
            };
            WorkerConfigError::Shard {
                variable,
                value,
                reason,
            }
        })?;

        let rest = match get(SEARCHED) {
            None => Some(shard),
            Some(v) => {
                let error = |reason: String| WorkerConfigError::Searched {
                    value: v.clone(),
                    reason,
                };
                let searched =
                    Searched::parse(v.trim(), shard_count).map_err(|e| error(e.to_string()))?;
                if searched.is_done(shard_index) {
                    None
                } else {
                    let prefix = searched.prefix(shard_index);
                    if u128::from(prefix) >= shard.len() {
                        return Err(error(format!(
                            "{prefix} nonces of shard {shard_index} searched, but it has {}",
                            shard.len()
                        )));
                    }
                    Some(NonceRange::new(shard.first() + prefix, shard.last()).expect("a rest"))
                }
            }
        };

        let queue_url = required(QUEUE_URL)?.trim().to_string();
        let destination = Destination::parse(&queue_url).map_err(WorkerConfigError::Destination)?;
        let run_key = RunKey::parse_hex(&required(RUN_KEY)?).map_err(WorkerConfigError::RunKey)?;
        let expires = match get(EXPIRES) {
            Some(v) => {
                Some(parse_u64(EXPIRES, &v).map_err(|_| WorkerConfigError::Expires(v.clone()))?)
            }
            None => None,
        };

        // Only checked here; the worker clamps it to `max_threads()` with a warning,
        // as a pod's CPUs may differ from what its master guessed.
        let threads = match get(THREADS) {
            Some(v) => match v.parse::<usize>() {
                Ok(n) if is_plain_number(&v) && (1..=MAX_THREADS).contains(&n) => n,
                _ => return Err(WorkerConfigError::Threads(v)),
            },
            // std's available_parallelism respects cgroup v2 CPU quotas on Linux, so a
            // pod limited to 2 CPUs searches on 2 threads, not on every core of the node.
            None => available_threads(),
        };

        let worker_name = match get(WORKER_NAME) {
            Some(v) => Some(check_worker_name(v.trim())?.to_string()),
            None => None,
        };
        let worker_name = worker_name
            .or_else(|| host_name(&lookup))
            .unwrap_or_else(|| "worker".to_string());

        Ok(WorkerConfig {
            run_id,
            puzzle,
            range,
            shard_count,
            shard_index,
            shard,
            rest,
            queue_url,
            destination,
            run_key,
            expires,
            threads,
            worker_name,
        })
    }
}

fn puzzle_error<'a>(
    variable: &'static str,
    value: &'a str,
) -> impl FnOnce(PuzzleError) -> WorkerConfigError + 'a {
    move |reason| WorkerConfigError::Puzzle {
        variable,
        value: value.to_string(),
        reason,
    }
}

/// Plain decimal digits, at least one: `+3`, `-0` and ` 3` parse in Rust (after a
/// trim) but are not what a launcher writes, so no whole number here takes them.
fn is_plain_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

fn parse_u64(variable: &'static str, value: &str) -> Result<u64, WorkerConfigError> {
    let not_a_number = || WorkerConfigError::NotANumber {
        variable,
        value: value.to_string(),
    };
    if !is_plain_number(value) {
        return Err(not_a_number());
    }
    value.parse().map_err(|_| not_a_number())
}

/// `CND_WORKER_NAME` as given, if it is at most [`MAX_WORKER_NAME`] bytes of
/// printable text (every report carries it).
fn check_worker_name(name: &str) -> Result<&str, WorkerConfigError> {
    if name.len() > MAX_WORKER_NAME {
        // Not echoed: it may be 100 KB.
        return Err(WorkerConfigError::WorkerName(format!(
            "is {} bytes long: a worker's name is at most {MAX_WORKER_NAME} (a DNS name, as a pod's is)",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(WorkerConfigError::WorkerName(format!(
            "={name:?} holds a control character: a worker's name is printable text"
        )));
    }
    Ok(name)
}

/// The host name: the kernel's (a pod's name on Kubernetes), else `HOSTNAME`.
fn host_name(lookup: &impl Fn(&str) -> Option<String>) -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| lookup("HOSTNAME"))
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty() && check_worker_name(name).is_ok())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::distributed::RunSpec;

    const ID: &str = "6f1c2a4e-0b7d-4c1e-9a3f-2d5e8b7c9a10";

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            (RUN_ID, ID.to_string()),
            (BLOCK, "COMSM0010cloud".to_string()),
            (DIFFICULTY, "12".to_string()),
            (SHARD_COUNT, "4".to_string()),
            (SHARD_INDEX, "2".to_string()),
            (QUEUE_URL, "http://127.0.0.1:5000/123/cnd-x".to_string()),
            (RUN_KEY, "ab".repeat(32)),
        ])
    }

    fn parse(env: &HashMap<&'static str, String>) -> Result<WorkerConfig, WorkerConfigError> {
        WorkerConfig::from_lookup(|name| env.get(name).cloned())
    }

    fn with(changes: &[(&'static str, Option<&str>)]) -> Result<WorkerConfig, WorkerConfigError> {
        let mut env = base();
        for &(name, value) in changes {
            match value {
                Some(v) => env.insert(name, v.to_string()),
                None => env.remove(name),
            };
        }
        parse(&env)
    }

    /// The error's message, which must name the variable and (if given) the value.
    fn message(changes: &[(&'static str, Option<&str>)]) -> String {
        with(changes).unwrap_err().to_string()
    }

    #[test]
    fn searched_says_where_the_shards_rest_begins() {
        let shard = Puzzle::with_default_block(12)
            .unwrap()
            .space()
            .shard(2, 4)
            .unwrap();
        assert_eq!(parse(&base()).unwrap().rest, Some(shard));
        let config = with(&[(SEARCHED, Some("2:4096"))]).unwrap();
        let rest = config.rest.unwrap();
        assert_eq!(
            (rest.first(), rest.last()),
            (shard.first() + 4096, shard.last())
        );
        // Other shards' entries (an Indexed Job's list) are not this worker's.
        let config = with(&[(SEARCHED, Some("0-1,3,1:5"))]);
        assert!(config.is_err(), "shard 1 named twice");
        assert_eq!(
            with(&[(SEARCHED, Some("0-1,3"))]).unwrap().rest,
            Some(shard)
        );
        assert_eq!(with(&[(SEARCHED, Some("1-2"))]).unwrap().rest, None);
        for bad in ["2:x", "9", "2:1073741824", "2:0", "-1"] {
            let said = message(&[(SEARCHED, Some(bad))]);
            assert!(
                said.starts_with(&format!("CND_SEARCHED=\"{bad}\"")),
                "{said}"
            );
        }
    }

    #[test]
    fn defaults() {
        let config = parse(&base()).unwrap();
        assert_eq!(config.run_id.to_string(), ID);
        assert_eq!(config.puzzle, Puzzle::with_default_block(12).unwrap());
        assert_eq!(config.range, config.puzzle.space());
        assert_eq!(config.shard, config.puzzle.space().shard(2, 4).unwrap());
        assert_eq!(config.shard_count, 4);
        assert_eq!(config.shard_index, 2);
        assert_eq!(config.threads, available_threads());
        assert!(!config.worker_name.is_empty());
    }

    #[test]
    fn optional_variables() {
        let config = with(&[
            (BLOCK, None),
            (BLOCK_HEX, Some("00ff")),
            (NONCE_BITS, Some("64")),
            (NONCE_FORMAT, Some("decimal")),
            (RANGE, Some("100..200")),
            (THREADS, Some("3")),
            (WORKER_NAME, Some("cnd-6f1c2a4e-2-abcde")),
        ])
        .unwrap();
        assert_eq!(config.puzzle.block(), &[0x00, 0xff]);
        assert_eq!(config.puzzle.nonce_bits(), NonceBits::B64);
        assert_eq!(config.puzzle.nonce_format(), NonceFormat::Decimal);
        assert_eq!(config.range, NonceRange::new(100, 199).unwrap());
        assert_eq!(config.shard, NonceRange::new(150, 174).unwrap());
        assert_eq!(config.threads, 3);
        assert_eq!(config.worker_name, "cnd-6f1c2a4e-2-abcde");
    }

    #[test]
    fn empty_block_is_a_block() {
        let config = with(&[(BLOCK, Some(""))]).unwrap();
        assert_eq!(config.puzzle.block(), b"");
        let config = with(&[(BLOCK, None), (BLOCK_HEX, Some(""))]).unwrap();
        assert_eq!(config.puzzle.block(), b"");
    }

    #[test]
    fn job_completion_index_stands_in_for_the_shard_index() {
        let config = with(&[(SHARD_INDEX, None), (JOB_COMPLETION_INDEX, Some("3"))]).unwrap();
        assert_eq!(config.shard_index, 3);
        // CND_SHARD_INDEX wins when both are set.
        let config = with(&[(JOB_COMPLETION_INDEX, Some("3"))]).unwrap();
        assert_eq!(config.shard_index, 2);
    }

    #[test]
    fn missing_variables_are_named() {
        for variable in [
            RUN_ID,
            DIFFICULTY,
            SHARD_COUNT,
            SHARD_INDEX,
            QUEUE_URL,
            RUN_KEY,
        ] {
            let err = with(&[(variable, None)]).unwrap_err();
            assert_eq!(err, WorkerConfigError::Missing { variable });
            assert!(err.to_string().contains(variable), "{err}");
            // Empty is as good as unset.
            let err = with(&[(variable, Some(" "))]).unwrap_err();
            assert_eq!(err, WorkerConfigError::Missing { variable });
        }
    }

    #[test]
    fn the_destination_is_a_queue_stdout_or_a_termination_log() {
        let config = parse(&base()).unwrap();
        assert_eq!(
            config.destination,
            Destination::Sqs("http://127.0.0.1:5000/123/cnd-x".into())
        );
        let config = with(&[(QUEUE_URL, Some("stdout:"))]).unwrap();
        assert_eq!(config.destination, Destination::Stdout);
        let config = with(&[(QUEUE_URL, Some("termination-log:/dev/termination-log"))]).unwrap();
        assert_eq!(
            config.destination,
            Destination::TerminationLog("/dev/termination-log".into())
        );
        for bad in [
            "ftp://x",
            "stdout",
            "termination-log:relative",
            "https://",
            "queue",
        ] {
            let err = with(&[(QUEUE_URL, Some(bad))]).unwrap_err();
            assert!(
                matches!(err, WorkerConfigError::Destination(_)),
                "{bad}: {err}"
            );
            assert!(err.to_string().starts_with("CND_QUEUE_URL"), "{err}");
        }
    }

    #[test]
    fn block_must_be_given_once() {
        let err = with(&[(BLOCK, None)]).unwrap_err();
        assert_eq!(err, WorkerConfigError::NoBlock);
        assert!(err.to_string().contains("CND_BLOCK"));
        let err = with(&[(BLOCK_HEX, Some("00"))]).unwrap_err();
        assert!(
            matches!(err, WorkerConfigError::TwoBlocks { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("CND_BLOCK_HEX=\"00\""), "{err}");
    }

    #[test]
    fn malformed_values_are_named_with_the_value() {
        let cases: &[(&str, &str)] = &[
            (RUN_ID, "not-a-uuid"),
            (BLOCK_HEX, "0g"),
            (DIFFICULTY, "abc"),
            (DIFFICULTY, "257"),
            (NONCE_BITS, "16"),
            (NONCE_FORMAT, "hex"),
            (SHARD_COUNT, "four"),
            (SHARD_COUNT, "0"),
            (SHARD_INDEX, "-1"),
            (SHARD_INDEX, "4"),
            (RANGE, "5..5"),
            (RANGE, "0..4294967297"),
            (RANGE, "x"),
            (THREADS, "0"),
            (THREADS, "many"),
            (EXPIRES, "tomorrow"),
        ];
        for &(variable, value) in cases {
            let changes: Vec<(&'static str, Option<&str>)> = if variable == BLOCK_HEX {
                vec![(BLOCK, None), (BLOCK_HEX, Some(value))]
            } else {
                vec![(variable, Some(value))]
            };
            let text = message(&changes);
            assert!(
                text.contains(&format!("{variable}={value:?}")),
                "{variable}={value}: {text}"
            );
        }
    }

    #[test]
    fn error_kinds() {
        use WorkerConfigError as E;
        assert!(matches!(with(&[(RUN_ID, Some("x"))]), Err(E::RunId(_))));
        assert!(matches!(
            with(&[(DIFFICULTY, Some("abc"))]),
            Err(E::Puzzle {
                variable: DIFFICULTY,
                reason: PuzzleError::DifficultyNotANumber(_),
                ..
            })
        ));
        assert!(matches!(
            with(&[(SHARD_COUNT, Some("x"))]),
            Err(E::NotANumber {
                variable: SHARD_COUNT,
                ..
            })
        ));
        assert!(matches!(
            with(&[(SHARD_INDEX, None), (JOB_COMPLETION_INDEX, Some("x"))]),
            Err(E::NotANumber {
                variable: JOB_COMPLETION_INDEX,
                ..
            })
        ));
        assert!(matches!(
            with(&[(SHARD_INDEX, Some("9"))]),
            Err(E::Shard {
                variable: SHARD_INDEX,
                reason: RangeError::ShardIndex { .. },
                ..
            })
        ));
        assert!(matches!(
            with(&[(SHARD_COUNT, Some("0"))]),
            Err(E::Shard {
                variable: SHARD_COUNT,
                reason: RangeError::NoShards,
                ..
            })
        ));
        assert!(matches!(
            with(&[(RANGE, Some("0..3")), (SHARD_COUNT, Some("4"))]),
            Err(E::Shard {
                variable: SHARD_COUNT,
                reason: RangeError::TooManyShards { .. },
                ..
            })
        ));
        assert!(matches!(
            with(&[(RANGE, Some("0..4294967297"))]),
            Err(E::Range {
                reason: RangeError::OutsideSpace { .. },
                ..
            })
        ));
        assert!(matches!(with(&[(THREADS, Some("0"))]), Err(E::Threads(_))));
        assert!(matches!(
            with(&[(THREADS, Some("100000"))]),
            Err(E::Threads(_))
        ));
        assert!(with(&[(THREADS, Some("4096"))]).is_ok());
    }

    #[test]
    fn whole_numbers_are_plain_digits_only() {
        let cases: &[(&str, &str)] = &[
            (DIFFICULTY, "+8"),
            (DIFFICULTY, " 8"),
            (DIFFICULTY, "8 "),
            (DIFFICULTY, "-0"),
            (NONCE_BITS, "+32"),
            (NONCE_BITS, " 64"),
            (SHARD_COUNT, "+4"),
            (SHARD_COUNT, "4\n"),
            (SHARD_INDEX, "+2"),
            (THREADS, "+3"),
            (THREADS, " 3"),
            (EXPIRES, "+1900000000"),
            (EXPIRES, "1.9e9"),
            (RANGE, "+100..200"),
            (RANGE, "100 .. 200"),
        ];
        for &(variable, value) in cases {
            let text = message(&[(variable, Some(value))]);
            assert!(
                text.contains(&format!("{variable}={value:?}")),
                "{variable}={value:?} was accepted or not named: {text}"
            );
        }
        let text = message(&[(SHARD_INDEX, None), (JOB_COMPLETION_INDEX, Some("+2"))]);
        assert!(text.contains("JOB_COMPLETION_INDEX=\"+2\""), "{text}");
        // Leading zeros are still plain digits.
        let config = with(&[(DIFFICULTY, Some("08")), (THREADS, Some("03"))]).unwrap();
        assert_eq!((config.puzzle.difficulty(), config.threads), (8, 3));
    }

    #[test]
    fn values_that_are_not_utf8_are_named_never_read_lossily() {
        use std::os::unix::ffi::OsStringExt;
        let raw =
            |name: &str, bytes: &[u8]| (OsString::from(name), OsString::from_vec(bytes.to_vec()));
        let fine = raw(BLOCK, b"COMSM0010cloud");
        assert_eq!(non_unicode_variable([fine.clone()]), None);
        // Others' variables are theirs to judge.
        assert_eq!(non_unicode_variable([raw("PATH", b"/bin\xff")]), None);
        let err = non_unicode_variable([fine, raw(BLOCK, b"abc\xff\xfe")]).unwrap();
        let text = err.to_string();
        assert!(text.starts_with("CND_BLOCK is not UTF-8"), "{text}");
        assert!(
            text.contains("CND_BLOCK_HEX"),
            "points to the hex form: {text}"
        );
        for name in [
            "CND_BACKEND",
            "CND_PROGRESS_SECS",
            THREADS,
            JOB_COMPLETION_INDEX,
        ] {
            let err = non_unicode_variable([raw(name, b"\x80")]).unwrap();
            assert_eq!(
                err,
                WorkerConfigError::NotUnicode {
                    variable: name.to_string()
                }
            );
            assert!(err.to_string().starts_with(name), "{err}");
            assert_eq!(err.to_string().lines().count(), 1);
        }
    }

    #[test]
    fn worker_names_are_at_most_a_dns_name_of_printable_text() {
        let longest = "w".repeat(MAX_WORKER_NAME);
        assert_eq!(
            with(&[(WORKER_NAME, Some(&longest))]).unwrap().worker_name,
            longest
        );
        for bad in ["w".repeat(MAX_WORKER_NAME + 1), "w".repeat(100_000)] {
            let err = with(&[(WORKER_NAME, Some(&bad))]).unwrap_err();
            assert!(matches!(err, WorkerConfigError::WorkerName(_)), "{err:?}");
            let text = err.to_string();
            assert!(
                text.starts_with("CND_WORKER_NAME") && text.contains("253"),
                "{text}"
            );
            assert!(text.len() < 200, "the name is not echoed: {text}");
        }
        for bad in ["pod\u{7}1", "pod\n1", "a\tb"] {
            let err = with(&[(WORKER_NAME, Some(bad))]).unwrap_err();
            assert!(
                matches!(err, WorkerConfigError::WorkerName(_)),
                "{bad:?}: {err:?}"
            );
        }
    }

    /// The message and its sources, joined as `anyhow`'s `{:#}` does.
    fn printed_chain(err: &(dyn std::error::Error + 'static)) -> String {
        let mut text = err.to_string();
        let mut next = err.source();
        while let Some(source) = next {
            text = format!("{text}: {source}");
            next = source.source();
        }
        text
    }

    #[test]
    fn errors_say_their_cause_once() {
        let cases: &[&[(&'static str, Option<&str>)]] = &[
            &[(DIFFICULTY, Some("257"))],
            &[(DIFFICULTY, Some("abc"))],
            &[(NONCE_BITS, Some("16"))],
            &[(NONCE_FORMAT, Some("hex"))],
            &[(BLOCK, None), (BLOCK_HEX, Some("0g"))],
            &[(RANGE, Some("5..5"))],
            &[(SHARD_COUNT, Some("0"))],
            &[(SHARD_INDEX, Some("4"))],
            &[(RUN_KEY, Some("abc"))],
            &[(QUEUE_URL, Some("ftp://x"))],
        ];
        for changes in cases {
            let err = with(changes).unwrap_err();
            let text = err.to_string();
            assert_eq!(printed_chain(&err), text, "the cause is said twice");
        }
    }

    #[test]
    fn the_thread_cap_is_a_few_per_cpu() {
        let cap = max_threads();
        assert!((MIN_THREAD_CAP..=MAX_THREADS).contains(&cap), "{cap}");
        assert!(cap >= available_threads(), "the default always fits");
        assert_eq!(
            cap,
            (available_threads() * THREADS_PER_CPU).clamp(MIN_THREAD_CAP, MAX_THREADS)
        );
    }

    #[test]
    fn a_bad_run_key_is_named_but_never_shown() {
        let secret = "c0ffee".repeat(10); // 60 digits: one byte short of a key
        let err = with(&[(RUN_KEY, Some(&secret))]).unwrap_err();
        assert!(matches!(err, WorkerConfigError::RunKey(_)), "{err:?}");
        assert!(err.to_string().contains("CND_RUN_KEY"), "{err}");
        assert!(!err.to_string().contains("c0ffee"), "{err}");
        let config = with(&[(RUN_KEY, Some(&format!(" {} ", "AB".repeat(32))))]).unwrap();
        assert_eq!(config.run_key, RunKey::from_bytes([0xab; 32]));
    }

    fn puzzle_strategy() -> impl Strategy<Value = Puzzle> {
        (
            prop::collection::vec(any::<u8>(), 0..40),
            0u32..=256,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(block, d, wide, decimal)| {
                let bits = if wide { NonceBits::B64 } else { NonceBits::B32 };
                let format = if decimal {
                    NonceFormat::Decimal
                } else {
                    NonceFormat::Binary
                };
                Puzzle::new(block, d, bits, format).unwrap()
            })
    }

    proptest! {
        #[test]
        fn run_spec_round_trips(
            puzzle in puzzle_strategy(),
            text_block in any::<bool>(),
            a in any::<u64>(),
            b in any::<u64>(),
            whole in any::<bool>(),
            shards in 1u64..1000,
            index_seed in any::<u64>(),
            indexed_job in any::<bool>(),
        ) {
            // Half the time a printable block, which travels as CND_BLOCK.
            let puzzle = if text_block {
                let text: Vec<u8> = puzzle.block().iter().map(|b| b' ' + b % 95).collect();
                Puzzle::new(text, puzzle.difficulty(), puzzle.nonce_bits(), puzzle.nonce_format()).unwrap()
            } else {
                puzzle
            };
            let max = puzzle.nonce_bits().max_nonce();
            let range = if whole {
                puzzle.space()
            } else {
                let (a, b) = (a & max, b & max);
                NonceRange::new(a.min(b), a.max(b)).unwrap()
            };
            let shards = shards.min(u64::try_from(range.len()).unwrap_or(u64::MAX));
            let index = index_seed % shards;
            let spec = RunSpec {
                run_id: Uuid::new_v4(),
                puzzle: puzzle.clone(),
                range,
                shards,
                parallelism: 1,
                queue_url: "https://sqs.eu-west-2.amazonaws.com/123456789012/cnd-x".into(),
                run_key: RunKey::from_bytes([9; 32]),
                timeout: None,
                progress_every: crate::distributed::DEFAULT_PROGRESS_EVERY,
                searched: Default::default(),
            };
            let mut env: HashMap<String, String> = spec.worker_env().into_iter().collect();
            prop_assert!(!env.contains_key(RUN_KEY), "the key is never in the plain environment");
            env.extend([spec.shard_key_env(index)]);
            if indexed_job {
                env.insert(JOB_COMPLETION_INDEX.into(), index.to_string());
            } else {
                env.extend(spec.shard_env(index));
            }
            let config = WorkerConfig::from_lookup(|name| env.get(name).cloned()).unwrap();
            prop_assert_eq!(config.run_id, spec.run_id);
            prop_assert_eq!(&config.puzzle, &puzzle);
            prop_assert_eq!(config.range, range);
            prop_assert_eq!(config.shard, range.shard(index, shards).unwrap());
            prop_assert_eq!(config.queue_url, spec.queue_url);
            prop_assert_eq!(config.run_key, spec.run_key.for_shard(index));
            prop_assert!(config.expires.is_some_and(|e| e > 1_700_000_000));
        }
    }
}
