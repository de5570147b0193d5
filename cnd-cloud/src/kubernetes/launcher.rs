//! [`KubeLauncher`]: a run's Secret and workers created, their pods watched, and all removed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::task::JoinHandle;
use uuid::Uuid;

use cnd_core::{LaunchError, Launcher, RunSpec, WorkerStatus};

use super::manifest::{job_manifest, pod_manifest, secret_manifest};
use super::status::{apply_job_status, each_index, pod_status, shard_of, slim_pod, JOB_INDEX};
use super::{
    all_or_each_failure, is_not_found, launch_error, selector, KubeOptions, Workload,
    CREATES_IN_FLIGHT, DELETES_IN_FLIGHT, LABEL_SHARD, MAX_BARE_POD_SHARDS,
};

/// Shards per call when `stop` deletes a run's bare pods. An API server deletes
/// the pods of one `deletecollection` one after another, at some 20 ms each
/// (1,000 pods took over 20 s, the master's limit for a whole `stop`): 50 pods
/// are about a second.
const PODS_PER_DELETE: u64 = 50;

/// The most shards [`KubeLauncher::status`] reads from a Job's `completedIndexes`.
const MAX_SHARDS_LISTED: usize = cnd_core::distributed::MAX_SHARDS as usize;

/// Runs a run's workers on Kubernetes.
pub struct KubeLauncher {
    client: Client,
    options: KubeOptions,
    /// Set once `launch` starts, so `stop` knows what to remove even after a half-done launch.
    run: Option<RunSpec>,
    /// Whether the Job named after the run may be ours to delete: not when its
    /// creation was refused because another object already has the name.
    owns_job: bool,
    /// The same for the run's Secret.
    owns_secret: bool,
    /// Whether any pod of the run may exist: not when the API server refused
    /// the first creation outright, so that `stop` after a refused launch
    /// makes no calls (and reports no failure to clean up what never was).
    may_have_pods: bool,
    /// Bare pods: how many shards' pods were asked for (the first ones).
    pods_asked: u64,
    /// Bare pods: the groups of [`PODS_PER_DELETE`] shards whose pods `stop`
    /// has deleted, so that a `stop` cut short goes on where it was.
    pods_deleted: BTreeSet<u64>,
    /// Containers waiting for a reason that may pass, and since when they do.
    waiting_since: HashMap<String, (String, Instant)>,
    pods: Option<Store<Pod>>,
    watcher: Option<JoinHandle<()>>,
    watch_error: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for KubeLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLauncher")
            .field("options", &self.options)
            .field("run", &self.run.as_ref().map(|r| r.run_id))
            .finish_non_exhaustive()
    }
}

