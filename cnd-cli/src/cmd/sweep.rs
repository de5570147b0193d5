//! `cnd-cli sweep`: the original report's experiment, on any cluster. Every
//! (pods, D) cell of a grid is run `--repeat` times with `submit`, each run's
//! measurements appended to `DIR/results.jsonl` and `DIR/results.csv` as it
//! ends, then the charts and `DIR/report.md` are drawn from `results.jsonl`.
//!
//! Glue: each run is `cnd-cli submit --json` as a child process (in its own
//! process group, so a Ctrl-C reaches only this sweep, which passes exactly one
//! on: the run cleans up as `submit` always does, and the sweep stops with the
//! rows it has). A run that fails is a row like any other; the sweep goes on.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, ValueEnum};
use cnd_core::puzzle::{parse_difficulty, to_hex};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::args::{parse_duration, OutputArgs, PuzzleShape};
use crate::cluster::{
    parse_cpu, parse_dns_label, parse_dns_subdomain, parse_memory, LauncherKind, WorkloadKind,
};
use crate::exit::{usage, Exit};
use crate::human;
use crate::machine::{cpu_model, hostname};
use crate::signals::StopSignal;

pub mod chart;
pub mod record;
pub mod report;

use record::{Outcome, ResultsWriter, RunRecord};

/// Time `submit` over a grid of pods × difficulties: CSV, JSONL, SVG charts, a report
///
/// Every (pods, D) cell runs --repeat times, each with a fresh random block
/// (unless --block/--block-hex is given), so repeats are independent samples.
/// Each run is appended to DIR/results.jsonl and DIR/results.csv as it ends;
/// at the end (or after Ctrl-C, once the current run is cleaned up) the charts
/// (SVG) and DIR/report.md are drawn from results.jsonl. A failed run is
/// recorded and the sweep goes on. Running again with the same --out adds rows.
///
/// Examples:
///   cnd-cli sweep --launcher local --pods 1,2,4 -d 18..22 --repeat 3 --out sweep
///   cnd-cli sweep --pods 1,2,4,8,16 -d 20..26 --repeat 3 --image reg/cnd-worker:1 --out eks
///   cnd-cli sweep --launcher local --pods 1,2 -d 20 --out s -- --retry-for 10s
///   cnd-cli sweep --plot eks          redraw the charts and report.md from eks/results.jsonl
///
/// Exit codes: 0 every run found a nonce · 1 some run did not (all rows kept) ·
/// 2 bad usage · 130/143 interrupted (the rows so far, charts and report kept).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SweepArgs {
    #[command(flatten)]
    shape: PuzzleShape,

    /// Pod counts, comma-separated: 1,2,4,8,16.
    #[arg(long, value_name = "P,P,...", value_parser = parse_pod_list, required_unless_present = "plot")]
    pods: Option<PodList>,

    /// Difficulties: a range with both ends included (20..26), a list (20,22,24) or one D.
    #[arg(short = 'd', long = "difficulty", value_name = "D..D", value_parser = parse_difficulties, required_unless_present = "plot")]
    difficulties: Option<Difficulties>,

    /// Runs of each cell.
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_repeat)]
    repeat: u32,

    /// Shards per pod (--shards of each run is pods × this).
    #[arg(long, value_name = "K", default_value = "1", value_parser = parse_repeat)]
    shards_per_pod: u32,

    /// The directory for results.jsonl, results.csv, the charts and report.md (created).
    #[arg(long, value_name = "DIR", required_unless_present = "plot")]
    out: Option<PathBuf>,

    /// Only redraw the charts and report.md of DIR from its results.jsonl.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["pods", "difficulties", "out"])]
    plot: Option<PathBuf>,

    #[command(flatten)]
    placement: Placement,

    /// Any other `submit` flags, given to every run as they are (after `--`).
    #[arg(last = true, value_name = "SUBMIT FLAGS")]
    submit_flags: Vec<String>,

    #[command(flatten)]
    output: OutputArgs,
}

