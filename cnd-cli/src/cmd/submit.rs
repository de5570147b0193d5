//! `cnd-cli submit`: a distributed search, on Kubernetes or as local worker
//! processes, with results over SQS, the pods' own status, or local stdout.
//!
//! Glue: validate the flags, pick the pods, build the launcher and the channel,
//! hand them to `cnd_core::master::run_master`, show its events, print the result.
//! Whatever happens (found, exhausted, timeout, Ctrl-C, an error), the master
//! removes the workers and the run's queue (if it made one) before this returns.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use cnd_cloud::kubernetes::{self, KubeLauncher, KubeOptions, Workload};
use cnd_cloud::local::{LocalLauncher, LocalOptions};
use cnd_cloud::pod_status::PodStatusChannel;
use cnd_cloud::sqs::{self, SqsChannel};
use cnd_cloud::TokioTimer;
use cnd_core::master::{run_master, Answer, MasterError, MasterOptions, MasterOutcome};
use cnd_core::CancelToken;
use cnd_core::{stats, LaunchError, Launcher, ResultChannel, RunSpec, RunSpecError};
use uuid::Uuid;

use crate::args::{
    parse_count, parse_cpu, parse_difficulty, parse_dns_label, parse_dns_subdomain, parse_duration,
    parse_image, parse_memory, parse_positive, parse_probability, parse_progress_every,
    parse_queue_name, parse_queue_url, parse_status_every, range_for, OutputArgs, PuzzleShape,
};
use crate::cluster::{cpu_cores, kube_client, worker_bin, LauncherKind, WorkloadKind};
use crate::console;
use crate::exit::{usage, Exit};
use crate::human;
use crate::journal::Recorder;
use crate::signals::StopSignal;
use crate::startup::StartupTimes;
use cnd_core::journal::{Journal, JournalHeader, Replay};

mod earlier;
mod launch;
mod live;
pub(crate) mod output;

use live::Live;

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

/// Search the nonce space with many workers at once, on a cluster that grows to fit.
///
/// Examples:
///   cnd-cli submit -d 30 --pods 20 --image registry/cnd-worker:1
///   cnd-cli submit -d 36 --within 10m --confidence 0.9 --rate 40
///   cnd-cli submit -d 20 --pods 3 --launcher local
///   cnd-cli submit -d 30 --pods 4 --channel pod-status
///   cnd-cli submit -d 30 --pods 4 --dry-run > run.yaml
///   cnd-cli submit --resume 5f0c3f7e-…   (a run cut short: search what is left)
///
/// Every run keeps a journal of what its workers searched (verified reports
/// only) in $XDG_STATE_HOME/cnd/runs/RUN_ID.jsonl (else
/// ~/.local/state/cnd/runs), or --journal FILE. If the run is cut short (Ctrl-C,
/// --timeout, a lost cluster, this process killed), `submit --resume ID` runs
/// it again with the same puzzle, range, shards and answer, and the same launch
/// flags unless given again, and searches only what is not yet searched:
/// exhausted shards are skipped, others start where their last progress
/// report said (at most one --progress-every is redone).
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
    shape: PuzzleShape,

    /// D: the leading zero bits a golden hash needs (0..=256). Expected work is
    /// 2^D hashes; 32-bit nonces give out around D = 32 (see `cnd-cli plan`).
    #[arg(short = 'd', long, value_name = "D", value_parser = parse_difficulty, required_unless_present = "resume")]
    difficulty: Option<u32>,

    /// Workers that run at once (pods). Required unless --within picks them
    /// (or --resume, which keeps the run's).
    #[arg(long, value_name = "P", value_parser = parse_count, required_unless_present_any = ["within", "resume"], conflicts_with_all = ["within", "confidence"])]
    pods: Option<u64>,

    /// Resume the run whose journal this is (a run id, as submit printed it, or
    /// the journal's file): same puzzle, range, shards and answer, a new key,
    /// and only what earlier attempts did not search; launched as the last
    /// attempt was (--launcher, --image, ...) except for the flags given here.
    #[arg(long, value_name = "ID|FILE", conflicts_with_all = ["difficulty", "block", "block_hex", "nonce_bits", "nonce_format", "range", "shards", "smallest", "within", "run_id", "dry_run"])]
    resume: Option<String>,

    /// Where to keep the run's journal. [default: $XDG_STATE_HOME/cnd/runs/RUN_ID.jsonl]
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    journal: Option<std::path::PathBuf>,

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
    #[arg(long, value_name = "POLICY", default_value = "IfNotPresent", value_parser = PULL_POLICIES)]
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
    /// minute later even if this process is gone. [default: no limit]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// How long the API server or the queue may keep failing (unreachable, 5xx,
    /// no answer) before the run gives up with exit 1; calls are retried with
    /// backoff meanwhile. A refusal (forbidden, no such queue) ends it at once.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "60s")]
    retry_for: Duration,

    /// How often each worker reports its progress. A worker whose count stops
    /// moving for 6 of these is taken as wedged: stopped and started again for
    /// its shard, or, where that cannot be done, the run ends naming it.
    #[arg(long, value_name = "DUR", value_parser = parse_progress_every, default_value = "5s")]
    progress_every: Duration,

    /// Return the smallest golden nonce of the range, the answer `run` gives:
    /// a find in shard k ends the run once every shard below k is searched
    /// (shards above k are stopped). Without it, the first verified find wins:
    /// sooner, but which nonce depends on timing.
    #[arg(long)]
    smallest: bool,

    /// How often to ask the cluster (or the local launcher) how the workers are
    /// doing: the resolution of the start-up times in `--json`.
    #[arg(long, value_name = "DUR", value_parser = parse_status_every, default_value = "2s")]
    status_every: Duration,

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

