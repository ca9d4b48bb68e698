//! A file mirror over HTTP for the download tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A mirror on 127.0.0.1: serves `GET /good/NAME` with the file's bytes,
/// `/bad/NAME` with them corrupted, and 404 for the rest, until dropped.
pub struct Mirror {
    pub base: String,
    stop: Arc<AtomicBool>,
}

impl Mirror {
    pub fn start(files: Vec<(String, Vec<u8>)>) -> Mirror {
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
                    } else if path == format!("/bad/{name}") {
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
        Mirror { base, stop }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.base.trim_start_matches("http://"));
    }
}
