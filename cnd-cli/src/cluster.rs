//! Where and how workers run, shared by `submit`, `sweep` and `cleanup`: the
//! launcher and workload kinds, and the clients (the Kubernetes API, the local
//! worker binary). The parsers of the Kubernetes and SQS flags are in
//! [`crate::args`].

use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;
use cnd_cloud::kubernetes::KubeOptions;

use crate::exit::usage;

/// Where the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LauncherKind {
    /// Pods on the Kubernetes cluster of the kubeconfig (or in-cluster config).
    Kubernetes,
    /// `cnd-worker` processes on this machine ($CND_WORKER_BIN, else next to cnd-cli).
    Local,
}
/// The most workers `--launcher local` runs at once (they share this machine).
pub const MAX_LOCAL_WORKERS: u64 = 256;

/// How the workers are created on Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    /// One Indexed Job: shards may exceed pods, failed shards are retried.
    Job,
    /// One bare pod per shard (shards = pods), no retries.
    Pods,
}
/// Cores of a CPU quantity.
pub fn cpu_cores(s: &str) -> Option<f64> {
    match s.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|m| m / 1000.0),
        None => s.parse::<f64>().ok(),
    }
}

/// The context of a kube client error when there is no configuration at all
/// (`cleanup` skips Kubernetes then, instead of failing).
#[derive(Debug, thiserror::Error)]
#[error("no Kubernetes configuration found (KUBECONFIG, ~/.kube/config or in-cluster)")]
pub struct NoKubeConfig;

/// A Kubernetes client from the kubeconfig (or the in-cluster config), and where
/// it points, for messages: `https://10.0.0.1:6443 (from ~/.kube/config)`. Fills
/// in the namespace from the configuration when --namespace was not given (empty).
pub async fn kube_client(options: &mut KubeOptions) -> anyhow::Result<(kube::Client, String)> {
    let config = kube::Config::infer().await.context(NoKubeConfig)?;
    if options.namespace.is_empty() {
        options.namespace = config.default_namespace.clone();
    }
    let server = format!("{} (from {})", config.cluster_url, kubeconfig_source());
    let client = kube::Client::try_from(config).context("setting up the Kubernetes client")?;
    Ok((client, server))
}

/// Where `Config::infer` took the configuration from, in its own order.
fn kubeconfig_source() -> String {
    match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(path) => format!("KUBECONFIG={}", path.to_string_lossy()),
        None if std::env::var_os("HOME")
            .is_some_and(|home| std::path::Path::new(&home).join(".kube/config").is_file()) =>
        {
            "~/.kube/config".to_string()
        }
        None => "the in-cluster service account".to_string(),
    }
}

/// The `cnd-worker` binary: $CND_WORKER_BIN, else next to this executable.
pub fn worker_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CND_WORKER_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe().context("finding this executable")?;
    let bin = me.with_file_name("cnd-worker");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(usage(format!(
            "--launcher local needs the cnd-worker binary: none at {}; set CND_WORKER_BIN",
            bin.display()
        )))
    }
}
