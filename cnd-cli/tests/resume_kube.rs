//! `submit --resume` of an attempt that ran on Kubernetes, against a fake API
//! server on 127.0.0.1: what the killed attempt left in the cluster is deleted
//! before the new attempt creates anything, whether the resume runs on
//! Kubernetes again or on local workers.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use support::{assert_exit, stderr_of, without_aws, worker_bin, CLI};
use uuid::Uuid;

const NAMESPACE: &str = "cnd-test";

/// What the fake API server holds: one Job, one bare pod and one key Secret
/// of the attempt `earlier`, which a master killed by SIGKILL left behind.
struct Cluster {
    earlier: Uuid,
    /// Each request as `METHOD path?query`, in the order they came.
    seen: Mutex<Vec<String>>,
}

impl Cluster {
    fn metadata(&self, name: &str) -> Value {
        json!({"name": name, "namespace": NAMESPACE, "uid": format!("uid-{name}"),
               "labels": {"app.kubernetes.io/name": "cnd", "cnd/run-id": self.earlier.to_string()}})
    }

    fn list(&self, kind: &str, api_version: &str, items: Vec<Value>) -> Value {
        json!({"apiVersion": api_version, "kind": format!("{kind}List"),
               "metadata": {"resourceVersion": "1"}, "items": items})
    }

    /// The answer to one request: status and JSON body.
    fn answer(&self, method: &str, target: &str) -> (u16, Value) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let of_earlier = query.contains(&self.earlier.to_string());
        let job = format!("cnd-{}", &self.earlier.to_string()[..8]);
        let pod = format!("{job}-3");
        let jobs = format!("/apis/batch/v1/namespaces/{NAMESPACE}/jobs");
        let pods = format!("/api/v1/namespaces/{NAMESPACE}/pods");
        let secrets = format!("/api/v1/namespaces/{NAMESPACE}/secrets");
        let job_object = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": self.metadata(&job),
                                "spec": {"template": {"spec": {"containers": []}}}});
        let pod_object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": self.metadata(&pod),
                                "status": {"phase": "Running"}});
        match (method, path) {
            ("GET", p) if p == jobs && of_earlier => {
                (200, self.list("Job", "batch/v1", vec![job_object]))
            }
            ("GET", p) if p == pods && of_earlier => {
                (200, self.list("Pod", "v1", vec![pod_object]))
            }
            ("GET", p) if p == jobs => (200, self.list("Job", "batch/v1", vec![])),
            ("GET", p) if p == pods => (200, self.list("Pod", "v1", vec![])),
            ("DELETE", p) if p == format!("{jobs}/{job}") => (200, job_object),
            ("DELETE", p) if p == format!("{pods}/{pod}") => (200, pod_object),
            ("DELETE", p) if p == secrets && of_earlier => {
                let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": self.metadata(&format!("{job}-key"))});
                (200, self.list("Secret", "v1", vec![secret]))
            }
            ("DELETE", p) if p == secrets => (200, self.list("Secret", "v1", vec![])),
            // The new attempt may create nothing here: its run fails at once.
            _ => (
                403,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Forbidden",
                       "code": 403, "message": format!("{method} {path} is forbidden in this test")}),
            ),
        }
    }

    /// Serves one connection's requests (HTTP/1.1, kept alive) until it closes.
    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut stream = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                if header == "\r\n" {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut words = request_line.split_whitespace();
            let (method, target) = (words.next().unwrap(), words.next().unwrap());
            self.seen.lock().unwrap().push(format!("{method} {target}"));
            let (status, body) = self.answer(method, target);
            let body = body.to_string();
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            if stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(body.as_bytes()))
                .is_err()
            {
                return;
            }
        }
    }
}

/// Starts the fake API server; returns its port.
fn start(cluster: &Arc<Cluster>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cluster = Arc::clone(cluster);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let cluster = Arc::clone(&cluster);
            std::thread::spawn(move || cluster.serve(stream));
        }
    });
    port
}

fn cli(args: &[&str], home: &Path) -> Command {
    let mut command = Command::new(CLI);
    command
        .args(args)
        .env("HOME", home)
        .env("KUBECONFIG", home.join("kubeconfig"))
        .env("CND_WORKER_BIN", worker_bin())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    without_aws(&mut command);
    command
}

