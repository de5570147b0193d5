//! A distributed run's journal: what its master verified, one JSON line each,
//! so that a run whose master died (SIGKILL, a lost laptop, a timeout) can be
//! resumed, searching only what is left (SPEC §9).
//!
//! A [`Journal`] is appended to as [`MasterEvent`](crate::MasterEvent)s
//! come: the first line is the run's [`JournalHeader`] (puzzle, range, shards,
//! answer), then one [`Entry`] per attempt started, shard exhausted, searched
//! prefix grown, golden nonce verified, and the run's end. [`Replay::read`]
//! reads it back into the [`Searched`] and the finds a resumed
//! [`RunSpec`] and [`MasterOptions`](crate::MasterOptions)
//! carry. Lines are written whole; shard lines are synced at most once a
//! second, the others at once (see [`Journal::record`]), and a line cut short
//! by a crash is dropped on reading. Anything else malformed is refused, never
//! guessed at.
//!
//! ```
//! use cnd_core::journal::{Entry, Journal, JournalHeader, Replay};
//! use cnd_core::{Answer, NonceRange, Puzzle, RunSpec};
//!
//! let dir = std::env::temp_dir().join(format!("cnd-doc-{}", std::process::id()));
//! let path = dir.join("run.jsonl");
//! let puzzle = Puzzle::with_default_block(20)?;
//! let spec = RunSpec::new(puzzle.clone(), puzzle.space(), 4, 2)?;
//! let mut journal = Journal::create(&path, &JournalHeader::of(&spec, Answer::Smallest))?;
//! journal.record(&Entry::Attempt { run_id: spec.run_id, launch: Default::default() })?;
//! journal.record(&Entry::Exhausted { shard: 0 })?;
//! journal.record(&Entry::Searched { shard: 1, nonces: 65_536 })?;
//! drop(journal);
//!
//! let replay = Replay::read(&path)?;
//! assert_eq!(replay.header.shards, 4);
//! assert!(replay.searched.is_done(0));
//! assert_eq!(replay.searched.prefix(1), 65_536);
//! assert_eq!(replay.attempts, vec![spec.run_id]);
//! # std::fs::remove_dir_all(dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::distributed::{unix_now, RunSpec};
use crate::master::Answer;
use crate::puzzle::{parse_block_hex, to_hex, NonceBits, NonceFormat, Puzzle};
use crate::resume::Searched;
use crate::shard::NonceRange;

/// The journal format's version (the header's `v`).
pub const JOURNAL_VERSION: u32 = 1;

/// How often a prefix line is synced at most; other lines are synced at once.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// What a journal is about: everything a resumed run needs to be the same run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalHeader {
    /// [`JOURNAL_VERSION`].
    pub v: u32,
    /// The journal's id: its first attempt's run id (the file's name).
    pub journal: Uuid,
    /// The block, in hex.
    pub block_hex: String,
    /// D.
    pub difficulty: u32,
    /// Nonce width, 32 or 64.
    pub nonce_bits: u32,
    /// `binary` or `decimal`.
    pub nonce_format: String,
    /// The range searched, `START..END`.
    pub range: String,
    /// S.
    pub shards: u64,
    /// P, as first asked.
    pub parallelism: u64,
    /// `first` or `smallest`.
    pub answer: String,
    /// When the journal was made, Unix seconds.
    pub created_unix: u64,
}

impl JournalHeader {
    /// The header of `spec`'s journal (its run id becomes the journal's id).
    pub fn of(spec: &RunSpec, answer: Answer) -> JournalHeader {
        let puzzle = &spec.puzzle;
        JournalHeader {
            v: JOURNAL_VERSION,
            journal: spec.run_id,
            block_hex: to_hex(puzzle.block()),
            difficulty: puzzle.difficulty(),
            nonce_bits: puzzle.nonce_bits().bits(),
            nonce_format: puzzle.nonce_format().to_string(),
            range: spec.range.to_string(),
            shards: spec.shards,
            parallelism: spec.parallelism,
            answer: answer.name().to_string(),
            created_unix: unix_now(),
        }
    }

