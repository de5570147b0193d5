//! `cnd-cli sweep`: the original report's experiment, on any cluster. Every
//! (pods, D) cell of a grid is run `--repeat` times with `submit`, each run's
//! measurements appended to `DIR/results.jsonl` and `DIR/results.csv` as it
//! ends, then the charts and `DIR/report.md` are drawn from `results.jsonl`.
//!
//! Glue: each run is `cnd-cli submit --json` as a child process (in its own
//! process group, so a Ctrl-C reaches only this sweep, which passes exactly one
//! on: the run cleans up as `submit` always does, and the sweep stops with the
//! rows it has). A run that fails is a row like any other; the sweep goes on.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, CommandFactory, ValueEnum};
use cnd_core::puzzle::to_hex;
use cnd_core::{RunSpec, RunSpecError};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use uuid::Uuid;

use crate::args::{
    parse_cpu, parse_difficulties, parse_dns_label, parse_dns_subdomain, parse_duration_text,
    parse_memory, parse_pod_list, parse_repeat, range_for, Difficulties, OutputArgs, PodList,
    PuzzleShape, MAX_COUNT,
};
use crate::cluster::{LauncherKind, WorkloadKind, MAX_LOCAL_WORKERS};
use crate::cmd::submit::output::SubmitJson;
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
/// At most 64 pod counts and 64 difficulties (4096 cells), each cell checked
/// against submit's limits before the first run. A signal (INT, TERM, HUP,
/// QUIT) goes on to the run in flight; the sweep stops once it cleaned up.
/// If the sweep itself is killed, its run gets SIGTERM and cleans up.
///
/// Exit codes: 0 every run found a nonce · 1 some run did not (all rows kept) ·
/// 2 bad usage · 129/130/131/143 stopped by SIGHUP/SIGINT/SIGQUIT/SIGTERM (the
/// rows so far, charts and report kept).
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
    #[arg(long, value_name = "DUR", value_parser = parse_duration_text)]
    timeout: Option<String>,

    /// How long a run may keep retrying an unreachable API server or queue.
    #[arg(long, value_name = "DUR", value_parser = parse_duration_text)]
    retry_for: Option<String>,

    /// Local: threads of each worker. [default: this machine's CPUs / pods]
    #[arg(long, value_name = "N", value_parser = crate::args::parse_threads)]
    threads: Option<usize>,
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

/// One run to make.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    pods: u64,
    shards: u64,
    difficulty: u32,
    repeat: u32,
}

/// The runs of the grid, made one at a time as they are needed (a grid of
/// 64 × 64 cells repeated 1000 times is 4 million runs): the whole grid once,
/// then again for each repeat, so an interrupted sweep has every cell before
/// it has any cell twice.
#[derive(Debug, Clone)]
struct Grid {
    pods: Vec<u64>,
    ds: Vec<u32>,
    repeat: u32,
    shards_per_pod: u32,
}

impl Grid {
    /// Cells in one pass over the grid.
    fn cells(&self) -> u64 {
        (self.pods.len() * self.ds.len()) as u64
    }

    /// Runs in all.
    fn len(&self) -> u64 {
        self.cells() * u64::from(self.repeat)
    }

    /// The run of cell `cell` in pass `pass` (both from 0).
    fn planned(&self, cell: u64, pass: u64) -> Planned {
        let per_d = self.pods.len() as u64;
        let pods = self.pods[(cell % per_d) as usize];
        Planned {
            pods,
            shards: pods * u64::from(self.shards_per_pod),
            difficulty: self.ds[(cell / per_d) as usize],
            repeat: pass as u32 + 1,
        }
    }

