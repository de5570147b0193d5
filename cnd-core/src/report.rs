//! Worker reports: the SQS message body of SPEC §5, parsed as untrusted input.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::distributed::error_chain;
use crate::puzzle::to_hex;
use crate::search::{SearchError, SearchOutcome};

/// The message format version this build reads and writes.
pub const REPORT_VERSION: u32 = 1;

/// The largest body a report may have; anything longer is not ours.
pub const MAX_REPORT_BYTES: usize = 16 * 1024;

/// Why a message body is not a well-formed report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The body is longer than any report.
    #[error("message of {0} bytes is too long to be a report")]
    TooLong(usize),
    /// The body is not JSON of the report's shape.
    #[error("message is not a report: {0}")]
    Json(String),
    /// The `v` field names a version this build does not read.
    #[error("report version {0} is not supported (expected 1)")]
    Version(u32),
    /// A `found` report without `nonce` or `hash`, or a `failed` one without `error`.
    #[error("{kind} report lacks its {field:?} field")]
    Missing {
        /// The report's kind.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// `nonce` is not a decimal u64.
    #[error("nonce {0:?} is not a decimal number below 2^64")]
    Nonce(String),
    /// `hash` is not 64 hex digits.
    #[error("hash {0:?} is not 64 hex digits")]
    Hash(String),
}

/// What a report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportKind {
    /// The worker found a golden nonce (to be verified by the master).
    Found {
        /// The nonce.
        nonce: u64,
        /// The hash the worker computed for it.
        hash: [u8; 32],
    },
    /// The worker searched its whole shard and found nothing.
    Exhausted,
    /// The worker is still searching; `hashes` so far.
    Progress {
        /// Nonces from its shard's first one that are all tried, by this
        /// worker or the runs it resumes (SPEC §5): what a resumed run may
        /// skip. 0 when the report does not say.
        searched: u64,
    },
    /// The worker could not search.
    Failed {
        /// Why, in one sentence.
        error: String,
    },
}

impl ReportKind {
    /// The wire name of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            ReportKind::Found { .. } => "found",
            ReportKind::Exhausted => "exhausted",
            ReportKind::Progress { .. } => "progress",
            ReportKind::Failed { .. } => "failed",
        }
    }
}

/// A report from a worker to the master: one JSON object on the wire (SPEC §5),
/// signed with the run's [`RunKey`](crate::RunKey) (see there for an example).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The run the worker belongs to.
    pub run_id: Uuid,
    /// The worker's shard index.
    pub shard: u64,
    /// The worker's name (a pod name, or a host name).
    pub worker: String,
    /// Hashes the worker has tried so far.
    pub hashes: u64,
    /// Milliseconds since the worker started searching.
    pub elapsed_ms: u64,
    /// What happened.
    pub kind: ReportKind,
}

/// The JSON on the wire, field for field.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    run_id: Uuid,
    kind: WireKind,
    shard: u64,
    worker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
    hashes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    searched: Option<u64>,
    elapsed_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireKind {
    Found,
    Exhausted,
    Progress,
    Failed,
}

