//! `cnd-cli cleanup`: remove what runs left behind (a master killed with SIGKILL,
//! a lost connection): Jobs and pods found by their labels, and per-run queues.

use anyhow::Context;
use clap::Args;
use cnd_cloud::kubernetes::{self, KubeOptions};
use cnd_cloud::sqs;
use uuid::Uuid;

use std::time::{Duration, SystemTime};

use crate::args::parse_dns_label;
use crate::cluster::{kube_client, NoKubeConfig};
use crate::exit::{sentence, usage, Exit};
use crate::human;

/// Delete the Jobs, pods, key Secrets and `cnd-<run id>` queues of one run, or of every run.
///
/// Jobs, pods and Secrets are found by their labels (app.kubernetes.io/name=cnd,
/// cnd/run-id=ID) in one namespace; queues by their name. A shared queue
/// (--queue-url of submit) is never deleted. With --all, runs still within
/// their lifetime (their --timeout plus a minute, else 24 h) are kept, so a
/// run in progress is never broken; --force removes them too. --run removes
/// the run it names whether or not it is still in progress (it is what a
/// stopped or killed submit says to run), so --force does not go with it.
///
/// Run journals ($XDG_STATE_HOME/cnd/runs) are listed: those of runs that can
/// be resumed are kept (--all --force removes them too); --all removes those of
/// runs that ended a day ago or more.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The run to clean up (its id, as `submit` printed it), in progress or not.
    // Not `required_unless_present`: clap would name only --run, where --all would do too.
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    run: Option<Uuid>,

    /// Every cnd run that has ended: cnd Jobs, pods and Secrets of the
    /// namespace, and `cnd-<uuid>` queues, except those of runs in progress.
    #[arg(long)]
    all: bool,

    /// With --all, also remove runs that may still be in progress.
    #[arg(long)]
    force: bool,

    /// The namespace. [default: the kubeconfig's, else "default"]
    #[arg(long, value_name = "NS", value_parser = parse_dns_label)]
    namespace: Option<String>,

    /// Only the Kubernetes objects, not the queues.
    #[arg(long, conflicts_with = "queues_only")]
    no_queues: bool,

    /// Only the queues, not the Kubernetes objects (e.g. after --launcher local).
    #[arg(long)]
    queues_only: bool,
}

/// Runs `cnd-cli cleanup`.
pub fn run(args: CleanupArgs) -> anyhow::Result<Exit> {
    if args.run.is_none() && !args.all {
        return Err(usage(
            "say what to clean up: --run ID (one run, as submit printed it) or --all (every run that has ended)",
        ));
    }
    // Said rather than ignored: a user who adds --force expects it to change
    // something, and with --run it cannot.
    if args.force && !args.all {
        return Err(usage(
            "--force goes with --all (to remove runs still in progress too); --run ID removes that run whether or not it is in progress",
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(cleanup(args))
}

/// The longest the Kubernetes half, and the SQS half, of a cleanup may take.
const HALF_TIMEOUT: Duration = Duration::from_secs(60);

async fn cleanup(args: CleanupArgs) -> anyhow::Result<Exit> {
    // Both halves are tried even when one fails: leave as little behind as possible.
    let mut failures = Vec::new();
    // Each half is bounded: a stalled API server or SQS endpoint never holds it.
    if !args.queues_only {
        match tokio::time::timeout(HALF_TIMEOUT, cleanup_kubernetes(&args)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(sentence(&e)),
            Err(_) => failures.push(format!(
                "the Kubernetes API server did not finish within {}",
                human::duration(HALF_TIMEOUT)
            )),
        }
    }
    if !args.no_queues && !sqs::aws_configured() {
        // A cluster without AWS (pod-status runs) has no queues to remove.
        eprintln!("cnd-cli: skipped SQS queues: no AWS settings found (AWS_REGION, AWS_PROFILE, ~/.aws/config)");
    } else if !args.no_queues {
        let queues = cleanup_queues(args.run, args.all && !args.force);
        match tokio::time::timeout(HALF_TIMEOUT, queues).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(sentence(&e)),
            Err(_) => failures.push(format!(
                "SQS did not finish within {}",
                human::duration(HALF_TIMEOUT)
            )),
        }
    }
    // Local files only: never bounded by a network.
    for line in crate::journal::cleanup_journals(args.run, args.all, args.force) {
        println!("{line}");
    }
    match failures.len() {
        0 => Ok(Exit::Success),
        _ => Err(anyhow::anyhow!(failures.join("; "))),
    }
}

async fn cleanup_kubernetes(args: &CleanupArgs) -> anyhow::Result<()> {
    let mut options = KubeOptions {
        namespace: args.namespace.clone().unwrap_or_default(),
        ..KubeOptions::default()
    };
    let client = match kube_client(&mut options).await {
        Ok((client, _)) => client,
        // Nothing to reach is not a failure of cleanup, but it is said.
        Err(e) if e.downcast_ref::<NoKubeConfig>().is_some() => {
            eprintln!(
                "cnd-cli: skipped Kubernetes (jobs, pods, secrets): {}",
                sentence(&e)
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let keep_live = args.all && !args.force;
    let cleaned = kubernetes::cleanup(&client, &options.namespace, args.run, keep_live).await?;
    let ns = &options.namespace;
    for job in &cleaned.jobs {
        println!("deleted job {ns}/{job}");
    }
    for pod in &cleaned.pods {
        println!("deleted pod {ns}/{pod}");
    }
    for secret in &cleaned.secrets {
        println!("deleted secret {ns}/{secret}");
    }
    for (run, left) in &cleaned.kept {
        println!(
            "kept run {run}: in progress for up to {} more (--force removes it)",
            human::duration(Duration::from_secs(*left))
        );
    }
    if cleaned.jobs.is_empty() && cleaned.pods.is_empty() && cleaned.secrets.is_empty() {
        println!("no ended cnd jobs, pods or secrets in namespace {ns}");
    }
    Ok(())
}

async fn cleanup_queues(run: Option<Uuid>, keep_live: bool) -> anyhow::Result<()> {
    let client = sqs::client().await.context("setting up the SQS client")?;
    let urls = match run {
        Some(run) => sqs::queue_url_for_name(&client, &sqs::queue_name(run))
            .await?
            .into_iter()
            .collect(),
        None => sqs::list_run_queues(&client).await?,
    };
    let mut deleted = 0;
    let mut failures = Vec::new();
    for url in urls {
        if keep_live {
            match sqs::queue_expiry(&client, &url).await {
                Ok(Some(expires)) => {
                    if let Ok(left) = expires.duration_since(SystemTime::now()) {
                        println!(
                            "kept queue {url}: its run may be in progress for up to {} more (--force removes it)",
                            human::duration(left)
                        );
                        continue;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    failures.push(format!("{e} (kept the queue)"));
                    continue;
                }
            }
        }
        // Every queue is tried; the error names each one that failed.
        match sqs::delete_queue(&client, &url).await {
            Ok(()) => {
                deleted += 1;
                println!("deleted queue {url}");
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    if deleted == 0 && failures.is_empty() {
        println!("no ended cnd run queues");
    }
    match failures.len() {
        0 => Ok(()),
        _ => Err(anyhow::anyhow!(failures.join("; "))),
    }
}