/// `submit`'s placement flags, passed on to every run (see `cnd-cli submit --help`).
#[derive(Debug, Clone, Args)]
struct Placement {
    /// Where the workers run.
    #[arg(long, value_enum, default_value = "kubernetes")]
    launcher: LauncherKind,

    /// Kubernetes: one Indexed Job, or bare pods.
    #[arg(long, value_enum)]
    workload: Option<WorkloadKind>,

    /// Kubernetes: the worker image. [default: submit's]
    #[arg(long, value_name = "IMG")]
    image: Option<String>,

    /// Kubernetes: imagePullPolicy.
    #[arg(long, value_name = "POLICY", value_parser = ["IfNotPresent", "Always", "Never"])]
    image_pull_policy: Option<String>,

    /// Kubernetes: the namespace.
    #[arg(long, value_name = "NS", value_parser = parse_dns_label)]
    namespace: Option<String>,

    /// Kubernetes: CPU of each pod (e.g. 1, 500m).
    #[arg(long, value_name = "Q", value_parser = parse_cpu)]
    cpu: Option<String>,

    /// Kubernetes: memory of each pod (e.g. 128Mi).
    #[arg(long, value_name = "Q", value_parser = parse_memory)]
    memory: Option<String>,

    /// Kubernetes: the pods' service account.
    #[arg(long, value_name = "NAME", value_parser = parse_dns_subdomain)]
    service_account: Option<String>,

    /// An existing SQS queue for every run, instead of one per run.
    #[arg(long, value_name = "URL", conflicts_with = "queue_name")]
    queue_url: Option<String>,

    /// Like --queue-url, by name.
    #[arg(long, value_name = "NAME")]
    queue_name: Option<String>,

    /// Give each run up to this long (recorded as timed_out).
    #[arg(long, value_name = "DUR", value_parser = duration_text)]
    timeout: Option<String>,

    /// How long a run may keep retrying an unreachable API server or queue.
    #[arg(long, value_name = "DUR", value_parser = duration_text)]
    retry_for: Option<String>,

    /// Local: threads of each worker. [default: this machine's CPUs / pods]
    #[arg(long, value_name = "N", value_parser = crate::args::parse_threads)]
    threads: Option<usize>,
}

fn duration_text(s: &str) -> Result<String, String> {
    parse_duration(s).map(|_| s.trim().to_string())
}

fn value_name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

impl Placement {
    /// The flags, as `submit` takes them.
    fn to_args(&self) -> Vec<String> {
        let mut args = vec!["--launcher".to_string(), value_name(self.launcher)];
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(flag.to_string());
                args.push(v);
            }
        };
        push("--workload", self.workload.map(value_name));
        push("--image", self.image.clone());
        push("--image-pull-policy", self.image_pull_policy.clone());
        push("--namespace", self.namespace.clone());
        push("--cpu", self.cpu.clone());
        push("--memory", self.memory.clone());
        push("--service-account", self.service_account.clone());
        push("--queue-url", self.queue_url.clone());
        push("--queue-name", self.queue_name.clone());
        push("--timeout", self.timeout.clone());
        push("--retry-for", self.retry_for.clone());
        push("--threads", self.threads.map(|t| t.to_string()));
        args
    }
}

/// Pod counts, in the order given, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodList(pub Vec<u64>);

fn parse_pod_list(s: &str) -> Result<PodList, String> {
    let mut pods = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n = match part.parse::<u64>() {
            Ok(0) => return Err("a pod count must be at least 1".to_string()),
            Ok(n) if n > 100_000 => {
                return Err(format!("{n} pods is more than the 100000 supported"))
            }
            Ok(n) => n,
            Err(_) => return Err(format!("{part:?} is not a whole number of pods")),
        };
        if !pods.contains(&n) {
            pods.push(n);
        }
    }
    if pods.is_empty() {
        return Err(format!(
            "{s:?} names no pod counts; give a list like 1,2,4,8"
        ));
    }
    pods.sort_unstable();
    Ok(PodList(pods))
}

