//! The SQS channel and sender against a real (moto) SQS over HTTP.
//!
//! Needs `moto_server` on PATH or in CND_MOTO_SERVER (`pip install 'moto[server]'`).

use std::time::{Duration, Instant};

use cnd_cloud::sqs::testing::{client_for, free_port, MotoServer};
use cnd_cloud::sqs::{
    delete_queue, list_run_queues, queue_expiry, queue_name, queue_url_for_name, Client,
    RetryPolicy, SendError, SqsChannel, SqsReportSender, RUN_ID_ATTRIBUTE, SIGNATURE_ATTRIBUTE,
};
use cnd_core::{ChannelError, Message, Report, ReportKind, ResultChannel, RunKey};
use uuid::Uuid;

fn key() -> RunKey {
    RunKey::from_bytes([0x5a; 32])
}

fn sender(client: &Client, url: &str) -> SqsReportSender {
    SqsReportSender::new(client, url, key())
}

fn report(run_id: Uuid, kind: ReportKind) -> Report {
    Report {
        run_id,
        shard: 2,
        worker: "test-worker".into(),
        hashes: 1234,
        elapsed_ms: 56,
        kind,
    }
}

fn found(run_id: Uuid) -> Report {
    report(
        run_id,
        ReportKind::Found {
            nonce: 1_074_435_534,
            hash: [0; 32],
        },
    )
}

/// Receives until `count` messages have come or a few long polls found nothing more.
async fn receive_some(channel: &mut SqsChannel, count: usize) -> Vec<Message> {
    let mut bodies = Vec::new();
    for _ in 0..5 {
        bodies.extend(
            channel
                .receive(Duration::from_secs(1))
                .await
                .unwrap()
                .messages,
        );
        if bodies.len() >= count {
            break;
        }
    }
    bodies
}

async fn create_shared_queue(client: &Client, name: &str) -> String {
    client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn per_run_queue_carries_a_report_and_is_deleted_on_close() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let run_id = Uuid::new_v4();
    let mut channel = SqsChannel::create_for_run(&client, run_id).await.unwrap();
    assert!(
        channel.address().ends_with(&queue_name(run_id)),
        "{}",
        channel.address()
    );
    assert!(channel.is_per_run());

    let sent = found(run_id);
    sender(&client, channel.address())
        .send(&sent)
        .await
        .unwrap();
    let bodies = receive_some(&mut channel, 1).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(Report::from_json(&bodies[0].body).unwrap(), sent);
    // The signature travels beside the body and checks out under the run's key.
    let signature = bodies[0].signature.as_deref().expect("signed");
    assert!(key().verify(&bodies[0].body, signature));
    // Deleted on receipt: nothing comes twice.
    assert!(channel.receive(Duration::ZERO).await.unwrap().is_empty());

    let url = channel.address().to_string();
    assert_eq!(list_run_queues(&client).await.unwrap(), vec![url.clone()]);
    channel.close().await.unwrap();
    channel.close().await.unwrap(); // twice is fine
    assert!(list_run_queues(&client).await.unwrap().is_empty());
    assert_eq!(
        queue_url_for_name(&client, &queue_name(run_id))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn the_sender_sets_the_run_id_and_signature_attributes() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let url = create_shared_queue(&client, "cnd-results").await;
    let run_id = Uuid::new_v4();
    sender(&client, &url)
        .send(&report(run_id, ReportKind::Progress { searched: 0 }))
        .await
        .unwrap();
    let out = client
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let message = &out.messages()[0];
    let attribute = &message.message_attributes().unwrap()[RUN_ID_ATTRIBUTE];
    assert_eq!(attribute.data_type(), "String");
    assert_eq!(attribute.string_value(), Some(run_id.to_string().as_str()));
    let signature = &message.message_attributes().unwrap()[SIGNATURE_ATTRIBUTE];
    assert_eq!(signature.data_type(), "String");
    assert_eq!(
        signature.string_value(),
        Some(key().sign(message.body().unwrap()).as_str())
    );
}

/// What is on `url` for anyone to read within `within` (others' messages come
/// back once the few seconds they were hidden for have passed).
async fn bodies_left(client: &Client, url: &str, count: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut left = Vec::new();
    while left.len() < count && Instant::now() < deadline {
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        left.extend(
            out.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_string)),
        );
    }
    left
}

