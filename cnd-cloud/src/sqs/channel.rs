//! [`SqsChannel`]: the master's end of a run's reports, on a per-run or a shared queue.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
};
use cnd_core::distributed::{error_chain, unix_now, SHARD_ATTRIBUTE};
use cnd_core::{ChannelError, Message, Received, ResultChannel, RunSpec, Sender};
use uuid::Uuid;

use super::admin::{create_run_queue, delete_queue, queue_url_for_name};
use super::{
    queue_name, the_queue, Client, Failure, EXPIRES_ATTRIBUTE, FOREIGN_HIDE, MAX_WAIT,
    RUN_ID_ATTRIBUTE, SIGNATURE_ATTRIBUTE,
};

/// The most messages SQS returns for one `ReceiveMessage` (and takes in one batch call).
const BATCH: usize = 10;

/// `ReceiveMessage` calls in one [`SqsChannel::receive`] while each comes back
/// full: a backlog of 100 messages is read in one go.
const BATCHES_PER_RECEIVE: usize = 10;

/// The longest a foreign message is hidden: the hide grows by a second per 100
/// foreign messages in a row, so a reader gets past a flood of thousands.
const FOREIGN_HIDE_MAX: Duration = Duration::from_secs(120);

/// How long the bookkeeping of a receive (deleting what was taken, hiding or
/// deleting others' messages) may take. It runs in tasks of its own, never
/// holding back this run's messages; what it does not finish happens by itself
/// (a message not deleted is delivered again after the visibility timeout, and
/// the master takes a report once).
const BOOKKEEPING_LIMIT: Duration = Duration::from_secs(10);

/// The master's end of a run's reports on SQS.
#[derive(Debug)]
pub struct SqsChannel {
    client: Client,
    queue_url: String,
    run_id: Uuid,
    /// The queue was created for this run: every message on it is ours, and
    /// `close` deletes it.
    owned: bool,
    /// What [`open`](ResultChannel::open) still has to do.
    opening: Opening,
    closed: bool,
    /// Messages taken from SQS and not yet returned, with their receipt handles.
    inbox: Vec<(String, Message)>,
    /// Receipt handles of messages returned but not yet deleted.
    unacked: Vec<String>,
    /// Foreign messages seen in a row (without one of ours, or an empty receive):
    /// how long they are hidden grows with it.
    foreign_streak: u64,
}

/// How long `close` looks for the queue of an `open` that never heard back.
const LOOKUP_AFTER_CUT_OPEN: Duration = Duration::from_secs(2);

/// The start of the action of the error `open` returns when no queue has the
/// name the channel was made with (see [`is_no_such_named_queue`]).
const NO_SUCH_NAMED_QUEUE: &str = "looking up the SQS queue";

/// Whether `error` is [`SqsChannel::named`]'s `open` finding no queue of that
/// name: a mistake in what the user gave, not a failure of the service.
pub fn is_no_such_named_queue(error: &ChannelError) -> bool {
    matches!(error, ChannelError::Refused { action, .. } if action.starts_with(NO_SUCH_NAMED_QUEUE))
}

/// What [`SqsChannel`]'s `open` does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Opening {
    /// Create the run's own queue, `cnd-<run id>`.
    Create,
    /// Look up the shared queue of this name.
    LookUp(String),
    /// Nothing: the queue's URL is known.
    Ready,
}

impl SqsChannel {
    /// A channel for the run the master opens it for: its `open` creates the
    /// per-run queue `cnd-<run id>`, tagged with the run and lasting its
    /// [`lifetime`](RunSpec::lifetime); its `close` deletes it, also after an
    /// `open` that was cut short.
    pub fn for_run(client: &Client) -> SqsChannel {
        SqsChannel::new(client, String::new(), Uuid::nil(), true).opening(Opening::Create)
    }

    /// A channel on the existing queue named `name`, shared with other runs:
    /// its `open` looks the queue up (and fails if there is none); see
    /// [`SqsChannel::shared`].
    pub fn named(client: &Client, name: impl Into<String>) -> SqsChannel {
        SqsChannel::new(client, String::new(), Uuid::nil(), false)
            .opening(Opening::LookUp(name.into()))
    }

    /// A channel on the existing queue at `queue_url`, shared with other runs,
    /// for the run the master opens it for; see [`SqsChannel::shared`].
    pub fn at(client: &Client, queue_url: impl Into<String>) -> SqsChannel {
        SqsChannel::new(client, queue_url.into(), Uuid::nil(), false)
    }

    fn opening(mut self, opening: Opening) -> SqsChannel {
        self.opening = opening;
        self
    }

