//! A resumed run first removes what its earlier attempts left behind.
//!
//! An attempt whose master died by SIGKILL (or lost its machine) leaves its
//! Job, pods and key Secret in the cluster and its queue in SQS: its pods go on
//! searching what the resumed attempt searches again, and its queue waits for
//! a reader that is gone. Their masters are gone for sure (the resumed attempt
//! holds the journal's lock, which a live master never gives up), so this
//! removes them before anything new is created.

use std::cell::Cell;
use std::time::Duration;

use cnd_cloud::{kubernetes, sqs};
use cnd_core::CancelToken;
use uuid::Uuid;

use crate::console;

/// The longest the removal may take, for all earlier attempts together: it
/// is a courtesy to the cluster, and the run must not wait on a stalled
/// endpoint for it.
const WITHIN: Duration = Duration::from_secs(30);

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
    // Attempts done with, so that a cut-short removal names only the rest.
    let done = Cell::new(0);
    let why = tokio::select! {
        () = remove_all(&leftovers, &done) => return,
        () = cancel.cancelled() => "was stopped".to_string(),
        () = tokio::time::sleep(WITHIN) => format!("took over {}", crate::human::duration(WITHIN)),
    };
    for attempt in &leftovers.attempts[done.get()..] {
        console::say(format!(
            "warning: removing what attempt {attempt} left {why}; `cnd-cli cleanup --run {attempt}` finishes it"
        ));
    }
}

async fn remove_all(leftovers: &Leftovers<'_>, done: &Cell<usize>) {
    // One SQS client for every attempt's queue, made when the first is due.
    let mut queues = None;
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
            if queues.is_none() {
                queues = Some(sqs::client().await);
            }
            let removed = match queues.as_ref().expect("made above") {
                Ok(client) => remove_queue(client, attempt).await,
                Err(e) => Err(anyhow::anyhow!("setting up the SQS client: {e}")),
            };
            if let Err(e) = removed {
                console::say(format!(
                    "warning: could not remove attempt {attempt}'s queue ({e}); `cnd-cli cleanup --run {attempt} --queues-only` retries it"
                ));
            }
        }
        done.set(done.get() + 1);
    }
}

/// Deletes the queue attempt `attempt` made for itself, if it is still there.
async fn remove_queue(client: &sqs::Client, attempt: Uuid) -> anyhow::Result<()> {
    if let Some(url) = sqs::queue_url_for_name(client, &sqs::queue_name(attempt)).await? {
        sqs::delete_queue(client, &url).await?;
        console::say(format!("deleted queue {url}, left by attempt {attempt}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use tokio::time::Instant;

    /// An API server that takes every request and never answers (its handle,
    /// kept alive, holds them).
    fn silent_cluster() -> (
        kube::Client,
        tower_test::mock::Handle<Request<Body>, Response<Body>>,
    ) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (kube::Client::new(service, "cnd-test"), handle)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_api_server_holds_the_removal_no_longer_than_its_bound() {
        let (client, _held) = silent_cluster();
        let attempts = [Uuid::new_v4(), Uuid::new_v4()];
        let leftovers = Leftovers {
            attempts: &attempts,
            kube: Some((&client, "cnd-test")),
            queues: false,
        };
        let started = Instant::now();
        // Bounded here too, so that a removal without its bound fails this
        // test rather than hanging it.
        let cancel = CancelToken::new();
        let bounded = tokio::time::timeout(2 * WITHIN, remove(leftovers, &cancel));
        assert!(
            bounded.await.is_ok(),
            "still removing after {:?}",
            2 * WITHIN
        );
        let took = started.elapsed();
        assert!(
            took >= WITHIN && took < WITHIN + Duration::from_secs(1),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_removal_at_once() {
        let (client, _held) = silent_cluster();
        let attempts = [Uuid::new_v4()];
        let leftovers = Leftovers {
            attempts: &attempts,
            kube: Some((&client, "cnd-test")),
            queues: false,
        };
        let cancel = CancelToken::new();
        let stopper = cancel.clone();
        let stop_after = Duration::from_millis(300);
        tokio::spawn(async move {
            tokio::time::sleep(stop_after).await;
            stopper.cancel();
        });
        let started = Instant::now();
        remove(leftovers, &cancel).await;
        let took = started.elapsed();
        assert!(
            took >= stop_after && took < stop_after + Duration::from_millis(100),
            "{took:?}"
        );
    }
}