    /// The runs from the `from`th (0-based) on, in order.
    fn runs_from(&self, from: u64) -> impl Iterator<Item = Planned> + '_ {
        let cells = self.cells();
        (from..self.len()).map(move |i| self.planned(i % cells, i / cells))
    }

    /// The runs from the `from`th on, as each cell once with how many of its
    /// runs are left (for an estimate: at most one entry per cell).
    fn left_from(&self, from: u64) -> impl Iterator<Item = (Planned, u64)> + '_ {
        let cells = self.cells();
        let (pass, at) = (from / cells, from % cells);
        let later = u64::from(self.repeat).saturating_sub(pass + 1);
        (0..cells).filter_map(move |cell| {
            let left = later + u64::from(cell >= at && pass < u64::from(self.repeat));
            (left > 0).then(|| (self.planned(cell, 0), left))
        })
    }
}

/// Checks every limit `submit` would check, for each pod count and each
/// difficulty of `grid`, before anything runs: the flags as `submit` parses
/// them (the counts, D, the nonce width, whatever is passed after `--`), the
/// shards against the range, local workers against what this machine runs.
/// The error is one sentence naming the cell, exit 2.
fn check_grid(args: &SweepArgs, grid: &Grid) -> anyhow::Result<()> {
    let first = |pods: u64, difficulty: u32| Planned {
        pods,
        shards: pods * u64::from(grid.shards_per_pod),
        difficulty,
        repeat: 1,
    };
    // The block of a sweep changes from run to run; its length changes no limit.
    let block = args.shape.block();
    let setting = Setting {
        launcher: String::new(),
        cluster: String::new(),
        cpu_model: String::new(),
        cpus: 0,
    };
    let (d0, p0) = (grid.ds[0], grid.pods[0]);
    let cells = grid
        .pods
        .iter()
        .map(|&p| first(p, d0))
        .chain(grid.ds.iter().skip(1).map(|&d| first(p0, d)));
    for planned in cells {
        let cell = format!("{} pods · D={}", planned.pods, planned.difficulty);
        let refused = |why: String| usage(format!("the sweep's cell {cell} would fail: {why}"));
        let puzzle = args
            .shape
            .puzzle(planned.difficulty)
            .map_err(|e| refused(e.to_string()))?;
        if planned.shards > MAX_COUNT {
            return Err(refused(format!(
                "{} shards ({} pods × --shards-per-pod {}) is more than the {MAX_COUNT} a run may have",
                planned.shards, planned.pods, grid.shards_per_pod
            )));
        }
        if args.placement.launcher == LauncherKind::Local && planned.pods > MAX_LOCAL_WORKERS {
            return Err(refused(format!(
                "{} local workers is more than the {MAX_LOCAL_WORKERS} --launcher local supports",
                planned.pods
            )));
        }
        let request = Request {
            exe: Path::new("cnd-cli"),
            planned: &planned,
            block: &block,
            shape: &args.shape,
            placement: &args.placement,
            extra: &args.submit_flags,
            setting: &setting,
        };
        // `submit`'s own parser, so no flag it would refuse gets through.
        let argv = std::iter::once("cnd-cli".to_string()).chain(request.submit_args());
        let matches = crate::Cli::command()
            .try_get_matches_from(argv)
            .map_err(|e| refused(clap_sentence(&e)))?;
        let Some(("submit", submit)) = matches.subcommand() else {
            unreachable!("the arguments start with submit");
        };
        if submit.try_get_one::<bool>("dry_run").ok().flatten() == Some(&true) {
            return Err(refused(
                "--dry-run prints manifests instead of running: run `cnd-cli submit --dry-run` itself".to_string(),
            ));
        }
        if submit
            .try_get_one::<WorkloadKind>("workload")
            .ok()
            .flatten()
            == Some(&WorkloadKind::Pods)
            && planned.shards != planned.pods
        {
            return Err(refused(format!(
                "--workload pods runs one pod per shard, so --shards-per-pod must be 1 (it is {})",
                grid.shards_per_pod
            )));
        }
        let range = submit.try_get_one::<String>("range").ok().flatten();
        let range = range_for(&puzzle, range.map(String::as_str))
            .map_err(|e| refused(format!("--range: {e}")))?;
        RunSpec::new(puzzle, range, planned.shards, planned.pods).map_err(|e| match e {
            RunSpecError::Key(e) => anyhow::Error::new(e).context("making a run's report key"),
            e => refused(format!(
                "--pods {} / --shards {}: {e}",
                planned.pods, planned.shards
            )),
        })?;
    }
    Ok(())
}