    /// Creates the per-run queue `cnd-<run id>` of a run that lives at most
    /// [`DEFAULT_LIFETIME`](cnd_core::distributed::DEFAULT_LIFETIME); see
    /// [`SqsChannel::create_for_run_lasting`].
    pub async fn create_for_run(client: &Client, run_id: Uuid) -> Result<SqsChannel, ChannelError> {
        SqsChannel::create_for_run_lasting(client, run_id, cnd_core::distributed::DEFAULT_LIFETIME)
            .await
    }

    /// Creates the per-run queue `cnd-<run id>`, tagged `cnd/run-id=<run id>` and
    /// [`EXPIRES_TAG`] = now + `lifetime`; [`close`](ResultChannel::close) deletes it.
    ///
    /// [`EXPIRES_TAG`]: super::EXPIRES_TAG
    pub async fn create_for_run_lasting(
        client: &Client,
        run_id: Uuid,
        lifetime: Duration,
    ) -> Result<SqsChannel, ChannelError> {
        let queue_url = create_run_queue(client, run_id, lifetime).await?;
        Ok(SqsChannel::new(client, queue_url, run_id, true))
    }

    /// Uses an existing queue shared with other runs: only messages whose
    /// `cnd-run-id` attribute is `run_id` are taken; the queue is never deleted.
    pub fn shared(client: &Client, queue_url: impl Into<String>, run_id: Uuid) -> SqsChannel {
        SqsChannel::new(client, queue_url.into(), run_id, false)
    }

    fn new(client: &Client, queue_url: String, run_id: Uuid, owned: bool) -> SqsChannel {
        SqsChannel {
            client: client.clone(),
            queue_url,
            run_id,
            owned,
            opening: Opening::Ready,
            closed: false,
            inbox: Vec::new(),
            unacked: Vec::new(),
            foreign_streak: 0,
        }
    }

    /// The run whose messages this channel takes.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// Whether the queue was created for this run (and is deleted by `close`).
    pub fn is_per_run(&self) -> bool {
        self.owned
    }

    /// Deletes `receipts`, [`BATCH`] at a time; returns those it could not delete.
    async fn delete_all(&self, receipts: &[String]) -> Vec<String> {
        delete_all(&self.client, &self.queue_url, receipts).await
    }

    /// Deletes the messages already returned to the master, in a task of its
    /// own bounded by [`BOOKKEEPING_LIMIT`]: a slow or stalled delete never holds
    /// up a receive. What it does not delete comes back after the visibility
    /// timeout, and the master takes a report it already has only once.
    fn acknowledge(&mut self) {
        if self.unacked.is_empty() {
            return;
        }
        let receipts = std::mem::take(&mut self.unacked);
        let (client, queue_url) = (self.client.clone(), self.queue_url.clone());
        tokio::spawn(async move {
            let deleting = delete_all(&client, &queue_url, &receipts);
            match tokio::time::timeout(BOOKKEEPING_LIMIT, deleting).await {
                Ok(left) if left.is_empty() => {}
                Ok(left) => {
                    tracing::debug!(queue = %queue_url, count = left.len(), "could not delete some taken messages; they come back after the visibility timeout")
                }
                Err(_) => {
                    tracing::debug!(queue = %queue_url, count = receipts.len(), "deleting taken messages got no answer in time; they come back after the visibility timeout")
                }
            }
        });
    }

    /// Hides other runs' messages for `hide` (whole seconds), so that the next
    /// receive reads past them while their master still gets them soon. Best
    /// effort: if this fails they reappear after the queue's visibility timeout.
    async fn hide(&self, receipts: &[String], hide_for: Duration) {
        hide(&self.client, &self.queue_url, receipts, hide_for).await
    }

    /// How long to hide foreign messages now: [`FOREIGN_HIDE`], plus a second
    /// per 100 seen in a row, at most [`FOREIGN_HIDE_MAX`].
    fn foreign_hide(&self) -> Duration {
        (FOREIGN_HIDE + Duration::from_secs(self.foreign_streak / 100)).min(FOREIGN_HIDE_MAX)
    }

