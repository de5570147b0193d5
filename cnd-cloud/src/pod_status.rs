//! [`PodStatusChannel`]: reports read from the run's pods themselves, for
//! clusters without SQS (GKE, AKS, kind, k3s, on premises).
//!
//! A worker started with `CND_QUEUE_URL=termination-log:/dev/termination-log`
//! writes its final report, a signed envelope (SPEC §5), to its container's
//! termination-message file and exits; the kubelet copies the file (at most
//! 4096 bytes) into `status.containerStatuses[].state.terminated.message`. This
//! channel watches the run's pods (by label, the permission the master already
//! has) and hands each termination message to the master once, as received:
//! the master checks the signature and the nonce like any report. Workers need
//! no credentials and no API access. There are no `progress` reports on this
//! channel: a termination message holds one report.
//!
//! Each message comes with its sender, the pod's shard (an Indexed Job pod's
//! completion index, which the Job controller sets, or a bare pod's
//! [`LABEL_SHARD`]): a pod cannot write another pod's status, so its report can
//! only speak for its own shard.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use uuid::Uuid;

use cnd_core::distributed::{DEFAULT_TERMINATION_LOG, TERMINATION_LOG_SCHEME};
use cnd_core::{ChannelError, Message, Received, ResultChannel, Sender};

use crate::kubernetes::{kube_cause, selector, LABEL_SHARD};

type PodEvents = Pin<Box<dyn Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> + Send>>;

/// The run's reports, read from its pods' termination messages.
pub struct PodStatusChannel {
    address: String,
    namespace: String,
    events: PodEvents,
    /// Terminations already taken: a pod is seen again on every change
    /// and on every re-list, its message must count once.
    delivered: HashSet<String>,
    /// Messages taken from the watch but not yet returned: a `receive` dropped
    /// mid-way leaves them here for the next one.
    inbox: Vec<Message>,
}

impl std::fmt::Debug for PodStatusChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodStatusChannel")
            .field("namespace", &self.namespace)
            .field("delivered", &self.delivered.len())
            .finish_non_exhaustive()
    }
}

impl PodStatusChannel {
    /// Watches the pods of `run_id` in `namespace` (starting on the first `receive`).
    pub fn new(client: Client, namespace: &str, run_id: Uuid) -> PodStatusChannel {
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let config = watcher::Config::default().labels(&selector(Some(run_id)));
        PodStatusChannel {
            address: format!("{TERMINATION_LOG_SCHEME}{DEFAULT_TERMINATION_LOG}"),
            namespace: namespace.to_string(),
            events: watcher(api, config).default_backoff().boxed(),
            delivered: HashSet::new(),
            inbox: Vec::new(),
        }
    }

    /// Takes the new termination messages of `pod` into the inbox.
    fn collect(&mut self, pod: &Pod) {
        for (key, message) in terminations(pod) {
            if self.delivered.insert(key) {
                self.inbox.push(message);
            }
        }
    }
}

/// Each termination message in `pod`'s status, with a key that names that one
/// termination (pod, container, restart, container id, start and finish times, and a hash of the message): a retried index runs in a new pod, so
/// its report has a new key. A message that is not an envelope
/// (garbage, or one the kubelet cut at 4096 bytes) comes as an unsigned message,
/// which the master ignores and counts.
pub fn terminations(pod: &Pod) -> Vec<(String, Message)> {
    let sender = sender_of(pod);
    let pod_id = pod
        .metadata
        .uid
        .clone()
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    pod.status
        .iter()
        .flat_map(|status| status.container_statuses.iter().flatten())
        .filter_map(|container| {
            let terminated = container.state.as_ref()?.terminated.as_ref()?;
            let text = terminated.message.as_deref()?.trim();
            if text.is_empty() {
                return None;
            }
            let key = termination_key(&pod_id, container, terminated, text);
            let message = Message::from_envelope(text).unwrap_or_else(|e| {
                tracing::debug!(pod = ?pod.metadata.name, "a termination message is {e}");
                Message::unsigned(text)
            });
            Some((key, message.from_sender(sender)))
        })
        .collect()
}

