//! `cnd-cli sweep` end to end on the local launcher: real `submit` runs with
//! real `cnd-worker` processes reporting over their stdout (the local default),
//! so nothing but the two binaries is needed.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cnd_core::{verify, NonceBits, NonceFormat, Puzzle};
use serde_json::Value;
use support::{assert_exit, processes_where, stderr_of, without_aws, worker_bin, CLI};

/// `cnd-cli sweep --launcher local ARGS`, with no AWS settings at all.
fn sweep(args: &[&str]) -> Command {
    let mut command = Command::new(CLI);
    command
        .args(["sweep", "--launcher", "local"])
        .args(args)
        .env("CND_WORKER_BIN", worker_bin())
        .env("CND_PROGRESS_SECS", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    without_aws(&mut command);
    command
}

/// A fresh, empty directory for one test.
fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnd-sweep-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The fields of one CSV line (RFC 4180 quoting).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

fn jsonl(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The text of every `<text>` of the SVG at `path`, which must be well-formed.
fn svg_texts(path: &Path) -> Vec<String> {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&svg)
        .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_string())
        .collect()
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_small_sweep_writes_rows_charts_and_a_report() {
    let dir = out_dir("small");
    let output = sweep(&[
        "--pods",
        "1,2",
        "-d",
        "10..11",
        "--repeat",
        "2",
        "--out",
        dir.to_str().unwrap(),
        "--json",
    ])
    .output()
    .unwrap();
    assert_exit(&output, 0);
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["runs"], 8);
    assert_eq!(summary["found"], 8);
    assert_eq!(summary["interrupted"], false);

    // One JSONL row per run, each a verified golden nonce of its own block.
    let rows = jsonl(&dir);
    assert_eq!(rows.len(), 8);
    let mut cells = Vec::new();
    let mut blocks = std::collections::BTreeSet::new();
    for row in &rows {
        assert_eq!(row["outcome"], "found", "{row}");
        assert_eq!(row["launcher"], "local");
        let d = row["difficulty"].as_u64().unwrap() as u32;
        let pods = row["pods"].as_u64().unwrap();
        assert_eq!(row["shards"].as_u64(), Some(pods));
        let block = hex_to_bytes(row["block_hex"].as_str().unwrap());
        let puzzle = Puzzle::new(block.clone(), d, NonceBits::B32, NonceFormat::Binary).unwrap();
        let nonce: u64 = row["nonce"].as_str().unwrap().parse().unwrap();
        assert!(verify(&puzzle, nonce).golden, "{row}");
        assert!(row["time_to_result_ms"].as_u64().is_some(), "{row}");
        assert!(row["first_running_ms"].as_u64().is_some(), "{row}");
        assert!(row["wall_ms"].as_u64().unwrap() >= row["time_to_result_ms"].as_u64().unwrap());
        // The finder's own rate: none when it found the nonce within a millisecond.
        assert!(
            row["pod_mhs"].is_null() || row["pod_mhs"].as_f64().unwrap() > 0.0,
            "{row}"
        );
        cells.push((pods, d, row["repeat"].as_u64().unwrap()));
        blocks.insert(block);
    }
    cells.sort();
    let mut want: Vec<(u64, u32, u64)> = Vec::new();
    for pods in [1, 2] {
        for d in [10, 11] {
            want.extend([(pods, d, 1), (pods, d, 2)]);
        }
    }
    assert_eq!(cells, want);
    assert_eq!(blocks.len(), 8, "each run has a fresh block");

    // The CSV: a header and the same eight rows.
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 9, "{csv}");
    let header = csv_fields(lines[0]);
    assert_eq!(
        &header[..7],
        [
            "pods",
            "shards",
            "difficulty",
            "repeat",
            "block_hex",
            "nonce",
            "outcome"
        ]
    );
    let outcome = header.iter().position(|h| h == "outcome").unwrap();
    for line in &lines[1..] {
        let fields = csv_fields(line);
        assert_eq!(fields.len(), header.len(), "{line}");
        assert_eq!(fields[outcome], "found");
    }

    // The charts: well-formed SVG with a series per D and per pod count.
    let t = svg_texts(&dir.join("time_vs_pods.svg"));
    for want in [
        "D = 10",
        "D = 11",
        "pods (log scale)",
        "time to result, seconds (log scale)",
    ] {
        assert!(t.iter().any(|s| s == want), "{want:?} not in {t:?}");
    }
    let t = svg_texts(&dir.join("time_vs_difficulty.svg"));
    for want in ["1 pod", "2 pods", "difficulty D, leading zero bits"] {
        assert!(t.iter().any(|s| s == want), "{want:?} not in {t:?}");
    }
    assert!(svg_texts(&dir.join("speedup.svg"))
        .iter()
        .any(|s| s == "ideal (S = P)"));
    assert!(svg_texts(&dir.join("efficiency.svg"))
        .iter()
        .any(|s| s == "ideal (100%)"));
    // Local workers are pending only while they are spawned: no pending chart.
    assert!(!dir.join("pending.svg").exists());

    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("| D \\ pods | 1 | 2 |"), "{report}");
    assert!(
        report.contains("\n| 10 | ") && report.contains("\n| 11 | "),
        "{report}"
    );
    assert!(
        report.contains("![") && report.contains("(time_vs_pods.svg)"),
        "{report}"
    );
    assert!(report.contains("cnd version: "), "{report}");

    // --plot redraws everything from results.jsonl alone.
    for f in ["time_vs_pods.svg", "speedup.svg", "report.md"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let replot = Command::new(CLI)
        .args(["sweep", "--plot", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_exit(&replot, 0);
    assert!(svg_texts(&dir.join("time_vs_pods.svg"))
        .iter()
        .any(|s| s == "D = 11"));
    assert_eq!(
        std::fs::read_to_string(dir.join("report.md")).unwrap(),
        report
    );
    assert_eq!(jsonl(&dir).len(), 8, "--plot does not touch the rows");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Pids of the worker processes of the block `block` (text or hex) at D = 40.
fn workers_with(block: &str) -> Vec<u32> {
    processes_where(|vars| {
        let ours = vars
            .iter()
            .any(|var| var.starts_with(b"CND_BLOCK") && var.ends_with(block.as_bytes()));
        ours && vars.contains(&&b"CND_DIFFICULTY=40"[..])
    })
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_interrupted_sweep_keeps_its_rows_and_cleans_up_the_run() {
    let dir = out_dir("interrupted");
    // D = 40 with 32-bit nonces: the second run would search for minutes.
    let block = format!("sweep-interrupt-{}", std::process::id());
    let block_hex: String = block.bytes().map(|b| format!("{b:02x}")).collect();
    let mut child = sweep(&[
        "--pods",
        "1",
        "-d",
        "10,40",
        "--block",
        &block,
        "--out",
        dir.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // The first run's row is written; the second run's worker is searching.
    wait_until(
        "the second run's worker starting",
        Duration::from_secs(60),
        || !workers_with(&block_hex).is_empty() || !workers_with(&block).is_empty(),
    );
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the sweep did not stop within 60 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert_exit(&output, 130);

    let rows = jsonl(&dir);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "found");
    assert_eq!(rows[0]["difficulty"], 10);
    assert_eq!(rows[1]["outcome"], "interrupted");
    assert_eq!(rows[1]["difficulty"], 40);
    assert_eq!(rows[1]["nonce"], Value::Null);
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // The charts and the report are drawn from what was measured.
    assert!(dir.join("time_vs_pods.svg").is_file());
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("| 1 | 40 | 1 | interrupted |"), "{report}");

    // The interrupted run cleaned up: no worker is left.
    wait_until("the workers ending", Duration::from_secs(5), || {
        workers_with(&block_hex).is_empty() && workers_with(&block).is_empty()
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_has_examples_and_bad_grids_are_usage_errors() {
    let help = Command::new(CLI)
        .args(["sweep", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Examples:"), "{text}");
    assert!(text.contains("cnd-cli sweep --plot"), "{text}");
    for bad in [
        &["sweep", "--pods", "1,0", "-d", "20", "--out", "x"][..],
        &["sweep", "--pods", "1", "-d", "26..20", "--out", "x"],
        &["sweep", "--pods", "1", "-d", "20"],
        &["sweep", "--plot", "x", "--pods", "1"],
    ] {
        let out = Command::new(CLI).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr_of(&out));
    }
    // --plot of a directory without results fails naming the file.
    let empty = out_dir("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(CLI)
        .args(["sweep", "--plot", empty.to_str().unwrap()])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(
        stderr_of(&out).contains("results.jsonl"),
        "{}",
        stderr_of(&out)
    );
    std::fs::remove_dir_all(&empty).unwrap();
}

/// Pids of the `submit` processes started for the block `block_hex`.
fn submits_with(block_hex: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                args.contains(&&b"submit"[..]) && args.contains(&block_hex.as_bytes())
            })
        })
        .collect()
}

/// A sweep whose one run (D = 40, 64-bit nonces) cannot end by itself, started
/// and waited for until its worker runs; the block (its text: workers get it
/// as CND_BLOCK, submit as --block-hex), the directory and the sweep.
fn sweep_in_a_long_run(name: &str) -> (String, PathBuf, std::process::Child) {
    let dir = out_dir(name);
    let block = format!("sweep-{name}-{}", std::process::id());
    let block_hex: String = block.bytes().map(|b| format!("{b:02x}")).collect();
    let mut child = sweep(&[
        "--pods",
        "1",
        "-d",
        "40",
        "--nonce-bits",
        "64",
        "--block",
        &block,
        "--out",
        dir.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_until(
        "the run's worker starting",
        Duration::from_secs(120),
        || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the sweep ended before its run's worker started"
            );
            !workers_of_block(&block).is_empty()
        },
    );
    assert_eq!(submits_with(&block_hex).len(), 1, "one submit runs");
    (block, dir, child)
}

/// The workers of the block `block`, given to them as text or as hex.
fn workers_of_block(block: &str) -> Vec<u32> {
    let hex: String = block.bytes().map(|b| format!("{b:02x}")).collect();
    let mut pids = workers_with(block);
    pids.extend(workers_with(&hex));
    pids
}

/// The `submit` runs of the block `block` (given to them as hex).
fn submits_of_block(block: &str) -> Vec<u32> {
    submits_with(
        &block
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

#[test]
fn a_sweep_killed_by_sigkill_takes_its_run_and_the_runs_workers_with_it() {
    let (block, dir, mut child) = sweep_in_a_long_run("sigkill");
    child.kill().unwrap(); // SIGKILL: the sweep cannot pass anything on
    child.wait().unwrap();
    let killed = Instant::now();
    wait_until(
        "the run and its workers ending after the sweep's SIGKILL",
        Duration::from_secs(30),
        || submits_of_block(&block).is_empty() && workers_of_block(&block).is_empty(),
    );
    eprintln!(
        "the run and its workers gone {:?} after the sweep's SIGKILL",
        killed.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `signal` to a sweep in a long run: the run gets it, cleans up and
/// ends with its code, then the sweep stops with the same code.
fn a_signal_reaches_the_run(name: &str, signal: libc::c_int, signal_name: &str) {
    let (block, dir, mut child) = sweep_in_a_long_run(name);
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    wait_until("the sweep ending", Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    let output = child.wait_with_output().unwrap();
    eprintln!(
        "{signal_name}: the sweep ended {:?} after it",
        sent.elapsed()
    );
    assert_exit(&output, 128 + signal);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(&format!("stopped by {signal_name} (exit {})", 128 + signal)),
        "{stderr}"
    );
    assert!(
        stderr.contains("stopping: removing what the run created"),
        "{stderr}"
    );
    let rows = jsonl(&dir);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "interrupted");
    wait_until("the workers ending", Duration::from_secs(5), || {
        workers_of_block(&block).is_empty() && submits_of_block(&block).is_empty()
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sighup_reaches_the_run_in_flight_which_cleans_up_then_the_sweep_exits_129() {
    a_signal_reaches_the_run("sighup", libc::SIGHUP, "SIGHUP");
}

#[test]
fn sigquit_reaches_the_run_in_flight_which_cleans_up_then_the_sweep_exits_131() {
    a_signal_reaches_the_run("sigquit", libc::SIGQUIT, "SIGQUIT");
}

#[test]
fn plot_refuses_a_row_beyond_the_puzzles_limits_naming_its_line() {
    let dir = out_dir("wild-row");
    std::fs::create_dir_all(&dir).unwrap();
    let row = |difficulty: u64| {
        format!(
            r#"{{"pods":1,"shards":1,"difficulty":{difficulty},"repeat":1,"block_hex":"00","nonce":"1","outcome":"found","first_running_ms":1,"time_to_result_ms":1000,"hashes":1048576,"mhs":1.0,"pod_mhs":1.0,"pending_ms":0,"wall_ms":1200,"run_id":null,"error":null,"launcher":"local","cluster":"here","cpu_model":"cpu","cpus":2,"cnd_version":"0.1.0","started_unix_ms":1}}"#
        )
    };
    std::fs::write(
        dir.join("results.jsonl"),
        format!("{}\n{}\n", row(20), row(4294967295)),
    )
    .unwrap();
    let out = Command::new(CLI)
        .args(["sweep", "--plot", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let stderr = stderr_of(&out);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("difficulty 4294967295"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
