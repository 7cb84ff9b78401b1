//! A throwaway PKI made with openssl, for TLS and mutual-TLS tests.

use std::path::Path;
use std::process::Command;

use crate::process::{require, text};

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