#[tokio::test]
async fn a_shared_queue_leaves_other_runs_messages_for_them() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let url = create_shared_queue(&client, "cnd-shared").await;
    let (ours, theirs) = (Uuid::new_v4(), Uuid::new_v4());
    let sender = sender(&client, &url);
    sender.send(&found(theirs)).await.unwrap();
    sender.send(&found(ours)).await.unwrap();
    // A message without the attribute at all (not a cnd worker's).
    client
        .send_message()
        .queue_url(&url)
        .message_body("hello")
        .send()
        .await
        .unwrap();

    let mut channel = SqsChannel::shared(&client, &url, ours);
    assert!(!channel.is_per_run());
    let bodies = receive_some(&mut channel, 1).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(Report::from_json(&bodies[0].body).unwrap().run_id, ours);

    // The other run's master still gets its report (once it is visible again:
    // hidden for a few seconds, never deleted), and the stranger's message stays.
    let mut their_channel = SqsChannel::shared(&client, &url, theirs);
    let mut bodies = Vec::new();
    for _ in 0..15 {
        bodies.extend(
            their_channel
                .receive(Duration::from_secs(1))
                .await
                .unwrap()
                .messages,
        );
        if !bodies.is_empty() {
            break;
        }
    }
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(Report::from_json(&bodies[0].body).unwrap().run_id, theirs);
    let left = bodies_left(&client, &url, 1, Duration::from_secs(20)).await;
    assert_eq!(left, vec!["hello"]);

    // Closing a shared channel never deletes the queue.
    channel.close().await.unwrap();
    assert_eq!(
        queue_url_for_name(&client, "cnd-shared").await.unwrap(),
        Some(url)
    );
}

#[tokio::test]
async fn a_per_run_queue_delivers_even_a_non_report_body() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let mut channel = SqsChannel::create_for_run(&client, Uuid::new_v4())
        .await
        .unwrap();
    client
        .send_message()
        .queue_url(channel.address())
        .message_body("not json {")
        .send()
        .await
        .unwrap();
    // The master checks and rejects it; the channel only carries it.
    assert_eq!(
        receive_some(&mut channel, 1).await,
        vec![Message::unsigned("not json {")]
    );
    channel.close().await.unwrap();
}

#[tokio::test]
async fn receive_with_nothing_to_get_comes_back_empty_after_the_wait() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let mut channel = SqsChannel::create_for_run(&client, Uuid::new_v4())
        .await
        .unwrap();
    let started = Instant::now();
    let bodies = channel.receive(Duration::from_secs(1)).await.unwrap();
    assert!(bodies.is_empty(), "{bodies:?}");
    // Not a timing assertion, a sanity bound: it returned, and not before a long poll.
    eprintln!("an empty 1 s long poll took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(15));
    channel.close().await.unwrap();
}

#[tokio::test]
async fn the_sender_retries_then_fails_with_a_typed_error() {
    let client = client_for(&format!("http://127.0.0.1:{}", free_port())).await;
    let sender = sender(&client, "http://127.0.0.1:1/000000000000/cnd-x").with_retry(RetryPolicy {
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        tries: 4,
        ..RetryPolicy::default()
    });
    let err = sender.send(&found(Uuid::new_v4())).await.unwrap_err();
    assert!(
        matches!(
            err,
            SendError::Undelivered {
                tries: 4,
                kind: "found",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("after 4 tries"), "{err}");
}

#[tokio::test]
async fn a_missing_queue_is_refused_not_retried() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let url = format!("{}/123456789012/cnd-{}", moto.endpoint(), Uuid::new_v4());
    let err = sender(&client, &url)
        .send(&found(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Refused { .. }), "{err:?}");

    let mut channel = SqsChannel::shared(&client, &url, Uuid::new_v4());
    let err = channel.receive(Duration::ZERO).await.unwrap_err();
    assert!(matches!(err, ChannelError::Refused { .. }), "{err:?}");
    // Deleting what is already gone is fine (cleanup runs more than once).
    delete_queue(&client, &url).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_service_is_reported_as_unreachable() {
    let client = client_for(&format!("http://127.0.0.1:{}", free_port())).await;
    let mut channel = SqsChannel::shared(
        &client,
        "http://127.0.0.1:1/000000000000/cnd-x",
        Uuid::new_v4(),
    );
    let err = channel.receive(Duration::ZERO).await.unwrap_err();
    assert!(matches!(err, ChannelError::Unreachable { .. }), "{err:?}");
    // What the CLI prints (anyhow's `{:#}` walks the same chain): the SDK's
    // error is the source, each of its causes said once.
    let chain = cnd_core::distributed::error_chain(&err);
    assert!(
        chain.starts_with("could not reach the queue http://127.0.0.1:1/000000000000/cnd-x: "),
        "{chain}"
    );
    let parts: Vec<&str> = chain.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "{part:?} said twice: {chain}"
        );
    }
    eprintln!("{chain}");
}

