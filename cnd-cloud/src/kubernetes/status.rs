//! The workers' status from their pods and Job: phases, fatal waiting reasons, lost shards.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use cnd_core::{RunSpec, WorkerStatus};

use super::LABEL_SHARD;

/// How long a container may wait for a reason that can pass (see [`waiting`])
/// before the run counts it as one that will not.
const LASTING: Duration = Duration::from_secs(60);

/// What a container waiting for `reason` means for the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Waiting {
    /// It passes by itself, or ends in a failed pod that the Job retries.
    Passes,
    /// It never passes by itself: the run fails at once; the text says what to do.
    Fatal(String),
    /// It may pass (a busy runtime), but not once it has lasted [`LASTING`].
    FatalIfLasting(String),
}

/// What a worker container waiting for `reason` (with `image`) means for the run.
pub(super) fn waiting(reason: &str, image: &str) -> Waiting {
    match reason {
        // The image is not on the node and the pod may not pull it: the kubelet
        // retries, but only a person loading the image changes anything.
        "ErrImageNeverPull" => Waiting::Fatal(format!(
            "the node does not have image {image} and --image-pull-policy Never forbids \
             pulling it: load it into the cluster's nodes (kind: `kind load docker-image \
             {image}`; k3s: `docker save {image} | sudo k3s ctr images import -`), or drop \
             --image-pull-policy Never to pull it from a registry"
        )),
        // The name itself cannot be parsed: no retry can fix it.
        "InvalidImageName" => Waiting::Fatal(format!(
            "{image} is not an image reference: pass --image as [REGISTRY/]NAME[:TAG], in lower case"
        )),
        // A pull that failed may pass (a registry's hiccup), but the kubelet's
        // back-off grows to 5 minutes between tries, and the usual causes (a
        // wrong name or tag, a private registry, no route) need a person.
        "ErrImagePull" | "ImagePullBackOff" => Waiting::Fatal(format!(
            "check that {image} exists and that the nodes can reach its registry and may \
             pull from it; an image built here must be loaded into the nodes and run with \
             --image-pull-policy Never (docker/README.md)"
        )),
        // The runtime has the image but cannot read it; retries read it again.
        "ImageInspectError" => Waiting::Fatal(format!(
            "the node's container runtime cannot read image {image}: remove it from the node \
             (`crictl rmi {image}`) and load or pull it again"
        )),
        // The kubelet cannot build the container from the spec: here, the run's
        // Secret or its key is missing (it is created before any pod, so it was
        // deleted), or the image runs as root while the pod requires a non-root user.
        "CreateContainerConfigError" => Waiting::Fatal(
            "check that the run's Secret still exists (it is deleted only with the run) and that \
             the image runs as a non-root user (docker/build.sh's image runs as 65532)"
                .into(),
        ),
        // The runtime failed to create or start the container. Often passing (a
        // name still reserved, a runtime too busy to answer in time), but some
        // causes last (a missing entrypoint on CRI-O, a bad mount). With
        // restartPolicy Never a container that fails to start usually ends
        // terminated (StartError) and its pod Failed, which the Job retries.
        "CreateContainerError" | "RunContainerError" => Waiting::FatalIfLasting(format!(
            "the node's container runtime could not run image {image} for {} s: check the \
             image's entrypoint and the node's runtime (`kubectl describe pod`)",
            LASTING.as_secs()
        )),
        // Not with restartPolicy Never: a crash ends the pod, whose index the Job
        // retries in a new pod (backoffLimitPerIndex); once its retries are used
        // up the Job fails, which is fatal with the shard and the exit code. One
        // crash (a node lost, a transient OOM) must not end the run.
        "CrashLoopBackOff" => Waiting::Passes,
        // ContainerCreating (pulling, mounting), PodInitializing: on their way.
        _ => Waiting::Passes,
    }
}

