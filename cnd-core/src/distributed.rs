//! The contracts between the master and the cloud: [`Launcher`] starts and stops
//! workers, [`ResultChannel`] carries their reports back.
//!
//! Both are async (the cloud SDKs are) but runtime-agnostic: this crate never
//! spawns, sleeps or opens a socket. Implementations live in `cnd-cloud`
//! (Kubernetes, SQS, local processes) and in [`crate::memory`] (tests).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::puzzle::{to_hex, Puzzle};
use crate::resume::Searched;
use crate::run_key::{RunKey, RunKeyError};
use crate::shard::NonceRange;
use crate::worker_env;

/// How long a run without a timeout may live: a master that dies still leaves
/// nothing running (or queued) after this.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Extra time past the run's timeout before the infrastructure ends it by
/// itself (the master normally ends it at the timeout).
pub const LIFETIME_SLACK: Duration = Duration::from_secs(60);

/// The most shards a run may have: each is a Job completion index (or a pod)
/// and an entry in the master's tally.
pub const MAX_SHARDS: u64 = 100_000;

/// Why a [`RunSpec`] cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunSpecError {
    /// Zero shards: nothing would be searched.
    #[error("a run needs at least one shard")]
    NoShards,
    /// More shards than [`MAX_SHARDS`].
    #[error("{0} shards is more than the {MAX_SHARDS} a run may have")]
    TooManyShards(u64),
    /// More shards than nonces in the range.
    #[error("{shards} shards is more than the {nonces} nonces of the range")]
    MoreShardsThanNonces {
        /// Shards asked for.
        shards: u64,
        /// Nonces in the range.
        nonces: u128,
    },
    /// Parallelism of zero, or above the shard count.
    #[error("{parallelism} workers at once does not fit {shards} shards: use 1 to {shards}")]
    Parallelism {
        /// Workers at once asked for.
        parallelism: u64,
        /// Shards of the run.
        shards: u64,
    },
    /// What earlier attempts searched does not fit the run's shards.
    #[error("what earlier attempts searched does not fit this run: {0}")]
    Searched(String),
    /// The range lies outside the puzzle's nonce space.
    #[error("the range {range} lies outside the {bits}-bit nonce space")]
    OutsideSpace {
        /// The range.
        range: NonceRange,
        /// The puzzle's nonce width.
        bits: u32,
    },
    /// The run's key could not be drawn.
    #[error(transparent)]
    Key(#[from] RunKeyError),
}

/// Now, in Unix seconds: the clock of `CND_EXPIRES`, the `cnd-expires`
/// attribute and the queue's `cnd/expires` tag.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Everything a launcher needs to start the workers of one run.
///
/// Outside this crate it can only be made by [`RunSpec::new`], which checks that
/// the shards and parallelism fit the range (a run of zero shards would end
/// "exhausted" without searching anything).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSpec {
    /// The run's id; every worker and every message carries it.
    pub run_id: Uuid,
    /// The puzzle.
    pub puzzle: Puzzle,
    /// The part of the nonce space searched (usually all of it).
    pub range: NonceRange,
    /// S: how many shards `range` is split into (SPEC §2).
    pub shards: u64,
    /// P: how many workers run at once (`shards >= parallelism`).
    pub parallelism: u64,
    /// Where workers send reports (`CND_QUEUE_URL`). The master sets it to its
    /// channel's [`address`](ResultChannel::address) once the channel is open;
    /// what a caller puts here is only shown (a dry run's plan).
    pub queue_url: String,
    /// The key workers sign their reports with (`CND_RUN_KEY`, SPEC §5). Not part
    /// of [`RunSpec::worker_env`]: each launcher hands it over its own safe way.
    pub run_key: RunKey,
    /// The run's time limit; launchers that can (a Job's `activeDeadlineSeconds`)
    /// make workers end by themselves after it, even if the master is gone.
    pub timeout: Option<Duration>,
    /// How often workers send a `progress` report (`CND_PROGRESS_SECS`); the
    /// master takes a worker whose count stops moving for
    /// [`STALL_INTERVALS`] of these as stalled.
    pub progress_every: Duration,
    /// What earlier attempts of a resumed run searched: launchers start no
    /// worker for a shard searched to its end and tell the others where their
    /// shard's rest begins (`CND_SEARCHED`); the master counts it as done.
    pub searched: Searched,
}

