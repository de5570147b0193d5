//! `cnd-cli submit`: a distributed search, on Kubernetes or as local worker
//! processes, with results over SQS, the pods' own status, or local stdout.
//!
//! Glue: validate the flags, pick the pods, build the launcher and the channel,
//! hand them to `cnd_core::master::run_master`, show its events, print the result.
//! Whatever happens (found, exhausted, timeout, Ctrl-C, an error), the master
//! removes the workers and the run's queue (if it made one) before this returns.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use cnd_cloud::kubernetes::{self, KubeLauncher, KubeOptions, Workload};
use cnd_cloud::local::{LocalLauncher, LocalOptions};
use cnd_cloud::pod_status::PodStatusChannel;
use cnd_cloud::sqs::{self, SqsChannel};
use cnd_cloud::TokioTimer;
use cnd_core::master::{run_master, MasterEvent, MasterOptions, MasterOutcome, Totals};
use cnd_core::puzzle::to_hex;
use cnd_core::CancelToken;
use cnd_core::{stats, Launcher, Puzzle, ResultChannel, RunSpec, RunSpecError, WorkerStatus};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use uuid::Uuid;

use crate::args::{
    parse_duration, parse_positive, parse_probability, range_for, OutputArgs, PuzzleArgs,
};
use crate::exit::{usage, Exit};
use crate::human;
use crate::signals::StopSignal;
use crate::startup::StartupTimes;

/// Hash rate of one CPU core of a pod, in MH/s, when `--rate` is not given and
/// this machine cannot be measured: a conservative figure for one modern x86 core.
pub const FALLBACK_MHS_PER_CORE: f64 = 10.0;

/// Where the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LauncherKind {
    /// Pods on the Kubernetes cluster of the kubeconfig (or in-cluster config).
    Kubernetes,
    /// `cnd-worker` processes on this machine ($CND_WORKER_BIN, else next to cnd-cli).
    Local,
}

/// How workers' reports reach this master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelKind {
    /// An SQS queue (made for the run, or --queue-url/--queue-name): needs AWS.
    Sqs,
    /// Kubernetes: each pod's final report in its termination message, read
    /// from the pod's status; needs no AWS and no credentials in the pods.
    PodStatus,
    /// Local: each worker's reports on its stdout; needs nothing at all.
    Stdout,
}

impl ChannelKind {
    fn name(self) -> &'static str {
        match self {
            ChannelKind::Sqs => "sqs",
            ChannelKind::PodStatus => "pod-status",
            ChannelKind::Stdout => "stdout",
        }
    }
}

/// How the workers are created on Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    /// One Indexed Job: shards may exceed pods, failed shards are retried.
    Job,
    /// One bare pod per shard (shards = pods), no retries.
    Pods,
}