impl KubeLauncher {
    /// A launcher that creates workers with `client` (from `Config::infer()`: the
    /// kubeconfig, or the pod's service account in-cluster).
    pub fn new(client: Client, options: KubeOptions) -> Self {
        KubeLauncher {
            client,
            options,
            run: None,
            owns_job: false,
            owns_secret: false,
            may_have_pods: false,
            pods_asked: 0,
            pods_deleted: BTreeSet::new(),
            waiting_since: HashMap::new(),
            pods: None,
            watcher: None,
            watch_error: Arc::default(),
        }
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.options.namespace)
    }

    fn pod_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.options.namespace)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.options.namespace)
    }

    /// Creates the run's Secret, before any pod that reads it.
    async fn create_secret(&mut self, spec: &RunSpec) -> Result<(), LaunchError> {
        let ns = self.options.namespace.clone();
        let action = format!("creating secret {} in namespace {ns}", spec.name());
        self.owns_secret = true;
        let secret = secret_manifest(spec, &self.options);
        if let Err(e) = self.secrets().create(&PostParams::default(), &secret).await {
            self.owns_secret = may_have_created(&e);
            return Err(launch_error(&action, &ns, e));
        }
        tracing::debug!(secret = %spec.name(), "secret created");
        Ok(())
    }

    /// Makes the Secret a dependent of `owners`, so the garbage collector
    /// deletes it once they are all gone, even if the master is gone too.
    async fn hand_secret_to(
        &self,
        spec: &RunSpec,
        owners: Vec<OwnerReference>,
    ) -> Result<(), LaunchError> {
        let ns = &self.options.namespace;
        let patch = serde_json::json!({ "metadata": { "ownerReferences": owners } });
        self.secrets()
            .patch(&spec.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| {
                launch_error(&format!("giving secret {} its owners", spec.name()), ns, e)
            })?;
        Ok(())
    }

    /// Deletes the run's bare pods, [`PODS_PER_DELETE`] shards a call (by the
    /// [`LABEL_SHARD`] label, so a pod whose creation got no answer goes too),
    /// [`DELETES_IN_FLIGHT`] calls at a time. Groups already deleted are not
    /// asked again: a `stop` cut short by the master's time limit, tried again,
    /// goes on where it was.
    async fn delete_bare_pods(&mut self, run: &RunSpec) -> Result<(), LaunchError> {
        let groups: Vec<u64> = (0..self.pods_asked.div_ceil(PODS_PER_DELETE))
            .filter(|group| !self.pods_deleted.contains(group))
            .collect();
        let (api, asked) = (self.pod_api(), self.pods_asked);
        let mut calls = futures::stream::iter(groups)
            .map(|group| {
                let first = group * PODS_PER_DELETE;
                let lp = pods_of_shards(run, first..asked.min(first + PODS_PER_DELETE));
                let api = api.clone();
                async move {
                    let dp = DeleteParams::background();
                    (group, api.delete_collection(&dp, &lp).await)
                }
            })
            .buffer_unordered(DELETES_IN_FLIGHT);
        let mut failures = Vec::new();
        while let Some((group, deleted)) = calls.next().await {
            match deleted {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    failures.push((group, e));
                    continue;
                }
            }
            self.pods_deleted.insert(group);
        }
        let Some((group, error)) = failures.pop() else {
            tracing::info!(run = %run.name(), pods = asked, "pods deleted");
            return Ok(());
        };
        let first = group * PODS_PER_DELETE;
        let last = asked.min(first + PODS_PER_DELETE) - 1;
        let others = match failures.len() {
            0 => String::new(),
            n => format!(" and of {n} more groups of {PODS_PER_DELETE}"),
        };
        Err(launch_error(
            &format!(
                "deleting the pods of {} (shards {first}-{last}{others})",
                run.name()
            ),
            &self.options.namespace,
            error,
        ))
    }

    /// Creates one pod per shard, [`CREATES_IN_FLIGHT`] at a time, and returns
    /// their owner references. The first failure ends it (the calls in flight
    /// are dropped); `stop` removes whatever was made, as after a dropped call.
    async fn create_bare_pods(
        &mut self,
        spec: &RunSpec,
    ) -> Result<Vec<OwnerReference>, LaunchError> {
        // Before the first call: a launch dropped mid-call (the master's limit)
        // may have made any of them, and `stop` must look for every one.
        self.pods_asked = spec.shards;
        self.may_have_pods = true;
        let (api, options, ns) = (self.pod_api(), &self.options, &self.options.namespace);
        let issued = AtomicU64::new(0);
        let mut calls = futures::stream::iter(spec.shards_to_search())
            .map(|shard| {
                issued.fetch_add(1, Ordering::Relaxed);
                let (api, pod) = (api.clone(), pod_manifest(spec, options, shard));
                async move { (shard, api.create(&PostParams::default(), &pod).await) }
            })
            .buffer_unordered(CREATES_IN_FLIGHT);
        let mut owners = Vec::with_capacity(spec.shards as usize);
        // Whether a pod may exist: one was made, or a failed call may have made it.
        let mut may_exist = false;
        let (mut failure, mut answered) = (None, 0u64);
        while let Some((shard, created)) = calls.next().await {
            answered += 1;
            match created {
                Ok(created) => {
                    may_exist = true;
                    tracing::debug!(pod = ?created.metadata.name, shard, "pod created");
                    owners.push(owner_reference("v1", "Pod", &created.metadata)?);
                }
                Err(e) => {
                    may_exist |= may_have_created(&e);
                    failure = Some((shard, e));
                    break;
                }
            }
        }
        drop(calls);
        if let Some((shard, error)) = failure {
            // The calls dropped in flight may have made theirs.
            self.may_have_pods = may_exist || issued.load(Ordering::Relaxed) > answered;
            let action = format!("creating the pod of shard {shard} in namespace {ns}");
            return Err(launch_error(&action, ns, error));
        }
        tracing::info!(pods = spec.shards, namespace = %ns, "pods created");
        Ok(owners)
    }

    /// Deletes the bare pods of shards `first..` (a run for the smallest answer
    /// needs none of them), [`PODS_PER_DELETE`] a call.
    async fn delete_pods_from(&mut self, run: &RunSpec, first: u64) -> Result<(), LaunchError> {
        let api = self.pod_api();
        let groups = (first..self.pods_asked).step_by(PODS_PER_DELETE as usize);
        let asked = self.pods_asked;
        let mut calls = futures::stream::iter(groups)
            .map(|from| {
                let lp = pods_of_shards(run, from..asked.min(from + PODS_PER_DELETE));
                let api = api.clone();
                async move {
                    api.delete_collection(&DeleteParams::background(), &lp)
                        .await
                }
            })
            .buffer_unordered(DELETES_IN_FLIGHT);
        while let Some(deleted) = calls.next().await {
            match deleted {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    let action = format!("deleting the pods of {} above shard {first}", run.name());
                    return Err(launch_error(&action, &self.options.namespace, e));
                }
            }
        }
        Ok(())
    }

    /// Watches this run's pods into a store that `status` reads.
    fn start_watch(&mut self, run_id: Uuid) {
        let (reader, writer) = reflector::store();
        let mut config = watcher::Config::default().labels(&selector(Some(run_id)));
        if self.options.workload == Workload::Job {
            // A Job's finished pods stay until the Job goes (10,000 of them held
            // the master above 100 MiB); its status counts them, and
            // `completedIndexes` names them. A pod that succeeds leaves the
            // watch as deleted.
            config = config.fields("status.phase!=Succeeded");
        }
        let pods = watcher(self.pod_api(), config).modify(slim_pod);
        let stream = reflector::reflector(writer, pods).default_backoff();
        let errors = Arc::clone(&self.watch_error);
        self.watcher = Some(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let mut last = errors.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    Ok(_) => *last = None,
                    Err(e) => {
                        tracing::debug!("watching pods: {e}");
                        *last = Some(e.to_string());
                    }
                }
            }
        }));
        self.pods = Some(reader);
    }
}

