//! Reading one counter from a running service's Prometheus endpoint; shared
//! by the tests (`common`) and the end-to-end benchmark (`#[path]`).

/// One counter from the binary's `/metrics` at `api`, if it answers.
pub fn scrape(api: std::net::SocketAddr, metric: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(metric))
        .and_then(|v| v.trim().parse().ok())
}
