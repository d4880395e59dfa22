//! The set-based batch writes exactly what the same steps write one by one, on SQLite and,
//! when `OPSFLOW_TEST_POSTGRES_URL` is set, on PostgreSQL.

use serde_json::{Map, Value, json};

use super::bulk::{Bulk, Refused};
use super::sqlite::commit_by_statements;
use super::sqlite_bulk::commit_bulk;
use super::sqlite_chain_tests::broken_links;
use super::{
    AnswerWrite, Channel, Decision, InstanceRecord, InstanceWrite, LinkChange, PgStore,
    SqliteStore, Step, Store, StoreError, StoredAnswer, StoredDefinition, TimerState, TraceKind,
    TraceRecord, Vote,
};

/// Timer clocks; a negative due time stands for a paused clock with that much left.
fn clocks(names: &[(&str, i64)]) -> Vec<TimerState> {
    names
        .iter()
        .map(|(name, due_at)| TimerState {
            name: (*name).into(),
            due_at: if *due_at < 0 { i64::MAX } else { *due_at },
            paused_left_ms: (*due_at < 0).then_some(-due_at),
        })
        .collect()
}

/// `step` with the clocks of its first instance replaced.
fn with_clocks(mut step: Step, names: &[(&str, i64)]) -> Step {
    let mut i = (*step.writes[0].instance).clone();
    i.timers = clocks(names);
    step.writes[0].instance = i.into();
    step
}

