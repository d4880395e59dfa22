//! The `Store` contract, checked on the database under test (SQLite, or PostgreSQL when
//! `OPSFLOW_TEST_POSTGRES_URL` is set): what every implementation must do the same way.

use std::sync::Arc;

use opsflow::server::open_store;
use opsflow::store::{
    AnswerWrite, Channel, Claim, Delivery, DeliveryOutcome, FactRecord, InstanceRecord,
    InstanceWrite, LinkChange, OutboxMessage, Step, Store, StoreError, StoredAnswer,
    StoredDefinition, TimerState, TraceKind, TraceRecord,
};
use serde_json::{Map, json};

use crate::helpers::TestDb;

async fn store() -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::new().await;
    let store = open_store(&db.url).await.expect("store opens");
    store
        .save_definition(&StoredDefinition {
            hash: "h1".into(),
            process: "p".into(),
            source: "{}".into(),
        })
        .await
        .unwrap();
    (store, db)
}

fn instance(id: &str, state: &str, version: i64) -> InstanceRecord {
    let mut data = Map::new();
    data.insert("n".into(), json!(version));
    InstanceRecord {
        id: id.into(),
        process: "p".into(),
        definition_hash: "h1".into(),
        state: state.into(),
        data: data.into(),
        version,
        created_by: "alice".into(),
        created_at: 1,
        updated_at: version,
        votes: Vec::new(),
        slas: Vec::new(),
        trace_hash: String::new(),
        timers: Vec::new(),
    }
}

fn record(id: &str, seq: i64, to: &str) -> TraceRecord {
    TraceRecord {
        instance_id: id.into(),
        seq,
        at: seq,
        actor: "alice".into(),
        roles: vec!["r".into()].into(),
        channel: Channel::System,
        kind: if seq == 1 {
            TraceKind::Created
        } else {
            TraceKind::Transition
        },
        transition: (seq > 1).then(|| "t".to_owned()),
        from: (seq > 1).then(|| "a".to_owned()),
        to: to.into(),
        data: Map::new(),
        // Steps after the first keep a before-value and a rule decision, read back as written.
        before: match seq {
            1 => Map::new(),
            _ => Map::from_iter([("note".to_owned(), serde_json::json!({"was": [1, "x"]}))]),
        },
        rules: match seq {
            1 => Vec::new(),
            _ => vec![opsflow::rules::RuleDecision {
                rule: "transitions.t.guard".into(),
                module: "m".into(),
                function: Some("may_t".into()),
                source_hash: "ab".repeat(32),
                result: serde_json::Value::Bool(true),
            }],
        },
        comment: None,
        definition_hash: "h1".into(),
        prev_hash: format!("hash-{id}-{}", seq - 1),
        hash: format!("hash-{id}-{seq}"),
    }
}

fn create(id: &str) -> Step {
    Step {
        writes: vec![InstanceWrite {
            instance: instance(id, "a", 1).into(),
            previous_version: None,
        }],
        trace: vec![record(id, 1, "a")],
        ..Step::default()
    }
}

fn advance(id: &str, from_version: i64) -> Step {
    Step {
        writes: vec![InstanceWrite {
            instance: instance(id, "b", from_version + 1).into(),
            previous_version: Some(from_version),
        }],
        trace: vec![record(id, from_version + 1, "b")],
        ..Step::default()
    }
}

#[tokio::test]
async fn a_committed_step_reads_back_exactly() {
    let (store, _db) = store().await;
    store.commit(create("i1")).await.unwrap();
    store.commit(advance("i1", 1)).await.unwrap();
    let got = store.get_instance("i1").await.unwrap().unwrap();
    assert_eq!(got, instance("i1", "b", 2));
    let trace = store.trace("i1").await.unwrap();
    assert_eq!(trace, vec![record("i1", 1, "a"), record("i1", 2, "b")]);
}

