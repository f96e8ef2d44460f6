//! A TCP proxy on 127.0.0.1 that counts the HTTP/1.1 requests passing
//! through it by method: what the service actually received, to hold the
//! store's own request counters (kept per service model) against. Requests
//! must carry `Content-Length` bodies (opendal's always do); a chunked
//! request makes the counts unreliable, and [`CountingProxy::counts`]
//! panics rather than report them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The proxy; its threads live until the process exits.
pub struct CountingProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    chunked: Arc<AtomicBool>,
}

impl CountingProxy {
    /// Starts a proxy in front of `upstream` (`http://host:port[/…]`).
    pub fn start(upstream: &str) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let upstream = upstream
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let chunked = Arc::new(AtomicBool::new(false));
        let (c, ch) = (Arc::clone(&counts), Arc::clone(&chunked));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (Ok(c_in), Ok(s_out)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let (c, ch) = (Arc::clone(&c), Arc::clone(&ch));
                std::thread::spawn(move || requests(c_in, s_out, &c, &ch));
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server, client);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CountingProxy {
            endpoint,
            counts,
            chunked,
        }
    }

    /// Requests received so far, by method (`PUT`, `POST`, `GET`, …).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        assert!(
            !self.chunked.load(Ordering::Relaxed),
            "a chunked request went through the counting proxy: counts are unreliable"
        );
        self.counts.lock().expect("counts lock").clone()
    }

    /// Requests with `method` received so far.
    pub fn count(&self, method: &str) -> u64 {
        self.counts().get(method).copied().unwrap_or(0)
    }
}

/// Forwards client bytes to the server, counting each request head.
fn requests(
    mut from: TcpStream,
    mut to: TcpStream,
    counts: &Mutex<BTreeMap<String, u64>>,
    chunked: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 << 10];
    // Bytes of the stream not yet accounted for, and body bytes still due.
    let mut pending: Vec<u8> = Vec::new();
    let mut body_left: usize = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if chunked.load(Ordering::Relaxed) {
            continue;
        }
        let mut data = &buf[..n];
        if pending.is_empty() {
            let skip = body_left.min(data.len());
            body_left -= skip;
            data = &data[skip..];
        }
        pending.extend_from_slice(data);
        loop {
            if body_left > 0 {
                let take = body_left.min(pending.len());
                pending.drain(..take);
                body_left -= take;
                if body_left > 0 {
                    break;
                }
            }
            let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            let head = String::from_utf8_lossy(&pending[..end]).to_string();
            pending.drain(..end + 4);
            let method = head.split(' ').next().unwrap_or_default().to_string();
            *counts
                .lock()
                .expect("counts lock")
                .entry(method)
                .or_insert(0) += 1;
            for line in head.lines().skip(1) {
                let Some((k, v)) = line.split_once(':') else {
                    continue;
                };
                if k.eq_ignore_ascii_case("content-length") {
                    body_left = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.to_ascii_lowercase().contains("chunked")
                {
                    chunked.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