/// How often workers report progress unless told otherwise (`CND_PROGRESS_SECS`).
pub const DEFAULT_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Progress intervals without a moving count after which the master takes a
/// running worker as stalled (frozen by SIGSTOP, a wedged node) and has it
/// replaced: 6 × 5 s = 30 s by default. See
/// [`MasterOptions::stall_after`](crate::master::MasterOptions::stall_after).
pub const STALL_INTERVALS: u32 = 6;

/// How often a launcher starts one shard's worker again after it failed before
/// the shard counts as failed: the `shard_retries` of every launcher's options
/// (local processes, a Job's `backoffLimitPerIndex`), one name and one default.
pub const DEFAULT_SHARD_RETRIES: u32 = 3;

impl RunSpec {
    /// A run of `puzzle` over `range` in `shards` shards, `parallelism` at a time,
    /// with a fresh run id and report key, no queue yet and no timeout (see the
    /// `with_` methods).
    pub fn new(
        puzzle: Puzzle,
        range: NonceRange,
        shards: u64,
        parallelism: u64,
    ) -> Result<RunSpec, RunSpecError> {
        if !puzzle.space().covers(&range) {
            return Err(RunSpecError::OutsideSpace {
                range,
                bits: puzzle.nonce_bits().bits(),
            });
        }
        let spec = RunSpec {
            run_id: Uuid::new_v4(),
            puzzle,
            range,
            shards,
            parallelism,
            queue_url: String::new(),
            run_key: RunKey::generate()?,
            timeout: None,
            progress_every: DEFAULT_PROGRESS_EVERY,
            searched: Searched::default(),
        };
        spec.check()?;
        Ok(spec)
    }

    /// The same run with another id.
    pub fn with_run_id(mut self, run_id: Uuid) -> RunSpec {
        self.run_id = run_id;
        self
    }

    /// The same run reporting to `queue_url`.
    pub fn with_queue_url(mut self, queue_url: impl Into<String>) -> RunSpec {
        self.queue_url = queue_url.into();
        self
    }

