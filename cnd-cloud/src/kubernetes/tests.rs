//! KubeLauncher against a mock API server (tower-test): verbs, paths and bodies
//! of what it sends, and what it makes of the answers.

use super::manifest::deadline_seconds;
use super::status::{count_indexes, each_index, pod_status, waiting, Waiting};
use super::*;
use cnd_core::distributed::DEFAULT_SHARD_RETRIES;
use cnd_core::{Launcher, Puzzle, RunSpec, WorkerStatus};
use http::{Request, Response};
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One request the mock API server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

type Answer = Box<dyn Fn(&Seen) -> Option<(u16, Value)> + Send + Sync>;

/// A client whose API server is `answer`: `None` leaves the request hanging (a watch).
fn mock(answer: Answer) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    timed_mock(answer, |_| Duration::ZERO)
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn pod_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": items})
}

/// A plain API server: creates echo the object back, lists answer `pods`, watches hang.
fn server(pods: Vec<Value>, job: Option<Value>) -> Answer {
    Box::new(move |seen| {
        if seen.query.contains("watch=true") {
            return None;
        }
        Some(match (seen.method.as_str(), seen.path.as_str()) {
            ("POST", path) => {
                let mut object = seen.body.clone();
                object["metadata"]["uid"] = json!(Uuid::new_v4().to_string());
                if path.ends_with("/pods") {
                    let generated = format!(
                        "{}x{}",
                        object["metadata"]["generateName"].as_str().unwrap_or(""),
                        rand_suffix()
                    );
                    object["metadata"]["name"] = json!(generated);
                }
                (201, object)
            }
            ("GET", path) if path.ends_with("/pods") => (200, pod_list(pods.clone())),
            ("GET", path) if path.contains("/jobs/") => match &job {
                Some(job) => (200, job.clone()),
                None => (404, status_body(404, "NotFound", "jobs.batch not found")),
            },
            ("GET", path) if path.ends_with("/jobs") => (
                200,
                json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": job.iter().cloned().collect::<Vec<_>>()}),
            ),
            ("PATCH", path) if path.contains("/secrets/") => (
                200,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": path.rsplit('/').next()}}),
            ),
            ("DELETE", path) if path.ends_with("/pods") => (200, pod_list(vec![])),
            ("DELETE", path) if path.ends_with("/secrets") => (
                200,
                json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {},
                       "items": [{"metadata": {"name": "cnd-deadbeef"}}]}),
            ),
            ("DELETE", _) => (
                200,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            ),
            _ => (404, status_body(404, "NotFound", "no such thing")),
        })
    })
}

fn rand_suffix() -> String {
    Uuid::new_v4().to_string()[..5].to_string()
}

fn spec(shards: u64, parallelism: u64) -> RunSpec {
    let puzzle = Puzzle::with_default_block(20).unwrap();
    RunSpec::new(puzzle.clone(), puzzle.space(), shards, parallelism)
        .unwrap()
        .with_queue_url("https://sqs.eu-west-2.amazonaws.com/123456789012/cnd-x")
        .with_run_key(cnd_core::RunKey::from_bytes([0xc5; 32]))
        .with_timeout(Some(Duration::from_secs(600)))
}

fn options(workload: Workload) -> KubeOptions {
    KubeOptions {
        namespace: "cnd-test".into(),
        image: "registry.example/cnd-worker:1".into(),
        cpu: "2".into(),
        memory: "256Mi".into(),
        workload,
        ..KubeOptions::default()
    }
}

fn env_of(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e.get("value")
                    .cloned()
                    .unwrap_or_else(|| e["valueFrom"].clone()),
            )
        })
        .collect()
}

