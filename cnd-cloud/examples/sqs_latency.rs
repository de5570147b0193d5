//! How long a report takes from `SqsReportSender::send` to a master's long poll
//! returning it, against a local moto server.
//!
//! `cargo run -p cnd-cloud --features test-support --example sqs_latency [ROUNDS]`

use std::time::{Duration, Instant};

use cnd_cloud::sqs::testing::MotoServer;
use cnd_cloud::sqs::{SqsChannel, SqsReportSender};
use cnd_core::{Report, ReportKind, ResultChannel, RunKey};
use uuid::Uuid;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let moto = MotoServer::start();
    let client = moto.client().await;
    let run_id = Uuid::new_v4();
    let mut channel = SqsChannel::create_for_run(&client, run_id).await.unwrap();
    let sender = SqsReportSender::new(&client, channel.address(), RunKey::generate().unwrap());
    let report = Report {
        run_id,
        shard: 0,
        worker: "latency".into(),
        hashes: 1,
        elapsed_ms: 1,
        kind: ReportKind::Found {
            nonce: 42,
            hash: [0; 32],
        },
    };
    let mut delays = Vec::new();
    for round in 0..rounds {
        // The master is already waiting in a long poll when the worker sends.
        let poll = async {
            let bodies = channel.receive(Duration::from_secs(20)).await.unwrap();
            (Instant::now(), bodies.messages.len())
        };
        let send = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let start = Instant::now();
            sender.send(&report).await.unwrap();
            (start, Instant::now())
        };
        let ((received, count), (sent, send_done)) = tokio::join!(poll, send);
        let delay = received.duration_since(sent);
        println!(
            "round {round}: send call {:?}, send start → receive returned {:?} ({count} message)",
            send_done.duration_since(sent),
            delay
        );
        delays.push(delay);
    }
    delays.sort();
    println!(
        "min {:?}  median {:?}  max {:?}",
        delays[0],
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    channel.close().await.unwrap();
}
