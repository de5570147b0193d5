//! One row per run of a sweep: what it measured, in `results.jsonl` and
//! `results.csv` (both appended as each run ends, so an interrupted sweep keeps
//! its rows), and the per-cell statistics the charts and the report show.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A golden nonce was found and verified.
    Found,
    /// The whole space was searched: no golden nonce.
    Exhausted,
    /// `--timeout` passed first.
    TimedOut,
    /// Stopped by Ctrl-C (or SIGTERM).
    Interrupted,
    /// `submit` failed (the message is in `error`).
    Error,
}

impl Outcome {
    /// The name used in the files.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Found => "found",
            Outcome::Exhausted => "exhausted",
            Outcome::TimedOut => "timed_out",
            Outcome::Interrupted => "interrupted",
            Outcome::Error => "error",
        }
    }
}

/// One run of one cell of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Pods (workers at once).
    pub pods: u64,
    /// Shards the space was split into.
    pub shards: u64,
    /// Difficulty D.
    pub difficulty: u32,
    /// Which repeat of the cell (1-based).
    pub repeat: u32,
    /// The block, hex.
    pub block_hex: String,
    /// The golden nonce, when found (decimal).
    pub nonce: Option<String>,
    /// How the run ended.
    pub outcome: Outcome,
    /// From the master's start until a worker was seen running.
    pub first_running_ms: Option<u64>,
    /// From the master's start until the result arrived (or the run ended).
    pub time_to_result_ms: Option<u64>,
    /// Hashes tried by all workers.
    pub hashes: Option<u64>,
    /// Aggregate rate, MH/s: hashes / time to result. A lower bound: hashes
    /// are what the workers last reported (every 5 s by default), so a short
    /// run under-counts the workers that did not find the nonce.
    pub mhs: Option<f64>,
    /// The rate of the worker that found the nonce, MH/s, by its own count and
    /// clock; × pods, the aggregate rate of a run too short to be counted.
    pub pod_mhs: Option<f64>,
    /// How long workers were seen pending (waiting for a node).
    pub pending_ms: Option<u64>,
    /// The whole `submit`, process start to exit (setup and cleanup included).
    pub wall_ms: u64,
    /// The run's id.
    pub run_id: Option<String>,
    /// What went wrong, for `error`.
    pub error: Option<String>,
    /// Where it ran: `local` or `kubernetes`.
    pub launcher: String,
    /// The cluster (the kubeconfig's context), or the host for local runs.
    pub cluster: String,
    /// This machine's CPU.
    pub cpu_model: String,
    /// This machine's logical CPUs.
    pub cpus: u64,
    /// cnd's version.
    pub cnd_version: String,
    /// When the run started, Unix milliseconds.
    pub started_unix_ms: u64,
    /// How often the master asked how the workers were doing, milliseconds:
    /// `first_running_ms` and `pending_ms` are as fine as this. Rows from
    /// sweeps that did not set it lack it (their runs polled every 2 s).
    #[serde(default)]
    pub status_every_ms: Option<u64>,
}

/// The CSV columns, in order (the JSONL has the same names).
pub const CSV_COLUMNS: &[&str] = &[
    "pods",
    "shards",
    "difficulty",
    "repeat",
    "block_hex",
    "nonce",
    "outcome",
    "first_running_ms",
    "time_to_result_ms",
    "hashes",
    "mhs",
    "pod_mhs",
    "pending_ms",
    "wall_ms",
    "run_id",
    "error",
    "launcher",
    "cluster",
    "cpu_model",
    "cpus",
    "cnd_version",
    "started_unix_ms",
    "status_every_ms",
];

/// The file names under the sweep's directory.
pub const JSONL: &str = "results.jsonl";
/// See [`JSONL`].
pub const CSV: &str = "results.csv";

