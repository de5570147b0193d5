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
//!
//! [`ResultChannel`]: cnd_core::ResultChannel
//! [`SHARD_ATTRIBUTE`]: cnd_core::distributed::SHARD_ATTRIBUTE
//! [`SqsChannel::receive`]: SqsChannel#method.receive

mod admin;
mod channel;
mod sender;
#[cfg(feature = "test-support")]
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use cnd_core::distributed::error_chain;
use cnd_core::{Cause, ChannelError};
use uuid::Uuid;

pub use aws_sdk_sqs::Client;
pub use cnd_core::SIGNATURE_ATTRIBUTE;

pub use admin::{check_queue, delete_queue, list_run_queues, queue_expiry, queue_url_for_name};
pub use channel::{is_no_such_named_queue, SqsChannel};
pub use sender::{RetryPolicy, SendError, SqsReportSender};

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

/// How long another run's (or producer's) message is hidden after it was seen,
/// at least: its owner gets it back soon, and the next receive reads past it.
pub const FOREIGN_HIDE: Duration = Duration::from_secs(5);

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