    /// The same run with a time limit.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> RunSpec {
        self.timeout = timeout;
        self
    }

    /// The same run with workers reporting progress every `every`, brought
    /// within 50 ms ..= 1 h (what a worker accepts as `CND_PROGRESS_SECS`).
    pub fn with_progress_every(mut self, every: Duration) -> RunSpec {
        self.progress_every = every.clamp(Duration::from_millis(50), Duration::from_secs(3600));
        self
    }

    /// The same run resuming earlier attempts that searched `searched`.
    pub fn with_searched(mut self, searched: Searched) -> Result<RunSpec, RunSpecError> {
        self.searched = searched;
        self.check()?;
        Ok(self)
    }

    /// The same run with a given report key (tests, and keys kept elsewhere).
    pub fn with_run_key(mut self, run_key: RunKey) -> RunSpec {
        self.run_key = run_key;
        self
    }

    /// Checks the shard count and parallelism against the range (what
    /// [`RunSpec::new`] checks; the master checks again, as fields are public).
    pub fn check(&self) -> Result<(), RunSpecError> {
        if self.shards == 0 {
            return Err(RunSpecError::NoShards);
        }
        if self.shards > MAX_SHARDS {
            return Err(RunSpecError::TooManyShards(self.shards));
        }
        if u128::from(self.shards) > self.range.len() {
            return Err(RunSpecError::MoreShardsThanNonces {
                shards: self.shards,
                nonces: self.range.len(),
            });
        }
        let shards = self.shards;
        let beyond = |shard: u64| shard >= shards;
        if let Some(shard) = self.searched.done().find(|&s| beyond(s)) {
            return Err(RunSpecError::Searched(format!(
                "shard {shard} is not one of the run's {shards} shards"
            )));
        }
        for (shard, nonces) in self.searched.prefixes() {
            let length = self
                .range
                .shard(shard, shards)
                .map_err(|e| RunSpecError::Searched(e.to_string()))?
                .len();
            if u128::from(nonces) >= length {
                return Err(RunSpecError::Searched(format!(
                    "a prefix of {nonces} nonces does not leave a rest of shard {shard} ({length} nonces)"
                )));
            }
        }
        if self.parallelism == 0 || self.parallelism > self.shards {
            return Err(RunSpecError::Parallelism {
                parallelism: self.parallelism,
                shards: self.shards,
            });
        }
        Ok(())
    }

    /// The shards a launcher starts workers for: all but those earlier
    /// attempts searched to their end ([`RunSpec::searched`]).
    pub fn shards_to_search(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.shards).filter(|&shard| !self.searched.is_done(shard))
    }

    /// The short name of the run: `cnd-` and the first 8 characters of its id (SPEC §8).
    pub fn name(&self) -> String {
        format!("cnd-{}", &self.run_id.to_string()[..8])
    }

    /// The worker environment of SPEC §4, without `CND_SHARD_INDEX` (see
    /// [`RunSpec::shard_env`]) and without the worker's name.
    pub fn worker_env(&self) -> Vec<(String, String)> {
        let puzzle = &self.puzzle;
        let mut env = vec![(worker_env::RUN_ID.to_string(), self.run_id.to_string())];
        // Text blocks travel as text (readable in `kubectl describe`), others as hex.
        match std::str::from_utf8(puzzle.block()) {
            Ok(text) if !text.contains('\0') => env.push((worker_env::BLOCK.into(), text.into())),
            _ => env.push((worker_env::BLOCK_HEX.into(), to_hex(puzzle.block()))),
        }
        env.extend([
            (
                worker_env::DIFFICULTY.to_string(),
                puzzle.difficulty().to_string(),
            ),
            (
                worker_env::NONCE_BITS.to_string(),
                puzzle.nonce_bits().to_string(),
            ),
            (
                worker_env::NONCE_FORMAT.to_string(),
                puzzle.nonce_format().to_string(),
            ),
            (worker_env::SHARD_COUNT.to_string(), self.shards.to_string()),
            (worker_env::QUEUE_URL.to_string(), self.queue_url.clone()),
            (
                worker_env::EXPIRES.to_string(),
                self.expires_at().to_string(),
            ),
            (
                worker_env::PROGRESS_SECS.to_string(),
                format!("{}", self.progress_every.as_secs_f64()),
            ),
        ]);
        if self.range != puzzle.space() {
            env.push((worker_env::RANGE.to_string(), self.range.to_string()));
        }
        env
    }

    /// How long the run may live, counted from its start: its timeout plus
    /// [`LIFETIME_SLACK`], else [`DEFAULT_LIFETIME`]. What it creates ends by
    /// itself after this (a Job's deadline), and `cleanup --all` leaves it alone before.
    pub fn lifetime(&self) -> Duration {
        self.timeout
            .map_or(DEFAULT_LIFETIME, |t| t.saturating_add(LIFETIME_SLACK))
    }

    /// The end of the run's lifetime counted from now, in Unix seconds
    /// (`CND_EXPIRES`; launchers call this as they start the workers).
    pub fn expires_at(&self) -> u64 {
        unix_now().saturating_add(self.lifetime().as_secs())
    }

    /// `CND_RUN_KEY` of shard `shard`'s worker: its own key
    /// ([`RunKey::for_shard`]), so its reports can speak for its shard only. For
    /// launchers that start one worker per shard (local processes, bare pods);
    /// on Kubernetes it comes from the run's Secret rather than a literal.
    pub fn shard_key_env(&self, shard: u64) -> (String, String) {
        (
            worker_env::RUN_KEY.to_string(),
            self.run_key.for_shard(shard).to_hex(),
        )
    }

    /// `CND_RUN_KEY` shared by every worker ([`RunKey::shared`]), for launchers
    /// where one template serves all shards (an Indexed Job). The master then
    /// takes such a worker's `exhausted` only once the launcher says that shard's
    /// worker succeeded ([`WorkerStatus::succeeded_shards`]).
    pub fn shared_key_env(&self) -> (String, String) {
        (
            worker_env::RUN_KEY.to_string(),
            self.run_key.shared().to_hex(),
        )
    }

    /// `CND_SHARD_INDEX` for workers started one per shard (not by an Indexed
    /// Job), and `CND_SEARCHED` with that shard's entry when it has one.
    pub fn shard_env(&self, shard: u64) -> Vec<(String, String)> {
        let mut env = vec![(worker_env::SHARD_INDEX.to_string(), shard.to_string())];
        let searched = self.searched.for_shard(shard);
        if !searched.is_empty() {
            env.push((worker_env::SEARCHED.to_string(), searched.to_env()));
        }
        env
    }

    /// The environment of a template that serves every shard (an Indexed
    /// Job's) beyond [`worker_env`](Self::worker_env): what earlier attempts
    /// searched, within [`MAX_SEARCHED_ENV`](crate::resume::MAX_SEARCHED_ENV).
    pub fn template_env(&self) -> Vec<(String, String)> {
        let searched = self.searched.to_env_within(crate::resume::MAX_SEARCHED_ENV);
        if searched.is_empty() {
            return Vec::new();
        }
        vec![(worker_env::SEARCHED.to_string(), searched)]
    }
}

