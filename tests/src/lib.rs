//! Shared helpers for drover's end-to-end tests: the real `drover` and `drover-agent`
//! binaries, real `minisign` and real `nginx`, in temporary directories on free ports.
//!
//! The binaries must be built first (`cargo build --workspace --bins`; `tests/run.sh`
//! does it). A missing external component fails the test with a message saying how to
//! install it; nothing is skipped silently.

pub mod foreign;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary (`drover` or `drover-agent`) next to this test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile> directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: build the binaries first with `cargo build --workspace --bins` (bash tests/run.sh does)",
        path.display()
    );
    path
}

/// Fails with a clear message when an external command is missing.
pub fn require(cmd: &str, package: &str) -> PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ] {
        let p = Path::new(dir).join(cmd);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{cmd} is required by this test but not installed: apt-get install {package} (bash tests/run.sh installs it)"
    );
}

/// Runs a command to completion, capturing output.
pub fn run(cmd: &Path, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cmd.display()))
}

/// Runs `drover ARGS`.
pub fn drover(args: &[&str]) -> Output {
    run(&bin("drover"), args)
}

/// Runs `drover ARGS` and asserts success.
pub fn drover_ok(args: &[&str]) -> String {
    let out = drover(args);
    assert!(out.status.success(), "drover {args:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stdout and stderr of a finished command, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A temporary publisher + cluster: keys, a source tree, a store, and an agent's
/// manifests and state directories.
pub struct Site {
    /// Root of everything (deleted on drop).
    pub dir: tempfile::TempDir,
}

impl Site {
    /// A new site with a drover key pair in `keys/`.
    pub fn new() -> Self {
        let site = Site {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        drover_ok(&["keygen", "--out", site.path("keys").to_str().unwrap()]);
        site
    }

    /// A path under the site root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A path under the site root, as a string.
    pub fn p(&self, rel: &str) -> String {
        self.path(rel).to_str().expect("utf-8 temp path").to_string()
    }

    /// Writes a file (creating parent directories).
    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Copies the repository's `examples/` into `src/`.
    pub fn with_examples(self) -> Self {
        copy_dir(&repo_root().join("examples/bundles"), &self.path("src/bundles"));
        self
    }

    /// `drover publish src --store store --key keys/drover.key EXTRA…`.
    pub fn publish(&self, extra: &[&str]) -> String {
        let (src, store, key) = (self.p("src"), self.p("store"), self.p("keys/drover.key"));
        let mut args = vec!["publish", &src, "--store", &store, "--key", &key];
        args.extend_from_slice(extra);
        drover_ok(&args)
    }

    /// Runs `drover-agent --once` for `cluster` with `labels` against `source`.
    pub fn agent(&self, source: &str, cluster: &str, labels: &[&str]) -> Output {
        self.agent_in("", source, cluster, labels)
    }

    /// [`Site::agent`] with the manifests and state directories under `dir/`, so that
    /// several clusters can share one site (`""`: the site's own `manifests` and `state`).
    pub fn agent_in(&self, dir: &str, source: &str, cluster: &str, labels: &[&str]) -> Output {
        let under = |rel: &str| self.p(&Path::new(dir).join(rel).to_string_lossy());
        let (key, sink, state) = (
            self.p("keys/drover.pub"),
            format!("dir:{}", under("manifests")),
            under("state"),
        );
        let mut args = vec![
            "--source",
            source,
            "--key",
            &key,
            "--cluster-name",
            cluster,
            "--sink",
            &sink,
            "--state-dir",
            &state,
            "--once",
        ];
        for l in labels {
            args.push("--label");
            args.push(l);
        }
        run(&bin("drover-agent"), &args)
    }

    /// The `file://` URL of the store.
    pub fn store_url(&self) -> String {
        format!("file://{}", self.p("store"))
    }

    /// Contents of the manifests directory: file name → text.
    pub fn manifests(&self) -> BTreeMap<String, String> {
        snapshot(&self.path("manifests"))
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).expect("manifests are UTF-8")))
            .collect()
    }

    /// Byte-for-byte snapshot of the manifests and state directories. `status.json` is
    /// left out: it is the agent's report, rewritten after every cycle (a refused index
    /// makes it say so), not state the next cycle depends on.
    pub fn sink_and_state(&self) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>) {
        let mut state = snapshot(&self.path("state"));
        state.remove("status.json");
        (snapshot(&self.path("manifests")), state)
    }

    /// Blob digests referenced by the store's index, per bundle, in target order.
    pub fn index_digests(&self) -> BTreeMap<String, Vec<String>> {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.path("store/index.json")).unwrap()).unwrap();
        index["bundles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let digests = b["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["digest"].as_str().unwrap().to_string());
                (b["name"].as_str().unwrap().to_string(), digests.collect())
            })
            .collect()
    }
}