/// Search the nonce space with many workers at once, on a cluster that grows to fit.
///
/// Examples:
///   cnd-cli submit -d 30 --pods 20 --image registry/cnd-worker:1
///   cnd-cli submit -d 36 --within 10m --confidence 0.9 --rate 40
///   cnd-cli submit -d 20 --pods 3 --launcher local
///   cnd-cli submit -d 30 --pods 4 --channel pod-status
///   cnd-cli submit -d 30 --pods 4 --dry-run > run.yaml
///
/// How reports come back (--channel):
///   stdout      local workers write them to their stdout (the default for
///               --launcher local: nothing to install, no account).
///   pod-status  each pod writes its final report to its termination message
///               and the master reads it from the pod's status: any cluster,
///               no AWS (the default on Kubernetes when no AWS settings are found).
///   sqs         a queue `cnd-<run id>` is made for the run and deleted after
///               it, unless --queue-url/--queue-name name a shared queue (the
///               default on Kubernetes when AWS is configured, or a queue named).
///               AWS settings come from the SDK's usual chain (AWS_REGION,
///               AWS_PROFILE, AWS_ENDPOINT_URL_SQS, ...); on Kubernetes the
///               workers get credentials from their own service account (IRSA),
///               and AWS_REGION / AWS_ENDPOINT_URL_SQS are passed on to them.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SubmitArgs {
    #[command(flatten)]
    puzzle: PuzzleArgs,

    /// Workers that run at once (pods).
    #[arg(long, value_name = "P", value_parser = parse_count, required_unless_present = "within", conflicts_with_all = ["within", "confidence"])]
    pods: Option<u64>,

    /// Pick the pods to find a nonce within this time (with --confidence), e.g. 10m.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, requires = "confidence")]
    within: Option<Duration>,

    /// The chance of finding a nonce within --within, e.g. 0.95 or 95%.
    #[arg(long, value_name = "P", value_parser = parse_probability, requires = "within")]
    confidence: Option<f64>,

    /// MH/s of one pod, for --within. [default: this machine's single-core rate × --cpu]
    #[arg(long, value_name = "MHS_PER_POD", value_parser = parse_positive, requires = "within")]
    rate: Option<f64>,

    /// Shards the range is split into (at least the pods). [default: the pods]
    #[arg(long, value_name = "S", value_parser = parse_count)]
    shards: Option<u64>,

    /// Search only START..END (half-open). [default: the whole space]
    #[arg(long, value_name = "START..END")]
    range: Option<String>,

    /// Where the workers run.
    #[arg(long, value_enum, default_value = "kubernetes")]
    launcher: LauncherKind,

    /// How reports come back. [default: stdout for --launcher local; on
    /// Kubernetes sqs when a queue is named or AWS is configured, else pod-status]
    #[arg(long, value_enum, value_name = "CHANNEL")]
    channel: Option<ChannelKind>,

    /// Kubernetes: one Indexed Job, or bare pods.
    #[arg(long, value_enum, default_value = "job")]
    workload: WorkloadKind,

    /// Kubernetes: the worker image (built by docker/build.sh).
    #[arg(long, value_name = "IMG", default_value = "cnd-worker:latest", value_parser = parse_image)]
    image: String,

    /// Kubernetes: imagePullPolicy (IfNotPresent, Always, Never).
    #[arg(long, value_name = "POLICY", default_value = "IfNotPresent", value_parser = ["IfNotPresent", "Always", "Never"])]
    image_pull_policy: String,

    /// Kubernetes: the namespace. [default: the kubeconfig's, else "default"]
    #[arg(long, value_name = "NS", value_parser = parse_dns_label)]
    namespace: Option<String>,

    /// Kubernetes: CPU of each pod, requested and limited (e.g. 1, 2, 500m).
    #[arg(long, value_name = "Q", default_value = "1", value_parser = parse_cpu)]
    cpu: String,

    /// Kubernetes: memory of each pod, requested and limited (e.g. 128Mi).
    #[arg(long, value_name = "Q", default_value = "128Mi", value_parser = parse_memory)]
    memory: String,

    /// Kubernetes: the pods' service account (e.g. one bound to an IAM role for SQS).
    #[arg(long, value_name = "NAME", value_parser = parse_dns_subdomain)]
    service_account: Option<String>,

    /// Use this existing SQS queue (shared: only this run's messages are taken,
    /// the queue is kept) instead of a queue created for the run.
    #[arg(long, value_name = "URL", conflicts_with = "queue_name", value_parser = parse_queue_url)]
    queue_url: Option<String>,

    /// Like --queue-url, by the queue's name.
    #[arg(long, value_name = "NAME", value_parser = parse_queue_name)]
    queue_name: Option<String>,

    /// Give up after this long (exit 4); the cluster ends the workers itself a
    /// minute later even if this process is gone.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// How long the API server or the queue may keep failing (unreachable, 5xx,
    /// no answer) before the run gives up with exit 1; calls are retried with
    /// backoff meanwhile. A refusal (forbidden, no such queue) ends it at once.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "60s")]
    retry_for: Duration,

    /// Local: threads of each worker. [default: this machine's CPUs / pods]
    #[arg(long, value_name = "N", value_parser = crate::args::parse_threads)]
    threads: Option<usize>,

    /// Print the Kubernetes manifests (YAML) instead of creating anything.
    #[arg(long)]
    dry_run: bool,

    /// The run's id (for tests and scripts that must know it in advance). [default: a new UUID]
    #[arg(long, value_name = "UUID", hide = true)]
    run_id: Option<Uuid>,

    #[command(flatten)]
    output: OutputArgs,
}

fn parse_count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("the count must be at least 1".to_string()),
        Ok(n) if n > 100_000 => Err(format!("{n} is more than the 100000 supported")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// A Kubernetes CPU quantity: `2`, `1.5`, `500m`.
pub fn parse_cpu(s: &str) -> Result<String, String> {
    let number = s.strip_suffix('m').unwrap_or(s);
    let ok = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.matches('.').count() <= 1
        && !number.starts_with('.')
        && cpu_cores(s).is_some_and(|c| c > 0.0);
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not a CPU quantity like 1, 2, 1.5 or 500m"))
}

/// Cores of a CPU quantity.
fn cpu_cores(s: &str) -> Option<f64> {
    match s.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|m| m / 1000.0),
        None => s.parse::<f64>().ok(),
    }
}

/// A Kubernetes memory quantity: `128Mi`, `1Gi`, `500M`, `1000000`.
pub fn parse_memory(s: &str) -> Result<String, String> {
    const SUFFIXES: &[&str] = &[
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", "",
    ];
    let ok = SUFFIXES.iter().any(|suffix| {
        s.strip_suffix(suffix).is_some_and(|n| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
                && n.parse::<u64>().is_ok_and(|v| v > 0)
        })
    });
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not a memory quantity like 128Mi, 1Gi or 500M"))
}

