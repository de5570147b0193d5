//! Amazon SQS (or any SQS-compatible service) as the channel between workers and
//! the master (SPEC §5, §8).
//!
//! - [`client`] builds an SQS client from the AWS SDK's own chain (`AWS_REGION`,
//!   credentials, `AWS_ENDPOINT_URL_SQS`, profiles, IMDS/IRSA), with a rustls + ring
//!   HTTPS client that trusts the system's CA store and also speaks plain `http://`.
//! - [`SqsChannel`] is the master's [`ResultChannel`]: a per-run queue named
//!   `cnd-<run id>` that it creates and deletes, or a shared queue it never deletes.
//! - [`SqsReportSender`] is the worker's side: one report per message, with the
//!   run id in the [`RUN_ID_ATTRIBUTE`] message attribute and its signature under
//!   the run's key in [`SIGNATURE_ATTRIBUTE`] (SPEC §5), retried with backoff.
//! - [`list_run_queues`], [`queue_url_for_name`] and [`delete_queue`] are for `cleanup`.
//!
//! Every message carries the run id as the String message attribute `cnd-run-id`,
//! so a master on a shared queue filters without parsing bodies, and the shard
//! it is from as `cnd-shard` ([`SHARD_ATTRIBUTE`]), so the master checks its
//! signature with that shard's key before reading it.
//!
//! Delivery is at least once. [`SqsChannel::receive`] keeps what it took from
//! SQS in its own inbox until it returns it, and deletes a message only at the
//! next `receive` (or `close`), after the master has taken it: a call cut short
//! at any point loses nothing. Another run's or producer's message on a shared
//! queue is hidden for a while ([`FOREIGN_HIDE`], longer while a flood lasts) so
//! that it does not come straight back ahead of this run's, and is never
//! deleted unless its `cnd-expires` has passed.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, QueueAttributeName,
};
use aws_smithy_http_client::tls;
use cnd_core::distributed::{unix_now, SHARD_ATTRIBUTE};
use cnd_core::{
    Cause, ChannelError, Message, Received, Report, ResultChannel, RunKey, RunSpec, Sender,
};

use cnd_core::distributed::error_chain;

pub use cnd_core::SIGNATURE_ATTRIBUTE;
use uuid::Uuid;

pub use aws_sdk_sqs::Client;

/// The message attribute (DataType `String`) that holds the run id of every report.
pub const RUN_ID_ATTRIBUTE: &str = "cnd-run-id";

/// The message attribute (DataType `Number`) with the end of the sender's run's
/// lifetime in Unix seconds (`CND_EXPIRES`): on a shared queue, another run's
/// message past it can matter to no one, and is deleted instead of left.
pub const EXPIRES_ATTRIBUTE: &str = "cnd-expires";

/// The prefix of every per-run queue: `cnd-<run id>` (SPEC §8).
pub const QUEUE_PREFIX: &str = "cnd-";

/// The tag a per-run queue carries, with the run id as its value.
pub const RUN_ID_TAG: &str = "cnd/run-id";

/// The tag a per-run queue carries with the end of its run's lifetime, in Unix
/// seconds: `cleanup --all` leaves the queue alone until then (unless --force).
pub const EXPIRES_TAG: &str = "cnd/expires";

/// The longest long poll SQS allows.
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// The most messages SQS returns for one `ReceiveMessage` (and takes in one batch call).
const BATCH: usize = 10;

/// `ReceiveMessage` calls in one [`SqsChannel::receive`] while each comes back
/// full: a backlog of 100 messages is read in one go.
const BATCHES_PER_RECEIVE: usize = 10;

/// How long another run's (or producer's) message is hidden after it was seen,
/// at least: its owner gets it back soon, and the next receive reads past it.
pub const FOREIGN_HIDE: Duration = Duration::from_secs(5);

/// The longest a foreign message is hidden: the hide grows by a second per 100
/// foreign messages in a row, so a reader gets past a flood of thousands.
const FOREIGN_HIDE_MAX: Duration = Duration::from_secs(120);

/// How long the bookkeeping of a receive (deleting what was taken, hiding or
/// deleting others' messages) may take. It runs in tasks of its own, never
/// holding back this run's messages; what it does not finish happens by itself
/// (a message not deleted is delivered again after the visibility timeout, and
/// the master takes a report once).
const BOOKKEEPING_LIMIT: Duration = Duration::from_secs(10);