impl Report {
    /// The report a worker sends when its search of `shard` has ended (SPEC §5):
    /// `found` or `exhausted` with the search's own count and time, `failed`
    /// saying why for a search that could not run or whose deadline passed.
    /// `None` for a cancelled search: only the master cancels, and it is no
    /// longer listening. Workers, the in-memory launcher and embedders' own
    /// launchers all map an outcome to a report through this one function.
    ///
    /// ```
    /// use cnd_core::{search, Puzzle, Report, ReportKind, SearchControl, SearchOptions, Uuid};
    ///
    /// let puzzle = Puzzle::with_default_block(8)?;
    /// let outcome = search(&puzzle, puzzle.space(), &SearchOptions::all_cores(), &SearchControl::new());
    /// let report = Report::from_outcome(Uuid::new_v4(), 0, "thread-0", &outcome).expect("not cancelled");
    /// assert!(matches!(report.kind, ReportKind::Found { .. }));
    /// assert_eq!(report.worker, "thread-0");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_outcome(
        run_id: Uuid,
        shard: u64,
        worker: impl Into<String>,
        outcome: &Result<SearchOutcome, SearchError>,
    ) -> Option<Report> {
        let (kind, hashes, elapsed) = match outcome {
            Ok(SearchOutcome::Found(found)) => (
                ReportKind::Found {
                    nonce: found.nonce,
                    hash: found.hash,
                },
                found.hashes,
                found.elapsed,
            ),
            Ok(SearchOutcome::Exhausted { hashes, elapsed }) => {
                (ReportKind::Exhausted, *hashes, *elapsed)
            }
            Ok(SearchOutcome::TimedOut { hashes, elapsed }) => (
                ReportKind::Failed {
                    error: format!("the search's deadline passed after {hashes} hashes"),
                },
                *hashes,
                *elapsed,
            ),
            Ok(SearchOutcome::Cancelled { .. }) => return None,
            Err(err) => (
                ReportKind::Failed {
                    error: format!("the search could not run: {}", error_chain(err)),
                },
                0,
                std::time::Duration::ZERO,
            ),
        };
        Some(Report {
            run_id,
            shard,
            worker: worker.into(),
            hashes,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            kind,
        })
    }

    /// The report as one JSON object (SPEC §5).
    pub fn to_json(&self) -> String {
        let (kind, nonce, hash, error) = match &self.kind {
            ReportKind::Found { nonce, hash } => (
                WireKind::Found,
                Some(nonce.to_string()),
                Some(to_hex(hash)),
                None,
            ),
            ReportKind::Exhausted => (WireKind::Exhausted, None, None, None),
            ReportKind::Progress { .. } => (WireKind::Progress, None, None, None),
            ReportKind::Failed { error } => (WireKind::Failed, None, None, Some(error.clone())),
        };
        let searched = match self.kind {
            ReportKind::Progress { searched } if searched > 0 => Some(searched),
            _ => None,
        };
        let wire = Wire {
            v: REPORT_VERSION,
            run_id: self.run_id,
            kind,
            shard: self.shard,
            worker: self.worker.clone(),
            nonce,
            hash,
            hashes: self.hashes,
            searched,
            elapsed_ms: self.elapsed_ms,
            error,
        };
        serde_json::to_string(&wire).expect("a report always serializes")
    }

    /// Parses and checks a message body; never panics, whatever the input.
    pub fn from_json(body: &str) -> Result<Report, ReportError> {
        if body.len() > MAX_REPORT_BYTES {
            return Err(ReportError::TooLong(body.len()));
        }
        let wire: Wire =
            serde_json::from_str(body).map_err(|e| ReportError::Json(e.to_string()))?;
        if wire.v != REPORT_VERSION {
            return Err(ReportError::Version(wire.v));
        }
        if wire.searched.is_some() && !matches!(wire.kind, WireKind::Progress) {
            return Err(ReportError::Json(
                "`searched` belongs to progress reports only".into(),
            ));
        }
        let kind = match wire.kind {
            WireKind::Found => {
                let nonce = wire.nonce.ok_or(ReportError::Missing {
                    kind: "found",
                    field: "nonce",
                })?;
                let hash = wire.hash.ok_or(ReportError::Missing {
                    kind: "found",
                    field: "hash",
                })?;
                ReportKind::Found {
                    nonce: parse_nonce(&nonce)?,
                    hash: parse_hash(&hash)?,
                }
            }
            WireKind::Exhausted => ReportKind::Exhausted,
            WireKind::Progress => ReportKind::Progress {
                searched: wire.searched.unwrap_or(0),
            },
            WireKind::Failed => ReportKind::Failed {
                error: wire.error.ok_or(ReportError::Missing {
                    kind: "failed",
                    field: "error",
                })?,
            },
        };
        Ok(Report {
            run_id: wire.run_id,
            shard: wire.shard,
            worker: wire.worker,
            hashes: wire.hashes,
            elapsed_ms: wire.elapsed_ms,
            kind,
        })
    }
}

fn parse_nonce(text: &str) -> Result<u64, ReportError> {
    // Only plain digits: no sign, no spaces, no exponent, no leading zeros but "0".
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical
        .then(|| text.parse().ok())
        .flatten()
        .ok_or_else(|| ReportError::Nonce(text.to_string()))
}

fn parse_hash(text: &str) -> Result<[u8; 32], ReportError> {
    let bytes =
        crate::puzzle::parse_block_hex(text).map_err(|_| ReportError::Hash(text.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| ReportError::Hash(text.to_string()))
}
