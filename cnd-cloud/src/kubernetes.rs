//! [`KubeLauncher`]: the workers of a run as one Indexed Job (or bare pods) on
//! Kubernetes, watched with kube-runtime, and removed on every way out.
//!
//! Everything created carries the labels of SPEC §8, so [`cleanup`] finds what a
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::task::JoinHandle;
use uuid::Uuid;

use cnd_core::distributed::{error_chain, DEFAULT_TERMINATION_LOG};
use cnd_core::{Cause, LaunchError, Launcher, RunSpec, WorkerStatus};

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

/// Shards per call when `stop` deletes a run's bare pods. An API server deletes
/// the pods of one `deletecollection` one after another, at some 20 ms each
/// (1,000 pods took over 20 s, the master's limit for a whole `stop`): 50 pods
/// are about a second.
const PODS_PER_DELETE: u64 = 50;

/// Deletions in flight at once, in `stop` and in [`cleanup`]: 10,000 bare pods
/// are 200 calls, 7 rounds of about a second where the API server keeps up.
const DELETES_IN_FLIGHT: usize = 32;

/// How long a container may wait for a reason that can pass (see [`waiting`])
/// before the run counts it as one that will not.
const LASTING: Duration = Duration::from_secs(60);

/// What a container waiting for `reason` means for the run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Waiting {
    /// It passes by itself, or ends in a failed pod that the Job retries.
    Passes,
    /// It never passes by itself: the run fails at once; the text says what to do.
    Fatal(String),
    /// It may pass (a busy runtime), but not once it has lasted [`LASTING`].
    FatalIfLasting(String),
}

