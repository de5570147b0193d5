//! `DIR/report.md`: the original report's table (rows D, columns pods, median
//! time to a golden nonce), the charts, and where the numbers came from.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::time::Duration;

use super::chart::Chart;
use super::record::{cells, Outcome, RunRecord};
use crate::human;

/// The file name under the sweep's directory.
pub const REPORT: &str = "report.md";

/// A table with a row per D and a column per pod count, `text(d, pods)` in each cell.
fn grid(
    md: &mut String,
    ds: &BTreeSet<u32>,
    pods: &BTreeSet<u64>,
    text: impl Fn(u32, u64) -> String,
) {
    let _ = write!(md, "| D \\ pods |");
    for p in pods {
        let _ = write!(md, " {p} |");
    }
    let _ = write!(md, "\n|---|");
    for _ in pods {
        let _ = write!(md, "---:|");
    }
    md.push('\n');
    for &d in ds {
        let _ = write!(md, "| {d} |");
        for &p in pods {
            let _ = write!(md, " {} |", text(d, p));
        }
        md.push('\n');
    }
}

/// The report for `records`, linking `charts` (files next to it).
pub fn markdown(records: &[RunRecord], charts: &[Chart]) -> String {
    let cells = cells(records);
    let ds: BTreeSet<u32> = records.iter().map(|r| r.difficulty).collect();
    let pods: BTreeSet<u64> = records.iter().map(|r| r.pods).collect();
    let repeats = records.iter().map(|r| r.repeat).max().unwrap_or(0);
    let found = records
        .iter()
        .filter(|r| r.outcome == Outcome::Found)
        .count();

    let mut md = String::new();
    let _ = writeln!(md, "# Time to a golden nonce against pods\n");
    let _ = writeln!(
        md,
        "{} runs ({} found a nonce) over {} difficulties × {} pod counts, up to {} per cell. \
         Each cell is the median time from submit to the verified result (pod start-up, \
         queue round trips and the search); min–max over the cell's runs in brackets \
         when it has more than one.\n",
        records.len(),
        found,
        ds.len(),
        pods.len(),
        repeats
    );

    grid(&mut md, &ds, &pods, |d, p| match cells.get(&(d, p)) {
        None => "".to_string(),
        Some(cell) => match cell.time {
            None => "no result".to_string(),
            Some(t) => {
                let mut text = secs(t.median);
                if cell.found > 1 {
                    let _ = write!(text, " ({}–{})", secs(t.min), secs(t.max));
                }
                if cell.found < cell.runs {
                    let _ = write!(text, " · {}/{} found", cell.found, cell.runs);
                }
                text
            }
        },
    });

    let _ = writeln!(
        md,
        "\nAggregate rate: median over the runs that found a nonce of pods × the \
         finding worker's own rate (the other workers' counts arrive every few seconds, \
         so a short run's total under-counts):\n"
    );
    grid(&mut md, &ds, &pods, |d, p| {
        cells
            .get(&(d, p))
            .and_then(|c| c.mhs)
            .map(|m| human::rate(m * 1e6))
            .unwrap_or_default()
    });

    // Rows without it are from sweeps whose runs polled at submit's default, 2 s.
    let polls: BTreeSet<u64> = records
        .iter()
        .map(|r| r.status_every_ms.unwrap_or(2000))
        .collect();
    let poll = |ms: &u64| human::duration(Duration::from_millis(*ms));
    let polls = match (polls.first(), polls.last()) {
        (Some(low), Some(high)) if low != high => format!("{}–{}", poll(low), poll(high)),
        (Some(every), _) => poll(every),
        _ => poll(&2000),
    };
    let _ = writeln!(
        md,
        "\nStart-up: median time from submit until a worker was seen running, and how long \
         workers were seen pending (on Kubernetes: waiting for a node or the image), both as \
         fine as the master's status polls, every {polls}:\n"
    );
    grid(&mut md, &ds, &pods, |d, p| {
        cells
            .get(&(d, p))
            .map(|c| match (c.first_running, c.pending) {
                (Some(first), Some(pending)) => {
                    format!("{} · pending {}", secs(first), secs(pending))
                }
                (Some(first), None) => secs(first),
                _ => String::new(),
            })
            .unwrap_or_default()
    });

    if !charts.is_empty() {
        let _ = writeln!(md, "\n## Charts\n");
        for chart in charts {
            let _ = writeln!(md, "![{}]({})\n", chart.title, chart.file);
        }
    }

    let failed: Vec<&RunRecord> = records
        .iter()
        .filter(|r| r.outcome != Outcome::Found)
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "## Runs without a nonce\n");
        let _ = writeln!(md, "| pods | D | repeat | outcome | what happened |");
        let _ = writeln!(md, "|---:|---:|---:|---|---|");
        for r in failed {
            let what = r
                .error
                .as_deref()
                .unwrap_or("")
                .replace('|', "\\|")
                .replace('\n', " ");
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.pods,
                r.difficulty,
                r.repeat,
                r.outcome.as_str(),
                what
            );
        }
        md.push('\n');
    }

    let _ = writeln!(md, "## Where it ran\n");
    let distinct = |f: fn(&RunRecord) -> String| -> String {
        let set: BTreeSet<String> = records.iter().map(f).collect();
        set.into_iter().collect::<Vec<_>>().join("; ")
    };
    let _ = writeln!(md, "- Launcher: {}", distinct(|r| r.launcher.clone()));
    let _ = writeln!(md, "- Cluster: {}", distinct(|r| r.cluster.clone()));
    let _ = writeln!(
        md,
        "- Machine running cnd-cli: {}",
        distinct(|r| format!("{} ({} logical CPUs)", r.cpu_model, r.cpus))
    );
    let _ = writeln!(md, "- cnd version: {}", distinct(|r| r.cnd_version.clone()));
    let _ = writeln!(
        md,
        "- Data: `results.jsonl` and `results.csv` (one row per run); \
         `cnd-cli sweep --plot DIR` redraws the charts and this report from `results.jsonl`."
    );
    md
}

