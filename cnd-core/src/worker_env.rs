//! The names of the worker's environment (SPEC §4), in one place: the master's
//! side writes them ([`RunSpec::worker_env`](crate::RunSpec::worker_env), the
//! launchers), the worker reads them ([`WorkerConfig`](crate::WorkerConfig),
//! `cnd-worker`). Neither spells a name itself.

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
/// The name reported back.
pub const WORKER_NAME: &str = "CND_WORKER_NAME";
/// What earlier attempts of a resumed run searched ([`Searched`](crate::Searched)'s
/// `I`, `I-J`, `I:N` list): the worker starts after its shard's entry.
pub const SEARCHED: &str = "CND_SEARCHED";
/// Seconds between `progress` reports.
pub const PROGRESS_SECS: &str = "CND_PROGRESS_SECS";
/// A hash backend forced by name ([`Backend::from_env`](crate::Backend::from_env)).
pub const BACKEND: &str = "CND_BACKEND";