/// Difficulties, ascending, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difficulties(pub Vec<u32>);

fn parse_difficulties(s: &str) -> Result<Difficulties, String> {
    let t = s.trim();
    let mut ds = Vec::new();
    if let Some((a, b)) = t.split_once("..") {
        let b = b.strip_prefix('=').unwrap_or(b);
        let (lo, hi) = (one_difficulty(a)?, one_difficulty(b)?);
        if lo > hi {
            return Err(format!("{s:?} is an empty range: write it low..high"));
        }
        if hi - lo >= 64 {
            return Err(format!("{s:?} is more than 64 difficulties"));
        }
        ds.extend(lo..=hi);
    } else {
        for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            ds.push(one_difficulty(part)?);
        }
    }
    ds.sort_unstable();
    ds.dedup();
    if ds.is_empty() {
        return Err(format!(
            "{s:?} names no difficulty; give 20..26, 20,22 or 24"
        ));
    }
    Ok(Difficulties(ds))
}

fn one_difficulty(s: &str) -> Result<u32, String> {
    parse_difficulty(s.trim()).map_err(|e| e.to_string())
}

fn parse_repeat(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) if n > 1000 => Err(format!("{n} is more than the 1000 supported")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// One run to make.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    pods: u64,
    shards: u64,
    difficulty: u32,
    repeat: u32,
}

/// The runs of the grid: the whole grid once, then again for each repeat, so
/// an interrupted sweep has every cell before it has any cell twice.
fn plan(pods: &[u64], ds: &[u32], repeat: u32, shards_per_pod: u32) -> Vec<Planned> {
    let mut runs = Vec::new();
    for r in 1..=repeat {
        for d in ds {
            for p in pods {
                runs.push(Planned {
                    pods: *p,
                    shards: p * u64::from(shards_per_pod),
                    difficulty: *d,
                    repeat: r,
                });
            }
        }
    }
    runs
}

/// Where the runs happen: what every row records besides its measurements.
#[derive(Debug, Clone)]
struct Setting {
    launcher: String,
    cluster: String,
    cpu_model: String,
    cpus: u64,
}

