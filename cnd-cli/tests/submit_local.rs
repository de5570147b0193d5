//! End to end, without a cluster: `cnd-cli submit --launcher local` with real
//! `cnd-worker` processes reporting over their stdout or a local SQS (moto).
//!
//! Needs `moto_server` (pip install 'moto[server]'; `CND_MOTO_SERVER` names it)
//! for the SQS tests; the worker binary comes from `support::worker_bin`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageAttributeValue;
use cnd_cloud::sqs;
use cnd_cloud::sqs::testing::{Fault, FaultProxy, MotoServer};
use cnd_core::{verify, Puzzle, Report, ReportKind};
use serde_json::Value;
use support::{assert_exit, processes_where, stderr_of, without_aws, worker_bin, CLI};
use uuid::Uuid;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `cnd-cli submit --launcher local ARGS`, talking to `moto`.
fn submit(moto: &MotoServer, args: &[&str]) -> Command {
    let mut command = Command::new(CLI);
    command
        .args(["submit", "--launcher", "local", "--channel", "sqs"])
        .args(args)
        .env("CND_WORKER_BIN", worker_bin())
        .env("AWS_ENDPOINT_URL_SQS", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CND_PROGRESS_SECS", "1")
        // Journals of these runs stay out of the user's state directory.
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("cnd-test-state"),
        )
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// `cnd-cli ARGS` (no launcher) talking to `moto`, as `cleanup` is run.
fn cli_with(moto: &MotoServer, args: &[&str]) -> Command {
    let mut command = Command::new(CLI);
    command
        .args(args)
        .env("AWS_ENDPOINT_URL_SQS", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG");
    command
}

/// Starts `command` (a search that will not end by itself) and waits until
/// `pods` of its workers run.
fn start_endless_run(command: &mut Command, run: Uuid, pods: usize) -> Child {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_workers(&mut child, run, pods);
    child
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Pids of the processes (workers) whose environment says they belong to `run`.
fn processes_of(run: Uuid) -> Vec<u32> {
    let needle = format!("CND_RUN_ID={run}");
    processes_where(|vars| vars.contains(&needle.as_bytes()))
}

/// Whether the run's queue `cnd-<run>` still exists.
fn run_queue_exists(moto: &MotoServer, run: Uuid) -> bool {
    runtime().block_on(async {
        let client = moto.client().await;
        let queues = sqs::list_run_queues(&client).await.unwrap();
        queues
            .iter()
            .any(|url| url.ends_with(&sqs::queue_name(run)))
    })
}

fn assert_nothing_left(moto: &MotoServer, run: Uuid) {
    assert!(
        !run_queue_exists(moto, run),
        "the run's queue is still there"
    );
    assert_nothing_left_locally(run);
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "cnd-cli did not end within {limit:?}; stderr: {}",
                stderr_of(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Waits (bounded) until `count` workers of `run` run and returns their pids,
/// or `None` as soon as `child` (the master) has ended: a run that can end by
/// itself may do so before a poll sees its workers on a loaded machine.
fn workers_unless_ended(child: &mut Child, run: Uuid, count: usize) -> Option<Vec<u32>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pids = processes_of(run);
        if pids.len() >= count {
            return Some(pids);
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "the workers of {run} never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// As [`workers_unless_ended`], for a run that cannot end by itself.
fn wait_for_workers(child: &mut Child, run: Uuid, count: usize) -> Vec<u32> {
    workers_unless_ended(child, run, count)
        .unwrap_or_else(|| panic!("cnd-cli ended before {count} workers of {run} ran"))
}

#[test]
fn finds_a_golden_nonce_and_leaves_nothing_behind() {
    let moto = MotoServer::start();
    let run = Uuid::new_v4();
    let output = submit(
        &moto,
        &[
            "-d",
            "14",
            "--pods",
            "3",
            "--json",
            "--run-id",
            &run.to_string(),
        ],
    )
    .output()
    .unwrap();
    assert_exit(&output, 0);
    let result = json_of(&output);
    assert_eq!(result["outcome"], "found");
    assert_eq!(result["run_id"], run.to_string());
    let nonce: u64 = result["nonce"].as_str().unwrap().parse().unwrap();
    let verification = verify(&Puzzle::with_default_block(14).unwrap(), nonce);
    assert!(verification.golden, "{nonce} is not golden");
    assert_eq!(result["hash"], cnd_core::puzzle::to_hex(&verification.hash));
    assert!(result["worker"].as_str().unwrap().starts_with("local-"));
    assert!(result["received_after_ms"].as_u64().is_some());
    assert!(result["worker_elapsed_ms"].as_u64().is_some());
    assert_nothing_left(&moto, run);
}

#[test]
fn forged_and_malformed_messages_are_ignored() {
    let moto = MotoServer::start();
    let run = Uuid::new_v4();
    let puzzle = Puzzle::with_default_block(16).unwrap();
    let not_golden = (0..).find(|&n| !verify(&puzzle, n).golden).unwrap();
    let forge = |shard: u64, hashes: u64, kind: ReportKind| {
        Report {
            run_id: run,
            shard,
            worker: "forger".into(),
            hashes,
            elapsed_ms: 1,
            kind,
        }
        .to_json()
    };
    let forged = forge(
        0,
        1,
        ReportKind::Found {
            nonce: not_golden,
            hash: [0; 32],
        },
    );
    // The attack of issue 8: "exhausted" for every shard, each with its exact
    // length, under the run's id (which anyone who can read a pod spec knows).
    // Without the run's key they must not end the run.
    let exhausted: Vec<String> = (0..2)
        .map(|shard| forge(shard, 1 << 31, ReportKind::Exhausted))
        .collect();
    // A shared queue, with the forgeries already on it under the run's id.
    let queue_url = runtime().block_on(async {
        let client = moto.client().await;
        let url = client
            .create_queue()
            .queue_name("cnd-shared-e2e")
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        for body in [
            exhausted[0].as_str(),
            exhausted[1].as_str(),
            forged.as_str(),
            "this is not JSON",
        ] {
            client
                .send_message()
                .queue_url(&url)
                .message_body(body)
                .message_attributes(
                    sqs::RUN_ID_ATTRIBUTE,
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(run.to_string())
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
        url
    });
    let output = submit(
        &moto,
        &[
            "-d",
            "16",
            "--pods",
            "2",
            "--json",
            "--queue-url",
            &queue_url,
            "--run-id",
            &run.to_string(),
        ],
    )
    .output()
    .unwrap();
    assert_exit(&output, 0);
    let result = json_of(&output);
    assert_ne!(result["worker"], "forger");
    let nonce: u64 = result["nonce"].as_str().unwrap().parse().unwrap();
    assert!(verify(&puzzle, nonce).golden);
    assert_eq!(
        result["ignored_messages"],
        4,
        "stderr: {}",
        stderr_of(&output)
    );
    // A shared queue is the user's: it stays.
    let still_there = runtime().block_on(async {
        let client = moto.client().await;
        sqs::queue_url_for_name(&client, "cnd-shared-e2e")
            .await
            .unwrap()
    });
    assert!(still_there.is_some());
    assert_nothing_left(&moto, run);
}

#[test]
fn an_empty_range_is_exhausted_quickly() {
    let puzzle = Puzzle::with_default_block(30).unwrap();
    assert!(
        (0..3000).all(|n| !verify(&puzzle, n).golden),
        "the range must hold no golden nonce"
    );
    let moto = MotoServer::start();
    let run = Uuid::new_v4();
    worker_bin(); // built before the clock starts
    let started = Instant::now();
    let output = submit(
        &moto,
        &[
            "-d",
            "30",
            "--range",
            "0..3000",
            "--pods",
            "2",
            "--json",
            "--run-id",
            &run.to_string(),
        ],
    )
    .output()
    .unwrap();
    assert_exit(&output, 3);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    let result = json_of(&output);
    assert_eq!(result["outcome"], "exhausted");
    assert_eq!(result["hashes"], 3000);
    assert_nothing_left(&moto, run);
}

#[test]
fn a_killed_worker_is_restarted_and_the_run_still_succeeds() {
    let moto = MotoServer::start();
    // A find before the kill lands would prove nothing: try again (on a loaded
    // machine the run can even end before a poll sees its workers).
    for _attempt in 0..5 {
        let run = Uuid::new_v4();
        let mut child = submit(
            &moto,
            &[
                "-d",
                "26",
                "--pods",
                "2",
                "-v",
                "--json",
                "--run-id",
                &run.to_string(),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let Some(workers) = workers_unless_ended(&mut child, run, 1) else {
            let output = child.wait_with_output().unwrap();
            assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
            assert_nothing_left(&moto, run);
            eprintln!("the run ended before its workers were seen; again");
            continue;
        };
        let victim = workers[0];
        let _ = Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status();
        let output = wait_with_timeout(child, Duration::from_secs(300));
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
        assert_nothing_left(&moto, run);
        if stderr.contains("starting it again") {
            let nonce: u64 = json_of(&output)["nonce"].as_str().unwrap().parse().unwrap();
            assert!(verify(&Puzzle::with_default_block(26).unwrap(), nonce).golden);
            return;
        }
        eprintln!("the run ended before the kill landed; again");
    }
    panic!("the killed worker was never restarted");
}

/// Starts a long run, sends `signal` to the master once its workers run, and
/// checks the exit code, the time to stop, and that nothing is left.
fn stops_on(signal: &str, code: i32) {
    let moto = MotoServer::start();
    let run = Uuid::new_v4();
    let child = start_endless_run(
        &mut submit(
            &moto,
            &["-d", "60", "--pods", "2", "--run-id", &run.to_string()],
        ),
        run,
        2,
    );
    let started = Instant::now();
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = wait_with_timeout(child, Duration::from_secs(30));
    assert_eq!(
        output.status.code(),
        Some(code),
        "SIG{signal}: stderr: {}",
        stderr_of(&output)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?} to stop on SIG{signal}",
        started.elapsed()
    );
    assert_nothing_left(&moto, run);
}

#[test]
fn sigint_exits_130_and_leaves_nothing_behind() {
    stops_on("INT", 130);
}

#[test]
fn sigterm_exits_143_and_leaves_nothing_behind() {
    stops_on("TERM", 143);
}

/// `submit` talking to moto through a [`FaultProxy`].
fn submit_via(proxy: &FaultProxy, moto: &MotoServer, args: &[&str]) -> Command {
    let mut command = submit(moto, args);
    command.env("AWS_ENDPOINT_URL_SQS", proxy.endpoint());
    command
}

#[test]
fn a_queue_that_stalls_mid_run_cannot_hold_off_sigint_and_is_still_removed() {
    let moto = MotoServer::start();
    let proxy = FaultProxy::start(&moto.endpoint());
    let run = Uuid::new_v4();
    let child = start_endless_run(
        &mut submit_via(
            &proxy,
            &moto,
            &["-d", "60", "--pods", "2", "--run-id", &run.to_string()],
        ),
        run,
        2,
    );
    // SQS now accepts connections and answers nothing; the master's long poll hangs.
    proxy.set(Fault::Stall);
    std::thread::sleep(Duration::from_millis(1500));
    let signalled = Instant::now();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    // The run stops at once: its workers are gone within a couple of seconds,
    // although the queue cannot be deleted yet.
    while !processes_of(run).is_empty() {
        assert!(
            signalled.elapsed() < Duration::from_secs(3),
            "workers still run {:?} after SIGINT",
            signalled.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("workers gone {:?} after SIGINT", signalled.elapsed());
    // SQS comes back while cleanup retries: the queue is deleted after all.
    std::thread::sleep(Duration::from_secs(2));
    proxy.set(Fault::Pass);
    let output = wait_with_timeout(child, Duration::from_secs(40));
    eprintln!("exited {:?} after SIGINT", signalled.elapsed());
    assert_exit(&output, 130);
    assert_nothing_left(&moto, run);
}

#[test]
fn a_queue_that_never_answers_is_bounded_by_the_timeout_and_by_sigint() {
    let moto = MotoServer::start();
    let proxy = FaultProxy::start(&moto.endpoint());
    proxy.set(Fault::Stall);
    worker_bin(); // built before the clock starts
                  // --timeout bounds the setup too: no answer at all ends with a clear error.
    let started = Instant::now();
    let output = wait_with_timeout(
        submit_via(
            &proxy,
            &moto,
            &["-d", "60", "--pods", "1", "--timeout", "2s"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
        Duration::from_secs(30),
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("no answer within"), "{stderr}");
    eprintln!(
        "--timeout 2s against a stalled queue: exit 1 after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );

    // SIGTERM while the queue is being created: out at once with 143.
    let child = submit_via(&proxy, &moto, &["-d", "60", "--pods", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let signalled = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = wait_with_timeout(child, Duration::from_secs(30));
    eprintln!(
        "SIGTERM during a stalled queue creation: exit after {:?}",
        signalled.elapsed()
    );
    assert_exit(&output, 143);
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "took {:?}",
        signalled.elapsed()
    );
}

#[test]
fn workers_die_with_a_master_killed_by_sigkill() {
    let moto = MotoServer::start();
    let run = Uuid::new_v4();
    let mut child = submit(
        &moto,
        &["-d", "60", "--pods", "2", "--run-id", &run.to_string()],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_for_workers(&mut child, run, 2);
    child.kill().unwrap(); // SIGKILL: no handler, no cleanup of its own
    child.wait().unwrap();
    let killed = Instant::now();
    while !processes_of(run).is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(3),
            "workers of a dead master still run after {:?}",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "workers gone {:?} after the master's SIGKILL",
        killed.elapsed()
    );
    // What a dead master cannot remove, `cleanup --run` does.
    assert!(run_queue_exists(&moto, run));
    let cleanup = cli_with(
        &moto,
        &["cleanup", "--run", &run.to_string(), "--queues-only"],
    )
    .output()
    .unwrap();
    assert_exit(&cleanup, 0);
    assert_nothing_left(&moto, run);
}

#[test]
fn a_resumed_run_first_removes_the_queue_its_killed_attempt_left() {
    let moto = MotoServer::start();
    let run = Uuid::new_v4();
    let home = temp_home("resume-queue");
    let journal = home.join("run.jsonl");
    let journal = journal.to_str().unwrap();
    let mut first = submit(
        &moto,
        &[
            "-d",
            "60",
            "--pods",
            "1",
            "--run-id",
            &run.to_string(),
            "--journal",
            journal,
        ],
    );
    let mut child = start_endless_run(&mut first, run, 1);
    child.kill().unwrap(); // SIGKILL: its queue stays
    child.wait().unwrap();
    assert!(run_queue_exists(&moto, run));
    // The resumed attempt (still endless: cut short by its own --timeout)
    // deletes the dead attempt's queue before it makes its own.
    let resumed = submit(&moto, &["--resume", journal, "--timeout", "3s", "--json"])
        .output()
        .unwrap();
    assert_exit(&resumed, 4);
    let said = stderr_of(&resumed);
    assert!(said.contains(&format!("left by attempt {run}")), "{said}");
    assert!(!run_queue_exists(&moto, run), "{said}");
    let second: Uuid = json_of(&resumed)["run_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(second, run);
    assert_nothing_left(&moto, second);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn cleanup_all_never_removes_the_queue_of_a_run_in_progress() {
    let moto = MotoServer::start();
    let run = Uuid::new_v4();
    let child = start_endless_run(
        &mut submit(
            &moto,
            &["-d", "60", "--pods", "1", "--run-id", &run.to_string()],
        ),
        run,
        1,
    );
    let kept = cli_with(&moto, &["cleanup", "--all", "--queues-only"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&kept.stdout);
    assert_exit(&kept, 0);
    assert!(
        stdout.contains("kept queue") && stdout.contains(&run.to_string()),
        "{stdout}"
    );
    assert!(run_queue_exists(&moto, run));
    // The run goes on undisturbed, and ends cleanly.
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let output = wait_with_timeout(child, Duration::from_secs(30));
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(130), "stderr: {stderr}");
    assert!(!stderr.contains("NonExistentQueue"), "{stderr}");
    assert_nothing_left(&moto, run);
}

#[test]
fn a_queue_that_goes_down_for_good_ends_the_run_with_a_clear_error() {
    let moto = MotoServer::start();
    let proxy = FaultProxy::start(&moto.endpoint());
    let run = Uuid::new_v4();
    let child = start_endless_run(
        &mut submit_via(
            &proxy,
            &moto,
            &[
                "-d",
                "60",
                "--pods",
                "1",
                "--retry-for",
                "2s",
                "--run-id",
                &run.to_string(),
            ],
        ),
        run,
        1,
    );
    // Every connection to SQS is now closed at once, for good.
    proxy.set(Fault::Cut);
    let cut = Instant::now();
    let output = wait_with_timeout(child, Duration::from_secs(60));
    let stderr = stderr_of(&output);
    eprintln!(
        "SQS down for good, --retry-for 2s: exit after {:?}",
        cut.elapsed()
    );
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("could not receive results"), "{stderr}");
    // The one thing it could not remove is named, with how to remove it later.
    assert!(
        stderr.contains("closing the result channel failed") && stderr.contains("cleanup"),
        "{stderr}"
    );
    assert!(
        cut.elapsed() < Duration::from_secs(20),
        "{:?}",
        cut.elapsed()
    );
    assert!(processes_of(run).is_empty(), "workers still run");
    // SQS back: the queue the dead endpoint kept is removed by hand here.
    runtime().block_on(async {
        let client = moto.client().await;
        let url = sqs::queue_url_for_name(&client, &sqs::queue_name(run))
            .await
            .unwrap()
            .unwrap();
        sqs::delete_queue(&client, &url).await.unwrap();
    });
    assert_nothing_left(&moto, run);
}

#[test]
fn an_sqs_that_crashes_and_comes_back_empty_ends_the_run_with_a_clear_error() {
    let mut moto = MotoServer::start();
    let run = Uuid::new_v4();
    let child = start_endless_run(
        &mut submit(
            &moto,
            &["-d", "60", "--pods", "2", "--run-id", &run.to_string()],
        ),
        run,
        2,
    );
    // SIGKILL the SQS server and start it again, empty: the run's queue is gone.
    moto.restart();
    let restarted = Instant::now();
    let output = wait_with_timeout(child, Duration::from_secs(60));
    let stderr = stderr_of(&output);
    eprintln!("SQS restarted empty: exit after {:?}", restarted.elapsed());
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("could not receive results") && stderr.contains("NonExistentQueue"),
        "{stderr}"
    );
    assert!(restarted.elapsed() < Duration::from_secs(30));
    assert_nothing_left(&moto, run);
}

#[test]
fn cleanup_without_a_kubeconfig_says_what_it_skipped() {
    let moto = MotoServer::start();
    let output = cli_with(&moto, &["cleanup", "--all"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("skipped Kubernetes"), "{stderr}");
    // The queues half still ran.
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("no ended cnd run queues"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn a_slow_queue_delays_the_answer_but_never_changes_it() {
    let moto = MotoServer::start();
    let proxy = FaultProxy::start(&moto.endpoint());
    // Every chunk, each way, held 300 ms: each SQS call takes ~0.6 s or more.
    proxy.delay(Duration::from_millis(300));
    worker_bin(); // built before the clock starts
    let run = Uuid::new_v4();
    let started = Instant::now();
    let output = wait_with_timeout(
        submit_via(
            &proxy,
            &moto,
            &[
                "-d",
                "14",
                "--pods",
                "2",
                "--json",
                "--run-id",
                &run.to_string(),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
        Duration::from_secs(120),
    );
    eprintln!(
        "SQS delayed 300 ms per chunk: found after {:?}",
        started.elapsed()
    );
    assert_exit(&output, 0);
    let nonce: u64 = json_of(&output)["nonce"].as_str().unwrap().parse().unwrap();
    assert!(verify(&Puzzle::with_default_block(14).unwrap(), nonce).golden);
    assert_nothing_left(&moto, run);
}

/// `cnd-cli ARGS` as on a fresh machine: no AWS settings or files, no moto on PATH.
fn bare_cli(args: &[&str], home: &Path) -> Command {
    let mut command = Command::new(CLI);
    command.args(args).stdin(Stdio::null());
    without_aws(&mut command);
    command
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .env_remove("RUST_LOG");
    // The worker sits next to cnd-cli, where submit looks by default.
    if worker_bin() == Path::new(CLI).with_file_name("cnd-worker") {
        command.env_remove("CND_WORKER_BIN");
    } else {
        command.env("CND_WORKER_BIN", worker_bin());
    }
    command
}

fn temp_home(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnd-{name}-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_readmes_local_example_runs_as_written_with_nothing_installed() {
    let readme = include_str!("../../README.md");
    let line = readme
        .lines()
        .find(|l| l.contains("cnd-cli submit --launcher local"))
        .expect("the README has a local submit example");
    let command = line
        .split("cnd-cli ")
        .nth(1)
        .and_then(|rest| rest.split('#').next())
        .unwrap();
    let args: Vec<&str> = command.split_whitespace().collect();
    let home = temp_home("readme");
    let output = bare_cli(&args, &home).output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{line}\nstderr: {stderr}");
    assert!(
        stderr.contains("reports via the workers' stdout"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let nonce: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Golden nonce"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no nonce in: {stdout}"));
    let difficulty: u32 = args
        .windows(2)
        .find(|w| w[0] == "-d")
        .map(|w| w[1].parse().unwrap())
        .unwrap();
    assert!(verify(&Puzzle::with_default_block(difficulty).unwrap(), nonce).golden);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn stdout_reports_survive_forged_lines_and_a_worker_killed_mid_line() {
    let dir = temp_home("forged-stdout");
    let run = Uuid::new_v4();
    // Each worker first prints an unsigned `exhausted` for its whole shard and
    // one with a wrong signature (either would end the run as "exhausted" if
    // believed); shard 0's first attempt then dies in the middle of a line.
    let forged = |shard: u64| {
        let hashes = 1u64 << 31;
        let body = format!(
            r#"{{"v":1,"run_id":"{run}","kind":"exhausted","shard":{shard},"worker":"forger","hashes":{hashes},"elapsed_ms":1}}"#
        );
        let unsigned = cnd_core::Message::unsigned(body.clone()).to_envelope();
        let wrong = cnd_core::Message {
            signature: Some("0".repeat(64)),
            ..cnd_core::Message::unsigned(body)
        }
        .to_envelope();
        format!("{unsigned}\n{wrong}\n")
    };
    for shard in 0..2 {
        std::fs::write(dir.join(format!("forged-{shard}")), forged(shard)).unwrap();
    }
    let script = dir.join("worker.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat {d}/forged-$CND_SHARD_INDEX\n\
             if [ \"$CND_SHARD_INDEX\" = 0 ] && [ ! -e {d}/killed ]; then\n\
             touch {d}/killed; printf '{{\"body\":\"{{\\\\\"v\\\\\":1,'; kill -9 $$\nfi\n\
             exec {worker}\n",
            d = dir.display(),
            worker = worker_bin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let output = bare_cli(
        &[
            "submit",
            "--launcher",
            "local",
            "--pods",
            "2",
            "-d",
            "16",
            "--json",
            "-v",
            "--run-id",
            &run.to_string(),
        ],
        &dir,
    )
    .env("CND_WORKER_BIN", &script)
    .output()
    .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    let result = json_of(&output);
    assert_eq!(result["outcome"], "found", "{result}");
    let nonce: u64 = result["nonce"].as_str().unwrap().parse().unwrap();
    assert!(verify(&Puzzle::with_default_block(16).unwrap(), nonce).golden);
    // 2 forged lines per worker start, 3 starts (shard 0 twice).
    assert!(
        result["ignored_messages"].as_u64().unwrap() >= 4,
        "{result}"
    );
    assert!(stderr.contains("starting it again"), "{stderr}");
    assert!(dir.join("killed").exists());
    assert_nothing_left_locally(run);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stdout_channel_says_exhausted_when_every_shard_is_searched() {
    let home = temp_home("exhausted-stdout");
    let run = Uuid::new_v4();
    let output = bare_cli(
        &[
            "submit",
            "--launcher",
            "local",
            "--pods",
            "3",
            "-d",
            "40",
            "--range",
            "1000..4000",
            "--json",
            "--run-id",
            &run.to_string(),
        ],
        &home,
    )
    .output()
    .unwrap();
    assert_exit(&output, 3);
    let result = json_of(&output);
    assert_eq!(result["outcome"], "exhausted");
    assert_eq!(result["hashes"], 3000);
    assert_nothing_left_locally(run);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn channels_that_cannot_work_are_refused_before_anything_runs() {
    let home = temp_home("bad-channel");
    for (args, needle) in [
        (
            &[
                "submit",
                "--launcher",
                "local",
                "--channel",
                "pod-status",
                "--pods",
                "1",
                "-d",
                "8",
            ][..],
            "--channel pod-status needs --launcher kubernetes",
        ),
        (
            &[
                "submit",
                "--channel",
                "stdout",
                "--pods",
                "1",
                "-d",
                "8",
                "--dry-run",
            ][..],
            "--channel stdout needs --launcher local",
        ),
        (
            &[
                "submit",
                "--launcher",
                "local",
                "--channel",
                "stdout",
                "--queue-name",
                "q",
                "--pods",
                "1",
                "-d",
                "8",
            ][..],
            "name an SQS queue",
        ),
    ] {
        let output = bare_cli(args, &home).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr_of(&output).contains(needle),
            "{}",
            stderr_of(&output)
        );
    }
    std::fs::remove_dir_all(&home).unwrap();
}

fn assert_nothing_left_locally(run: Uuid) {
    // Killed workers are reaped by the master before it exits; allow /proc a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !processes_of(run).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        processes_of(run),
        Vec::<u32>::new(),
        "workers of the run still run"
    );
}

#[test]
fn every_channel_returns_the_same_verified_answer() {
    // One shard, so the answer is that shard's smallest golden nonce whichever
    // way it travels. hashlib: the smallest nonce of COMSM0010cloud with ≥ 18
    // leading zero bits is 137342 (hash 000029a4a99ae458…).
    let args = ["-d", "18", "--pods", "1", "--range", "0..1000000", "--json"];
    let moto = MotoServer::start();
    let over_sqs = submit(&moto, &args).output().unwrap();
    let home = temp_home("same-answer");
    let mut local = vec!["submit", "--launcher", "local", "--channel", "stdout"];
    local.extend(args);
    let over_stdout = bare_cli(&local, &home).output().unwrap();
    for output in [&over_sqs, &over_stdout] {
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
        let result = json_of(output);
        assert_eq!(result["nonce"], "137342", "{result}");
        assert_eq!(
            result["hash"],
            "000029a4a99ae4582c2ef4d5985f95acf83207fba4d496434e04548d172d37dc"
        );
    }
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn a_queue_name_that_names_no_queue_is_bad_input_and_starts_nothing() {
    let moto = MotoServer::start();
    let run = Uuid::new_v4();
    let output = submit(
        &moto,
        &[
            "-d",
            "8",
            "--pods",
            "1",
            "--queue-name",
            "no-such-queue",
            "--run-id",
            &run.to_string(),
        ],
    )
    .output()
    .unwrap();
    assert_exit(&output, 2);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("\"no-such-queue\"") && stderr.contains("no queue of that name"),
        "{stderr}"
    );
    assert_nothing_left(&moto, run);
}

#[test]
fn submit_smallest_gives_runs_answer_whatever_finds_first() {
    // hashlib: the smallest nonce of COMSM0010cloud with ≥ 20 leading zero bits
    // is 1027827 (hash 000003f27ca93665…). Over 4 shards of the whole space the
    // first find is another shard's (2147573155 was seen): --smallest waits for
    // shard 0.
    let home = temp_home("smallest");
    let submit = |args: &[&str]| {
        let mut all = vec![
            "submit",
            "--launcher",
            "local",
            "--channel",
            "stdout",
            "--smallest",
            "--json",
        ];
        all.extend(args);
        bare_cli(&all, &home).output().unwrap()
    };
    let output = submit(&["-d", "20", "--pods", "4"]);
    assert_exit(&output, 0);
    let result = json_of(&output);
    assert_eq!(
        (&result["nonce"], &result["shard"], &result["answer"]),
        (
            &Value::from("1027827"),
            &Value::from(0),
            &Value::from("smallest")
        ),
        "{result}"
    );
    assert_eq!(
        result["hash"],
        "000003f27ca9366573aa9eb2555e87b51903a0ce826f4231702054425b2c8054"
    );
    // Random puzzles, more shards than pods: the same answer as `run`.
    for (difficulty, pods, shards) in [("14", "3", "7"), ("16", "2", "5"), ("12", "4", "16")] {
        let block = Uuid::new_v4().to_string();
        let args = ["--block", &block, "-d", difficulty, "--range", "0..3000000"];
        let mut run_args = vec!["run", "--json"];
        run_args.extend(args);
        let by_run = bare_cli(&run_args, &home).output().unwrap();
        let mut submit_args = vec!["--pods", pods, "--shards", shards];
        submit_args.extend(args);
        let by_submit = submit(&submit_args);
        let (by_run, by_submit) = (json_of(&by_run), json_of(&by_submit));
        assert_eq!(by_run["outcome"], "found", "{by_run}");
        assert_eq!(
            (&by_submit["nonce"], &by_submit["hash"]),
            (&by_run["nonce"], &by_run["hash"]),
            "block {block} D = {difficulty}: {by_submit} vs {by_run}"
        );
    }
    std::fs::remove_dir_all(&home).unwrap();
}

/// A local run that finds at once (D = 8, one worker), with `extra` flags.
fn quick_local_run(home: &Path, extra: &[&str]) {
    let mut args = vec!["submit", "--launcher", "local", "-d", "8", "--pods", "1"];
    args.extend(extra);
    assert_exit(&bare_cli(&args, home).output().unwrap(), 0);
}

/// The journal lines of `kind` in `text`, as JSON.
fn journal_lines<'a>(text: &'a str, kind: &'a str) -> impl Iterator<Item = Value> + 'a {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(move |v| v["kind"] == kind)
}

#[test]
fn a_run_killed_by_sigkill_resumes_and_searches_only_what_was_left() {
    // D = 60 holds no golden nonce in 2^28 nonces (odds 2^-32): the run ends
    // exhausted, and every nonce must be counted exactly once over both attempts.
    let home = temp_home("resume");
    let run = Uuid::new_v4();
    let range_len: u64 = 1 << 28;
    let range = format!("0..{range_len}");
    let args = [
        "submit",
        "--launcher",
        "local",
        "--channel",
        "stdout",
        "--json",
        "-d",
        "60",
        "--range",
        &range,
        "--pods",
        "2",
        "--shards",
        "8",
        "--progress-every",
        "100ms",
        // One thread a worker: a shard of 2^25 lasts several progress reports
        // even on a many-core machine, so the kill comes mid-run.
        "--threads",
        "1",
        "--run-id",
        &run.to_string(),
    ];
    let mut child = bare_cli(&args, &home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = home.join(format!(".local/state/cnd/runs/{run}.jsonl"));
    // Killed once the journal holds an exhausted shard and a prefix of another.
    let started = Instant::now();
    let before = loop {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        let done: Vec<u64> = journal_lines(&text, "exhausted")
            .map(|v| v["shard"].as_u64().unwrap())
            .collect();
        let partial =
            journal_lines(&text, "searched").any(|v| !done.contains(&v["shard"].as_u64().unwrap()));
        if !done.is_empty() && partial {
            break text;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed: {text}"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "{text}");
        std::thread::sleep(Duration::from_millis(5));
    };
    // While it runs its journal is its own: a second resume is refused, and
    // cleanup neither offers it as resumable nor removes it. Frozen first, so
    // that the run cannot end while they are tried; killed before anything is
    // asserted, so that a failure leaves no frozen run behind.
    // SAFETY: kill(2) on our own child's pid, which it keeps until waited for.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGSTOP);
    }
    let twice = bare_cli(
        &[
            "submit",
            "--resume",
            &run.to_string(),
            "--launcher",
            "local",
        ],
        &home,
    )
    .output();
    let cleaned = bare_cli(&["cleanup", "--all", "--force"], &home).output();
    let journal_kept = journal.exists();
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    let (twice, cleaned) = (twice.unwrap(), cleaned.unwrap());
    assert_exit(&twice, 2);
    let said = stderr_of(&twice);
    assert!(said.contains("is in use by another cnd process"), "{said}");
    let said = support::stdout_of(&cleaned);
    assert!(
        said.contains(&format!("kept journal {run}: in use")),
        "{said}"
    );
    assert!(journal_kept);
    while !processes_of(run).is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "workers outlive their master"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let after_kill = std::fs::read_to_string(&journal).unwrap();
    assert!(after_kill.starts_with(&before), "a journal only grows");
    let done_before: Vec<u64> = journal_lines(&after_kill, "exhausted")
        .map(|v| v["shard"].as_u64().unwrap())
        .collect();

    // Resumed by its id: nothing about the puzzle, nor how it ran, is given
    // again (without the journal's --launcher local it would look for a cluster).
    let resumed = bare_cli(&["submit", "--resume", &run.to_string(), "--json"], &home)
        .output()
        .unwrap();
    assert_exit(&resumed, 3);
    let said = stderr_of(&resumed);
    assert!(
        said.contains(
            "as the last attempt ran: --pods 2 --launcher local --channel stdout --threads 1\n"
        ),
        "{said}"
    );
    let result = json_of(&resumed);
    assert_eq!(result["outcome"], "exhausted", "{result}");
    assert_eq!(
        result["hashes"], range_len,
        "the whole range, counted once: {result}"
    );
    let carried = result["resumed_hashes"].as_u64().unwrap();
    let shard_len = range_len / 8;
    assert!(
        carried >= done_before.len() as u64 * shard_len && carried < range_len,
        "carried over {carried} with {} shards done: {result}",
        done_before.len()
    );
    assert!(
        result["resumed_shards"].as_u64().unwrap() > done_before.len() as u64,
        "{result}"
    );
    assert_ne!(
        result["run_id"],
        run.to_string(),
        "a new attempt, with a new id and key"
    );
    // No shard was searched to its end twice.
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut exhausted: Vec<u64> = journal_lines(&text, "exhausted")
        .map(|v| v["shard"].as_u64().unwrap())
        .collect();
    let all = exhausted.len();
    exhausted.sort_unstable();
    exhausted.dedup();
    assert_eq!((all, exhausted), (8, (0..8).collect::<Vec<_>>()), "{text}");
    assert_eq!(journal_lines(&text, "attempt").count(), 2, "{text}");
    assert_eq!(journal_lines(&text, "ended").count(), 1, "{text}");

    // Resumed again, the ended run creates nothing and says the same.
    let again = bare_cli(
        &[
            "submit",
            "--resume",
            journal.to_str().unwrap(),
            "--launcher",
            "local",
            "--json",
        ],
        &home,
    )
    .output()
    .unwrap();
    assert_exit(&again, 3);
    assert_eq!(json_of(&again)["hashes"], range_len);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn a_corrupt_or_foreign_journal_is_refused_in_one_sentence() {
    let home = temp_home("bad-journal");
    let resume = |path: &Path| {
        bare_cli(
            &[
                "submit",
                "--resume",
                path.to_str().unwrap(),
                "--launcher",
                "local",
            ],
            &home,
        )
        .output()
        .unwrap()
    };
    let foreign = home.join("notes.txt");
    std::fs::write(&foreign, "shopping list\n").unwrap();
    let output = resume(&foreign);
    assert_exit(&output, 2);
    let said = stderr_of(&output);
    assert!(said.contains("is not a cnd run journal"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");

    // A real journal, then a line that is not an entry in the middle.
    let journal = home.join("run.jsonl");
    let run = Uuid::new_v4();
    quick_local_run(
        &home,
        &[
            "--journal",
            journal.to_str().unwrap(),
            "--run-id",
            &run.to_string(),
        ],
    );
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2, r#"{"kind":"exhausted","shard":"one"}"#);
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let output = resume(&journal);
    assert_exit(&output, 2);
    let said = stderr_of(&output);
    assert!(said.contains("is corrupt at line 3"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    // And nothing was run: no queue, no worker, no new attempt.
    assert_eq!(
        journal_lines(&std::fs::read_to_string(&journal).unwrap(), "attempt").count(),
        1
    );
    // A journal cut short by a crash mid-line is read up to that line.
    std::fs::write(&journal, lines[..2].join("\n") + "\n{\"kind\":\"exha").unwrap();
    let output = resume(&journal);
    assert_exit(&output, 0);
    // A launch setting no flag would take is refused as the flag would be,
    // unless the command line gives that flag itself.
    let attempt = format!(
        r#"{{"kind":"attempt","run_id":"{}","launch":{{"launcher":"local","threads":"0"}}}}"#,
        Uuid::new_v4()
    );
    std::fs::write(&journal, format!("{}\n{attempt}\n", lines[0])).unwrap();
    let output = resume(&journal);
    assert_exit(&output, 2);
    let said = stderr_of(&output);
    assert!(said.contains("its last attempt's --threads `0`"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    let output = bare_cli(
        &[
            "submit",
            "--resume",
            journal.to_str().unwrap(),
            "--threads",
            "1",
        ],
        &home,
    )
    .output()
    .unwrap();
    assert_exit(&output, 0);
    let said = stderr_of(&output);
    assert!(
        said.contains("as the last attempt ran: --launcher local\n"),
        "{said}"
    );
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn cleanup_lists_resumable_journals_and_removes_those_of_runs_long_ended() {
    let home = temp_home("journals");
    let runs = home.join(".local/state/cnd/runs");
    let (ended, open) = (Uuid::new_v4(), Uuid::new_v4());
    quick_local_run(&home, &["--run-id", &ended.to_string()]);
    let text = std::fs::read_to_string(runs.join(format!("{ended}.jsonl"))).unwrap();
    assert_eq!(journal_lines(&text, "ended").count(), 1, "{text}");
    // A run that never ended: the same journal without its end.
    let unfinished: String = text
        .lines()
        .filter(|l| !l.contains("\"ended\""))
        .map(|l| format!("{}\n", l.replace(&ended.to_string(), &open.to_string())))
        .collect();
    std::fs::write(runs.join(format!("{open}.jsonl")), unfinished).unwrap();
    let cleanup = || {
        let output = bare_cli(&["cleanup", "--all"], &home).output().unwrap();
        assert_exit(&output, 0);
        support::stdout_of(&output)
    };
    // Both are a minute old: both kept, the open one said resumable.
    let said = cleanup();
    assert!(
        said.contains(&format!("kept journal {ended}: run ended (found)")),
        "{said}"
    );
    assert!(
        said.contains(&format!("kept journal {open}: resumable")),
        "{said}"
    );
    assert!(said.contains(&format!("submit --resume {open}")), "{said}");
    // Ended two days ago: removed; the resumable one stays, whatever its age.
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    for id in [ended, open] {
        let file = std::fs::File::options()
            .append(true)
            .open(runs.join(format!("{id}.jsonl")))
            .unwrap();
        file.set_modified(two_days_ago).unwrap();
    }
    let said = cleanup();
    assert!(said.contains(&format!("removed journal {ended}")), "{said}");
    assert!(!runs.join(format!("{ended}.jsonl")).exists());
    assert!(
        said.contains(&format!("kept journal {open}: resumable")),
        "{said}"
    );
    std::fs::remove_dir_all(&home).unwrap();
}
