//! The manifests of a run: its Secret, and its Indexed Job or one bare pod per shard.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use cnd_core::distributed::DEFAULT_TERMINATION_LOG;
use cnd_core::RunSpec;

use super::{labels, shard_secret_key, KubeOptions, Workload, LABEL_SHARD, SECRET_KEY, WORKER_UID};

pub(super) fn deadline_seconds(spec: &RunSpec) -> i64 {
    let lifetime = spec.lifetime();
    // Round up: a deadline must be at least a second, and never shorter than asked.
    lifetime.as_secs() as i64 + i64::from(lifetime.subsec_nanos() > 0)
}

fn pod_spec(spec: &RunSpec, options: &KubeOptions, shard: Option<u64>) -> PodSpec {
    let mut env: Vec<EnvVar> = spec
        .worker_env()
        .into_iter()
        .chain(match shard {
            Some(shard) => spec.shard_env(shard),
            None => spec.template_env(),
        })
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
        name: cnd_core::worker_env::WORKER_NAME.into(),
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
///
/// [`KubeLauncher`]: super::KubeLauncher
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
        Workload::Pods => spec
            .shards_to_search()
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