/// Counts pods by phase, and finds a reason why they will never run: a
/// container waiting for a reason that never passes, or for one that may pass
/// but has lasted [`LASTING`] (`since` remembers when each began, as of `now`).
/// A pod waiting for a node (`Unschedulable`) is pending, never fatal: a cluster
/// autoscaler may add one.
pub(super) fn pod_status(
    pods: &[Arc<Pod>],
    since: &mut HashMap<String, (String, Instant)>,
    now: Instant,
) -> WorkerStatus {
    let mut status = WorkerStatus::default();
    let mut still = HashMap::new();
    for pod in pods {
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        match phase {
            "Running" => status.running += 1,
            "Succeeded" => status.succeeded += 1,
            "Failed" => status.failed += 1,
            // On a node already: its containers are being created, not waiting for capacity.
            _ if scheduled(pod) => status.starting += 1,
            _ => status.pending += 1,
        }
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let containers = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten());
        for container in containers {
            let Some(wait) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let reason = wait.reason.as_deref().unwrap_or_default();
            let fix = match waiting(reason, &container.image) {
                Waiting::Passes => continue,
                Waiting::Fatal(fix) => fix,
                Waiting::FatalIfLasting(fix) => {
                    let id = pod.metadata.uid.as_deref().unwrap_or(name);
                    let key = format!("{id}/{}", container.name);
                    let began = match since.get(&key) {
                        Some((was, began)) if was == reason => *began,
                        _ => now,
                    };
                    still.insert(key, (reason.to_string(), began));
                    if now.saturating_duration_since(began) < LASTING {
                        continue;
                    }
                    fix
                }
            };
            status.fatal.get_or_insert_with(|| {
                format!(
                    "pod {name} cannot start: {reason}: {}; {fix}",
                    wait.message.as_deref().unwrap_or("no message")
                )
            });
        }
    }
    // Forget the containers that stopped waiting (or whose pods are gone).
    *since = still;
    status
}

/// Cuts a watched pod down to what [`pod_status`], [`shard_of`] and the
/// failure notes read: an Indexed Job's finished pods stay until the Job goes,
/// and 10,000 whole pods (managed fields, the full spec) kept the master above
/// 300 MiB. What is left: name, uid, the shard's label or annotation, the node,
/// and the status without addresses, times and termination messages.
pub(super) fn slim_pod(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.generate_name = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key == JOB_INDEX);
    }
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|key, _| key == LABEL_SHARD);
    }
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: spec.node_name,
            ..Default::default()
        });
    }
    if let Some(status) = pod.status.as_mut() {
        (
            status.host_ip,
            status.host_ips,
            status.pod_ip,
            status.pod_ips,
        ) = (None, None, None, None);
        status.start_time = None;
        for container in status.container_statuses.iter_mut().flatten() {
            (container.image_id, container.last_state) = (String::new(), None);
            if let Some(ended) = container.state.as_mut().and_then(|s| s.terminated.as_mut()) {
                ended.message = None;
            }
        }
    }
}

/// Whether the scheduler has put the pod on a node.
fn scheduled(pod: &Pod) -> bool {
    let on_node = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    on_node
        || pod
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
}

/// Folds the Job's own view into pod counts: indexes waiting for a pod are
/// pending (or retrying, after a failed pod), and a Failed Job is fatal.
pub(super) fn apply_job_status(
    status: &mut WorkerStatus,
    job: &Job,
    run: &RunSpec,
    pods: &[Arc<Pod>],
) {
    let shards = run.shards;
    let Some(job_status) = &job.status else {
        status.pending = status.pending.max(shards);
        return;
    };
    let succeeded = job_status.succeeded.unwrap_or(0).max(0) as u64;
    let failed_indexes = job_status
        .failed_indexes
        .as_deref()
        .map(count_indexes)
        .unwrap_or(0);
    status.succeeded = status.succeeded.max(succeeded);
    let waiting = shards.saturating_sub(
        succeeded + failed_indexes + status.running + status.pending + status.starting,
    );
    // Indexes without a pod whose last pod failed wait out the Job's back-off;
    // the Job counts failed pods, not indexes, so this is an upper bound.
    let failed_pods = job_status.failed.unwrap_or(0).max(0) as u64;
    let retrying = waiting.min(failed_pods.saturating_sub(failed_indexes));
    let finished = job_status
        .conditions
        .iter()
        .flatten()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
    if !finished {
        status.retrying += retrying;
        status.pending += waiting - retrying;
    }
    if let Some(failed) = job_status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True")
    {
        status.fatal.get_or_insert_with(|| {
            let lost = job_status
                .failed_indexes
                .as_deref()
                .map(|list| lost_shards(list, run, pods))
                .unwrap_or_default();
            format!(
                "job {} failed: {}: {}{lost}",
                job.metadata.name.as_deref().unwrap_or("?"),
                failed.reason.as_deref().unwrap_or("Failed"),
                failed.message.as_deref().unwrap_or("no message")
            )
        });
    }
}