#[tokio::test]
async fn a_step_from_a_stale_version_is_a_conflict_and_writes_nothing() {
    let (store, _db) = store().await;
    store.commit(create("i1")).await.unwrap();
    store.commit(advance("i1", 1)).await.unwrap();
    let stale = advance("i1", 1);
    assert!(matches!(
        store.commit(stale).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.trace("i1").await.unwrap().len(), 2);
    assert!(
        matches!(store.commit(create("i1")).await, Err(StoreError::Conflict)),
        "an id is created once"
    );
}

#[tokio::test]
async fn a_step_is_all_or_nothing_across_instances() {
    let (store, _db) = store().await;
    store.commit(create("i1")).await.unwrap();
    // A step creating i2 and advancing i1 from a stale version: neither happens.
    let mut step = create("i2");
    step.writes.push(InstanceWrite {
        instance: instance("i1", "b", 9).into(),
        previous_version: Some(8),
    });
    assert!(store.commit(step).await.is_err());
    assert!(store.get_instance("i2").await.unwrap().is_none());
    assert!(store.trace("i2").await.unwrap().is_empty());
}

#[tokio::test]
async fn links_are_replaced_per_field_and_read_both_ways() {
    let (store, _db) = store().await;
    for id in ["a", "b", "c"] {
        store.commit(create(id)).await.unwrap();
    }
    let mut step = advance("a", 1);
    step.links.push(LinkChange {
        from: "a".into(),
        relation: "rel".into(),
        to: vec!["b".into(), "c".into()],
    });
    store.commit(step).await.unwrap();
    let links = store.links("a").await.unwrap();
    assert_eq!(
        links
            .outgoing
            .iter()
            .map(|l| l.id.as_str())
            .collect::<Vec<_>>(),
        ["b", "c"]
    );
    assert_eq!(store.links("c").await.unwrap().incoming[0].id, "a");

    let mut step = advance("a", 2);
    step.links.push(LinkChange {
        from: "a".into(),
        relation: "rel".into(),
        to: vec!["c".into()],
    });
    store.commit(step).await.unwrap();
    assert_eq!(store.links("a").await.unwrap().outgoing.len(), 1);
    assert!(store.links("b").await.unwrap().incoming.is_empty());
    let heads = store.heads(&["c".into(), "zz".into()]).await.unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].state, "a");
}

#[tokio::test]
async fn an_answer_is_kept_once_per_key_until_it_expires() {
    let (store, _db) = store().await;
    let answer = |at: i64| AnswerWrite {
        answer: StoredAnswer {
            actor: "alice".into(),
            key: "k".into(),
            fingerprint: "f".into(),
            status: 201,
            response: "{}".into(),
            created_at: at,
        },
        replaces_before: at - 100,
    };
    let mut first = create("i1");
    first.answer = Some(answer(1_000));
    store.commit(first).await.unwrap();
    assert_eq!(
        store.answer("alice", "k").await.unwrap().unwrap().status,
        201
    );
    assert!(store.answer("bob", "k").await.unwrap().is_none());

    let mut twin = create("i2");
    twin.answer = Some(answer(1_050));
    assert!(matches!(
        store.commit(twin).await,
        Err(StoreError::KeyTaken)
    ));
    assert!(
        store.get_instance("i2").await.unwrap().is_none(),
        "the twin's step is not written"
    );

    let mut later = create("i3");
    later.answer = Some(answer(1_200));
    store.commit(later).await.unwrap();
    assert_eq!(
        store
            .answer("alice", "k")
            .await
            .unwrap()
            .unwrap()
            .created_at,
        1_200
    );
    assert_eq!(store.purge_answers(1_201).await.unwrap(), 1);
    assert!(store.answer("alice", "k").await.unwrap().is_none());
}

