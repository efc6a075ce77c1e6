//! The shop in a real browser (Debian's headless Chromium driven by
//! playwright-core, `tests/browser/shop.mjs`) against `wrangler dev` and the
//! origin: live rows from the origin, then from the edge model with the
//! origin stopped, then the bundled popular items with the API blocked.
//! Screenshots of each state go to `target/e2e-artifacts/`.

use std::process::Command;

use e2e::{Edge, Origin, repo};

fn run_phase(base: &str, phase: &str) {
    let root = repo();
    let out = root.join("target/e2e-artifacts");
    let output = Command::new("node")
        .arg(root.join("tests/browser/shop.mjs"))
        .args([base, phase])
        .arg(&out)
        .current_dir(&root)
        .output()
        .expect("node runs (set-up installs it with npm's packages)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "browser phase {phase} failed:\n{text}");
    assert!(text.contains(&format!("shop {phase}: ok")), "phase {phase} did not report success:\n{text}");
    assert!(out.join(format!("{phase}-product.png")).exists(), "screenshot of phase {phase} written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_shows_live_recommendations_and_survives_failures() {
    let mut origin = Origin::start().await;
    // A generous deadline: this test is about what the shopper sees from each
    // source, and a page load's first requests meet a cold isolate on a busy
    // 2-core machine; the deadline itself is tested in edge_failover and chaos_short.
    let edge = Edge::start(&[("ORIGIN_URL", &origin.url()), ("ORIGIN_DEADLINE_MS", "1000")]).await;
    run_phase(&edge.url(), "origin");
    origin.kill();
    run_phase(&edge.url(), "edge");
    run_phase(&edge.url(), "blocked");
}
