//! [`cleanup`]: what runs left behind (Jobs, pods, Secrets) deleted, sparing runs in progress.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams};
use kube::Client;
use uuid::Uuid;

use cnd_core::LaunchError;

use super::{
    all_or_each_failure, is_not_found, launch_error, selector, DELETES_IN_FLIGHT, LABEL_RUN_ID,
};

/// What [`cleanup`] deleted, and what it kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Names of the Jobs deleted.
    pub jobs: Vec<String>,
    /// Names of the pods deleted (not those of a Job deleted, which the
    /// garbage collector removes with it).
    pub pods: Vec<String>,
    /// Names of the run key Secrets deleted.
    pub secrets: Vec<String>,
    /// Runs left alone because they are still within their lifetime, with the
    /// seconds they have left.
    pub kept: Vec<(Uuid, u64)>,
}

/// The run of a cnd object, from its label.
fn run_of(metadata: &ObjectMeta) -> Option<Uuid> {
    metadata
        .labels
        .as_ref()?
        .get(LABEL_RUN_ID)
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// Seconds an object has left of its `activeDeadlineSeconds`, counted from its
/// creation; `None` once it has ended (or has no deadline to go by).
fn seconds_left(
    metadata: &ObjectMeta,
    deadline: Option<i64>,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<u64> {
    let created = metadata.creation_timestamp.as_ref()?.0;
    let ends = created.as_second().checked_add(deadline?)?;
    u64::try_from(ends - now.as_second())
        .ok()
        .filter(|&s| s > 0)
}

/// Deletes the Jobs (with their pods), pods and Secrets of one run, or of every
/// cnd run, found by their labels in `namespace`. A Job is deleted with
/// Background propagation and its pods are left to the garbage collector (they
/// are not in [`Cleaned::pods`]); other pods are deleted one call each,
/// `DELETES_IN_FLIGHT` (32) at a time.
///
/// With `keep_live`, a run still within its lifetime (a Job or pod that has not
/// finished and whose `activeDeadlineSeconds` has not passed) is left alone and
/// listed in [`Cleaned::kept`]: `cleanup --all` must not break a run in progress.
pub async fn cleanup(
    client: &Client,
    namespace: &str,
    run: Option<Uuid>,
    keep_live: bool,
) -> Result<Cleaned, LaunchError> {
    let lp = ListParams::default().labels(&selector(run));
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed_jobs = jobs
        .list(&lp)
        .await
        .map_err(|e| launch_error("listing cnd jobs", namespace, e))?;
    let listed_pods = pods
        .list(&lp)
        .await
        .map_err(|e| launch_error("listing cnd pods", namespace, e))?;
    let live = if keep_live {
        live_runs(
            &listed_jobs.items,
            &listed_pods.items,
            k8s_openapi::jiff::Timestamp::now(),
        )
    } else {
        BTreeMap::new()
    };
    let is_live = |metadata: &ObjectMeta| run_of(metadata).is_some_and(|r| live.contains_key(&r));
    let mut cleaned = Cleaned::default();
    let mut failed = Vec::new();
    let unlive_jobs = listed_jobs.iter().filter(|j| !is_live(&j.metadata));
    let jobs_gone = delete_jobs(&jobs, namespace, unlive_jobs, &mut cleaned, &mut failed).await;
    // A Job just deleted (or gone already) hands its pods to the garbage
    // collector, as `stop` does; the others (bare pods, an orphan's) are
    // deleted here, several at a time.
    let of_gone_job = |pod: &Pod| {
        pod.metadata.owner_references.iter().flatten().any(|owner| {
            owner.kind == "Job" && owner.controller == Some(true) && jobs_gone.contains(&owner.uid)
        })
    };
    let unowned_pods = listed_pods
        .iter()
        .filter(|p| !is_live(&p.metadata) && !of_gone_job(p));
    delete_pods(&pods, namespace, unowned_pods, &mut cleaned, &mut failed).await;
    // Secrets by label in one call (the master may not list or read them),
    // sparing the live runs' keys.
    let mut secret_selector = selector(run);
    if !live.is_empty() {
        let ids: Vec<String> = live.keys().map(Uuid::to_string).collect();
        secret_selector.push_str(&format!(",{LABEL_RUN_ID} notin ({})", ids.join(",")));
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match secrets
        .delete_collection(
            &DeleteParams::background(),
            &ListParams::default().labels(&secret_selector),
        )
        .await
    {
        Ok(deleted) => cleaned.secrets.extend(
            deleted
                .left()
                .into_iter()
                .flat_map(|list| list.items)
                .filter_map(|s| s.metadata.name),
        ),
        Err(e) if is_not_found(&e) => {}
        Err(e) => failed.push(launch_error("deleting cnd secrets", namespace, e)),
    }
    cleaned.kept = live.into_iter().collect();
    // Every step was tried; the error names each one that failed.
    all_or_each_failure(failed).map(|()| cleaned)
}

/// Runs still in progress, with the seconds left of each: an unfinished Job,
/// or a running or pending pod, within its deadline.
fn live_runs(jobs: &[Job], pods: &[Pod], now: k8s_openapi::jiff::Timestamp) -> BTreeMap<Uuid, u64> {
    let mut live: BTreeMap<Uuid, u64> = BTreeMap::new();
    for job in jobs {
        let finished = job
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
        let deadline = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        if let (false, Some(run), Some(left)) = (
            finished,
            run_of(&job.metadata),
            seconds_left(&job.metadata, deadline, now),
        ) {
            live.insert(run, left);
        }
    }
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        if let (Some("Pending" | "Running") | None, Some(run), Some(left)) = (
            phase,
            run_of(&pod.metadata),
            seconds_left(&pod.metadata, deadline, now),
        ) {
            let kept = live.entry(run).or_default();
            *kept = (*kept).max(left);
        }
    }
    live
}

/// Deletes `listed` Jobs (Background propagation); returns the uids of those
/// now gone, deleted here or before.
async fn delete_jobs<'a>(
    jobs: &Api<Job>,
    namespace: &str,
    listed: impl Iterator<Item = &'a Job>,
    cleaned: &mut Cleaned,
    failed: &mut Vec<LaunchError>,
) -> BTreeSet<String> {
    let mut gone = BTreeSet::new();
    for job in listed {
        let name = job.metadata.name.clone().unwrap_or_default();
        let uid = job.metadata.uid.clone();
        match jobs.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {
                cleaned.jobs.push(name);
                gone.extend(uid);
            }
            Err(e) if is_not_found(&e) => gone.extend(uid),
            Err(e) => failed.push(launch_error(&format!("deleting job {name}"), namespace, e)),
        }
    }
    gone
}

/// Deletes `listed` pods, [`DELETES_IN_FLIGHT`] at a time.
async fn delete_pods<'a>(
    pods: &Api<Pod>,
    namespace: &str,
    listed: impl Iterator<Item = &'a Pod>,
    cleaned: &mut Cleaned,
    failed: &mut Vec<LaunchError>,
) {
    let mut deletes = futures::stream::iter(listed)
        .map(|pod| {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let pods = pods.clone();
            async move {
                let deleted = pods.delete(&name, &DeleteParams::background()).await;
                (name, deleted)
            }
        })
        .buffered(DELETES_IN_FLIGHT);
    while let Some((name, deleted)) = deletes.next().await {
        match deleted {
            Ok(_) => cleaned.pods.push(name),
            Err(e) if is_not_found(&e) => {}
            Err(e) => failed.push(launch_error(&format!("deleting pod {name}"), namespace, e)),
        }
    }
}