impl Default for Site {
    fn default() -> Self {
        Self::new()
    }
}

/// The repository root (parent of tests/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Recursively copies a directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under `dir` (relative path → bytes); empty if `dir` is missing.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                files.insert(rel, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed on drop.
pub struct Daemon {
    child: Child,
    /// Base URL it serves.
    pub url: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` with its stdout piped and returns it with the first line it prints (the
/// daemons used here announce their address that way).
fn spawn_announcing(cmd: &mut Command, what: &str) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// Starts `drover serve STORE --listen 127.0.0.1:0` and returns it with its URL.
pub fn drover_serve(store: &Path) -> Daemon {
    let (child, line) = spawn_announcing(
        Command::new(bin("drover")).args(["serve", store.to_str().unwrap(), "--listen", "127.0.0.1:0"]),
        "drover serve",
    );
    let url = line
        .trim()
        .rsplit(" on ")
        .next()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("drover serve printed {line:?}"))
        .to_string();
    Daemon { child, url }
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts real nginx serving `root` on a free port, with a config written for the test.
pub fn nginx(root: &Path, work: &Path) -> Daemon {
    nginx_on(root, work, free_port(), "")
}

/// Starts real nginx serving `root` on `port`, with `extra` added inside its `server`
/// block (e.g. a DAV location). Calling it again with the same arguments restarts it.
/// Its access log, `work/access.log`, has one line per request:
/// `METHOD URI STATUS REQUEST_BYTES RESPONSE_BYTES` (headers included on both sides).
pub fn nginx_on(root: &Path, work: &Path, port: u16, extra: &str) -> Daemon {
    let nginx = require("nginx", "nginx-light");
    std::fs::create_dir_all(work).unwrap();
    let conf = work.join("nginx.conf");
    let w = work.display();
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {w}/nginx.pid;\nerror_log {w}/error.log;\n\
             {user}events {{ worker_connections 64; }}\n\
             http {{\n  log_format drover '$request_method $uri $status $request_length $bytes_sent';\n\
               access_log {w}/access.log drover;\n  client_body_temp_path {w}/body;\n  proxy_temp_path {w}/proxy;\n\
               fastcgi_temp_path {w}/fastcgi;\n  uwsgi_temp_path {w}/uwsgi;\n  scgi_temp_path {w}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n    root {root};\n    etag on;\n{extra}\n  }}\n}}\n",
            root = root.display(),
            user = if is_root() { "user root;\n" } else { "" },
        ),
    )
    .unwrap();
    let child = Command::new(nginx)
        .args(["-c", conf.to_str().unwrap(), "-p", work.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let daemon = Daemon {
        child,
        url: format!("http://127.0.0.1:{port}/"),
    };
    wait_for("nginx to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    daemon
}

/// Lines of an nginx access log written by [`nginx_on`] (empty when there is none yet).
pub fn access_log(work: &Path) -> Vec<String> {
    std::fs::read_to_string(work.join("access.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A running `drover-agent` daemon with its local listener on a free port. Killed on drop.
pub struct AgentDaemon {
    child: Child,
    /// Port of its local listener.
    pub port: u16,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl AgentDaemon {
    /// Starts `drover-agent ARGS --listen 127.0.0.1:0` and waits until it listens.
    pub fn start(args: &[&str]) -> AgentDaemon {
        let mut child = Command::new(bin("drover-agent"))
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("DROVER_LOG", "drover_agent=debug")
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

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Signs `file` with stock `minisign -S` and the unencrypted secret key `key`, writing
/// `FILE.minisig` next to it (as a publisher without the drover CLI would).
pub fn minisign_sign(key: &Path, file: &Path) {
    let minisign = require("minisign", "minisign");
    let out = Command::new(minisign)
        .args(["-S", "-s", key.to_str().unwrap(), "-m", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("run minisign");
    assert!(
        out.status.success(),
        "minisign -S -m {} failed: {}",
        file.display(),
        text(&out)
    );
}

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

/// A real CNCF distribution registry (Debian `docker-registry`) on a free port, storing
/// into `work/data`, logging requests to `work/registry.log`. With `htpasswd` (a file made
/// by `htpasswd -Bbn`), it requires basic auth.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Its config file (for `docker-registry garbage-collect`).
    pub config: PathBuf,
    /// The request log.
    pub log: PathBuf,
    _daemon: Daemon,
}

impl Registry {
    /// Starts the registry.
    pub fn start(work: &Path, htpasswd: Option<&Path>) -> Registry {
        Registry::start_with(work, htpasswd, "")
    }

    /// Starts the registry with `http_extra` added under its `http:` section (indented two
    /// spaces, e.g. a `tls:` block).
    pub fn start_with(work: &Path, htpasswd: Option<&Path>, http_extra: &str) -> Registry {
        let bin = require("docker-registry", "docker-registry");
        std::fs::create_dir_all(work.join("data")).unwrap();
        let port = free_port();
        let auth = htpasswd
            .map(|p| {
                format!(
                    "auth:\n  htpasswd:\n    realm: drover-test\n    path: {}\n",
                    p.display()
                )
            })
            .unwrap_or_default();
        let config = work.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: drover-test\n{http_extra}{auth}",
                work.join("data").display()
            ),
        )
        .unwrap();
        let log = work.join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(["serve", config.to_str().unwrap()])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn docker-registry");
        let daemon = Daemon {
            child,
            url: format!("http://127.0.0.1:{port}/"),
        };
        wait_for("docker-registry to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Registry {
            host: format!("127.0.0.1:{port}"),
            config,
            log,
            _daemon: daemon,
        }
    }

    /// Request lines of its access log (`"METHOD PATH HTTP/1.1" STATUS`), in order.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let start = l
                    .find("\"HEAD ")
                    .or_else(|| l.find("\"GET "))
                    .or_else(|| l.find("\"PUT "));
                let start = start.or_else(|| l.find("\"POST ")).or_else(|| l.find("\"PATCH "))?;
                let rest = &l[start + 1..];
                let (request, after) = rest.split_once('"')?;
                let status = after.split_whitespace().next().unwrap_or("");
                Some(format!("{request} {status}"))
            })
            .collect()
    }
}

/// Makes a throwaway PKI in `dir` with openssl: `ca.pem` (a private CA), `server.pem` +
/// `server.key` (for 127.0.0.1), and `client-bundle.pem` (a client certificate and its key,
/// for mutual TLS), all EC P-256, valid two days.
pub fn test_pki(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new(require("openssl", "openssl"))
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec![
        "req",
        "-x509",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=drover test CA",
    ];
    ca.extend(ec);
    openssl(&ca);
    for (name, cn) in [("server", "127.0.0.1"), ("client", "drover-client")] {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let subj = format!("/CN={cn}");
        let mut req = vec!["req", "-keyout", &key, "-out", &csr, "-subj", &subj];
        req.extend(ec);
        openssl(&req);
        std::fs::write(dir.join(&ext), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
    let client = [
        std::fs::read(dir.join("client.pem")).unwrap(),
        std::fs::read(dir.join("client.key")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("client-bundle.pem"), client).unwrap();
}

/// A sequence of published versions of one site, each kept in its own store directory,
/// and every manifests file a clean agent writes for any of them: what crash and
/// disk-full tests compare a damaged run against.
pub struct Versions {
    /// `file://` URL of each version's store, oldest first.
    pub stores: Vec<String>,
    /// For each `drover-*.yaml` file name, every content a clean run of some version wrote.
    pub allowed: BTreeMap<String, std::collections::BTreeSet<Vec<u8>>>,
    /// The manifests directory after a clean run of the last version.
    pub last: BTreeMap<String, Vec<u8>>,
}

