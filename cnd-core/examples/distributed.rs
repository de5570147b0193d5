//! A distributed run inside one process: `run_master` drives "workers" that are
//! threads, each searching its shard and sending a signed report, the way
//! `cnd-cloud` drives Kubernetes pods or local processes.
//!
//! ```sh
//! cargo run -p cnd-core --features tokio --example distributed
//! ```

use std::sync::Arc;
use std::thread::JoinHandle;

use cnd_core::memory::MemoryChannel;
use cnd_core::{
    async_trait, run_master, search, verify, CancelToken, LaunchError, Launcher, MasterEvent,
    MasterOptions, MasterOutcome, Message, Puzzle, Report, RunSpec, SearchControl, SearchOptions,
    Sender, TokioTimer, WorkerStatus,
};

/// Starts one thread per shard; each reports on `channel`, signed with its shard's key.
struct ThreadLauncher {
    channel: MemoryChannel,
    workers: Vec<(Arc<SearchControl>, JoinHandle<()>)>,
}

// `async_trait` and `Uuid` are re-exported by cnd-core: no extra dependency.
#[async_trait]
impl Launcher for ThreadLauncher {
    async fn launch(&mut self, spec: &RunSpec) -> Result<(), LaunchError> {
        for shard in 0..spec.shards {
            let range = spec
                .range
                .shard(shard, spec.shards)
                .map_err(|e| LaunchError::other("no such shard").with_source(e))?;
            let control = Arc::new(SearchControl::new());
            // Each worker gets only its own shard's key: its reports cannot speak for another.
            let key = spec.run_key.for_shard(shard);
            let (puzzle, run_id) = (spec.puzzle.clone(), spec.run_id);
            let (channel, searching) = (self.channel.clone(), Arc::clone(&control));
            let worker = std::thread::spawn(move || {
                let options = SearchOptions::all_cores().with_threads(1);
                let outcome = search(&puzzle, range, &options, &searching);
                // `None`: cancelled by `stop`, the run is over.
                let Some(report) =
                    Report::from_outcome(run_id, shard, format!("thread-{shard}"), &outcome)
                else {
                    return;
                };
                // The master drops anything not signed with the key of the shard
                // the message claims to be from.
                channel.send(
                    Message::signed(&key, report.to_json()).from_sender(Sender::Claims(shard)),
                );
            });
            self.workers.push((control, worker));
        }
        Ok(())
    }

    async fn status(&mut self) -> Result<WorkerStatus, LaunchError> {
        // WorkerStatus may gain fields: start from the default and set what we know.
        let running = self
            .workers
            .iter()
            .filter(|(_, w)| !w.is_finished())
            .count() as u64;
        let status = WorkerStatus::default()
            .with_running(running)
            .with_succeeded(self.workers.len() as u64 - running);
        Ok(status)
    }

    async fn stop(&mut self) -> Result<(), LaunchError> {
        for (control, _) in &self.workers {
            control.cancel();
        }
        for (_, worker) in self.workers.drain(..) {
            let _ = worker.join();
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let puzzle = Puzzle::with_default_block(18).expect("a valid difficulty");
    // 4 shards of the 2^32 nonces, all 4 workers at once; a fresh run id and key.
    let spec = RunSpec::new(puzzle.clone(), puzzle.space(), 4, 4).expect("4 shards fit");
    let channel = MemoryChannel::new();
    let mut launcher = ThreadLauncher {
        channel: channel.clone(),
        workers: Vec::new(),
    };
    let options = MasterOptions::with_deadline(None);
    let cancel = CancelToken::new(); // cancel() from a Ctrl-C handler to stop the run

    // The master's future is Send: it can run on any tokio worker thread.
    let run = tokio::spawn(async move {
        let mut channel = channel;
        run_master(
            &mut launcher,
            &mut channel,
            &spec,
            &options,
            &TokioTimer,
            &cancel,
            |event| {
                match event {
                    MasterEvent::Launched { shards, .. } => println!("launched {shards} workers"),
                    MasterEvent::Found { nonce, worker, .. } => println!("{worker} found {nonce}"),
                    MasterEvent::Ignored(why) => println!("ignored a message: {why}"),
                    _ => {} // progress, worker snapshots, retries…
                }
            },
        )
        .await
    });

    match run.await.expect("the master does not panic") {
        Ok(MasterOutcome::Found(golden)) => {
            // The master verified it already; anyone can, with `verify`.
            assert!(verify(&puzzle, golden.nonce).golden);
            println!(
                "golden nonce {} from shard {} after {:?}",
                golden.nonce, golden.shard, golden.received_after
            );
        }
        Ok(other) => println!("no golden nonce: {other:?}"),
        // `{:#}` (anyhow) or walking `source()` shows the cause too.
        Err(e) => eprintln!("the run failed: {e}"),
    }
}

// `cargo test` runs the example too (`test = true` in cnd-core/Cargo.toml), so CI
// sees it work, not only compile.
#[cfg(test)]
#[test]
fn the_example_runs() {
    main();
}