/// How long a per-run queue keeps an unread message. Reports are read within
/// seconds; a day is ample and keeps a forgotten queue from holding them for weeks.
const RETENTION_SECS: &str = "86400";

/// How long a received message stays hidden if the master dies before deleting it.
const VISIBILITY_SECS: &str = "30";

/// The name of the per-run queue of `run_id`: `cnd-<run id>`.
pub fn queue_name(run_id: Uuid) -> String {
    format!("{QUEUE_PREFIX}{run_id}")
}

/// The run id of a per-run queue's name or URL, if it is one.
pub fn run_id_of_queue(name_or_url: &str) -> Option<Uuid> {
    let name = name_or_url.rsplit('/').next()?;
    let id = name.strip_prefix(QUEUE_PREFIX)?;
    // Only the canonical hyphenated form that `queue_name` writes.
    (id.len() == 36).then(|| Uuid::parse_str(id).ok()).flatten()
}

/// Why an SQS client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No AWS region is configured anywhere the SDK looks.
    #[error("no AWS region is configured: set AWS_REGION (or a region in the AWS profile)")]
    NoRegion,
}

/// The HTTP client for the SDK: rustls with ring (no aws-lc-rs C build), trusting
/// the system's CA certificates (rustls-native-certs: `SSL_CERT_FILE`, else
/// `/etc/ssl/certs` and the other usual places), and plain `http://` too.
fn http_client() -> aws_sdk_sqs::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Whether this process has AWS settings the SDK would use: a region, a
/// profile, credentials or an endpoint in the environment, or `~/.aws/config`.
/// Without any, SQS cannot be the channel, and `cleanup` skips queues.
pub fn aws_configured() -> bool {
    const VARIABLES: &[&str] = &[
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_CONFIG_FILE",
    ];
    VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
        || std::env::var_os("HOME")
            .is_some_and(|home| std::path::Path::new(&home).join(".aws/config").is_file())
}

/// An SQS client configured by the AWS SDK's own chain: region, credentials and
/// `AWS_ENDPOINT_URL_SQS` (for an SQS-compatible endpoint) from the environment,
/// the profile files, or the instance/pod identity.
pub async fn client() -> Result<Client, ClientError> {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await;
    if config.region().is_none() {
        return Err(ClientError::NoRegion);
    }
    Ok(Client::new(&config))
}

/// The region of an AWS SQS queue URL (`https://sqs.<region>.amazonaws.com/…` or
/// the legacy `https://<region>.queue.amazonaws.com/…`), `None` for any other URL.
pub fn region_of_queue_url(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split(['/', ':']).next()?;
    let region = if let Some(tail) = host.strip_prefix("sqs.") {
        tail.strip_suffix(".amazonaws.com")
            .or_else(|| tail.strip_suffix(".amazonaws.com.cn"))?
    } else {
        host.strip_suffix(".queue.amazonaws.com")?
    };
    let valid = !region.is_empty()
        && !region.contains('.')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then(|| region.to_string())
}

/// Like [`client`], for talking to `queue_url`: when it is an AWS queue URL, its
/// region is used. A queue lives in one region and the SDK sends every request
/// to the configured region's endpoint, not to the URL's host, so a worker whose
/// pod has another `AWS_REGION` (or none) would otherwise fail.
pub async fn client_for_queue(queue_url: &str) -> Result<Client, ClientError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
    if let Some(region) = region_of_queue_url(queue_url) {
        loader = loader.region(aws_sdk_sqs::config::Region::new(region));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(ClientError::NoRegion);
    }
    Ok(Client::new(&config))
}

/// `the queue URL`: what a channel error says could not be reached.
fn the_queue(queue: &str) -> String {
    format!("the queue {queue}")
}

/// What went wrong with one SDK call, reduced to what callers decide on.
struct Failure {
    /// The service was not reached or did not answer (connection, timeout, 5xx,
    /// throttling): trying again may help.
    transient: bool,
    /// One sentence.
    detail: String,
    /// The service's error code, if it answered with one.
    code: Option<String>,
    /// The SDK's error when the service gave no answer of its own (a connection
    /// or configuration failure); `detail` is then its whole chain.
    source: Option<Cause>,
}