impl Versions {
    /// Publishes `count` versions of the examples in `site` (each changes web, which gets
    /// a 32 KiB ConfigMap, and monitoring; the fourth drops monitoring, so its file becomes a tombstone), copies
    /// each store to `store-v<N>`, and applies them in order with a clean agent of
    /// `cluster` with `labels` in a scratch directory to learn what each writes.
    pub fn publish(site: &Site, count: usize, cluster: &str, labels: &[&str]) -> Versions {
        copy_dir(&repo_root().join("examples/bundles"), &site.path("src/bundles"));
        let scratch = tempfile::tempdir().unwrap();
        let (mut stores, mut allowed, mut last) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
        for v in 0..count {
            if v > 0 {
                // 32 KiB of padding: the manifest takes several pages to write (disk-full
                // tests) while its blob stays small (it compresses).
                let pad = "x".repeat(32 << 10);
                site.write(
                    "src/bundles/web/release.yaml",
                    &format!(
                        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web-release}}\ndata: {{v: \"{v}\", pad: {pad}}}\n"
                    ),
                );
            }
            if v == 3 {
                std::fs::remove_dir_all(site.path("src/bundles/monitoring")).unwrap();
            } else if site.path("src/bundles/monitoring").exists() {
                site.write(
                    "src/bundles/monitoring/release.yaml",
                    &format!(
                        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: mon-release}}\ndata: {{v: \"{v}\"}}\n"
                    ),
                );
            }
            site.publish(&[]);
            let store = site.path(&format!("store-v{v}"));
            copy_dir(&site.path("store"), &store);
            let url = format!("file://{}", store.display());
            let out = agent_once(site, &url, cluster, labels, scratch.path());
            assert_eq!(out.status.code(), Some(0), "clean run of version {v}: {}", text(&out));
            last = snapshot(&scratch.path().join("manifests"));
            for (name, bytes) in &last {
                allowed
                    .entry(name.clone())
                    .or_insert_with(std::collections::BTreeSet::new)
                    .insert(bytes.clone());
            }
            stores.push(url);
        }
        Versions { stores, allowed, last }
    }

