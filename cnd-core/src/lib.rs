//! cnd-core: the nonce puzzle and its fast search, with no network and no async runtime.
//!
//! A [`Puzzle`] (block, difficulty D, nonce width and format) asks for a nonce
//! whose `SHA256(SHA256(block || nonce))` has at least D leading zero bits.
//! [`search`] scans a [`NonceRange`] on every thread with a hash [`Backend`]
//! chosen at run time and returns the smallest golden nonce ([`SearchOutcome`]);
//! [`verify`] checks one nonce independently of the backends. [`NonceRange::shard`]
//! splits a space for many workers, [`stats`] says how much work a run needs,
//! and the [`Launcher`] / [`ResultChannel`] traits are what the distributed
//! master ([`master::run_master`]) is written against; `cnd-cloud` implements
//! them for Kubernetes, SQS and local processes, [`memory`] for tests. A
//! worker reads its [`worker_config`] from the environment and sends [`Report`]s.
//!
//! ```
//! use cnd_core::{search, verify, Puzzle, SearchControl, SearchOptions, SearchOutcome};
//!
//! let puzzle = Puzzle::with_default_block(8).unwrap();
//! let outcome = search(&puzzle, puzzle.space(), &SearchOptions::all_cores(), &SearchControl::new()).unwrap();
//! let SearchOutcome::Found(found) = outcome else { panic!("2^32 nonces hold one at D = 8") };
//! assert!(found.leading_zeros >= 8);
//! assert!(verify(&puzzle, found.nonce).golden);
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod cancel;
pub mod distributed;
pub mod master;
pub mod memory;
pub mod puzzle;
pub mod report;
pub mod run_key;
pub mod search;
pub mod shard;
pub mod stats;
pub mod verify;
pub mod worker_config;

pub use backend::{Backend, BackendError, Job, Template};
pub use cancel::{CancelToken, ThreadTimer, Timer};
pub use distributed::{
    ChannelError, Destination, EnvelopeError, LaunchError, Launcher, Message, ResultChannel,
    RunSpec, RunSpecError, WorkerStatus,
};
pub use master::{
    run_master, Golden, Ignored, MasterError, MasterEvent, MasterOptions, MasterOutcome, Totals,
};
pub use puzzle::{NonceBits, NonceFormat, Puzzle, PuzzleError, DEFAULT_BLOCK};
pub use report::{Report, ReportError, ReportKind};
pub use run_key::{RunKey, RunKeyError, SIGNATURE_ATTRIBUTE};
pub use search::{search, Found, SearchControl, SearchError, SearchOptions, SearchOutcome};
pub use shard::{NonceRange, RangeError};
pub use verify::{verify, Verification};
pub use worker_config::{WorkerConfig, WorkerConfigError};