/// Who sent a [`Message`], as far as its channel can tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Sender {
    /// Nothing says: the master ignores the message ([`Ignored::NoSender`](crate::master::Ignored::NoSender)).
    #[default]
    Unknown,
    /// The message says it comes from this shard's worker (SQS's
    /// [`SHARD_ATTRIBUTE`]): only a signature under that shard's key backs it.
    Claims(u64),
    /// The channel knows this shard's worker sent it (the stdout of the process
    /// started for the shard, the termination message of the shard's pod).
    Shard(u64),
}

impl Sender {
    /// The shard the message is from, known or claimed.
    pub fn shard(self) -> Option<u64> {
        match self {
            Sender::Unknown => None,
            Sender::Claims(shard) | Sender::Shard(shard) => Some(shard),
        }
    }
}

/// The SQS message attribute naming the shard a report is from (a decimal
/// string), so that the master picks that shard's key before it reads the body.
pub const SHARD_ATTRIBUTE: &str = "cnd-shard";

/// One message as a channel received it: untrusted until the master checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The body, exactly as sent (the signature covers these bytes).
    pub body: String,
    /// The `cnd-signature` that came with it, if any.
    pub signature: Option<String>,
    /// Who sent it, as far as the channel can tell.
    pub sender: Sender,
}

impl Message {
    /// A body with no signature (what a forger without the key can send).
    pub fn unsigned(body: impl Into<String>) -> Message {
        Message {
            body: body.into(),
            signature: None,
            sender: Sender::Unknown,
        }
    }

    /// A body signed with `key`, as a worker sends it.
    pub fn signed(key: &RunKey, body: impl Into<String>) -> Message {
        let body = body.into();
        Message {
            signature: Some(key.sign(&body)),
            body,
            sender: Sender::Unknown,
        }
    }

    /// The same message from `sender`.
    #[must_use]
    pub fn from_sender(mut self, sender: Sender) -> Message {
        self.sender = sender;
        self
    }
}

/// What one [`ResultChannel::receive`] brought.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// This run's messages, untrusted until the master checks them.
    pub messages: Vec<Message>,
    /// Messages the channel saw and left alone as not this run's (another
    /// run's or another producer's, on a shared queue), or dropped as expired.
    pub foreign: u64,
}

impl Received {
    /// These messages, nothing foreign.
    pub fn new(messages: Vec<Message>) -> Received {
        Received {
            messages,
            foreign: 0,
        }
    }

    /// The same, with `foreign` messages seen and left alone.
    #[must_use]
    pub fn with_foreign(mut self, foreign: u64) -> Received {
        self.foreign = foreign;
        self
    }

    /// Whether the channel saw nothing at all: what the master waits for when
    /// it drains the channel before it concludes.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.foreign == 0
    }
}

impl From<Vec<Message>> for Received {
    fn from(messages: Vec<Message>) -> Received {
        Received::new(messages)
    }
}

/// Why a line is not a report envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a report envelope ({0})")]
pub struct EnvelopeError(String);

/// The envelope's fields: the body as a string keeps its exact bytes, which the
/// signature covers.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    body: String,
    #[serde(
        rename = "cnd-signature",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    signature: Option<String>,
}

impl Message {
    /// The message as one line of JSON, `{"body":"…","cnd-signature":"…"}`: the
    /// form reports take where there are no message attributes (a worker's
    /// stdout, a pod's termination message; SPEC §5).
    pub fn to_envelope(&self) -> String {
        serde_json::to_string(&Envelope {
            body: self.body.clone(),
            signature: self.signature.clone(),
        })
        .expect("two strings always serialize")
    }

    /// Reads an envelope made by [`Message::to_envelope`]; the message is still
    /// untrusted (the master checks the signature).
    pub fn from_envelope(text: &str) -> Result<Message, EnvelopeError> {
        let text = text.trim();
        // serde would also take a struct as an array (`["…"]`): only an object is one.
        if !text.starts_with('{') {
            return Err(EnvelopeError("not a JSON object".into()));
        }
        let envelope: Envelope =
            serde_json::from_str(text).map_err(|e| EnvelopeError(e.to_string()))?;
        Ok(Message {
            body: envelope.body,
            signature: envelope.signature,
            sender: Sender::Unknown,
        })
    }
}

