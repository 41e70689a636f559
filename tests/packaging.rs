//! What can be checked of the Docker image and the compose stack where
//! Docker cannot run: the toolchain versions agree with the lockfile, the
//! health checks of the Dockerfile and the compose file work against a real
//! service (and fail against a dead one), every file the compose file mounts
//! exists, every published port is on the host's loopback, and the
//! Prometheus configuration is valid with the shipped rules.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn rust_versions_follow_the_lockfile() {
    let out = Command::new(repo("scripts/check-toolchain.sh"))
        .output()
        .unwrap();
    assert_ok(&out, "scripts/check-toolchain.sh");
}

/// The JSON array after `marker` on one line of `text` (the exec form of a
/// health check), without its leading `CMD`.
fn exec_form(text: &str, marker: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(marker))
        .unwrap_or_else(|| panic!("no line starting with {marker}"));
    let json = &line[line.find('[').unwrap()..];
    let mut args: Vec<String> = serde_json::from_str(json).unwrap();
    if args.first().is_some_and(|a| a == "CMD") {
        args.remove(0);
    }
    args
}

fn run_health_check(args: &[String], port: u16) -> bool {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("/9464", &format!("/{port}")))
        .collect();
    Command::new(&args[0])
        .args(&args[1..])
        .status()
        .unwrap()
        .success()
}

#[test]
fn the_image_and_compose_health_checks_ask_a_real_service() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let compose = std::fs::read_to_string(repo("docker-compose.yml")).unwrap();
    let image_check = exec_form(&dockerfile, "CMD [\"bash\"");
    let compose_check = exec_form(&compose, "test: [\"CMD\", \"bash\"");
    let b = shared_broker();
    let dir = temp_dir("packaging");
    let svc = Service::start(&ServiceOpts {
        brokers: &b.addr(),
        group: "pkg",
        input: "pkg.in",
        output: format!("file:{}", dir.join("out.jsonl").display()),
        dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
        state: dir.join("state"),
        log: dir.join("service.log"),
    });
    let up = poll_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || svc.get("/healthz"),
        Option::is_some,
    );
    assert!(up.is_some(), "the service did not answer");
    assert!(
        run_health_check(&image_check, svc.admin),
        "Dockerfile HEALTHCHECK failed"
    );
    assert!(
        run_health_check(&compose_check, svc.admin),
        "compose healthcheck failed"
    );
    drop(svc);
    let dead = free_port();
    assert!(
        !run_health_check(&image_check, dead),
        "healthy without a service"
    );
    assert!(
        !run_health_check(&compose_check, dead),
        "healthy without a service"
    );
}

#[test]
fn compose_mounts_existing_files_and_publishes_on_loopback_only() {
    let compose = std::fs::read_to_string(repo("docker-compose.yml")).unwrap();
    let mut mounts = 0;
    let mut in_ports = false;
    let mut ports = 0;
    for line in compose.lines() {
        let t = line.trim();
        if let Some(m) = t.strip_prefix("- ./") {
            let src = m.split(':').next().unwrap();
            assert!(
                repo(src).exists(),
                "compose mounts ./{src}, which does not exist"
            );
            mounts += 1;
        }
        if t == "ports:" {
            in_ports = true;
            continue;
        }
        if in_ports {
            if let Some(p) = t.strip_prefix("- ") {
                let p = p.trim_matches('"');
                assert!(
                    p.starts_with("127.0.0.1:"),
                    "port {p} is published on every interface"
                );
                ports += 1;
            } else if !t.starts_with('#') {
                in_ports = false;
            }
        }
    }
    assert!(
        mounts >= 6 && ports >= 4,
        "{mounts} mounts, {ports} ports read"
    );
}

#[test]
fn the_prometheus_configuration_is_valid_with_the_shipped_rules() {
    let dir = temp_dir("packaging-prom");
    let text = std::fs::read_to_string(repo("config/prometheus.yml")).unwrap();
    assert!(text.contains("/etc/prometheus/alerts.yml"), "{text}");
    std::fs::copy(repo("config/alerts.yml"), dir.join("alerts.yml")).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        text.replace("/etc/prometheus/alerts.yml", "alerts.yml"),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_ok(&out, "promtool check config");
}