/// A DNS-1123 label (a namespace): lower-case letters, digits and '-', at most 63.
pub fn parse_dns_label(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!("{s:?} is not a valid namespace: lower-case letters, digits and '-', at most 63 characters")
    })
}

/// A DNS-1123 subdomain (a service account name).
pub fn parse_dns_subdomain(s: &str) -> Result<String, String> {
    let ok =
        !s.is_empty() && s.len() <= 253 && s.split('.').all(|label| parse_dns_label(label).is_ok());
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!(
            "{s:?} is not a valid service account name: lower-case letters, digits, '-' and '.'"
        )
    })
}

fn parse_image(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not an image reference like registry/cnd-worker:1"))
}

fn parse_queue_url(s: &str) -> Result<String, String> {
    let ok = (s.starts_with("https://") || s.starts_with("http://")) && s.len() > "https://".len();
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!(
            "{s:?} is not a queue URL like https://sqs.eu-west-2.amazonaws.com/123456789012/cnd"
        )
    })
}

fn parse_queue_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!(
            "{s:?} is not an SQS queue name: letters, digits, '-' and '_', at most 80 characters"
        )
    })
}

/// What the flags say to do, validated.
struct Plan {
    spec: RunSpec,
    kube: KubeOptions,
    channel: ChannelKind,
    /// Why that channel, when it was not asked for.
    channel_reason: &'static str,
}

/// The channel the flags ask for, or the default for the launcher, and why.
fn choose_channel(args: &SubmitArgs) -> anyhow::Result<(ChannelKind, &'static str)> {
    let queue_named = args.queue_url.is_some() || args.queue_name.is_some();
    let (kind, reason) = match (args.channel, args.launcher) {
        (Some(kind), _) => (kind, "as asked"),
        (None, _) if queue_named => (ChannelKind::Sqs, "a queue was named"),
        (None, LauncherKind::Local) => (ChannelKind::Stdout, "local workers"),
        (None, LauncherKind::Kubernetes) if sqs::aws_configured() => {
            (ChannelKind::Sqs, "AWS settings found")
        }
        (None, LauncherKind::Kubernetes) => (
            ChannelKind::PodStatus,
            "no AWS settings found; --channel sqs for a queue",
        ),
    };
    match (kind, args.launcher) {
        (ChannelKind::Stdout, LauncherKind::Kubernetes) => Err(usage(
            "--channel stdout needs --launcher local: the master reads local workers' stdout; on Kubernetes use --channel pod-status",
        )),
        (ChannelKind::PodStatus, LauncherKind::Local) => Err(usage(
            "--channel pod-status needs --launcher kubernetes; local workers report over --channel stdout",
        )),
        (ChannelKind::Stdout | ChannelKind::PodStatus, _) if queue_named => Err(usage(format!(
            "--queue-url/--queue-name name an SQS queue, but --channel is {}",
            kind.name()
        ))),
        _ => Ok((kind, reason)),
    }
}

/// Runs `cnd-cli submit`.
pub fn run(args: SubmitArgs) -> anyhow::Result<Exit> {
    let plan = plan(&args)?;
    if args.dry_run {
        print!(
            "{}",
            kubernetes::to_yaml(&kubernetes::manifests(&plan.spec, &plan.kube))
        );
        return Ok(Exit::Success);
    }
    crate::cmd::run::warn_if_likely_empty(&plan.spec.puzzle, &plan.spec.range);

    let cancel = CancelToken::new();
    let on_signal = cancel.clone();
    let run_id = plan.spec.run_id;
    // SIGINT and SIGTERM: whatever call is in flight is cut short at once, the
    // run is cleaned up, and we exit 130 or 143. A second one leaves the cleanup.
    let stop = StopSignal::install(move || {
        if on_signal.is_cancelled() {
            eprintln!(
                "cnd-cli: leaving the cleanup; `cnd-cli cleanup --run {run_id}` removes what is left"
            );
        } else {
            eprintln!(
                "cnd-cli: stopping: removing what the run created (interrupt again to leave it)"
            );
        }
        on_signal.cancel();
    })?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let exit = runtime.block_on(submit(args, plan, &cancel))?;
    Ok(match exit {
        Exit::Interrupted => stop.exit(),
        other => other,
    })
}