    /// Checks what a k3s reading `manifests` and the next agent reading `state` could see
    /// after a run was cut short (`context` names it in failures): every `drover-*.yaml`
    /// is byte-for-byte what a clean run of some version wrote, any other file is a
    /// `.drover-*.tmp` leftover (which k3s ignores), and state.json, if there, is whole JSON.
    pub fn assert_consistent(&self, manifests: &Path, state: &Path, context: &str) {
        for (name, bytes) in snapshot(manifests) {
            if name.starts_with(".drover-") && name.ends_with(".tmp") {
                continue;
            }
            let known = self.allowed.get(&name).is_some_and(|set| set.contains(&bytes));
            assert!(
                known,
                "{context}: {name} is not what any version writes:\n{}",
                String::from_utf8_lossy(&bytes)
            );
        }
        if let Ok(bytes) = std::fs::read(state.join("state.json")) {
            let parsed = serde_json::from_slice::<serde_json::Value>(&bytes);
            assert!(parsed.is_ok(), "{context}: state.json is not whole JSON: {parsed:?}");
        }
    }
}

/// `drover-agent --once` of `site`'s key for `cluster` with `labels`, reading `source` and
/// writing `dir/manifests` and `dir/state`.
pub fn agent_once(site: &Site, source: &str, cluster: &str, labels: &[&str], dir: &Path) -> Output {
    agent_command(site, &[source], cluster, labels, dir).output().unwrap()
}