#[tokio::test]
async fn a_batch_refuses_a_failing_step_alone_and_writes_the_others() {
    let (store, _db) = store().await;
    store.commit(create("i1")).await.unwrap();
    // Two steps on i1 computed from the same version (a race inside one batch), a create,
    // and a create of an id that exists.
    let steps = vec![
        advance("i1", 1),
        advance("i1", 1),
        create("i2"),
        create("i1"),
    ];
    let results = store.commit_batch(&steps).await;
    assert!(results[0].is_ok());
    assert!(
        matches!(results[1], Err(StoreError::Conflict)),
        "{:?}",
        results[1]
    );
    assert!(results[2].is_ok());
    assert!(
        matches!(results[3], Err(StoreError::Conflict)),
        "{:?}",
        results[3]
    );
    assert_eq!(
        store.trace("i1").await.unwrap().len(),
        2,
        "one of the racing steps written"
    );
    assert_eq!(store.get_instance("i2").await.unwrap().unwrap().version, 1);
}

/// `step` with the clocks of its instance set to `(name, due_at)`; a negative due time
/// stands for a paused clock with that much left.
fn with_clocks(mut step: Step, clocks: &[(&str, i64)]) -> Step {
    let mut i = (*step.writes[0].instance).clone();
    i.timers = clocks
        .iter()
        .map(|(name, due_at)| TimerState {
            name: (*name).into(),
            due_at: if *due_at < 0 { i64::MAX } else { *due_at },
            paused_left_ms: (*due_at < 0).then_some(-due_at),
        })
        .collect();
    step.writes[0].instance = i.into();
    step
}

fn claim(claimant: &str, now: i64, until: i64, limit: u32) -> Claim {
    Claim {
        claimant: claimant.into(),
        now,
        until,
        limit,
    }
}

fn ids(instances: Vec<InstanceRecord>) -> Vec<String> {
    instances.into_iter().map(|i| i.id).collect()
}

