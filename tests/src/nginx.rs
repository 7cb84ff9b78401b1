//! Real nginx serving a directory, with an access log the tests read.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::net::free_port;
use crate::process::{is_root, require, wait_for, Daemon};

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
    let mut daemon = daemon;
    let pid = daemon.child.id().to_string();
    let pid_file = work.join("nginx.pid");
    // nginx writes its pid file only after it has bound its port: until then a connection
    // may reach whoever else took the port (see `free_port`).
    wait_for("nginx to listen", Duration::from_secs(10), || {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            let log = std::fs::read_to_string(work.join("error.log")).unwrap_or_default();
            panic!("nginx on port {port} exited ({status}); the port may be taken:\n{log}");
        }
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == pid)
            && TcpStream::connect(("127.0.0.1", port)).is_ok()
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