fn assert_hardened_worker(pod_spec: &Value, options: &KubeOptions) {
    assert_eq!(pod_spec["restartPolicy"], "Never");
    assert_eq!(pod_spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod_spec["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod_spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod_spec["automountServiceAccountToken"], false);
    let container = &pod_spec["containers"][0];
    assert_eq!(container["image"], options.image.as_str());
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    for kind in ["requests", "limits"] {
        assert_eq!(container["resources"][kind]["cpu"], options.cpu.as_str());
        assert_eq!(
            container["resources"][kind]["memory"],
            options.memory.as_str()
        );
    }
}

fn assert_labels(metadata: &Value, run_id: Uuid) {
    assert_eq!(metadata["labels"]["app.kubernetes.io/name"], "cnd");
    assert_eq!(metadata["labels"]["app.kubernetes.io/component"], "worker");
    assert_eq!(metadata["labels"]["cnd/run-id"], run_id.to_string());
}

async fn wait_for<F: Fn(&[Seen]) -> bool>(seen: &Mutex<Vec<Seen>>, what: F) {
    for _ in 0..500 {
        if what(&seen.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "the mock API server never saw it: {:#?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn launch_creates_one_indexed_job_and_watches_its_pods() {
    let (client, seen) = mock(server(vec![], None));
    let spec = spec(12, 4);
    let options = options(Workload::Job);
    let mut launcher = KubeLauncher::new(client, options.clone());
    launcher.launch(&spec).await.unwrap();

    // First the Secret with the run's key, so no pod starts without it.
    let secret = seen.lock().unwrap()[0].clone();
    assert_eq!(secret.method, "POST");
    assert_eq!(secret.path, "/api/v1/namespaces/cnd-test/secrets");
    assert_eq!(secret.body["metadata"]["name"], spec.name());
    assert_labels(&secret.body["metadata"], spec.run_id);
    assert_eq!(secret.body["immutable"], true);
    // The workers' shared key, never the run's own (which the master keeps):
    // python3 -c "import base64,hmac,hashlib;k=hmac.new(bytes([0xc5]*32),b'cnd shared key',
    //   hashlib.sha256).hexdigest();print(base64.b64encode(k.encode()).decode())"
    assert_eq!(
        secret.body["data"]["run-key"],
        "MTI3OWQyZTAxMDQyODI3NDlmMGMxZDg0Njc3ZDQ1ZDViZjFiMjdmNDIxNmZhMjJkMDFiMjdhNjBhZmIxNDYyOQ=="
    );
    assert_eq!(secret.body["data"].as_object().unwrap().len(), 1);

    let create = seen.lock().unwrap()[1].clone();
    assert_eq!(create.method, "POST");
    assert_eq!(create.path, "/apis/batch/v1/namespaces/cnd-test/jobs");
    let job = &create.body;
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["metadata"]["name"], spec.name());
    assert_labels(&job["metadata"], spec.run_id);
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    assert_eq!(job["spec"]["completions"], 12);
    assert_eq!(job["spec"]["parallelism"], 4);
    assert_eq!(job["spec"]["backoffLimitPerIndex"], DEFAULT_SHARD_RETRIES);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 660);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 300);
    assert_labels(&job["spec"]["template"]["metadata"], spec.run_id);
    let pod_spec = &job["spec"]["template"]["spec"];
    assert_hardened_worker(pod_spec, &options);
    let env = env_of(&pod_spec["containers"][0]);
    assert_eq!(env["CND_RUN_ID"], spec.run_id.to_string());
    assert_eq!(env["CND_SHARD_COUNT"], "12");
    assert_eq!(env["CND_DIFFICULTY"], "20");
    assert_eq!(env["CND_QUEUE_URL"], spec.queue_url.as_str());
    assert_eq!(
        env["CND_WORKER_NAME"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert!(
        !env.contains_key("CND_SHARD_INDEX"),
        "an Indexed Job gives JOB_COMPLETION_INDEX"
    );
    // The key comes from the Secret, and is nowhere in the Job itself.
    assert_eq!(
        env["CND_RUN_KEY"]["secretKeyRef"],
        json!({"name": spec.name(), "key": "run-key", "optional": false})
    );
    assert!(!job.to_string().contains(&"c5".repeat(32)));

    // Then the Secret is handed to the Job, whose uid the API server gave it.
    let job_uid = {
        let seen = seen.lock().unwrap();
        let patch = seen.iter().find(|r| r.method == "PATCH").unwrap().clone();
        assert_eq!(
            patch.path,
            format!("/api/v1/namespaces/cnd-test/secrets/{}", spec.name())
        );
        let owners = patch.body["metadata"]["ownerReferences"].clone();
        assert_eq!(owners.as_array().unwrap().len(), 1, "{owners}");
        assert_eq!(owners[0]["kind"], "Job");
        assert_eq!(owners[0]["apiVersion"], "batch/v1");
        assert_eq!(owners[0]["name"], spec.name());
        owners[0]["uid"].as_str().unwrap().to_string()
    };
    assert_eq!(job_uid.len(), 36);

    // The watcher lists the run's pods by label.
    wait_for(&seen, |s| {
        s.iter()
            .any(|r| r.method == "GET" && r.path == "/api/v1/namespaces/cnd-test/pods")
    })
    .await;
    let list = seen
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.path.ends_with("/pods"))
        .cloned()
        .unwrap();
    let query = list
        .query
        .replace("%2F", "/")
        .replace("%3D", "=")
        .replace("%2C", ",");
    assert!(
        query.contains(&format!("cnd/run-id={}", spec.run_id)),
        "{query}"
    );
    launcher.stop().await.unwrap();
}

#[tokio::test]
async fn pods_mode_creates_one_pod_per_shard() {
    let (client, seen) = mock(server(vec![], None));
    let spec = spec(3, 3);
    let options = options(Workload::Pods);
    let mut launcher = KubeLauncher::new(client, options.clone());
    launcher.launch(&spec).await.unwrap();
    let creates: Vec<Seen> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .cloned()
        .collect();
    assert_eq!(creates.len(), 3);
    for (shard, create) in creates.iter().enumerate() {
        assert_eq!(create.path, "/api/v1/namespaces/cnd-test/pods");
        let pod = &create.body;
        assert_eq!(
            pod["metadata"]["generateName"],
            format!("{}-{shard}-", spec.name())
        );
        assert_labels(&pod["metadata"], spec.run_id);
        assert_eq!(pod["metadata"]["labels"]["cnd/shard"], shard.to_string());
        assert_hardened_worker(&pod["spec"], &options);
        assert_eq!(pod["spec"]["activeDeadlineSeconds"], 660);
        let env = env_of(&pod["spec"]["containers"][0]);
        assert_eq!(env["CND_SHARD_INDEX"], shard.to_string());
        // Each pod reads its own shard's key, and only that.
        assert_eq!(
            env["CND_RUN_KEY"]["secretKeyRef"],
            json!({"name": spec.name(), "key": format!("shard-{shard}"), "optional": false})
        );
    }
    let secret = seen.lock().unwrap()[0].clone();
    let data = secret.body["data"].as_object().unwrap();
    let keys: Vec<&String> = data.keys().collect();
    assert_eq!(keys, ["shard-0", "shard-1", "shard-2"]);
    for shard in 0..3u64 {
        let value = data[&format!("shard-{shard}")].clone();
        let bytes: k8s_openapi::ByteString = serde_json::from_value(value).unwrap();
        assert_eq!(bytes.0, spec.run_key.for_shard(shard).to_hex().into_bytes());
    }
    // The Secret belongs to every pod: the garbage collector removes it after the last.
    let patch = seen
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.method == "PATCH")
        .cloned()
        .unwrap();
    let owners = patch.body["metadata"]["ownerReferences"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(owners.len(), 3);
    assert!(owners
        .iter()
        .all(|o| o["kind"] == "Pod" && o["apiVersion"] == "v1"));
    launcher.stop().await.unwrap();
}

#[tokio::test]
async fn stop_deletes_the_job_in_the_background_leaving_its_pods_to_the_gc_and_is_idempotent() {
    let (client, seen) = mock(server(vec![], None));
    let spec = spec(2, 2);
    let mut launcher = KubeLauncher::new(client, options(Workload::Job));
    launcher.launch(&spec).await.unwrap();
    launcher.stop().await.unwrap();
    launcher.stop().await.unwrap();
    let deletes: Vec<Seen> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "DELETE")
        .cloned()
        .collect();
    assert_eq!(
        deletes[0].path,
        format!("/apis/batch/v1/namespaces/cnd-test/jobs/{}", spec.name())
    );
    // Without Background (or Foreground) propagation a Job's pods are orphaned;
    // with it the garbage collector deletes them, however many: one call here.
    assert_eq!(deletes[0].body["propagationPolicy"], "Background");
    assert_eq!(
        deletes[1].path,
        format!("/api/v1/namespaces/cnd-test/secrets/{}", spec.name())
    );
    assert!(
        !deletes.iter().any(|r| r.path.ends_with("/pods")),
        "{deletes:?}"
    );
    assert_eq!(deletes.len(), 4);
}

#[tokio::test]
async fn stop_after_the_job_is_gone_is_fine() {
    let answer: Answer = Box::new(|seen| match seen.method.as_str() {
        "DELETE" => Some((404, status_body(404, "NotFound", "not found"))),
        _ => server(vec![], None)(seen),
    });
    let (client, _) = mock(answer);
    let mut launcher = KubeLauncher::new(client, options(Workload::Job));
    launcher.launch(&spec(1, 1)).await.unwrap();
    launcher.stop().await.unwrap();
}

#[tokio::test]
async fn forbidden_is_refused_with_an_rbac_hint() {
    let answer: Answer = Box::new(|_| {
        Some((
            403,
            status_body(
                403,
                "Forbidden",
                "secrets is forbidden: User \"dev\" cannot create resource \"secrets\"",
            ),
        ))
    });
    let (client, seen) = mock(answer);
    let mut launcher = KubeLauncher::new(client, options(Workload::Job));
    let error = launcher.launch(&spec(2, 2)).await.unwrap_err();
    let LaunchError::Refused { action, detail, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(action.contains("creating secret"), "{action}");
    assert!(
        detail.contains("RBAC") && detail.contains("cnd-test"),
        "{detail}"
    );
    // The API server's words are the source, said once in the whole chain.
    let source = std::error::Error::source(&error).expect("the API status");
    assert!(
        source.to_string().contains("cannot create resource"),
        "{source}"
    );
    let chain = cnd_core::distributed::error_chain(&error);
    assert_eq!(
        chain.matches("cannot create resource").count(),
        1,
        "{chain}"
    );
    eprintln!("{chain}");
    // Nothing was created, so there is nothing to delete (and no failure to
    // delete it, which the user would be told to clean up after).
    launcher.stop().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "{:?}", seen.lock().unwrap());
}

#[tokio::test]
async fn conflict_is_refused_as_already_existing() {
    let answer: Answer = Box::new(|_| {
        Some((
            409,
            status_body(409, "AlreadyExists", "jobs.batch \"cnd-1\" already exists"),
        ))
    });
    let (client, _) = mock(answer);
    let mut launcher = KubeLauncher::new(client, options(Workload::Job));
    let error = launcher.launch(&spec(2, 2)).await.unwrap_err();
    assert!(
        matches!(&error, LaunchError::Refused { detail, .. } if detail.contains("already exists")),
        "{error:?}"
    );
}

#[tokio::test]
async fn stop_never_deletes_a_job_whose_name_was_taken() {
    let answer: Answer = Box::new(|seen| match seen.method.as_str() {
        "POST" if seen.path.ends_with("/jobs") => {
            Some((409, status_body(409, "AlreadyExists", "already exists")))
        }
        _ => server(vec![], None)(seen),
    });
    let (client, seen) = mock(answer);
    let mut launcher = KubeLauncher::new(client, options(Workload::Job));
    launcher.launch(&spec(1, 1)).await.unwrap_err();
    launcher.stop().await.unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        !seen
            .iter()
            .any(|r| r.method == "DELETE" && r.path.contains("/jobs/")),
        "{seen:?}"
    );
    // No pod of the run can exist; its own Secret is still removed.
    assert!(!seen
        .iter()
        .any(|r| r.method == "DELETE" && r.path.ends_with("/pods")));
    assert!(seen
        .iter()
        .any(|r| r.method == "DELETE" && r.path.contains("/secrets/")));
}

#[tokio::test]
async fn stop_tries_every_step_and_names_each_failure() {
    let answer: Answer = Box::new(|seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("DELETE", path) if path.contains("/jobs/") => {
            Some((500, status_body(500, "InternalError", "etcd timeout")))
        }
        ("DELETE", path) if path.contains("/secrets/") => {
            Some((500, status_body(500, "InternalError", "etcd gone")))
        }
        _ => server(vec![], None)(seen),
    });
    let (client, seen) = mock(answer);
    let mut launcher = KubeLauncher::new(client, options(Workload::Job));
    launcher.launch(&spec(1, 1)).await.unwrap();
    let error = launcher.stop().await.unwrap_err().to_string();
    assert!(
        error.contains("deleting job") && error.contains("deleting secret"),
        "{error}"
    );
    // The Secret's delete was tried although the Job's failed first.
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.method == "DELETE" && r.path.contains("/secrets/")));
}

