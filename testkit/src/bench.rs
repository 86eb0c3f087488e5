//! What the benches share: [`Figures`] for a run of timed requests, and
//! [`echo_server`], the bare HTTP server a bench measures an endpoint
//! against in the same run. Timing is only ever reported, never asserted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Requests per second and the median and 99th-percentile latency.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Figures {
    /// The figures of `n` requests that took `total` in all, with `lat` the
    /// latency of each (any order). Percentiles are by rank, `lat[len * p]`.
    pub fn of(n: usize, total: Duration, mut lat: Vec<Duration>) -> Figures {
        assert!(!lat.is_empty(), "no latencies to make figures of");
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        Figures {
            rate: n as f64 / total.as_secs_f64(),
            p50: pct(0.50),
            p99: pct(0.99),
        }
    }
}

/// A bare tiny_http server on 127.0.0.1 that answers each request's body as
/// `{"echo": BODY}` on its receiving thread, nothing else. Stop it with
/// `unblock()` on the server, then join the thread.
pub fn echo_server() -> (Arc<tiny_http::Server>, SocketAddr, JoinHandle<()>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("echo server"));
    let addr = server.server_addr().to_ip().expect("echo address");
    let s = server.clone();
    let thread = std::thread::spawn(move || {
        let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
            .expect("header");
        for mut req in s.incoming_requests() {
            let mut body = String::new();
            let _ = req.as_reader().read_to_string(&mut body);
            let reply = serde_json::json!({ "echo": body }).to_string();
            let _ =
                req.respond(tiny_http::Response::from_string(reply).with_header(header.clone()));
        }
    });
    (server, addr, thread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_rank_the_latencies() {
        let lat: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let f = Figures::of(100, Duration::from_secs(2), lat);
        assert_eq!(f.rate, 50.0);
        assert_eq!(f.p50, Duration::from_millis(51));
        assert_eq!(f.p99, Duration::from_millis(100));
    }
}