fn plan(args: &SubmitArgs) -> anyhow::Result<Plan> {
    let puzzle = args.puzzle.puzzle()?;
    let range = range_for(&puzzle, args.range.as_deref())?;
    if args.dry_run && args.launcher != LauncherKind::Kubernetes {
        return Err(usage(
            "--dry-run prints Kubernetes manifests, so it needs --launcher kubernetes",
        ));
    }
    let pods = match (args.pods, args.within, args.confidence) {
        (Some(pods), _, _) => pods,
        (None, Some(within), Some(confidence)) => {
            let mhs = match args.rate {
                Some(rate) => rate,
                None => default_rate_mhs(&args.cpu),
            };
            let plan = stats::pods_for_deadline(
                puzzle.difficulty(),
                mhs * 1e6,
                within,
                confidence,
                range.len(),
            )?;
            eprintln!(
                "cnd-cli: {} pods at {mhs:.1} MH/s each find a nonce within {} with probability {} (expected after {})",
                plan.pods,
                human::duration(within),
                human::percent(plan.confidence),
                human::duration(plan.expected)
            );
            plan.pods
        }
        _ => return Err(usage("give --pods P, or --within DUR with --confidence P")),
    };
    let shards = args.shards.unwrap_or(pods);
    if shards < pods {
        return Err(usage(format!(
            "--shards {shards} is fewer than the {pods} pods: each pod searches at least one shard"
        )));
    }
    if args.workload == WorkloadKind::Pods && shards != pods {
        return Err(usage(format!(
            "--workload pods runs one pod per shard, so --shards ({shards}) must equal the pods ({pods}); use --workload job"
        )));
    }
    if args.launcher == LauncherKind::Local && pods > 256 {
        return Err(usage(format!(
            "{pods} local workers is more than the 256 --launcher local supports"
        )));
    }
    // Checks shards and pods against the range and MAX_SHARDS (--within can ask
    // for billions of pods); the key is fresh for every run, dry runs included.
    let spec = RunSpec::new(puzzle, range, shards, pods).map_err(|e| match e {
        RunSpecError::Key(e) => anyhow::Error::new(e).context("making the run's report key"),
        e => usage(format!("--pods {pods} / --shards {shards}: {e}")),
    })?;
    let spec = match args.run_id {
        Some(id) => spec.with_run_id(id),
        None => spec,
    };
    let (channel, channel_reason) = choose_channel(args)?;
    let queue_url = match (channel, &args.queue_url) {
        (ChannelKind::Sqs, Some(url)) => url.clone(),
        // Only known once the queue exists; a dry run shows where it would be.
        (ChannelKind::Sqs, None) => format!("<the run's queue: {}>", sqs::queue_name(spec.run_id)),
        (ChannelKind::PodStatus, _) => cnd_core::Destination::TerminationLog(
            cnd_core::distributed::DEFAULT_TERMINATION_LOG.into(),
        )
        .address(),
        (ChannelKind::Stdout, _) => cnd_core::Destination::Stdout.address(),
    };
    let spec = spec.with_queue_url(queue_url).with_timeout(args.timeout);
    let kube = KubeOptions {
        // Unset: the kubeconfig's namespace at submit (see kube_client), none in a dry run.
        namespace: args.namespace.clone().unwrap_or_default(),
        image: args.image.clone(),
        image_pull_policy: args.image_pull_policy.clone(),
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        service_account: args.service_account.clone(),
        workload: match args.workload {
            WorkloadKind::Job => Workload::Job,
            WorkloadKind::Pods => Workload::Pods,
        },
        // Where the queue is, for workers that use one; others need no AWS at all.
        extra_env: if channel == ChannelKind::Sqs {
            kubernetes::aws_passthrough_env()
        } else {
            Vec::new()
        },
        ..KubeOptions::default()
    };
    Ok(Plan {
        spec,
        kube,
        channel,
        channel_reason,
    })
}

/// MH/s of one pod: this machine's single-thread rate (a quarter-second sample)
/// times the pod's CPUs. Pods on other hardware differ: pass --rate to be exact.
fn default_rate_mhs(cpu: &str) -> f64 {
    let cores = cpu_cores(cpu).unwrap_or(1.0);
    let per_core = measure_core_mhs().unwrap_or(FALLBACK_MHS_PER_CORE);
    per_core * cores
}

fn measure_core_mhs() -> Option<f64> {
    let puzzle = Puzzle::with_default_block(256).ok()?;
    let backend = cnd_core::Backend::from_env().ok()?;
    let options = cnd_core::SearchOptions::all_cores()
        .with_threads(1)
        .with_backend(backend)
        .with_deadline(Some(Instant::now() + Duration::from_millis(250)));
    let outcome = cnd_core::search(
        &puzzle,
        puzzle.space(),
        &options,
        &cnd_core::SearchControl::new(),
    )
    .ok()?;
    let (hashes, elapsed) = match outcome {
        cnd_core::SearchOutcome::TimedOut { hashes, elapsed } => (hashes, elapsed),
        _ => return None,
    };
    Some(human::per_sec(hashes, elapsed) / 1e6).filter(|r| *r > 0.0)
}

