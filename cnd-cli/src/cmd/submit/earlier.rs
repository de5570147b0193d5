//! A resumed run first removes what its earlier attempts left behind.
//!
//! An attempt whose master died by SIGKILL (or lost its machine) leaves its
//! Job, pods and key Secret in the cluster and its queue in SQS: its pods go on
//! searching what the resumed attempt searches again, and its queue waits for
//! a reader that is gone. Their masters are gone for sure (the resumed attempt
//! holds the journal's lock, which a live master never gives up), so this
//! removes them before anything new is created.

use std::time::Duration;

use cnd_cloud::{kubernetes, sqs};
use cnd_core::CancelToken;
use uuid::Uuid;

use crate::console;

/// The longest the removal may take, for all earlier attempts together: it
/// is a courtesy to the cluster, and the run must not wait on a stalled
/// endpoint for it.
const WITHIN: Duration = Duration::from_secs(30);

/// How often a stop is looked for while it runs.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Where the earlier attempts' leftovers may be.
pub struct Leftovers<'a> {
    /// The earlier attempts' run ids.
    pub attempts: &'a [Uuid],
    /// The cluster and namespace, when the run is on Kubernetes.
    pub kube: Option<(&'a kube::Client, &'a str)>,
    /// Whether the run reports over SQS (each attempt had a queue of its own,
    /// unless a shared one was named).
    pub queues: bool,
}

/// Removes what `leftovers` names, saying each thing removed. A failure, a
/// stall past [`WITHIN`] or a stop cuts it short, says how to finish it
/// (`cnd-cli cleanup --run ID`) and lets the run go on.
///
/// # Cancel safety
///
/// Dropping it leaves undeleted what it had not deleted yet, which
/// `cnd-cli cleanup --run ID` removes; nothing else is lost.
pub async fn remove(leftovers: Leftovers<'_>, cancel: &CancelToken) {
    if leftovers.attempts.is_empty() || (leftovers.kube.is_none() && !leftovers.queues) {
        return;
    }
    let stopped = async {
        while !cancel.is_cancelled() {
            tokio::time::sleep(STOP_POLL).await;
        }
    };
    let why = tokio::select! {
        () = remove_all(&leftovers) => return,
        () = stopped => "was stopped".to_string(),
        () = tokio::time::sleep(WITHIN) => format!("took over {}", crate::human::duration(WITHIN)),
    };
    for attempt in leftovers.attempts {
        console::say(format!(
            "warning: removing what attempt {attempt} left {why}; `cnd-cli cleanup --run {attempt}` finishes it"
        ));
    }
}

async fn remove_all(leftovers: &Leftovers<'_>) {
    for &attempt in leftovers.attempts {
        if let Some((client, namespace)) = leftovers.kube {
            match kubernetes::cleanup(client, namespace, Some(attempt), false).await {
                Ok(cleaned) => {
                    let objects = cleaned
                        .jobs
                        .iter()
                        .map(|j| format!("job {namespace}/{j}"))
                        .chain(cleaned.pods.iter().map(|p| format!("pod {namespace}/{p}")))
                        .chain(cleaned.secrets.iter().map(|s| format!("secret {namespace}/{s}")));
                    for object in objects {
                        console::say(format!("deleted {object}, left by attempt {attempt}"));
                    }
                }
                Err(e) => console::say(format!(
                    "warning: could not remove what attempt {attempt} left in the cluster ({e}); `cnd-cli cleanup --run {attempt}` retries it"
                )),
            }
        }
        if leftovers.queues {
            if let Err(e) = remove_queue(attempt).await {
                console::say(format!(
                    "warning: could not remove attempt {attempt}'s queue ({e}); `cnd-cli cleanup --run {attempt} --queues-only` retries it"
                ));
            }
        }
    }
}

/// Deletes the queue attempt `attempt` made for itself, if it is still there.
async fn remove_queue(attempt: Uuid) -> anyhow::Result<()> {
    let client = sqs::client().await?;
    if let Some(url) = sqs::queue_url_for_name(&client, &sqs::queue_name(attempt)).await? {
        sqs::delete_queue(&client, &url).await?;
        console::say(format!("deleted queue {url}, left by attempt {attempt}"));
    }
    Ok(())
}
