//! A resumed run first removes what its earlier attempts left behind.
//!
//! An attempt whose master died by SIGKILL (or lost its machine) leaves its
//! Job, pods and key Secret in the cluster and its queue in SQS: its pods go on
//! searching what the resumed attempt searches again, and its queue waits for
//! a reader that is gone. Their masters are gone for sure (the resumed attempt
//! holds the journal's lock, which a live master never gives up), so this
//! removes them before anything new is created. Each attempt is looked for
//! where its own journal line says it ran ([`Attempt::from_launch`]), so a
//! resume on another launcher, namespace or channel still finds them.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Duration;

use clap::ValueEnum;
use cnd_cloud::kubernetes::{self, KubeOptions};
use cnd_cloud::sqs;
use cnd_core::CancelToken;
use uuid::Uuid;

use super::{default_channel, ChannelKind};
use crate::cluster::{kube_client, LauncherKind};
use crate::console;

/// The longest the removal may take, for all earlier attempts together: it
/// is a courtesy to the cluster, and the run must not wait on a stalled
/// endpoint for it.
const WITHIN: Duration = Duration::from_secs(30);

/// One earlier attempt, and where what it made may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Its run id.
    pub run_id: Uuid,
    /// The namespace it ran in, when it ran on Kubernetes.
    pub namespace: Option<String>,
    /// Whether it reported over a queue of its own (`cnd-<id>`, not one named
    /// by --queue-url or --queue-name, which others may share).
    pub own_queue: bool,
}

impl Attempt {
    /// Attempt `run_id` as its journal line's launch settings describe it
    /// (see `launch.rs`), so that a resume on another launcher, namespace
    /// or channel still finds what it left. An attempt whose line says
    /// nothing (written before lines did) is taken to have run as `current`,
    /// the resumed attempt, does.
    pub fn from_launch(
        run_id: Uuid,
        launch: &BTreeMap<String, String>,
        current: &Attempt,
    ) -> Attempt {
        if launch.is_empty() {
            return Attempt {
                run_id,
                ..current.clone()
            };
        }
        // A value no flag takes (a journal edited by hand) names nothing to remove.
        let launcher = launch
            .get("launcher")
            .and_then(|l| LauncherKind::from_str(l, false).ok());
        let on_kubernetes = launcher == Some(LauncherKind::Kubernetes);
        let queue_named = launch.contains_key("queue-url") || launch.contains_key("queue-name");
        let channel = match launch.get("channel") {
            Some(channel) => ChannelKind::from_str(channel, false).ok(),
            // Without --channel, the default then (AWS settings are read now:
            // a queue that is not there costs one look-up).
            None => launcher.map(|l| default_channel(l, queue_named).0),
        };
        let own_queue = !queue_named && channel == Some(ChannelKind::Sqs);
        Attempt {
            run_id,
            namespace: if on_kubernetes {
                launch
                    .get("namespace")
                    .cloned()
                    .or_else(|| current.namespace.clone())
            } else {
                None
            },
            own_queue,
        }
    }

    /// Whether it may have left anything.
    fn left_anything(&self) -> bool {
        self.namespace.is_some() || self.own_queue
    }
}

/// What the earlier attempts may have left, and the means to remove it.
pub struct Leftovers<'a> {
    /// The earlier attempts, oldest first.
    pub attempts: &'a [Attempt],
    /// The run's own Kubernetes client, when it runs there; otherwise one is
    /// made from the kubeconfig, if an earlier attempt ran on Kubernetes.
    pub kube: Option<&'a kube::Client>,
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
    if !leftovers.attempts.iter().any(Attempt::left_anything) {
        return;
    }
    // Attempts done with, so that a cut-short removal names only the rest.
    let done = Cell::new(0);
    let why = tokio::select! {
        () = remove_all(&leftovers, &done) => return,
        () = cancel.cancelled() => "was stopped".to_string(),
        () = tokio::time::sleep(WITHIN) => format!("took over {}", crate::human::duration(WITHIN)),
    };
    for attempt in leftovers.attempts[done.get()..]
        .iter()
        .filter(|a| a.left_anything())
    {
        let attempt = attempt.run_id;
        console::say(format!(
            "warning: removing what attempt {attempt} left {why}; `cnd-cli cleanup --run {attempt}` finishes it"
        ));
    }
}

async fn remove_all(leftovers: &Leftovers<'_>, done: &Cell<usize>) {
    // One client of each kind for every attempt, made when the first is due.
    let mut queues = None;
    let mut made_cluster = None;
    for earlier in leftovers.attempts {
        let attempt = earlier.run_id;
        if let Some(namespace) = &earlier.namespace {
            let client = match leftovers.kube {
                Some(client) => Ok(client),
                None => {
                    if made_cluster.is_none() {
                        let made = kube_client(&mut KubeOptions::default()).await;
                        made_cluster =
                            Some(made.map(|(client, _)| client).map_err(|e| format!("{e:#}")));
                    }
                    let made = made_cluster.as_ref().expect("made above");
                    made.as_ref().map_err(Clone::clone)
                }
            };
            let cleaned = match client {
                Ok(client) => kubernetes::cleanup(client, namespace, Some(attempt), false)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match cleaned {
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
        if earlier.own_queue {
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

    /// An attempt that ran on Kubernetes, in `cnd-test`, without a queue.
    fn on_cluster() -> Attempt {
        Attempt {
            run_id: Uuid::new_v4(),
            namespace: Some("cnd-test".to_string()),
            own_queue: false,
        }
    }

    fn launch(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_attempt_is_looked_for_where_its_own_line_says_it_ran() {
        let id = Uuid::new_v4();
        // The resumed attempt runs locally, reporting on stdout.
        let current = Attempt {
            run_id: Uuid::new_v4(),
            namespace: None,
            own_queue: false,
        };
        let kube = launch(&[
            ("launcher", "kubernetes"),
            ("namespace", "team-a"),
            ("channel", "sqs"),
        ]);
        assert_eq!(
            Attempt::from_launch(id, &kube, &current),
            Attempt {
                run_id: id,
                namespace: Some("team-a".to_string()),
                own_queue: true
            }
        );
        // A named queue is not the attempt's to delete; pod status has none.
        for (flag, value) in [
            ("queue-name", "shared"),
            ("queue-url", "http://127.0.0.1:1/q"),
        ] {
            let mut named = kube.clone();
            named.insert(flag.to_string(), value.to_string());
            assert!(!Attempt::from_launch(id, &named, &current).own_queue);
        }
        let pod_status = launch(&[
            ("launcher", "kubernetes"),
            ("namespace", "n"),
            ("channel", "pod-status"),
        ]);
        assert!(!Attempt::from_launch(id, &pod_status, &current).own_queue);
        // Local workers leave nothing in any cluster, whatever the resume uses.
        let on_cluster_now = on_cluster();
        let local = launch(&[("launcher", "local"), ("pods", "2")]);
        let got = Attempt::from_launch(id, &local, &on_cluster_now);
        assert_eq!((got.namespace, got.own_queue), (None, false));
        // A line that says nothing: as the resumed attempt runs.
        assert_eq!(
            Attempt::from_launch(id, &BTreeMap::new(), &on_cluster_now),
            Attempt {
                run_id: id,
                ..on_cluster_now
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_api_server_holds_the_removal_no_longer_than_its_bound() {
        let (client, _held) = silent_cluster();
        let attempts = [on_cluster(), on_cluster()];
        let leftovers = Leftovers {
            attempts: &attempts,
            kube: Some(&client),
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
        let attempts = [on_cluster()];
        let leftovers = Leftovers {
            attempts: &attempts,
            kube: Some(&client),
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
