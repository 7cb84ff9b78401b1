//! A deliberately bad HTTP server: slow, silent or cut-off answers chosen per path.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// How [`FaultyServer`] answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Serve the file (200) or 404, promptly.
    Normal,
    /// Send the headers, then the body one byte every 100 ms (slowloris).
    Trickle,
    /// Read the request and never answer.
    Silent,
    /// Send the headers (with the full Content-Length) and half the body, then drop the
    /// connection: the client sees the body end early, as when a link or proxy resets.
    Reset,
}

/// A deliberately bad HTTP server serving a store directory: each request's path is
/// passed to a rule that picks its [`Behaviour`]. Records the paths it was asked for.
pub struct FaultyServer {
    /// Base URL.
    pub url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FaultyServer {
    /// Starts serving `root` on a free port; threads end with the test process.
    pub fn start(root: &Path, rule: fn(&str) -> Behaviour) -> FaultyServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (root, seen) = (root.to_path_buf(), std::sync::Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, seen) = (root.clone(), std::sync::Arc::clone(&seen));
                std::thread::spawn(move || serve_faulty(stream, &root, rule, &seen));
            }
        });
        FaultyServer { url, requests }
    }

    /// Paths requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve_faulty(stream: TcpStream, root: &Path, rule: fn(&str) -> Behaviour, seen: &std::sync::Mutex<Vec<String>>) {
    use std::io::Write;
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut header = String::new();
        while reader.read_line(&mut header).unwrap_or(0) > 2 {
            header.clear();
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
        seen.lock().unwrap().push(path.clone());
        let body = std::fs::read(root.join(path.trim_start_matches('/')));
        match (rule(&path), body) {
            (Behaviour::Silent, _) => {
                std::thread::sleep(Duration::from_secs(3600));
                return;
            }
            (Behaviour::Reset, body) => {
                let body = body.unwrap_or_else(|_| vec![b'x'; 1 << 20]);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = out
                    .write_all(head.as_bytes())
                    .and_then(|()| out.write_all(&body[..body.len() / 2]))
                    .and_then(|()| out.flush());
                let _ = out.shutdown(std::net::Shutdown::Both);
                return;
            }
            (Behaviour::Trickle, body) => {
                let body = body.unwrap_or_else(|_| vec![b'x'; 1 << 20]);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                if out.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for byte in body {
                    std::thread::sleep(Duration::from_millis(100));
                    if out.write_all(&[byte]).and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
            }
            (Behaviour::Normal, Ok(body)) => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                if out
                    .write_all(head.as_bytes())
                    .and_then(|()| out.write_all(&body))
                    .is_err()
                {
                    return;
                }
            }
            (Behaviour::Normal, Err(_)) => {
                if out
                    .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