/// What a worker container waiting for `reason` (with `image`) means for the run.
fn waiting(reason: &str, image: &str) -> Waiting {
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

fn deadline_seconds(spec: &RunSpec) -> i64 {
    let lifetime = spec.lifetime();
    // Round up: a deadline must be at least a second, and never shorter than asked.
    lifetime.as_secs() as i64 + i64::from(lifetime.subsec_nanos() > 0)
}

fn pod_spec(spec: &RunSpec, options: &KubeOptions, shard: Option<u64>) -> PodSpec {
    let mut env: Vec<EnvVar> = spec
        .worker_env()
        .into_iter()
        .chain(shard.map(RunSpec::shard_env))
        .chain(options.extra_env.iter().cloned())
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            ..EnvVar::default()
        })
        .collect();
    // The worker's key from the run's Secret: a literal here would show in
    // `kubectl get -o yaml` to anyone who may read pods. A bare pod reads its
    // own shard's entry; an Indexed Job's template, the shared one.
    env.push(EnvVar {
        name: cnd_core::worker_config::RUN_KEY.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: spec.name(),
                key: shard.map_or_else(|| SECRET_KEY.to_string(), shard_secret_key),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    });
    // The pod's own name, so reports say which pod found the nonce.
    env.push(EnvVar {
        name: "CND_WORKER_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    });
    let quantities = BTreeMap::from([
        ("cpu".to_string(), Quantity(options.cpu.clone())),
        ("memory".to_string(), Quantity(options.memory.clone())),
    ]);
    PodSpec {
        restart_policy: Some("Never".into()),
        // The worker has nothing to flush: stopping a run should not take 30 s.
        termination_grace_period_seconds: Some(5),
        service_account_name: options.service_account.clone(),
        // Workers never call the API server. With a service account the token stays,
        // since IRSA / Pod Identity setups may rely on the service account's token.
        automount_service_account_token: options.service_account.is_none().then_some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(WORKER_UID),
            run_as_group: Some(WORKER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![Container {
            name: "worker".into(),
            image: Some(options.image.clone()),
            image_pull_policy: Some(options.image_pull_policy.clone()),
            env: Some(env),
            // Where a worker reporting through the pod's status writes its final
            // report (CND_QUEUE_URL=termination-log:…); only that file, never the
            // log tail, may become the termination message.
            termination_message_path: Some(DEFAULT_TERMINATION_LOG.into()),
            termination_message_policy: Some("File".into()),
            // Requests make the cluster autoscaler add nodes; limits equal to them
            // give the pod the Guaranteed class and a CPU quota the worker sizes its threads by.
            resources: Some(ResourceRequirements {
                requests: Some(quantities.clone()),
                limits: Some(quantities),
                ..ResourceRequirements::default()
            }),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Capabilities::default()
                }),
                ..SecurityContext::default()
            }),
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

/// The name, namespace and labels of the run's Job and Secret (SPEC §8).
fn run_metadata(spec: &RunSpec, options: &KubeOptions) -> ObjectMeta {
    ObjectMeta {
        name: Some(spec.name()),
        namespace: namespace(options),
        labels: Some(labels(spec.run_id)),
        ..ObjectMeta::default()
    }
}

/// The run's Secret, with the run's labels: the workers' keys, never the run's
/// own (the master keeps that). An Indexed Job's shared key under
/// [`SECRET_KEY`]; each bare pod's own under [`shard_secret_key`].
/// Owner references are added once its owners exist (see [`KubeLauncher`]).
pub fn secret_manifest(spec: &RunSpec, options: &KubeOptions) -> Secret {
    let hex = |key: cnd_core::RunKey| ByteString(key.to_hex().into_bytes());
    let data = match options.workload {
        Workload::Job => BTreeMap::from([(SECRET_KEY.to_string(), hex(spec.run_key.shared()))]),
        Workload::Pods => (0..spec.shards)
            .map(|shard| (shard_secret_key(shard), hex(spec.run_key.for_shard(shard))))
            .collect(),
    };
    Secret {
        metadata: run_metadata(spec, options),
        type_: Some("Opaque".into()),
        immutable: Some(true),
        data: Some(data),
        ..Secret::default()
    }
}

/// The Indexed Job of a run: completions = shards, parallelism = pods.
pub fn job_manifest(spec: &RunSpec, options: &KubeOptions) -> Job {
    Job {
        metadata: run_metadata(spec, options),
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(clamp_i32(spec.shards)),
            parallelism: Some(clamp_i32(spec.parallelism.min(spec.shards))),
            // A shard is retried on its own; when one fails every retry, the others
            // still run (maxFailedIndexes unset) and the Job ends Failed, which the
            // launcher reports as fatal: that part of the space was not searched.
            backoff_limit_per_index: Some(clamp_i32(u64::from(options.shard_retries))),
            // A pod evicted by a node scale-down or preemption is not the worker's
            // fault and does not use up a retry.
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                    }]),
                    ..PodFailurePolicyRule::default()
                }],
            }),
            active_deadline_seconds: Some(deadline_seconds(spec)),
            ttl_seconds_after_finished: Some(options.ttl_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(spec.run_id)),
                    ..ObjectMeta::default()
                }),
                // The shard comes from JOB_COMPLETION_INDEX, set by the Job controller.
                spec: Some(pod_spec(spec, options, None)),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// The bare pod of one shard.
pub fn pod_manifest(spec: &RunSpec, options: &KubeOptions, shard: u64) -> Pod {
    let mut pod_spec = pod_spec(spec, options, Some(shard));
    pod_spec.active_deadline_seconds = Some(deadline_seconds(spec));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-{shard}-", spec.name())),
            namespace: namespace(options),
            labels: Some(
                labels(spec.run_id)
                    .into_iter()
                    .chain([(LABEL_SHARD.to_string(), shard.to_string())])
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        ..Pod::default()
    }
}