#[async_trait]
impl Launcher for KubeLauncher {
    async fn launch(&mut self, spec: &RunSpec) -> Result<(), LaunchError> {
        if self.options.workload == Workload::Pods && spec.shards > MAX_BARE_POD_SHARDS {
            return Err(LaunchError::refused(
                format!("starting {} bare pods", spec.shards),
                format!("bare pods take at most {MAX_BARE_POD_SHARDS} shards (their keys share one Secret); use --workload job"),
            ));
        }
        self.run = Some(spec.clone());
        let ns = self.options.namespace.clone();
        self.create_secret(spec).await?;
        let owners = match self.options.workload {
            Workload::Job => {
                let job = job_manifest(spec, &self.options);
                let action = format!("creating job {} in namespace {ns}", spec.name());
                // Ours unless refused as a duplicate: a timeout may still have created it.
                self.owns_job = true;
                let created = match self.jobs().create(&PostParams::default(), &job).await {
                    Ok(created) => created,
                    Err(e) => {
                        self.owns_job = may_have_created(&e);
                        self.may_have_pods = self.owns_job;
                        return Err(launch_error(&action, &ns, e));
                    }
                };
                self.may_have_pods = true;
                tracing::info!(job = %spec.name(), namespace = %ns, "job created");
                vec![owner_reference("batch/v1", "Job", &created.metadata)?]
            }
            Workload::Pods => self.create_bare_pods(spec).await?,
        };
        self.hand_secret_to(spec, owners).await?;
        self.start_watch(spec.run_id);
        Ok(())
    }