async fn submit(args: SubmitArgs, mut plan: Plan, cancel: &CancelToken) -> anyhow::Result<Exit> {
    // The run's time limit counts from here, setup included.
    let deadline = plan.spec.timeout.map(|t| Instant::now() + t);
    let (mut launcher, mut channel): (Box<dyn Launcher>, Box<dyn ResultChannel>) = match plan
        .channel
    {
        ChannelKind::Sqs => {
            let Some(mut channel) = sqs_channel(&args, &plan.spec, cancel, deadline).await? else {
                return Ok(Exit::Interrupted);
            };
            let launcher = match args.launcher {
                LauncherKind::Kubernetes => kube_client(&mut plan.kube)
                    .await
                    .map(|client| Box::new(KubeLauncher::new(client, plan.kube.clone())) as _),
                LauncherKind::Local => local_launcher(&args).map(|l| Box::new(l) as _),
            };
            match launcher {
                Ok(launcher) => (launcher, Box::new(channel)),
                Err(e) => {
                    // The queue exists already: it must not outlive this failure.
                    let _ = channel.close().await;
                    return Err(e);
                }
            }
        }
        ChannelKind::Stdout => {
            let mut launcher = local_launcher(&args)?;
            let channel = launcher.stdout_channel();
            (Box::new(launcher), Box::new(channel))
        }
        ChannelKind::PodStatus => {
            let client = kube_client(&mut plan.kube).await?;
            let channel =
                PodStatusChannel::new(client.clone(), &plan.kube.namespace, plan.spec.run_id);
            (
                Box::new(KubeLauncher::new(client, plan.kube.clone())),
                Box::new(channel),
            )
        }
    };
    plan.spec.queue_url = channel.address().to_string();

    let spec = &plan.spec;
    tracing::info!(run = %spec.run_id, channel = plan.channel.name(), reports_to = %spec.queue_url, shards = spec.shards, pods = spec.parallelism, "submitting");
    if !args.output.json {
        let via = match plan.channel {
            ChannelKind::Sqs => format!("queue {}", spec.queue_url),
            ChannelKind::PodStatus => "the pods' status".to_string(),
            ChannelKind::Stdout => "the workers' stdout".to_string(),
        };
        let why = match plan.channel_reason {
            "as asked" => String::new(),
            reason => format!(" ({reason})"),
        };
        eprintln!(
            "cnd-cli: run {} · {} pods · {} shards · reports via {via}{why}",
            spec.run_id, spec.parallelism, spec.shards
        );
    }
    let mut options = MasterOptions::with_deadline(deadline);
    options.retry_for = args.retry_for;
    let mut live = Live::new(spec, !args.output.json);
    if plan.channel == ChannelKind::PodStatus {
        // No progress reports on this channel: estimate from the running pods.
        let per_pod = args.rate.unwrap_or_else(|| default_rate_mhs(&args.cpu)) * 1e6;
        live.estimate_with(per_pod);
    }
    let mut startup = StartupTimes::new();
    let outcome = run_master(
        launcher.as_mut(),
        channel.as_mut(),
        spec,
        &options,
        &TokioTimer,
        cancel,
        |event| {
            startup.on(&event);
            live.on(event)
        },
    )
    .await;
    live.finish();
    let outcome = outcome?;
    print_outcome(&outcome, spec, &startup, args.output.json);
    Ok(match outcome {
        MasterOutcome::Found(_) => Exit::Success,
        MasterOutcome::Exhausted(_) => Exit::Exhausted,
        MasterOutcome::TimedOut(_) => Exit::TimedOut,
        MasterOutcome::Interrupted(_) => Exit::Interrupted,
        _ => Exit::Error,
    })
}

/// The run's SQS channel: the named shared queue, or a queue made for the run;
/// `None` if the run was cancelled first.
async fn sqs_channel(
    args: &SubmitArgs,
    spec: &RunSpec,
    cancel: &CancelToken,
    deadline: Option<Instant>,
) -> anyhow::Result<Option<SqsChannel>> {
    let sqs_client = sqs::client().await.context("setting up the SQS client")?;
    match (&args.queue_url, &args.queue_name) {
        (Some(url), _) => Ok(Some(SqsChannel::shared(
            &sqs_client,
            url.clone(),
            spec.run_id,
        ))),
        (None, Some(name)) => {
            let url = bounded(cancel, deadline, sqs::queue_url_for_name(&sqs_client, name))
                .await
                .with_context(|| format!("looking up the SQS queue {name:?}"))?;
            match url {
                Some(url) => Ok(Some(SqsChannel::shared(
                    &sqs_client,
                    url?.ok_or_else(|| usage(format!("there is no SQS queue named {name:?}")))?,
                    spec.run_id,
                ))),
                None => Ok(None),
            }
        }
        (None, None) => {
            create_queue(&sqs_client, spec.run_id, spec.lifetime(), cancel, deadline).await
        }
    }
}