impl Setting {
    fn here(placement: &Placement) -> Setting {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let cluster = match placement.launcher {
            LauncherKind::Local => format!("local processes on {}", hostname()),
            LauncherKind::Kubernetes => {
                let context = kube::config::Kubeconfig::read()
                    .ok()
                    .and_then(|k| k.current_context)
                    .map_or("in-cluster or unknown context".to_string(), |c| {
                        format!("context {c}")
                    });
                match &placement.namespace {
                    Some(ns) => format!("Kubernetes, {context}, namespace {ns}"),
                    None => format!("Kubernetes, {context}"),
                }
            }
        };
        Setting {
            launcher: value_name(placement.launcher),
            cluster,
            cpu_model: cpu_model(),
            cpus,
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `cnd-cli sweep`.
pub fn run(args: SweepArgs) -> anyhow::Result<Exit> {
    if let Some(dir) = &args.plot {
        let (records, files) = plot(dir)?;
        if args.output.json {
            println!(
                "{}",
                json!({ "out": dir, "runs": records.len(), "files": files })
            );
        } else {
            for f in &files {
                println!("{}", f.display());
            }
        }
        return Ok(Exit::Success);
    }
    let (Some(PodList(pods)), Some(Difficulties(ds)), Some(dir)) =
        (&args.pods, &args.difficulties, &args.out)
    else {
        return Err(usage("give --pods, -d and --out, or --plot DIR"));
    };
    // The same checks submit makes, before hours of runs: an error here is
    // one for every run.
    args.shape
        .puzzle(ds[0])
        .and_then(|_| args.shape.puzzle(*ds.last().unwrap()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let earlier = record::read_results(dir).map_or(0, |r| r.len());
    let mut writer = ResultsWriter::open(dir)?;
    if earlier > 0 && !args.output.json {
        eprintln!(
            "cnd-cli: adding to the {earlier} runs already in {}",
            dir.join(record::JSONL).display()
        );
    }
    let exe = std::env::current_exe().context("finding this executable")?;
    let runs = plan(pods, ds, args.repeat, args.shards_per_pod);
    let setting = Setting::here(&args.placement);

    // Ctrl-C / SIGTERM go to the run in flight (one each), which cleans up and
    // ends; no further run starts.
    let child: Arc<Mutex<Option<u32>>> = Arc::default();
    let stopping = Arc::new(AtomicBool::new(false));
    let which: Arc<OnceLock<StopSignal>> = Arc::default();
    let stop = StopSignal::install({
        let (child, stopping, which) = (
            Arc::clone(&child),
            Arc::clone(&stopping),
            Arc::clone(&which),
        );
        move || {
            if !stopping.swap(true, Ordering::SeqCst) {
                eprintln!("cnd-cli: stopping the sweep after the current run is cleaned up (interrupt again to leave its cleanup)");
            }
            let signal = match which.get().map(StopSignal::exit) {
                Some(Exit::Terminated) => libc::SIGTERM,
                _ => libc::SIGINT,
            };
            signal_child(&child, signal);
        }
    })?;
    let _ = which.set(stop.clone());

    let show = !args.output.json;
    let bar = (show && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(runs.len() as u64).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} runs · {elapsed} · {msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(500));
        bar
    });
    let say = |line: &str| match &bar {
        Some(bar) => bar.println(line),
        None if show => eprintln!("{line}"),
        None => {}
    };

    let mut done: Vec<RunRecord> = Vec::new();
    for (i, planned) in runs.iter().enumerate() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let eta_text = eta(&done, &runs[i..])
            .map_or("ETA after the first result".to_string(), |e| {
                format!("ETA ~{}", human::duration(e))
            });
        let cell = format!(
            "{} pods · D={} · #{}",
            planned.pods, planned.difficulty, planned.repeat
        );
        match &bar {
            Some(bar) => bar.set_message(format!("now {cell} · {eta_text}")),
            None => say(&format!(
                "cnd-cli: [{}/{}] {cell} · {eta_text}",
                i + 1,
                runs.len()
            )),
        }
        let block = if args.shape.block_hex.is_some() || args.shape.block.is_some() {
            args.shape.block()
        } else {
            format!("cnd-sweep-{}", Uuid::new_v4().simple()).into_bytes()
        };
        let request = Request {
            exe: &exe,
            planned,
            block: &block,
            shape: &args.shape,
            placement: &args.placement,
            extra: &args.submit_flags,
            setting: &setting,
        };
        let Some(row) = run_one(&request, &child, &stopping, &|line: &str| {
            say(&format!("cnd-cli: [{cell}] {line}"))
        }) else {
            break;
        };
        writer.append(&row)?;
        say(&format!(
            "cnd-cli: [{}/{}] {cell}: {}",
            i + 1,
            runs.len(),
            summary(&row)
        ));
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        done.push(row);
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let interrupted = stopping.load(Ordering::SeqCst);
    // Nothing to draw when the very first run was interrupted before it ended.
    let (all, files) = if record::read_results(dir)?.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        plot(dir)?
    };
    let found = done.iter().filter(|r| r.outcome == Outcome::Found).count();
    if args.output.json {
        println!(
            "{}",
            json!({
                "out": dir,
                "runs": done.len(),
                "planned": runs.len(),
                "found": found,
                "not_found": done.len() - found,
                "interrupted": interrupted,
                "rows_in_results": all.len(),
                "files": files,
            })
        );
    } else {
        println!(
            "{} of {} runs made, {found} found a nonce{}; {} rows in {}",
            done.len(),
            runs.len(),
            if interrupted { " (interrupted)" } else { "" },
            all.len(),
            dir.join(record::JSONL).display()
        );
        for f in &files {
            println!("{}", f.display());
        }
    }
    Ok(if interrupted {
        stop.exit()
    } else if found < done.len() {
        Exit::Error
    } else {
        Exit::Success
    })
}

/// Redraws the charts and report.md of `dir` from its results.jsonl.
fn plot(dir: &Path) -> anyhow::Result<(Vec<RunRecord>, Vec<PathBuf>)> {
    let records = record::read_results(dir)?;
    if records.is_empty() {
        return Err(usage(format!(
            "{} has no runs to draw",
            dir.join(record::JSONL).display()
        )));
    }
    let charts = chart::draw_all(&records)?;
    let mut files = vec![dir.join(record::JSONL), dir.join(record::CSV)];
    files.extend(chart::write_all(dir, &charts)?);
    let report_path = dir.join(report::REPORT);
    std::fs::write(&report_path, report::markdown(&records, &charts))
        .with_context(|| format!("writing {}", report_path.display()))?;
    files.push(report_path);
    Ok((records, files))
}

fn signal_child(child: &Mutex<Option<u32>>, signal: libc::c_int) {
    let slot = child.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pid) = *slot {
        // SAFETY: kill(2) has no memory effects; the pid is our child's, not
        // yet reaped (the slot is cleared before it is waited for).
        unsafe {
            libc::kill(pid as libc::pid_t, signal);
        }
    }
}

/// Everything one run needs.
struct Request<'a> {
    exe: &'a Path,
    planned: &'a Planned,
    block: &'a [u8],
    shape: &'a PuzzleShape,
    placement: &'a Placement,
    extra: &'a [String],
    setting: &'a Setting,
}