/// Where a worker sends its reports: what `CND_QUEUE_URL` names (SPEC §4, §5).
///
/// SQS is the original channel; the other two need no queue and no cloud
/// account. Channels without message attributes carry each report as an
/// envelope (see [`Message::to_envelope`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination {
    /// An SQS queue URL (`https://…`, `http://…`): one message per report, the
    /// signature in the `cnd-signature` message attribute.
    Sqs(String),
    /// `stdout:` — one envelope per line on the worker's standard output, read by
    /// the master that started it (`--launcher local`).
    Stdout,
    /// `termination-log:PATH` — only the final report, one envelope written to
    /// PATH, the container's `terminationMessagePath`; the master reads it from
    /// the pod's status (`status.containerStatuses[].state.terminated.message`).
    TerminationLog(String),
}

/// The address of [`Destination::Stdout`].
pub const STDOUT_ADDRESS: &str = "stdout:";
/// The scheme of [`Destination::TerminationLog`].
pub const TERMINATION_LOG_SCHEME: &str = "termination-log:";
/// Kubernetes' default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";
/// The most bytes Kubernetes keeps of a container's termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

impl Destination {
    /// Parses `CND_QUEUE_URL`; the error says which forms are accepted.
    pub fn parse(text: &str) -> Result<Destination, String> {
        let text = text.trim();
        if text == STDOUT_ADDRESS {
            return Ok(Destination::Stdout);
        }
        if let Some(path) = text.strip_prefix(TERMINATION_LOG_SCHEME) {
            return if path.starts_with('/') && !path.contains('\0') {
                Ok(Destination::TerminationLog(path.to_string()))
            } else {
                Err(format!(
                    "{text:?} needs an absolute path after {TERMINATION_LOG_SCHEME}"
                ))
            };
        }
        let host = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"));
        match host {
            Some(rest) if !rest.is_empty() && !rest.chars().any(char::is_whitespace) => {
                Ok(Destination::Sqs(text.to_string()))
            }
            _ => Err(format!(
                "{text:?} is not an SQS queue URL (https://…), {STDOUT_ADDRESS} or {TERMINATION_LOG_SCHEME}PATH"
            )),
        }
    }

    /// The address workers are given as `CND_QUEUE_URL`.
    pub fn address(&self) -> String {
        match self {
            Destination::Sqs(url) => url.clone(),
            Destination::Stdout => STDOUT_ADDRESS.to_string(),
            Destination::TerminationLog(path) => format!("{TERMINATION_LOG_SCHEME}{path}"),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address())
    }
}

/// A snapshot of a run's workers, as the launcher sees them. Built from
/// [`default`](Default::default) with the `with_…` methods (fields may be added):
///
/// ```
/// use cnd_core::WorkerStatus;
///
/// let status = WorkerStatus::default().with_running(3).with_succeeded(1).with_running_shards(vec![0, 2, 3]);
/// assert_eq!((status.running, status.succeeded, status.waiting()), (3, 1, 0));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// Not placed yet: on Kubernetes, pods waiting for a node (or a Job's
    /// indexes without a pod); locally, shards queued for a free worker slot.
    pub pending: u64,
    /// Placed but not running yet: on Kubernetes, pods on a node whose
    /// containers are being created (pulling the image, mounting volumes).
    pub starting: u64,
    /// Failed and waiting out the launcher's retry delay before a new attempt
    /// (a Job's back-off).
    pub retrying: u64,
    /// Running.
    pub running: u64,
    /// Ended successfully (their final report was sent).
    pub succeeded: u64,
    /// Ended in failure (after any retries the launcher makes).
    pub failed: u64,
    /// Set when workers cannot start at all (an image that cannot be pulled, a
    /// rejected spec, retries used up): the run cannot succeed and should end.
    pub fatal: Option<String>,
    /// The shards whose worker is running now, where the launcher can tell
    /// (`None`: it cannot). The master watches these for stalls.
    pub running_shards: Option<Vec<u64>>,
    /// Shards whose worker ended successfully, ascending, where the launcher can
    /// tell. An `exhausted` signed with the run's shared key counts only once
    /// its shard is here (see [`RunSpec::shared_key_env`]).
    pub succeeded_shards: Vec<u64>,
}

impl WorkerStatus {
    /// Workers that will run but do not yet: pending, starting or retrying.
    pub fn waiting(&self) -> u64 {
        self.pending + self.starting + self.retrying
    }

    /// The same snapshot with `pending` workers (not placed yet).
    #[must_use]
    pub fn with_pending(mut self, pending: u64) -> WorkerStatus {
        self.pending = pending;
        self
    }

