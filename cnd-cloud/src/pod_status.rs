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

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use uuid::Uuid;

use cnd_core::distributed::{DEFAULT_TERMINATION_LOG, TERMINATION_LOG_SCHEME};
use cnd_core::{ChannelError, Message, ResultChannel};

use crate::kubernetes::{kube_cause, selector};

type PodEvents = Pin<Box<dyn Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> + Send>>;

/// The run's reports, read from its pods' termination messages.
pub struct PodStatusChannel {
    address: String,
    namespace: String,
    events: PodEvents,
    /// Terminations already delivered: a pod is seen again on every change
    /// and on every re-list, its message must count once.
    delivered: HashSet<String>,
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
        }
    }

    /// Takes the new termination messages of `pod`.
    fn collect(&mut self, pod: &Pod, into: &mut Vec<Message>) {
        for (key, message) in terminations(pod) {
            if self.delivered.insert(key) {
                into.push(message);
            }
        }
    }
}

/// Each termination message in `pod`'s status, with a key that names that one
/// termination (pod, container, restart, container id): a retried index runs in
/// a new pod, so its report has a new key. A message that is not an envelope
/// (garbage, or one the kubelet cut at 4096 bytes) comes as an unsigned message,
/// which the master ignores and counts.
pub fn terminations(pod: &Pod) -> Vec<(String, Message)> {
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
            let key = format!(
                "{pod_id}/{}/{}/{}",
                container.name,
                container.restart_count,
                terminated.container_id.as_deref().unwrap_or_default()
            );
            let message = Message::from_envelope(text).unwrap_or_else(|e| {
                tracing::debug!(pod = ?pod.metadata.name, "a termination message is {e}");
                Message::unsigned(text)
            });
            Some((key, message))
        })
        .collect()
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

    async fn receive(&mut self, wait: Duration) -> Result<Vec<Message>, ChannelError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut messages = Vec::new();
        loop {
            // Wait for the first message; after one, take only what is ready.
            let next = if messages.is_empty() {
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
                    self.collect(&pod, &mut messages)
                }
                // A pod deleted after it ended still carries its message.
                Some(Ok(watcher::Event::Delete(pod))) => self.collect(&pod, &mut messages),
                Some(Ok(watcher::Event::Init | watcher::Event::InitDone)) => {}
                // The watcher backs off and starts again on the next poll; the
                // master decides how long failures may last.
                Some(Err(error)) if messages.is_empty() => {
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
        Ok(messages)
    }

    async fn close(&mut self) -> Result<(), ChannelError> {
        // Nothing was created for the channel: the pods are the launcher's.
        Ok(())
    }
}
