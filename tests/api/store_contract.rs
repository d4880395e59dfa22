//! The `Store` contract, checked on the database under test (SQLite, or PostgreSQL when
//! `OPSFLOW_TEST_POSTGRES_URL` is set): what every implementation must do the same way.

use std::sync::Arc;

use opsflow::server::open_store;
use opsflow::store::{
    AnswerWrite, Delivery, DeliveryOutcome, InstanceRecord, InstanceWrite, LinkChange,
    OutboxMessage, Step, Store, StoreError, StoredAnswer, StoredDefinition, TimerChange,
    TimerClaim, TimerRecord, TraceKind, TraceRecord,
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
        data,
        version,
        created_by: "alice".into(),
        created_at: 1,
        updated_at: version,
        votes: Vec::new(),
        slas: Vec::new(),
        timers: Vec::new(),
    }
}

fn record(id: &str, seq: i64, to: &str) -> TraceRecord {
    TraceRecord {
        instance_id: id.into(),
        seq,
        at: seq,
        actor: "alice".into(),
        roles: vec!["r".into()],
        kind: if seq == 1 {
            TraceKind::Created
        } else {
            TraceKind::Transition
        },
        transition: (seq > 1).then(|| "t".to_owned()),
        from: (seq > 1).then(|| "a".to_owned()),
        to: to.into(),
        data: Map::new(),
        comment: None,
        definition_hash: "h1".into(),
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

fn timer(id: &str, name: &str, due_at: i64) -> TimerRecord {
    TimerRecord {
        instance_id: id.into(),
        name: name.into(),
        due_at,
        paused_left_ms: None,
        version: 1,
    }
}

fn with_timers(mut step: Step, id: &str, timers: Vec<TimerRecord>) -> Step {
    step.timers.push(TimerChange {
        instance_id: id.into(),
        timers,
    });
    step
}

fn claim(claimant: &str, now: i64, until: i64, limit: u32) -> TimerClaim {
    TimerClaim {
        claimant: claimant.into(),
        now,
        until,
        limit,
    }
}

#[tokio::test]
async fn each_step_replaces_the_timers_of_its_instance() {
    let (store, _db) = store().await;
    let step = with_timers(
        create("i1"),
        "i1",
        vec![timer("i1", "resolve", 100), timer("i1", "respond", 50)],
    );
    store.commit(step).await.unwrap();
    store.commit(create("i2")).await.unwrap();
    let names = |t: Vec<TimerRecord>| t.into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.timers("i1").await.unwrap()),
        ["respond", "resolve"],
        "by due time"
    );
    let step = with_timers(advance("i1", 1), "i1", vec![timer("i1", "callback", 70)]);
    store.commit(step).await.unwrap();
    assert_eq!(names(store.timers("i1").await.unwrap()), ["callback"]);
    // A step that says nothing of timers leaves them; one with an empty change clears them.
    store.commit(advance("i1", 2)).await.unwrap();
    assert_eq!(store.timers("i1").await.unwrap().len(), 1);
    store
        .commit(with_timers(advance("i1", 3), "i1", Vec::new()))
        .await
        .unwrap();
    assert!(store.timers("i1").await.unwrap().is_empty());
    assert!(store.timers("i2").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_due_timer_is_claimed_once_until_its_claim_lapses() {
    let (store, _db) = store().await;
    let timers = vec![
        timer("i1", "a", 100),
        timer("i1", "b", 200),
        timer("i1", "later", 300),
    ];
    store
        .commit(with_timers(create("i1"), "i1", timers))
        .await
        .unwrap();
    let due = store
        .claim_due_timers(&claim("n1", 250, 1_000, 10))
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"],
        "due ones only, earliest first"
    );
    assert!(
        store
            .claim_due_timers(&claim("n2", 250, 1_000, 10))
            .await
            .unwrap()
            .is_empty(),
        "claimed by n1"
    );
    // n1 died: at 1,000 its claims lapse and n2 takes them, now with the later one too.
    let due = store
        .claim_due_timers(&claim("n2", 1_000, 2_000, 2))
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"],
        "at most the limit, earliest first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimants_never_take_the_same_timer() {
    let (store, _db) = store().await;
    const INSTANCES: usize = 50;
    for i in 0..INSTANCES {
        let id = format!("i{i:03}");
        let timers = (0..4)
            .map(|n| timer(&id, &format!("t{n}"), (i * 4 + n) as i64))
            .collect();
        store
            .commit(with_timers(create(&id), &id, timers))
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
                    .claim_due_timers(&claim(&format!("n{node}"), 10_000, 20_000, 7))
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|t| (t.instance_id, t.name)));
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
    assert_eq!(total, INSTANCES * 4, "every timer claimed");
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
