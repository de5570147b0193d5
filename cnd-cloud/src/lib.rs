//! cnd-cloud: the [`Launcher`](cnd_core::Launcher) and
//! [`ResultChannel`](cnd_core::ResultChannel) of cnd-core for Kubernetes
//! ([`kubernetes::KubeLauncher`]), local worker processes ([`local::LocalLauncher`]) and SQS.

#![warn(missing_docs)]

pub mod kubernetes;
pub mod local;