/// The annotation (and, from Kubernetes 1.28, label) that holds a Job pod's
/// completion index (its shard).
pub(super) const JOB_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// A pod's shard, from what the control plane wrote: an Indexed Job pod's
/// completion index, or a bare pod's [`LABEL_SHARD`].
pub(super) fn shard_of(pod: &Pod) -> Option<u64> {
    let meta = &pod.metadata;
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(JOB_INDEX))
        .or_else(|| meta.labels.as_ref()?.get(LABEL_SHARD))
        .and_then(|index| index.parse().ok())
}

/// "; shard 1 (nonces A..B) ended with exit 137 (OOMKilled)" for the first few
/// failed indexes of `list`, saying that their nonces went unsearched.
fn lost_shards(list: &str, run: &RunSpec, pods: &[Arc<Pod>]) -> String {
    let ends = pod_failures(pods);
    let named: Vec<String> = each_index(list)
        .take(8)
        .map(|shard| {
            let nonces = run
                .range
                .shard(shard, run.shards)
                .map(|r| format!(" (nonces {r})"))
                .unwrap_or_default();
            let end = ends
                .get(&shard)
                .map(|e| format!(" ended with {e}"))
                .unwrap_or_default();
            format!("shard {shard}{nonces}{end}")
        })
        .collect();
    let more = count_indexes(list).saturating_sub(named.len() as u64);
    match (named.len(), more) {
        (0, _) => String::new(),
        (1, 0) => format!("; {}: not searched", named[0]),
        (_, 0) => format!("; {}: not searched", named.join(", ")),
        _ => format!("; {} and {more} more: not searched", named.join(", ")),
    }
}

/// How each failed pod of a Job ended, by completion index: `exit 137 (OOMKilled)`.
fn pod_failures(pods: &[Arc<Pod>]) -> BTreeMap<u64, String> {
    pods.iter()
        .filter_map(|pod| {
            let index = pod.metadata.annotations.as_ref()?.get(JOB_INDEX)?;
            let index = index.parse::<u64>().ok()?;
            let ended = pod
                .status
                .as_ref()?
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref()?.terminated.as_ref())?;
            (ended.exit_code != 0).then(|| {
                let reason = ended.reason.as_deref().map(|r| format!(" ({r})"));
                (
                    index,
                    format!("exit {}{}", ended.exit_code, reason.unwrap_or_default()),
                )
            })
        })
        .collect()
}

/// The indexes of a Job's index list ("1,3-5,9"), in order, lazily.
pub(super) fn each_index(list: &str) -> impl Iterator<Item = u64> + '_ {
    index_ranges(list).flatten()
}

/// The ranges of a Job's index list ("1,3-5,9"); parts that are not an index or
/// a range of them are skipped.
fn index_ranges(list: &str) -> impl Iterator<Item = std::ops::RangeInclusive<u64>> + '_ {
    list.split(',').filter_map(|part| {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
        (b >= a).then_some(a..=b)
    })
}

/// Counts the indexes of a Job's index list ("1,3-5,9"), without listing them.
pub(super) fn count_indexes(list: &str) -> u64 {
    index_ranges(list).map(|r| r.end() - r.start() + 1).sum()
}