/// The launcher of local worker processes.
fn local_launcher(args: &SubmitArgs) -> anyhow::Result<LocalLauncher> {
    Ok(LocalLauncher::new(LocalOptions {
        threads: args.threads,
        ..LocalOptions::new(worker_bin()?)
    }))
}

/// The longest a call made before the master starts (queue lookup or creation) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a setup call until it ends, [`SETUP_TIMEOUT`] or the run's deadline
/// passes (an error), or the run is cancelled (`Ok(None)`).
async fn bounded<T>(
    cancel: &CancelToken,
    deadline: Option<Instant>,
    call: impl std::future::Future<Output = T>,
) -> anyhow::Result<Option<T>> {
    let limit = deadline.map_or(SETUP_TIMEOUT, |d| {
        SETUP_TIMEOUT.min(d.saturating_duration_since(Instant::now()))
    });
    tokio::select! {
        out = tokio::time::timeout(limit, call) => match out {
            Ok(out) => Ok(Some(out)),
            Err(_) => Err(anyhow::anyhow!("no answer within {}", human::duration(limit))),
        },
        _ = cancel.cancelled() => Ok(None),
    }
}

/// Creates the run's queue, or `None` if the run was cancelled first. A creation
/// cut short may still have happened, so the queue is then deleted by name.
async fn create_queue(
    client: &sqs::Client,
    run_id: Uuid,
    lifetime: Duration,
    cancel: &CancelToken,
    deadline: Option<Instant>,
) -> anyhow::Result<Option<SqsChannel>> {
    let created = bounded(
        cancel,
        deadline,
        SqsChannel::create_for_run_lasting(client, run_id, lifetime),
    )
    .await;
    match created {
        Ok(Some(channel)) => Ok(Some(channel?)),
        cut => {
            // Brief: the service just failed to answer, or the user wants out.
            let name = sqs::queue_name(run_id);
            let removed = tokio::time::timeout(CUT_CLEANUP, async {
                match sqs::queue_url_for_name(client, &name).await {
                    Ok(Some(url)) => sqs::delete_queue(client, &url).await.is_ok(),
                    Ok(None) => true,
                    Err(_) => false,
                }
            })
            .await;
            if !matches!(removed, Ok(true)) {
                eprintln!(
                    "cnd-cli: warning: the queue {name} may have been created; \
                     `cnd-cli cleanup --run {run_id} --queues-only` removes it"
                );
            }
            cut.map(|_| None)
                .with_context(|| format!("creating the SQS queue {name}"))
        }
    }
}

/// How long the queue of a cut-short creation is looked for, to delete it.
const CUT_CLEANUP: Duration = Duration::from_secs(2);

/// The context of a kube client error when there is no configuration at all
/// (`cleanup` skips Kubernetes then, instead of failing).
#[derive(Debug, thiserror::Error)]
#[error("no Kubernetes configuration found (KUBECONFIG, ~/.kube/config or in-cluster)")]
pub struct NoKubeConfig;

/// A Kubernetes client from the kubeconfig (or the in-cluster config); fills in
/// the namespace from it when --namespace was not given (empty).
pub async fn kube_client(options: &mut KubeOptions) -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer().await.context(NoKubeConfig)?;
    if options.namespace.is_empty() {
        options.namespace = config.default_namespace.clone();
    }
    kube::Client::try_from(config).context("setting up the Kubernetes client")
}

/// The `cnd-worker` binary: $CND_WORKER_BIN, else next to this executable.
pub fn worker_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CND_WORKER_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe().context("finding this executable")?;
    let bin = me.with_file_name("cnd-worker");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(usage(format!(
            "--launcher local needs the cnd-worker binary: none at {}; set CND_WORKER_BIN",
            bin.display()
        )))
    }
}

/// The run as it goes, on stderr: a bar on a terminal, a line every 10 s otherwise.
struct Live {
    run_id: Uuid,
    bar: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
    last_line: Instant,
    workers: WorkerStatus,
    hashes: u64,
    shards_done: u64,
    shards: u64,
    space: u128,
    difficulty: u32,
    /// Hashes per second of one pod, when progress is estimated (no progress reports).
    per_pod: Option<f64>,
    /// Hashes estimated from running pods × `per_pod`, and when last counted.
    estimated: f64,
    counted_at: Instant,
}

impl Live {
    fn new(spec: &RunSpec, show: bool) -> Live {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Live {
            run_id: spec.run_id,
            bar,
            quiet: !show,
            started: Instant::now(),
            last_line: Instant::now(),
            workers: WorkerStatus::default(),
            hashes: 0,
            shards_done: 0,
            shards: spec.shards,
            space: spec.range.len(),
            difficulty: spec.puzzle.difficulty(),
            per_pod: None,
            estimated: 0.0,
            counted_at: Instant::now(),
        }
    }

