//! `cnd-cli plan --from`: the overhead and rate fitted from sweep results, the
//! pods chosen with the overhead taken out of the deadline, and one clear
//! sentence (exit 2) for each kind of bad input.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};

use support::{cnd, stderr_of as stderr, stdout_of as stdout};

fn json_of(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    serde_json::from_str(stdout(out).trim()).expect("one JSON object")
}

/// Exit 2, one `cnd-cli: error:` line on stderr naming every one of `needles`.
fn assert_refused(args: &[&str], needles: &[&str]) -> String {
    let out = cnd(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("cnd-cli: error: ") || l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{args:?}: no error line in {err:?}"));
    for needle in needles {
        assert!(line.contains(needle), "{args:?}: {line:?} lacks {needle:?}");
    }
    err
}

/// A fresh directory under the system's temporary one.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnd-plan-fit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A sweep row as `cnd-cli sweep` writes it.
fn row(pods: u64, d: u32, outcome: &str, hashes: u64, ms: u64, pending_ms: u64) -> Value {
    json!({
        "pods": pods, "shards": pods, "difficulty": d, "repeat": 1,
        "block_hex": "00ff", "nonce": "12345", "outcome": outcome,
        "first_running_ms": pending_ms + 300, "time_to_result_ms": ms,
        "hashes": hashes, "mhs": hashes as f64 / ms as f64 / 1e3,
        "pod_mhs": 5.0, "pending_ms": pending_ms, "wall_ms": ms + 400,
        "run_id": "5f0c6a43-0000-4000-8000-000000000000", "error": null,
        "launcher": "kubernetes", "cluster": "test-cluster", "cpu_model": "Test CPU",
        "cpus": 2, "cnd_version": "0.1.0", "started_unix_ms": 1_700_000_000_000u64
    })
}

fn write_rows(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// 48 found runs from the model, 4 s of start-up after a pending that is 1 s
/// in most runs, 5 MH/s per pod, ±1% noise, two runs held up 30 s more;
/// one run that timed out and one that failed, which the fit skips.
fn model_rows() -> Vec<Value> {
    const STARTUP_MS: f64 = 4000.0;
    const RATE: f64 = 5e6;
    let mut state: u64 = 11;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut rows = Vec::new();
    let mut i = 0;
    for d in 20..=25u32 {
        for pods in [1u64, 2, 4, 8] {
            for _ in 0..2 {
                // Hashes to a find: exponential with mean 2^D.
                let hashes = (-(1.0 - uniform()).ln() * f64::from(d).exp2()) as u64 + 1;
                let pending = match i % 4 {
                    0 if i % 8 == 0 => 0,
                    0 => 3000,
                    _ => 1000,
                };
                let ms = pending as f64 + STARTUP_MS + hashes as f64 / (pods as f64 * RATE) * 1e3;
                let mut ms = ms * (1.0 + 0.01 * (2.0 * uniform() - 1.0));
                if i == 9 || i == 30 {
                    ms += 30_000.0;
                }
                rows.push(row(pods, d, "found", hashes, ms as u64, pending));
                i += 1;
            }
        }
    }
    rows.push(row(8, 26, "timed_out", 10, 60_000, 0));
    rows.push(row(2, 26, "error", 0, 0, 0));
    rows
}

fn model_file(name: &str) -> (PathBuf, String) {
    let dir = scratch(name);
    let file = dir.join("results.jsonl");
    write_rows(&file, &model_rows());
    let text = file.display().to_string();
    (dir, text)
}

#[test]
fn the_fit_gives_back_the_overhead_and_rate_the_runs_were_made_with() {
    let (dir, file) = model_file("model");
    let v = json_of(&cnd(&[
        "plan",
        "-d",
        "28",
        "--within",
        "30s",
        "--confidence",
        "0.95",
        "--from",
        &file,
        "--json",
    ]));
    let overhead = v["startup_overhead_ms"].as_f64().unwrap();
    let rate = v["rate_mhs_per_pod"].as_f64().unwrap();
    assert!(
        (overhead - 5000.0).abs() < 50.0,
        "overhead {overhead} ms: {v}"
    );
    assert!((rate - 5.0).abs() < 0.05, "rate {rate} MH/s: {v}");
    assert_eq!(v["fit"]["pending_ms"], 1000.0, "{v}");
    let startup = v["fit"]["startup_ms"].as_f64().unwrap();
    assert!(
        (startup - 4000.0).abs() < 50.0,
        "start-up {startup} ms: {v}"
    );
    assert_eq!(v["fit"]["runs_used"], 48, "{v}");
    assert_eq!(v["fit"]["rows"], 50, "{v}");
    assert_eq!(v["fit"]["pods_seen"], json!([1, 2, 4, 8]), "{v}");
    assert!(v["fit"]["runs_set_aside"].as_u64().unwrap() >= 2, "{v}");
    let error = v["fit_error"].as_f64().unwrap();
    assert!(error < 0.01, "fit error {error}: {v}");
    // The two held-up runs are in the RMS: 30 s over sqrt(48 / 2) is about 6 s.
    let rms = v["fit"]["rms_error_ms"].as_f64().unwrap();
    assert!((5000.0..7000.0).contains(&rms), "RMS {rms} ms: {v}");
    // 95% at D = 28 takes 2.996 × 2^28 = 8.04e8 hashes; 25 s of hashing after
    // the 5 s overhead at 5 MH/s is 1.25e8 per pod: 7 pods (6 if the whole
    // 30 s were hashing).
    assert_eq!(v["pods"], 7, "{v}");
    assert_eq!(v["plan"]["pods"], 7, "{v}");
    assert!(v["plan"]["confidence"].as_f64().unwrap() >= 0.95, "{v}");
    let expected = v["plan"]["expected_seconds"].as_f64().unwrap();
    // 2^28 / (7 × 5 MH/s) = 7.67 s, plus the 5 s overhead.
    assert!((expected - 12.67).abs() < 0.1, "{v}");
    let one_pod_median = v["one_pod_seconds_for"][0]["seconds"].as_f64().unwrap();
    // ln 2 × 2^28 / 5 MH/s = 37.2 s, plus the overhead.
    assert!((one_pod_median - 42.2).abs() < 0.3, "{v}");

    // The same, for a person.
    let out = cnd(&["plan", "-d", "28", "--within", "30s", "--from", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "Fitted from    48 found runs of 50 in ",
        " (test-cluster), at 1, 2, 4, 8 pods\n",
        "Model          time to result = pending + start-up + hashes / (pods × rate), least squares; 3 runs off the line set aside\n",
        "Overhead       5.00 s per run: 1.00 s pending + 4.00 s start-up (a worker first seen running after 1.30 s, median)\n",
        "Rate per pod   5.04 MH/s (fitted from 48 runs)\n",
        "Rate by pods   5.00 MH/s at 1, 5.00 MH/s at 2, 5.00 MH/s at 4, 5.00 MH/s at 8 pods",
        "Fit error      0.47% median, RMS 6.12 s, model against measured time over all 48 runs\n",
        ", overhead included\n",
        "Pods           7 pods for 95.00% confidence within 30.00 s (reaching ",
        "Pods           7 pods for 95.00% confidence within 30.00 s (reaching 96.26%), 25.00 s of it hashing after the overhead\n",
        "Expected time  12.61 s with 7 pods, overhead included\n",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
    // Pods that add their whole rate: no warning.
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    // A sweep's directory is its results.jsonl; files pool, by comma or repeated.
    let rows = model_rows();
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    write_rows(&a, &rows[..20]);
    write_rows(&b, &rows[20..]);
    let pooled = format!("{},{}", a.display(), b.display());
    let dir_text = dir.display().to_string();
    for from in [
        vec!["--from", dir_text.as_str()],
        vec!["--from", pooled.as_str()],
        vec!["--from", a.to_str().unwrap(), "--from", b.to_str().unwrap()],
    ] {
        let mut args = vec!["plan", "-d", "28", "--within", "30s", "--json"];
        args.extend(&from);
        let w = json_of(&cnd(&args));
        assert_eq!(
            w["startup_overhead_ms"], v["startup_overhead_ms"],
            "{from:?}"
        );
        assert_eq!(w["rate_mhs_per_pod"], v["rate_mhs_per_pod"], "{from:?}");
        assert_eq!(w["pods"], 7, "{from:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn given_pods_get_their_chance_after_the_overhead() {
    let (dir, file) = model_file("pods");
    let v = json_of(&cnd(&[
        "plan", "-d", "28", "--within", "30s", "--pods", "6", "--from", &file, "--json",
    ]));
    // 6 pods × 5 MH/s × 25 s = 7.5e8 hashes: 1 - exp(-7.5e8 / 2^28) = 93.9%.
    let confidence = v["plan"]["confidence"].as_f64().unwrap();
    assert!((confidence - 0.939).abs() < 0.005, "{v}");
    assert_eq!(v["pods"], 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_sweep_in_the_docs_fits_with_its_error_and_says_the_pods_share_cpus() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/sweep/all-cores/results.jsonl"
    );
    let out = cnd(&[
        "plan", "-d", "26", "--within", "10s", "--from", file, "--json",
    ]);
    let v = json_of(&out);
    assert_eq!(v["fit"]["runs_used"], 84, "{v}");
    assert_eq!(v["fit"]["pods_seen"], json!([1, 2, 4, 8]), "{v}");
    assert_eq!(v["fit"]["cluster"], "local processes on vm", "{v}");
    let overhead = v["startup_overhead_ms"].as_f64().unwrap();
    let rate = v["rate_mhs_per_pod"].as_f64().unwrap();
    let error = v["fit_error"].as_f64().unwrap();
    assert!((overhead - 519.0).abs() < 2.0, "{v}");
    assert!((rate - 9.82).abs() < 0.01, "{v}");
    // Eight pods on a 2-CPU machine hash no faster than one: a per-pod
    // model misses by a lot, and says so.
    assert!((error - 0.6355).abs() < 0.001, "{v}");
    assert_eq!(v["fit"]["pending_ms"], 0.0, "{v}");
    assert_eq!(v["fit"]["runs_set_aside"], 14, "{v}");
    // 3 × 2^26 = 2.01e8 hashes in 9.48 s at 9.82 MH/s per pod: 3 pods.
    assert_eq!(v["pods"], 3, "{v}");
    let by_pods = v["fit"]["rate_by_pods"].as_array().unwrap();
    let rate_at = |i: usize| by_pods[i]["finder_mhs_per_pod"].as_f64().unwrap();
    assert!(rate_at(3) < rate_at(0) / 4.0, "{v}");
    let warning = stderr(&out);
    assert!(
        warning.contains("warning: each pod hashed 1.23 MH/s at 8 pods but 8.84 MH/s at 1 pod"),
        "{warning}"
    );

    let out = cnd(&["plan", "-d", "26", "--within", "10s", "--from", file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "Fitted from    84 found runs of 84 in ",
        "Overhead       519 ms per run: 0 ms pending + 519 ms start-up",
        "Rate per pod   9.82 MH/s (fitted from 84 runs)",
        "Rate by pods   8.84 MH/s at 1, 4.60 MH/s at 2, 2.29 MH/s at 4, 1.23 MH/s at 8 pods",
        "Fit error      63.55% median, RMS 3.34 s, model against measured time over all 84 runs",
        "One pod        50.00% chance within 5.26 s, overhead included",
        "Pods           3 pods for 95.00% confidence within 10.00 s",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
}

#[test]
fn rate_and_from_together_are_refused() {
    let (dir, file) = model_file("rate");
    assert_refused(
        &["plan", "-d", "20", "--rate", "5", "--from", &file],
        &["--from", "cannot be used with", "--rate"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_deadline_inside_the_overhead_is_refused() {
    let (dir, file) = model_file("deadline");
    assert_refused(
        &["plan", "-d", "28", "--within", "4s", "--from", &file],
        &["deadline 4.00 s", "no longer than the fitted overhead"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_results_get_one_sentence_and_exit_2() {
    let dir = scratch("bad");
    let missing = dir.join("nope.jsonl");
    let missing_text = missing.display().to_string();
    assert_refused(
        &["plan", "-d", "20", "--from", &missing_text],
        &[&format!("--from {missing_text}: "), "No such file"],
    );

    let rows = model_rows();
    let garbled = dir.join("garbled.jsonl");
    std::fs::write(
        &garbled,
        format!("{}\n{{\"pods\": \"many\"}}\n{}\n", rows[0], rows[1]),
    )
    .unwrap();
    let garbled_text = garbled.display().to_string();
    assert_refused(
        &["plan", "-d", "20", "--from", &garbled_text],
        &[&format!("{garbled_text} line 2"), "not a sweep result"],
    );

    let cases: Vec<(&str, Vec<Value>, Vec<&str>)> = vec![
        (
            "none-found",
            vec![
                row(1, 20, "timed_out", 10, 9000, 0),
                row(2, 20, "error", 0, 0, 0),
            ],
            vec!["none of the 2 runs", "found a nonce"],
        ),
        (
            "one-pod-count",
            rows.iter().filter(|r| r["pods"] == 4).cloned().collect(),
            vec!["all 12 runs are at 4 pods:", "two pod counts"],
        ),
        (
            "shrinking",
            (1..=6u64)
                .map(|i| row(1 + i % 2, 22, "found", i * 1_000_000, 9000 - i * 1000, 0))
                .collect(),
            vec!["the fitted rate is not positive"],
        ),
        (
            "early",
            // 1 MH/s per pod less 300 ms: a line through -300 ms.
            (1..=6u64)
                .map(|i| {
                    let pods = 1 + i % 2;
                    let hashes = i * 1_000_000;
                    row(pods, 22, "found", hashes, hashes / pods / 1000 - 300, 0)
                })
                .collect(),
            vec!["the fitted start-up overhead is negative (-300 ms)"],
        ),
        (
            "two-clusters",
            rows.iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut r = r.clone();
                    if i % 5 == 0 {
                        r["cluster"] = json!("other-cluster");
                    }
                    r
                })
                .collect(),
            vec![
                "from 2 places",
                "other-cluster (kubernetes)",
                "one cluster's runs",
            ],
        ),
        ("empty", vec![], vec!["the files hold no runs"]),
        (
            "too-few",
            rows[..2].to_vec(),
            vec!["only 2 of the runs found a nonce", "3 or more"],
        ),
    ];
    for (name, rows, needles) in cases {
        let file = dir.join(format!("{name}.jsonl"));
        write_rows(&file, &rows);
        let text = file.display().to_string();
        let mut wanted = vec!["--from: "];
        wanted.extend(needles);
        assert_refused(&["plan", "-d", "20", "--from", &text, "--json"], &wanted);
        let out = cnd(&["plan", "-d", "20", "--from", &text, "--json"]);
        assert!(stdout(&out).is_empty(), "{name}: {}", stdout(&out));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_teaches_the_fitted_mode() {
    let out = cnd(&["plan", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for needle in [
        "--from <FILE>",
        "time to result = pending + start-up + hashes / (pods × rate)",
        "the rate is what it fits",
        "overhead comes",
        "--within minus the overhead",
        "cnd-cli plan -d 26 --within 10s --from docs/sweep/all-cores/results.jsonl",
    ] {
        assert!(
            text.contains(needle),
            "plan --help lacks {needle:?}:\n{text}"
        );
    }
}