#[tokio::test]
async fn list_run_queues_finds_only_per_run_queues() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let runs = create_runs(&client, 3).await;
    create_shared_queue(&client, "cnd-results").await;
    create_shared_queue(&client, "other-queue").await;
    let mut listed = list_run_queues(&client).await.unwrap();
    listed.sort();
    let mut expected: Vec<String> = runs.iter().map(|c| c.address().to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for url in &listed {
        delete_queue(&client, url).await.unwrap();
    }
    assert!(list_run_queues(&client).await.unwrap().is_empty());
}

async fn create_runs(client: &Client, count: usize) -> Vec<SqsChannel> {
    let mut channels = Vec::new();
    for _ in 0..count {
        channels.push(
            SqsChannel::create_for_run(client, Uuid::new_v4())
                .await
                .unwrap(),
        );
    }
    channels
}

#[tokio::test]
async fn a_per_run_queue_carries_its_expiry() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let hour =
        SqsChannel::create_for_run_lasting(&client, Uuid::new_v4(), Duration::from_secs(3600))
            .await
            .unwrap();
    let expires = queue_expiry(&client, hour.address())
        .await
        .unwrap()
        .unwrap();
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left > Duration::from_secs(3590) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
    // A queue made without the tag (by hand, or by an older cnd) has no expiry.
    let bare = create_shared_queue(&client, &queue_name(Uuid::new_v4())).await;
    assert_eq!(queue_expiry(&client, &bare).await.unwrap(), None);
}

#[tokio::test]
async fn a_shared_queue_drops_the_messages_of_ended_runs_and_keeps_the_rest() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let url = create_shared_queue(&client, "cnd-shared-expiry").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (ended, live, ours) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    sender(&client, &url)
        .with_expiry(Some(now - 10))
        .send(&found(ended))
        .await
        .unwrap();
    sender(&client, &url)
        .with_expiry(Some(now + 3600))
        .send(&found(live))
        .await
        .unwrap();
    sender(&client, &url).send(&found(ours)).await.unwrap();
    let mut channel = SqsChannel::shared(&client, &url, ours);
    assert_eq!(receive_some(&mut channel, 1).await.len(), 1);
    // What is left: the live run's report only; the ended run's is gone for good.
    let left: Vec<Uuid> = bodies_left(&client, &url, 2, Duration::from_secs(12))
        .await
        .iter()
        .filter_map(|body| Report::from_json(body).ok())
        .map(|r| r.run_id)
        .collect();
    assert_eq!(left, vec![live]);
}

#[tokio::test]
async fn a_flood_of_others_messages_cannot_hide_this_runs_report() {
    // A shared queue holding 300 messages of another producer (no cnd-run-id)
    // and 60 of another live run, then our report: SQS hands out 10 at a time,
    // oldest first (moto), and foreign ones released at once would come straight
    // back ahead of ours every time.
    let moto = MotoServer::start();
    let client = moto.client().await;
    let url = create_shared_queue(&client, "cnd-flooded").await;
    for batch in 0..30 {
        let entries = (0..10)
            .map(|i| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(format!("someone else's message {batch}-{i}"))
                    .build()
                    .unwrap()
            })
            .collect();
        client
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
    let (ours, theirs) = (Uuid::new_v4(), Uuid::new_v4());
    for _ in 0..60 {
        sender(&client, &url)
            .send(&report(theirs, ReportKind::Progress { searched: 0 }))
            .await
            .unwrap();
    }
    sender(&client, &url).send(&found(ours)).await.unwrap();

    let mut channel = SqsChannel::shared(&client, &url, ours);
    let (mut taken, mut foreign, mut calls) = (Vec::new(), 0, 0);
    // A bound on calls, not on time: a loaded machine only makes each slower.
    while taken.is_empty() && calls < 50 {
        calls += 1;
        let received = channel.receive(Duration::from_secs(1)).await.unwrap();
        foreign += received.foreign;
        taken.extend(received.messages);
    }
    eprintln!("our report came after {calls} receives, past {foreign} foreign messages");
    assert_eq!(taken.len(), 1, "after {calls} receives: {taken:?}");
    assert_eq!(Report::from_json(&taken[0].body).unwrap().run_id, ours);
    assert!(foreign >= 360, "{foreign}");
    // The shard travels as an attribute, for the master to pick the key.
    assert_eq!(taken[0].sender, cnd_core::Sender::Claims(2));
    // Ours is deleted once taken (at close, here); nothing of theirs is.
    channel.close().await.unwrap();
    use aws_sdk_sqs::types::QueueAttributeName::{
        ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible,
    };
    // The two counts are taken one after the other, so a message whose
    // visibility ends between them is in neither: read until they agree with
    // the 360 sent (a deleted message would keep the sum below it).
    let mut sums = Vec::new();
    for _ in 0..20 {
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let count = |name| {
            attributes.attributes().unwrap()[&name]
                .parse::<u64>()
                .unwrap()
        };
        sums.push(
            count(ApproximateNumberOfMessages) + count(ApproximateNumberOfMessagesNotVisible),
        );
        if sums.last() == Some(&360) {
            break;
        }
    }
    assert_eq!(sums.last(), Some(&360), "their messages counted: {sums:?}");
}

