//! [`SqsReportSender`]: the worker's end, sending signed reports with retries ([`RetryPolicy`]).

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageAttributeValue;
use cnd_core::distributed::SHARD_ATTRIBUTE;
use cnd_core::{Message, Report, RunKey, Sender};
use uuid::Uuid;

use super::{Client, Failure, EXPIRES_ATTRIBUTE, RUN_ID_ATTRIBUTE, SIGNATURE_ATTRIBUTE};

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