#[tokio::test]
async fn an_unreachable_server_is_unreachable() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    drop(handle);
    let mut launcher = KubeLauncher::new(Client::new(service, "default"), options(Workload::Job));
    let error = launcher.launch(&spec(2, 2)).await.unwrap_err();
    assert!(
        matches!(error, LaunchError::Unreachable { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_and_says_each_cause_once() {
    // Port 1 on this machine: nothing listens, the connection is refused.
    let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let mut launcher = KubeLauncher::new(client, options(Workload::Job));
    let error = launcher.launch(&spec(2, 2)).await.unwrap_err();
    // What the CLI prints (anyhow's `{:#}` walks the same chain).
    let chain = cnd_core::distributed::error_chain(&error);
    assert!(matches!(error, LaunchError::Unreachable { .. }), "{chain}");
    assert!(
        chain.starts_with("could not reach the Kubernetes API server: creating secret"),
        "{chain}"
    );
    let parts: Vec<&str> = chain.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "{part:?} said twice: {chain}"
        );
    }
    eprintln!("{chain}");
}

fn pod(name: &str, phase: &str, waiting: Option<&str>) -> Value {
    let mut status = json!({"phase": phase});
    if let Some(reason) = waiting {
        // A container waits only once the pod is on a node.
        status["conditions"] = json!([{"type": "PodScheduled", "status": "True"}]);
        status["containerStatuses"] = json!([{
            "name": "worker", "image": "nope:1", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": "Back-off pulling image \"nope:1\""}}
        }]);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "cnd-test", "resourceVersion": "3"},
           "status": status})
}

async fn status_when<F: Fn(&WorkerStatus) -> bool>(
    launcher: &mut KubeLauncher,
    what: F,
) -> WorkerStatus {
    for _ in 0..500 {
        let status = launcher.status().await.unwrap();
        if what(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("status never got there: {:?}", launcher.status().await);
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_is_fatal() {
    let pods = vec![
        pod("cnd-1-0-abcde", "Pending", Some("ImagePullBackOff")),
        pod("cnd-1-1-fghij", "Running", None),
    ];
    let (client, _) = mock(server(pods, None));
    let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
    launcher.launch(&spec(2, 2)).await.unwrap();
    let status = status_when(&mut launcher, |s| s.fatal.is_some()).await;
    let fatal = status.fatal.unwrap();
    assert!(
        fatal.contains("cnd-1-0-abcde") && fatal.contains("ImagePullBackOff"),
        "{fatal}"
    );
    assert_eq!((status.pending, status.starting, status.running), (0, 1, 1));
    launcher.stop().await.unwrap();
}

#[tokio::test]
async fn pods_on_a_node_are_starting_not_waiting_for_one() {
    let pods = vec![
        pod("cnd-1-0-abcde", "Pending", None),
        pod("cnd-1-1-fghij", "Pending", Some("ContainerCreating")),
        pod("cnd-1-2-klmno", "Running", None),
    ];
    let (client, _) = mock(server(pods, None));
    let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
    launcher.launch(&spec(3, 3)).await.unwrap();
    let status = status_when(&mut launcher, |s| s.running == 1).await;
    assert_eq!((status.pending, status.starting, status.running), (1, 1, 1));
    assert_eq!((status.waiting(), status.fatal), (2, None));
    launcher.stop().await.unwrap();
}

#[tokio::test]
async fn job_status_counts_waiting_indexes_and_a_failed_job_is_fatal() {
    let spec = spec(6, 2);
    let job = |conditions: Value| {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": spec.name(), "namespace": "cnd-test"},
               "status": {"active": 1, "succeeded": 3, "failed": 2, "failedIndexes": "4", "conditions": conditions}})
    };
    let pods = vec![
        pod("a", "Running", None),
        pod("b", "Failed", None),
        pod("c", "Failed", None),
    ];
    let (client, _) = mock(server(pods.clone(), Some(job(json!([])))));
    let mut launcher = KubeLauncher::new(client, options(Workload::Job));
    launcher.launch(&spec).await.unwrap();
    let status = status_when(&mut launcher, |s| s.running == 1).await;
    // 6 shards: 3 succeeded, index 4 failed for good, 1 running, and 1 without a
    // pod: 2 pods failed, one of them index 4's, so it waits out the back-off.
    assert_eq!(
        (
            status.pending,
            status.retrying,
            status.running,
            status.succeeded,
            status.failed
        ),
        (0, 1, 1, 3, 2)
    );
    assert_eq!(status.fatal, None);
    launcher.stop().await.unwrap();

    let failed = job(
        json!([{"type": "Failed", "status": "True", "reason": "FailedIndexes", "message": "Job has failed indexes"}]),
    );
    // Index 4's last pod was killed for its memory.
    let mut killed = pod("d", "Failed", None);
    killed["metadata"]["annotations"] = json!({"batch.kubernetes.io/job-completion-index": "4"});
    killed["status"]["containerStatuses"] = json!([{
        "name": "worker", "image": "cnd-worker:1", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    }]);
    let pods = [pods, vec![killed]].concat();
    let (client, _) = mock(server(pods, Some(failed)));
    let mut launcher = KubeLauncher::new(client, options(Workload::Job));
    launcher.launch(&spec).await.unwrap();
    // Once the pods are listed (one runs), as they are long before a Job fails.
    let status = status_when(&mut launcher, |s| s.running == 1 && s.fatal.is_some()).await;
    // Which shard, why, and which nonces went unsearched.
    let shard = spec.range.shard(4, 6).unwrap();
    assert_eq!(
        status.fatal.unwrap(),
        format!(
            "job {} failed: FailedIndexes: Job has failed indexes; \
             shard 4 (nonces {shard}) ended with exit 137 (OOMKilled): not searched",
            spec.name()
        )
    );
    launcher.stop().await.unwrap();
}

#[tokio::test]
async fn cleanup_deletes_jobs_and_pods_by_label() {
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "cnd-deadbeef", "namespace": "cnd-test", "uid": "job-uid"}});
    // The Job's pod goes with the Job (the garbage collector's work); a bare pod
    // is deleted itself.
    let mut jobs_pod = pod("cnd-deadbeef-0-abc", "Running", None);
    jobs_pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job",
        "name": "cnd-deadbeef", "uid": "job-uid", "controller": true}]);
    let (client, seen) = mock(server(
        vec![jobs_pod, pod("cnd-cafebabe-0-xyz", "Running", None)],
        Some(job),
    ));
    let cleaned = cleanup(&client, "cnd-test", None, true).await.unwrap();
    assert_eq!(cleaned.jobs, vec!["cnd-deadbeef"]);
    assert_eq!(cleaned.pods, vec!["cnd-cafebabe-0-xyz"]);
    assert_eq!(cleaned.secrets, vec!["cnd-deadbeef"]);
    let seen = seen.lock().unwrap();
    let lists: Vec<&Seen> = seen.iter().filter(|r| r.method == "GET").collect();
    assert!(
        lists.iter().all(|r| r
            .query
            .contains("labelSelector=app.kubernetes.io%2Fname%3Dcnd")),
        "{lists:?}"
    );
    let job_delete = seen
        .iter()
        .find(|r| r.method == "DELETE" && r.path.contains("/jobs/"))
        .unwrap();
    assert_eq!(job_delete.body["propagationPolicy"], "Background");
    assert!(!seen.iter().any(|r| r.path.ends_with("/cnd-deadbeef-0-abc")));
    // Secrets by label in one deletecollection: the master may not list them.
    let secrets = seen
        .iter()
        .find(|r| r.path == "/api/v1/namespaces/cnd-test/secrets")
        .unwrap();
    assert_eq!(secrets.method, "DELETE");
    assert!(
        secrets
            .query
            .contains("labelSelector=app.kubernetes.io%2Fname%3Dcnd"),
        "{secrets:?}"
    );
    assert!(!seen
        .iter()
        .any(|r| r.method == "GET" && r.path.contains("/secrets")));
}

