//! The master's memory at 10,000 shards: an Indexed Job whose 10,000 pods all
//! exist (finished ones stay until the Job goes; 9,900 have succeeded, 100
//! run), served in pages by a mock API server that applies the watch's field
//! selector as a real one does, watched by the launcher for three status polls.
//! One test in this binary, so the process's peak RSS (`VmHWM`) is this run's.

use std::time::Duration;

use cnd_cloud::kubernetes::{KubeLauncher, KubeOptions, Workload};
use cnd_core::{
    CancelToken, ChannelError, MasterOptions, MasterOutcome, Puzzle, Received, ResultChannel,
    RunSpec, TokioTimer,
};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};

const SHARDS: u64 = 10_000;
/// Shards whose pods have succeeded; the rest run.
const SUCCEEDED: u64 = 9_900;

/// A pod of the run's Job as an API server returns it: the manifest's fields,
/// managedFields, and a terminated container's status (some 6 KiB of JSON).
fn job_pod(name: &str, index: u64, run_id: &str) -> Value {
    let (phase, state) = if index < SUCCEEDED {
        (
            "Succeeded",
            json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2026-12-03T12:00:02Z",
                                  "finishedAt": "2026-12-03T12:00:09Z",
                                  "message": "{\"body\":\"a signed report of some two hundred bytes, as a worker writes it\",\"cnd-signature\":\"00\"}"}}),
        )
    } else {
        (
            "Running",
            json!({"running": {"startedAt": "2026-12-03T12:00:02Z"}}),
        )
    };
    let env: Vec<Value> = (0..16)
        .map(|i| json!({"name": format!("CND_VARIABLE_{i}"), "value": format!("value of variable {i} for the worker")}))
        .collect();
    let managed: Vec<Value> = (0..3)
        .map(|i| json!({"manager": format!("kube-controller-manager-{i}"), "operation": "Update", "apiVersion": "v1",
                        "time": "2026-12-03T12:00:00Z", "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:metadata": {"f:labels": {"f:cnd/run-id": {}, "f:batch.kubernetes.io/job-name": {}}},
                                     "f:spec": {"f:containers": {"k:{\"name\":\"worker\"}": {"f:env": {}, "f:image": {}, "f:resources": {}}}},
                                     "f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:phase": {}}}}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "cnd-test", "uid": format!("00000000-0000-0000-0000-{index:012}"),
            "resourceVersion": "7", "creationTimestamp": "2026-12-03T12:00:00Z",
            "labels": {"cnd/run-id": run_id, "app.kubernetes.io/managed-by": "cnd",
                       "batch.kubernetes.io/job-name": "cnd-x", "job-name": "cnd-x",
                       "batch.kubernetes.io/controller-uid": "11111111-2222-3333-4444-555555555555",
                       "batch.kubernetes.io/job-completion-index": index.to_string()},
            "annotations": {"batch.kubernetes.io/job-completion-index": index.to_string()},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "cnd-x",
                                 "uid": "11111111-2222-3333-4444-555555555555", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": managed,
        },
        "spec": {
            "restartPolicy": "Never", "nodeName": format!("node-{}", index % 50),
            "containers": [{"name": "worker", "image": "registry.example/cnd-worker:1", "env": env,
                            "resources": {"limits": {"cpu": "2", "memory": "256Mi"}, "requests": {"cpu": "2", "memory": "256Mi"}},
                            "securityContext": {"runAsNonRoot": true, "readOnlyRootFilesystem": true,
                                                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        },
        "status": {
            "phase": phase, "hostIP": "10.0.0.1", "podIP": "10.1.2.3", "startTime": "2026-12-03T12:00:01Z",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-03T12:00:09Z", "reason": "PodCompleted"}],
            "containerStatuses": [{"name": "worker", "ready": false, "restartCount": 0, "image": "registry.example/cnd-worker:1",
                                   "imageID": "registry.example/cnd-worker@sha256:0123456789abcdef", "containerID": format!("containerd://{index:064}"),
                                   "state": state}],
        },
    })
}

/// One page of the pod list, as an API server pages it (`limit`, `continue`).
fn pod_page(query: &str, run_id: &str) -> Vec<u8> {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
    };
    // `status.phase!=Succeeded`, URL-encoded: the running pods only.
    let unfinished = query.contains("status.phase%21%3DSucceeded");
    let listed: Vec<u64> = (0..SHARDS)
        .filter(|&i| !unfinished || i >= SUCCEEDED)
        .collect();
    let total = listed.len() as u64;
    let first = param("continue").unwrap_or(0);
    let end = param("limit").map_or(total, |limit| (first + limit).min(total));
    let items: Vec<Value> = listed[first as usize..end as usize]
        .iter()
        .map(|&i| job_pod(&format!("cnd-x-{i}-abcde"), i, run_id))
        .collect();
    let mut metadata = json!({"resourceVersion": "7"});
    if end < total {
        metadata["continue"] = json!(end.to_string());
    }
    serde_json::to_vec(
        &json!({"apiVersion": "v1", "kind": "PodList", "metadata": metadata, "items": items}),
    )
    .unwrap()
}