#[tokio::test]
async fn an_instance_keeps_its_clocks_and_is_due_by_its_earliest_running_one() {
    let (store, _db) = store().await;
    let step = with_clocks(create("i1"), &[("resolve", 100), ("respond", 50)]);
    store.commit(step).await.unwrap();
    let paused = with_clocks(create("i2"), &[("resolve", -30)]);
    store.commit(paused).await.unwrap();
    let read = store.get_instance("i1").await.unwrap().unwrap();
    assert_eq!(read.timers.len(), 2);
    assert_eq!(read.next_due_at(), Some(50));
    assert_eq!(
        ids(store
            .claim_due_instances(&claim("n1", 1_000, 2_000, 10))
            .await
            .unwrap()),
        ["i1"],
        "a paused clock is never due"
    );
    // A later step rewrites the clocks (and releases the claim).
    store
        .commit(with_clocks(advance("i1", 1), &[("callback", 3_000)]))
        .await
        .unwrap();
    assert!(
        store
            .claim_due_instances(&claim("n2", 2_500, 4_000, 10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(store
            .claim_due_instances(&claim("n2", 3_000, 4_000, 10))
            .await
            .unwrap()),
        ["i1"]
    );
    store.commit(advance("i1", 2)).await.unwrap();
    assert!(
        store
            .claim_due_instances(&claim("n3", 9_000, 10_000, 10))
            .await
            .unwrap()
            .is_empty(),
        "a step without clocks leaves none"
    );
}

#[tokio::test]
async fn a_due_instance_is_claimed_once_until_its_claim_lapses() {
    let (store, _db) = store().await;
    for (id, due) in [("i1", 200), ("i2", 100), ("i3", 300)] {
        store
            .commit(with_clocks(create(id), &[("t", due)]))
            .await
            .unwrap();
    }
    assert_eq!(
        ids(store
            .claim_due_instances(&claim("n1", 250, 1_000, 10))
            .await
            .unwrap()),
        ["i2", "i1"],
        "due ones only, earliest first"
    );
    assert!(
        store
            .claim_due_instances(&claim("n2", 250, 1_000, 10))
            .await
            .unwrap()
            .is_empty(),
        "claimed by n1"
    );
    // n1 died: at 1,000 its claims lapse and n2 takes them, now with the later one too.
    assert_eq!(
        ids(store
            .claim_due_instances(&claim("n2", 1_000, 2_000, 2))
            .await
            .unwrap()),
        ["i2", "i1"],
        "at most the limit, earliest first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimants_never_take_the_same_instance() {
    let (store, _db) = store().await;
    const INSTANCES: usize = 200;
    for i in 0..INSTANCES {
        let id = format!("i{i:03}");
        store
            .commit(with_clocks(create(&id), &[("t", i as i64)]))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for node in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_due_instances(&claim(&format!("n{node}"), 10_000, 20_000, 7))
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(ids(got));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, INSTANCES, "every instance claimed");
    assert_eq!(all.len(), total, "none claimed twice");
}

fn message(id: &str, instance: &str, created_at: i64) -> OutboxMessage {
    OutboxMessage {
        id: id.into(),
        instance_id: instance.into(),
        url: "http://127.0.0.1:9/hook".into(),
        body: format!("{{\"delivery_id\":\"{id}\"}}"),
        created_at,
    }
}

#[tokio::test]
async fn outbox_messages_are_written_with_their_step_and_claimed_until_delivered() {
    let (store, _db) = store().await;
    let mut step = create("i1");
    step.outbox = vec![message("m1", "i1", 100), message("m2", "i1", 200)];
    store.commit(step).await.unwrap();
    // A refused step writes none of its messages.
    let mut stale = advance("i1", 7);
    stale.outbox = vec![message("m3", "i1", 150)];
    assert!(matches!(
        store.commit(stale).await,
        Err(StoreError::Conflict)
    ));

    let ids = |d: Vec<Delivery>| d.into_iter().map(|d| d.message.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .claim_deliveries(&claim("n1", 150, 1_000, 10))
            .await
            .unwrap()),
        ["m1"],
        "due ones only"
    );
    assert!(
        ids(store
            .claim_deliveries(&claim("n2", 250, 1_000, 10))
            .await
            .unwrap())
            == ["m2"],
        "m1 is claimed by n1"
    );
    store
        .record_delivery(
            "m1",
            &DeliveryOutcome::Failed {
                retry_at: 400,
                error: "the receiver answered 500".into(),
            },
        )
        .await
        .unwrap();
    store
        .record_delivery("m2", &DeliveryOutcome::Delivered { at: 260 })
        .await
        .unwrap();
    assert!(
        store
            .claim_deliveries(&claim("n1", 399, 2_000, 10))
            .await
            .unwrap()
            .is_empty(),
        "m1 waits for its retry; m2 is done"
    );
    let retried = store
        .claim_deliveries(&claim("n1", 400, 2_000, 10))
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(
        retried[0].message,
        message("m1", "i1", 100),
        "the same delivery"
    );
    assert_eq!(retried[0].attempts, 1);
    store
        .record_delivery("m1", &DeliveryOutcome::Delivered { at: 401 })
        .await
        .unwrap();
    assert!(
        store
            .claim_deliveries(&claim("n1", i64::MAX - 1, i64::MAX, 10))
            .await
            .unwrap()
            .is_empty()
    );
}

fn definition(hash: &str, process: &str) -> StoredDefinition {
    StoredDefinition {
        hash: hash.into(),
        process: process.into(),
        source: "{}".into(),
    }
}

#[tokio::test]
async fn each_new_content_of_a_process_gets_the_next_number_and_a_known_one_keeps_its_own() {
    let (store, _db) = store().await;
    assert_eq!(
        store.save_definition(&definition("h1", "p")).await.unwrap(),
        1
    );
    assert_eq!(
        store.save_definition(&definition("h2", "p")).await.unwrap(),
        2
    );
    assert_eq!(
        store.save_definition(&definition("h1", "p")).await.unwrap(),
        1
    );
    assert_eq!(
        store.save_definition(&definition("q1", "q")).await.unwrap(),
        1
    );
    let versions = store.definition_versions("p").await.unwrap();
    let numbered: Vec<(i64, &str)> = versions
        .iter()
        .map(|v| (v.version, v.hash.as_str()))
        .collect();
    assert_eq!(numbered, [(1, "h1"), (2, "h2")]);
    assert!(versions.iter().all(|v| v.first_seen > 0));
    assert!(
        store
            .definition_versions("nothing")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn versions_saved_at_once_by_several_nodes_get_distinct_numbers() {
    let (store, _db) = store().await;
    let saves = (2..=9).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .save_definition(&definition(&format!("h{n}"), "p"))
                .await
        })
    });
    let mut numbers = Vec::new();
    for s in saves {
        numbers.push(s.await.unwrap().unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (2..=9).collect::<Vec<i64>>());
}

#[tokio::test]
async fn the_facts_of_a_process_traces_come_a_page_of_instances_at_a_time_in_order() {
    let (store, _db) = store().await;
    for id in ["i3", "i1", "i2"] {
        store.commit(create(id)).await.unwrap();
        store.commit(advance(id, 1)).await.unwrap();
    }
    let mut other = create("j1");
    Arc::make_mut(&mut other.writes[0].instance).process = "q".into();
    store.commit(other).await.unwrap();

    let facts = |records: &[TraceRecord]| -> Vec<FactRecord> {
        records.iter().map(FactRecord::from).collect()
    };
    let page = store.process_facts("p", None, 2).await.unwrap();
    let ids: Vec<&str> = page.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["i1", "i2"]);
    assert_eq!(
        page[0].1,
        facts(&[record("i1", 1, "a"), record("i1", 2, "b")])
    );
    let next = store.process_facts("p", Some("i2"), 2).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0, "i3");
    assert_eq!(next[0].1, facts(&store.trace("i3").await.unwrap()));
    assert!(
        store
            .process_facts("p", Some("i3"), 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.process_facts("q", None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn each_new_content_of_the_kpi_files_gets_the_next_number() {
    let (store, _db) = store().await;
    assert_eq!(store.save_kpi_set("k1", "{}").await.unwrap(), 1);
    assert_eq!(store.save_kpi_set("k2", "{}").await.unwrap(), 2);
    assert_eq!(store.save_kpi_set("k1", "{}").await.unwrap(), 1);
}

#[tokio::test]
async fn kpi_file_texts_are_kept_by_hash_as_first_stored() {
    let (store, _db) = store().await;
    store
        .save_kpi_set("k1", r#"{"a.yaml":"one"}"#)
        .await
        .unwrap();
    store
        .save_kpi_set("k1", r#"{"a.yaml":"two"}"#)
        .await
        .unwrap();
    assert_eq!(
        store.kpi_set_source("k1").await.unwrap().as_deref(),
        Some(r#"{"a.yaml":"one"}"#)
    );
    assert_eq!(store.kpi_set_source("k2").await.unwrap(), None);
}

#[tokio::test]
async fn a_report_snapshot_is_kept_by_hash_and_never_overwritten() {
    let (store, _db) = store().await;
    let first = opsflow::store::StoredSnapshot {
        hash: "h1".into(),
        instance_id: "r1".into(),
        body: r#"{"report":"r1"}"#.into(),
        created_at: 1_000,
    };
    store.save_report_snapshot(&first).await.unwrap();
    let again = opsflow::store::StoredSnapshot {
        body: r#"{"report":"other"}"#.into(),
        ..first.clone()
    };
    store.save_report_snapshot(&again).await.unwrap();
    assert_eq!(store.report_snapshot("h1").await.unwrap(), Some(first));
    assert_eq!(store.report_snapshot("h2").await.unwrap(), None);
}