impl Failure {
    fn of<E>(err: SdkError<E>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                let status = service.raw().status().as_u16();
                let code = inner.code().map(str::to_string);
                let throttled = code.as_deref().is_some_and(|c| c.contains("Throttl"));
                let detail = match (inner.code(), inner.message()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (Some(code), None) => code.to_string(),
                    _ => format!("HTTP {status}: {}", error_chain(&err)),
                };
                Failure {
                    transient: status >= 500 || throttled,
                    detail,
                    code,
                    source: None,
                }
            }
            // Building the request failed: a bug or a bad configuration (no
            // region, no credentials), which no retry fixes.
            SdkError::ConstructionFailure(_) => Failure {
                transient: false,
                detail: error_chain(&err),
                code: None,
                source: Some(Arc::new(err)),
            },
            _ => Failure {
                transient: true,
                detail: error_chain(&err),
                code: None,
                source: Some(Arc::new(err)),
            },
        }
    }

    /// Whether the service said the queue does not exist.
    fn no_such_queue(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist"))
    }

    /// The failure as a channel error: the SDK's error as its source where
    /// there is one (and not repeated in the text), else the service's answer.
    /// `target` is what was being reached, in words ("the queue …", "SQS").
    fn into_channel_error(self, action: impl Into<String>, target: &str) -> ChannelError {
        let detail = if self.source.is_some() {
            String::new()
        } else {
            self.detail
        };
        if self.transient {
            ChannelError::unreachable(target, detail)
        } else {
            ChannelError::refused(action, detail)
        }
        .with_cause(self.source)
    }
}

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
                            format!("looking up the SQS queue {name:?}"),
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

/// Creates the queue `cnd-<run id>`, tagged `cnd/run-id=<run id>` and
/// [`EXPIRES_TAG`] = now + `lifetime`; returns its URL.
async fn create_run_queue(
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

/// How [`SqsReportSender`] retries: exponential backoff from `first_delay`,
/// doubling up to `max_delay`, for at most `tries` tries and `give_up_after` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure.
    pub first_delay: Duration,
    /// The longest wait between tries.
    pub max_delay: Duration,
    /// Tries in all, at least 1.
    pub tries: u32,
    /// No try starts after this much time since the first.
    pub give_up_after: Duration,
    /// The longest one try may take (a connection that hangs counts as a failure).
    pub try_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 100 ms doubling to 5 s, 10 tries, at most a minute: rides out a brief
    /// network or throttling episode without keeping a finished worker alive long.
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            tries: 10,
            give_up_after: Duration::from_secs(60),
            try_timeout: Duration::from_secs(20),
        }
    }
}

/// Why a report could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The queue service refused the message (no such queue, access denied):
    /// retrying cannot help.
    #[error("sending the {kind} report to {queue} was refused: {detail}")]
    Refused {
        /// The report's kind.
        kind: &'static str,
        /// The queue URL.
        queue: String,
        /// Why.
        detail: String,
    },
    /// Every try failed to reach the queue service.
    #[error("could not send the {kind} report to {queue} after {tries} tries: {detail}")]
    Undelivered {
        /// The report's kind.
        kind: &'static str,
        /// The queue URL.
        queue: String,
        /// Tries made.
        tries: u32,
        /// The last failure.
        detail: String,
    },
}

/// The worker's end: signs reports with the run's key and sends them to the run's queue.
#[derive(Debug, Clone)]
pub struct SqsReportSender {
    client: Client,
    queue_url: String,
    key: RunKey,
    expires: Option<u64>,
    retry: RetryPolicy,
}

impl SqsReportSender {
    /// A sender to `queue_url` that signs with `key`, with the default [`RetryPolicy`].
    pub fn new(client: &Client, queue_url: impl Into<String>, key: RunKey) -> SqsReportSender {
        SqsReportSender {
            client: client.clone(),
            queue_url: queue_url.into(),
            key,
            expires: None,
            retry: RetryPolicy::default(),
        }
    }

    /// The same sender, marking each message with the end of its run's lifetime
    /// (Unix seconds) in [`EXPIRES_ATTRIBUTE`].
    pub fn with_expiry(mut self, expires: Option<u64>) -> SqsReportSender {
        self.expires = expires;
        self
    }

