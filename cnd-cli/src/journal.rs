//! Where run journals live, and what `submit` writes in them as its run goes
//! (`cnd_core::journal` has the format and the reading back).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use cnd_core::journal::{Entry, Journal, JournalError};
use cnd_core::{MasterEvent, MasterOutcome};
use uuid::Uuid;

use crate::exit::usage;

/// `$XDG_STATE_HOME/cnd/runs`, else `~/.local/state/cnd/runs` (the XDG base
/// directory default); `None` without either variable.
pub fn runs_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let state = std::env::var_os("XDG_STATE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".local/state"))
        })?;
    Some(state.join("cnd").join("runs"))
}

/// The journal of run `id` in [`runs_dir`].
pub fn default_path(id: Uuid) -> Option<PathBuf> {
    runs_dir().map(|dir| dir.join(format!("{id}.jsonl")))
}

/// The journal `--resume` names: a file, or a run id of [`runs_dir`].
pub fn locate(name: &str) -> anyhow::Result<PathBuf> {
    let as_path = Path::new(name);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    let Ok(id) = Uuid::parse_str(name) else {
        return Err(usage(format!(
            "--resume {name:?}: no such file, and not a run id (a UUID, as submit printed it)"
        )));
    };
    match default_path(id) {
        Some(path) if path.is_file() => Ok(path),
        Some(path) => Err(usage(format!(
            "--resume {id}: no journal at {} (a run started with --journal FILE is resumed with --resume FILE)",
            path.display()
        ))),
        None => Err(usage(format!(
            "--resume {id}: neither XDG_STATE_HOME nor HOME is set, so there is no journal directory; give the journal's file"
        ))),
    }
}

/// Appends a run's verified reports to its journal as the master says them.
/// A failed write is said once and ends the journaling, never the run.
pub struct Recorder {
    journal: Option<Journal>,
    /// Whether any work was recorded (else there is nothing to resume).
    worked: bool,
    exhausted: HashSet<u64>,
    searched: HashMap<u64, u64>,
}

impl Recorder {
    /// Records into `journal` (none: records nothing).
    pub fn new(journal: Option<Journal>) -> Recorder {
        Recorder {
            journal,
            worked: false,
            exhausted: HashSet::new(),
            searched: HashMap::new(),
        }
    }

    /// Where the journal is.
    pub fn path(&self) -> Option<&Path> {
        self.journal.as_ref().map(Journal::path)
    }

    /// Whether this attempt (or, resumed, an earlier one) recorded work a
    /// resumed run would not search again.
    pub fn has_work(&self) -> bool {
        self.worked
    }

    /// Knows what earlier attempts recorded (a resumed run), so that it is
    /// not written again when this attempt's master says it once more (a
    /// Job's pod of a done index exits at once, and the launcher confirms it).
    pub fn resuming(mut self, replay: &cnd_core::journal::Replay) -> Recorder {
        self.worked |= replay.resumed_shards() > 0;
        self.exhausted.extend(replay.searched.done());
        self.searched.extend(replay.searched.prefixes());
        self
    }

    /// Takes one of the master's events.
    pub fn on(&mut self, event: &MasterEvent) {
        let entry = match event {
            MasterEvent::ShardExhausted { shard, .. } if self.exhausted.insert(*shard) => {
                Entry::Exhausted { shard: *shard }
            }
            MasterEvent::Found {
                nonce,
                shard,
                settled,
                ..
            } => Entry::Found {
                shard: *shard,
                nonce: nonce.to_string(),
                settled: *settled,
            },
            MasterEvent::Progress(p) if !self.exhausted.contains(&p.shard) => {
                let last = self.searched.entry(p.shard).or_insert(0);
                if p.shard_searched <= *last {
                    return;
                }
                *last = p.shard_searched;
                Entry::Searched {
                    shard: p.shard,
                    nonces: p.shard_searched,
                }
            }
            _ => return,
        };
        self.worked = true;
        self.record(&entry);
    }

    /// Records how the run ended, when it ended with its answer (a run cut
    /// short stays open for `--resume`), and syncs.
    pub fn ended(&mut self, outcome: &MasterOutcome) {
        let outcome = match outcome {
            MasterOutcome::Found(_) => "found",
            MasterOutcome::Exhausted(_) => "exhausted",
            _ => {
                if let Some(journal) = self.journal.as_mut() {
                    let _ = journal.sync();
                }
                return;
            }
        };
        self.record(&Entry::Ended {
            outcome: outcome.into(),
        });
    }

    /// Records an attempt's start, and how it was launched.
    pub fn attempt(&mut self, run_id: Uuid, launch: std::collections::BTreeMap<String, String>) {
        self.record(&Entry::Attempt { run_id, launch });
    }

    fn record(&mut self, entry: &Entry) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if let Err(e) = journal.record(entry) {
            crate::console::say(format!(
                "warning: the journal is no longer written ({e}); this run cannot be resumed past here"
            ));
            self.journal = None;
        }
    }
}

/// Journals of ended runs older than this are removed by `cleanup --all`; a
/// run's journal that never ended is kept (it can be resumed) unless `--force`.
pub const KEEP_ENDED_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What `cleanup` does with the journals of [`runs_dir`]: with `remove`
/// (`--all`), removes those of runs that ended a day ago or more (and, with
/// `force`, those that never ended); always lists the resumable ones (only
/// `run`'s when given). Returns the lines to print.
pub fn cleanup_journals(run: Option<Uuid>, remove: bool, force: bool) -> Vec<String> {
    let Some(dir) = runs_dir() else {
        return vec!["no journal directory (neither XDG_STATE_HOME nor HOME is set)".into()];
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![format!("no journals in {}", dir.display())];
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .filter(|p| run.is_none_or(|id| p.file_stem() == Some(id.to_string().as_ref())))
        .collect();
    paths.sort();
    let mut lines = Vec::new();
    for path in paths {
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let age = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        // Held while it is judged and removed: a run going on is never
        // listed as resumable, nor its journal taken from under it.
        let held = match Journal::append(&path) {
            Ok(held) => held,
            Err(JournalError::InUse { .. }) => {
                lines.push(format!("kept journal {name}: in use by a cnd run going on"));
                continue;
            }
            Err(e) => {
                lines.push(format!("kept {}: {e}", path.display()));
                continue;
            }
        };
        let replay = match held.replay() {
            Ok(replay) => replay,
            Err(e) => {
                lines.push(format!("kept {}: {e}", path.display()));
                continue;
            }
        };
        let ended = replay.ended.clone();
        let old_enough = age >= KEEP_ENDED_FOR;
        let remove_it = remove && (force || (ended.is_some() && old_enough));
        if remove_it {
            match std::fs::remove_file(&path) {
                Ok(()) => lines.push(format!("removed journal {name}")),
                Err(e) => lines.push(format!("could not remove journal {}: {e}", path.display())),
            }
            continue;
        }
        let written = crate::human::duration(std::time::Duration::from_secs(age.as_secs()));
        lines.push(match ended {
            Some(outcome) => format!(
                "kept journal {name}: run ended ({outcome}), written {written} ago (removed by --all a day after)"
            ),
            None => format!(
                "kept journal {name}: resumable, {} of {} shards searched, written {written} ago: `cnd-cli submit --resume {name}`",
                replay.searched.done().count(),
                replay.header.shards,
            ),
        });
    }
    if lines.is_empty() {
        lines.push(format!("no journals in {}", dir.display()));
    }
    lines
}