/// What a run creates, as JSON objects: its Secret, then one Job or one pod per shard.
pub fn manifests(spec: &RunSpec, options: &KubeOptions) -> Vec<serde_json::Value> {
    let to_value =
        |r: Result<serde_json::Value, serde_json::Error>| r.expect("k8s-openapi objects serialize");
    let secret = to_value(serde_json::to_value(secret_manifest(spec, options)));
    let workers: Vec<serde_json::Value> = match options.workload {
        Workload::Job => vec![to_value(serde_json::to_value(job_manifest(spec, options)))],
        Workload::Pods => (0..spec.shards)
            .map(|shard| to_value(serde_json::to_value(pod_manifest(spec, options, shard))))
            .collect(),
    };
    std::iter::once(secret).chain(workers).collect()
}

/// Manifests as one YAML stream (`---` between documents), for `kubectl apply -f`.
pub fn to_yaml(manifests: &[serde_json::Value]) -> String {
    manifests
        .iter()
        .map(|m| serde_yaml_ng::to_string(m).expect("JSON values serialize to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The manifests' namespace; none when empty, so `kubectl apply` uses its current one.
fn namespace(options: &KubeOptions) -> Option<String> {
    (!options.namespace.is_empty()).then(|| options.namespace.clone())
}

fn clamp_i32(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
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
        let run_selector = selector(Some(run.run_id));
        let mut calls = futures::stream::iter(groups)
            .map(|group| {
                let first = group * PODS_PER_DELETE;
                let shards: Vec<String> = (first..asked.min(first + PODS_PER_DELETE))
                    .map(|shard| shard.to_string())
                    .collect();
                let lp = ListParams::default().labels(&format!(
                    "{run_selector},{LABEL_SHARD} in ({})",
                    shards.join(",")
                ));
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

    /// Watches this run's pods into a store that `status` reads.
    fn start_watch(&mut self, run_id: Uuid) {
        let (reader, writer) = reflector::store();
        let config = watcher::Config::default().labels(&selector(Some(run_id)));
        let stream =
            reflector::reflector(writer, watcher(self.pod_api(), config)).default_backoff();
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
            Workload::Pods => {
                let api = self.pod_api();
                let mut owners = Vec::new();
                for shard in 0..spec.shards {
                    let pod = pod_manifest(spec, &self.options, shard);
                    let action = format!("creating the pod of shard {shard} in namespace {ns}");
                    self.pods_asked = shard + 1;
                    let created = match api.create(&PostParams::default(), &pod).await {
                        Ok(created) => created,
                        Err(e) => {
                            self.may_have_pods |= may_have_created(&e);
                            return Err(launch_error(&action, &ns, e));
                        }
                    };
                    self.may_have_pods = true;
                    tracing::debug!(pod = ?created.metadata.name, shard, "pod created");
                    owners.push(owner_reference("v1", "Pod", &created.metadata)?);
                }
                tracing::info!(pods = spec.shards, namespace = %ns, "pods created");
                owners
            }
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

/// Counts pods by phase, and finds a reason why they will never run: a
/// container waiting for a reason that never passes, or for one that may pass
/// but has lasted [`LASTING`] (`since` remembers when each began, as of `now`).
/// A pod waiting for a node (`Unschedulable`) is pending, never fatal: a cluster
/// autoscaler may add one.
fn pod_status(
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
fn apply_job_status(status: &mut WorkerStatus, job: &Job, run: &RunSpec, pods: &[Arc<Pod>]) {
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
const JOB_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The most shards [`KubeLauncher::status`] reads from a Job's `completedIndexes`.
const MAX_SHARDS_LISTED: usize = cnd_core::distributed::MAX_SHARDS as usize;

/// A pod's shard, from what the control plane wrote: an Indexed Job pod's
/// completion index, or a bare pod's [`LABEL_SHARD`].
fn shard_of(pod: &Pod) -> Option<u64> {
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
fn each_index(list: &str) -> impl Iterator<Item = u64> + '_ {
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
fn count_indexes(list: &str) -> u64 {
    index_ranges(list).map(|r| r.end() - r.start() + 1).sum()
}

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

#[cfg(test)]
#[path = "kubernetes_tests.rs"]
mod tests;
