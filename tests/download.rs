//! `download` against an HTTP server on 127.0.0.1 that serves good, corrupt
//! and missing files.

use md5::{Digest, Md5};
use scratchnet::data::download::{download, Silent, Source};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Serves `GET /good/NAME` with the good bytes, `/bad/NAME` with corrupt
/// bytes for "a.gz" and 404 for the rest, until dropped.
struct Server {
    base: String,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(files: Vec<(String, Vec<u8>)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut line = String::new();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let body = files.iter().find_map(|(name, bytes)| {
                    if path == format!("/good/{name}") {
                        Some(bytes.clone())
                    } else if path == format!("/bad/{name}") && name == "a.gz" {
                        Some(bytes.iter().map(|b| b ^ 1).collect())
                    } else {
                        None
                    }
                });
                let _ = match body {
                    Some(b) => conn.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()).as_bytes()).and_then(|_| conn.write_all(&b)),
                    None => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            }
        });
        Server { base, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.base.trim_start_matches("http://"));
    }
}

fn files() -> (Vec<(String, Vec<u8>)>, Vec<Source>) {
    let files: Vec<(String, Vec<u8>)> = vec![
        ("a.gz".into(), (0..5000u32).map(|i| (i * 7) as u8).collect()),
        ("b.gz".into(), b"labels".to_vec()),
    ];
    let sources = files
        .iter()
        .map(|(n, b)| Source {
            name: n.clone(),
            md5: scratchnet::data::hex(&Md5::digest(b)),
        })
        .collect();
    (files, sources)
}

#[test]
fn corrupt_and_missing_files_fall_through_to_the_next_mirror() {
    let (files, sources) = files();
    let server = Server::start(files.clone());
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
    let server = Server::start(files);
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
        e.contains("a.gz") && e.contains("checksum mismatch") && e.contains("404"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(dest.path()).unwrap().count(),
        0,
        "no partial or corrupt file remains"
    );
}
