//! The worker binary end to end: SPEC §4 environment in, SPEC §5 reports out, over
//! a real (moto) SQS. Needs `moto_server` on PATH or in CND_MOTO_SERVER.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cnd_cloud::sqs::testing::MotoServer;
use cnd_cloud::sqs::SqsChannel;
use cnd_core::{verify, Message, NonceRange, Puzzle, Report, ReportKind, ResultChannel, RunKey};
use uuid::Uuid;

/// The worker exited with `code`; its stderr is shown when it did not.
#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The run key every test worker signs with.
fn key() -> RunKey {
    RunKey::from_bytes([0x42; 32])
}

/// The report in a message, after checking it is signed with [`key`].
fn signed_report(message: &Message) -> Report {
    let signature = message
        .signature
        .as_deref()
        .expect("every report is signed");
    assert!(
        key().verify(&message.body, signature),
        "bad signature on {message:?}"
    );
    Report::from_json(&message.body).expect("the worker sends well-formed reports")
}

/// The SPEC §4 environment for shard `index` of `shards`, D = `difficulty`.
fn worker_env(
    run_id: Uuid,
    queue_url: &str,
    endpoint: &str,
    difficulty: u32,
    shards: u64,
    index: u64,
) -> Vec<(&'static str, String)> {
    vec![
        ("CND_RUN_ID", run_id.to_string()),
        ("CND_BLOCK", "COMSM0010cloud".into()),
        ("CND_DIFFICULTY", difficulty.to_string()),
        ("CND_SHARD_COUNT", shards.to_string()),
        ("CND_SHARD_INDEX", index.to_string()),
        ("CND_QUEUE_URL", queue_url.into()),
        ("CND_RUN_KEY", key().to_hex()),
        ("CND_THREADS", "2".into()),
        ("CND_WORKER_NAME", format!("test-worker-{index}")),
        ("AWS_ENDPOINT_URL_SQS", endpoint.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        // Keep the SDK away from the developer's own profile and instance metadata.
        ("AWS_CONFIG_FILE", "/nonexistent".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

fn worker(env: &[(&'static str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cnd-worker"));
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

fn output(env: &[(&'static str, String)]) -> Output {
    worker(env).output().expect("run cnd-worker")
}

/// Receives until a final (non-progress) report arrives, or panics after `patience`.
async fn final_report(channel: &mut SqsChannel, patience: Duration) -> Report {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        for message in channel.receive(Duration::from_secs(2)).await.unwrap() {
            let report = signed_report(&message);
            if report.kind != ReportKind::Progress {
                return report;
            }
        }
    }
    panic!("no final report within {patience:?}");
}

#[tokio::test]
async fn finds_a_golden_nonce_in_its_shard_and_reports_it() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let run_id = Uuid::new_v4();
    let mut channel = SqsChannel::create_for_run(&client, run_id).await.unwrap();
    let env = worker_env(run_id, channel.address(), &moto.endpoint(), 12, 4, 2);

    let sent_at = Instant::now();
    let out = output(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let exited = sent_at.elapsed();

    let report = final_report(&mut channel, Duration::from_secs(20)).await;
    eprintln!(
        "worker ran {exited:?}; report received {:?} after start",
        sent_at.elapsed()
    );
    let puzzle = Puzzle::with_default_block(12).unwrap();
    let shard = puzzle.space().shard(2, 4).unwrap();
    assert_eq!(report.run_id, run_id);
    assert_eq!(report.shard, 2);
    assert_eq!(report.worker, "test-worker-2");
    let ReportKind::Found { nonce, hash } = report.kind else {
        panic!("expected found, got {report:?}");
    };
    assert!(shard.contains(nonce), "{nonce} not in {shard}");
    let check = verify(&puzzle, nonce);
    assert!(check.golden, "{nonce} is not golden");
    assert_eq!(hash, check.hash);
    channel.close().await.unwrap();
}

#[tokio::test]
async fn an_exhausted_range_is_reported_as_exhausted() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let run_id = Uuid::new_v4();
    let mut channel = SqsChannel::create_for_run(&client, run_id).await.unwrap();
    // D = 40 in 1000 nonces: no golden nonce (the chance of one is 1000 / 2^40).
    let mut env = worker_env(run_id, channel.address(), &moto.endpoint(), 40, 2, 1);
    env.push(("CND_RANGE", "5000..6000".into()));
    let out = output(&env);
    assert_exit(&out, 0);
    let report = final_report(&mut channel, Duration::from_secs(20)).await;
    assert_eq!(report.kind, ReportKind::Exhausted);
    assert_eq!(report.hashes, 500, "shard 1 of 2 of 1000 nonces");
    assert_eq!(
        NonceRange::new(5500, 5999).unwrap(),
        "5000..6000"
            .parse::<NonceRange>()
            .unwrap()
            .shard(1, 2)
            .unwrap()
    );
    channel.close().await.unwrap();
}

#[test]
fn a_missing_run_id_is_named_before_any_work() {
    let mut env = worker_env(
        Uuid::new_v4(),
        "http://127.0.0.1:1/0/q",
        "http://127.0.0.1:1",
        12,
        4,
        2,
    );
    env.retain(|(name, _)| *name != "CND_RUN_ID");
    let out = output(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CND_RUN_ID"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
}

#[test]
fn a_worker_without_a_run_key_never_searches() {
    for key in [None, Some("not-hex")] {
        let mut env = worker_env(
            Uuid::new_v4(),
            "http://127.0.0.1:1/0/q",
            "http://127.0.0.1:1",
            12,
            4,
            2,
        );
        env.retain(|(name, _)| *name != "CND_RUN_KEY");
        env.extend(key.map(|k| ("CND_RUN_KEY", k.to_string())));
        let out = output(&env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("CND_RUN_KEY"), "{stderr}");
        assert!(
            !stderr.contains("not-hex"),
            "a key is never echoed: {stderr}"
        );
    }
}

#[test]
fn a_malformed_difficulty_is_named_with_its_value() {
    let mut env = worker_env(
        Uuid::new_v4(),
        "http://127.0.0.1:1/0/q",
        "http://127.0.0.1:1",
        12,
        4,
        2,
    );
    env.retain(|(name, _)| *name != "CND_DIFFICULTY");
    env.push(("CND_DIFFICULTY", "abc".into()));
    let out = output(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CND_DIFFICULTY=\"abc\""), "{stderr}");
}

fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test]
async fn sigterm_stops_a_long_search_promptly() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let run_id = Uuid::new_v4();
    let mut channel = SqsChannel::create_for_run(&client, run_id).await.unwrap();
    let mut env = worker_env(run_id, channel.address(), &moto.endpoint(), 60, 1, 0);
    env.push(("CND_PROGRESS_SECS", "0.3".into()));
    let mut child = worker(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Searching for real: a progress report with some hashes arrives.
    let deadline = Instant::now() + Duration::from_secs(20);
    let progress = loop {
        assert!(Instant::now() < deadline, "no progress report within 20 s");
        let bodies = channel.receive(Duration::from_secs(1)).await.unwrap();
        if let Some(report) = bodies
            .iter()
            .map(signed_report)
            .find(|r| r.kind == ReportKind::Progress && r.hashes > 0)
        {
            break report;
        }
    };
    assert_eq!(progress.run_id, run_id);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let exit = wait_bounded(&mut child, Duration::from_secs(10));
    let Some(exit) = exit else {
        child.kill().unwrap();
        panic!("the worker did not exit within 10 s of SIGTERM");
    };
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    assert_eq!(exit.code(), Some(143));
    channel.close().await.unwrap();
}

#[test]
fn a_worker_whose_queue_is_gone_never_searches() {
    let moto = MotoServer::start();
    let run_id = Uuid::new_v4();
    // D = 60: were it to search, it would not end.
    let missing = format!("{}/123456789012/cnd-{run_id}", moto.endpoint());
    let env = worker_env(run_id, &missing, &moto.endpoint(), 60, 1, 0);
    let started = Instant::now();
    let mut child = worker(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let Some(status) = wait_bounded(&mut child, Duration::from_secs(20)) else {
        child.kill().unwrap();
        panic!("the worker searched although its queue does not exist");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no such queue"), "{stderr}");
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains("INFO") && l.contains("searching")),
        "{stderr}"
    );
    eprintln!("refused in {:?}", started.elapsed());
}

#[tokio::test]
async fn a_worker_stops_when_its_run_expires_even_without_a_master() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let run_id = Uuid::new_v4();
    let mut channel = SqsChannel::create_for_run(&client, run_id).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // D = 60 never ends by itself; the run's lifetime ends in 2 s.
    let mut env = worker_env(run_id, channel.address(), &moto.endpoint(), 60, 1, 0);
    env.push(("CND_EXPIRES", (now + 2).to_string()));
    let started = Instant::now();
    let mut child = worker(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let Some(status) = wait_bounded(&mut child, Duration::from_secs(20)) else {
        child.kill().unwrap();
        panic!("the worker outlived its run");
    };
    eprintln!(
        "stopped {:?} after start, at its run's expiry",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(1));
    let report = final_report(&mut channel, Duration::from_secs(10)).await;
    assert!(
        matches!(&report.kind, ReportKind::Failed { error } if error.contains("CND_EXPIRES")),
        "{report:?}"
    );
    channel.close().await.unwrap();
}

#[tokio::test]
async fn a_closed_stderr_never_stops_a_worker() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let run_id = Uuid::new_v4();
    let mut channel = SqsChannel::create_for_run(&client, run_id).await.unwrap();
    let env = worker_env(run_id, channel.address(), &moto.endpoint(), 12, 4, 2);
    let mut child = worker(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody reads the logs any more (a master that died): writes get EPIPE.
    drop(child.stderr.take());
    let status = wait_bounded(&mut child, Duration::from_secs(60)).expect("the worker ends");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let report = final_report(&mut channel, Duration::from_secs(20)).await;
    assert!(
        matches!(report.kind, ReportKind::Found { .. }),
        "{report:?}"
    );
    channel.close().await.unwrap();
}

/// The SPEC §4 environment with reports sent to `destination` and no AWS settings at all.
fn queueless_env(destination: &str, difficulty: u32) -> Vec<(&'static str, String)> {
    vec![
        ("CND_RUN_ID", Uuid::new_v4().to_string()),
        ("CND_BLOCK", "COMSM0010cloud".into()),
        ("CND_DIFFICULTY", difficulty.to_string()),
        ("CND_SHARD_COUNT", "4".into()),
        ("CND_SHARD_INDEX", "2".into()),
        ("CND_QUEUE_URL", destination.into()),
        ("CND_RUN_KEY", key().to_hex()),
        ("CND_THREADS", "2".into()),
        ("CND_WORKER_NAME", "test-worker-2".into()),
    ]
}

#[test]
fn reports_go_to_stdout_as_one_signed_envelope_per_line() {
    let mut env = queueless_env("stdout:", 18);
    env.push(("CND_PROGRESS_SECS", "0.02".into()));
    let out = output(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(stdout.ends_with('\n'), "whole lines only: {stdout:?}");
    let reports: Vec<Report> = stdout
        .lines()
        .map(|line| signed_report(&Message::from_envelope(line).expect("an envelope")))
        .collect();
    let (last, progress) = reports.split_last().expect("at least the final report");
    assert!(progress.iter().all(|r| r.kind == ReportKind::Progress));
    let ReportKind::Found { nonce, .. } = last.kind else {
        panic!("expected found last, got {last:?}");
    };
    let puzzle = Puzzle::with_default_block(18).unwrap();
    assert!(puzzle.space().shard(2, 4).unwrap().contains(nonce));
    assert!(verify(&puzzle, nonce).golden);
}

/// A fresh directory, the termination-log path in it, and a worker environment
/// writing there for shard 2 of 4 of 5000..6000 at D = 40 (no golden nonce).
fn barren_termination_log_env() -> (
    std::path::PathBuf,
    std::path::PathBuf,
    Vec<(&'static str, String)>,
) {
    let dir = std::env::temp_dir().join(format!("cnd-termlog-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("termination-log");
    let mut env = queueless_env(&format!("termination-log:{}", path.display()), 40);
    env.push(("CND_RANGE", "5000..6000".into()));
    (dir, path, env)
}

#[test]
fn the_final_report_goes_to_the_termination_log_and_nothing_else_is_sent() {
    let (dir, path, mut env) = barren_termination_log_env();
    env.push(("CND_PROGRESS_SECS", "0.01".into()));
    let out = output(&env);
    assert_exit(&out, 0);
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.len() <= 4096, "fits a termination message");
    let report = signed_report(&Message::from_envelope(&text).unwrap());
    assert_eq!(report.kind, ReportKind::Exhausted);
    assert_eq!(report.hashes, 250, "shard 2 of 4 of 1000 nonces");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_report_too_big_for_a_termination_message_is_an_error_not_a_cut_message() {
    let (dir, path, mut env) = barren_termination_log_env();
    env.retain(|(name, _)| *name != "CND_WORKER_NAME");
    env.push(("CND_WORKER_NAME", "w".repeat(5000)));
    let out = output(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("more than the 4096"), "{stderr}");
    assert!(!path.exists(), "no cut message is left");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_malformed_destination_is_named_before_any_work() {
    let out = output(&queueless_env("ftp://nowhere", 12));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CND_QUEUE_URL"), "{stderr}");
}