/// The annotation the Job controller gives each pod of an Indexed Job.
const JOB_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";

/// Whose report a pod's termination message is: the pod's shard, from what
/// the control plane (not the pod) wrote into its metadata.
fn sender_of(pod: &Pod) -> Sender {
    let index = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(JOB_INDEX_ANNOTATION))
        .or_else(|| pod.metadata.labels.as_ref()?.get(LABEL_SHARD));
    match index.and_then(|i| i.parse::<u64>().ok()) {
        Some(shard) => Sender::Shard(shard),
        None => Sender::Unknown,
    }
}

/// The key of one termination: pod, container, restart count, container id,
/// when it started and finished, and a hash of its message. A pod seen again
/// (every status change, every re-list) shows the same termination with the
/// same key; two different terminations differ in at least one part, even where
/// the runtime reports no container id or the kubelet no times.
fn termination_key(
    pod_id: &str,
    container: &ContainerStatus,
    terminated: &ContainerStateTerminated,
    message: &str,
) -> String {
    let time = |t: &Option<Time>| t.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    let mut hasher = std::hash::DefaultHasher::new();
    message.hash(&mut hasher);
    format!(
        "{pod_id}/{}/{}/{}/{}/{}/{:016x}",
        container.name,
        container.restart_count,
        terminated.container_id.as_deref().unwrap_or_default(),
        time(&terminated.started_at),
        time(&terminated.finished_at),
        hasher.finish()
    )
}

/// What a watch failure means to the master: forbidden or unauthenticated is a
/// refusal (retrying will not help), anything else may pass.
fn channel_error(namespace: &str, error: watcher::Error) -> ChannelError {
    let api_status = match &error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(status.code),
        watcher::Error::WatchError(status) => Some(status.code),
        _ => None,
    };
    // The source is the error under watcher's wrapper (whose text repeats it).
    let cause = match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => kube_cause(e),
        watcher::Error::WatchError(status) => Arc::new(*status),
        other => Arc::new(other),
    };
    match api_status {
        Some(403) | Some(401) => ChannelError::refused(
            format!("watching the run's pods in namespace {namespace}"),
            "the master needs get/list/watch on pods (see docker/k8s/rbac-master.yaml)",
        ),
        _ => ChannelError::unreachable("the Kubernetes API server", "watching the run's pods"),
    }
    .with_cause(Some(cause))
}

#[async_trait]
impl ResultChannel for PodStatusChannel {
    fn address(&self) -> &str {
        &self.address
    }

    /// Cancel safe: messages taken from the watch wait in the channel's inbox
    /// until a `receive` returns them.
    async fn receive(&mut self, wait: Duration) -> Result<Received, ChannelError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Wait for the first message; after one, take only what is ready.
            let next = if self.inbox.is_empty() {
                match tokio::time::timeout_at(deadline, self.events.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            } else {
                match self.events.next().now_or_never() {
                    Some(next) => next,
                    None => break,
                }
            };
            match next {
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                    self.collect(&pod)
                }
                // A pod deleted after it ended still carries its message.
                Some(Ok(watcher::Event::Delete(pod))) => self.collect(&pod),
                Some(Ok(watcher::Event::Init | watcher::Event::InitDone)) => {}
                // The watcher backs off and starts again on the next poll; the
                // master decides how long failures may last.
                Some(Err(error)) if self.inbox.is_empty() => {
                    return Err(channel_error(&self.namespace, error))
                }
                Some(Err(error)) => {
                    tracing::debug!("watching the run's pods: {error}");
                    break;
                }
                None => {
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
            }
        }
        Ok(Received::new(std::mem::take(&mut self.inbox)))
    }

    /// No: a pod's termination message holds its final report only.
    fn reports_progress(&self) -> bool {
        false
    }

    async fn close(&mut self) -> Result<(), ChannelError> {
        // Nothing was created for the channel: the pods are the launcher's.
        Ok(())
    }
}
