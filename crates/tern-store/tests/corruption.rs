//! A damaged, foreign, newer, unreadable or busy store stops the open with an error that names
//! the file, the problem and what to do, and the file is left as it was.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod util;

use std::fs;
use std::path::{Path, PathBuf};

use tern_core::StoreOp;
use tern_store::StoreError;
use util::*;

/// A closed store with some content; returns the database file.
fn filled(dir: &Path) -> PathBuf {
    let (store, _) = open(dir);
    let mut ops = vec![session("client")];
    for i in 0..100 {
        let payload = format!("MARKER-{i:04}-{}", "p".repeat(1000));
        ops.push(StoreOp::PutRetained(message(&format!("t/{i}"), &payload)));
    }
    write(&store, ops);
    store.close().unwrap();
    dir.join("tern.db")
}

fn open_err(dir: &Path) -> StoreError {
    match tern_store::open(dir, options()) {
        Ok(_) => panic!("opened a store that should not open"),
        Err(e) => e,
    }
}

/// The error names the file and says what to do; the file is unchanged.
fn check(dir: &Path, file: &Path, fragment: &str) -> String {
    let before = fs::read(file).unwrap();
    let e = open_err(dir);
    let text = e.to_string();
    eprintln!("{text}");
    assert!(text.starts_with(&file.display().to_string()), "{text}");
    assert!(text.contains(fragment), "{text}");
    assert_eq!(fs::read(file).unwrap(), before, "the file was changed");
    text
}

const ADVICE: &str = "restore the data directory from a backup, or move the store's files away";

#[test]
fn a_truncated_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled(dir.path());
    let len = fs::metadata(&file).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let text = check(
        dir.path(),
        &file,
        "the store is damaged: the file is truncated",
    );
    assert!(text.contains(ADVICE), "{text}");
    assert!(matches!(open_err(dir.path()), StoreError::Corrupt { .. }));
}

#[test]
fn a_file_truncated_inside_a_page_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled(dir.path());
    let len = fs::metadata(&file).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len - 100).unwrap();
    drop(f);
    check(dir.path(), &file, "the file is truncated");
}

#[test]
fn an_empty_file_is_reported_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled(dir.path());
    fs::write(&file, b"").unwrap();
    let text = check(dir.path(), &file, "the file is empty");
    assert!(text.contains(ADVICE), "{text}");
}

#[test]
fn a_flipped_byte_in_a_value_fails_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled(dir.path());
    let mut bytes = fs::read(&file).unwrap();
    // Every copy: a stale one may survive in a free page, and flipping only that one would
    // change nothing the store reads.
    let copies: Vec<usize> = bytes
        .windows(11)
        .enumerate()
        .filter(|(_, w)| *w == b"MARKER-0042")
        .map(|(at, _)| at)
        .collect();
    assert!(!copies.is_empty(), "payload in the file");
    for at in copies {
        bytes[at + 7] ^= 0x01;
    }
    fs::write(&file, &bytes).unwrap();
    let text = check(dir.path(), &file, "does not match its checksum");
    assert!(text.contains("message"), "{text}");
    assert!(text.contains(ADVICE), "{text}");
}

#[test]
fn a_damaged_page_fails_the_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled(dir.path());
    let mut bytes = fs::read(&file).unwrap();
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65_536,
        n => usize::from(n),
    };
    // Every b-tree page after the first: an impossible page type.
    let pages = bytes.len() / page_size;
    for p in 1..pages {
        let o = p * page_size;
        if matches!(bytes[o], 0x02 | 0x05 | 0x0A | 0x0D) {
            bytes[o] = 0x6B;
        }
    }
    fs::write(&file, &bytes).unwrap();
    let e = check(dir.path(), &file, "the store is damaged");
    assert!(e.contains(ADVICE), "{e}");
}

#[test]
fn a_damaged_header_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled(dir.path());
    let mut bytes = fs::read(&file).unwrap();
    bytes[3] ^= 0xFF;
    fs::write(&file, &bytes).unwrap();
    let text = check(dir.path(), &file, "this is not a Tern store");
    assert!(text.contains("restore it from a backup"), "{text}");
}

#[test]
fn another_kind_of_file_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tern.db");
    fs::write(&file, "x".repeat(4096)).unwrap();
    check(dir.path(), &file, "this is not a Tern store");
}

#[test]
fn another_programs_sqlite_database_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tern.db");
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    check(
        dir.path(),
        &file,
        "it is an SQLite database but not a Tern store",
    );
}

#[test]
fn a_newer_format_version_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled(dir.path());
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute_batch("PRAGMA user_version = 99;").unwrap();
    drop(conn);
    let text = check(
        dir.path(),
        &file,
        "the store has format version 99, and this Tern reads version 1",
    );
    assert!(text.contains("written by a newer Tern"), "{text}");
    assert!(matches!(
        open_err(dir.path()),
        StoreError::Version { found: 99, .. }
    ));
}

#[test]
fn an_older_format_version_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = filled(dir.path());
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute_batch("PRAGMA user_version = 0;").unwrap();
    drop(conn);
    check(dir.path(), &file, "written by an older Tern");
}

#[test]
fn a_store_in_use_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let e = open_err(dir.path());
    assert!(matches!(e, StoreError::InUse { .. }), "{e}");
    assert!(e.to_string().contains("in use by another process"), "{e}");
    store.close().unwrap();
    drop(store);
    // Free again once closed.
    let (store, _) = open(dir.path());
    store.close().unwrap();
}

#[test]
fn an_unreadable_store_is_a_permission_error() {
    use std::os::unix::fs::PermissionsExt;
    if is_root() {
        eprintln!("skipped: root ignores file permissions");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = filled(dir.path());
    fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).unwrap();
    let e = open_err(dir.path());
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(e, StoreError::PermissionDenied { .. }), "{e}");
    let text = e.to_string();
    assert!(text.starts_with(&file.display().to_string()), "{text}");
    assert!(text.contains("permission denied"), "{text}");
}

#[test]
fn a_data_directory_that_is_a_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let not_dir = dir.path().join("data");
    fs::write(&not_dir, b"file").unwrap();
    let e = open_err(&not_dir);
    let text = e.to_string();
    assert!(text.starts_with(&not_dir.display().to_string()), "{text}");
    assert!(text.contains("cannot create the data directory"), "{text}");
}

#[test]
fn a_crash_during_creation_leaves_no_half_store() {
    // A leftover of an interrupted creation is replaced; the store itself was never there.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("tern.db.new"), b"half").unwrap();
    let (store, snap) = open(dir.path());
    assert!(snap.sessions.is_empty());
    assert!(!dir.path().join("tern.db.new").exists());
    store.close().unwrap();
}
