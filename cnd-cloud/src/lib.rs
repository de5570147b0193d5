//! cnd-cloud: the [`Launcher`](cnd_core::Launcher) and [`ResultChannel`](cnd_core::ResultChannel)
//! of cnd-core for real infrastructure.
//!
//! - [`sqs`]: [`sqs::SqsChannel`] (the master's result channel: a per-run queue
//!   `cnd-<run id>` or a shared one), [`sqs::SqsReportSender`] (the worker's
//!   reports, retried with backoff), [`sqs::client`] and the queue cleanup helpers.
//!   With the `test-support` feature, `sqs::testing::MotoServer` runs a local SQS.
//!
//! Kubernetes and local-process launchers live in their own modules.

#![warn(missing_docs)]

pub mod sqs;