#[tokio::test]
async fn cleanup_all_keeps_a_run_in_progress_unless_forced() {
    let live = Uuid::new_v4();
    let created = k8s_openapi::jiff::Timestamp::now().to_string();
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "cnd-live", "namespace": "cnd-test", "creationTimestamp": created,
                     "labels": {"app.kubernetes.io/name": "cnd", "cnd/run-id": live.to_string()}},
        "spec": {"activeDeadlineSeconds": 600, "template": {}},
        "status": {"active": 1}});
    let mut pod = pod("cnd-live-0-abcde", "Running", None);
    pod["metadata"]["labels"] =
        json!({"app.kubernetes.io/name": "cnd", "cnd/run-id": live.to_string()});
    let (client, seen) = mock(server(vec![pod], Some(job)));
    let cleaned = cleanup(&client, "cnd-test", None, true).await.unwrap();
    assert!(
        cleaned.jobs.is_empty() && cleaned.pods.is_empty(),
        "{cleaned:?}"
    );
    assert_eq!(cleaned.kept.len(), 1);
    assert_eq!(cleaned.kept[0].0, live);
    assert!((590..=600).contains(&cleaned.kept[0].1), "{cleaned:?}");
    {
        let seen = seen.lock().unwrap();
        assert!(!seen
            .iter()
            .any(|r| r.method == "DELETE"
                && (r.path.contains("/jobs/") || r.path.contains("/pods/"))));
        // Its key is spared too.
        let secrets = seen.iter().find(|r| r.path.ends_with("/secrets")).unwrap();
        let query = secrets
            .query
            .replace("%2F", "/")
            .replace("%2C", ",")
            .replace("%20", " ")
            .replace("%28", "(")
            .replace("%29", ")")
            .replace("+", " ");
        assert!(query.contains(&format!("notin ({live})")), "{query}");
    }
    // --force: removed like any other.
    let cleaned = cleanup(&client, "cnd-test", None, false).await.unwrap();
    assert_eq!(cleaned.jobs, vec!["cnd-live"]);
    assert_eq!(cleaned.pods, vec!["cnd-live-0-abcde"]);
    assert!(cleaned.kept.is_empty());
}

#[tokio::test]
async fn a_hundred_pods_of_manifests_and_api_calls() {
    let (client, seen) = mock(server(vec![], None));
    let spec = spec(100, 100);
    let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
    let started = Instant::now();
    launcher.launch(&spec).await.unwrap();
    let elapsed = started.elapsed();
    let creates = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .count();
    assert_eq!(creates, 100);
    println!("creating 100 bare pods (manifests + mock API calls) took {elapsed:?}");
    launcher.stop().await.unwrap();
}

#[test]
fn manifests_serialize_to_yaml_documents() {
    let spec = spec(3, 3);
    let yaml = to_yaml(&manifests(&spec, &options(Workload::Pods)));
    // The Secret, then three pods.
    assert_eq!(yaml.matches("\n---\n").count(), 3);
    assert!(yaml.starts_with("apiVersion: v1\n"), "{yaml}");
    assert!(yaml.contains("kind: Secret"));
    assert!(yaml.contains("generateName:"));
    let job_yaml = to_yaml(&manifests(&spec, &options(Workload::Job)));
    assert!(job_yaml.contains("completionMode: Indexed"));
    assert_eq!(job_yaml.matches("---").count(), 1);
}

#[test]
fn a_resumed_run_makes_no_pod_for_a_searched_shard_and_tells_the_rest_where_to_start() {
    let mut searched = cnd_core::Searched::default();
    searched.mark_done(0);
    searched.mark_done(1);
    searched.add_prefix(3, 65_536);
    let spec = spec(4, 4).with_searched(searched).unwrap();
    let pods = manifests(&spec, &options(Workload::Pods));
    // The Secret, then the pods of shards 2 and 3 only.
    let shards: Vec<String> = pods[1..]
        .iter()
        .map(|p| env_of(&p["spec"]["containers"][0])["CND_SHARD_INDEX"].to_string())
        .collect();
    assert_eq!(shards, ["\"2\"", "\"3\""]);
    let env = env_of(&pods[2]["spec"]["containers"][0]);
    assert_eq!(
        env["CND_SEARCHED"], "3:65536",
        "a pod is told its own shard's part"
    );
    assert!(!env_of(&pods[1]["spec"]["containers"][0]).contains_key("CND_SEARCHED"));
    // One template serves every index: it carries the whole list.
    let job = &manifests(&spec, &options(Workload::Job))[1];
    let env = env_of(&job["spec"]["template"]["spec"]["containers"][0]);
    assert_eq!(env["CND_SEARCHED"], "0-1,3:65536");
}

#[test]
fn a_service_account_keeps_its_token_for_irsa() {
    let spec = spec(1, 1);
    let with_sa = KubeOptions {
        service_account: Some("cnd-worker".into()),
        ..options(Workload::Job)
    };
    let job = serde_json::to_value(job_manifest(&spec, &with_sa)).unwrap();
    let pod_spec = &job["spec"]["template"]["spec"];
    assert_eq!(pod_spec["serviceAccountName"], "cnd-worker");
    assert!(pod_spec.get("automountServiceAccountToken").is_none());
}

#[test]
fn a_run_without_timeout_still_ends() {
    let mut spec = spec(1, 1);
    spec.timeout = None;
    assert_eq!(deadline_seconds(&spec), DEFAULT_LIFETIME.as_secs() as i64);
    spec.timeout = Some(Duration::from_millis(1500));
    assert_eq!(deadline_seconds(&spec), 62);
}

#[test]
fn index_lists_are_counted() {
    assert_eq!(count_indexes(""), 0);
    assert_eq!(count_indexes("4"), 1);
    assert_eq!(count_indexes("1,3-5,9"), 5);
    assert_eq!(each_index("1,3-5,9").collect::<Vec<_>>(), [1, 3, 4, 5, 9]);
    assert_eq!(each_index("0-99999999999").take(3).count(), 3, "lazily");
    assert_eq!(each_index("x,2").collect::<Vec<_>>(), [2]);
}

/// A run driven by the real master over a mock API server whose job reads
/// answer as `job_reads` says (`None`: hang).
async fn master_over(
    job_reads: Vec<Option<u16>>,
    options: cnd_core::MasterOptions,
) -> (
    Result<cnd_core::MasterOutcome, cnd_core::MasterError>,
    Vec<cnd_core::MasterEvent>,
) {
    let spec = spec(2, 2);
    let reads = Arc::new(Mutex::new(std::collections::VecDeque::from(job_reads)));
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": spec.name(), "namespace": "cnd-test"},
                     "status": {"active": 2}});
    let answer: Answer = Box::new(move |seen| {
        if seen.method == "GET" && seen.path.contains("/jobs/") {
            match reads.lock().unwrap().pop_front() {
                Some(None) => return None,
                Some(Some(code)) => {
                    return Some((
                        code,
                        status_body(code, "InternalError", "etcdserver: request timed out"),
                    ))
                }
                None => return Some((200, job.clone())),
            }
        }
        server(
            vec![pod("a", "Running", None), pod("b", "Running", None)],
            None,
        )(seen)
    });
    let (client, _) = mock(answer);
    let mut launcher = KubeLauncher::new(client, options_for_master());
    let mut channel = cnd_core::memory::MemoryChannel::new();
    let mut events = Vec::new();
    let out = cnd_core::run_master(
        &mut launcher,
        &mut channel,
        &spec,
        &options,
        &crate::TokioTimer,
        &cnd_core::CancelToken::new(),
        |e| events.push(e),
    )
    .await;
    (out, events)
}

fn options_for_master() -> KubeOptions {
    options(Workload::Job)
}

#[tokio::test]
async fn a_burst_of_5xx_from_the_api_server_is_ridden_out() {
    let options = cnd_core::MasterOptions::with_deadline(Some(
        std::time::Instant::now() + Duration::from_secs(7),
    ));
    // Three failed status reads in a row (~6 s): the old master gave up here.
    let (out, events) = master_over(vec![Some(500), Some(503), Some(500)], options).await;
    assert!(
        matches!(out, Ok(cnd_core::MasterOutcome::TimedOut(_))),
        "{out:?}"
    );
    let retries = events
        .iter()
        .filter(|e| matches!(e, cnd_core::MasterEvent::Retrying { .. }))
        .count();
    assert_eq!(retries, 3, "{events:?}");
}