#[tokio::test]
async fn stalled_deletes_lose_no_report_and_never_hold_a_receive() {
    // Every DeleteMessageBatch answer is held past the caller's limit: receives
    // still return at once, cut-short receives lose nothing, and every report
    // arrives (deleted or not: the master takes a repeat once).
    use cnd_cloud::sqs::testing::FaultProxy;
    let moto = MotoServer::start();
    let direct = moto.client().await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let client = client_for(&proxy.endpoint()).await;
    let run_id = Uuid::new_v4();
    let mut channel = SqsChannel::create_for_run(&client, run_id).await.unwrap();
    proxy.hold_answers_to(Some("DeleteMessageBatch"));
    let mut sent = std::collections::HashSet::new();
    let mut got = std::collections::HashSet::new();
    for round in 0..6u64 {
        let mut report = found(run_id);
        report.hashes = round;
        sender(&direct, channel.address())
            .send(&report)
            .await
            .unwrap();
        sent.insert(report.to_json());
        // A caller that bounds each receive, as the master does (held deletes
        // would hold a receive for ever; 5 s leaves room for a loaded machine).
        for _ in 0..3 {
            match tokio::time::timeout(Duration::from_secs(5), channel.receive(Duration::ZERO))
                .await
            {
                Ok(received) => got.extend(received.unwrap().messages.into_iter().map(|m| m.body)),
                Err(_) => panic!("a receive was held up by a stalled delete"),
            }
        }
    }
    // And receives cut short in the middle (a 1 ms limit) lose nothing either.
    let mut report = found(run_id);
    report.hashes = 99;
    sender(&direct, channel.address())
        .send(&report)
        .await
        .unwrap();
    sent.insert(report.to_json());
    for _ in 0..5 {
        let _ =
            tokio::time::timeout(Duration::from_millis(1), channel.receive(Duration::ZERO)).await;
    }
    for _ in 0..40 {
        if got.len() == sent.len() {
            break;
        }
        got.extend(
            channel
                .receive(Duration::from_secs(1))
                .await
                .unwrap()
                .messages
                .into_iter()
                .map(|m| m.body),
        );
    }
    assert_eq!(got, sent);
    proxy.hold_answers_to(None);
    channel.close().await.unwrap();
}

/// A launcher whose one worker (shard 0) reports shard 0's smallest golden
/// nonce to the address the master gave it, signed with that shard's key.
struct ReportingLauncher {
    client: Client,
    /// The `queue_url` of the spec the master launched with.
    told: Option<String>,
}

#[cnd_core::async_trait]
impl cnd_core::Launcher for ReportingLauncher {
    async fn launch(&mut self, spec: &cnd_core::RunSpec) -> Result<(), cnd_core::LaunchError> {
        self.told = Some(spec.queue_url.clone());
        let shard = spec.range.shard(0, spec.shards).unwrap();
        let outcome = cnd_core::search(
            &spec.puzzle,
            shard,
            &cnd_core::SearchOptions::all_cores().with_threads(1),
            &cnd_core::SearchControl::new(),
        );
        let report = Report::from_outcome(spec.run_id, 0, "test-worker", &outcome).unwrap();
        assert!(
            matches!(report.kind, ReportKind::Found { .. }),
            "{report:?}"
        );
        SqsReportSender::new(&self.client, &spec.queue_url, spec.run_key.for_shard(0))
            .send(&report)
            .await
            .unwrap();
        Ok(())
    }
    async fn status(&mut self) -> Result<cnd_core::WorkerStatus, cnd_core::LaunchError> {
        Ok(cnd_core::WorkerStatus::default().with_running(1))
    }
    async fn stop(&mut self) -> Result<(), cnd_core::LaunchError> {
        Ok(())
    }
}

