//! Reading one counter from a running service's Prometheus endpoint; shared
//! by the tests (`common`) and the end-to-end benchmark (`#[path]`).

/// One counter from the binary's `/metrics` at `api`, if it answers.
pub fn scrape(api: std::net::SocketAddr, metric: &str) -> Option<u64> {
    get(api, "/metrics")?
        .lines()
        .find_map(|l| l.strip_prefix(metric))
        .and_then(|v| v.trim().parse().ok())
}

/// The body of a plain GET of `path` at `api`, blocking (for wait loops
/// outside async code), if it answers.
#[allow(dead_code)] // not every bench or test reads more than a counter
pub fn get(api: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(
        text.split_once("\r\n\r\n")
            .map_or(text.clone(), |(_, b)| b.to_string()),
    )
}
