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
        for message in channel
            .receive(Duration::from_secs(2))
            .await
            .unwrap()
            .messages
        {
            let report = signed_report(&message);
            if !matches!(report.kind, ReportKind::Progress { .. }) {
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
    stops_a_long_search_promptly("TERM", 143).await;
}

/// A closed terminal (SIGHUP) or SIGQUIT stops a worker the same way, with its own code.
#[tokio::test]
async fn sighup_and_sigquit_stop_a_long_search_promptly() {
    stops_a_long_search_promptly("HUP", 129).await;
    stops_a_long_search_promptly("QUIT", 131).await;
}

async fn stops_a_long_search_promptly(signal: &str, code: i32) {
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
        let bodies = channel
            .receive(Duration::from_secs(1))
            .await
            .unwrap()
            .messages;
        if let Some(report) = bodies
            .iter()
            .map(signed_report)
            .find(|r| matches!(r.kind, ReportKind::Progress { .. }) && r.hashes > 0)
        {
            break report;
        }
    };
    assert_eq!(progress.run_id, run_id);

    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let exit = wait_bounded(&mut child, Duration::from_secs(10));
    let Some(exit) = exit else {
        child.kill().unwrap();
        panic!("the worker did not exit within 10 s of SIG{signal}");
    };
    eprintln!("exited {:?} after SIG{signal}", signalled.elapsed());
    assert_eq!(exit.code(), Some(code));
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
    env.push(("CND_PROGRESS_SECS", "0.05".into()));
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
    assert!(progress
        .iter()
        .all(|r| matches!(r.kind, ReportKind::Progress { .. })));
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
    env.push(("CND_PROGRESS_SECS", "0.05".into()));
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
fn a_worker_name_too_long_for_a_report_is_refused_and_the_longest_fits() {
    let (dir, path, mut env) = barren_termination_log_env();
    env.retain(|(name, _)| *name != "CND_WORKER_NAME");
    let mut too_long = env.clone();
    too_long.push(("CND_WORKER_NAME", "w".repeat(5000)));
    let out = output(&too_long);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CND_WORKER_NAME"), "{stderr}");
    assert!(!stderr.contains("www"), "not echoed: {stderr}");
    assert!(!path.exists(), "nothing searched, nothing written");
    // The longest name allowed (a DNS name's 253 bytes) still fits a termination message.
    env.push(("CND_WORKER_NAME", "w".repeat(253)));
    let out = output(&env);
    assert_exit(&out, 0);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.len() <= 4096, "{} bytes", text.len());
    let report = signed_report(&Message::from_envelope(&text).unwrap());
    assert_eq!(report.worker.len(), 253);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A worker's exit code, stderr and stdout after at most 20 s (killed then: it was searching).
fn refused(command: &mut Command) -> (Option<i32>, String, Vec<u8>) {
    refused_with(command, Stdio::piped())
}

/// [`refused`], with stdout going to `stdout`.
fn refused_with(command: &mut Command, stdout: Stdio) -> (Option<i32>, String, Vec<u8>) {
    let mut child = command
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    if status.is_none() {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let code = status.and_then(|s| s.code());
    (
        code,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.stdout,
    )
}

#[test]
fn bad_environment_values_are_refused_at_once_in_one_sentence() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let not_utf8 = OsStr::from_bytes(b"COMSM\xff0010cloud");
    // D = 60 on stdout: were it to search, it would not end, and it would report.
    let base = queueless_env("stdout:", 60);
    let cases: Vec<(&str, &OsStr)> = vec![
        ("CND_BLOCK", not_utf8),
        ("CND_BACKEND", OsStr::from_bytes(b"sca\xfflar")),
        ("CND_PROGRESS_SECS", OsStr::from_bytes(b"\xff")),
        ("CND_WORKER_NAME", OsStr::from_bytes(b"w\xff")),
        ("CND_RANGE", OsStr::from_bytes(b"0..\xff")),
        ("CND_PROGRESS_SECS", OsStr::new("1e300")),
        ("CND_PROGRESS_SECS", OsStr::new("1e19")),
        ("CND_PROGRESS_SECS", OsStr::new("1e-9")),
        ("CND_PROGRESS_SECS", OsStr::new("0.049")),
        ("CND_PROGRESS_SECS", OsStr::new("3601")),
        ("CND_PROGRESS_SECS", OsStr::new("inf")),
        ("CND_PROGRESS_SECS", OsStr::new("NaN")),
        ("CND_DIFFICULTY", OsStr::new("+8")),
        ("CND_NONCE_BITS", OsStr::new("+32")),
        ("CND_SHARD_COUNT", OsStr::new("+4")),
        ("CND_SHARD_INDEX", OsStr::new("+2")),
        ("CND_THREADS", OsStr::new("+2")),
        ("CND_THREADS", OsStr::new(" 2")),
        ("CND_EXPIRES", OsStr::new("+4000000000")),
        ("CND_WORKER_NAME", OsStr::new("pod\u{1b}[2J")),
    ];
    let long_name = "w".repeat(100_000);
    let cases = cases
        .into_iter()
        .chain([("CND_WORKER_NAME", OsStr::new(&long_name))]);
    for (variable, value) in cases {
        let mut command = worker(&base);
        command.env(variable, value);
        let started = Instant::now();
        let (code, stderr, stdout) = refused(&mut command);
        let shown = String::from_utf8_lossy(value.as_bytes());
        let shown: String = shown.chars().take(20).collect();
        assert_eq!(code, Some(2), "{variable}={shown:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{variable}: not at once"
        );
        assert!(
            stdout.is_empty(),
            "{variable}={shown:?}: reported something"
        );
        assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
        assert!(stderr.contains(variable), "{variable}={shown:?}: {stderr}");
        assert!(stderr.len() < 300, "{variable}: {} bytes", stderr.len());
    }
    // The lossy block would have been searched: the hex form is the way.
    let mut command = worker(&base);
    command.env("CND_BLOCK", not_utf8);
    let (_, stderr, _) = refused(&mut command);
    assert!(stderr.contains("CND_BLOCK_HEX"), "{stderr}");
    // The bounds themselves are fine.
    for secs in ["0.05", "3600"] {
        let mut env = queueless_env("stdout:", 1);
        env.push(("CND_PROGRESS_SECS", secs.into()));
        assert_exit(&output(&env), 0);
    }
}

#[test]
fn too_many_threads_are_lowered_to_the_cap_with_a_warning() {
    let cap = cnd_core::worker_config::max_threads();
    let mut env = queueless_env("stdout:", 1);
    env.retain(|(name, _)| *name != "CND_THREADS");
    env.push(("CND_THREADS", "4096".into()));
    env.push(("CND_RANGE", "0..1000".into()));
    let started = Instant::now();
    let mut command = worker(&env);
    let (code, stderr, stdout) = refused(&mut command);
    let took = started.elapsed();
    eprintln!("4096 threads asked, {cap} used: {took:?}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    if cap < 4096 {
        assert!(
            stderr.lines().any(|l| l.contains("WARN")
                && l.contains("CND_THREADS=4096")
                && l.contains(&format!("searching on {cap}"))),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("threads={cap}")), "{stderr}");
    }
    let last = String::from_utf8(stdout).unwrap();
    let last = last.lines().last().expect("a final report");
    let report = signed_report(&Message::from_envelope(last).unwrap());
    assert!(
        matches!(report.kind, ReportKind::Found { .. }),
        "{report:?}"
    );
}