/// A home with a kubeconfig for the fake API server on `port`, and in it the
/// journal of attempt `earlier`: a real one (of a quick local run) without
/// its end, as a master killed mid-run leaves it, its attempt line rewritten
/// to say it ran on Kubernetes in [`NAMESPACE`], reporting by pod status.
fn home_with_killed_attempt(earlier: Uuid, port: u16) -> (std::path::PathBuf, std::path::PathBuf) {
    let home = std::env::temp_dir().join(format!("cnd-resume-kube-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: x\n\
             clusters: [{{name: c, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\n\
             contexts: [{{name: x, context: {{cluster: c, user: u, namespace: {NAMESPACE}}}}}]\n"
        ),
    )
    .unwrap();
    let journal = home.join("run.jsonl");
    let quick = cli(
        &[
            "submit",
            "--launcher",
            "local",
            "-d",
            "8",
            "--pods",
            "1",
            "--journal",
            journal.to_str().unwrap(),
            "--run-id",
            &earlier.to_string(),
        ],
        &home,
    )
    .output()
    .unwrap();
    assert_exit(&quick, 0);
    let text = std::fs::read_to_string(&journal).unwrap();
    let on_cluster = json!({"kind": "attempt", "run_id": earlier.to_string(),
        "launch": {"launcher": "kubernetes", "namespace": NAMESPACE, "channel": "pod-status", "pods": "1"}});
    let unended: String = text
        .lines()
        .filter_map(|l| {
            if l.starts_with("{\"v\"") {
                Some(l.to_string())
            } else if l.contains("\"kind\":\"attempt\"") {
                Some(on_cluster.to_string())
            } else {
                None
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&journal, unended).unwrap();
    (home, journal)
}

/// A fake API server holding what a killed attempt left, and that attempt's
/// home and journal ([`home_with_killed_attempt`]).
fn killed_attempt_on_a_fake_cluster() -> (Arc<Cluster>, std::path::PathBuf, std::path::PathBuf) {
    let earlier = Uuid::new_v4();
    let cluster = Arc::new(Cluster {
        earlier,
        seen: Mutex::new(Vec::new()),
    });
    let port = start(&cluster);
    let (home, journal) = home_with_killed_attempt(earlier, port);
    (cluster, home, journal)
}

/// Asserts that the resumed run said it deleted the earlier attempt's Job,
/// pod and Secret, and returns the requests the fake API server saw.
fn assert_deleted(resumed: &std::process::Output, cluster: &Cluster) -> Vec<String> {
    let said = stderr_of(resumed);
    let earlier = cluster.earlier;
    let job = format!("cnd-{}", &earlier.to_string()[..8]);
    for deleted in [
        format!("deleted job {NAMESPACE}/{job}, left by attempt {earlier}"),
        format!("deleted pod {NAMESPACE}/{job}-3, left by attempt {earlier}"),
        format!("deleted secret {NAMESPACE}/{job}-key, left by attempt {earlier}"),
    ] {
        assert!(said.contains(&deleted), "{deleted:?} not said: {said}");
    }
    let seen = cluster.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|r| r.starts_with(&format!(
            "DELETE /apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job}"
        ))),
        "the job was not deleted: {seen:#?}"
    );
    seen
}

#[test]
fn a_resumed_run_first_deletes_what_its_killed_attempt_left_in_the_cluster() {
    let (cluster, home, journal) = killed_attempt_on_a_fake_cluster();
    // On Kubernetes again, as the journal says (no flags).
    let resumed = cli(&["submit", "--resume", journal.to_str().unwrap()], &home)
        .output()
        .unwrap();
    // This cluster forbids every creation: the new attempt fails, exit 1.
    assert_exit(&resumed, 1);
    let seen = assert_deleted(&resumed, &cluster);
    // Deleted before anything new was asked for.
    let job = format!("cnd-{}", &cluster.earlier.to_string()[..8]);
    let first_create = seen
        .iter()
        .position(|r| r.starts_with("POST"))
        .expect("a creation was tried");
    let job_deleted = seen
        .iter()
        .position(|r| {
            r.starts_with(&format!(
                "DELETE /apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job}"
            ))
        })
        .expect("checked above");
    assert!(job_deleted < first_create, "{seen:#?}");
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn a_run_resumed_on_local_workers_still_deletes_what_its_attempt_left_in_the_cluster() {
    let (cluster, home, journal) = killed_attempt_on_a_fake_cluster();
    let resumed = cli(
        &[
            "submit",
            "--resume",
            journal.to_str().unwrap(),
            "--launcher",
            "local",
        ],
        &home,
    )
    .output()
    .unwrap();
    // The rest of the search runs here, and finds the answer.
    assert_exit(&resumed, 0);
    let seen = assert_deleted(&resumed, &cluster);
    // Nothing was created in the cluster: the workers are local.
    assert!(!seen.iter().any(|r| r.starts_with("POST")), "{seen:#?}");
    std::fs::remove_dir_all(&home).unwrap();
}
