//! [`KubeLauncher`]: the workers of a run as one Indexed Job (or bare pods) on
//! Kubernetes, watched with kube-runtime, and removed on every way out.
//!
//! Everything created carries the labels of SPEC §8, so [`cleanup`](fn@cleanup) finds what a
//! dead master left. Objects end by themselves too: the Job has an
//! `activeDeadlineSeconds` and a `ttlSecondsAfterFinished`, bare pods an
//! `activeDeadlineSeconds`, so a master killed with SIGKILL leaks nothing for long.
//!
//! The run's report key (`CND_RUN_KEY`, SPEC §5) travels in a per-run Secret
//! named like the Job, never as a literal in a pod spec. It is created first (so
//! no pod starts without it), then made a dependent of the Job (or of every
//! bare pod) through owner references, so the garbage collector removes it with
//! them even if the master dies; `stop` deletes it at once. The master only ever
//! creates, patches and deletes it: it needs no get/list/watch on Secrets.
//!
//! AWS credentials never travel in a manifest. Workers get them from the SDK's
//! chain in the pod (IRSA / EKS Pod Identity through `--service-account`, or the
//! node's instance profile); only non-secret settings such as `AWS_REGION` and
//! `AWS_ENDPOINT_URL_SQS` are passed on from the master ([`aws_passthrough_env`]).

mod cleanup;
mod launcher;
mod manifest;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use cnd_core::distributed::error_chain;
use cnd_core::{Cause, LaunchError};

pub use cleanup::{cleanup, Cleaned};
pub use launcher::KubeLauncher;
pub use manifest::{job_manifest, manifests, pod_manifest, secret_manifest, to_yaml};

/// Label every cnd object carries: `app.kubernetes.io/name=cnd`.
pub const LABEL_NAME: (&str, &str) = ("app.kubernetes.io/name", "cnd");
/// Label every cnd worker carries: `app.kubernetes.io/component=worker`.
pub const LABEL_COMPONENT: (&str, &str) = ("app.kubernetes.io/component", "worker");
/// The label that holds the run id.
pub const LABEL_RUN_ID: &str = "cnd/run-id";

/// The entry of the run's Secret that holds an Indexed Job's `CND_RUN_KEY`:
/// the run's shared key ([`RunKey::shared`](cnd_core::RunKey::shared)), since
/// one template serves every pod.
pub const SECRET_KEY: &str = "run-key";

/// The entry of the run's Secret that holds bare pod `shard`'s own key
/// ([`RunKey::for_shard`](cnd_core::RunKey::for_shard)): each pod reads only its
/// own, so its reports can speak for its shard only.
pub fn shard_secret_key(shard: u64) -> String {
    format!("shard-{shard}")
}

/// The most shards a run of bare pods may have: their keys share one Secret,
/// beside an owner reference per pod, and etcd keeps an object under 1.5 MiB
/// (an Indexed Job has no such limit).
pub const MAX_BARE_POD_SHARDS: u64 = 2_000;

/// The user the worker image runs as (distroless `nonroot`).
pub const WORKER_UID: i64 = 65532;

pub use cnd_core::distributed::{DEFAULT_LIFETIME, LIFETIME_SLACK};

/// The label that holds a bare pod's shard, so that `stop` can delete a run's
/// pods a bounded number at a time (a Job's pods carry the Job's own
/// `batch.kubernetes.io/job-completion-index`).
pub const LABEL_SHARD: &str = "cnd/shard";

/// Deletions in flight at once, in `stop` and in [`cleanup`](fn@cleanup): 10,000 bare pods
/// are 200 calls, 7 rounds of about a second where the API server keeps up.
const DELETES_IN_FLIGHT: usize = 32;

/// Pod creations in flight at once in a launch of bare pods: 1,000 pods are 32
/// rounds (a creation took some 12 ms on a real API server: 12 s one after
/// another). Beyond what an API server's priority and fairness admit, it answers
/// 429, which the client retries after the server's `Retry-After`.
const CREATES_IN_FLIGHT: usize = 32;

/// How the workers of a run are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workload {
    /// One Indexed Job: the cluster runs `shards` completions, `parallelism` at a
    /// time, retries a failed shard, and cleans up after itself.
    #[default]
    Job,
    /// One bare pod per shard, all at once, no retries.
    Pods,
}

