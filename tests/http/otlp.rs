//! Trace export (`otlp-endpoint`): a real server sends its request spans
//! over OTLP/HTTP (protobuf) to a collector — here a minimal one in the
//! test that records every POST it receives.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::server::{Server, random_hex, send};

/// One request the collector received: (request line, content type, body).
type Received = (String, String, Vec<u8>);

/// Accepts OTLP/HTTP posts on a free port and answers 200 with an empty
/// body (an empty `ExportTraceServiceResponse`).
fn collector() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind collector");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut out = stream;
                // Several requests may share one connection.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut content_type) = (0usize, String::new());
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            match k.trim().to_ascii_lowercase().as_str() {
                                "content-length" => length = v.trim().parse().unwrap_or(0),
                                "content-type" => content_type = v.trim().to_string(),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    log.lock().unwrap_or_else(|e| e.into_inner()).push((
                        line.trim_end().to_string(),
                        content_type,
                        body,
                    ));
                    let _ = out.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (url, seen)
}

#[test]
fn request_spans_are_exported_over_otlp_http() {
    let (url, seen) = collector();
    let mut server = Server::start_with(&["--otlp-endpoint", &url]);
    let request_id = format!("otlp-{}", random_hex(8));
    let resp = send(
        server
            .client()
            .get(format!("{}/healthz", server.base_url()))
            .header("X-Request-Id", &request_id),
    );
    assert_eq!(resp.status().as_u16(), 200);
    // A graceful stop flushes the batch.
    let status = server.stop().expect("server ran");
    assert!(status.success(), "clean exit: {}", server.stderr_tail());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let span = got.iter().find(|(_, _, body)| {
            body.windows(request_id.len())
                .any(|w| w == request_id.as_bytes())
        });
        if let Some((line, content_type, body)) = span {
            assert_eq!(line, "POST /v1/traces HTTP/1.1");
            assert_eq!(content_type, "application/x-protobuf");
            for field in [&b"eden-cas"[..], b"request", b"/healthz"] {
                assert!(
                    body.windows(field.len()).any(|w| w == field),
                    "{} in the exported span",
                    String::from_utf8_lossy(field)
                );
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no span with the request id reached the collector: {:?}",
            got.iter().map(|r| &r.0).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_otlp_endpoint_is_refused_naming_the_setting() {
    for bad in [
        "ftp://collector:4318",
        "http://user:pw@collector:4318",
        "http://",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_eden-cas"))
            .args([
                "check-config",
                "--data-dir",
                "/nonexistent/eden",
                "--otlp-endpoint",
                bad,
            ])
            .output()
            .expect("run eden-cas");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}");
        assert!(stderr.contains("otlp-endpoint"), "{bad}: {stderr}");
        assert!(
            !stderr.contains("pw@"),
            "the URL's secret is not echoed: {stderr}"
        );
    }
}