    /// Up to [`BATCHES_PER_RECEIVE`] `ReceiveMessage` calls (the first a long
    /// poll of `wait`, the rest only while batches come back full). This run's
    /// messages go into the inbox as soon as each call returns; others' are
    /// hidden or, if expired, deleted. Returns how many foreign messages it saw.
    async fn fetch(&mut self, wait: Duration) -> Result<u64, ChannelError> {
        let run_id = self.run_id.to_string();
        let mut foreign = 0u64;
        let mut wait_secs = wait.min(MAX_WAIT).as_secs() as i32;
        for batch in 0..BATCHES_PER_RECEIVE {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .wait_time_seconds(wait_secs)
                .max_number_of_messages(BATCH as i32)
                .message_attribute_names(RUN_ID_ATTRIBUTE)
                .message_attribute_names(SIGNATURE_ATTRIBUTE)
                .message_attribute_names(SHARD_ATTRIBUTE)
                .message_attribute_names(EXPIRES_ATTRIBUTE)
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                // What earlier batches of this call took is in the inbox; the
                // next receive meets the failure again if it lasts.
                Err(e) if batch > 0 => {
                    tracing::debug!(queue = %self.queue_url, error = %error_chain(&e), "a further receive failed; returning what came");
                    break;
                }
                Err(e) => {
                    return Err(Failure::of(e).into_channel_error(
                        format!("receiving from queue {}", self.queue_url),
                        &the_queue(&self.queue_url),
                    ))
                }
            };
            wait_secs = 0;
            let now = unix_now();
            let (mut others, mut expired) = (Vec::new(), Vec::new());
            let full = out.messages().len() >= BATCH;
            for message in out.messages() {
                let Some(receipt) = message.receipt_handle() else {
                    continue;
                };
                let attribute = |name| {
                    message
                        .message_attributes()
                        .and_then(|attributes| attributes.get(name))
                        .and_then(|value| value.string_value())
                };
                // On a per-run queue everything is ours, even a body without the
                // attribute: the master checks it, rejects what is not a report,
                // and the acknowledgement then deletes it.
                if self.owned || attribute(RUN_ID_ATTRIBUTE) == Some(run_id.as_str()) {
                    let sender = attribute(SHARD_ATTRIBUTE)
                        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse::<u64>().ok())
                        .map_or(Sender::Unknown, Sender::Claims);
                    let received = Message {
                        body: message.body().unwrap_or("").to_string(),
                        signature: attribute(SIGNATURE_ATTRIBUTE).map(str::to_string),
                        sender,
                    };
                    self.inbox.push((receipt.to_string(), received));
                    self.foreign_streak = 0;
                } else if attribute(EXPIRES_ATTRIBUTE)
                    .and_then(|secs| secs.parse::<u64>().ok())
                    .is_some_and(|expires| expires < now)
                {
                    expired.push(receipt.to_string());
                } else {
                    others.push(receipt.to_string());
                }
            }
            foreign += (others.len() + expired.len()) as u64;
            self.foreign_streak += (others.len() + expired.len()) as u64;
            if out.messages().is_empty() {
                self.foreign_streak = 0;
            }
            // Best effort, bounded, in a task of its own: it never holds up
            // this run's messages.
            if !(expired.is_empty() && others.is_empty()) {
                let hide_for = self.foreign_hide();
                let (client, queue_url) = (self.client.clone(), self.queue_url.clone());
                tokio::spawn(tokio::time::timeout(BOOKKEEPING_LIMIT, async move {
                    others.extend(delete_all(&client, &queue_url, &expired).await);
                    hide(&client, &queue_url, &others, hide_for).await;
                }));
            }
            if !full {
                break;
            }
        }
        if foreign > 0 {
            tracing::debug!(
                queue = %self.queue_url,
                count = foreign,
                hidden_for = ?self.foreign_hide(),
                "saw other runs' messages on the shared queue"
            );
        }
        Ok(foreign)
    }
}

/// Sets the visibility of `receipts` to `hide` (whole seconds, at most 12 h),
/// [`BATCH`] at a time. Best effort: failures are logged at debug level.
async fn hide(client: &Client, queue_url: &str, receipts: &[String], hide: Duration) {
    // SQS takes 0 to 12 hours.
    let secs = hide.as_secs().min(43_200) as i32;
    for chunk in receipts.chunks(BATCH) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(receipt)
                    .visibility_timeout(secs)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let result = client
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        if let Err(err) = result {
            tracing::debug!(queue = %queue_url, error = %error_chain(&err), "could not set the visibility of other runs' messages");
        }
    }
}

/// Deletes `receipts` from `queue_url`, [`BATCH`] at a time; returns those it
/// could not delete.
async fn delete_all(client: &Client, queue_url: &str, receipts: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for chunk in receipts.chunks(BATCH) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(receipt)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let result = client
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match result {
            Ok(out) => left.extend(out.failed().iter().filter_map(|f| {
                let i: usize = f.id().strip_prefix('m')?.parse().ok()?;
                chunk.get(i).cloned()
            })),
            Err(err) => {
                tracing::debug!(queue = %queue_url, error = %error_chain(&err), "could not delete messages");
                left.extend(chunk.iter().cloned());
            }
        }
    }
    left
}