impl Request<'_> {
    fn command(&self) -> Command {
        let p = self.planned;
        let mut command = Command::new(self.exe);
        command
            .arg("submit")
            .arg("--json")
            .args(["-d", &p.difficulty.to_string()])
            .args(["--pods", &p.pods.to_string()])
            .args(["--shards", &p.shards.to_string()])
            .args(["--block-hex", &to_hex(self.block)])
            .args(["--nonce-bits", &self.shape.nonce_bits.to_string()])
            .args(["--nonce-format", &self.shape.nonce_format.to_string()])
            .args(self.placement.to_args())
            .args(self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal reaches only the
            // sweep, which passes one on (two would leave the run's cleanup).
            .process_group(0);
        command
    }
}

/// Makes one run and returns its row, whatever happened; `None` if the sweep
/// was stopped before the run started.
fn run_one(
    request: &Request<'_>,
    child_slot: &Mutex<Option<u32>>,
    stopping: &AtomicBool,
    log: &(dyn Fn(&str) + Sync),
) -> Option<RunRecord> {
    let p = request.planned;
    let started = Instant::now();
    let mut row = RunRecord {
        pods: p.pods,
        shards: p.shards,
        difficulty: p.difficulty,
        repeat: p.repeat,
        block_hex: to_hex(request.block),
        nonce: None,
        outcome: Outcome::Error,
        first_running_ms: None,
        time_to_result_ms: None,
        hashes: None,
        mhs: None,
        pod_mhs: None,
        pending_ms: None,
        wall_ms: 0,
        run_id: None,
        error: None,
        launcher: request.setting.launcher.clone(),
        cluster: request.setting.cluster.clone(),
        cpu_model: request.setting.cpu_model.clone(),
        cpus: request.setting.cpus,
        cnd_version: env!("CARGO_PKG_VERSION").to_string(),
        started_unix_ms: unix_ms(),
    };
    let result = spawn_and_wait(request, child_slot, stopping, log);
    row.wall_ms = started.elapsed().as_millis() as u64;
    match result {
        Err(e) => row.error = Some(format!("running submit: {e}")),
        Ok(None) => return None,
        Ok(Some((code, stdout, last_error))) => fill(&mut row, code, &stdout, &last_error),
    }
    Some(row)
}