#[tokio::test]
async fn a_hanging_api_server_ends_the_run_after_the_retry_budget() {
    let mut options = cnd_core::MasterOptions::default();
    options.retry_for = Duration::from_secs(2);
    options.call_timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let (out, _) = master_over(vec![None; 100], options).await;
    let took = started.elapsed();
    assert!(
        matches!(
            &out,
            Err(cnd_core::MasterError::Status(
                LaunchError::Unreachable { .. }
            ))
        ),
        "{out:?}"
    );
    let error = cnd_core::distributed::error_chain(&out.unwrap_err());
    assert!(error.contains("could not watch the workers: could not reach the launcher: asking how the workers are doing got no answer"), "{error}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

/// A pod whose worker container ended with `message` as its termination message.
fn ended_pod(name: &str, phase: &str, exit_code: i32, message: Option<&str>) -> Value {
    let mut terminated =
        json!({"exitCode": exit_code, "containerID": format!("containerd://{name}")});
    if let Some(message) = message {
        terminated["message"] = json!(message);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "uid": format!("uid-{name}"), "namespace": "cnd-test", "resourceVersion": "5"},
           "status": {"phase": phase, "containerStatuses": [{
               "name": "worker", "image": "cnd-worker:1", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": terminated}}]}})
}

/// An API server whose pod list is `pods` and whose watches deliver `events`, one per
/// watch request (the watcher starts a new watch when one ends), then hang.
fn watching_server(pods: Vec<Value>, events: Vec<Value>) -> (Answer, Arc<Mutex<Vec<String>>>) {
    let events = Arc::new(Mutex::new(std::collections::VecDeque::from(events)));
    let selectors = Arc::new(Mutex::new(Vec::new()));
    let seen_selectors = Arc::clone(&selectors);
    let answer: Answer = Box::new(move |seen| {
        if seen.path.ends_with("/pods") && seen.method == "GET" {
            seen_selectors.lock().unwrap().push(seen.query.clone());
            if seen.query.contains("watch=true") {
                return events.lock().unwrap().pop_front().map(|event| (200, event));
            }
            return Some((200, pod_list(pods.clone())));
        }
        server(vec![], None)(seen)
    });
    (answer, selectors)
}

async fn receive_until(channel: &mut PodStatusChannel, count: usize) -> Vec<Message> {
    let mut received = Vec::new();
    for _ in 0..50 {
        received.extend(
            channel
                .receive(Duration::from_millis(100))
                .await
                .unwrap()
                .messages,
        );
        if received.len() >= count {
            break;
        }
    }
    // Anything more would be a duplicate.
    received.extend(
        channel
            .receive(Duration::from_millis(300))
            .await
            .unwrap()
            .messages,
    );
    received
}

use crate::pod_status::PodStatusChannel;
use cnd_core::{Message, ResultChannel};

#[tokio::test]
async fn pod_status_delivers_each_termination_message_once_as_received() {
    let key = cnd_core::RunKey::from_bytes([5; 32]);
    let run_id = Uuid::new_v4();
    let found = Message::signed(&key, r#"{"v":1,"kind":"found"}"#);
    let retried = Message::signed(&key, r#"{"v":1,"kind":"exhausted"}"#);
    let unsigned = Message::unsigned(r#"{"v":1,"kind":"exhausted"}"#);
    // What the kubelet keeps of an oversized message: its first 4096 bytes.
    let cut: String = Message::signed(&key, "x".repeat(5000))
        .to_envelope()
        .chars()
        .take(4096)
        .collect();
    let pods = vec![
        ended_pod("found", "Succeeded", 0, Some(&found.to_envelope())),
        ended_pod("garbage", "Failed", 1, Some("panicked at ...")),
        ended_pod("unsigned", "Succeeded", 0, Some(&unsigned.to_envelope())),
        ended_pod("oversized", "Succeeded", 0, Some(&cut)),
        // Evicted or killed: no message, nothing reported for its shard.
        ended_pod("evicted", "Failed", 137, None),
        pod("running", "Running", None),
    ];
    let events = vec![
        // The same pod again (a status update): not delivered twice.
        json!({"type": "MODIFIED", "object": ended_pod("found", "Succeeded", 0, Some(&found.to_envelope()))}),
        // A retried index runs in a new pod, whose report counts.
        json!({"type": "ADDED", "object": ended_pod("retried", "Succeeded", 0, Some(&retried.to_envelope()))}),
        // Deleted after it ended: its message still counts, once.
        json!({"type": "DELETED", "object": ended_pod("retried", "Succeeded", 0, Some(&retried.to_envelope()))}),
    ];
    let (answer, selectors) = watching_server(pods, events);
    let (client, _) = mock(answer);
    let mut channel = PodStatusChannel::new(client, "cnd-test", run_id);
    assert_eq!(channel.address(), "termination-log:/dev/termination-log");
    let received = receive_until(&mut channel, 5).await;
    assert_eq!(
        received,
        [
            found,
            Message::unsigned("panicked at ..."),
            unsigned,
            Message::unsigned(cut),
            retried,
        ]
    );
    let selectors = selectors.lock().unwrap().clone();
    assert!(
        selectors
            .iter()
            .all(|q| q.contains(&format!("cnd%2Frun-id%3D{run_id}"))),
        "only the run's pods are read: {selectors:?}"
    );
    channel.close().await.unwrap();
}

#[tokio::test]
async fn pod_status_without_permission_is_refused_and_a_failing_server_is_unreachable() {
    for (code, refused) in [(403, true), (503, false)] {
        let answer: Answer = Box::new(move |_| Some((code, status_body(code, "Nope", "no"))));
        let (client, _) = mock(answer);
        let mut channel = PodStatusChannel::new(client, "cnd-test", Uuid::new_v4());
        let err = channel.receive(Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(
            matches!(err, cnd_core::ChannelError::Refused { .. }),
            refused,
            "{code}: {err}"
        );
    }
}

/// The real master over the mock API server: a pod's termination message holds
/// the only report, signed with the run's key, and the run ends with its nonce.
#[tokio::test]
async fn the_master_finds_the_nonce_in_a_pods_termination_message() {
    let puzzle = Puzzle::with_default_block(10).unwrap();
    let spec = RunSpec::new(puzzle.clone(), puzzle.space(), 2, 2)
        .unwrap()
        .with_queue_url("termination-log:/dev/termination-log")
        .with_run_key(cnd_core::RunKey::from_bytes([6; 32]));
    // Shard 1's smallest golden nonce, as a worker would report it.
    let shard = puzzle.space().shard(1, 2).unwrap();
    let nonce = (shard.first()..=shard.last())
        .find(|&n| cnd_core::verify(&puzzle, n).golden)
        .unwrap();
    let report = cnd_core::Report {
        run_id: spec.run_id,
        shard: 1,
        worker: "cnd-x-1".into(),
        hashes: nonce - shard.first() + 1,
        elapsed_ms: 5,
        kind: cnd_core::ReportKind::Found {
            nonce,
            hash: cnd_core::verify(&puzzle, nonce).hash,
        },
    };
    // Every pod of an Indexed Job holds the shared key; the Job controller's
    // index annotation says whose report each termination message is.
    let envelope = Message::signed(&spec.run_key.shared(), report.to_json()).to_envelope();
    let forged = Message::unsigned(report.to_json()).to_envelope();
    let indexed = |mut pod: Value, index: u64| {
        pod["metadata"]["annotations"] =
            json!({"batch.kubernetes.io/job-completion-index": index.to_string()});
        pod
    };
    let pods = vec![
        indexed(ended_pod("forged", "Succeeded", 0, Some(&forged)), 1),
        // Shard 0's pod speaking for shard 1, with a perfect signed report.
        indexed(ended_pod("impostor", "Succeeded", 0, Some(&envelope)), 0),
        indexed(ended_pod("winner", "Succeeded", 0, Some(&envelope)), 1),
        pod("other", "Running", None),
    ];
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": spec.name(), "namespace": "cnd-test"},
                     "status": {"active": 1, "succeeded": 1}});
    let (watching, _) = watching_server(pods.clone(), vec![]);
    let answer: Answer = Box::new(move |seen| {
        if seen.method == "GET" && seen.path.contains("/jobs/") {
            return Some((200, job.clone()));
        }
        watching(seen)
    });
    let (client, _) = mock(answer);
    let mut launcher = KubeLauncher::new(client.clone(), options_for_master());
    let mut channel = PodStatusChannel::new(client, "cnd-test", spec.run_id);
    let out = cnd_core::run_master(
        &mut launcher,
        &mut channel,
        &spec,
        &cnd_core::MasterOptions::with_deadline(Some(
            std::time::Instant::now() + Duration::from_secs(20),
        )),
        &crate::TokioTimer,
        &cnd_core::CancelToken::new(),
        |_| {},
    )
    .await
    .unwrap();
    let cnd_core::MasterOutcome::Found(golden) = out else {
        panic!("{out:?}")
    };
    assert_eq!((golden.nonce, golden.shard), (nonce, 1));
    // The unsigned copy and the impostor's report are ignored.
    assert_eq!(golden.totals.ignored, 2);
}

/// `ended_pod` with no container id, and the termination's times.
fn ended_without_id(message: &str, started: &str, finished: &str) -> Value {
    let mut pod = ended_pod("noid", "Failed", 1, Some(message));
    let terminated = &mut pod["status"]["containerStatuses"][0]["state"]["terminated"];
    terminated["containerID"] = json!("");
    terminated["startedAt"] = json!(started);
    terminated["finishedAt"] = json!(finished);
    pod
}

#[test]
fn pod_status_keys_tell_terminations_apart_without_a_container_id() {
    let key_of = |pod: Value| {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        let terminations = crate::pod_status::terminations(&pod);
        assert_eq!(terminations.len(), 1);
        terminations[0].0.clone()
    };
    let (t0, t1, t2) = (
        "2025-01-01T00:00:00Z",
        "2025-01-01T00:00:05Z",
        "2025-01-01T00:00:09Z",
    );
    let first = key_of(ended_without_id("first", t0, t1));
    // The same termination seen again: the same key.
    assert_eq!(first, key_of(ended_without_id("first", t0, t1)));
    // Another message, the rest alike: another termination.
    assert_ne!(first, key_of(ended_without_id("second", t0, t1)));
    // The same bytes from a termination that ended later: another one too.
    assert_ne!(first, key_of(ended_without_id("first", t0, t2)));
}

#[tokio::test]
async fn pod_status_delivers_two_terminations_without_a_container_id_and_repeats_once() {
    let key = cnd_core::RunKey::from_bytes([7; 32]);
    let a = Message::signed(&key, r#"{"v":1,"kind":"exhausted","n":1}"#);
    let b = Message::signed(&key, r#"{"v":1,"kind":"exhausted","n":2}"#);
    let (t0, t1) = ("2025-01-01T00:00:00Z", "2025-01-01T00:00:05Z");
    let pods = vec![ended_without_id(&a.to_envelope(), t0, t1)];
    let events = vec![
        json!({"type": "MODIFIED", "object": ended_without_id(&a.to_envelope(), t0, t1)}),
        json!({"type": "MODIFIED", "object": ended_without_id(&b.to_envelope(), t0, t1)}),
        json!({"type": "MODIFIED", "object": ended_without_id(&b.to_envelope(), t0, t1)}),
    ];
    let (answer, _) = watching_server(pods, events);
    let (client, _) = mock(answer);
    let mut channel = PodStatusChannel::new(client, "cnd-test", Uuid::new_v4());
    assert_eq!(receive_until(&mut channel, 2).await, [a, b]);
}

/// A Pending pod whose worker container waits for `reason`, as the kubelet says it.
fn waiting_pod(name: &str, reason: &str, message: &str) -> Value {
    let mut pod = pod(name, "Pending", Some(reason));
    pod["metadata"]["uid"] = json!(format!("uid-{name}"));
    pod["status"]["containerStatuses"][0]["image"] = json!("cnd-worker:dev");
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = json!(message);
    pod
}

#[tokio::test]
async fn every_waiting_reason_that_never_passes_is_fatal_at_once_with_its_fix() {
    let cases = [
        (
            "ErrImageNeverPull",
            "Container image \"cnd-worker:dev\" is not present with pull policy of Never",
            "kind load docker-image cnd-worker:dev",
        ),
        ("ErrImageNeverPull", "", "k3s ctr images import"),
        ("ErrImageNeverPull", "", "drop --image-pull-policy Never"),
        (
            "InvalidImageName",
            "Failed to apply default image tag",
            "[REGISTRY/]NAME[:TAG]",
        ),
        ("ErrImagePull", "pull access denied", "may pull from it"),
        ("ImagePullBackOff", "Back-off pulling image", "exists"),
        ("ImageInspectError", "Failed to inspect image", "crictl rmi"),
        (
            "CreateContainerConfigError",
            "secret \"cnd-1\" not found",
            "Secret still exists",
        ),
        (
            "CreateContainerConfigError",
            "container has runAsNonRoot and image will run as root",
            "non-root user",
        ),
    ];
    for (reason, message, fix) in cases {
        let pods = vec![
            waiting_pod("cnd-1-0-abcde", reason, message),
            pod("cnd-1-1-fghij", "Running", None),
        ];
        let (client, _) = mock(server(pods, None));
        let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
        launcher.launch(&spec(2, 2)).await.unwrap();
        // At the first status once the pods are listed: no waiting for it to last.
        let status = status_when(&mut launcher, |s| s.running == 1).await;
        let fatal = status.fatal.unwrap_or_default();
        for part in ["pod cnd-1-0-abcde cannot start", reason, message, fix] {
            assert!(fatal.contains(part), "{reason}: {part:?} not in {fatal:?}");
        }
        launcher.stop().await.unwrap();
    }
}

#[test]
fn a_waiting_reason_that_may_pass_is_fatal_only_once_it_has_lasted() {
    let pod = |reason: &str| {
        let pod: Pod = serde_json::from_value(waiting_pod(
            "cnd-1-0-abcde",
            reason,
            "failed to reserve container name",
        ))
        .unwrap();
        vec![Arc::new(pod)]
    };
    let mut since = HashMap::new();
    let t0 = Instant::now();
    for reason in ["CreateContainerError", "RunContainerError"] {
        since.clear();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(pod_status(&pod(reason), &mut since, at(0)).fatal, None);
        assert_eq!(pod_status(&pod(reason), &mut since, at(59)).fatal, None);
        let fatal = pod_status(&pod(reason), &mut since, at(60)).fatal.unwrap();
        assert!(
            fatal.contains(reason)
                && fatal.contains("for 60 s")
                && fatal.contains("kubectl describe pod"),
            "{fatal}"
        );
        // Once it passed (the container is being created again), the clock starts over.
        assert_eq!(
            pod_status(&pod("ContainerCreating"), &mut since, at(61)).fatal,
            None
        );
        assert_eq!(pod_status(&pod(reason), &mut since, at(62)).fatal, None);
        assert!(since.len() == 1);
        // A pod gone is forgotten.
        assert_eq!(pod_status(&[], &mut since, at(63)).fatal, None);
        assert!(since.is_empty());
    }
    // Never fatal: a crash is the Job's to retry, and the others are on their way.
    for reason in ["CrashLoopBackOff", "ContainerCreating", "PodInitializing"] {
        assert_eq!(
            waiting(reason, "cnd-worker:dev"),
            Waiting::Passes,
            "{reason}"
        );
        let status = pod_status(&pod(reason), &mut since, t0 + Duration::from_secs(3600));
        assert_eq!(status.fatal, None, "{reason}");
    }
}

#[tokio::test]
async fn an_unschedulable_pod_is_pending_not_fatal() {
    let mut unschedulable = pod("cnd-1-0-abcde", "Pending", None);
    unschedulable["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}]);
    let pods = vec![unschedulable, pod("cnd-1-1-fghij", "Running", None)];
    let (client, _) = mock(server(pods, None));
    let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
    launcher.launch(&spec(2, 2)).await.unwrap();
    let status = status_when(&mut launcher, |s| s.running == 1).await;
    // A cluster autoscaler may add a node for it.
    assert_eq!((status.pending, status.fatal), (1, None));
    launcher.stop().await.unwrap();
}

/// `%XX` and `+` of a query string, decoded.
fn unescape(query: &str) -> String {
    let bytes = query.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 3 <= bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The shards a pod `deletecollection` names (`cnd/shard in (…)`); `None` when
/// it names none, and would take every pod of the run.
fn shards_named(seen: &Seen) -> Option<Vec<u64>> {
    let query = unescape(&seen.query);
    let list = query.split("cnd/shard in (").nth(1)?.split(')').next()?;
    Some(list.split(',').map(|s| s.parse().unwrap()).collect())
}

/// A client whose API server answers each request on its own after `cost` of
/// (tokio) time, as a real one serves calls side by side.
fn timed_mock(
    answer: Answer,
    cost: impl Fn(&Seen) -> Duration + Send + 'static,
) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    let (service, seen) = timed_service(answer, cost, |_| None);
    (Client::new(service, "default"), seen)
}

/// [`timed_mock`] whose answers may carry a `Retry-After` header
/// (`retry_after`, seconds), behind the retry layer that every client made from
/// a kubeconfig has (429, 503 and 504 tried again, after `Retry-After`).
fn retrying_mock(
    answer: Answer,
    cost: impl Fn(&Seen) -> Duration + Send + 'static,
    retry_after: impl Fn(&Seen) -> Option<u64> + Send + 'static,
) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    let (service, seen) = timed_service(answer, cost, retry_after);
    let retry = tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry());
    let client = kube::client::ClientBuilder::new(service, "default")
        .with_layer(&retry)
        .build();
    (client, seen)
}

type MockService = tower_test::mock::Mock<Request<Body>, Response<Body>>;

fn timed_service(
    answer: Answer,
    cost: impl Fn(&Seen) -> Duration + Send + 'static,
    retry_after: impl Fn(&Seen) -> Option<u64> + Send + 'static,
) -> (MockService, Arc<Mutex<Vec<Seen>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut hanging = Vec::new();
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (answer, cost, after) = (answer(&seen), cost(&seen), retry_after(&seen));
            log.lock().unwrap().push(seen);
            match answer {
                Some((code, value)) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(cost).await;
                        let mut response = Response::builder()
                            .status(code)
                            .header("content-type", "application/json");
                        if let Some(after) = after {
                            response = response.header("retry-after", after.to_string());
                        }
                        respond.send_response(
                            response
                                .body(Body::from(serde_json::to_vec(&value).unwrap()))
                                .unwrap(),
                        )
                    });
                }
                None => hanging.push(respond),
            }
        }
    });
    (service, seen)
}

/// What one pod deletion costs an API server inside a `deletecollection`,
/// which deletes its pods one after another: 1,000 bare pods took over 20 s.
const COST_PER_POD: Duration = Duration::from_millis(20);

#[tokio::test(start_paused = true)]
async fn stopping_2000_bare_pods_makes_bounded_calls_well_within_the_masters_limit() {
    const PODS: u64 = 2000;
    let spec = spec(PODS, PODS);
    // Each pod deletion names at most 50 pods, and costs 20 ms a pod.
    let cost = |seen: &Seen| match (seen.method.as_str(), shards_named(seen)) {
        ("DELETE", Some(shards)) if seen.path.ends_with("/pods") => {
            COST_PER_POD * shards.len() as u32
        }
        ("DELETE", None) if seen.path.ends_with("/pods") => COST_PER_POD * PODS as u32,
        _ => Duration::ZERO,
    };
    let (client, seen) = timed_mock(server(vec![], None), cost);
    let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
    launcher.launch(&spec).await.unwrap();
    let started = tokio::time::Instant::now();
    // The master's limit for one `stop`.
    let limit = cnd_core::MasterOptions::default().call_timeout;
    tokio::time::timeout(limit, launcher.stop())
        .await
        .expect("stop within the master's limit")
        .unwrap();
    let took = started.elapsed();
    let seen = seen.lock().unwrap();
    let deletes: Vec<&Seen> = seen
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with("/pods"))
        .collect();
    let mut deleted: Vec<u64> = deletes
        .iter()
        .flat_map(|r| shards_named(r).expect("a bounded call, never the whole run"))
        .collect();
    deleted.sort_unstable();
    assert_eq!(deleted, (0..PODS).collect::<Vec<_>>(), "each shard once");
    assert!(deletes.iter().all(|r| shards_named(r).unwrap().len() <= 50));
    assert!(deletes
        .iter()
        .all(|r| unescape(&r.query).contains(&format!("cnd/run-id={}", spec.run_id))));
    assert_eq!(deletes.len(), 40);
    // 40 calls of about 1 s, 32 at a time: 2 rounds, where one call took 40 s.
    assert!(took <= Duration::from_secs(3), "{took:?}");
    println!(
        "stopping {PODS} bare pods: {} deletecollection calls of at most 50 pods, \
         {took:?} at 20 ms a pod (one call: {:?})",
        deletes.len(),
        COST_PER_POD * PODS as u32
    );
}

#[tokio::test]
async fn a_stop_cut_short_goes_on_where_it_was() {
    // The group of shards 100-149 times out once (504), as a slow API server's would.
    let failed_once = Arc::new(Mutex::new(false));
    let answer: Answer = Box::new(move |seen| {
        let named = shards_named(seen).unwrap_or_default();
        if seen.method == "DELETE" && named.contains(&100) {
            let mut failed = failed_once.lock().unwrap();
            if !*failed {
                *failed = true;
                return Some((504, status_body(504, "Timeout", "request timed out")));
            }
        }
        server(vec![], None)(seen)
    });
    let (client, seen) = mock(answer);
    let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
    launcher.launch(&spec(230, 230)).await.unwrap();
    let error = cnd_core::distributed::error_chain(&launcher.stop().await.unwrap_err());
    assert!(
        error.contains("shards 100-149") && error.contains("504"),
        "{error}"
    );
    let pod_deletes = |seen: &Mutex<Vec<Seen>>| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path.ends_with("/pods"))
            .map(|r| shards_named(r).unwrap())
            .collect::<Vec<_>>()
    };
    // 230 shards: five groups, the last of 30.
    assert_eq!(pod_deletes(&seen).len(), 5);
    assert!(pod_deletes(&seen)
        .iter()
        .any(|s| s == &(200..230).collect::<Vec<_>>()));
    launcher.stop().await.unwrap();
    let again = pod_deletes(&seen);
    assert_eq!(again.len(), 6, "only the group that failed is asked again");
    assert_eq!(again[5], (100..150).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_job_names_its_running_and_succeeded_shards_and_replaces_a_stalled_pod() {
    let spec = spec(6, 2);
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": spec.name(), "namespace": "cnd-test"},
                     "status": {"active": 2, "succeeded": 3, "completedIndexes": "0,2-3"}});
    let indexed = |name: &str, phase: &str, index: u64| {
        let mut pod = pod(name, phase, None);
        pod["metadata"]["annotations"] =
            json!({"batch.kubernetes.io/job-completion-index": index.to_string()});
        pod
    };
    let pods = vec![
        indexed("a", "Running", 1),
        indexed("b", "Running", 4),
        // Succeeded and already gone from the list: index 3 is in completedIndexes.
        indexed("c", "Succeeded", 2),
        pod("unlabelled", "Running", None),
    ];
    let (client, seen) = mock(server(pods, Some(job)));
    let mut launcher = KubeLauncher::new(client, options(Workload::Job));
    launcher.launch(&spec).await.unwrap();
    let status = status_when(&mut launcher, |s| s.running == 3).await;
    assert_eq!(status.running_shards, Some(vec![1, 4]));
    assert_eq!(status.succeeded_shards, [0, 2, 3]);

    // The master's stall watch asks for shard 4's worker to be replaced: its
    // pod is deleted by its index, and the Job controller starts another.
    launcher.restart(4).await.unwrap();
    let deletes: Vec<Seen> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with("/pods"))
        .cloned()
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(
        deletes[0]
            .query
            .contains("batch.kubernetes.io%2Fjob-completion-index%3D4"),
        "{}",
        deletes[0].query
    );
    assert!(
        deletes[0]
            .query
            .contains(&format!("cnd%2Frun-id%3D{}", spec.run_id)),
        "only this run's pod: {}",
        deletes[0].query
    );
    launcher.stop().await.unwrap();

    // Bare pods are not replaced: the master ends the run naming the shard.
    let (client, _) = mock(server(vec![], None));
    let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
    launcher.launch(&spec).await.unwrap();
    let refused = launcher.restart(1).await.unwrap_err();
    assert!(
        matches!(refused, cnd_core::LaunchError::Refused { .. }),
        "{refused}"
    );
    launcher.stop().await.unwrap();
}