/// The command of [`agent_once`] reading `sources`, to add flags to, spawn or kill. `dir` may
/// be the site's own root (its `manifests/` and `state/`, as [`Site::agent`] uses).
pub fn agent_command(site: &Site, sources: &[&str], cluster: &str, labels: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(bin("drover-agent"));
    for source in sources {
        cmd.args(["--source", source]);
    }
    cmd.args(["--key", &site.p("keys/drover.pub"), "--cluster-name", cluster])
        .arg("--sink")
        .arg(format!("dir:{}", dir.join("manifests").display()))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--once", "--listen", "off"]);
    for l in labels {
        cmd.args(["--label", l]);
    }
    cmd
}

/// A small tmpfs mounted for one test (a disk that can be filled), unmounted on drop.
/// Mounting needs root (CAP_SYS_ADMIN); without it the test fails saying so.
pub struct Tmpfs {
    /// The mount point.
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it, e.g. `1m`) at `path`.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let mount = require("mount", "mount");
        let out = Command::new(mount)
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "drover-test"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test fills a small tmpfs and must run as root to mount it (mount -t tmpfs): {}",
            text(&out)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Fills the file system with a file `.filler` until exactly `free` bytes (a multiple of
    /// the page size) are left; returns the filler's path.
    pub fn fill_leaving(&self, free: u64) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join(".filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 << 10];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling {}: {e}", filler.display()),
            }
        }
        file.set_len(written.saturating_sub(free)).unwrap();
        file.sync_all().unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes a [`snapshot`] back under `dir`.
pub fn restore(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// Lower-case hex sha256 of `bytes` (as blob file names and digests carry it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The in-repo Kubernetes API double (`kube-api-double`) on a free port, killed on drop,
/// with a kubeconfig for it in `dir` and stock kubectl to talk to it.
pub struct KubeApi {
    _daemon: Daemon,
    /// Path of the kubeconfig pointing at the double.
    pub kubeconfig: PathBuf,
}

impl KubeApi {
    /// Starts the double; its kubeconfig is written to `dir/kubeconfig` (`dir` is created).
    pub fn start(dir: &Path) -> KubeApi {
        KubeApi::start_with(dir, &[])
    }

    /// Starts the double with `extra` flags (e.g. `--auto-ready`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> KubeApi {
        std::fs::create_dir_all(dir).unwrap();
        let (child, line) = spawn_announcing(
            Command::new(bin("kube-api-double"))
                .args(["--listen", "127.0.0.1:0"])
                .args(extra)
                .stderr(Stdio::null()),
            "kube-api-double",
        );
        let server = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("kube-api-double printed {line:?}"))
            .to_string();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"{server}\"}}\n\
                 contexts:\n- name: double\n  context: {{cluster: double, user: nobody}}\ncurrent-context: double\n\
                 users:\n- name: nobody\n  user: {{}}\n"
            ),
        )
        .unwrap();
        KubeApi {
            _daemon: Daemon { child, url: server },
            kubeconfig,
        }
    }

    /// Runs stock kubectl against the double (a throwaway cache directory beside the
    /// kubeconfig, so ~/.kube is never used).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let cache = self.kubeconfig.with_file_name("kube-cache");
        Command::new(require("kubectl", "kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .output()
            .expect("run kubectl")
    }
}

/// The fully static `drover-agent` (x86_64, glibc linked in, no NSS), built once per test
/// process by `tests/build-static.sh` (a no-op when it is up to date; tests/run.sh builds
/// it before the tests).
pub fn static_agent() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo_root().join("tests/build-static.sh"))
                .output()
                .expect("run tests/build-static.sh");
            assert!(out.status.success(), "tests/build-static.sh failed: {}", text(&out));
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}