/// Why the results could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A file could not be opened, written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of results.jsonl is not a run.
    #[error("{path} line {line}: not a sweep result ({source})")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
    /// A line of results.jsonl is a run no sweep could have made (a count
    /// beyond what `submit` takes): the file is refused, not partly drawn.
    #[error("{path} line {line}: not a run a sweep makes: {why}")]
    OutOfLimits {
        /// The file.
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// What is out of bounds.
        why: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RunRecord {
    /// Whether the counts are ones a sweep's runs have: D within the puzzle's
    /// `0 ..= 256`, pods and shards within `submit`'s limits (shards at least
    /// the pods), a repeat within `--repeat`'s. Charts are drawn over these
    /// values, so one wild row would otherwise decide their size.
    pub fn check(&self) -> Result<(), String> {
        use crate::args::{MAX_COUNT, MAX_REPEAT};
        use cnd_core::puzzle::MAX_DIFFICULTY;
        if self.difficulty > MAX_DIFFICULTY {
            return Err(format!(
                "difficulty {} is more than {MAX_DIFFICULTY}",
                self.difficulty
            ));
        }
        if !(1..=MAX_COUNT).contains(&self.pods) {
            return Err(format!("{} pods is not within 1..={MAX_COUNT}", self.pods));
        }
        if !(self.pods..=MAX_COUNT).contains(&self.shards) {
            return Err(format!(
                "{} shards is not within its {} pods..={MAX_COUNT}",
                self.shards, self.pods
            ));
        }
        if !(1..=MAX_REPEAT).contains(&self.repeat) {
            return Err(format!(
                "repeat {} is not within 1..={MAX_REPEAT}",
                self.repeat
            ));
        }
        Ok(())
    }

    /// The time to result in seconds, for a run that found a nonce.
    pub fn found_secs(&self) -> Option<f64> {
        match self.outcome {
            // At least a millisecond: the charts' time axes are logarithmic.
            Outcome::Found => self.time_to_result_ms.map(|ms| ms.max(1) as f64 / 1e3),
            _ => None,
        }
    }

    /// The aggregate rate, MH/s: pods × the finder's own rate where known
    /// (a short run's hash count is incomplete), else hashes / time.
    pub fn aggregate_mhs(&self) -> Option<f64> {
        self.pod_mhs
            .map(|m| m * self.pods as f64)
            .or(self.mhs)
            .filter(|m| m.is_finite() && *m > 0.0)
    }

    /// The CSV line (no newline).
    pub fn csv_line(&self) -> String {
        fn opt<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map(ToString::to_string).unwrap_or_default()
        }
        let fields = [
            self.pods.to_string(),
            self.shards.to_string(),
            self.difficulty.to_string(),
            self.repeat.to_string(),
            self.block_hex.clone(),
            opt(&self.nonce),
            self.outcome.as_str().to_string(),
            opt(&self.first_running_ms),
            opt(&self.time_to_result_ms),
            opt(&self.hashes),
            self.mhs.map(|m| format!("{m:.3}")).unwrap_or_default(),
            self.pod_mhs.map(|m| format!("{m:.3}")).unwrap_or_default(),
            opt(&self.pending_ms),
            self.wall_ms.to_string(),
            opt(&self.run_id),
            opt(&self.error),
            self.launcher.clone(),
            self.cluster.clone(),
            self.cpu_model.clone(),
            self.cpus.to_string(),
            self.cnd_version.clone(),
            self.started_unix_ms.to_string(),
            opt(&self.status_every_ms),
        ];
        fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A CSV field, quoted (RFC 4180) when it holds a comma, a quote or a line break.
pub fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Appends runs to `DIR/results.jsonl` and `DIR/results.csv`, each flushed as
/// it is written (a header first when the CSV is new).
pub struct ResultsWriter {
    jsonl: (PathBuf, File),
    csv: (PathBuf, File),
}

impl ResultsWriter {
    /// Opens (creates) the two files in `dir`, which must exist.
    pub fn open(dir: &Path) -> Result<ResultsWriter, RecordError> {
        let append = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io(path))
        };
        let jsonl_path = dir.join(JSONL);
        let csv_path = dir.join(CSV);
        let jsonl = append(&jsonl_path)?;
        let mut csv = append(&csv_path)?;
        let empty = csv.metadata().map_err(io(&csv_path))?.len() == 0;
        if empty {
            writeln!(csv, "{}", CSV_COLUMNS.join(",")).map_err(io(&csv_path))?;
        }
        Ok(ResultsWriter {
            jsonl: (jsonl_path, jsonl),
            csv: (csv_path, csv),
        })
    }

    /// Appends one run to both files.
    pub fn append(&mut self, record: &RunRecord) -> Result<(), RecordError> {
        let line = serde_json::to_string(record).expect("a record serializes");
        let (path, file) = &mut self.jsonl;
        writeln!(file, "{line}")
            .and_then(|()| file.sync_data())
            .map_err(io(path))?;
        let (path, file) = &mut self.csv;
        writeln!(file, "{}", record.csv_line())
            .and_then(|()| file.sync_data())
            .map_err(io(path))?;
        Ok(())
    }
}