/// Whether a message says some part twice in a row (`X: X`).
fn repeats_a_cause(line: &str) -> bool {
    let parts: Vec<&str> = line.split(": ").collect();
    parts.windows(2).any(|w| w[0] == w[1])
        || parts
            .iter()
            .enumerate()
            .any(|(i, p)| p.len() > 8 && parts[i + 1..].iter().any(|q| q == p))
}

#[test]
fn failures_to_deliver_say_their_cause_once() {
    assert!(repeats_a_cause(
        "could not write: No such file or directory (os error 2): No such file or directory (os error 2)"
    ));
    // A termination log whose directory is missing: found before searching.
    let env = queueless_env("termination-log:/nonexistent/dir/termination-log", 60);
    let (code, stderr, _) = refused(&mut worker(&env));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/dir"), "{stderr}");
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains("INFO") && l.contains("searching")),
        "{stderr}"
    );
    // A write that fails after the search (stdout is a full disk).
    let mut env = queueless_env("stdout:", 1);
    env.push(("CND_RANGE", "0..1000".into()));
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let (code, stderr, _) = refused_with(&mut worker(&env), full.into());
    assert_eq!(code, Some(1), "{stderr}");
    for line in [&stderr].into_iter().flat_map(|s| s.lines()) {
        assert!(!repeats_a_cause(line), "{line}");
    }
    assert!(
        stderr.contains("could not write the found report to stdout"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_destination_is_named_before_any_work() {
    let out = output(&queueless_env("ftp://nowhere", 12));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CND_QUEUE_URL"), "{stderr}");
}

/// The reports a worker wrote to its stdout, signatures checked.
fn stdout_reports(out: &Output) -> Vec<Report> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| signed_report(&Message::from_envelope(line).expect("an envelope")))
        .collect()
}

#[test]
fn a_resumed_worker_searches_only_its_shards_rest() {
    // Shard 2 of 4 of 0..2^24 at D = 40 (no golden nonce): 4,194,304 nonces.
    let shard_len: u64 = 1 << 22;
    let mut env = queueless_env("stdout:", 40);
    env.push(("CND_RANGE", format!("0..{}", 4 * shard_len)));
    env.push(("CND_PROGRESS_SECS", "0.05".into()));
    env.push(("CND_SEARCHED", "0-1,2:3000000".into()));
    let out = output(&env);
    assert_exit(&out, 0);
    let reports = stdout_reports(&out);
    let (last, progress) = reports.split_last().expect("the final report");
    assert_eq!(last.kind, ReportKind::Exhausted);
    assert_eq!(
        last.hashes,
        shard_len - 3_000_000,
        "the rest, and only the rest"
    );
    // Progress counts from the shard's first nonce, the earlier part included.
    for report in progress {
        let ReportKind::Progress { searched } = report.kind else {
            panic!("{report:?}")
        };
        assert!(
            searched >= 3_000_000 && searched <= 3_000_000 + report.hashes,
            "{report:?}"
        );
    }

    // Searched to its end by earlier attempts: exhausted at once, 0 hashes.
    env.retain(|(name, _)| *name != "CND_SEARCHED");
    env.push(("CND_SEARCHED", "1-3".into()));
    let out = output(&env);
    assert_exit(&out, 0);
    let reports = stdout_reports(&out);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(
        (&reports[0].kind, reports[0].hashes),
        (&ReportKind::Exhausted, 0)
    );
}
