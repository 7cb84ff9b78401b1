//! Loopback networking: free ports and a minimal HTTP/1.1 client.

use std::net::TcpStream;

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it next). Another
/// process can take it in between: servers started on it check that they, and not
/// someone else, hold it ([`nginx_on`](crate::nginx::nginx_on), the registry), and an
/// address that must stay unreachable is a [`DownPort`], not a free port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A 127.0.0.1 port that refuses connections for as long as this value lives, and that
/// nothing can start listening on meanwhile ("a source that is down"): the local end of a
/// loopback connection this process holds open. The port is bound, so the kernel never
/// hands it to another `bind(…:0)` (every free port of every test comes from there), and
/// nothing listens on it, so a connection to it is refused at once.
pub struct DownPort {
    /// The port.
    pub port: u16,
    _client: TcpStream,
    _server: TcpStream,
}

/// A [`DownPort`].
pub fn down_port() -> DownPort {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    DownPort {
        port: client.local_addr().unwrap().port(),
        _client: client,
        _server: server,
    }
}

/// A minimal HTTP/1.1 request to 127.0.0.1:`port`: (status, body).
pub fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sends `GET PREFIX/.drover-test-mark/N` (a fresh N) to 127.0.0.1:`port` and waits, up
/// to 10 s, until the server's access log (`read` returns its lines) holds it. Returns the
/// number of lines up to and including the mark.
///
/// A server logs a request after answering it, so a client can see its answer before the
/// log line exists. Every request that was answered before the mark was sent is logged
/// before the mark is (one nginx worker handles them in order), so lines before a mark are
/// complete and lines after it belong to the next step.
pub fn mark_log(port: u16, prefix: &str, read: impl Fn() -> Vec<String>) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static MARKS: AtomicUsize = AtomicUsize::new(0);
    let n = MARKS.fetch_add(1, Ordering::Relaxed);
    let mark = format!("{prefix}/.drover-test-mark/{n} ");
    http(port, "GET", mark.trim_end());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(at) = read().iter().position(|l| l.contains(&mark)) {
            return at + 1;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the access log never showed {mark}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The access-log lines between `mark` (from [`mark_log`]) and a new mark placed now: every
/// request answered since `mark`, none from before it, and no mark lines.
pub fn log_since(port: u16, prefix: &str, read: impl Fn() -> Vec<String>, mark: usize) -> Vec<String> {
    let end = mark_log(port, prefix, &read);
    read()[mark..end]
        .iter()
        .filter(|l| !l.contains("/.drover-test-mark/"))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_port_refuses_connections_and_cannot_be_listened_on() {
        let down = down_port();
        let err = TcpStream::connect(("127.0.0.1", down.port)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        let taken = std::net::TcpListener::bind(("127.0.0.1", down.port)).unwrap_err();
        assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse, "{taken}");
    }
}