/// The first line of clap's error, without its `error: ` prefix.
fn clap_sentence(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
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
    let grid = Grid {
        pods: pods.clone(),
        ds: ds.clone(),
        repeat: args.repeat,
        shards_per_pod: args.shards_per_pod,
    };
    // Every check submit makes, before hours of runs: an error here would be
    // one for every run of its cell.
    check_grid(&args, &grid)?;
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
    let total = grid.len();
    let setting = Setting::here(&args.placement);

    // Each stop signal (INT, TERM, HUP, QUIT) goes on to the run in flight as
    // it came, which cleans up and ends (a second one leaves its cleanup, as
    // with submit itself); no further run starts, and the sweep exits with the
    // first signal's code.
    let child: Arc<Mutex<Option<u32>>> = Arc::default();
    let stopping = Arc::new(AtomicBool::new(false));
    let stop = StopSignal::install_with({
        let (child, stopping) = (Arc::clone(&child), Arc::clone(&stopping));
        move |signal| {
            let first = !stopping.swap(true, Ordering::SeqCst);
            // Passed on before anything is said: a stderr write may block.
            signal_child(&child, signal);
            if first {
                eprintln!("cnd-cli: stopping the sweep after the current run is cleaned up (interrupt again to leave its cleanup)");
            }
        }
    })?;

    let show = !args.output.json;
    let bar = (show && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(total).with_style(
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
    for (i, planned) in (0..).zip(grid.runs_from(0)) {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let eta_text = eta(&done, grid.left_from(i))
            .map_or("ETA after the first result".to_string(), |e| {
                format!("ETA ~{}", human::duration(e))
            });
        let cell = format!(
            "{} pods · D={} · #{}",
            planned.pods, planned.difficulty, planned.repeat
        );
        match &bar {
            Some(bar) => bar.set_message(format!("now {cell} · {eta_text}")),
            None => say(&format!("cnd-cli: [{}/{total}] {cell} · {eta_text}", i + 1,)),
        }
        let block = if args.shape.block_hex.is_some() || args.shape.block.is_some() {
            args.shape.block()
        } else {
            format!("cnd-sweep-{}", Uuid::new_v4().simple()).into_bytes()
        };
        let request = Request {
            exe: &exe,
            planned: &planned,
            block: &block,
            shape: &args.shape,
            placement: &args.placement,
            extra: &args.submit_flags,
            setting: &setting,
        };
        let Some((row, code)) = run_one(&request, &child, &stopping, &|line: &str| {
            say(&format!("cnd-cli: [{cell}] {line}"))
        }) else {
            break;
        };
        writer.append(&row)?;
        say(&format!(
            "cnd-cli: [{}/{total}] {cell}: {}",
            i + 1,
            summary(&row, code)
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
                "planned": total,
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
            total,
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

/// How often each run's master asks about its workers (`submit --status-every`):
/// the resolution of the start-up and pending columns, 2 s by `submit`'s default.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// [`STATUS_EVERY`] as `submit` takes it.
const STATUS_EVERY_TEXT: &str = "250ms";

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
    /// `submit`'s arguments for this run, the subcommand first.
    fn submit_args(&self) -> Vec<String> {
        let p = self.planned;
        let mut args: Vec<String> = [
            "submit".to_string(),
            "--json".to_string(),
            "-d".to_string(),
            p.difficulty.to_string(),
            "--pods".to_string(),
            p.pods.to_string(),
            "--shards".to_string(),
            p.shards.to_string(),
            "--block-hex".to_string(),
            to_hex(self.block),
            "--nonce-bits".to_string(),
            self.shape.nonce_bits.to_string(),
            "--nonce-format".to_string(),
            self.shape.nonce_format.to_string(),
        ]
        .into();
        args.extend(self.placement.to_args());
        if self.given_status_every().is_none() {
            args.extend(["--status-every".to_string(), STATUS_EVERY_TEXT.to_string()]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// The `--status-every` among the flags after `--`, as written.
    fn given_status_every(&self) -> Option<&str> {
        let mut flags = self.extra.iter();
        while let Some(flag) = flags.next() {
            if let Some(value) = flag.strip_prefix("--status-every=") {
                return Some(value);
            }
            if flag == "--status-every" {
                return flags.next().map(String::as_str);
            }
        }
        None
    }

    /// How often the run's master asks about its workers: [`STATUS_EVERY`]
    /// unless the flags after `--` say otherwise.
    fn status_every(&self) -> Duration {
        self.given_status_every()
            .and_then(|v| crate::args::parse_status_every(v).ok())
            .unwrap_or(STATUS_EVERY)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(self.exe);
        command
            .args(self.submit_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal reaches only the
            // sweep, which passes one on (two would leave the run's cleanup).
            .process_group(0);
        // The run dies with the sweep, even by SIGKILL: SIGTERM when the sweep
        // is gone, so it cleans up as after any SIGTERM. (The signal follows
        // the spawning thread: the sweep's main thread, which lives as long
        // as the sweep.)
        let sweep = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only async-signal-safe functions (signal, prctl, getppid,
        // kill, getpid).
        unsafe {
            command.pre_exec(move || {
                // The sweep's own SIGTERM handler is inherited until exec and
                // would swallow a SIGTERM that comes before it: the default
                // ends the child then, before it has made anything.
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The sweep may have died before prctl took effect; the run
                // has made nothing yet, so nothing needs cleaning up.
                if libc::getppid() != sweep {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                Ok(())
            });
        }
        command
    }
}

/// Makes one run and returns its row, whatever happened, and `submit`'s exit
/// code; `None` if the sweep was stopped before the run started.
fn run_one(
    request: &Request<'_>,
    child_slot: &Mutex<Option<u32>>,
    stopping: &AtomicBool,
    log: &(dyn Fn(&str) + Sync),
) -> Option<(RunRecord, Option<i32>)> {
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
        status_every_ms: Some(request.status_every().as_millis() as u64),
    };
    let result = spawn_and_wait(request, child_slot, stopping, log);
    row.wall_ms = started.elapsed().as_millis() as u64;
    let code = match result {
        Err(e) => {
            row.error = Some(format!("running submit: {e}"));
            None
        }
        Ok(None) => return None,
        Ok(Some((code, stdout, last_error))) => {
            fill(&mut row, code, &stdout, &last_error);
            code
        }
    };
    Some((row, code))
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
        Some(c) if Exit::is_signal(c) => Outcome::Interrupted,
        _ => Outcome::Error,
    };
    let value: Option<SubmitJson> = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str::<SubmitJson>(l).ok());
    let Some(v) = value.filter(|_| outcome != Outcome::Error) else {
        row.outcome = Outcome::Error;
        row.error = Some(match (last_error.is_empty(), code) {
            (false, _) => last_error.to_string(),
            (true, Some(c)) => format!("submit exited {c} without a result"),
            (true, None) => "submit ended without an exit code".to_string(),
        });
        return;
    };
    row.outcome = outcome;
    row.run_id = v.run_id;
    row.shards = v.shards.unwrap_or(row.shards);
    row.hashes = v.hashes;
    row.first_running_ms = v.first_running_ms;
    row.pending_ms = v.pending_ms;
    row.nonce = v.nonce;
    row.time_to_result_ms = match outcome {
        Outcome::Found => v.received_after_ms,
        _ => v.elapsed_ms,
    };
    row.mhs = match (row.hashes, row.time_to_result_ms) {
        (Some(h), Some(ms)) if ms > 0 => Some(h as f64 / ms as f64 / 1e3),
        _ => None,
    };
    row.pod_mhs = match (v.worker_hashes, v.worker_elapsed_ms) {
        (Some(h), Some(ms)) if ms > 0 && h > 0 => Some(h as f64 / ms as f64 / 1e3),
        _ => None,
    };
    if outcome != Outcome::Found && !last_error.is_empty() {
        row.error = Some(last_error.to_string());
    }
}

/// One line about a finished run that `submit` ended with exit code `code`.
fn summary(row: &RunRecord, code: Option<i32>) -> String {
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
        Outcome::Interrupted => format!(
            "stopped{} and cleaned up after {}",
            code.map_or(String::new(), |c| format!(
                " by {} (exit {c})",
                signal_name(c)
            )),
            row.time_to_result_ms.map_or("?".into(), secs)
        ),
        other => format!(
            "{} after {}",
            other.as_str().replace('_', " "),
            row.time_to_result_ms.map_or("?".into(), secs)
        ),
    }
}

/// The name of the stop signal of exit code `code` (128 + the signal).
fn signal_name(code: i32) -> &'static str {
    match code - 128 {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// How long the runs left should take, from the runs so far: each takes the
/// typical overhead (start-up, cleanup) plus 2^D hashes at its pod count's
/// rate (or, for a pod count not seen yet, the per-pod rate × its pods).
/// `None` until a run has found a nonce.
fn eta(done: &[RunRecord], left: impl IntoIterator<Item = (Planned, u64)>) -> Option<Duration> {
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
    // The median rate of each pod count seen, once (not once per run left).
    let mut seen: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in &found {
        seen.entry(r.pods).or_default().extend(r.aggregate_mhs());
    }
    let seen: BTreeMap<u64, f64> = seen
        .into_iter()
        .filter_map(|(pods, rates)| Some((pods, record::Spread::of(&rates)?.median)))
        .collect();
    let rate = |pods: u64| seen.get(&pods).copied().unwrap_or(per_pod * pods as f64);
    let search = |d: u32, pods: u64| chart::expected_secs(d, rate(pods));
    let overhead = record::Spread::of(
        &found
            .iter()
            .map(|r| (r.wall_ms as f64 / 1e3 - search(r.difficulty, r.pods)).max(0.0))
            .collect::<Vec<_>>(),
    )?
    .median;
    let secs: f64 = left
        .into_iter()
        .map(|(p, runs)| (overhead + search(p.difficulty, p.pods)) * runs as f64)
        .sum();
    Some(Duration::from_secs_f64(secs.clamp(0.0, 1e12)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use record::tests::found;

    #[test]
    fn the_whole_grid_comes_before_any_repeat() {
        let grid = Grid {
            pods: vec![1, 2],
            ds: vec![20, 21],
            repeat: 2,
            shards_per_pod: 3,
        };
        let runs: Vec<Planned> = grid.runs_from(0).collect();
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
        assert_eq!(grid.len(), 8);
        assert_eq!(grid.runs_from(5).collect::<Vec<_>>(), runs[5..]);
        // What is left, per cell: from run 5 (pass 2, cell 1) on, cells 1..4 once.
        let left: Vec<(u64, u32, u64)> = grid
            .left_from(5)
            .map(|(p, n)| (p.pods, p.difficulty, n))
            .collect();
        assert_eq!(left, [(2, 20, 1), (1, 21, 1), (2, 21, 1)]);
        let all: u64 = grid.left_from(0).map(|(_, n)| n).sum();
        assert_eq!(all, 8);
        assert_eq!(grid.left_from(8).count(), 0);
    }

    #[test]
    fn a_huge_grid_is_planned_lazily() {
        // 64 pod counts × 64 difficulties × 1000 repeats: 4,096,000 runs,
        // never all in memory.
        let grid = Grid {
            pods: (1..=64).collect(),
            ds: (0..64).collect(),
            repeat: 1000,
            shards_per_pod: 1,
        };
        assert_eq!(grid.len(), 4_096_000);
        let last = grid.runs_from(grid.len() - 1).next().unwrap();
        assert_eq!((last.pods, last.difficulty, last.repeat), (64, 63, 1000));
        assert_eq!(grid.left_from(1).count(), 4096);
        let done = [found(1, 20, 1, 1.0)];
        assert!(eta(&done, grid.left_from(1)).is_some());
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

    #[test]
    fn runs_poll_their_workers_every_250_ms_unless_told_otherwise() {
        let placement = Placement {
            launcher: LauncherKind::Local,
            workload: None,
            image: None,
            image_pull_policy: None,
            namespace: None,
            cpu: None,
            memory: None,
            service_account: None,
            queue_url: None,
            queue_name: None,
            timeout: None,
            retry_for: None,
            threads: None,
        };
        let shape = PuzzleShape {
            block: None,
            block_hex: None,
            nonce_bits: "32".parse().unwrap(),
            nonce_format: "binary".parse().unwrap(),
        };
        let setting = Setting {
            launcher: "local".into(),
            cluster: "here".into(),
            cpu_model: "cpu".into(),
            cpus: 2,
        };
        let planned = Planned {
            pods: 2,
            shards: 2,
            difficulty: 12,
            repeat: 1,
        };
        let cases: [(&[&str], &str, u64); 4] = [
            (&[], "--status-every 250ms", 250),
            (&["--status-every=1s"], "--status-every=1s", 1000),
            (
                &["--retry-for", "5s", "--status-every", "500ms"],
                "--status-every 500ms",
                500,
            ),
            // submit refuses it; the row says what a sweep asks for.
            (&["--status-every", "soon"], "--status-every soon", 250),
        ];
        for (extra, wanted, ms) in cases {
            let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            let request = Request {
                exe: Path::new("cnd-cli"),
                planned: &planned,
                block: b"b",
                shape: &shape,
                placement: &placement,
                extra: &extra,
                setting: &setting,
            };
            let args = request.submit_args().join(" ");
            assert!(args.contains(wanted), "{args}");
            assert_eq!(args.matches("--status-every").count(), 1, "{args}");
            assert_eq!(request.status_every(), Duration::from_millis(ms), "{args}");
            if ms != 250 || extra.is_empty() {
                // submit takes the flag as the sweep passes it.
                let argv = std::iter::once("cnd-cli".to_string()).chain(request.submit_args());
                crate::Cli::command()
                    .try_get_matches_from(argv)
                    .unwrap_or_else(|e| panic!("{args}: {e}"));
            }
        }
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
        assert_eq!(eta(&[], [(planned(1, 20), 1)]), None);
        // 2^20 hashes in 1 s at 1 pod (1.048576 MH/s), 0.3 s of overhead.
        let done = [found(1, 20, 1, 1.0)];
        let one = eta(&done, [(planned(1, 20), 1)]).unwrap().as_secs_f64();
        assert!((one - 1.3).abs() < 0.01, "{one}");
        let bigger = eta(&done, [(planned(1, 22), 1)]).unwrap().as_secs_f64();
        assert!((bigger - 4.3).abs() < 0.01, "{bigger}");
        // An unseen pod count: the per-pod rate times its pods.
        let wider = eta(&done, [(planned(4, 22), 1)]).unwrap().as_secs_f64();
        assert!((wider - 1.3).abs() < 0.01, "{wider}");
        let both = eta(&done, [(planned(1, 20), 1), (planned(1, 22), 1)])
            .unwrap()
            .as_secs_f64();
        assert!((both - 5.6).abs() < 0.02, "{both}");
        let twice = eta(&done, [(planned(1, 20), 2)]).unwrap().as_secs_f64();
        assert!((twice - 2.6).abs() < 0.02, "{twice}");
    }
}