/// Seconds as the report shows them: `850 ms`, `8.50 s`, `5 min 18 s`.
fn secs(s: f64) -> String {
    human::duration(Duration::from_secs_f64(s.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::sweep::record::tests::found;

    #[test]
    fn the_table_has_d_rows_and_pod_columns_like_the_original() {
        let mut records = vec![
            found(1, 26, 1, 318.0),
            found(16, 26, 1, 8.5),
            found(1, 20, 1, 5.0),
            found(1, 20, 2, 7.0),
        ];
        let mut failed = found(16, 20, 1, 1.0);
        failed.outcome = Outcome::Error;
        failed.error = Some("the queue | vanished".into());
        records.push(failed);
        let md = markdown(&records, &[]);
        assert!(md.contains("| D \\ pods | 1 | 16 |"), "{md}");
        assert!(md.contains("| 26 | 5 min 18 s | 8.50 s |"), "{md}");
        assert!(
            md.contains("| 20 | 6.00 s (5.00 s–7.00 s) | no result |"),
            "{md}"
        );
        assert!(
            md.contains("| 16 | 20 | 1 | error | the queue \\| vanished |"),
            "{md}"
        );
        assert!(md.contains("Test CPU, 3 GHz (2 logical CPUs)"), "{md}");
        // The test rows ran after 40 ms, none pending.
        assert!(
            md.contains("| 26 | 40 ms · pending 0 ms | 40 ms · pending 0 ms |"),
            "{md}"
        );
    }

    #[test]
    fn the_start_up_table_says_how_fine_its_polls_were() {
        let polled = |ms: Option<u64>| RunRecord {
            status_every_ms: ms,
            ..found(1, 20, 1, 1.0)
        };
        let says = |records: &[RunRecord]| {
            let md = markdown(records, &[]);
            let at = md.find("status polls, every ").expect("the poll sentence");
            md[at..].lines().next().unwrap().to_string()
        };
        assert_eq!(says(&[polled(Some(250))]), "status polls, every 250 ms:");
        // Rows from before sweeps recorded it polled at submit's default.
        assert_eq!(says(&[polled(None)]), "status polls, every 2.00 s:");
        assert_eq!(
            says(&[polled(Some(250)), polled(None)]),
            "status polls, every 250 ms–2.00 s:"
        );
    }
}