/// A mock API server: creates echo, the pod list (in pages) holds every pod,
/// watches hang, the Job has finished 9,900 indexes.
fn serve(run_id: String) -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let one_pod = serde_json::to_vec(&job_pod("cnd-x-0-abcde", 0, &run_id)).unwrap();
    println!("one pod: {} bytes of JSON", one_pod.len());
    tokio::spawn(async move {
        let mut hanging = Vec::new();
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let (method, path) = (parts.method.as_str(), parts.uri.path());
            let query = parts.uri.query().unwrap_or_default();
            let answer: Vec<u8> = if query.contains("watch=true") {
                hanging.push(respond);
                continue;
            } else if method == "GET" && path.ends_with("/pods") {
                pod_page(query, &run_id)
            } else if method == "GET" && path.contains("/jobs/") {
                serde_json::to_vec(&json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "cnd-x"},
                                           "status": {"active": 100, "succeeded": SUCCEEDED, "completedIndexes": "0-9899"}}))
                .unwrap()
            } else if method == "POST" || method == "PATCH" {
                let mut object: Value = serde_json::from_slice(&bytes).unwrap_or(json!({}));
                object["metadata"]["uid"] = json!("11111111-2222-3333-4444-555555555555");
                object["metadata"]["name"] = object["metadata"]["name"].clone();
                serde_json::to_vec(&object).unwrap()
            } else {
                serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}))
                    .unwrap()
            };
            respond.send_response(
                Response::builder()
                    .status(if method == "POST" { 201 } else { 200 })
                    .header("content-type", "application/json")
                    .body(Body::from(answer))
                    .unwrap(),
            );
        }
    });
    kube::Client::new(service, "cnd-test")
}

/// A channel that never hears anything, waiting on tokio's clock.
struct Silent;

#[async_trait::async_trait]
impl ResultChannel for Silent {
    fn address(&self) -> &str {
        "silent://"
    }
    async fn receive(&mut self, wait: Duration) -> Result<Received, ChannelError> {
        tokio::time::sleep(wait).await;
        Ok(Received::default())
    }
    async fn close(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }
}

/// This process's peak resident set, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(start_paused = true)]
async fn the_master_of_10000_shards_stays_under_64_mib() {
    let puzzle = Puzzle::with_default_block(40).unwrap();
    let spec = RunSpec::new(puzzle.clone(), puzzle.space(), SHARDS, 100).unwrap();
    let before = peak_rss();
    let client = serve(spec.run_id.to_string());
    let options = KubeOptions {
        namespace: "cnd-test".into(),
        workload: Workload::Job,
        ..KubeOptions::default()
    };
    let mut launcher = KubeLauncher::new(client, options);
    let deadline = tokio::time::Instant::now().into_std() + Duration::from_secs(5);
    let mut polls = 0;
    let (mut succeeded_seen, mut running_seen) = (0, 0);
    let out = cnd_core::run_master(
        &mut launcher,
        &mut Silent,
        &spec,
        &MasterOptions::with_deadline(Some(deadline)),
        &TokioTimer,
        &CancelToken::new(),
        |event| {
            if let cnd_core::MasterEvent::Workers(status) = event {
                polls += 1;
                succeeded_seen = succeeded_seen.max(status.succeeded);
                running_seen = running_seen.max(status.running);
            }
        },
    )
    .await;
    assert!(matches!(out, Ok(MasterOutcome::TimedOut(_))), "{out:?}");
    assert_eq!(polls, 3, "status at 0, 2 and 4 s");
    // The Job counts the finished pods; the watch holds the running ones.
    assert_eq!(
        (succeeded_seen, running_seen),
        (SUCCEEDED, SHARDS - SUCCEEDED)
    );
    let peak = peak_rss();
    println!(
        "master of {SHARDS} shards, {SUCCEEDED} of their pods finished: peak RSS {:.1} MiB ({:.1} MiB before the run)",
        peak as f64 / (1 << 20) as f64,
        before as f64 / (1 << 20) as f64
    );
    assert!(peak <= 64 << 20, "peak RSS {peak} bytes");
}