#[async_trait]
impl ResultChannel for SqsChannel {
    /// Binds the channel to `spec`'s run, then creates the per-run queue
    /// ([`SqsChannel::for_run`]) or looks up the named one ([`SqsChannel::named`]);
    /// a channel whose queue is known does nothing more. A channel made for
    /// another run is refused.
    ///
    /// # Cancel safety
    ///
    /// Dropped while the queue is being created, the queue may exist without
    /// the channel knowing its URL: [`close`](ResultChannel::close) looks it up
    /// by its name and deletes it. Calling `open` again tries again.
    async fn open(&mut self, spec: &RunSpec) -> Result<(), ChannelError> {
        if self.run_id.is_nil() {
            self.run_id = spec.run_id;
        } else if self.run_id != spec.run_id {
            return Err(ChannelError::refused(
                format!("opening the queue for run {}", spec.run_id),
                format!("this channel was made for run {}", self.run_id),
            ));
        }
        match self.opening.clone() {
            Opening::Ready => {}
            Opening::Create => {
                self.queue_url =
                    create_run_queue(&self.client, self.run_id, spec.lifetime()).await?;
            }
            Opening::LookUp(name) => {
                self.queue_url = queue_url_for_name(&self.client, &name)
                    .await?
                    .ok_or_else(|| {
                        ChannelError::refused(
                            format!("{NO_SUCH_NAMED_QUEUE} {name:?}"),
                            "there is no queue of that name (create it, or leave out --queue-name for a queue of the run's own)",
                        )
                    })?;
            }
        }
        self.opening = Opening::Ready;
        Ok(())
    }

    /// The queue's URL; empty before `open` has made or found the queue.
    fn address(&self) -> &str {
        &self.queue_url
    }

    /// Starts deleting what the last call returned (in the background, bounded),
    /// then one long poll of up to `wait` (whole seconds, at most 20; under a
    /// second is a short poll) and up to 9 more `ReceiveMessage` calls while they
    /// come back full; returns this run's messages.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Messages taken from SQS wait in the channel's inbox until a
    /// call returns them, and are deleted only at a later call or at `close`,
    /// so a future dropped at any point loses nothing: at worst a message
    /// comes back after the queue's visibility timeout (30 s on a per-run
    /// queue) and the master, which takes each report once, ignores the repeat.
    async fn receive(&mut self, wait: Duration) -> Result<Received, ChannelError> {
        self.acknowledge();
        let mut foreign = 0;
        if self.inbox.is_empty() {
            foreign = self.fetch(wait).await?;
        }
        let taken = std::mem::take(&mut self.inbox);
        let mut messages = Vec::with_capacity(taken.len());
        for (receipt, message) in taken {
            self.unacked.push(receipt);
            messages.push(message);
        }
        Ok(Received::new(messages).with_foreign(foreign))
    }

    /// Deletes what was returned (on a shared queue), then a per-run queue;
    /// after an `open` that never heard back, the queue is looked up by its
    /// name (for at most 2 s, then the error names it) and deleted.
    ///
    /// # Cancel safety
    ///
    /// Dropped mid-way, it may have deleted part; calling it again finishes.
    async fn close(&mut self) -> Result<(), ChannelError> {
        if !self.owned {
            // What was taken is deleted; what was not goes back at once.
            let untaken: Vec<String> = self
                .inbox
                .iter()
                .map(|(receipt, _)| receipt.clone())
                .collect();
            self.hide(&untaken, Duration::ZERO).await;
            self.inbox.clear();
            let left = self.delete_all(&self.unacked.clone()).await;
            self.unacked = left;
            return Ok(());
        }
        if self.closed {
            return Ok(());
        }
        if self.queue_url.is_empty() {
            // Never opened, or an `open` cut short that may have made the queue.
            if self.run_id.is_nil() {
                self.closed = true;
                return Ok(());
            }
            let name = queue_name(self.run_id);
            // Brief, and not retried: the service just failed to answer, and the
            // user waits; the error names the one thing that may be left.
            let looked_up = tokio::time::timeout(
                LOOKUP_AFTER_CUT_OPEN,
                queue_url_for_name(&self.client, &name),
            )
            .await;
            match looked_up {
                Ok(Ok(Some(url))) => self.queue_url = url,
                Ok(Ok(None)) => {
                    self.closed = true;
                    return Ok(());
                }
                Ok(Err(e)) => {
                    return Err(ChannelError::other(format!(
                        "the queue {name} may have been created (its creation got no answer), \
                         and looking it up failed: {}",
                        error_chain(&e)
                    )))
                }
                Err(_) => {
                    return Err(ChannelError::other(format!(
                        "the queue {name} may have been created (its creation got no answer), \
                         and looking it up got no answer within {} s",
                        LOOKUP_AFTER_CUT_OPEN.as_secs()
                    )))
                }
            }
        }
        delete_queue(&self.client, &self.queue_url).await?;
        self.closed = true;
        tracing::debug!(queue = %self.queue_url, "deleted the run's queue");
        Ok(())
    }
}