    async fn status(&mut self) -> Result<WorkerStatus, LaunchError> {
        let (Some(run), Some(pods)) = (&self.run, &self.pods) else {
            return Ok(WorkerStatus::default());
        };
        if pods.wait_until_ready().now_or_never().is_none() {
            // Not listed yet: a persistent watch error (RBAC on pods) is worth saying.
            if let Some(error) = self
                .watch_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                // Retried within the master's budget: a watch also fails while
                // the API server restarts, and kube's watcher starts it again.
                return Err(LaunchError::unreachable(
                    "the Kubernetes API server",
                    format!("watching the pods of {} failed: {error}", run.name()),
                ));
            }
        }
        let pods = pods.state();
        let mut status = pod_status(&pods, &mut self.waiting_since, Instant::now());
        // Which shards run and which succeeded, for the master's stall watch
        // and its confirmation of shared-key reports.
        let (mut running, mut succeeded) = (Vec::new(), Vec::new());
        for pod in &pods {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            match (phase, shard_of(pod)) {
                (Some("Running"), Some(shard)) => running.push(shard),
                (Some("Succeeded"), Some(shard)) => succeeded.push(shard),
                _ => {}
            }
        }
        running.sort_unstable();
        running.dedup();
        if self.options.workload == Workload::Job {
            let name = run.name();
            let job = self.jobs().get_opt(&name).await.map_err(|e| {
                launch_error(&format!("reading job {name}"), &self.options.namespace, e)
            })?;
            match job {
                Some(job) => {
                    // The Job controller's own list: it outlives pods deleted by its TTL.
                    if let Some(list) = job
                        .status
                        .as_ref()
                        .and_then(|s| s.completed_indexes.as_deref())
                    {
                        succeeded.extend(each_index(list).take(MAX_SHARDS_LISTED));
                    }
                    apply_job_status(&mut status, &job, run, &pods)
                }
                None => {
                    status
                        .fatal
                        .get_or_insert_with(|| format!("job {name} was deleted"));
                }
            }
        }
        succeeded.sort_unstable();
        succeeded.dedup();
        Ok(status
            .with_running_shards(running)
            .with_succeeded_shards(succeeded))
    }

    /// An Indexed Job's stalled worker: deletes the shard's pod, and the Job
    /// controller starts another for its index (a failed try, within
    /// `--backoff-limit-per-index`). Bare pods are not replaced (the run's
    /// Secret is owned by the pods it started): the default refusal, and the
    /// master ends the run naming the shard.
    async fn restart(&mut self, shard: u64) -> Result<(), LaunchError> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        if self.options.workload != Workload::Job {
            return Err(LaunchError::refused(
                format!("replacing the pod of shard {shard}"),
                "bare pods are not replaced; use --workload job",
            ));
        }
        let lp = ListParams::default().labels(&format!(
            "{},{JOB_INDEX}={shard}",
            selector(Some(run.run_id))
        ));
        let action = format!(
            "deleting the stalled pod of shard {shard} of {}",
            run.name()
        );
        match self
            .pod_api()
            .delete_collection(&DeleteParams::background(), &lp)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(launch_error(&action, &self.options.namespace, e)),
        }
    }

    /// Bare pods: deletes the pods of the shards above `shard`. An Indexed
    /// Job's indexes cannot be told apart this way (the Job controller starts
    /// a deleted index again): the default, they run on.
    async fn retire_above(&mut self, shard: u64) -> Result<(), LaunchError> {
        let Some(run) = self.run.clone() else {
            return Ok(());
        };
        if self.options.workload != Workload::Pods || !self.may_have_pods {
            return Ok(());
        }
        self.delete_pods_from(&run, shard.saturating_add(1)).await
    }

    async fn stop(&mut self) -> Result<(), LaunchError> {
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
        }
        let Some(run) = self.run.clone() else {
            return Ok(());
        };
        let ns = self.options.namespace.clone();
        // Every step is tried whatever the others did; the error names all that failed.
        let mut failed = Vec::new();
        if self.options.workload == Workload::Job && self.owns_job {
            // Background propagation: a plain DELETE of a Job orphans its pods.
            // One call whatever the number of pods: the garbage collector
            // deletes them after it, and no new one starts once the Job is gone.
            match self
                .jobs()
                .delete(&run.name(), &DeleteParams::background())
                .await
            {
                Ok(_) => tracing::info!(job = %run.name(), "job deleted"),
                Err(e) if is_not_found(&e) => {}
                Err(e) => failed.push(launch_error(
                    &format!("deleting job {}", run.name()),
                    &ns,
                    e,
                )),
            }
        }
        if self.options.workload == Workload::Pods && self.may_have_pods {
            if let Err(e) = self.delete_bare_pods(&run).await {
                failed.push(e);
            }
        }
        if self.owns_secret {
            match self
                .secrets()
                .delete(&run.name(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => failed.push(launch_error(
                    &format!("deleting secret {}", run.name()),
                    &ns,
                    e,
                )),
            }
        }
        all_or_each_failure(failed)
    }
}

/// The run's bare pods of `shards`, by label: one bounded call's worth.
fn pods_of_shards(run: &RunSpec, shards: std::ops::Range<u64>) -> ListParams {
    let list: Vec<String> = shards.map(|shard| shard.to_string()).collect();
    ListParams::default().labels(&format!(
        "{},{LABEL_SHARD} in ({})",
        selector(Some(run.run_id)),
        list.join(",")
    ))
}

/// Whether a create call that failed with `error` may still have created the
/// object: yes unless the API server refused it outright (a 4xx answer: forbidden,
/// invalid, or the name already taken by another object) or was never reached (a
/// refused connection). A 5xx or a connection broken mid-call may come after the
/// object was stored.
fn may_have_created(error: &kube::Error) -> bool {
    let refused = matches!(error, kube::Error::Api(status) if (400..500).contains(&status.code));
    !refused && !never_connected(error)
}

/// Whether the request never reached a server: its connection was refused.
fn never_connected(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        let io = e.downcast_ref::<std::io::Error>();
        if io.is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// An owner reference to a just-created object (its uid comes from the API server).
fn owner_reference(
    api_version: &str,
    kind: &str,
    metadata: &ObjectMeta,
) -> Result<OwnerReference, LaunchError> {
    match (&metadata.name, &metadata.uid) {
        (Some(name), Some(uid)) => Ok(OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.clone(),
            uid: uid.clone(),
            ..OwnerReference::default()
        }),
        _ => Err(LaunchError::other(format!(
            "the API server returned a {kind} without a name or uid"
        ))),
    }
}

impl Drop for KubeLauncher {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
        }
    }
}