fn small_run() -> cnd_core::RunSpec {
    let puzzle = cnd_core::Puzzle::with_default_block(8).unwrap();
    let range = cnd_core::NonceRange::new(0, 100_000).unwrap();
    cnd_core::RunSpec::new(puzzle, range, 2, 2).unwrap()
}

async fn run_master_on(
    channel: &mut SqsChannel,
    launcher: &mut ReportingLauncher,
    spec: &cnd_core::RunSpec,
    options: &cnd_core::MasterOptions,
) -> Result<cnd_core::MasterOutcome, cnd_core::MasterError> {
    cnd_core::run_master(
        launcher,
        channel,
        spec,
        options,
        &cnd_cloud::TokioTimer,
        &cnd_core::CancelToken::new(),
        |_| {},
    )
    .await
}

#[tokio::test]
async fn the_master_makes_the_runs_queue_tells_the_workers_and_deletes_it() {
    // The caller neither creates the queue nor names it to the workers: an
    // embedder cannot forget either.
    let moto = MotoServer::start();
    let client = moto.client().await;
    let spec = small_run().with_queue_url("ignored: the master sets it");
    let mut launcher = ReportingLauncher {
        client: client.clone(),
        told: None,
    };
    let mut channel = SqsChannel::for_run(&client);
    let out = run_master_on(
        &mut channel,
        &mut launcher,
        &spec,
        &cnd_core::MasterOptions::default(),
    )
    .await;
    assert!(
        matches!(&out, Ok(cnd_core::MasterOutcome::Found(g)) if g.shard == 0),
        "{out:?}"
    );
    let told = launcher.told.expect("launched");
    assert!(told.ends_with(&queue_name(spec.run_id)), "{told}");
    assert_eq!(channel.address(), told);
    assert_eq!(
        queue_url_for_name(&client, &queue_name(spec.run_id))
            .await
            .unwrap(),
        None,
        "the run's queue outlived it"
    );
}

#[tokio::test]
async fn a_queue_creation_whose_answer_never_comes_leaves_no_queue() {
    // SQS creates the queue but its answer is held past every call limit: the
    // run ends after its retry budget, and the queue it never heard of is
    // found by name and deleted.
    use cnd_cloud::sqs::testing::FaultProxy;
    let moto = MotoServer::start();
    let direct = moto.client().await;
    let proxy = FaultProxy::start(&moto.endpoint());
    proxy.hold_answers_to(Some("CreateQueue"));
    let client = client_for(&proxy.endpoint()).await;
    let spec = small_run();
    let mut launcher = ReportingLauncher {
        client: client.clone(),
        told: None,
    };
    let options = cnd_core::MasterOptions::default()
        .with_call_timeout(Duration::from_millis(500))
        .with_retry_for(Duration::from_secs(1));
    let mut channel = SqsChannel::for_run(&client);
    let started = Instant::now();
    let out = run_master_on(&mut channel, &mut launcher, &spec, &options).await;
    assert!(
        matches!(
            out,
            Err(cnd_core::MasterError::Channel(
                ChannelError::Unreachable { .. }
            ))
        ),
        "{out:?}"
    );
    assert!(launcher.told.is_none(), "workers launched without a queue");
    eprintln!("ended {:?} after start", started.elapsed());
    assert_eq!(
        queue_url_for_name(&direct, &queue_name(spec.run_id))
            .await
            .unwrap(),
        None,
        "the queue made by the cut-short creation outlived the run"
    );
    proxy.hold_answers_to(None);
}

#[tokio::test]
async fn a_named_queue_that_does_not_exist_is_refused_in_one_sentence() {
    let moto = MotoServer::start();
    let client = moto.client().await;
    let spec = small_run();
    let mut channel = SqsChannel::named(&client, "no-such-queue");
    let error = channel.open(&spec).await.unwrap_err();
    assert!(matches!(error, ChannelError::Refused { .. }), "{error:?}");
    assert!(error.to_string().contains("\"no-such-queue\""), "{error}");
    // A channel made for one run is no channel for another.
    let url = create_shared_queue(&client, "shared-q").await;
    let mut theirs = SqsChannel::shared(&client, url, Uuid::new_v4());
    assert!(matches!(
        theirs.open(&spec).await,
        Err(ChannelError::Refused { .. })
    ));
    let mut ours = SqsChannel::named(&client, "shared-q");
    ours.open(&spec).await.unwrap();
    assert!(ours.address().ends_with("/shared-q"), "{}", ours.address());
    ours.close().await.unwrap();
    // A shared queue is never deleted.
    assert!(queue_url_for_name(&client, "shared-q")
        .await
        .unwrap()
        .is_some());
}
