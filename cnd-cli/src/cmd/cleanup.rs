//! `cnd-cli cleanup`: remove what runs left behind (a master killed with SIGKILL,
//! a lost connection): Jobs and pods found by their labels, and per-run queues.

use anyhow::Context;
use clap::Args;
use cnd_cloud::kubernetes::{self, KubeOptions};
use cnd_cloud::sqs;
use uuid::Uuid;

use crate::cmd::submit::{kube_client, parse_dns_label};
use crate::exit::{usage, Exit};

/// Delete the Jobs, pods and `cnd-<run id>` queues of one run, or of every run.
///
/// Jobs and pods are found by their labels (app.kubernetes.io/name=cnd,
/// cnd/run-id=<id>) in one namespace; queues by their name. A shared queue
/// (--queue-url of submit) is never deleted.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The run to clean up (its id, as `submit` printed it).
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "all",
        required_unless_present = "all"
    )]
    run: Option<Uuid>,

    /// Every cnd run: all cnd Jobs and pods of the namespace, all `cnd-<uuid>` queues.
    #[arg(long)]
    all: bool,

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
        return Err(usage("say what to clean up: --run ID or --all"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(cleanup(args))
}

async fn cleanup(args: CleanupArgs) -> anyhow::Result<Exit> {
    // Both halves are tried even when one fails: leave as little behind as possible.
    let mut failures = Vec::new();
    if !args.queues_only {
        match cleanup_kubernetes(&args).await {
            Ok(()) => {}
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if !args.no_queues {
        match cleanup_queues(args.run).await {
            Ok(()) => {}
            Err(e) => failures.push(format!("{e:#}")),
        }
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
    let client = kube_client(&mut options).await?;
    let cleaned = kubernetes::cleanup(&client, &options.namespace, args.run).await?;
    for job in &cleaned.jobs {
        println!("deleted job {}/{job}", options.namespace);
    }
    for pod in &cleaned.pods {
        println!("deleted pod {}/{pod}", options.namespace);
    }
    for secret in &cleaned.secrets {
        println!("deleted secret {}/{secret}", options.namespace);
    }
    if cleaned.jobs.is_empty() && cleaned.pods.is_empty() && cleaned.secrets.is_empty() {
        println!(
            "no cnd jobs, pods or secrets in namespace {}",
            options.namespace
        );
    }
    Ok(())
}

async fn cleanup_queues(run: Option<Uuid>) -> anyhow::Result<()> {
    let client = sqs::client().await.context("setting up the SQS client")?;
    let urls = match run {
        Some(run) => sqs::queue_url_for_name(&client, &sqs::queue_name(run))
            .await?
            .into_iter()
            .collect(),
        None => sqs::list_run_queues(&client).await?,
    };
    if urls.is_empty() {
        println!("no cnd run queues");
    }
    for url in urls {
        sqs::delete_queue(&client, &url).await?;
        println!("deleted queue {url}");
    }
    Ok(())
}
