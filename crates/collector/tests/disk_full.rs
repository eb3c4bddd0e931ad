//! A full disk while collecting: the error says so and what to do, and
//! nothing committed before is lost.

use collector::db::Db;
use collector::fake::sample_record;

#[test]
fn a_full_database_says_the_disk_is_full_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(&dir.path().join("c.db")).unwrap();
    db.upsert_device("D", None, None, 0).unwrap();
    let first: Vec<_> = (1..=50).map(|s| sample_record(s, 1)).collect();
    assert_eq!(db.insert_batch("D", &first, 1).unwrap(), 50);
    // The disk fills up: SQLite may not grow the file beyond its size now.
    let pages: i64 = db
        .conn()
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    db.conn()
        .pragma_update(None, "max_page_count", pages)
        .unwrap();
    let more: Vec<_> = (51..=5000).map(|s| sample_record(s, 1)).collect();
    let e = db.insert_batch("D", &more, 2).unwrap_err().to_string();
    assert!(e.contains("disk is full"), "{e}");
    assert!(e.contains("free some space"), "{e}");
    assert!(e.contains("run again"), "{e}");
    // Nothing of the failed batch, everything of the first.
    assert_eq!(db.count(None).unwrap(), 50);
    assert_eq!(db.last_seq("D").unwrap(), 50);
    // Space again: the same batch goes in.
    db.conn()
        .pragma_update(None, "max_page_count", 1_000_000_000i64)
        .unwrap();
    assert_eq!(db.insert_batch("D", &more, 3).unwrap(), 4950);
}

#[test]
fn other_database_errors_get_no_disk_hint() {
    let e = collector::Error::Db(rusqlite::Error::QueryReturnedNoRows).to_string();
    assert_eq!(e, "database: Query returned no rows");
}
