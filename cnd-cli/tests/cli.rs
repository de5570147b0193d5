//! The command line as a user meets it: answers, exit codes, and one clear sentence per mistake.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{cnd, stderr_of as stderr, stdout_of as stdout};

/// Exit 2 with stderr naming `needle`, and nothing on stdout.
fn assert_bad_input(args: &[&str], needle: &str) {
    let out = cnd(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    assert!(
        stderr(&out).contains(needle),
        "{args:?}: stderr {:?} lacks {needle:?}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{args:?} printed a result");
}

#[test]
fn run_finds_hashlibs_smallest_golden_nonce() {
    let out = cnd(&["run", "-d", "16"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Golden nonce   133050"), "{text}");
    assert!(
        text.contains("0000a77c6f4fa81ede0bb05ea58430a21d2bceeb80660c573e678a703d006afd"),
        "{text}"
    );
}

#[test]
fn run_json_is_one_object_with_the_spec_fields() {
    let out = cnd(&["run", "-d", "12", "--json", "--threads", "2"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["outcome"], "found");
    assert_eq!(v["nonce"], "2670");
    assert_eq!(
        v["hash"],
        "0003d5d54500fb070ca7a9982fe6591df6e3bbbe2e14d84b532c2de51d3e4ffc"
    );
    assert_eq!(v["leading_zeros"], 14);
    assert!(v["hashes"].as_u64().unwrap() >= 2671);
    assert!(v["elapsed_ms"].is_u64());
    // The backend that hashed, never the word "auto".
    let backend = v["backend"].as_str().unwrap();
    assert!(
        cnd_core::Backend::ALL.iter().any(|b| b.name() == backend),
        "{backend}"
    );
}

#[test]
fn decimal_and_64_bit_nonces_match_hashlib() {
    let out = cnd(&["run", "-d", "16", "--nonce-format", "decimal", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["nonce"], "9248");
    let out = cnd(&["run", "-d", "18", "--nonce-bits", "64", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["nonce"], "951771");
}

#[test]
fn an_exhausted_range_exits_3() {
    let out = cnd(&["run", "-d", "40", "--range", "0..5000", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["outcome"], "exhausted");
    assert_eq!(v["hashes"], 5000);
}

#[test]
fn a_timeout_exits_4() {
    let out = cnd(&[
        "run",
        "-d",
        "256",
        "--nonce-bits",
        "64",
        "--timeout",
        "200ms",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["outcome"], "timed_out");
}

#[test]
fn verify_exits_0_for_golden_and_3_for_not_golden() {
    let golden = cnd(&["verify", "-d", "16", "--nonce", "133050"]);
    assert_eq!(golden.status.code(), Some(0));
    assert!(stdout(&golden).contains("golden"));
    let not = cnd(&["verify", "-d", "16", "--nonce", "133049", "--json"]);
    assert_eq!(not.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_str(stdout(&not).trim()).unwrap();
    assert_eq!(v["golden"], false);
}

#[test]
fn block_hex_is_the_same_puzzle_as_its_text() {
    let out = cnd(&[
        "verify",
        "--block-hex",
        "434f4d534d30303130636c6f7564",
        "-d",
        "16",
        "--nonce",
        "133050",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn plan_says_a_32_bit_space_is_likely_empty_at_d_38() {
    let out = cnd(&["plan", "-d", "38", "--rate", "50", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let empty = v["probability_space_empty"].as_f64().unwrap();
    assert!((empty - 0.9845).abs() < 0.001, "{empty}");
    assert!(stderr(&out).contains("no golden nonce"), "{}", stderr(&out));
}

#[test]
fn plan_picks_pods_for_a_deadline() {
    // D = 30 at 10 MH/s per pod: 95% needs ~3.2e9 hashes, 60 s gives 6e8 per pod: 6 pods.
    let out = cnd(&[
        "plan",
        "-d",
        "30",
        "--rate",
        "10",
        "--within",
        "60s",
        "--confidence",
        "0.95",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["plan"]["pods"], 6);
    assert!(v["plan"]["confidence"].as_f64().unwrap() >= 0.95);
}

#[test]
fn bench_json_lists_each_backend() {
    let out = cnd(&["bench", "--seconds", "0.2", "--threads", "1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let names: Vec<&str> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"scalar") && names.contains(&"sha2"),
        "{names:?}"
    );
    assert!(v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["mhs"].as_f64().unwrap() > 0.0));
    // Per CPU-second too, where /proc gives CPU time (this crate's tests run on Linux).
    if cfg!(target_os = "linux") {
        assert!(v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["mhs_cpu"].as_f64().unwrap() > 0.0));
    }
    // What `auto` picks is one of the backends, named; the CPU's model is said.
    let auto = v["auto"].as_str().unwrap();
    assert!(
        auto != "auto" && cnd_core::Backend::from_name(auto).is_ok(),
        "{auto}"
    );
    assert!(!v["cpu"].as_str().unwrap().is_empty());
}

#[test]
fn difficulty_above_256_is_refused() {
    assert_bad_input(&["run", "-d", "257"], "between 0 and 256");
}

#[test]
fn difficulty_that_is_not_a_number_is_refused() {
    assert_bad_input(&["run", "-d", "twelve"], "--difficulty");
}

#[test]
fn nonce_bits_other_than_32_or_64_are_refused() {
    assert_bad_input(&["run", "-d", "8", "--nonce-bits", "16"], "use 32 or 64");
}

#[test]
fn unknown_nonce_format_is_refused() {
    assert_bad_input(
        &["run", "-d", "8", "--nonce-format", "hex"],
        "binary or decimal",
    );
}

#[test]
fn invalid_block_hex_is_refused() {
    assert_bad_input(
        &["run", "-d", "8", "--block-hex", "abc"],
        "odd number of digits",
    );
    assert_bad_input(&["run", "-d", "8", "--block-hex", "zz"], "not a hex digit");
}

#[test]
fn empty_range_is_refused() {
    assert_bad_input(
        &["run", "-d", "8", "--range", "10..10"],
        "empty or reversed",
    );
}

#[test]
fn reversed_range_is_refused() {
    assert_bad_input(&["run", "-d", "8", "--range", "10..5"], "empty or reversed");
}

#[test]
fn range_outside_the_space_is_refused() {
    assert_bad_input(
        &["run", "-d", "8", "--range", "0..4294967297"],
        "past the nonce space",
    );
}

#[test]
fn range_that_is_not_numbers_is_refused() {
    assert_bad_input(&["run", "-d", "8", "--range", "a..b"], "START..END");
}

#[test]
fn zero_threads_is_refused() {
    assert_bad_input(&["run", "-d", "8", "--threads", "0"], "at least 1");
}

#[test]
fn threads_that_are_not_a_number_are_refused() {
    assert_bad_input(&["run", "-d", "8", "--threads", "many"], "--threads");
}

#[test]
fn a_timeout_that_is_not_a_duration_is_refused() {
    assert_bad_input(&["run", "-d", "8", "--timeout", "soon"], "--timeout");
}

#[test]
fn verify_nonce_outside_the_space_is_refused() {
    assert_bad_input(&["verify", "-d", "8", "--nonce", "4294967296"], "--nonce");
    assert_bad_input(&["verify", "-d", "8", "--nonce", "-1"], "--nonce");
}

#[test]
fn plan_confidence_outside_0_1_is_refused() {
    assert_bad_input(
        &["plan", "-d", "20", "--rate", "1", "--confidence", "1.5"],
        "strictly between 0 and 1",
    );
}

#[test]
fn plan_rate_that_is_not_positive_is_refused() {
    assert_bad_input(&["plan", "-d", "20", "--rate", "-3"], "--rate");
}

#[test]
fn unknown_backend_is_refused() {
    assert_bad_input(
        &["run", "-d", "8", "--backend", "turbo"],
        "unknown hash backend",
    );
}

#[test]
fn unknown_backend_in_the_environment_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_cnd-cli"))
        .args(["run", "-d", "8"])
        .env("CND_BACKEND", "gpu")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("\"gpu\""), "{}", stderr(&out));
}

#[test]
fn bare_cleanup_names_both_ways_to_say_what() {
    assert_bad_input(
        &["cleanup"],
        "--run ID (one run, as submit printed it) or --all",
    );
}

#[test]
fn plan_counts_with_separators_and_singular_pods() {
    let out = cnd(&[
        "plan", "-d", "20", "--rate", "100", "--pods", "1", "--within", "10s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("4,294,967,296 nonces searched"), "{text}");
    assert!(text.contains("Pods           1 pod: "), "{text}");
    assert!(text.contains(" with 1 pod\n"), "{text}");
    assert!(!text.contains("1 pods"), "{text}");
}

#[test]
fn help_shows_the_backend_variable_and_the_defaults() {
    let out = cnd(&["run", "--help"]);
    let text = stdout(&out);
    assert!(text.contains("[env: CND_BACKEND=]"), "{text}");
    assert!(text.contains("[default: auto]"), "{text}");
    assert!(text.contains("[default: no limit]"), "{text}");
    let out = cnd(&["submit", "--help"]);
    let text = stdout(&out);
    assert!(text.contains("Required unless --within"), "{text}");
}

#[test]
fn an_unreachable_api_server_is_named_with_its_kubeconfig_and_nothing_is_left_to_clean() {
    // A port nobody listens on: connections to it are refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("cnd-cli-unreachable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: x\n\
             clusters: [{{name: c, cluster: {{server: \"https://127.0.0.1:{port}\", insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\n\
             contexts: [{{name: x, context: {{cluster: c, user: u, namespace: cnd-test}}}}]\n"
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cnd-cli"))
        .args([
            "submit",
            "-d",
            "10",
            "--pods",
            "1",
            "--channel",
            "pod-status",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", &dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("https://127.0.0.1:{port}/"))
            && err.contains("(from KUBECONFIG=")
            && err.contains("Connection refused"),
        "names the server, where its address came from and why: {err}"
    );
    // Nothing was created, so no advice to clean up, and no raw log lines.
    assert!(!err.contains("cleanup"), "{err}");
    assert!(!err.contains("ERROR"), "{err}");
    assert_eq!(
        err.lines().count(),
        2,
        "the run's line and the error: {err}"
    );
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}

#[test]
fn help_teaches_the_first_commands() {
    let out = cnd(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for needle in ["cnd-cli run -d 24", "Exit codes", "verify", "plan", "bench"] {
        assert!(text.contains(needle), "--help lacks {needle:?}");
    }
}

#[test]
fn a_deadline_that_needs_billions_of_pods_is_refused_not_attempted() {
    // ~10^11 pods at D = 60 in 1 s: refused in one sentence, before anything is
    // created (it used to build that many shard ranges and abort on memory).
    assert_bad_input(
        &[
            "submit",
            "-d",
            "60",
            "--nonce-bits",
            "64",
            "--within",
            "1s",
            "--confidence",
            "0.9",
            "--rate",
            "10",
            "--dry-run",
        ],
        "100000",
    );
}

#[test]
fn subcommand_help_keeps_its_explanation_and_examples() {
    let out = cnd(&["submit", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for needle in ["Examples:", "--launcher local", "pod-status", "--channel"] {
        assert!(
            text.contains(needle),
            "submit --help lacks {needle:?}:\n{text}"
        );
    }
    let out = cnd(&["cleanup", "--help"]);
    assert!(
        stdout(&out).contains("--force removes them too"),
        "{}",
        stdout(&out)
    );
    // The one-line summaries in the command list still come through.
    let out = cnd(&["--help"]);
    assert!(stdout(&out).contains("Search the nonce space with many workers"));
}

/// `cnd-cli ARGS` with the local workers of `support`, nothing from AWS.
fn local(args: &[&str]) -> Command {
    let mut command = Command::new(support::CLI);
    command
        .args(args)
        .env("CND_WORKER_BIN", support::worker_bin())
        .env_remove("RUST_LOG")
        .env_remove("CND_BACKEND")
        .stdin(std::process::Stdio::null());
    command
}

/// Pids of the worker processes of `run`.
fn workers_of(run: &str) -> Vec<u32> {
    let needle = format!("CND_RUN_ID={run}");
    support::processes_where(|vars| vars.contains(&needle.as_bytes()))
}

/// Waits (bounded) until `count` workers of `run` run, failing at once if
/// `child` ends first: the run cannot end by itself before that here.
fn wait_for_workers(child: &mut std::process::Child, run: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while workers_of(run).len() < count {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("cnd-cli ended ({status}) before {count} workers of {run} ran");
        }
        assert!(
            Instant::now() < deadline,
            "the workers of {run} never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) for `child` to end, and for every worker of `run` to be gone.
#[track_caller]
fn wait_for_end(mut child: std::process::Child, run: &str, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cnd-cli did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    // Its workers are reaped before it exits; /proc may lag a moment.
    let gone = Instant::now() + Duration::from_secs(5);
    while !workers_of(run).is_empty() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        workers_of(run),
        Vec::<u32>::new(),
        "workers of {run} still run"
    );
    output
}

/// A pipe whose read end is closed: every write to the other end fails (EPIPE).
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

/// A local search of 64-bit nonces at D = 40 (it never ends by itself).
fn endless_local_submit(run: &str, extra: &[&str]) -> Command {
    let mut command = local(&[
        "submit",
        "--launcher",
        "local",
        "--pods",
        "2",
        "--threads",
        "1",
        "-d",
        "40",
        "--nonce-bits",
        "64",
        "--run-id",
        run,
    ]);
    command.args(extra);
    command
}

#[test]
fn a_closed_stderr_never_aborts_a_run_nor_its_cleanup() {
    // Timed out: stderr written at the start, in the status lines and logs
    // (-v), and at the end.
    let run = uuid::Uuid::new_v4().to_string();
    let child = endless_local_submit(&run, &["-v", "--timeout", "3s"])
        .stdout(std::process::Stdio::piped())
        .stderr(closed_pipe())
        .spawn()
        .unwrap();
    let output = wait_for_end(child, &run, Duration::from_secs(120));
    assert_eq!(output.status.code(), Some(4), "{}", stdout(&output));
    assert!(stdout(&output).contains("Timed out"), "{}", stdout(&output));

    // Interrupted once its workers run: the stop is said on that stderr too.
    let run = uuid::Uuid::new_v4().to_string();
    let mut child = endless_local_submit(&run, &["-v"])
        .stdout(std::process::Stdio::piped())
        .stderr(closed_pipe())
        .spawn()
        .unwrap();
    wait_for_workers(&mut child, &run, 2);
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let output = wait_for_end(child, &run, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(130), "{}", stdout(&output));
}

/// Starts an endless local run, sends it `signal` once its two workers run,
/// and checks its exit code (128 + the signal) and that no worker is left.
fn stops_cleanly_on(signal: libc::c_int) {
    let run = uuid::Uuid::new_v4().to_string();
    let mut child = endless_local_submit(&run, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_workers(&mut child, &run, 2);
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let output = wait_for_end(child, &run, Duration::from_secs(60));
    eprintln!(
        "signal {signal}: ended and cleaned up {:?} after it",
        sent.elapsed()
    );
    support::assert_exit(&output, 128 + signal);
    let stderr = support::stderr_of(&output);
    assert!(
        stderr.contains("stopping: removing what the run created"),
        "{stderr}"
    );
    assert!(
        stdout(&output).contains("Interrupted"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn sighup_exits_129_and_leaves_no_worker() {
    stops_cleanly_on(libc::SIGHUP);
}

#[test]
fn sigquit_exits_131_and_leaves_no_worker() {
    stops_cleanly_on(libc::SIGQUIT);
}

#[test]
fn sigterm_and_sigint_of_a_local_run_leave_no_worker() {
    stops_cleanly_on(libc::SIGTERM);
    stops_cleanly_on(libc::SIGINT);
}

#[test]
fn help_lists_every_exit_code() {
    let help = stdout(&cnd(&["--help"]));
    for code in [
        "129 SIGHUP",
        "130 interrupted (SIGINT)",
        "131 SIGQUIT",
        "143 SIGTERM",
    ] {
        assert!(help.contains(code), "{code}: {help}");
    }
    let sweep = stdout(&cnd(&["sweep", "--help"]));
    assert!(sweep.contains("129/130/131/143"), "{sweep}");
}

#[test]
fn every_count_flag_refuses_a_leading_plus() {
    for args in [
        &["run", "-d", "+8"][..],
        &["verify", "-d", "+8", "--nonce", "1"],
        &["run", "-d", "8", "--threads", "+2"],
        &["plan", "-d", "8", "--rate", "1", "--pods", "+4"],
        &["submit", "-d", "8", "--launcher", "local", "--pods", "+4"],
        &[
            "submit",
            "-d",
            "8",
            "--launcher",
            "local",
            "--pods",
            "2",
            "--shards",
            "+4",
        ],
        &["sweep", "--pods", "+1", "-d", "8", "--out", "x"],
        &["sweep", "--pods", "1", "-d", "+8", "--out", "x"],
        &["sweep", "--pods", "1", "-d", "8..+9", "--out", "x"],
        &[
            "sweep", "--pods", "1", "-d", "8", "--repeat", "+2", "--out", "x",
        ],
        &[
            "sweep",
            "--pods",
            "1",
            "-d",
            "8",
            "--shards-per-pod",
            "+2",
            "--out",
            "x",
        ],
    ] {
        assert_bad_input(args, "+");
    }
}

#[test]
fn cleanup_refuses_force_with_run_instead_of_ignoring_it() {
    let run = "5f0c6a43-0000-4000-8000-000000000000";
    assert_bad_input(
        &["cleanup", "--force", "--run", run],
        "--force goes with --all",
    );
    assert_bad_input(&["cleanup", "--force"], "say what to clean up");
}

#[test]
fn a_failure_says_each_cause_once() {
    let os_error = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
    let os_error = os_error.split(" (os error").next().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!("cnd-cli-causes-{}", std::process::id()));
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let nope = dir.join("nope");
    let nope = nope.to_str().unwrap();
    let runs = [
        Command::new(support::CLI)
            .args(["sweep", "--plot", nope])
            .output()
            .unwrap(),
        Command::new(support::CLI)
            .args(["cleanup", "--all", "--no-queues"])
            .env("KUBECONFIG", nope)
            .env("HOME", &home)
            .output()
            .unwrap(),
        Command::new(support::CLI)
            .args(["submit", "--launcher", "local", "--pods", "1", "-d", "8"])
            .env("CND_WORKER_BIN", nope)
            .output()
            .unwrap(),
    ];
    for out in &runs {
        let stderr = stderr(out);
        assert!(stderr.contains(nope), "{stderr}");
        assert!(
            stderr.matches(&os_error).count() <= 1,
            "a cause said twice: {stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sweep_too_big_or_that_submit_would_refuse_is_refused_before_it_starts() {
    let dir = std::env::temp_dir().join(format!("cnd-cli-sweep-refused-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    let pods: Vec<String> = (1..=20000).map(|n| n.to_string()).collect();
    let pods = pods.join(",");
    let started = Instant::now();
    assert_bad_input(
        &[
            "sweep", "--pods", &pods, "-d", "0..63", "--repeat", "1000", "--out", out,
        ],
        "at most 64",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_bad_input(
        &["sweep", "--pods", "1", "-d", "0..64", "--out", out],
        "at most 64",
    );
    for (args, needle) in [
        (
            &["--launcher", "local", "--pods", "1,300"][..],
            "300 local workers",
        ),
        (
            &["--pods", "200", "--shards-per-pod", "1000"],
            "200000 shards",
        ),
        (
            &["--pods", "1", "--workload", "pods", "--shards-per-pod", "2"],
            "--shards-per-pod must be 1",
        ),
        (&["--pods", "1,8", "--", "--range", "0..4"], "8 pods"),
        (&["--pods", "1", "--", "--no-such-flag"], "--no-such-flag"),
        (&["--pods", "1", "--", "--pods", "2"], "--pods"),
        (&["--pods", "1", "--", "--dry-run"], "--dry-run"),
    ] {
        let mut all = vec!["sweep", "-d", "20", "--out", out];
        all.extend(args);
        let result = cnd(&all);
        assert_eq!(
            result.status.code(),
            Some(2),
            "{all:?}: {}",
            stderr(&result)
        );
        let stderr = stderr(&result);
        assert!(stderr.contains(needle), "{all:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
        assert!(!dir.exists(), "{all:?} made {out}");
    }
}

/// A compromised worker: it holds its own shard's key (from its environment,
/// as every worker does) and signs `exhausted` for every shard of the run, at
/// once, without searching. Python's hmac signs, so the lie does not depend on
/// our own signing code.
const LYING_WORKER: &str = r#"
import hashlib, hmac, json, os
key = bytes.fromhex(os.environ["CND_RUN_KEY"])
start, end = (int(x) for x in os.environ["CND_RANGE"].split(".."))
shards = int(os.environ["CND_SHARD_COUNT"])
for shard in range(shards):
    body = json.dumps({"v": 1, "run_id": os.environ["CND_RUN_ID"], "kind": "exhausted",
                       "shard": shard, "worker": "liar", "hashes": (end - start) // shards,
                       "elapsed_ms": 1})
    signature = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    print(json.dumps({"body": body, "cnd-signature": signature}), flush=True)
"#;

/// A `CND_WORKER_BIN` that runs [`LYING_WORKER`] for shard 0 and the real
/// worker for every other shard once [`LyingWorkerBin::go`] exists: the test
/// creates it when the master has said it read the lies, so no honest find
/// can end the run first. Its directory is removed on drop.
struct LyingWorkerBin {
    dir: std::path::PathBuf,
}

impl LyingWorkerBin {
    fn new() -> LyingWorkerBin {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("cnd-liar-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let liar = dir.join("liar.py");
        std::fs::write(&liar, LYING_WORKER).unwrap();
        let bin = dir.join("worker");
        // The wait is bounded (60 s): without the go-ahead the honest workers
        // start anyway and the test fails on what the master counted.
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\n\
                 if [ \"$CND_SHARD_INDEX\" = 0 ]; then exec python3 '{liar}'; fi\n\
                 for _ in $(seq 1200); do [ -e '{go}' ] && break; sleep 0.05; done\n\
                 exec '{worker}' \"$@\"\n",
                go = dir.join("go").display(),
                liar = liar.display(),
                worker = support::worker_bin().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        LyingWorkerBin { dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.join("worker")
    }

    /// Lets the honest workers start.
    fn go(&self) {
        std::fs::write(self.dir.join("go"), b"").unwrap();
    }
}

impl Drop for LyingWorkerBin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_worker_that_signs_exhausted_for_every_shard_ends_only_its_own() {
    use std::io::BufRead;
    // Shard 1 of 4 over 0..4000000 holds 1027827 (hashlib: 18 leading zero
    // bits); before reports were bound to their sender this run ended at
    // once with exit 3, "no golden nonce".
    let liar = std::sync::Arc::new(LyingWorkerBin::new());
    let run = uuid::Uuid::new_v4().to_string();
    let mut child = local(&[
        "submit",
        "--launcher",
        "local",
        "--pods",
        "4",
        "--threads",
        "1",
        "-d",
        "18",
        "--range",
        "0..4000000",
        "--json",
        "--run-id",
        &run,
    ])
    .env("CND_WORKER_BIN", liar.path())
    // The master's debug log names each ignored message: the event the
    // honest workers wait for.
    .env("RUST_LOG", "warn,cnd_core=debug")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lies_read = {
        let liar = std::sync::Arc::clone(&liar);
        std::thread::spawn(move || {
            let (mut lines, mut seen) = (Vec::new(), std::collections::BTreeSet::new());
            for line in std::io::BufReader::new(stderr).lines() {
                let line = line.unwrap();
                for shard in 1..4u64 {
                    if line.contains(&format!(
                        "report for shard {shard} from the worker of shard 0"
                    )) && seen.insert(shard)
                        && seen.len() == 3
                    {
                        liar.go();
                    }
                }
                lines.push(line);
            }
            (seen, lines.join("\n"))
        })
    };
    let out = wait_for_end(child, &run, Duration::from_secs(120));
    let (seen, stderr) = lies_read.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(seen.len(), 3, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let nonce: u64 = v["nonce"].as_str().unwrap().parse().unwrap();
    assert!(v["shard"].as_u64().unwrap() >= 1, "{v}");
    assert!(nonce >= 1_000_000, "{v}");
    let check = cnd(&[
        "verify",
        "-d",
        "18",
        "--nonce",
        &nonce.to_string(),
        "--json",
    ]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    // The three lies about other shards, each counted; the one about its own
    // shard counts (that is all a compromised worker can do).
    assert_eq!(v["ignored_messages"], 3, "{v}");
}

#[test]
fn a_worker_frozen_by_sigstop_is_replaced_and_the_run_goes_on() {
    // Progress every 0.25 s: a worker silent for 6 of them (1.5 s) is stalled.
    let run = uuid::Uuid::new_v4().to_string();
    let mut child = endless_local_submit(&run, &["--progress-every", "0.25"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_workers(&mut child, &run, 2);
    let frozen = workers_of(&run)[0];
    // SAFETY: kill(2) on a worker of our own child's run, still running.
    unsafe {
        libc::kill(frozen as libc::pid_t, libc::SIGSTOP);
    }
    // Replaced: the frozen worker is gone and two run again.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let workers = workers_of(&run);
        if !workers.contains(&frozen) && workers.len() == 2 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("cnd-cli ended ({status}) instead of replacing the frozen worker");
        }
        assert!(
            Instant::now() < deadline,
            "the frozen worker {frozen} was never replaced"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let output = wait_for_end(child, &run, Duration::from_secs(60));
    support::assert_exit(&output, 143);
    let stderr = support::stderr_of(&output);
    assert!(
        stderr.contains("reported no progress for") && stderr.contains("started it again"),
        "{stderr}"
    );
}