#[test]
fn the_secret_of_the_most_bare_pods_fits_what_etcd_keeps() {
    // Every shard's key, plus one owner reference per pod (what the launcher
    // patches in), must stay under etcd's 1.5 MiB for an object.
    let spec = spec(MAX_BARE_POD_SHARDS, 1);
    let mut secret =
        serde_json::to_value(secret_manifest(&spec, &options(Workload::Pods))).unwrap();
    let owners: Vec<Value> = (0..MAX_BARE_POD_SHARDS)
        .map(|shard| {
            json!({"apiVersion": "v1", "kind": "Pod", "name": format!("{}-{shard}-abcde", spec.name()),
                   "uid": Uuid::new_v4().to_string(), "blockOwnerDeletion": true})
        })
        .collect();
    secret["metadata"]["ownerReferences"] = json!(owners);
    let bytes = serde_json::to_vec(&secret).unwrap().len();
    eprintln!("the Secret of {MAX_BARE_POD_SHARDS} bare pods: {bytes} bytes");
    assert!(bytes < 1024 * 1024, "{bytes} bytes");
}

/// What one pod creation cost a real API server: 1,000 of them one after
/// another took 12.1 s.
const COST_PER_CREATE: Duration = Duration::from_millis(12);

/// What a real API server's calls cost: a pod creation 12 ms, a pod deleted
/// within a `deletecollection` 20 ms.
fn create_and_delete_cost(seen: &Seen) -> Duration {
    match (seen.method.as_str(), shards_named(seen)) {
        ("POST", _) => COST_PER_CREATE,
        ("DELETE", Some(shards)) if seen.path.ends_with("/pods") => {
            COST_PER_POD * shards.len() as u32
        }
        _ => Duration::ZERO,
    }
}

