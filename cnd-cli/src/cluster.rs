//! Where and how workers run, shared by `submit`, `sweep` and `cleanup`: the
//! launcher and workload kinds, the validators of Kubernetes and SQS flags, and
//! the clients (the Kubernetes API, the local worker binary).

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
/// A Kubernetes CPU quantity: `2`, `1.5`, `500m`.
pub fn parse_cpu(s: &str) -> Result<String, String> {
    let number = s.strip_suffix('m').unwrap_or(s);
    let ok = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.matches('.').count() <= 1
        && !number.starts_with('.')
        && cpu_cores(s).is_some_and(|c| c > 0.0);
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not a CPU quantity like 1, 2, 1.5 or 500m"))
}

/// Cores of a CPU quantity.
pub fn cpu_cores(s: &str) -> Option<f64> {
    match s.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|m| m / 1000.0),
        None => s.parse::<f64>().ok(),
    }
}

/// A Kubernetes memory quantity: `128Mi`, `1Gi`, `500M`, `1000000`.
pub fn parse_memory(s: &str) -> Result<String, String> {
    const SUFFIXES: &[&str] = &[
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", "",
    ];
    let ok = SUFFIXES.iter().any(|suffix| {
        s.strip_suffix(suffix).is_some_and(|n| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
                && n.parse::<u64>().is_ok_and(|v| v > 0)
        })
    });
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not a memory quantity like 128Mi, 1Gi or 500M"))
}

/// A DNS-1123 label (a namespace): lower-case letters, digits and '-', at most 63.
pub fn parse_dns_label(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!("{s:?} is not a valid namespace: lower-case letters, digits and '-', at most 63 characters")
    })
}

/// A DNS-1123 subdomain (a service account name).
pub fn parse_dns_subdomain(s: &str) -> Result<String, String> {
    let ok =
        !s.is_empty() && s.len() <= 253 && s.split('.').all(|label| parse_dns_label(label).is_ok());
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!(
            "{s:?} is not a valid service account name: lower-case letters, digits, '-' and '.'"
        )
    })
}

/// An image reference: anything without spaces or control characters.
pub fn parse_image(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not an image reference like registry/cnd-worker:1"))
}

/// An SQS queue URL: `https://…` (or `http://…` for a local server).
pub fn parse_queue_url(s: &str) -> Result<String, String> {
    let ok = (s.starts_with("https://") || s.starts_with("http://")) && s.len() > "https://".len();
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!(
            "{s:?} is not a queue URL like https://sqs.eu-west-2.amazonaws.com/123456789012/cnd"
        )
    })
}

/// An SQS queue name: letters, digits, '-' and '_', at most 80.
pub fn parse_queue_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!(
            "{s:?} is not an SQS queue name: letters, digits, '-' and '_', at most 80 characters"
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_checked() {
        for ok in ["1", "2", "1.5", "500m", "250m"] {
            assert!(parse_cpu(ok).is_ok(), "{ok}");
        }
        for bad in ["", "0", "m", "1.2.3", "-1", "1 cpu", "0m", ".5"] {
            assert!(parse_cpu(bad).is_err(), "{bad}");
        }
        assert_eq!(cpu_cores("500m"), Some(0.5));
        for ok in ["128Mi", "1Gi", "500M", "1000000"] {
            assert!(parse_memory(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Mi", "12 Mi", "1.5Gi", "128mb", "0"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(parse_dns_label("cnd-runs").is_ok());
        assert!(parse_dns_label("Cnd").is_err());
        assert!(parse_dns_label("-x").is_err());
        assert!(parse_dns_subdomain("cnd.worker").is_ok());
        assert!(parse_queue_name("cnd-results").is_ok());
        assert!(parse_queue_name("a/b").is_err());
        assert!(parse_queue_url("ftp://x").is_err());
    }
}
