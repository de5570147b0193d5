//! The worker's configuration, read from the environment of SPEC §4.
//!
//! [`WorkerConfig::from_lookup`] takes the variables from a closure so tests (and
//! launchers checking what they are about to send) need no process environment;
//! [`WorkerConfig::from_env`] reads the real one. Every error names the variable
//! and the value that was wrong: a worker never searches with a guessed value.

use uuid::Uuid;

use crate::distributed::Destination;
use crate::puzzle::{
    parse_block_hex, parse_difficulty, NonceBits, NonceFormat, Puzzle, PuzzleError,
};
use crate::run_key::{RunKey, RunKeyError};
use crate::search::available_threads;
use crate::shard::{NonceRange, RangeError};

/// The run's id.
pub const RUN_ID: &str = "CND_RUN_ID";
/// The block as text.
pub const BLOCK: &str = "CND_BLOCK";
/// The block as hex.
pub const BLOCK_HEX: &str = "CND_BLOCK_HEX";
/// D.
pub const DIFFICULTY: &str = "CND_DIFFICULTY";
/// 32 or 64.
pub const NONCE_BITS: &str = "CND_NONCE_BITS";
/// `binary` or `decimal`.
pub const NONCE_FORMAT: &str = "CND_NONCE_FORMAT";
/// S.
pub const SHARD_COUNT: &str = "CND_SHARD_COUNT";
/// This worker's shard.
pub const SHARD_INDEX: &str = "CND_SHARD_INDEX";
/// The shard index a Kubernetes Indexed Job gives each pod.
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";
/// The part of the space the run searches, `START..END`.
pub const RANGE: &str = "CND_RANGE";
/// Where reports go.
pub const QUEUE_URL: &str = "CND_QUEUE_URL";
/// The run's report key, 64 hex digits (SPEC §5).
pub const RUN_KEY: &str = "CND_RUN_KEY";
/// When the run's lifetime ends, in Unix seconds (optional): the worker stops
/// by then even if its master is gone, and its messages carry it so that a
/// shared queue can drop them once they can matter to no one.
pub const EXPIRES: &str = "CND_EXPIRES";
/// Search threads.
pub const THREADS: &str = "CND_THREADS";
/// The most search threads a worker (`CND_THREADS`) or the CLI (`--threads`)
/// accepts: each costs a stack, so a typo such as 100000 would exhaust a small
/// pod's memory before it searched.
pub const MAX_THREADS: usize = 4096;
/// The name reported back.
pub const WORKER_NAME: &str = "CND_WORKER_NAME";

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
    /// `CND_BLOCK_HEX`, `CND_DIFFICULTY`, `CND_NONCE_BITS` or `CND_NONCE_FORMAT` is malformed.
    #[error("{variable}={value:?} is invalid: {source}")]
    Puzzle {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        source: PuzzleError,
    },
    /// `CND_SHARD_COUNT`, `CND_SHARD_INDEX` or `JOB_COMPLETION_INDEX` is not a whole number.
    #[error("{variable}={value:?} is not a whole number")]
    NotANumber {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// `CND_RANGE` is malformed or reaches past the nonce space.
    #[error("CND_RANGE={value:?} is invalid: {source}")]
    Range {
        /// Its value.
        value: String,
        /// What is wrong with it.
        source: RangeError,
    },
    /// The shard count or index does not fit the range (zero shards, more shards
    /// than nonces, an index at or past the count).
    #[error("{variable}={value:?} is invalid: {source}")]
    Shard {
        /// The variable at fault (the index, or the count).
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        source: RangeError,
    },
    /// `CND_QUEUE_URL` is neither a queue URL, `stdout:` nor `termination-log:PATH`.
    #[error("CND_QUEUE_URL: {0}")]
    Destination(String),
    /// `CND_EXPIRES` is not a whole number of Unix seconds.
    #[error("CND_EXPIRES={0:?} is not a time in Unix seconds")]
    Expires(String),
    /// `CND_RUN_KEY` is not 64 hex digits (its value is never shown: it is a secret).
    #[error("CND_RUN_KEY is invalid: {0}")]
    RunKey(RunKeyError),
    /// `CND_THREADS` is zero, above [`MAX_THREADS`] or not a whole number.
    #[error("CND_THREADS={0:?} is not a thread count: use a whole number from 1 to {MAX_THREADS}")]
    Threads(String),
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
        // A value that is not UTF-8 cannot be any of ours; treat it as set-but-wrong
        // by passing it on lossily, so the error names it instead of calling it missing.
        WorkerConfig::from_lookup(|name| {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
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
        let difficulty =
            parse_difficulty(&difficulty).map_err(puzzle_error(DIFFICULTY, &difficulty))?;
        let bits = match get(NONCE_BITS) {
            Some(v) => v
                .parse::<NonceBits>()
                .map_err(puzzle_error(NONCE_BITS, &v))?,
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
            Some(v) => NonceRange::parse_within(v.trim(), &puzzle.space()).map_err(|source| {
                WorkerConfigError::Range {
                    value: v.clone(),
                    source,
                }
            })?,
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
        let shard = range.shard(shard_index, shard_count).map_err(|source| {
            let (variable, value) = match source {
                RangeError::ShardIndex { .. } => (index_variable, index_text.clone()),
                _ => (SHARD_COUNT, count_text.clone()),
            };
            WorkerConfigError::Shard {
                variable,
                value,
                source,
            }
        })?;

        let queue_url = required(QUEUE_URL)?.trim().to_string();
        let destination = Destination::parse(&queue_url).map_err(WorkerConfigError::Destination)?;
        let run_key = RunKey::parse_hex(&required(RUN_KEY)?).map_err(WorkerConfigError::RunKey)?;
        let expires = match get(EXPIRES) {
            Some(v) => {
                Some(parse_u64(EXPIRES, &v).map_err(|_| WorkerConfigError::Expires(v.clone()))?)
            }
            None => None,
        };

        let threads = match get(THREADS) {
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_THREADS).contains(&n) => n,
                _ => return Err(WorkerConfigError::Threads(v)),
            },
            // std's available_parallelism respects cgroup v2 CPU quotas on Linux, so a
            // pod limited to 2 CPUs searches on 2 threads, not on every core of the node.
            None => available_threads(),
        };

        let worker_name = get(WORKER_NAME)
            .map(|v| v.trim().to_string())
            .or_else(|| host_name(&lookup))
            .unwrap_or_else(|| "worker".to_string());

        Ok(WorkerConfig {
            run_id,
            puzzle,
            range,
            shard_count,
            shard_index,
            shard,
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
    move |source| WorkerConfigError::Puzzle {
        variable,
        value: value.to_string(),
        source,
    }
}

fn parse_u64(variable: &'static str, value: &str) -> Result<u64, WorkerConfigError> {
    let text = value.trim();
    // Digits only: `+3` and `-0` parse in Rust but are not what a launcher writes.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WorkerConfigError::NotANumber {
            variable,
            value: value.to_string(),
        });
    }
    text.parse().map_err(|_| WorkerConfigError::NotANumber {
        variable,
        value: value.to_string(),
    })
}