/// The runs in `DIR/results.jsonl` (blank lines skipped; a torn last line, from
/// a sweep killed mid-write, is skipped too). A line that is not a run, or is
/// a run no sweep makes ([`RunRecord::check`]), refuses the whole file, naming
/// the line: charts drawn from what is left would look whole and not be.
pub fn read_results(dir: &Path) -> Result<Vec<RunRecord>, RecordError> {
    read_results_file(&dir.join(JSONL))
}

/// The runs in one results file, `results.jsonl` or a copy of it under any
/// name, read as [`read_results`] reads a sweep's.
pub fn read_results_file(path: &Path) -> Result<Vec<RunRecord>, RecordError> {
    let path = path.to_path_buf();
    let file = File::open(&path).map_err(io(&path))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(io(&path))?;
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let mut records = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<RunRecord>(line) {
            Ok(record) => {
                record.check().map_err(|why| RecordError::OutOfLimits {
                    path: path.clone(),
                    line: i + 1,
                    why,
                })?;
                records.push(record)
            }
            Err(e) if Some(i) == last && e.is_eof() => {}
            Err(source) => {
                return Err(RecordError::Parse {
                    path,
                    line: i + 1,
                    source,
                })
            }
        }
    }
    Ok(records)
}

/// The statistics of one (pods, D) cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Pods.
    pub pods: u64,
    /// D.
    pub difficulty: u32,
    /// Runs recorded.
    pub runs: usize,
    /// Runs that found a nonce.
    pub found: usize,
    /// Median, min and max time to result of the runs that found one, seconds.
    pub time: Option<Spread>,
    /// Median aggregate rate of the runs that found one, MH/s: pods × the
    /// finder's own rate where known, else hashes / time.
    pub mhs: Option<f64>,
    /// Median pending time, seconds (runs that found one).
    pub pending: Option<f64>,
    /// Median time to the first running worker, seconds.
    pub first_running: Option<f64>,
}

/// A median with the extremes around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    Spread::of(&values.collect::<Vec<_>>()).map(|s| s.median)
}