/// The shard of each pod created, from the requests `seen`.
fn created_shards(seen: &[Seen]) -> Vec<u64> {
    let mut shards: Vec<u64> = seen
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .map(|r| {
            r.body["metadata"]["labels"]["cnd/shard"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    shards.sort_unstable();
    shards
}

#[tokio::test(start_paused = true)]
async fn a_thousand_bare_pods_are_created_within_3_s_and_stopped_within_5_s() {
    const PODS: u64 = 1000;
    let spec = spec(PODS, PODS);
    let (client, seen) = timed_mock(server(vec![], None), create_and_delete_cost);
    let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
    let started = tokio::time::Instant::now();
    launcher.launch(&spec).await.unwrap();
    let created = started.elapsed();
    assert_eq!(
        created_shards(&seen.lock().unwrap()),
        (0..PODS).collect::<Vec<_>>()
    );
    // 32 at a time: 32 rounds of 12 ms, not 1,000 (12 s), and never all at once.
    let rounds = PODS.div_ceil(CREATES_IN_FLIGHT as u64) as u32;
    assert!(created >= COST_PER_CREATE * (rounds - 1), "{created:?}");
    assert!(created <= Duration::from_secs(3), "{created:?}");
    let started = tokio::time::Instant::now();
    launcher.stop().await.unwrap();
    let stopped = started.elapsed();
    assert!(stopped <= Duration::from_secs(5), "{stopped:?}");
    println!(
        "{PODS} bare pods: created in {created:?} at {COST_PER_CREATE:?} a call \
         ({CREATES_IN_FLIGHT} in flight), stopped in {stopped:?} at {COST_PER_POD:?} a pod"
    );
}

#[tokio::test(start_paused = true)]
async fn an_api_server_that_answers_429_is_waited_for_as_it_asks() {
    // Priority and fairness: the first 40 pod creations are turned away with
    // 429 and `Retry-After: 1`. Each pod is still created exactly once, about
    // a second later.
    let refused = Arc::new(Mutex::new(0u32));
    let count = Arc::clone(&refused);
    let too_many = move |seen: &Seen| {
        if seen.method == "POST" && seen.path.ends_with("/pods") {
            let mut refused = count.lock().unwrap();
            if *refused < 40 {
                *refused += 1;
                return Some((
                    429,
                    status_body(
                        429,
                        "TooManyRequests",
                        "too many requests, please try again later",
                    ),
                ));
            }
        }
        server(vec![], None)(seen)
    };
    let retry_after = |seen: &Seen| (seen.method == "POST").then_some(1);
    let (client, seen) = retrying_mock(Box::new(too_many), |_| COST_PER_CREATE, retry_after);
    let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
    let spec = spec(100, 100);
    let started = tokio::time::Instant::now();
    launcher.launch(&spec).await.unwrap();
    let took = started.elapsed();
    assert_eq!(*refused.lock().unwrap(), 40);
    let seen = seen.lock().unwrap();
    let posts = seen
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .count();
    assert_eq!(posts, 140, "100 pods and 40 tries again");
    let mut shards = created_shards(&seen);
    shards.dedup();
    assert_eq!(shards, (0..100).collect::<Vec<_>>());
    assert!(
        took >= Duration::from_secs(1) && took <= Duration::from_secs(3),
        "{took:?}"
    );
    println!("100 bare pods, the first 40 creations answered 429 with Retry-After: 1: created in {took:?}");
}

/// A channel that never hears anything, waiting on tokio's clock.
struct Silent;

#[async_trait::async_trait]
impl cnd_core::ResultChannel for Silent {
    fn address(&self) -> &str {
        "silent://"
    }
    async fn receive(
        &mut self,
        wait: Duration,
    ) -> Result<cnd_core::Received, cnd_core::ChannelError> {
        tokio::time::sleep(wait).await;
        Ok(cnd_core::Received::default())
    }
    async fn close(&mut self) -> Result<(), cnd_core::ChannelError> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_deadline_that_strikes_while_1000_pods_are_created_ends_the_run_on_time() {
    const PODS: u64 = 1000;
    let spec = spec(PODS, PODS);
    let (client, seen) = timed_mock(server(vec![], None), create_and_delete_cost);
    let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
    let started = tokio::time::Instant::now();
    let deadline = started.into_std() + Duration::from_millis(200);
    let out = cnd_core::run_master(
        &mut launcher,
        &mut Silent,
        &spec,
        &cnd_core::MasterOptions::with_deadline(Some(deadline)),
        &crate::TokioTimer,
        &cnd_core::CancelToken::new(),
        |_| {},
    )
    .await;
    let took = started.elapsed();
    assert!(
        matches!(out, Ok(cnd_core::MasterOutcome::TimedOut(_))),
        "{out:?}"
    );
    // Cut at the deadline mid-launch; then every shard's pods are deleted,
    // those whose creation was still in flight included.
    let seen = seen.lock().unwrap();
    let mut deleted: Vec<u64> = seen
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with("/pods"))
        .flat_map(|r| shards_named(r).unwrap())
        .collect();
    deleted.sort_unstable();
    assert_eq!(deleted, (0..PODS).collect::<Vec<_>>());
    let created = created_shards(&seen).len();
    assert!(created > 0 && created < PODS as usize, "{created}");
    assert!(
        took <= Duration::from_millis(200) + Duration::from_secs(5),
        "{took:?}"
    );
    println!(
        "deadline 200 ms into creating {PODS} bare pods: {created} asked for, \
         the run over and all deleted {took:?} after its start"
    );
}

#[tokio::test]
async fn retiring_shards_deletes_the_bare_pods_above_and_leaves_a_job_alone() {
    let (client, seen) = mock(server(vec![], None));
    let mut launcher = KubeLauncher::new(client, options(Workload::Pods));
    let spec = spec(130, 130);
    launcher.launch(&spec).await.unwrap();
    launcher.retire_above(12).await.unwrap();
    let mut deleted: Vec<u64> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with("/pods"))
        .inspect(|r| assert!(unescape(&r.query).contains(&format!("cnd/run-id={}", spec.run_id))))
        .flat_map(|r| shards_named(r).expect("bounded calls"))
        .collect();
    deleted.sort_unstable();
    assert_eq!(deleted, (13..130).collect::<Vec<_>>());
    launcher.stop().await.unwrap();

    let (client, seen) = mock(server(vec![], None));
    let mut launcher = KubeLauncher::new(client, options(Workload::Job));
    launcher.launch(&spec).await.unwrap();
    let before = seen.lock().unwrap().len();
    launcher.retire_above(12).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), before, "no call for a Job");
    launcher.stop().await.unwrap();
}