/// How workers are run on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeOptions {
    /// Namespace of the Job and pods (empty: none in the manifests, for `--dry-run`).
    pub namespace: String,
    /// The worker image.
    pub image: String,
    /// `imagePullPolicy` (`IfNotPresent`, `Always`, `Never`).
    pub image_pull_policy: String,
    /// CPU of each worker (a Kubernetes quantity, "1", "500m"): request and limit.
    pub cpu: String,
    /// Memory of each worker ("128Mi"): request and limit.
    pub memory: String,
    /// The pods' service account (for IRSA / EKS Pod Identity to SQS).
    pub service_account: Option<String>,
    /// Job or bare pods.
    pub workload: Workload,
    /// Retries of one shard's pod before its index counts as failed (Job only:
    /// its `backoffLimitPerIndex`).
    pub shard_retries: u32,
    /// Seconds a finished Job is kept before the cluster deletes it.
    pub ttl_after_finished: i32,
    /// Non-secret environment passed to every worker (see [`aws_passthrough_env`]).
    pub extra_env: Vec<(String, String)>,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            namespace: "default".into(),
            image: "cnd-worker:latest".into(),
            image_pull_policy: "IfNotPresent".into(),
            cpu: "1".into(),
            memory: "128Mi".into(),
            service_account: None,
            workload: Workload::Job,
            shard_retries: cnd_core::distributed::DEFAULT_SHARD_RETRIES,
            ttl_after_finished: 300,
            extra_env: Vec::new(),
        }
    }
}

/// The master's `AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` and
/// `AWS_ENDPOINT_URL_SQS`, when set: where the queue is, never who may use it.
pub fn aws_passthrough_env() -> Vec<(String, String)> {
    [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SQS",
    ]
    .iter()
    .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
    .filter(|(_, v)| !v.is_empty())
    .collect()
}

/// The labels of SPEC §8 for a run.
pub fn labels(run_id: Uuid) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.0.to_string(), LABEL_NAME.1.to_string()),
        (LABEL_COMPONENT.0.to_string(), LABEL_COMPONENT.1.to_string()),
        (LABEL_RUN_ID.to_string(), run_id.to_string()),
    ])
}

/// The label selector of one run, or of every cnd run.
pub fn selector(run: Option<Uuid>) -> String {
    let mut selector = format!("{}={}", LABEL_NAME.0, LABEL_NAME.1);
    if let Some(run) = run {
        selector.push_str(&format!(",{LABEL_RUN_ID}={run}"));
    }
    selector
}

/// Turns a kube error into a [`LaunchError`] that says what to do about it; the
/// error itself (the API server's status, the connection's error) is its source.
pub fn launch_error(action: &str, namespace: &str, error: kube::Error) -> LaunchError {
    let code = match &error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    };
    let unreachable = matches!(error, kube::Error::HyperError(_) | kube::Error::Service(_));
    let cause = Some(kube_cause(error));
    match code {
        Some(403) => LaunchError::refused(
            action,
            format!(
                "forbidden: the user or service account running cnd needs RBAC permission \
                 for jobs, pods and secrets in namespace {namespace} (see docker/k8s/rbac-master.yaml)"
            ),
        ),
        Some(409) => LaunchError::refused(action, "it already exists"),
        Some(401) => LaunchError::refused(
            action,
            "not authenticated: check the kubeconfig's credentials",
        ),
        // The API server's own trouble (overloaded, etcd timeouts, a restart)
        // and throttling pass; the master retries these within its budget.
        Some(code) if code >= 500 || code == 429 => LaunchError::unreachable(
            "the Kubernetes API server",
            format!("{action} (HTTP {code})"),
        ),
        Some(code) => LaunchError::refused(action, format!("HTTP {code}")),
        None if unreachable => LaunchError::unreachable("the Kubernetes API server", action),
        None => LaunchError::other(format!("{action} failed")),
    }
    .with_cause(cause)
}

/// The error behind a kube error, as a [`LaunchError`]'s or [`ChannelError`]'s
/// source: kube's API, connection and service errors repeat their own source in
/// their text, so the inner error is taken, which `{:#}` then prints once.
///
/// [`ChannelError`]: cnd_core::ChannelError
pub fn kube_cause(error: kube::Error) -> Cause {
    match error {
        kube::Error::Api(status) => Arc::new(*status),
        kube::Error::HyperError(e) => Arc::new(e),
        kube::Error::Service(e) => Arc::from(e),
        other => Arc::new(other),
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// `Ok` when no step failed, else the one failure, or all of them in one error:
/// transient (worth another try) if any of them is.
fn all_or_each_failure(mut failed: Vec<LaunchError>) -> Result<(), LaunchError> {
    match failed.len() {
        0 => Ok(()),
        1 => Err(failed.remove(0)),
        _ => {
            let each = failed
                .iter()
                .map(|e| error_chain(e))
                .collect::<Vec<_>>()
                .join("; ");
            Err(if failed.iter().any(LaunchError::is_transient) {
                LaunchError::unreachable("the Kubernetes API server", each)
            } else {
                LaunchError::other(each)
            })
        }
    }
}

#[cfg(test)]
mod tests;
