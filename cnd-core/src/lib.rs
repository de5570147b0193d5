//! cnd-core: the nonce puzzle and its fast search, with no network and no async runtime.
//!
//! **The puzzle.** A [`Puzzle`] (block, difficulty D, [`NonceBits`],
//! [`NonceFormat`]) asks for a nonce whose `SHA256(SHA256(block || nonce))` has at
//! least D leading zero bits (SPEC §1). [`verify`] checks one nonce from scratch;
//! [`stats`] says how much work a puzzle needs and how likely a space is to hold an
//! answer.
//!
//! **Searching here.** [`search`] scans a [`NonceRange`] on every thread with a
//! hash [`Backend`] (`auto`: the fastest on this CPU, [`cpu_model`] says which;
//! [`Backend::from_env`] reads `CND_BACKEND` for programs that let the user
//! choose: the library itself never reads the environment) and returns the
//! smallest golden nonce as a [`SearchOutcome`].
//! [`SearchOptions`] set threads, backend, deadline and a progress callback; a
//! [`SearchControl`] cancels a running search and counts its hashes; a
//! [`Searcher`] keeps its threads for many searches.
//!
//! **Searching on many workers.** [`NonceRange::shard`] splits a space (SPEC §2).
//! [`run_master`] drives a distributed run described by a [`RunSpec`]: it opens
//! a [`ResultChannel`], starts workers through a [`Launcher`] (told the
//! channel's address), reads their signed [`Report`]s (a [`Message`] each,
//! signed with their shard's key of the run's [`RunKey`]; a worker makes its
//! final one with [`Report::from_outcome`]), verifies every claimed nonce
//! itself, and always stops the workers and closes the channel; it says what
//! happens as [`MasterEvent`]s and ends in a [`MasterOutcome`] or a
//! [`MasterError`]. It needs only a [`Timer`] from the caller's runtime and
//! stops on a [`CancelToken`]. `cnd-cloud` implements the two traits for
//! Kubernetes, SQS and local processes; [`memory`] has in-process ones. A worker
//! reads its [`WorkerConfig`] from the environment (SPEC §4), whose names
//! [`worker_env`] holds for readers and writers alike.
//!
//! Implementing the traits needs no other dependency: [`async_trait`](macro@async_trait)
//! and [`Uuid`] are re-exported here. See `examples/search.rs` and
//! `examples/distributed.rs` for both halves end to end.
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

mod backend;
pub mod cancel;
pub mod distributed;
#[cfg(feature = "hazmat")]
#[doc(hidden)] // Listed nowhere: not API (see its own doc).
pub mod hazmat;
pub mod journal;
pub mod master;
pub mod memory;
pub mod puzzle;
pub mod report;
pub mod resume;
pub mod run_key;
mod search;
pub mod shard;
pub mod stats;
mod verify;
pub mod worker_config;
pub mod worker_env;

/// The attribute macro for implementing [`Launcher`] and [`ResultChannel`]
/// (re-exported from the `async-trait` crate).
pub use async_trait::async_trait;
/// Run ids (re-exported from the `uuid` crate).
pub use uuid::Uuid;

pub use backend::{cpu_model, Backend, BackendError};
#[cfg(feature = "tokio")]
pub use cancel::TokioTimer;
pub use cancel::{CancelToken, Sleep, ThreadTimer, Timer};
pub use distributed::{
    CallError, Cause, ChannelError, Destination, EnvelopeError, LaunchError, Launcher, Message,
    Received, ResultChannel, RunSpec, RunSpecError, Sender, WorkerStatus,
};
pub use master::{
    run_master, Answer, Golden, Ignored, MasterError, MasterEvent, MasterOptions, MasterOutcome,
    Progress, Totals,
};
pub use puzzle::{NonceBits, NonceFormat, Puzzle, PuzzleError, DEFAULT_BLOCK};
pub use report::{Report, ReportError, ReportKind};
pub use resume::{Searched, SearchedError};
pub use run_key::{RunKey, RunKeyError, SIGNATURE_ATTRIBUTE};
pub use search::{
    available_threads, search, Found, SearchControl, SearchError, SearchOptions, SearchOutcome,
    Searcher, CHUNK,
};
pub use shard::{NonceRange, RangeError};
pub use verify::{double_sha256, leading_zero_bits, verify, Verification};
pub use worker_config::{WorkerConfig, WorkerConfigError};
