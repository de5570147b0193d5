//! cnd-cloud: the [`Launcher`](cnd_core::Launcher) and [`ResultChannel`](cnd_core::ResultChannel)
//! of cnd-core for real infrastructure.
//!
//! - [`sqs`]: [`sqs::SqsChannel`] (the master's result channel: a per-run queue
//!   `cnd-<run id>` or a shared one), [`sqs::SqsReportSender`] (the worker's
//!   reports, retried with backoff), [`sqs::client`] and the queue cleanup helpers.
//!   With the `test-support` feature, `sqs::testing::MotoServer` runs a local SQS.
//! - [`kubernetes`]: [`kubernetes::KubeLauncher`] (one Indexed Job, or bare pods,
//!   watched with kube-runtime), the manifests for `--dry-run`, and `cleanup`.
//! - [`pod_status`]: [`pod_status::PodStatusChannel`], the result channel for
//!   clusters without SQS: each worker's final report, read from its pod's
//!   termination message.
//! - [`local`]: [`local::LocalLauncher`], `cnd-worker` processes on this machine,
//!   and [`local::StdoutChannel`], their reports read from their stdout.
//!
//! Each is behind a feature of the same name (`kubernetes` also brings
//! `pod_status`; all on by default): `default-features = false, features =
//! ["local"]` builds the local launcher without a Kubernetes or AWS crate.
//!
//! The master (`cnd_core::master::run_master`) drives one launcher and one channel;
//! `cnd-cli submit` picks which. The manifests need no cluster:
//!
//! ```
//! use cnd_cloud::kubernetes::{manifests, to_yaml, KubeOptions};
//! use cnd_core::{Puzzle, RunSpec};
//!
//! let puzzle = Puzzle::with_default_block(30).unwrap();
//! let spec = RunSpec::new(puzzle.clone(), puzzle.space(), 16, 4)
//!     .unwrap()
//!     .with_queue_url("https://sqs.eu-west-1.amazonaws.com/123456789012/cnd-results");
//! let all = manifests(&spec, &KubeOptions::default());
//! assert_eq!(all[0]["kind"], "Secret"); // the run's report key, first
//! let job = &all[1];
//! assert_eq!(job["kind"], "Job");
//! assert_eq!(job["spec"]["completionMode"], "Indexed");
//! assert_eq!(job["spec"]["completions"], 16);
//! assert!(to_yaml(&[job.clone()]).contains("cnd/run-id"));
//! ```

#![warn(missing_docs)]

#[cfg(feature = "kubernetes")]
pub mod kubernetes;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "kubernetes")]
pub mod pod_status;
#[cfg(feature = "sqs")]
pub mod sqs;

/// The [`Timer`](cnd_core::Timer) of a tokio runtime, for
/// [`run_master`](cnd_core::run_master) under tokio (cnd-core's, feature `tokio`).
pub use cnd_core::TokioTimer;