fn data(n: i64) -> Map<String, Value> {
    match json!({
        "n": n,
        "summary": "打印机无法打印 \"quoted\" \\ back\nslash",
        "nested": { "list": [1, 2.5, null, true], "empty": {} },
        "none": null,
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

pub(super) fn instance(id: &str, state: &str, version: i64) -> InstanceRecord {
    InstanceRecord {
        id: id.into(),
        process: "p".into(),
        definition_hash: "h1".into(),
        state: state.into(),
        data: std::sync::Arc::new(data(version)),
        version,
        created_by: "alice".into(),
        created_at: 1,
        updated_at: version * 10,
        votes: Vec::new(),
        slas: Vec::new(),
        trace_hash: String::new(),
        timers: Vec::new(),
    }
}

pub(super) fn record(id: &str, seq: i64, kind: TraceKind, comment: Option<&str>) -> TraceRecord {
    TraceRecord {
        instance_id: id.into(),
        seq,
        at: seq * 10,
        actor: "alice".into(),
        roles: vec!["r1".into(), "r2".into()].into(),
        channel: if seq % 2 == 0 {
            Channel::Timer
        } else {
            Channel::Api
        },
        kind,
        transition: (seq > 1).then(|| "t".to_owned()),
        from: (seq > 1).then(|| "a".to_owned()),
        to: "b".into(),
        data: data(seq),
        before: if seq % 2 == 0 {
            data(seq - 1)
        } else {
            Map::new()
        },
        rules: if seq % 2 == 0 {
            vec![crate::rules::RuleDecision {
                rule: "transitions.t.action".into(),
                module: "m".into(),
                function: None,
                source_hash: "cd".repeat(32),
                result: Value::Object(data(seq)),
            }]
        } else {
            Vec::new()
        },
        comment: comment.map(str::to_owned),
        definition_hash: "h1".into(),
        prev_hash: format!("hash-{id}-{}", seq - 1),
        hash: format!("hash-{id}-{seq}"),
    }
}

pub(super) fn create(id: &str) -> Step {
    Step {
        writes: vec![InstanceWrite {
            instance: instance(id, "a", 1).into(),
            previous_version: None,
        }],
        trace: vec![record(id, 1, TraceKind::Created, None)],
        ..Step::default()
    }
}

fn answer(key: &str, at: i64) -> AnswerWrite {
    AnswerWrite {
        answer: StoredAnswer {
            actor: "alice".into(),
            key: key.into(),
            fingerprint: "f".into(),
            status: 200,
            response: "{\"id\":\"x\"}".into(),
            created_at: at,
        },
        replaces_before: at - 100,
    }
}

/// A new SQLite store in the file `name` of `dir`.
pub(super) async fn sqlite_store(dir: &tempfile::TempDir, name: &str) -> SqliteStore {
    SqliteStore::open(&format!("sqlite://{}", dir.path().join(name).display()))
        .await
        .unwrap()
}

/// The definition `h1` of process `p`, which the instances here run under, is stored.
pub(super) async fn define(store: &dyn Store) {
    store
        .save_definition(&StoredDefinition {
            hash: "h1".into(),
            process: "p".into(),
            source: "{}".into(),
        })
        .await
        .unwrap();
}

/// Instances `a`..`d` exist; `k-old` holds an expired answer.
async fn prepare(store: &dyn Store) {
    define(store).await;
    for id in ["a", "b", "c", "d"] {
        let step = with_clocks(create(id), &[("respond", 10), ("resolve", 20)]);
        store.commit(step).await.unwrap();
    }
    let mut step = create("old");
    step.answer = Some(answer("k-old", 1));
    store.commit(step).await.unwrap();
    let mut link = Step {
        writes: vec![InstanceWrite {
            instance: instance("d", "b", 2).into(),
            previous_version: Some(1),
        }],
        trace: vec![record("d", 2, TraceKind::Transition, None)],
        ..Step::default()
    };
    link.links.push(LinkChange {
        from: "d".into(),
        relation: "rel".into(),
        to: vec!["a".into(), "b".into()],
    });
    store.commit(link).await.unwrap();
}

/// Every kind of row a batch can hold.
fn batch() -> Vec<Step> {
    let mut steps = Vec::new();
    // An advance with a vote, an automatic follow-up and a comment.
    let mut voted = instance("a", "b", 3);
    voted.votes.push(Vote {
        transition: "t".into(),
        actor: "bob".into(),
        decision: Decision::Approve,
        comment: Some("ok".into()),
        at: 5,
    });
    voted.timers = clocks(&[("callback", 30), ("paused", -5_000)]);
    steps.push(Step {
        writes: vec![InstanceWrite {
            instance: voted.into(),
            previous_version: Some(1),
        }],
        trace: vec![
            record("a", 2, TraceKind::Vote, Some("looks right")),
            record("a", 3, TraceKind::Automatic, None),
        ],
        answer: Some(answer("k1", 1_000)),
        ..Step::default()
    });
    // A create that links to an existing instance, and replaces an expired answer.
    let mut linked = with_clocks(create("e"), &[("respond", 40), ("resolve", 50)]);
    linked.links.push(LinkChange {
        from: "e".into(),
        relation: "rel".into(),
        to: vec!["b".into()],
    });
    linked.answer = Some(answer("k-old", 1_000));
    steps.push(linked);
    // An advance that replaces a link field's targets.
    let mut relinked = Step {
        writes: vec![InstanceWrite {
            instance: instance("d", "b", 3).into(),
            previous_version: Some(2),
        }],
        trace: vec![record("d", 3, TraceKind::Transition, None)],
        ..Step::default()
    };
    relinked.links.push(LinkChange {
        from: "d".into(),
        relation: "rel".into(),
        to: vec!["c".into()],
    });
    steps.push(relinked);
    // A step that creates one instance and advances another.
    let mut both = create("f");
    both.writes.push(InstanceWrite {
        instance: instance("b", "b", 2).into(),
        previous_version: Some(1),
    });
    both.trace.push(record("b", 2, TraceKind::Transition, None));
    steps.push(both);
    steps
}

async fn everything(store: &dyn Store) -> Vec<String> {
    let mut out = Vec::new();
    for id in ["a", "b", "c", "d", "e", "f", "old"] {
        out.push(format!("{:?}", store.get_instance(id).await.unwrap()));
        out.push(format!("{:?}", store.trace(id).await.unwrap()));
        out.push(format!("{:?}", store.links(id).await.unwrap()));
    }
    for key in ["k1", "k-old"] {
        out.push(format!("{:?}", store.answer("alice", key).await.unwrap()));
    }
    out
}

#[tokio::test]
async fn a_set_based_batch_on_sqlite_writes_what_the_steps_write_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let bulk_store = sqlite_store(&dir, "bulk.db").await;
    let one_by_one = sqlite_store(&dir, "steps.db").await;
    prepare(&bulk_store).await;
    prepare(&one_by_one).await;

    let steps = batch();
    let bulk = Bulk::new(&steps).expect("distinct steps go set-wise");
    commit_bulk(&mut *bulk_store.writer.lock().await, &bulk).expect("the set-based write succeeds");
    for step in &steps {
        commit_by_statements(one_by_one.writer.lock().await.conn().unwrap(), step)
            .await
            .unwrap();
    }
    assert_eq!(everything(&bulk_store).await, everything(&one_by_one).await);
    // Both read through whole links, not the scan that stands in for broken ones.
    assert_eq!(broken_links(&bulk_store.pool).await, 0);
    assert_eq!(broken_links(&one_by_one.pool).await, 0);
}

/// The batch with one step computed from an old version of its instance.
fn stale_batch() -> Vec<Step> {
    let mut steps = batch();
    steps[2].writes[0].previous_version = Some(1); // `d` is at version 2
    steps
}

#[tokio::test]
async fn a_set_based_batch_on_sqlite_with_a_stale_step_writes_nothing_and_leaves_no_transaction_open()
 {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir, "t.db").await;
    prepare(&store).await;
    let before = everything(&store).await;
    let steps = stale_batch();
    let bulk = Bulk::new(&steps).unwrap();
    let refused = commit_bulk(&mut *store.writer.lock().await, &bulk);
    assert!(
        matches!(refused, Err(Refused::Row(_))),
        "the stale step refuses the batch: {refused:?}"
    );
    assert_eq!(everything(&store).await, before);

    // The writer is out of the refused transaction: the next commit lands, through the
    // direct side and through sqlx alike, and other connections see it.
    let steps = batch();
    commit_bulk(&mut *store.writer.lock().await, &Bulk::new(&steps).unwrap())
        .expect("the writer takes the next batch");
    let after_batch = everything(&store).await;
    assert_ne!(after_batch, before);
    sqlx::query("UPDATE instances SET updated_at = updated_at + 1")
        .execute(store.writer.lock().await.conn().unwrap())
        .await
        .expect("sqlx's side of the writer is in no transaction either");
    assert_ne!(everything(&store).await, after_batch);
}

#[tokio::test]
async fn a_set_based_batch_on_postgres_writes_what_the_steps_write_one_by_one() {
    let Some(server) = super::postgres::test_server() else {
        return;
    };
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let names = [format!("opsflow_u_{tag}_b"), format!("opsflow_u_{tag}_s")];
    let mut stores = Vec::new();
    for name in &names {
        let url = super::create_database(&server, name).await.unwrap();
        stores.push(PgStore::open(&url, 2).await.unwrap());
    }
    for s in &stores {
        prepare(s).await;
    }
    let steps = batch();
    let bulk = Bulk::new(&steps).unwrap();
    let written = super::postgres_bulk::commit_bulk(&stores[0].pool, &bulk).await;
    for step in steps {
        stores[1].commit(step).await.unwrap();
    }
    let (got, want) = (everything(&stores[0]).await, everything(&stores[1]).await);
    for s in stores {
        s.pool.close().await;
    }
    for name in &names {
        super::drop_database(&server, name).await.unwrap();
    }
    written.expect("the set-based write succeeds");
    assert_eq!(got, want);
}

/// A prepared store on a database of its own on the test server (`None` without one):
/// the server, the database's name and the store.
async fn prepared_postgres(tag: &str) -> Option<(String, String, PgStore)> {
    let server = super::postgres::test_server()?;
    let name = format!("opsflow_u_{}_{tag}", uuid::Uuid::now_v7().simple());
    let url = super::create_database(&server, &name).await.unwrap();
    let store = PgStore::open(&url, 2).await.unwrap();
    prepare(&store).await;
    Some((server, name, store))
}

/// Closes `store` and drops its database.
async fn dropped(server: &str, name: &str, store: PgStore) {
    store.pool.close().await;
    super::drop_database(server, name).await.unwrap();
}

#[tokio::test]
async fn a_set_based_batch_on_postgres_with_a_stale_step_writes_nothing() {
    let Some((server, name, store)) = prepared_postgres("r").await else {
        return;
    };
    let before = everything(&store).await;
    let steps = stale_batch();
    let bulk = Bulk::new(&steps).unwrap();
    let written = super::postgres_bulk::commit_bulk(&store.pool, &bulk).await;
    let after = everything(&store).await;
    dropped(&server, &name, store).await;
    let why = written.expect_err("a stale step refuses the whole set-based write");
    assert!(why.to_string().contains("instance updates"), "{why}");
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_trace_record_without_its_instance_is_refused_on_postgres_set_wise_and_step_by_step() {
    let Some((server, name, store)) = prepared_postgres("o").await else {
        return;
    };
    let before = everything(&store).await;
    // The trace has no foreign key to instances (migration 0017): the batch checks it.
    let mut steps = batch();
    steps[1]
        .trace
        .push(record("nowhere", 1, TraceKind::Created, None));
    let set_wise = match Bulk::new(&steps) {
        Some(bulk) => super::postgres_bulk::commit_bulk(&store.pool, &bulk)
            .await
            .map_err(|e| e.to_string()),
        None => Err("not set-wise".into()),
    };
    let after_set_wise = everything(&store).await;
    let outcomes = store.commit_batch(&steps).await;
    let orphans = store.trace("nowhere").await.unwrap();
    let written = everything(&store).await;
    dropped(&server, &name, store).await;

    let why = set_wise.expect_err("the set-based write refuses the whole batch");
    assert!(why.contains("trace without its instance"), "{why}");
    assert_eq!(after_set_wise, before);
    assert!(
        matches!(&outcomes[1], Err(StoreError::Corrupt(m)) if m.contains("without its instance")),
        "{:?}",
        outcomes[1]
    );
    assert!(
        outcomes
            .iter()
            .enumerate()
            .all(|(i, o)| i == 1 || o.is_ok()),
        "{outcomes:?}"
    );
    assert!(orphans.is_empty());
    assert_ne!(written, before, "the other steps land");
}

#[test]
fn a_batch_writing_one_instance_twice_goes_step_by_step() {
    let steps = vec![create("x"), create("x")];
    assert!(Bulk::new(&steps).is_none());
}

#[tokio::test]
async fn a_one_step_commit_on_sqlite_that_loses_its_race_or_its_key_is_refused_for_that_reason_and_the_next_lands()
 {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir, "t.db").await;
    prepare(&store).await;
    let before = everything(&store).await;

    let stale = stale_batch().swap_remove(2);
    assert!(matches!(
        store.commit(stale).await,
        Err(StoreError::Conflict)
    ));
    let mut live_key = batch().swap_remove(0);
    live_key.answer = Some(answer("k-live", 1_000));
    let mut first = batch().swap_remove(3);
    first.answer = Some(answer("k-live", 1_000));
    store
        .commit(first)
        .await
        .expect("the key's first use lands");
    let after_first = everything(&store).await;
    assert!(matches!(
        store.commit(live_key).await,
        Err(StoreError::KeyTaken)
    ));
    assert_ne!(after_first, before);
    assert_eq!(
        everything(&store).await,
        after_first,
        "the refused steps wrote nothing"
    );

    store
        .commit(batch().swap_remove(2))
        .await
        .expect("the writer takes the next step");
    assert_ne!(everything(&store).await, after_first);
}

#[tokio::test]
async fn a_sqlite_store_closes_cleanly_whichever_side_of_its_writer_used_the_connection_last() {
    let dir = tempfile::tempdir().unwrap();
    // `prepare` commits through the direct side and defines through sqlx, in turns.
    for (i, last) in ["direct", "sqlx", "direct"].into_iter().enumerate() {
        let name = format!("t{i}.db");
        let store = sqlite_store(&dir, &name).await;
        prepare(&store).await;
        match last {
            "sqlx" => {
                store.save_kpi_set("k", "{}").await.unwrap();
            }
            _ => store.commit(batch().swap_remove(2)).await.unwrap(),
        }
        let expected = everything(&store).await;
        // Closing finalizes the direct side's statements before sqlx closes the handle
        // (sqlx panics otherwise); what was written is all there on reopening.
        drop(store);
        let reopened = sqlite_store(&dir, &name).await;
        assert_eq!(everything(&reopened).await, expected, "last used: {last}");
    }
}