    /// Shows progress as running pods × `per_pod` hashes per second, marked as
    /// an estimate, for channels that carry only final reports.
    fn estimate_with(&mut self, per_pod: f64) {
        self.per_pod = Some(per_pod);
    }

    /// The hashes to show: reported, or the estimate when it is larger.
    fn shown_hashes(&self) -> u64 {
        (self.hashes as f64).max(self.estimated) as u64
    }

    fn on(&mut self, event: MasterEvent) {
        match event {
            MasterEvent::Workers(status) => {
                if let Some(per_pod) = self.per_pod {
                    let seconds = self.counted_at.elapsed().as_secs_f64();
                    self.estimated += self.workers.running as f64 * per_pod * seconds;
                    self.counted_at = Instant::now();
                }
                self.workers = status
            }
            MasterEvent::Progress(p) => {
                self.hashes = p.total_hashes;
                self.shards_done = p.shards_done;
            }
            MasterEvent::Ignored(why) => self.say(&format!("ignored a message: {why}")),
            MasterEvent::WorkerFailed { worker, error, .. } => {
                self.say(&format!("worker {worker} failed: {error}"))
            }
            MasterEvent::CleanupFailed(what) => self.say(&format!(
                "warning: {what}; `cnd-cli cleanup --run {}` removes what is left",
                self.run_id
            )),
            MasterEvent::Retrying {
                what,
                error,
                failing_for,
                budget,
            } => self.say(&format!(
                "{what} failed ({error}); retrying, {} of {} allowed",
                human::duration(failing_for),
                human::duration(budget)
            )),
            _ => {}
        }
        self.render();
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("cnd-cli: {line}")),
            None => eprintln!("cnd-cli: {line}"),
        }
    }

    fn status_line(&self) -> String {
        let w = &self.workers;
        let elapsed = self.started.elapsed();
        let hashes = self.shown_hashes();
        let rate = human::per_sec(hashes, elapsed);
        let expected = stats::expected_hashes(self.difficulty);
        let eta = if rate > 0.0 && (hashes as f64) < expected {
            format!(
                "~{} to 2^{}",
                human::duration(Duration::from_secs_f64(
                    ((expected - hashes as f64) / rate).min(1e15)
                )),
                self.difficulty
            )
        } else {
            format!("past 2^{}", self.difficulty)
        };
        format!(
            "pods: {} pending (waiting for nodes) · {} running · {} done · {} failed | {} of shards done | {} · {} of the space · {eta}",
            w.pending,
            w.running,
            w.succeeded,
            w.failed,
            format_args!("{}/{}", self.shards_done, self.shards),
            match self.per_pod {
                Some(_) => format!("≈{} (estimated)", human::rate(rate)),
                None => human::rate(rate),
            },
            human::percent(hashes as f64 / self.space as f64),
        )
    }

    fn render(&mut self) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_message(self.status_line()),
            None if self.last_line.elapsed() >= Duration::from_secs(10) => {
                self.last_line = Instant::now();
                eprintln!("cnd-cli: {}", self.status_line());
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn print_outcome(outcome: &MasterOutcome, spec: &RunSpec, startup: &StartupTimes, json: bool) {
    let difficulty = spec.puzzle.difficulty();
    if json {
        let totals = outcome.totals();
        let mut value = json!({
            "outcome": match outcome {
                MasterOutcome::Found(_) => "found",
                MasterOutcome::Exhausted(_) => "exhausted",
                MasterOutcome::TimedOut(_) => "timed_out",
                MasterOutcome::Interrupted(_) => "interrupted",
                _ => "unknown",
            },
            "run_id": spec.run_id.to_string(),
            "difficulty": difficulty,
            "hashes": totals.hashes,
            "elapsed_ms": totals.elapsed.as_millis() as u64,
            "mhs": human::per_sec(totals.hashes, totals.elapsed) / 1e6,
            "pods": spec.parallelism,
            "shards": spec.shards,
            "ignored_messages": totals.ignored,
            "failed_reports": totals.failed_reports,
            // Since the master started, as seen at its status polls; null: none ran.
            "first_running_ms": startup.first_running().map(|d| d.as_millis() as u64),
            "pending_ms": startup.pending().as_millis() as u64,
        });
        if let MasterOutcome::Found(g) = outcome {
            let object = value.as_object_mut().expect("an object");
            object.insert("nonce".into(), json!(g.nonce.to_string()));
            object.insert("hash".into(), json!(to_hex(&g.hash)));
            object.insert("leading_zeros".into(), json!(g.leading_zeros));
            object.insert("shard".into(), json!(g.shard));
            object.insert("worker".into(), json!(g.worker));
            object.insert(
                "worker_elapsed_ms".into(),
                json!(g.worker_elapsed.as_millis() as u64),
            );
            object.insert("worker_hashes".into(), json!(g.worker_hashes));
            object.insert(
                "received_after_ms".into(),
                json!(g.received_after.as_millis() as u64),
            );
        }
        println!("{value}");
        return;
    }
    match outcome {
        MasterOutcome::Found(g) => {
            println!("Golden nonce   {} (0x{:x})", g.nonce, g.nonce);
            println!("Hash           {}", to_hex(&g.hash));
            println!("Leading zeros  {} (needed {difficulty})", g.leading_zeros);
            println!(
                "Found by       {} (shard {} of {})",
                g.worker, g.shard, spec.shards
            );
            println!("Time in pod    {}", human::duration(g.worker_elapsed));
            println!(
                "Received after {} (since submit)",
                human::duration(g.received_after)
            );
            print_work(&g.totals, spec);
        }
        MasterOutcome::Exhausted(t) => {
            println!("No golden nonce: every shard of the range was searched.");
            print_work(t, spec);
        }
        MasterOutcome::TimedOut(t) => {
            println!("Timed out before a golden nonce was found.");
            print_work(t, spec);
        }
        MasterOutcome::Interrupted(t) => {
            println!(
                "Interrupted before a golden nonce was found; what the run created was removed."
            );
            print_work(t, spec);
        }
        other => {
            println!("The run ended in a way this cnd-cli does not know.");
            print_work(other.totals(), spec);
        }
    }
}

fn print_work(totals: &Totals, spec: &RunSpec) {
    let rate = human::per_sec(totals.hashes, totals.elapsed);
    println!(
        "Hashes         {} in {} ({} of the range)",
        human::count(totals.hashes),
        human::duration(totals.elapsed),
        human::percent(totals.hashes as f64 / spec.range.len() as f64)
    );
    println!(
        "Rate           {} across {} pods ({} per pod)",
        human::rate(rate),
        spec.parallelism,
        human::rate(rate / spec.parallelism as f64)
    );
    println!("Run            {}", spec.run_id);
    if totals.ignored > 0 || totals.failed_reports > 0 {
        println!(
            "Messages       {} ignored (not this run's, malformed or not golden) · {} worker failures reported",
            totals.ignored, totals.failed_reports
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_checked() {
        for ok in ["1", "2", "1.5", "500m", "250m"] {
            assert!(parse_cpu(ok).is_ok(), "{ok}");
        }
        for bad in ["", "0", "m", "1.2.3", "-1", "1 cpu", "0m", ".5"] {
            assert!(parse_cpu(bad).is_err(), "{bad}");
        }
        assert_eq!(cpu_cores("500m"), Some(0.5));
        for ok in ["128Mi", "1Gi", "500M", "1000000"] {
            assert!(parse_memory(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Mi", "12 Mi", "1.5Gi", "128mb", "0"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(parse_dns_label("cnd-runs").is_ok());
        assert!(parse_dns_label("Cnd").is_err());
        assert!(parse_dns_label("-x").is_err());
        assert!(parse_dns_subdomain("cnd.worker").is_ok());
        assert!(parse_queue_name("cnd-results").is_ok());
        assert!(parse_queue_name("a/b").is_err());
        assert!(parse_queue_url("ftp://x").is_err());
    }

    #[test]
    fn progress_without_reports_is_estimated_from_running_pods_and_says_so() {
        let puzzle = Puzzle::with_default_block(30).unwrap();
        let spec = RunSpec::new(puzzle.clone(), puzzle.space(), 4, 4).unwrap();
        let mut live = Live::new(&spec, false);
        live.estimate_with(1e6);
        let running = |n| {
            let mut status = WorkerStatus::default();
            status.running = n;
            MasterEvent::Workers(status)
        };
        live.on(running(2));
        assert_eq!(
            live.shown_hashes(),
            0,
            "nothing ran before the first status"
        );
        std::thread::sleep(Duration::from_millis(100));
        live.on(running(2));
        // 2 pods × 1 MH/s × ≥ 0.1 s.
        assert!(live.shown_hashes() >= 200_000, "{}", live.shown_hashes());
        assert!(
            live.status_line().contains("(estimated)"),
            "{}",
            live.status_line()
        );

        let mut reported = Live::new(&spec, false);
        reported.on(running(2));
        std::thread::sleep(Duration::from_millis(20));
        reported.on(running(2));
        assert_eq!(
            reported.shown_hashes(),
            0,
            "without an estimate only reports count"
        );
        assert!(!reported.status_line().contains("estimated"));
    }
}