/// Starts `submit`, passes its stderr to `log` (keeping its error line), and
/// waits for it: the exit code (128 + the signal if killed), stdout, the error;
/// `None` if the sweep was stopped before it started.
fn spawn_and_wait(
    request: &Request<'_>,
    child_slot: &Mutex<Option<u32>>,
    stopping: &AtomicBool,
    log: &(dyn Fn(&str) + Sync),
) -> std::io::Result<Option<(Option<i32>, String, String)>> {
    let mut child = {
        // The signal handler sets `stopping` before it takes this lock to
        // signal the child: so either the stop is seen here and no run starts,
        // or the child is in the slot when the handler looks.
        let mut slot = child_slot.lock().unwrap_or_else(|e| e.into_inner());
        if stopping.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let child = request.command().spawn()?;
        *slot = Some(child.id());
        child
    };
    let stderr = child.stderr.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut out = String::new();
    let last_error = std::thread::scope(|scope| {
        let errors = scope.spawn(move || {
            let mut last_error = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(e) = line.strip_prefix("cnd-cli: error: ") {
                    last_error = e.to_string();
                } else if !line.trim().is_empty() {
                    log(line.strip_prefix("cnd-cli: ").unwrap_or(&line));
                }
            }
            last_error
        });
        let read = stdout.read_to_string(&mut out);
        let last_error = errors.join().unwrap_or_default();
        read.map(|_| last_error)
    })?;
    // Cleared before the child is reaped, so its pid is never signalled
    // once it could belong to another process.
    *child_slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let status = child.wait()?;
    let code = status.code().or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        status.signal().map(|s| 128 + s)
    });
    Ok(Some((code, out, last_error)))
}

/// Fills `row` from what `submit --json` printed and how it exited.
fn fill(row: &mut RunRecord, code: Option<i32>, stdout: &str, last_error: &str) {
    let outcome = match code {
        Some(0) => Outcome::Found,
        Some(3) => Outcome::Exhausted,
        Some(4) => Outcome::TimedOut,
        Some(130) | Some(143) => Outcome::Interrupted,
        _ => Outcome::Error,
    };
    let value: Option<Value> = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok());
    let Some(v) = value.filter(|_| outcome != Outcome::Error) else {
        row.outcome = Outcome::Error;
        row.error = Some(match (last_error.is_empty(), code) {
            (false, _) => last_error.to_string(),
            (true, Some(c)) => format!("submit exited {c} without a result"),
            (true, None) => "submit ended without an exit code".to_string(),
        });
        return;
    };
    let u = |k: &str| v.get(k).and_then(Value::as_u64);
    row.outcome = outcome;
    row.run_id = v.get("run_id").and_then(Value::as_str).map(str::to_string);
    row.shards = u("shards").unwrap_or(row.shards);
    row.hashes = u("hashes");
    row.first_running_ms = u("first_running_ms");
    row.pending_ms = u("pending_ms");
    row.nonce = v.get("nonce").and_then(Value::as_str).map(str::to_string);
    row.time_to_result_ms = match outcome {
        Outcome::Found => u("received_after_ms"),
        _ => u("elapsed_ms"),
    };
    row.mhs = match (row.hashes, row.time_to_result_ms) {
        (Some(h), Some(ms)) if ms > 0 => Some(h as f64 / ms as f64 / 1e3),
        _ => None,
    };
    row.pod_mhs = match (u("worker_hashes"), u("worker_elapsed_ms")) {
        (Some(h), Some(ms)) if ms > 0 && h > 0 => Some(h as f64 / ms as f64 / 1e3),
        _ => None,
    };
    if outcome != Outcome::Found && !last_error.is_empty() {
        row.error = Some(last_error.to_string());
    }
}

