//! Every edge CPU: the fully static agent cross-built for arm64 and armv7
//! (`tests/build-static.sh TARGET`) runs under qemu-user-static, applies a `file://` store
//! exactly as the x86_64 agent does, and resolves a store's name through `/etc/hosts`
//! alone in an empty chroot, as distribution.rs checks for x86_64.

use drover_e2e::foreign::{chroot_foreign, foreign_agent, install_in_chroot, run_foreign, Arch};
use drover_e2e::{bin, drover_serve, require, run, snapshot, text, AgentRun, Site};

const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];

/// A site with the examples published, and the manifests the x86_64 (dynamic) agent
/// writes for site-7 from it in `manifests/`: what every foreign agent must write too.
fn published_site() -> Site {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let out = AgentRun::once(&site).cluster("site-7").labels(LABELS).run();
    assert!(out.status.success(), "{}", text(&out));
    site
}

/// `--once` arguments for site-7 reading `source`, with the key, manifests and state
/// directories at `key`, `dir/manifests` and `dir/state`.
fn once_args(source: &str, key: &str, dir: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--source",
        source,
        "--key",
        key,
        "--cluster-name",
        "site-7",
        "--sink",
        &format!("dir:{dir}/manifests"),
        "--state-dir",
        &format!("{dir}/state"),
        "--listen",
        "off",
        "--once",
    ]
    .map(String::from)
    .into();
    for l in LABELS {
        args.extend(["--label".to_string(), l.to_string()]);
    }
    args
}

fn is_a_static_executable_for(arch: Arch) {
    let agent = foreign_agent(arch);
    let file = text(&run(&require("file", "file"), &[agent.to_str().unwrap()]));
    assert!(file.contains(arch.file_machine()), "not an {arch:?} executable: {file}");
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "{file}"
    );
    assert!(!file.contains("interpreter"), "a dynamic loader is named: {file}");
}

fn prints_the_x86_64_agents_version(arch: Arch) {
    let out = run_foreign(arch, &foreign_agent(arch), &["--version"]);
    assert!(out.status.success(), "{arch:?} agent --version: {}", text(&out));
    let native = run(&bin("drover-agent"), &["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&native.stdout)
    );
}

fn applies_a_file_store_as_the_x86_64_agent_does(arch: Arch) {
    let site = published_site();
    let args = once_args(&site.store_url(), &site.p("keys/drover.pub"), &site.p("foreign"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_foreign(arch, &foreign_agent(arch), &args);
    assert!(out.status.success(), "{arch:?} agent --once: {}", text(&out));
    let written = snapshot(&site.path("foreign/manifests"));
    assert!(!written.is_empty(), "{arch:?} agent wrote no manifests");
    assert_eq!(written, snapshot(&site.path("manifests")));
    assert!(
        site.path("foreign/state/state.json").is_file(),
        "state directory not used"
    );
}

fn resolves_names_from_etc_hosts_in_an_empty_chroot(arch: Arch) {
    // As for x86_64: glibc's NSS cannot be loaded by a static binary; the pure-Rust
    // resolver reads /etc/hosts itself. Nothing else in the chroot: the agent, its
    // emulator, the key and the two resolver files.
    let site = published_site();
    let root = site.path("chroot");
    install_in_chroot(arch, &root);
    std::fs::create_dir_all(root.join("keys")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(site.path("keys/drover.pub"), root.join("keys/drover.pub")).unwrap();
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 store.drover.test\n::1 store.drover.test\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();

    let version = chroot_foreign(&root, &["/drover-agent", "--version"]);
    assert!(version.status.success(), "{arch:?} agent in chroot: {}", text(&version));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("drover-agent "));

    let serve = drover_serve(&site.path("store"));
    let url = serve.url.replace("127.0.0.1", "store.drover.test");
    let mut args = vec!["/drover-agent".to_string()];
    args.extend(once_args(&url, "/keys/drover.pub", ""));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = chroot_foreign(&root, &args);
    assert!(
        out.status.success(),
        "{arch:?} agent resolving via /etc/hosts in a chroot: {}",
        text(&out)
    );
    assert_eq!(snapshot(&root.join("manifests")), snapshot(&site.path("manifests")));
    assert!(root.join("state/state.json").is_file(), "state directory not used");
}

#[test]
fn arm64_agent_is_a_static_arm64_executable() {
    is_a_static_executable_for(Arch::Aarch64);
}

#[test]
fn arm64_agent_prints_the_x86_64_agents_version_under_qemu() {
    prints_the_x86_64_agents_version(Arch::Aarch64);
}

#[test]
fn arm64_agent_applies_a_file_store_as_the_x86_64_agent_does() {
    applies_a_file_store_as_the_x86_64_agent_does(Arch::Aarch64);
}

#[test]
fn arm64_agent_resolves_names_from_etc_hosts_in_an_empty_chroot() {
    resolves_names_from_etc_hosts_in_an_empty_chroot(Arch::Aarch64);
}

#[test]
fn armv7_agent_is_a_static_armv7_executable() {
    is_a_static_executable_for(Arch::Armv7);
}

#[test]
fn armv7_agent_prints_the_x86_64_agents_version_under_qemu() {
    prints_the_x86_64_agents_version(Arch::Armv7);
}

#[test]
fn armv7_agent_applies_a_file_store_as_the_x86_64_agent_does() {
    applies_a_file_store_as_the_x86_64_agent_does(Arch::Armv7);
}

#[test]
fn armv7_agent_resolves_names_from_etc_hosts_in_an_empty_chroot() {
    resolves_names_from_etc_hosts_in_an_empty_chroot(Arch::Armv7);
}