/// The cells of `records`, by (D, pods).
pub fn cells(records: &[RunRecord]) -> BTreeMap<(u32, u64), Cell> {
    let mut grouped: BTreeMap<(u32, u64), Vec<&RunRecord>> = BTreeMap::new();
    for r in records {
        grouped.entry((r.difficulty, r.pods)).or_default().push(r);
    }
    grouped
        .into_iter()
        .map(|((difficulty, pods), runs)| {
            let found: Vec<&RunRecord> = runs
                .iter()
                .copied()
                .filter(|r| r.found_secs().is_some())
                .collect();
            let times: Vec<f64> = found.iter().filter_map(|r| r.found_secs()).collect();
            let cell = Cell {
                pods,
                difficulty,
                runs: runs.len(),
                found: found.len(),
                time: Spread::of(&times),
                mhs: median(found.iter().filter_map(|r| r.aggregate_mhs())),
                pending: median(
                    found
                        .iter()
                        .filter_map(|r| r.pending_ms)
                        .map(|ms| ms as f64 / 1e3),
                ),
                first_running: median(
                    found
                        .iter()
                        .filter_map(|r| r.first_running_ms)
                        .map(|ms| ms as f64 / 1e3),
                ),
            };
            ((difficulty, pods), cell)
        })
        .collect()
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A found run of `pods` at `d` taking `secs`.
    pub fn found(pods: u64, d: u32, repeat: u32, secs: f64) -> RunRecord {
        RunRecord {
            pods,
            shards: pods,
            difficulty: d,
            repeat,
            block_hex: "00ff".into(),
            nonce: Some("12345".into()),
            outcome: Outcome::Found,
            first_running_ms: Some(40),
            time_to_result_ms: Some((secs * 1e3) as u64),
            hashes: Some(1 << d),
            mhs: Some((1u64 << d) as f64 / secs / 1e6),
            pod_mhs: Some((1u64 << d) as f64 / secs / 1e6 / pods as f64),
            pending_ms: Some(0),
            wall_ms: (secs * 1e3) as u64 + 300,
            run_id: Some("5f0c6a43-0000-4000-8000-000000000000".into()),
            error: None,
            launcher: "local".into(),
            cluster: "local processes on test".into(),
            cpu_model: "Test CPU, 3 GHz".into(),
            cpus: 2,
            cnd_version: "0.1.0".into(),
            started_unix_ms: 1_700_000_000_000,
            status_every_ms: Some(250),
        }
    }

    #[test]
    fn medians_and_extremes() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 4.0]).unwrap().median, 2.5);
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn cells_count_only_found_runs_in_times() {
        let mut failed = found(2, 20, 3, 99.0);
        failed.outcome = Outcome::Error;
        failed.error = Some("boom, \"quoted\"".into());
        let records = vec![found(2, 20, 1, 1.0), found(2, 20, 2, 3.0), failed];
        let cells = cells(&records);
        let cell = &cells[&(20, 2)];
        assert_eq!((cell.runs, cell.found), (3, 2));
        assert_eq!(cell.time.unwrap().median, 2.0);
        assert_eq!(cell.time.unwrap().max, 3.0);
    }

    #[test]
    fn a_row_beyond_the_limits_refuses_the_file_naming_its_line() {
        let dir = std::env::temp_dir().join(format!("cnd-sweep-limits-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut wild = found(2, 20, 1, 1.0);
        wild.difficulty = u32::MAX;
        let lines = [found(1, 20, 1, 1.0), wild]
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join(JSONL), lines).unwrap();
        let err = read_results(&dir).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("difficulty 4294967295"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();

        for (what, bad) in [
            (
                "pods",
                RunRecord {
                    pods: 0,
                    ..found(1, 20, 1, 1.0)
                },
            ),
            (
                "pods",
                RunRecord {
                    pods: 1 << 40,
                    shards: 1 << 40,
                    ..found(1, 20, 1, 1.0)
                },
            ),
            (
                "shards",
                RunRecord {
                    shards: 1,
                    ..found(4, 20, 1, 1.0)
                },
            ),
            (
                "repeat",
                RunRecord {
                    repeat: 0,
                    ..found(1, 20, 1, 1.0)
                },
            ),
        ] {
            let err = bad.check().unwrap_err();
            assert!(err.contains(what), "{what}: {err}");
        }
        let edge = RunRecord {
            difficulty: 256,
            ..found(4, 20, 1000, 1.0)
        };
        assert_eq!(edge.check(), Ok(()));
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        let mut r = found(1, 20, 1, 1.0);
        r.error = Some("x, y".into());
        let line = r.csv_line();
        assert!(line.contains(",\"x, y\","), "{line}");
        assert!(
            line.starts_with("1,1,20,1,00ff,12345,found,40,1000,"),
            "{line}"
        );
    }

    #[test]
    fn rows_survive_a_round_trip_and_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("cnd-sweep-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rows = vec![found(1, 20, 1, 1.5), found(4, 22, 2, 0.75)];
        let mut writer = ResultsWriter::open(&dir).unwrap();
        for r in &rows {
            writer.append(r).unwrap();
        }
        drop(writer);
        // A second writer appends, and does not write the header again.
        ResultsWriter::open(&dir).unwrap().append(&rows[0]).unwrap();
        let csv = std::fs::read_to_string(dir.join(CSV)).unwrap();
        assert_eq!(csv.lines().count(), 4, "{csv}");
        assert_eq!(csv.lines().next().unwrap(), CSV_COLUMNS.join(","));
        // A sweep killed mid-line leaves half a row: it is skipped, not an error.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(JSONL))
            .unwrap();
        write!(f, "{{\"pods\": 8, \"sha").unwrap();
        let back = read_results(&dir).unwrap();
        assert_eq!(
            back,
            vec![rows[0].clone(), rows[1].clone(), rows[0].clone()]
        );
        // ... but garbage in the middle is.
        std::fs::write(dir.join(JSONL), "nonsense\n{}\n").unwrap();
        assert!(matches!(
            read_results(&dir),
            Err(RecordError::Parse { line: 1, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