    /// The same sender with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> SqsReportSender {
        self.retry = retry;
        self
    }

    /// The queue reports go to.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends `report` as one message (SPEC §5) with its run id in the
    /// [`RUN_ID_ATTRIBUTE`] attribute, its shard in [`SHARD_ATTRIBUTE`] and its
    /// signature in [`SIGNATURE_ATTRIBUTE`], retrying transient failures with backoff.
    pub async fn send(&self, report: &Report) -> Result<(), SendError> {
        self.send_message(
            report.kind.name(),
            report.run_id,
            &Message::signed(&self.key, report.to_json()).from_sender(Sender::Claims(report.shard)),
        )
        .await
    }

    /// Sends a message as it is, its sender's shard (if any) as [`SHARD_ATTRIBUTE`]
    /// (tests use this to play a forger).
    pub async fn send_message(
        &self,
        kind: &'static str,
        run_id: Uuid,
        message: &Message,
    ) -> Result<(), SendError> {
        let string = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("the data type is set")
        };
        let attribute = string(&run_id.to_string());
        let signature = message.signature.as_deref().map(string);
        let shard = message
            .sender
            .shard()
            .map(|shard| string(&shard.to_string()));
        let expires = self.expires.map(|secs| {
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(secs.to_string())
                .build()
                .expect("the data type is set")
        });
        let body = &message.body;
        let started = Instant::now();
        let mut delay = self.retry.first_delay;
        let mut tries = 0;
        loop {
            tries += 1;
            let mut request = self
                .client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(body)
                .message_attributes(RUN_ID_ATTRIBUTE, attribute.clone());
            if let Some(signature) = &signature {
                request = request.message_attributes(SIGNATURE_ATTRIBUTE, signature.clone());
            }
            if let Some(shard) = &shard {
                request = request.message_attributes(SHARD_ATTRIBUTE, shard.clone());
            }
            if let Some(expires) = &expires {
                request = request.message_attributes(EXPIRES_ATTRIBUTE, expires.clone());
            }
            let request = request.send();
            let failure = match tokio::time::timeout(self.retry.try_timeout, request).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(err)) => Failure::of(err),
                Err(_) => Failure {
                    transient: true,
                    detail: format!("no answer within {:?}", self.retry.try_timeout),
                    code: None,
                    source: None,
                },
            };
            if !failure.transient {
                return Err(SendError::Refused {
                    kind,
                    queue: self.queue_url.clone(),
                    detail: failure.detail,
                });
            }
            if tries >= self.retry.tries.max(1)
                || started.elapsed() + delay > self.retry.give_up_after
            {
                return Err(SendError::Undelivered {
                    kind,
                    queue: self.queue_url.clone(),
                    tries,
                    detail: failure.detail,
                });
            }
            tracing::warn!(
                kind,
                tries,
                retry_in = ?delay,
                error = %failure.detail,
                "could not send a report; retrying"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.retry.max_delay);
        }
    }
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

/// A local SQS for tests: a `moto_server` process (`pip install 'moto[server]'`).
#[cfg(feature = "test-support")]
pub mod testing {
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use aws_config::retry::RetryConfig;
    use aws_config::BehaviorVersion;
    use aws_sdk_sqs::config::{Credentials, Region};

    use super::Client;

    /// The environment variable naming the `moto_server` binary (else it is looked up on `PATH`).
    pub const MOTO_SERVER_ENV: &str = "CND_MOTO_SERVER";

    /// How long a fresh moto server may take to answer.
    const START_TIMEOUT: Duration = Duration::from_secs(20);

    /// A `moto_server` on a free port of 127.0.0.1, killed on drop. Sets nothing
    /// global: pass [`MotoServer::endpoint`] to what needs it.
    #[derive(Debug)]
    pub struct MotoServer {
        child: Child,
        port: u16,
        log: PathBuf,
    }

    impl MotoServer {
        /// Starts a server and waits until it accepts connections.
        ///
        /// # Panics
        /// If `moto_server` cannot be found or does not start.
        pub fn start() -> MotoServer {
            // The port is free when we look; another process could take it before
            // moto binds, so try a few.
            let mut last_error = String::new();
            for _ in 0..3 {
                let port = free_port();
                let (child, log) = spawn_moto(port);
                let mut server = MotoServer { child, port, log };
                match server.wait_until_up() {
                    Ok(()) => return server,
                    Err(err) => last_error = err,
                }
            }
            panic!("moto_server did not start: {last_error}");
        }

        /// Kills the server (SIGKILL) and starts a fresh one on the same port:
        /// an SQS that crashed and came back empty.
        ///
        /// # Panics
        /// If the new server does not start.
        pub fn restart(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let (child, log) = spawn_moto(self.port);
            self.child = child;
            self.log = log;
            if let Err(err) = self.wait_until_up() {
                panic!("moto_server did not come back: {err}");
            }
        }

        fn wait_until_up(&mut self) -> Result<(), String> {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(format!(
                        "it exited with {status}; see {}",
                        self.log.display()
                    ));
                }
                if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(format!(
                "it did not answer on port {} within {START_TIMEOUT:?}; see {}",
                self.port,
                self.log.display()
            ))
        }