    /// The same snapshot with `starting` workers (placed, not running yet).
    #[must_use]
    pub fn with_starting(mut self, starting: u64) -> WorkerStatus {
        self.starting = starting;
        self
    }

    /// The same snapshot with `retrying` workers (waiting out a retry delay).
    #[must_use]
    pub fn with_retrying(mut self, retrying: u64) -> WorkerStatus {
        self.retrying = retrying;
        self
    }

    /// The same snapshot with `failed` workers (after any retries).
    #[must_use]
    pub fn with_failed(mut self, failed: u64) -> WorkerStatus {
        self.failed = failed;
        self
    }

    /// The same snapshot saying the run cannot succeed, and why (one sentence
    /// naming what to fix: the master ends the run with it).
    #[must_use]
    pub fn with_fatal(mut self, why: impl Into<String>) -> WorkerStatus {
        self.fatal = Some(why.into());
        self
    }

    /// The same snapshot with `running` workers.
    #[must_use]
    pub fn with_running(mut self, running: u64) -> WorkerStatus {
        self.running = running;
        self
    }

    /// The same snapshot with `succeeded` workers.
    #[must_use]
    pub fn with_succeeded(mut self, succeeded: u64) -> WorkerStatus {
        self.succeeded = succeeded;
        self
    }

    /// The same snapshot naming the shards running now.
    #[must_use]
    pub fn with_running_shards(mut self, shards: Vec<u64>) -> WorkerStatus {
        self.running_shards = Some(shards);
        self
    }

    /// The same snapshot naming the shards whose worker succeeded.
    #[must_use]
    pub fn with_succeeded_shards(mut self, shards: Vec<u64>) -> WorkerStatus {
        self.succeeded_shards = shards;
        self
    }
}

/// The underlying error of a [`CallError`], shared so that the error stays `Clone`.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why a call to a [`Launcher`] or a [`ResultChannel`] failed.
///
/// The variant says what the master does, through [`is_transient`](CallError::is_transient):
/// retry within its budget ([`Unreachable`](CallError::Unreachable)) or give up at once
/// ([`Refused`](CallError::Refused), [`Other`](CallError::Other)). Its text is
/// one sentence of cnd's own; the error it stems from, when there is one, is
/// its [`source`](std::error::Error::source) and is not repeated in the text
/// (print the chain, e.g. with anyhow's `{:#}`, to see both).
///
/// ```
/// use cnd_core::LaunchError;
///
/// let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let error = LaunchError::unreachable("the API server", "").with_source(io);
/// assert_eq!(error.to_string(), "could not reach the API server");
/// assert!(std::error::Error::source(&error).is_some());
/// assert!(error.is_transient());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The service (an API server, a queue, the local machine) could not be
    /// reached or did not answer: worth retrying.
    #[error("could not reach {target}{}", colon(detail))]
    Unreachable {
        /// What was being reached ("the Kubernetes API server", "the queue URL", a binary's path).
        target: String,
        /// What cnd adds to the source, in words; may be empty.
        detail: String,
        /// The underlying error.
        #[source]
        source: Option<Cause>,
    },
    /// The request was refused (forbidden, conflicting, invalid, no such
    /// queue): retrying will not help.
    #[error("{action} was refused{}", colon(detail))]
    Refused {
        /// What was asked ("creating job cnd-1234abcd").
        action: String,
        /// Why the service said no, or what to do about it; may be empty.
        detail: String,
        /// The underlying error.
        #[source]
        source: Option<Cause>,
    },
    /// Anything else.
    #[error("{detail}")]
    Other {
        /// What went wrong, in one sentence.
        detail: String,
        /// The underlying error.
        #[source]
        source: Option<Cause>,
    },
}

