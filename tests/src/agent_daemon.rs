//! A running `drover-agent` daemon: its listener port, its log, signals and `POST /sync`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::http;
use crate::process::wait_for;

/// A running `drover-agent` daemon with its local listener on a free port. Killed on drop.
pub struct AgentDaemon {
    child: Child,
    /// Port of its local listener.
    pub port: u16,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl AgentDaemon {
    /// Spawns `cmd` (an agent told to listen on 127.0.0.1:0, as [`crate::AgentRun::start`]
    /// builds it) and waits until it listens.
    pub(crate) fn spawn(mut cmd: Command) -> AgentDaemon {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn drover-agent");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let log = std::sync::Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port.parse::<u16>().unwrap());
                }
                log.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("drover-agent did not start listening: {}", stderr.lock().unwrap()));
        AgentDaemon { child, port, stderr }
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `POST /sync`: runs a cycle and returns its JSON summary once it is done.
    pub fn sync(&self) -> serde_json::Value {
        let (status, body) = http(self.port, "POST", "/sync");
        assert_eq!(status, 200, "POST /sync: {body}\n{}", self.log());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("POST /sync body {body:?}: {e}"))
    }

    /// `GET path` on the local listener: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http(self.port, "GET", path)
    }

    /// Waits until the first cycle has finished (`/status` answers).
    pub fn wait_first_cycle(&self) {
        wait_for("the first cycle", Duration::from_secs(60), || {
            self.get("/status").0 == 200
        });
    }

    /// Sends `signal` (e.g. "TERM", "KILL", "HUP") with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Waits for the process to exit and returns its exit code (None when killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "agent did not exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