        /// `http://127.0.0.1:PORT`.
        pub fn endpoint(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        /// An SQS client for this server.
        pub async fn client(&self) -> Client {
            client_for(&self.endpoint()).await
        }
    }

    /// Starts `moto_server` on `port`, logging to a file.
    fn spawn_moto(port: u16) -> (Child, PathBuf) {
        let program = std::env::var_os(MOTO_SERVER_ENV).unwrap_or_else(|| "moto_server".into());
        let log = std::env::temp_dir().join(format!("cnd-moto-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("create the moto log file");
        let spawned = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            // To a file, not a pipe: moto logs every request, and a pipe
            // nobody reads would fill up and stall it.
            .stdout(log_file.try_clone().expect("clone the log file"))
            .stderr(log_file)
            .spawn();
        match spawned {
            Ok(child) => (child, log),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
                "moto_server not found ({}): install it with `pip install 'moto[server]'` (.ci/test does) or set {MOTO_SERVER_ENV}",
                program.to_string_lossy()
            ),
            Err(err) => panic!("could not start {}: {err}", program.to_string_lossy()),
        }
    }

    impl Drop for MotoServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.log);
        }
    }

    /// An SQS client for `endpoint` with region `us-east-1` and static test
    /// credentials, ignoring the environment. The SDK's own retries are off so a
    /// test sees a failure at once (and [`super::SqsReportSender`]'s retries alone).
    pub async fn client_for(endpoint: &str) -> Client {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(super::http_client())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        Client::new(&config)
    }

    /// What a [`FaultProxy`] does to the traffic through it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// Forwards everything both ways.
        Pass,
        /// Accepts connections and holds every byte, answering nothing: an
        /// endpoint that stalls without closing. Held bytes flow again on `Pass`.
        Stall,
        /// Closes every connection, open or new.
        Cut,
    }

    /// A TCP proxy on 127.0.0.1 in front of `upstream` (a moto server) that can
    /// delay, stall or cut the traffic on demand. Its threads end when it is dropped.
    #[derive(Debug)]
    pub struct FaultProxy {
        port: u16,
        fault: Arc<AtomicU8>,
        delay_ms: Arc<AtomicU64>,
        closed: Arc<AtomicBool>,
        /// Requests naming this operation get no answer (see [`FaultProxy::hold_answers_to`]).
        hold: Arc<std::sync::Mutex<Option<String>>>,
    }

    /// What the two pumps of one connection share: whether the answer to the
    /// request in flight is being held.
    #[derive(Clone)]
    struct Gate {
        hold: Arc<std::sync::Mutex<Option<String>>>,
        answer_held: Arc<AtomicBool>,
        /// This pump carries requests (client to server), not answers.
        requests: bool,
    }

    impl Gate {
        fn holding(&self) -> Option<String> {
            self.hold.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }

        /// Looks at bytes passed on; true if they must be held back.
        fn holds(&self, bytes: &[u8]) -> bool {
            let Some(operation) = self.holding() else {
                self.answer_held.store(false, Ordering::SeqCst);
                return false;
            };
            if self.requests {
                if bytes
                    .windows(operation.len())
                    .any(|w| w == operation.as_bytes())
                {
                    self.answer_held.store(true, Ordering::SeqCst);
                }
                false
            } else {
                self.answer_held.load(Ordering::SeqCst)
            }
        }
    }

    impl FaultProxy {
        /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`, as
        /// [`MotoServer::endpoint`] gives), passing traffic.
        pub fn start(upstream: &str) -> FaultProxy {
            let upstream: SocketAddr = upstream
                .trim_start_matches("http://")
                .parse()
                .expect("an http://IP:PORT endpoint");
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy");
            listener
                .set_nonblocking(true)
                .expect("a non-blocking listener");
            let port = listener.local_addr().expect("local address").port();
            let proxy = FaultProxy {
                port,
                fault: Arc::new(AtomicU8::new(Fault::Pass as u8)),
                delay_ms: Arc::new(AtomicU64::new(0)),
                closed: Arc::new(AtomicBool::new(false)),
                hold: Arc::default(),
            };
            let (fault, delay, closed, hold) = (
                Arc::clone(&proxy.fault),
                Arc::clone(&proxy.delay_ms),
                Arc::clone(&proxy.closed),
                Arc::clone(&proxy.hold),
            );
            std::thread::spawn(move || {
                while !closed.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let Ok(server) = TcpStream::connect(upstream) else {
                                continue;
                            };
                            let answer_held = Arc::new(AtomicBool::new(false));
                            for (from, to, requests) in [
                                (client.try_clone(), server.try_clone(), true),
                                (server.try_clone(), client.try_clone(), false),
                            ] {
                                if let (Ok(from), Ok(to)) = (from, to) {
                                    let (fault, delay, closed) = (
                                        Arc::clone(&fault),
                                        Arc::clone(&delay),
                                        Arc::clone(&closed),
                                    );
                                    let gate = Gate {
                                        hold: Arc::clone(&hold),
                                        answer_held: Arc::clone(&answer_held),
                                        requests,
                                    };
                                    std::thread::spawn(move || {
                                        pump(from, to, &fault, &delay, &closed, &gate)
                                    });
                                }
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
            proxy
        }

        /// `http://127.0.0.1:PORT` of the proxy.
        pub fn endpoint(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        /// From now on, does `fault` to the traffic.
        pub fn set(&self, fault: Fault) {
            self.fault.store(fault as u8, Ordering::SeqCst);
        }

        /// From now on, answers to requests that name `operation` (the SDK names
        /// it in each request, e.g. `DeleteMessageBatch`) are held, never passed
        /// on while this lasts: an endpoint that stalls on one kind of call.
        /// `None` passes them again.
        pub fn hold_answers_to(&self, operation: Option<&str>) {
            *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = operation.map(str::to_string);
        }

        /// From now on, holds every chunk passed on (each way) for `delay`: a
        /// slow, distant or congested endpoint.
        pub fn delay(&self, delay: Duration) {
            let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            self.delay_ms.store(ms, Ordering::SeqCst);
        }
    }

    impl Drop for FaultProxy {
        fn drop(&mut self) {
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    /// Copies `from` to `to` as the proxy's fault says, until either end closes,
    /// the fault is `Cut`, or the proxy is dropped.
    fn pump(
        mut from: TcpStream,
        mut to: TcpStream,
        fault: &AtomicU8,
        delay_ms: &AtomicU64,
        closed: &AtomicBool,
        gate: &Gate,
    ) {
        use std::io::{Read, Write};
        let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
        let mut buffer = [0u8; 16 * 1024];
        let mut held: Vec<u8> = Vec::new();
        while !closed.load(Ordering::SeqCst) {
            let now = fault.load(Ordering::SeqCst);
            if now == Fault::Cut as u8 {
                break;
            }
            if now == Fault::Pass as u8 && !held.is_empty() && !gate.holds(&[]) {
                if to.write_all(&held).is_err() {
                    break;
                }
                held.clear();
            }
            match from.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) if now == Fault::Pass as u8 && !gate.holds(&buffer[..n]) => {
                    std::thread::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst)));
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
                Ok(n) => held.extend_from_slice(&buffer[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = to.shutdown(std::net::Shutdown::Both);
    }

    /// A TCP port nothing listens on right now.
    pub fn free_port() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
        listener.local_addr().expect("local address").port()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_round_trip() {
        let id = Uuid::new_v4();
        let name = queue_name(id);
        assert_eq!(name.len(), 40, "SQS allows 80");
        assert_eq!(run_id_of_queue(&name), Some(id));
        let url = format!("https://sqs.eu-west-2.amazonaws.com/123456789012/{name}");
        assert_eq!(run_id_of_queue(&url), Some(id));
        assert_eq!(run_id_of_queue("http://localhost/000/cnd-results"), None);
        assert_eq!(run_id_of_queue(&format!("x-{id}")), None);
        assert_eq!(run_id_of_queue(&format!("cnd-{}", id.simple())), None);
    }

    #[test]
    fn regions_of_queue_urls() {
        let region = |url| region_of_queue_url(url);
        assert_eq!(
            region("https://sqs.eu-west-2.amazonaws.com/123456789012/cnd-x").as_deref(),
            Some("eu-west-2")
        );
        assert_eq!(
            region("https://us-east-1.queue.amazonaws.com/123456789012/q").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            region("https://sqs.cn-north-1.amazonaws.com.cn/123/q").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(region("http://127.0.0.1:5000/123456789012/cnd-x"), None);
        assert_eq!(
            region("http://sqs.localhost.localstack.cloud:4566/000/q"),
            None
        );
        assert_eq!(region("not a url"), None);
    }
}