/// The host name: the kernel's (a pod's name on Kubernetes), else `HOSTNAME`.
fn host_name(lookup: &impl Fn(&str) -> Option<String>) -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| lookup("HOSTNAME"))
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
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
                source: PuzzleError::DifficultyNotANumber(_),
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
                source: RangeError::ShardIndex { .. },
                ..
            })
        ));
        assert!(matches!(
            with(&[(SHARD_COUNT, Some("0"))]),
            Err(E::Shard {
                variable: SHARD_COUNT,
                source: RangeError::NoShards,
                ..
            })
        ));
        assert!(matches!(
            with(&[(RANGE, Some("0..3")), (SHARD_COUNT, Some("4"))]),
            Err(E::Shard {
                variable: SHARD_COUNT,
                source: RangeError::TooManyShards { .. },
                ..
            })
        ));
        assert!(matches!(
            with(&[(RANGE, Some("0..4294967297"))]),
            Err(E::Range {
                source: RangeError::OutsideSpace { .. },
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
            };
            let mut env: HashMap<String, String> = spec.worker_env().into_iter().collect();
            prop_assert!(!env.contains_key(RUN_KEY), "the key is never in the plain environment");
            env.extend([spec.shard_key_env(index)]);
            if indexed_job {
                env.insert(JOB_COMPLETION_INDEX.into(), index.to_string());
            } else {
                let (name, value) = RunSpec::shard_env(index);
                env.insert(name, value);
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