/// The imagePullPolicy values --image-pull-policy takes.
const PULL_POLICIES: [&str; 3] = ["IfNotPresent", "Always", "Never"];

/// What the flags say to do, validated.
struct Plan {
    spec: RunSpec,
    /// Which golden nonce the run returns.
    answer: Answer,
    /// The journal to append to, and what it held (a resumed run).
    journal: Option<std::path::PathBuf>,
    resumed: Option<Replay>,
    /// A resumed run's journal, open (and locked) since it was read.
    held: Option<Journal>,
    kube: KubeOptions,
    channel: ChannelKind,
    /// Why that channel, when it was not asked for.
    channel_reason: &'static str,
}

/// The channel the flags ask for, or the default for the launcher, and why.
fn choose_channel(args: &SubmitArgs) -> anyhow::Result<(ChannelKind, &'static str)> {
    let queue_named = args.queue_url.is_some() || args.queue_name.is_some();
    let (kind, reason) = match args.channel {
        Some(kind) => (kind, "as asked"),
        None => default_channel(args.launcher, queue_named),
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

/// The channel without --channel, and why: also how an earlier attempt
/// launched without it reported (`earlier::Attempt::from_launch`).
pub(crate) fn default_channel(
    launcher: LauncherKind,
    queue_named: bool,
) -> (ChannelKind, &'static str) {
    match launcher {
        _ if queue_named => (ChannelKind::Sqs, "a queue was named"),
        LauncherKind::Local => (ChannelKind::Stdout, "local workers"),
        LauncherKind::Kubernetes if sqs::aws_configured() => {
            (ChannelKind::Sqs, "AWS settings found")
        }
        LauncherKind::Kubernetes => (
            ChannelKind::PodStatus,
            "no AWS settings found; --channel sqs for a queue",
        ),
    }
}

/// Runs `cnd-cli submit`.
/// Runs `cnd-cli submit`; `matches` are its own (to tell a flag given from
/// its default, for `--resume`).
pub fn run(mut args: SubmitArgs, matches: &clap::ArgMatches) -> anyhow::Result<Exit> {
    let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let plan = plan(&mut args, given)?;
    if args.dry_run {
        print!(
            "{}",
            kubernetes::to_yaml(&kubernetes::manifests(&plan.spec, &plan.kube))
        );
        return Ok(Exit::Success);
    }
    human::warn_if_likely_empty(&plan.spec.puzzle, &plan.spec.range);

    let cancel = CancelToken::new();
    let on_signal = cancel.clone();
    let run_id = plan.spec.run_id;
    // SIGINT and SIGTERM: whatever call is in flight is cut short at once, the
    // run is cleaned up, and we exit 130 or 143. A second one leaves the cleanup.
    let stop = StopSignal::install(move || {
        // Cancel before saying so: a write to a stderr nobody reads may block,
        // and must not hold off the stop.
        let again = on_signal.is_cancelled();
        on_signal.cancel();
        if again {
            console::say(format!(
                "leaving the cleanup; `cnd-cli cleanup --run {run_id}` removes what is left"
            ));
        } else {
            console::say("stopping: removing what the run created (interrupt again to leave it)");
        }
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

fn plan(args: &mut SubmitArgs, given: impl Fn(&str) -> bool) -> anyhow::Result<Plan> {
    let resumed = match &args.resume {
        Some(name) => {
            let path = crate::journal::locate(name)?;
            // Held from before it is read to the attempt's end: a second
            // resume of a run still going is refused, not run twice. That,
            // and a corrupt or foreign file, is bad input: one sentence, exit 2.
            let held = Journal::append(&path).map_err(|e| usage(e.to_string()))?;
            let replay = held.replay().map_err(|e| usage(e.to_string()))?;
            // Launched as its last attempt was, unless told otherwise.
            let taken = launch::take(args, replay.last_launch(), given)
                .map_err(|e| usage(format!("journal {}: {e}", path.display())))?;
            if !taken.is_empty() {
                console::say(format!("as the last attempt ran: {}", taken.join(" ")));
            }
            Some((path, replay, held))
        }
        None => None,
    };
    let args = &*args;
    let (puzzle, range, answer) = match &resumed {
        Some((_, replay, _)) => replay.run(),
        None => {
            let difficulty = args
                .difficulty
                .ok_or_else(|| usage("give -d D (or --resume ID)"))?;
            let puzzle = args.shape.puzzle(difficulty)?;
            let range = range_for(&puzzle, args.range.as_deref())?;
            let answer = if args.smallest {
                Answer::Smallest
            } else {
                Answer::First
            };
            (puzzle, range, answer)
        }
    };
    if args.dry_run && args.launcher != LauncherKind::Kubernetes {
        return Err(usage(
            "--dry-run prints Kubernetes manifests, so it needs --launcher kubernetes",
        ));
    }
    let pods = match (args.pods, args.within, args.confidence) {
        (Some(pods), _, _) => pods,
        (None, None, _) if resumed.is_some() => {
            let header = &resumed.as_ref().expect("matched").1.header;
            header.parallelism
        }
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
    let shards = match &resumed {
        Some((_, replay, _)) => replay.header.shards,
        None => args.shards.unwrap_or(pods),
    };
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
    let spec = match &resumed {
        Some((path, replay, _)) => spec
            .with_searched(replay.searched.clone())
            .map_err(|e| usage(format!("{}: {e}", path.display())))?,
        None => spec,
    };
    let journal = match &resumed {
        Some((path, _, _)) => Some(path.clone()),
        None => args
            .journal
            .clone()
            .or_else(|| crate::journal::default_path(spec.run_id)),
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
    let spec = spec
        .with_queue_url(queue_url)
        .with_timeout(args.timeout)
        .with_progress_every(args.progress_every);
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
    let (resumed, held) = match resumed {
        Some((_, replay, held)) => (Some(replay), Some(held)),
        None => (None, None),
    };
    Ok(Plan {
        spec,
        answer,
        journal,
        held,
        resumed,
        kube,
        channel,
        channel_reason,
    })
}

/// MH/s of one pod: this machine's single-core rate times the pod's CPUs. Pods
/// on other hardware differ: pass --rate to be exact.
fn default_rate_mhs(cpu: &str) -> f64 {
    crate::machine::core_mhs() * cpu_cores(cpu).unwrap_or(1.0)
}

async fn submit(args: SubmitArgs, mut plan: Plan, cancel: &CancelToken) -> anyhow::Result<Exit> {
    // The run's time limit counts from here, setup included.
    let deadline = plan.spec.timeout.map(|t| Instant::now() + t);
    // Where the Kubernetes API server is, to name it if it does not answer.
    let mut api_server = None;
    // The cluster, for removing what a resumed run's earlier attempts left.
    let mut cluster = None;
    let (mut launcher, mut channel): (Box<dyn Launcher>, Box<dyn ResultChannel>) =
        match plan.channel {
            ChannelKind::Sqs => {
                // Made, not opened: the master creates or looks up the queue (bounded
                // like every call, deleted at the end however the run ends) and
                // tells the workers its URL.
                let launcher: Box<dyn Launcher> = match args.launcher {
                    LauncherKind::Kubernetes => {
                        let (client, server) = kube_client(&mut plan.kube).await?;
                        api_server = Some(server);
                        cluster = Some(client.clone());
                        Box::new(KubeLauncher::new(client, plan.kube.clone()))
                    }
                    LauncherKind::Local => Box::new(local_launcher(&args)?),
                };
                (launcher, Box::new(sqs_channel(&args).await?))
            }
            ChannelKind::Stdout => {
                let mut launcher = local_launcher(&args)?;
                let channel = launcher.stdout_channel();
                (Box::new(launcher), Box::new(channel))
            }
            ChannelKind::PodStatus => {
                let (client, server) = kube_client(&mut plan.kube).await?;
                api_server = Some(server);
                cluster = Some(client.clone());
                let channel =
                    PodStatusChannel::new(client.clone(), &plan.kube.namespace, plan.spec.run_id);
                (
                    Box::new(KubeLauncher::new(client, plan.kube.clone())),
                    Box::new(channel),
                )
            }
        };
    let spec = &plan.spec;
    tracing::info!(run = %spec.run_id, channel = plan.channel.name(), shards = spec.shards, pods = spec.parallelism, "submitting");
    if !args.output.json {
        let via = match plan.channel {
            // The queue's URL is logged once the master has made or found it.
            ChannelKind::Sqs => match (&args.queue_url, &args.queue_name) {
                (Some(url), _) => format!("queue {url}"),
                (None, Some(name)) => format!("queue {name}"),
                (None, None) => format!("a queue of its own, {}", sqs::queue_name(spec.run_id)),
            },
            ChannelKind::PodStatus => "the pods' status".to_string(),
            ChannelKind::Stdout => "the workers' stdout".to_string(),
        };
        let why = match plan.channel_reason {
            "as asked" => String::new(),
            reason => format!(" ({reason})"),
        };
        eprintln!(
            "cnd-cli: run {} · {} · {} · reports via {via}{why}",
            spec.run_id,
            human::plural(spec.parallelism, "pod"),
            human::plural(spec.shards, "shard"),
        );
    }
    let answer = plan.answer;
    let held = plan.held.take();
    let mut recorder = open_journal(&plan, held, &args)?;
    if let Some(replay) = &plan.resumed {
        let current = earlier::Attempt {
            run_id: plan.spec.run_id,
            namespace: cluster.is_some().then(|| plan.kube.namespace.clone()),
            own_queue: plan.channel == ChannelKind::Sqs
                && args.queue_url.is_none()
                && args.queue_name.is_none(),
        };
        let attempts: Vec<earlier::Attempt> = replay
            .attempts
            .iter()
            .zip(&replay.launches)
            .map(|(&run_id, launch)| earlier::Attempt::from_launch(run_id, launch, &current))
            .collect();
        let leftovers = earlier::Leftovers {
            attempts: &attempts,
            kube: cluster.as_ref(),
        };
        earlier::remove(leftovers, cancel).await;
    }
    let earlier_finds = plan
        .resumed
        .as_ref()
        .map(|r| r.finds.clone())
        .unwrap_or_default();
    let options = MasterOptions::with_deadline(deadline)
        .with_retry_for(args.retry_for)
        .with_answer(answer)
        .with_status_every(args.status_every)
        .with_earlier_finds(earlier_finds);
    let pending_means = match args.launcher {
        LauncherKind::Kubernetes => "waiting for a node",
        LauncherKind::Local => "queued",
    };
    let mut live = Live::new(spec, !args.output.json, pending_means);
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
            recorder.on(&event);
            live.on(event)
        },
    )
    .await;
    live.finish();
    if let Ok(outcome) = &outcome {
        recorder.ended(outcome);
    }
    let resume_hint = |recorder: &Recorder| {
        if !recorder.has_work() {
            return;
        }
        if let Some(path) = recorder.path() {
            let id = journal_id(&plan);
            let name = match crate::journal::default_path(id) {
                Some(default) if default == path => id.to_string(),
                _ => path.display().to_string(),
            };
            console::say(format!(
                "what was searched is kept: `cnd-cli submit --resume {name}` searches the rest"
            ));
        }
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            resume_hint(&recorder);
            return Err(explain(e, api_server.as_deref()));
        }
    };
    let about = output::RunNotes {
        journal: recorder.path().map(|p| p.display().to_string()),
        resumed_shards: plan.resumed.as_ref().map_or(0, Replay::resumed_shards),
    };
    output::print_outcome(&outcome, spec, answer, &startup, &about, args.output.json);
    if matches!(
        outcome,
        MasterOutcome::TimedOut(_) | MasterOutcome::Interrupted(_)
    ) {
        resume_hint(&recorder);
    }
    Ok(match outcome {
        MasterOutcome::Found(_) => Exit::Success,
        MasterOutcome::Exhausted(_) => Exit::Exhausted,
        MasterOutcome::TimedOut(_) => Exit::TimedOut,
        MasterOutcome::Interrupted(_) => Exit::Interrupted,
        _ => Exit::Error,
    })
}

/// The run's journal id: its first attempt's run id.
fn journal_id(plan: &Plan) -> Uuid {
    plan.resumed
        .as_ref()
        .map_or(plan.spec.run_id, |replay| replay.header.journal)
}

/// Opens the run's journal (made for a new run, appended to for a resumed
/// one) and records this attempt. A journal asked for by --journal or
/// --resume must open; the default one only warns when it cannot.
fn open_journal(plan: &Plan, held: Option<Journal>, args: &SubmitArgs) -> anyhow::Result<Recorder> {
    let Some(path) = &plan.journal else {
        console::say("warning: no journal (neither XDG_STATE_HOME nor HOME is set): this run cannot be resumed");
        return Ok(Recorder::new(None));
    };
    let opened = match &plan.resumed {
        Some(_) => held.map_or_else(|| Journal::append(path), Ok),
        None => Journal::create(path, &JournalHeader::of(&plan.spec, plan.answer)),
    };
    let mut recorder = match opened {
        Ok(journal) => match &plan.resumed {
            Some(replay) => Recorder::new(Some(journal)).resuming(replay),
            None => Recorder::new(Some(journal)),
        },
        Err(e) if args.journal.is_none() && plan.resumed.is_none() => {
            console::say(format!(
                "warning: no journal ({e}): this run cannot be resumed"
            ));
            Recorder::new(None)
        }
        Err(e) => return Err(anyhow::Error::new(e).context("opening the run's journal")),
    };
    recorder.attempt(
        plan.spec.run_id,
        launch::settings(args, plan.spec.parallelism, &plan.kube.namespace),
    );
    if let Some(replay) = &plan.resumed {
        console::say(format!(
            "resuming run {} (attempt {}): {} of {} shards carried over",
            replay.header.journal,
            replay.attempts.len() + 1,
            replay.resumed_shards(),
            plan.spec.shards,
        ));
    }
    Ok(recorder)
}

/// The run's SQS channel, to be opened by the master: the shared queue given
/// by URL or name, or a queue made for the run.
async fn sqs_channel(args: &SubmitArgs) -> anyhow::Result<SqsChannel> {
    let client = sqs::client().await.context("setting up the SQS client")?;
    Ok(match (&args.queue_url, &args.queue_name) {
        (Some(url), _) => SqsChannel::at(&client, url.clone()),
        (None, Some(name)) => SqsChannel::named(&client, name.clone()),
        (None, None) => SqsChannel::for_run(&client),
    })
}

/// The launcher of local worker processes.
fn local_launcher(args: &SubmitArgs) -> anyhow::Result<LocalLauncher> {
    Ok(LocalLauncher::new(LocalOptions {
        threads: args.threads,
        ..LocalOptions::new(worker_bin()?)
    }))
}

/// The master's error, naming the API server (and where its address came from)
/// when it could not be reached: the usual cause is the wrong kubeconfig.
fn explain(error: MasterError, api_server: Option<&str>) -> anyhow::Error {
    // `--queue-name` naming no queue is bad input (exit 2), not an SQS failure.
    if let MasterError::Channel(e) = &error {
        if sqs::is_no_such_named_queue(e) {
            return usage(crate::exit::sentence(&anyhow::Error::new(error)));
        }
    }
    let unreachable = matches!(
        &error,
        MasterError::Launch(LaunchError::Unreachable { .. })
            | MasterError::Status(LaunchError::Unreachable { .. })
    );
    match api_server {
        Some(server) if unreachable => anyhow::Error::new(error).context(format!(
            "the Kubernetes API server at {server} did not answer (is that cluster up, and the one meant?)"
        )),
        _ => error.into(),
    }
}
