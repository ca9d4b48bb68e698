//! `download` against a mirror on 127.0.0.1 that serves good, corrupt and
//! missing files.

use crate::common::Mirror;
use flate2::write::GzEncoder;
use flate2::Compression;
use md5::{Digest, Md5};
use scratchnet::data::download::{download, Silent, Source};
use std::io::Write;

/// Gzip of `bytes` at compression `level`.
fn gz(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Two files gzipped at `level`, and their sources (the content's MD5).
fn files_at(level: u32) -> (Vec<(String, Vec<u8>)>, Vec<Source>) {
    let content: Vec<(String, Vec<u8>)> = vec![
        ("a.gz".into(), (0..5000u32).map(|i| (i * 7) as u8).collect()),
        ("b.gz".into(), b"labels".to_vec()),
    ];
    let sources = content
        .iter()
        .map(|(n, b)| Source {
            name: n.clone(),
            md5: scratchnet::data::hex(&Md5::digest(b)),
        })
        .collect();
    let files = content
        .into_iter()
        .map(|(n, b)| (n, gz(&b, level)))
        .collect();
    (files, sources)
}

fn files() -> (Vec<(String, Vec<u8>)>, Vec<Source>) {
    files_at(6)
}

#[test]
fn corrupt_and_missing_files_fall_through_to_the_next_mirror() {
    let (files, sources) = files();
    let server = Mirror::start(files.clone());
    let dest = tempfile::tempdir().unwrap();
    let mirrors = vec![
        format!("{}/bad/", server.base),
        format!("{}/good/", server.base),
    ];
    let paths = download(dest.path(), &sources, &mirrors, &mut Silent).unwrap();
    for ((_, bytes), p) in files.iter().zip(&paths) {
        assert_eq!(&std::fs::read(p).unwrap(), bytes);
    }
    // Nothing else is left in the directory (no partial files).
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 2);
    // A second run finds them present and fetches nothing (the server is gone).
    drop(server);
    download(
        dest.path(),
        &sources,
        &["http://127.0.0.1:9/".to_string()],
        &mut Silent,
    )
    .unwrap();
}

#[test]
fn no_good_mirror_is_a_clear_error_and_leaves_no_file() {
    let (files, sources) = files();
    let server = Mirror::start(files);
    let dest = tempfile::tempdir().unwrap();
    let mirrors = vec![
        format!("{}/bad/", server.base),
        format!("{}/missing/", server.base),
    ];
    let e = format!(
        "{:#}",
        download(dest.path(), &sources, &mirrors, &mut Silent).unwrap_err()
    );
    assert!(
        e.contains("a.gz") && e.contains("corrupt") && e.contains("404"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(dest.path()).unwrap().count(),
        0,
        "no partial or corrupt file remains"
    );
}

#[test]
fn the_content_is_checked_not_the_gzip_wrapper() {
    // Compressed anew, at another level: other bytes, the same files.
    let (fresh, sources) = files_at(1);
    assert_ne!(fresh[0].1, files().0[0].1);
    let server = Mirror::start(fresh);
    let dest = tempfile::tempdir().unwrap();
    download(
        dest.path(),
        &sources,
        &[format!("{}/good/", server.base)],
        &mut Silent,
    )
    .unwrap();

    // A valid gzip of other content is refused by its checksum.
    let (mut other, _) = files_at(6);
    other[0].1 = gz(b"not the images", 6);
    let server = Mirror::start(other);
    let dest = tempfile::tempdir().unwrap();
    let e = format!(
        "{:#}",
        download(
            dest.path(),
            &sources,
            &[format!("{}/good/", server.base)],
            &mut Silent
        )
        .unwrap_err()
    );
    assert!(e.contains("a.gz") && e.contains("checksum mismatch"), "{e}");
}

/// `scratchnet download` with no mirror reachable names each mirror's
/// failure once, and says what to do.
#[test]
fn offline_download_says_once_per_mirror_what_failed_and_what_to_do() {
    let dest = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scratchnet"))
        .args(["download", "--dest"])
        .arg(dest.path())
        .env(
            "SCRATCHNET_MIRROR",
            "http://127.0.0.1:9/ http://127.0.0.1:10/",
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    for port in [9, 10] {
        let url = format!("http://127.0.0.1:{port}/train-images-idx3-ubyte.gz");
        assert_eq!(err.matches(&url).count(), 1, "{url} once in: {err}");
    }
    assert!(
        err.contains("what to do:") && err.contains("--mirror URL") && err.contains("--data DIR"),
        "{err}"
    );
}