/// `": detail"`, or nothing for an empty detail.
fn colon(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl CallError {
    /// [`CallError::Unreachable`] without a source (see [`CallError::with_source`]).
    pub fn unreachable(target: impl Into<String>, detail: impl Into<String>) -> CallError {
        CallError::Unreachable {
            target: target.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// [`CallError::Refused`] without a source.
    pub fn refused(action: impl Into<String>, detail: impl Into<String>) -> CallError {
        CallError::Refused {
            action: action.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// [`CallError::Other`] without a source.
    pub fn other(detail: impl Into<String>) -> CallError {
        CallError::Other {
            detail: detail.into(),
            source: None,
        }
    }

    /// The same error caused by `source`.
    pub fn with_source(self, source: impl std::error::Error + Send + Sync + 'static) -> CallError {
        self.with_cause(Some(Arc::new(source)))
    }

    /// The same error with `cause` as its source (or none).
    pub fn with_cause(mut self, cause: Option<Cause>) -> CallError {
        match &mut self {
            CallError::Unreachable { source, .. }
            | CallError::Refused { source, .. }
            | CallError::Other { source, .. } => *source = cause,
        }
        self
    }

    /// Whether trying again later may succeed ([`CallError::Unreachable`]):
    /// the master retries exactly these, within [`MasterOptions::retry_for`](crate::MasterOptions::retry_for).
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Unreachable { .. })
    }
}

/// `error` and its sources, outermost first, joined by `": "` (as anyhow's
/// `{:#}` prints them): for texts that must say everything in one string.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let part = source.to_string();
        // Some errors (the AWS SDK's, hyper's) already end with their source's text.
        if !part.is_empty() && !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

/// Why a launcher call failed.
pub type LaunchError = CallError;

/// Why a result channel call failed.
pub type ChannelError = CallError;

/// Starts workers for the shards of a run and stops them.
///
/// Contract:
/// - `launch` starts one worker per shard, at most `parallelism` at a time. It
///   returns once the workers are *requested* (not running). If it fails part way,
///   what it created so far is still removed by `stop`.
/// - `status` is cheap enough to call every second or two.
/// - `stop` removes every worker and object this launcher created (pods, jobs,
///   processes), waits for nothing else, and is safe to call more than once and
///   after a failed `launch`. The master calls it on every way out of a run.
/// - `restart` replaces one shard's worker (the master asks when that worker's
///   progress has stopped): it kills it and starts a new one for the shard as
///   it would after a crash. Launchers that cannot keep the default, which
///   refuses; the master then ends the run naming the shard.
/// - `retire_above` stops the workers of the shards above one (the master has
///   the smallest answer's shard and needs no higher one); the default keeps
///   them running.
/// - Launchers own no timeouts: the master decides when a run ends.
/// - Each worker gets its own shard's key ([`RunSpec::shard_key_env`]) where
///   the launcher can, else the shared one ([`RunSpec::shared_key_env`]) and
///   then names succeeded shards in [`WorkerStatus::succeeded_shards`].
///
/// # Cancel safety
///
/// The master bounds every call and may drop it mid-way. A dropped `launch`
/// may have created part of the workers: `stop` must still find and remove
/// them. A dropped `status` loses nothing. A dropped `stop` or `restart` may
/// have done part of its work; calling it again finishes it. So may a dropped
/// `retire_above`, which is only ever an economy: the master's answer never
/// depends on it.
#[async_trait]
pub trait Launcher: Send {
    /// Starts the workers of `spec`.
    async fn launch(&mut self, spec: &RunSpec) -> Result<(), LaunchError>;
    /// How the workers are doing.
    async fn status(&mut self) -> Result<WorkerStatus, LaunchError>;
    /// Kills shard `shard`'s worker and starts a new one for it.
    async fn restart(&mut self, shard: u64) -> Result<(), LaunchError> {
        Err(LaunchError::refused(
            format!("restarting the worker of shard {shard}"),
            "this launcher cannot replace one worker",
        ))
    }
    /// The master needs nothing more from the shards above `shard` (a run for
    /// the smallest golden nonce that has one in `shard`): stop their workers
    /// and start none of them. The default does nothing: they run to their end,
    /// which costs time but changes no answer.
    async fn retire_above(&mut self, shard: u64) -> Result<(), LaunchError> {
        let _ = shard;
        Ok(())
    }
    /// Stops and removes every worker started by this launcher.
    async fn stop(&mut self) -> Result<(), LaunchError>;
}

/// Carries worker reports to the master.
///
/// The master owns the channel's lifecycle: it calls `open` first, writes
/// `address` into the workers' environment itself (the [`RunSpec::queue_url`]
/// the launcher is given), and calls `close` at the end of every run, however
/// it ended — an `open` that failed or was cut short included.
///
/// Contract:
/// - `open` makes the channel ready for the run (creates its queue, or looks up
///   a named one); a channel that needs nothing does nothing (the default).
/// - `address` is what workers are given as `CND_QUEUE_URL`; it is read only
///   after `open` has succeeded.
/// - `receive` waits at most `wait` (it may return earlier, and empty) and
///   returns the messages that belong to this run, body and signature as
///   received, each with its [`Sender`] as far as the channel knows it.
///   Delivery is at least once: a message returned by `receive` is removed from
///   the channel (acknowledged) only after it was returned — at the next
///   `receive` or at `close` — so a call cut short loses nothing; the master
///   takes a report delivered twice only once. Messages of other runs on a
///   shared channel are left for their owners (and counted in
///   [`Received::foreign`]) in a way that does not bring them straight back
///   ahead of this run's. Messages are untrusted: the master checks
///   signatures, parses and verifies them.
/// - `reports_progress` says whether workers' `progress` reports travel on the
///   channel (the master watches for stalled workers only where they do).
/// - `close` acknowledges what was delivered, then removes what the channel
///   created for the run (a per-run queue) and nothing else, also what an
///   `open` cut short may have created; it is safe to call more than once.
///
/// # Cancel safety
///
/// The master bounds every call with its own time limit and drops a call that
/// takes too long. `receive` must be cancel safe: if its future is dropped, no
/// message is lost (a message taken from the service but not yet returned
/// comes back, from the channel's own buffer or from the service). A dropped
/// `open` or `close` may have done part of its work: `close` finishes it.
#[async_trait]
pub trait ResultChannel: Send {
    /// Makes the channel ready for `spec`'s run. Called once, before `address`.
    async fn open(&mut self, spec: &RunSpec) -> Result<(), ChannelError> {
        let _ = spec;
        Ok(())
    }
    /// Where workers send their reports.
    fn address(&self) -> &str;
    /// This run's messages that arrive within `wait`.
    async fn receive(&mut self, wait: Duration) -> Result<Received, ChannelError>;
    /// Whether workers' `progress` reports come through this channel.
    fn reports_progress(&self) -> bool {
        true
    }
    /// Acknowledges what was delivered and removes what the channel created
    /// for this run.
    async fn close(&mut self) -> Result<(), ChannelError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    #[test]
    fn envelopes_made_by_python_are_read() {
        // json.dumps({"body": body, "cnd-signature": hmac.new(bytes([7]*32),
        //   body.encode(), hashlib.sha256).hexdigest()}, separators=(",", ":"))
        let line = r#"{"body":"{\"v\":1,\"kind\":\"exhausted\"}","cnd-signature":"6fabe21f0cdc7ee45e79acf1db89eaca393f47bc814a08f7003fee1283c9b856"}"#;
        let message = Message::from_envelope(line).unwrap();
        assert_eq!(message.body, r#"{"v":1,"kind":"exhausted"}"#);
        assert_eq!(
            message.signature.as_deref(),
            Some("6fabe21f0cdc7ee45e79acf1db89eaca393f47bc814a08f7003fee1283c9b856")
        );
        let key = RunKey::from_bytes([7; 32]);
        assert!(key.verify(&message.body, message.signature.as_deref().unwrap()));
        // No signature at all is read as unsigned (the master drops it).
        let unsigned = Message::from_envelope(r#"{"body":"x"}"#).unwrap();
        assert_eq!(unsigned, Message::unsigned("x"));
    }

    #[test]
    fn anything_else_is_not_an_envelope() {
        for bad in [
            "",
            "{",
            r#"{"v":1,"kind":"found"}"#,
            r#"{"body":1}"#,
            r#"{"body":"x","cnd-signature":"ab","extra":1}"#,
            r#"["body"]"#,
        ] {
            assert!(Message::from_envelope(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations_print_as_they_parse() {
        for text in [
            "stdout:",
            "termination-log:/dev/termination-log",
            "https://sqs.eu-west-2.amazonaws.com/123456789012/cnd-x",
        ] {
            assert_eq!(Destination::parse(text).unwrap().address(), text);
        }
    }

    proptest! {
        #[test]
        fn an_envelope_keeps_the_exact_body_and_signature(body in ".{0,300}", signed in any::<bool>()) {
            let key = RunKey::from_bytes([7; 32]);
            let message = if signed { Message::signed(&key, body.clone()) } else { Message::unsigned(body.clone()) };
            let line = message.to_envelope();
            prop_assert!(!line.contains('\n'), "one line: {line}");
            prop_assert_eq!(Message::from_envelope(&line).unwrap(), message);
        }
    }

    #[test]
    fn error_chains_are_one_line_and_say_each_cause_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        // io::Error::other shows its inner error's text as its own.
        assert_eq!(error_chain(&std::io::Error::other(inner)), "refused");
        let call = CallError::unreachable("the queue", "sending")
            .with_source(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(
            error_chain(&call),
            "could not reach the queue: sending: timed out"
        );
    }
}
