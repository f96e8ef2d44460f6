//! Raw HTTP/1.1 over a TCP socket, for the clients no HTTP library will
//! impersonate: one that stops mid-body, one that waits for
//! `100 Continue`, one that keeps the socket open after sending too much.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::server::Server;

/// A connection to the server.
pub struct Raw {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// A response head: status code and lowercase header lines.
#[derive(Debug)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// `name: value` lines, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Raw {
    /// Connects to `server`.
    pub fn connect(server: &Server) -> Raw {
        let addr = server.base_url().trim_start_matches("http://").to_string();
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends a request head: `method path`, then `headers`, then the blank line.
    pub fn head(&mut self, method: &str, path: &str, headers: &[(&str, String)]) {
        let mut h = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str("\r\n");
        self.stream.write_all(h.as_bytes()).expect("write head");
    }

    /// Sends body bytes; a server that already answered and closed may
    /// refuse them, which is not an error here.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Sends `bytes` as one chunk of a chunked body.
    pub fn send_chunk(&mut self, bytes: &[u8]) -> bool {
        let mut c = format!("{:x}\r\n", bytes.len()).into_bytes();
        c.extend_from_slice(bytes);
        c.extend_from_slice(b"\r\n");
        self.send(&c)
    }

    /// Reads the next response head, waiting at most `timeout`; `None` on
    /// timeout or when the connection closed first.
    pub fn read_head(&mut self, timeout: Duration) -> Option<Head> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = text.split("\r\n");
                let status = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .and_then(|s| s.parse().ok())
                    .expect("status line");
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                return Some(Head { status, headers });
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// Reads until the server closes the connection; true if it did
    /// within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 8192];
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                // Reset: closed.
                Err(_) => return true,
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The headers every `/cas/v1/` or `/v0/` request of these tests carries.
pub fn std_headers(exp: &str, bearer: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Authorization", format!("Bearer {bearer}")),
        ("X-Eden-Experiment-Id", exp.to_string()),
    ]
}