    /// The puzzle, range and answer it names, checked.
    pub fn run(&self) -> Result<(Puzzle, NonceRange, Answer), String> {
        let block = parse_block_hex(&self.block_hex).map_err(|e| format!("block_hex: {e}"))?;
        let bits: NonceBits = self
            .nonce_bits
            .to_string()
            .parse()
            .map_err(|e| format!("nonce_bits: {e}"))?;
        let format: NonceFormat = self
            .nonce_format
            .parse()
            .map_err(|e| format!("nonce_format: {e}"))?;
        let puzzle = Puzzle::new(block, self.difficulty, bits, format)
            .map_err(|e| format!("difficulty: {e}"))?;
        let range = NonceRange::parse_within(&self.range, &puzzle.space())
            .map_err(|e| format!("range: {e}"))?;
        let answer = match self.answer.as_str() {
            "first" => Answer::First,
            "smallest" => Answer::Smallest,
            other => return Err(format!("answer: `{other}` is neither first nor smallest")),
        };
        Ok((puzzle, range, answer))
    }
}

/// One line after the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Entry {
    /// An attempt started with this run id (its workers, pods and queue carry it).
    Attempt {
        /// The attempt's run id.
        run_id: Uuid,
        /// How it was launched, as the program that wrote the journal names
        /// its settings (`cnd-cli`: its `submit` flags, `--image` and the
        /// like): kept for the next attempt, never read by this library.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        launch: BTreeMap<String, String>,
    },
    /// A shard was searched to its end without a golden nonce.
    Exhausted {
        /// The shard.
        shard: u64,
    },
    /// The first `nonces` of a shard are all searched (it grows only).
    Searched {
        /// The shard.
        shard: u64,
        /// Nonces from the shard's first one.
        nonces: u64,
    },
    /// A golden nonce was verified in a shard.
    Found {
        /// The shard.
        shard: u64,
        /// The nonce, in decimal (a u64 does not fit a JSON double).
        nonce: String,
        /// Whether it is the shard's smallest on good authority
        /// ([`MasterEvent::Found`](crate::MasterEvent::Found)'s `settled`):
        /// only a settled find is taken when the run is resumed.
        settled: bool,
    },
    /// The run ended with its answer (`found` or `exhausted`).
    Ended {
        /// `found` or `exhausted`.
        outcome: String,
    },
}

/// A journal open for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    last_sync: Option<Instant>,
    unsynced: bool,
}

/// Why a journal could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The file could not be made, opened, read or written.
    #[error("journal {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The first line is not a journal header.
    #[error("{} is not a cnd run journal (its first line is not a journal header)", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
    },
    /// A journal of another format version.
    #[error("journal {} is of format version {version}; this cnd reads version {JOURNAL_VERSION}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
    /// Another process holds the journal open for writing: the run, or a
    /// resume of it, is still going.
    #[error("journal {} is in use by another cnd process (the run, or a resume of it, is still going)", path.display())]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// A line after the header is malformed or does not fit the run.
    #[error("journal {} is corrupt at line {line}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl Journal {
    /// Makes a new journal at `path` (and its directory) with its header; a
    /// file already there is an error, never overwritten.
    pub fn create(path: &Path, header: &JournalHeader) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(io)?;
        hold(&file, path)?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
            last_sync: None,
            unsynced: false,
        };
        let line = serde_json::to_string(header).expect("a header serializes");
        journal.write_line(&line, true)?;
        Ok(journal)
    }

    /// Opens an existing journal to append to it (a resumed run's). Read it
    /// with [`replay`](Self::replay) after this, not before: what it holds
    /// then cannot change under the caller.
    pub fn append(path: &Path) -> Result<Journal, JournalError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| JournalError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        hold(&file, path)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            last_sync: None,
            unsynced: false,
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads back what the journal holds.
    pub fn replay(&self) -> Result<Replay, JournalError> {
        Replay::read(&self.path)
    }

    /// Appends `entry` as one line. An attempt, a find and the end are synced
    /// at once; the many shard lines (exhausted, prefixes) at most once a
    /// second, and by [`sync`](Self::sync) or drop: a fsync per shard would
    /// hold the master's loop for seconds at 10,000 shards. A line written
    /// survives the master's death at once; only the host's crash can take
    /// the last second of them, which costs a search again, never an answer.
    pub fn record(&mut self, entry: &Entry) -> Result<(), JournalError> {
        let line = serde_json::to_string(entry).expect("an entry serializes");
        let now = matches!(
            entry,
            Entry::Attempt { .. } | Entry::Found { .. } | Entry::Ended { .. }
        );
        self.write_line(&line, now)
    }

    /// Syncs what was written.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if self.unsynced {
            self.file.sync_data().map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
            self.unsynced = false;
            self.last_sync = Some(Instant::now());
        }
        Ok(())
    }

    fn write_line(&mut self, line: &str, sync_now: bool) -> Result<(), JournalError> {
        // One write of the whole line: a crash leaves it whole or cut short.
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.unsynced = true;
        let due = self.last_sync.is_none_or(|at| at.elapsed() >= SYNC_EVERY);
        if sync_now || due {
            self.sync()?;
        }
        Ok(())
    }
}

