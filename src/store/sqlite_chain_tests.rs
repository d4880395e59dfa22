//! SQLite's trace links: every way of writing keeps them whole, a database written before
//! them gets them from its migration, and a trace whose links were broken by hand still
//! reads back every record it holds.

use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqlitePoolOptions;

use super::bulk_tests::{create, define, instance, record, sqlite_store};
use super::sqlite::{SqliteStore, connect_options};
use super::{InstanceWrite, Step, Store, TraceKind};

/// Records whose link is not the record before them of their instance, and instances whose
/// last record is not the one they name.
pub(super) async fn broken_links(pool: &SqlitePool) -> i64 {
    let records: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM trace t LEFT JOIN trace p ON p.rec_id = t.prev_rec_id
         WHERE NOT ((t.seq = 1 AND t.prev_rec_id IS NULL)
                    OR (p.instance_id = t.instance_id AND p.seq = t.seq - 1))",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let instances: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM instances i LEFT JOIN trace t ON t.rec_id = i.last_rec_id
         WHERE t.instance_id IS NOT i.id
            OR t.seq <> (SELECT max(seq) FROM trace WHERE instance_id = i.id)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    records + instances
}

async fn steps_of(store: &dyn Store, id: &str) -> Vec<i64> {
    store
        .trace(id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect()
}

fn advance(id: &str, version: i64) -> Step {
    Step {
        writes: vec![InstanceWrite {
            instance: instance(id, "b", version).into(),
            previous_version: Some(version - 1),
        }],
        trace: vec![record(id, version, TraceKind::Transition, None)],
        ..Step::default()
    }
}

#[tokio::test]
async fn a_database_from_before_the_links_reads_back_its_traces_and_new_steps_follow_them() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    // The migrations as they were before the links.
    let before = dir.path().join("migrations");
    std::fs::create_dir(&before).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for file in std::fs::read_dir(&shipped).unwrap() {
        let file = file.unwrap();
        let name = file.file_name().into_string().unwrap();
        if name.as_str() < "0017" {
            std::fs::copy(file.path(), before.join(&name)).unwrap();
        }
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(&url).unwrap())
        .await
        .unwrap();
    Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // Two instances whose records were written interleaved, as concurrent steps write them.
    sqlx::raw_sql(
        "INSERT INTO definitions (hash, process, source, first_seen, version)
             VALUES ('h1', 'p', '{}', 1, 1);
         INSERT INTO instances (id, process, definition_hash, state, data, version, created_by,
                                created_at, updated_at)
             VALUES ('a', 'p', 'h1', 'b', '{}', 3, 'alice', 1, 30),
                    ('b', 'p', 'h1', 'b', '{}', 2, 'alice', 1, 20);
         INSERT INTO trace (instance_id, seq, at, actor, roles, kind, to_state, data,
                            definition_hash)
             VALUES ('a', 1, 10, 'alice', '[]', 'created', 'a', '{}', 'h1'),
                    ('b', 1, 10, 'alice', '[]', 'created', 'a', '{}', 'h1'),
                    ('a', 2, 20, 'alice', '[]', 'transition', 'b', '{}', 'h1'),
                    ('b', 2, 20, 'alice', '[]', 'transition', 'b', '{}', 'h1'),
                    ('a', 3, 30, 'alice', '[]', 'transition', 'b', '{}', 'h1');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = SqliteStore::open(&url).await.unwrap();
    let links: Vec<(i64, Option<i64>, String, i64)> =
        sqlx::query_as("SELECT rec_id, prev_rec_id, instance_id, seq FROM trace ORDER BY rec_id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
    let link = |rec_id, prev, id: &str, seq| (rec_id, prev, id.to_owned(), seq);
    assert_eq!(
        links,
        [
            link(1, None, "a", 1),
            link(2, None, "b", 1),
            link(3, Some(1), "a", 2),
            link(4, Some(2), "b", 2),
            link(5, Some(3), "a", 3),
        ]
    );
    assert_eq!(broken_links(&store.pool).await, 0);
    let index: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'trace_by_instance'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
    assert_eq!(index, 0, "the index the links replace is gone");
    assert_eq!(steps_of(&store, "a").await, [1, 2, 3]);
    assert_eq!(steps_of(&store, "b").await, [1, 2]);

    // Steps after the migration, one alone and two in a batch, follow the records before.
    store.commit(advance("a", 4)).await.unwrap();
    for done in store
        .commit_batch(&[advance("a", 5), advance("b", 3)])
        .await
    {
        done.unwrap();
    }
    assert_eq!(broken_links(&store.pool).await, 0);
    assert_eq!(steps_of(&store, "a").await, [1, 2, 3, 4, 5]);
    assert_eq!(steps_of(&store, "b").await, [1, 2, 3]);
}

#[tokio::test]
async fn a_trace_whose_links_were_broken_by_hand_reads_back_every_record_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir, "t.db").await;
    define(&store).await;
    for id in ["a", "b"] {
        store.commit(create(id)).await.unwrap();
        for version in 2..=5 {
            store.commit(advance(id, version)).await.unwrap();
        }
    }
    assert_eq!(broken_links(&store.pool).await, 0);

    let tamper = |sql: &'static str| {
        let pool = store.pool.clone();
        async move { sqlx::query(sql).execute(&pool).await.unwrap() }
    };
    // A record taken out of the middle: the links no longer reach the first record.
    tamper("DELETE FROM trace WHERE instance_id = 'a' AND seq = 3").await;
    assert_eq!(steps_of(&store, "a").await, [1, 2, 4, 5]);
    // The last record taken out: the instance names a record that is gone.
    tamper("DELETE FROM trace WHERE instance_id = 'b' AND seq = 5").await;
    assert_eq!(steps_of(&store, "b").await, [1, 2, 3, 4]);
    // KPI facts read the same records.
    let facts = store.process_facts("p", None, 10).await.unwrap();
    let counts: Vec<(String, usize)> = facts.iter().map(|(id, r)| (id.clone(), r.len())).collect();
    assert_eq!(counts, [("a".to_owned(), 4), ("b".to_owned(), 4)]);
}

#[tokio::test]
async fn a_batch_with_a_record_of_an_instance_it_does_not_write_goes_step_by_step_and_stays_linked()
{
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir, "t.db").await;
    define(&store).await;
    for id in ["a", "b", "c"] {
        store.commit(create(id)).await.unwrap();
    }
    // `a`'s step also records a step of `b` without writing `b`'s row: the set-based
    // write cannot record `b`'s last record, so the batch is written step by step.
    let mut odd = advance("a", 2);
    odd.trace.push(record("b", 2, TraceKind::Transition, None));
    for done in store.commit_batch(&[odd, advance("c", 2)]).await {
        done.unwrap();
    }
    assert_eq!(broken_links(&store.pool).await, 0);
    for id in ["a", "b", "c"] {
        assert_eq!(steps_of(&store, id).await, [1, 2], "{id}");
    }
}
