//! Queue administration: creating, looking up, checking, listing and deleting queues.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::QueueAttributeName;
use cnd_core::distributed::unix_now;
use cnd_core::ChannelError;
use uuid::Uuid;

use super::{
    queue_name, run_id_of_queue, the_queue, Client, Failure, EXPIRES_TAG, QUEUE_PREFIX, RUN_ID_TAG,
};

/// How long a per-run queue keeps an unread message. Reports are read within
/// seconds; a day is ample and keeps a forgotten queue from holding them for weeks.
const RETENTION_SECS: &str = "86400";

/// How long a received message stays hidden if the master dies before deleting it.
const VISIBILITY_SECS: &str = "30";

/// Creates the queue `cnd-<run id>`, tagged `cnd/run-id=<run id>` and
/// [`EXPIRES_TAG`] = now + `lifetime`; returns its URL.
pub(super) async fn create_run_queue(
    client: &Client,
    run_id: Uuid,
    lifetime: Duration,
) -> Result<String, ChannelError> {
    let name = queue_name(run_id);
    let expires = unix_now().saturating_add(lifetime.as_secs());
    let out = client
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::MessageRetentionPeriod, RETENTION_SECS)
        .attributes(QueueAttributeName::VisibilityTimeout, VISIBILITY_SECS)
        .tags(RUN_ID_TAG, run_id.to_string())
        .tags(EXPIRES_TAG, expires.to_string())
        .send()
        .await
        .map_err(|e| {
            Failure::of(e).into_channel_error(format!("creating queue {name}"), &the_queue(&name))
        })?;
    let queue_url = out.queue_url().ok_or_else(|| {
        ChannelError::refused(
            format!("creating queue {name}"),
            "the service returned no queue URL",
        )
    })?;
    tracing::debug!(queue = queue_url, "created the run's queue");
    Ok(queue_url.to_string())
}

/// The URLs of every per-run queue (`cnd-<uuid>`) the credentials can see, for
/// `cleanup --all`. Other queues whose names start with `cnd-` (a shared queue
/// such as `cnd-results`) are not listed, so cleanup never deletes them.
pub async fn list_run_queues(client: &Client) -> Result<Vec<String>, ChannelError> {
    let mut urls = Vec::new();
    let mut next_token = None;
    loop {
        let out = client
            .list_queues()
            .queue_name_prefix(QUEUE_PREFIX)
            // Without MaxResults, ListQueues returns at most 1000 and no token.
            .max_results(1000)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| Failure::of(e).into_channel_error("listing queues", "SQS"))?;
        urls.extend(
            out.queue_urls()
                .iter()
                .filter(|url| run_id_of_queue(url).is_some())
                .cloned(),
        );
        match out.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => return Ok(urls),
        }
    }
}

/// The URL of the queue named `name`, or `None` if there is no such queue.
pub async fn queue_url_for_name(
    client: &Client,
    name: &str,
) -> Result<Option<String>, ChannelError> {
    match client.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url().map(str::to_string)),
        Err(err) => {
            let failure = Failure::of(err);
            if failure.no_such_queue() {
                Ok(None)
            } else {
                Err(failure
                    .into_channel_error(format!("looking up queue {name}"), &the_queue(name)))
            }
        }
    }
}

/// Checks that the queue at `url` exists, with the one read a worker's IAM
/// policy allows (GetQueueUrl by the queue's name and owner account).
pub async fn check_queue(client: &Client, url: &str) -> Result<(), ChannelError> {
    let mut segments = url.trim_end_matches('/').rsplit('/');
    let name = segments.next().unwrap_or_default();
    let owner = segments
        .next()
        .filter(|account| account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()));
    match client
        .get_queue_url()
        .queue_name(name)
        .set_queue_owner_aws_account_id(owner.map(str::to_string))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(err) => {
            let failure = Failure::of(err);
            let action = format!("looking up queue {url}");
            if failure.no_such_queue() {
                Err(ChannelError::refused(
                    action,
                    "there is no such queue (was the run ended or cleaned up?)",
                ))
            } else {
                Err(failure.into_channel_error(action, &the_queue(url)))
            }
        }
    }
}

/// When the run of the per-run queue at `url` ends at the latest (its
/// [`EXPIRES_TAG`]); `None` for a queue without the tag (or a malformed one).
pub async fn queue_expiry(client: &Client, url: &str) -> Result<Option<SystemTime>, ChannelError> {
    let out = client
        .list_queue_tags()
        .queue_url(url)
        .send()
        .await
        .map_err(|e| {
            Failure::of(e).into_channel_error(format!("reading the tags of {url}"), &the_queue(url))
        })?;
    Ok(out
        .tags()
        .and_then(|tags| tags.get(EXPIRES_TAG))
        .and_then(|secs| secs.parse::<u64>().ok())
        .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs))))
}

/// Deletes the queue at `url`; a queue that is already gone is not an error.
pub async fn delete_queue(client: &Client, url: &str) -> Result<(), ChannelError> {
    match client.delete_queue().queue_url(url).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let failure = Failure::of(err);
            if failure.no_such_queue() {
                Ok(())
            } else {
                Err(failure.into_channel_error(format!("deleting queue {url}"), &the_queue(url)))
            }
        }
    }
}