/// Takes the journal's exclusive lock for as long as `file` is open (the
/// kernel drops it when the process dies, even by SIGKILL), so that two
/// attempts never append to one journal at once: both would search the same
/// rest, and each would resume from a file the other is changing. A file
/// system without locks (`Unsupported`, some network mounts) goes unlocked
/// rather than unjournaled.
fn hold(file: &File, path: &Path) -> Result<(), JournalError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::InUse {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
        Err(std::fs::TryLockError::Error(source)) => Err(JournalError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

/// A journal read back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replay {
    /// Its header.
    pub header: JournalHeader,
    /// The run ids of its attempts, oldest first.
    pub attempts: Vec<Uuid>,
    /// How each attempt was launched ([`Entry::Attempt`]'s `launch`), in the
    /// order of [`Replay::attempts`] (empty for one whose line did not say).
    pub launches: Vec<BTreeMap<String, String>>,
    /// What its attempts searched: shards exhausted or settled by a find are
    /// done, others may have a prefix.
    pub searched: Searched,
    /// Golden nonces found, the smallest of each shard.
    pub finds: BTreeMap<u64, u64>,
    /// How the run ended, if it did (`found`, `exhausted`).
    pub ended: Option<String>,
    /// Lines read after the header (a last line cut short not counted).
    pub entries: usize,
}

impl Replay {
    /// How the last attempt was launched (empty if its line did not say).
    pub fn last_launch(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.launches.last().unwrap_or(&NONE)
    }

    /// Reads and checks the journal at `path`.
    pub fn read(path: &Path) -> Result<Replay, JournalError> {
        let text = std::fs::read(path).map_err(|source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Replay::parse(path, &text)
    }

    /// Checks a journal's bytes (`path` only names it in errors).
    pub fn parse(path: &Path, text: &[u8]) -> Result<Replay, JournalError> {
        let corrupt = |line: usize, reason: String| JournalError::Corrupt {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let foreign = || JournalError::Foreign {
            path: path.to_path_buf(),
        };
        let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        // The last piece follows the last newline: empty, or a line a crash cut short.
        let torn = lines.pop().filter(|last| !last.is_empty());
        let first = lines.first().ok_or_else(foreign)?;
        let value: serde_json::Value = serde_json::from_slice(first).map_err(|_| foreign())?;
        if value.get("journal").is_none() || value.get("v").is_none() {
            return Err(foreign());
        }
        if let Some(version) = value.get("v").and_then(|v| v.as_u64()) {
            if version != u64::from(JOURNAL_VERSION) {
                return Err(JournalError::Version {
                    path: path.to_path_buf(),
                    version: u32::try_from(version).unwrap_or(u32::MAX),
                });
            }
        }
        let header: JournalHeader =
            serde_json::from_value(value).map_err(|e| corrupt(1, e.to_string()))?;
        let (_, range, _) = header.run().map_err(|e| corrupt(1, e))?;
        if header.shards == 0 || u128::from(header.shards) > range.len() {
            return Err(corrupt(
                1,
                format!("{} shards do not fit {range}", header.shards),
            ));
        }
        if header.parallelism == 0 || header.parallelism > header.shards {
            return Err(corrupt(
                1,
                format!(
                    "parallelism {} does not fit {} shards",
                    header.parallelism, header.shards
                ),
            ));
        }
        let mut replay = Replay {
            header,
            attempts: Vec::new(),
            launches: Vec::new(),
            searched: Searched::default(),
            finds: BTreeMap::new(),
            ended: None,
            entries: 0,
        };
        let shards = replay.header.shards;
        let mut prefixes: BTreeMap<u64, u64> = BTreeMap::new();
        for (i, line) in lines.iter().enumerate().skip(1) {
            let number = i + 1;
            let entry: Entry =
                serde_json::from_slice(line).map_err(|e| corrupt(number, e.to_string()))?;
            let shard_of = |shard: u64| {
                if shard < shards {
                    Ok(shard)
                } else {
                    Err(corrupt(
                        number,
                        format!("shard {shard} is not one of the run's {shards}"),
                    ))
                }
            };
            match entry {
                Entry::Attempt { run_id, launch } => {
                    replay.attempts.push(run_id);
                    replay.launches.push(launch);
                }
                Entry::Exhausted { shard } => replay.searched.mark_done(shard_of(shard)?),
                Entry::Searched { shard, nonces } => {
                    let shard = shard_of(shard)?;
                    let length = range
                        .shard(shard, shards)
                        .map_err(|e| corrupt(number, e.to_string()))?
                        .len();
                    if u128::from(nonces) >= length {
                        return Err(corrupt(
                            number,
                            format!(
                                "{nonces} nonces searched of shard {shard}, which has {length}"
                            ),
                        ));
                    }
                    let prefix = prefixes.entry(shard).or_insert(0);
                    *prefix = (*prefix).max(nonces);
                }
                Entry::Found {
                    shard,
                    nonce,
                    settled,
                } => {
                    let shard = shard_of(shard)?;
                    let nonce: u64 = nonce
                        .parse()
                        .map_err(|_| corrupt(number, format!("nonce `{nonce}` is not a number")))?;
                    let contains = range.shard(shard, shards).is_ok_and(|r| r.contains(nonce));
                    if !contains {
                        return Err(corrupt(
                            number,
                            format!("nonce {nonce} is outside shard {shard}"),
                        ));
                    }
                    // A find any pod could have sent bounds nothing on resume.
                    if settled {
                        let kept = replay.finds.entry(shard).or_insert(nonce);
                        *kept = (*kept).min(nonce);
                    }
                }
                Entry::Ended { outcome } => replay.ended = Some(outcome),
            }
            replay.entries += 1;
        }
        if let Some(torn) = torn {
            // Whole lines are written with one write: only a crash cuts one.
            tracing::debug!(
                bytes = torn.len(),
                "journal's last line was cut short; dropped"
            );
        }
        for (&shard, &nonces) in &prefixes {
            replay.searched.add_prefix(shard, nonces);
        }
        for &shard in replay.finds.keys() {
            replay.searched.mark_done(shard);
        }
        if replay.attempts.is_empty() {
            return Err(corrupt(2, "no attempt is recorded".into()));
        }
        Ok(replay)
    }

    /// The puzzle, range and answer of the run, checked when read.
    pub fn run(&self) -> (Puzzle, NonceRange, Answer) {
        self.header.run().expect("checked by Replay::parse")
    }

    /// Shards with work carried over from earlier attempts (done, or a prefix).
    pub fn resumed_shards(&self) -> u64 {
        (self.searched.done().count() + self.searched.prefixes().count()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(shards: u64) -> String {
        let puzzle = Puzzle::with_default_block(20).unwrap();
        let spec = RunSpec::new(puzzle.clone(), puzzle.space(), shards, 1).unwrap();
        serde_json::to_string(&JournalHeader::of(&spec, Answer::Smallest)).unwrap()
    }

    fn replay(lines: &[&str]) -> Result<Replay, JournalError> {
        let text = lines.join("\n");
        Replay::parse(Path::new("run.jsonl"), text.as_bytes())
    }

    #[test]
    fn only_settled_finds_count_and_a_torn_last_line_is_dropped() {
        let shard_1 = Puzzle::with_default_block(20)
            .unwrap()
            .space()
            .shard(1, 4)
            .unwrap();
        let (a, b) = (shard_1.first() + 5, shard_1.first() + 9);
        let attempt = format!(r#"{{"kind":"attempt","run_id":"{}"}}"#, Uuid::new_v4());
        let found = |n: u64, settled: bool| {
            format!(r#"{{"kind":"found","shard":1,"nonce":"{n}","settled":{settled}}}"#)
        };
        let lines = [
            header(4),
            attempt,
            found(a, false),
            found(b, true),
            r#"{"kind":"searched","shard":2,"nonces":70000}"#.to_string(),
            r#"{"kind":"exhaus"#.to_string(),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let replay = replay(&lines).unwrap();
        assert_eq!(replay.finds, BTreeMap::from([(1, b)]));
        assert!(replay.searched.is_done(1));
        assert_eq!(replay.searched.prefix(2), 70_000);
        assert_eq!(replay.entries, 4);
        // Unsettled only: the shard is searched again.
        let replay = self::replay(&lines[..3]).unwrap();
        assert!(replay.finds.is_empty() && !replay.searched.is_done(1));
    }

    #[test]
    fn what_does_not_fit_the_header_is_refused_naming_the_line() {
        let h = header(4);
        let attempt = format!(r#"{{"kind":"attempt","run_id":"{}"}}"#, Uuid::new_v4());
        for (line, want) in [
            (
                r#"{"kind":"exhausted","shard":4}"#,
                "line 3: shard 4 is not one of the run's 4",
            ),
            (
                r#"{"kind":"searched","shard":0,"nonces":1073741824}"#,
                "line 3: 1073741824 nonces searched of shard 0",
            ),
            (
                r#"{"kind":"found","shard":0,"nonce":"4294967295","settled":true}"#,
                "line 3: nonce 4294967295 is outside shard 0",
            ),
            (r#"{"kind":"shrug"}"#, "line 3: unknown variant"),
        ] {
            let err = replay(&[&h, &attempt, line, ""]).unwrap_err().to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
        let err = replay(&["{\"journal\":1}", ""]).unwrap_err().to_string();
        assert!(err.contains("is not a cnd run journal"), "{err}");
        let err = replay(&["shopping", ""]).unwrap_err().to_string();
        assert!(err.contains("is not a cnd run journal"), "{err}");
        let newer = h.replacen("\"v\":1", "\"v\":2", 1);
        let err = replay(&[&newer, &attempt, ""]).unwrap_err().to_string();
        assert!(err.contains("format version 2"), "{err}");
        let err = replay(&[&h, ""]).unwrap_err().to_string();
        assert!(err.contains("no attempt"), "{err}");
    }

    #[test]
    fn each_attempts_launch_settings_are_kept_and_an_attempt_may_have_none() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let first = format!(
            r#"{{"kind":"attempt","run_id":"{a}","launch":{{"image":"reg/cnd:1","pods-of":"x"}}}}"#
        );
        let second =
            format!(r#"{{"kind":"attempt","run_id":"{b}","launch":{{"image":"reg/cnd:2"}}}}"#);
        let got = replay(&[&header(4), &first, &second, ""]).unwrap();
        assert_eq!(got.attempts, vec![a, b]);
        assert_eq!(
            *got.last_launch(),
            BTreeMap::from([("image".to_string(), "reg/cnd:2".to_string())])
        );
        // Each attempt's own, in order (for removing what each one left).
        let images: Vec<_> = got.launches.iter().map(|l| l["image"].as_str()).collect();
        assert_eq!(images, ["reg/cnd:1", "reg/cnd:2"]);
        assert_eq!(got.launches[0]["pods-of"], "x");
        // Written before attempts said how they were launched: none.
        let bare = format!(r#"{{"kind":"attempt","run_id":"{a}"}}"#);
        let got = replay(&[&header(4), &bare, &second, ""]).unwrap();
        assert!(got.launches[0].is_empty());
        assert_eq!(got.launches.len(), 2);
        assert!(replay(&[&header(4), &bare, ""])
            .unwrap()
            .last_launch()
            .is_empty());
        // And an attempt without settings writes none.
        let line = serde_json::to_string(&Entry::Attempt {
            run_id: a,
            launch: BTreeMap::new(),
        })
        .unwrap();
        assert_eq!(line, bare);
    }

    #[test]
    fn a_journal_in_use_is_refused_until_its_holder_closes_it() {
        let dir = std::env::temp_dir().join(format!("cnd-journal-{}", Uuid::new_v4()));
        let path = dir.join("run.jsonl");
        let puzzle = Puzzle::with_default_block(20).unwrap();
        let spec = RunSpec::new(puzzle.clone(), puzzle.space(), 4, 1).unwrap();
        let mut first = Journal::create(&path, &JournalHeader::of(&spec, Answer::First)).unwrap();
        first
            .record(&Entry::Attempt {
                run_id: spec.run_id,
                launch: BTreeMap::new(),
            })
            .unwrap();
        let err = Journal::append(&path).unwrap_err();
        assert!(matches!(err, JournalError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("in use"), "{err}");
        // Reading is not writing: the holder's own view, and anyone's.
        assert_eq!(first.replay().unwrap().attempts, vec![spec.run_id]);
        drop(first);
        let second = Journal::append(&path).unwrap();
        assert_eq!(second.replay().unwrap().attempts, vec![spec.run_id]);
        drop(second);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