/// One line about a finished run.
fn summary(row: &RunRecord) -> String {
    let secs = |ms: u64| human::duration(Duration::from_millis(ms));
    match row.outcome {
        Outcome::Found => format!(
            "found {} in {}{}",
            row.nonce.as_deref().unwrap_or("?"),
            row.time_to_result_ms.map_or("?".into(), secs),
            row.aggregate_mhs()
                .map_or(String::new(), |m| format!(" ({})", human::rate(m * 1e6)))
        ),
        Outcome::Error => format!(
            "failed: {} (recorded; going on)",
            row.error.as_deref().unwrap_or("unknown error")
        ),
        other => format!(
            "{} after {}",
            other.as_str().replace('_', " "),
            row.time_to_result_ms.map_or("?".into(), secs)
        ),
    }
}

/// How long the runs left should take, from the runs so far: each takes the
/// typical overhead (start-up, cleanup) plus 2^D hashes at its pod count's
/// rate (or, for a pod count not seen yet, the per-pod rate × its pods).
/// `None` until a run has found a nonce.
fn eta(done: &[RunRecord], left: &[Planned]) -> Option<Duration> {
    let found: Vec<&RunRecord> = done
        .iter()
        .filter(|r| r.outcome == Outcome::Found && r.aggregate_mhs().is_some())
        .collect();
    let per_pod = record::Spread::of(
        &found
            .iter()
            .filter_map(|r| r.aggregate_mhs().map(|m| m / r.pods as f64))
            .collect::<Vec<_>>(),
    )?
    .median;
    let rate = |pods: u64| {
        let same: Vec<f64> = found
            .iter()
            .filter(|r| r.pods == pods)
            .filter_map(|r| r.aggregate_mhs())
            .collect();
        record::Spread::of(&same).map_or(per_pod * pods as f64, |s| s.median)
    };
    let search = |d: u32, pods: u64| chart::expected_secs(d, rate(pods));
    let overhead = record::Spread::of(
        &found
            .iter()
            .map(|r| (r.wall_ms as f64 / 1e3 - search(r.difficulty, r.pods)).max(0.0))
            .collect::<Vec<_>>(),
    )?
    .median;
    let secs: f64 = left
        .iter()
        .map(|p| overhead + search(p.difficulty, p.pods))
        .sum();
    Some(Duration::from_secs_f64(secs.min(1e12)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use record::tests::found;

    #[test]
    fn grids_are_parsed() {
        assert_eq!(parse_pod_list("1,2,4,8,16").unwrap().0, [1, 2, 4, 8, 16]);
        assert_eq!(parse_pod_list("4, 1,4").unwrap().0, [1, 4]);
        assert!(parse_pod_list("1,0").is_err());
        assert!(parse_pod_list("").is_err());
        assert!(parse_pod_list("two").is_err());
        assert_eq!(
            parse_difficulties("20..26").unwrap().0,
            (20..=26).collect::<Vec<_>>()
        );
        assert_eq!(parse_difficulties("20..=22").unwrap().0, [20, 21, 22]);
        assert_eq!(parse_difficulties("24,20").unwrap().0, [20, 24]);
        assert_eq!(parse_difficulties("24").unwrap().0, [24]);
        assert!(parse_difficulties("26..20").is_err());
        assert!(parse_difficulties("20..300").is_err());
        assert!(parse_repeat("0").is_err());
    }

    #[test]
    fn the_whole_grid_comes_before_any_repeat() {
        let runs = plan(&[1, 2], &[20, 21], 2, 3);
        let order: Vec<(u64, u32, u32)> = runs
            .iter()
            .map(|r| (r.pods, r.difficulty, r.repeat))
            .collect();
        assert_eq!(
            order,
            [
                (1, 20, 1),
                (2, 20, 1),
                (1, 21, 1),
                (2, 21, 1),
                (1, 20, 2),
                (2, 20, 2),
                (1, 21, 2),
                (2, 21, 2)
            ]
        );
        assert_eq!(runs[1].shards, 6);
    }

    #[test]
    fn placement_flags_reach_submit_as_given() {
        let placement = Placement {
            launcher: LauncherKind::Kubernetes,
            workload: Some(WorkloadKind::Pods),
            image: Some("reg/cnd-worker:1".into()),
            image_pull_policy: None,
            namespace: Some("cnd".into()),
            cpu: Some("500m".into()),
            memory: None,
            service_account: None,
            queue_url: None,
            queue_name: None,
            timeout: Some("5m".into()),
            retry_for: None,
            threads: None,
        };
        assert_eq!(
            placement.to_args().join(" "),
            "--launcher kubernetes --workload pods --image reg/cnd-worker:1 --namespace cnd --cpu 500m --timeout 5m"
        );
    }

    fn blank() -> RunRecord {
        let mut r = found(4, 22, 1, 1.0);
        r.outcome = Outcome::Error;
        r.nonce = None;
        r.hashes = None;
        r.mhs = None;
        r.pod_mhs = None;
        r
    }

    #[test]
    fn submit_results_fill_the_row() {
        let json = r#"{"outcome":"found","run_id":"r1","difficulty":22,"hashes":4000000,"elapsed_ms":2100,
            "mhs":1.9,"pods":4,"shards":8,"nonce":"123","worker_hashes":1500000,"worker_elapsed_ms":1000,
            "received_after_ms":2000,"first_running_ms":150,"pending_ms":0}"#
            .replace('\n', "");
        let mut row = blank();
        fill(&mut row, Some(0), &format!("{json}\n"), "");
        assert_eq!(row.outcome, Outcome::Found);
        assert_eq!(row.nonce.as_deref(), Some("123"));
        assert_eq!(row.shards, 8);
        assert_eq!(row.time_to_result_ms, Some(2000));
        assert_eq!(row.first_running_ms, Some(150));
        assert_eq!(row.mhs, Some(2.0));
        assert_eq!(row.pod_mhs, Some(1.5));
        assert_eq!(row.aggregate_mhs(), Some(6.0));

        let mut row = blank();
        fill(
            &mut row,
            Some(1),
            "",
            "creating the SQS queue cnd-x: no answer",
        );
        assert_eq!(row.outcome, Outcome::Error);
        assert_eq!(
            row.error.as_deref(),
            Some("creating the SQS queue cnd-x: no answer")
        );

        let timed_out =
            r#"{"outcome":"timed_out","hashes":10,"elapsed_ms":5000,"pods":4,"shards":4}"#;
        let mut row = blank();
        fill(&mut row, Some(4), timed_out, "");
        assert_eq!(row.outcome, Outcome::TimedOut);
        assert_eq!(row.time_to_result_ms, Some(5000));
        assert_eq!(row.nonce, None);

        let mut row = blank();
        fill(&mut row, Some(0), "not json", "");
        assert_eq!(row.outcome, Outcome::Error);
        assert_eq!(
            row.error.as_deref(),
            Some("submit exited 0 without a result")
        );
    }

    #[test]
    fn the_eta_grows_with_two_to_the_d_over_the_rate() {
        let planned = |pods, difficulty| Planned {
            pods,
            shards: pods,
            difficulty,
            repeat: 1,
        };
        assert_eq!(eta(&[], &[planned(1, 20)]), None);
        // 2^20 hashes in 1 s at 1 pod (1.048576 MH/s), 0.3 s of overhead.
        let done = [found(1, 20, 1, 1.0)];
        let one = eta(&done, &[planned(1, 20)]).unwrap().as_secs_f64();
        assert!((one - 1.3).abs() < 0.01, "{one}");
        let bigger = eta(&done, &[planned(1, 22)]).unwrap().as_secs_f64();
        assert!((bigger - 4.3).abs() < 0.01, "{bigger}");
        // An unseen pod count: the per-pod rate times its pods.
        let wider = eta(&done, &[planned(4, 22)]).unwrap().as_secs_f64();
        assert!((wider - 1.3).abs() < 0.01, "{wider}");
        let both = eta(&done, &[planned(1, 20), planned(1, 22)])
            .unwrap()
            .as_secs_f64();
        assert!((both - 5.6).abs() < 0.02, "{both}");
    }
}
