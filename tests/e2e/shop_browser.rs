//! The shop in a real browser (Debian's headless Chromium driven by
//! playwright-core, `tests/browser/shop.mjs`) against `wrangler dev` and the
//! origin: live rows from the origin, then from the edge model with the
//! origin stopped, then the bundled popular items with the API blocked.
//! Screenshots of each state go to `target/e2e-artifacts/`.

use std::process::Command;

use e2e::{Edge, Origin, repo};

fn run_phase(base: &str, phase: &str) -> String {
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
    text
}

/// The event types the store holds for `shopper`, polled until `want` are all there.
async fn until_stored(store: &str, shopper: &str, want: &[&str]) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        let (url, who) = (store.to_string(), shopper.to_string());
        let kinds = tokio::task::spawn_blocking(move || {
            let mut kinds = Vec::new();
            event_store::open(&url)?.scan(&mut |e| {
                if e.shopper() == who {
                    kinds.push(e.kind);
                }
                Ok(())
            })?;
            Ok::<_, event_store::StoreError>(kinds)
        })
        .await
        .unwrap()
        .unwrap();
        if want.iter().all(|w| kinds.iter().any(|k| k == w)) {
            return kinds;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{shopper}: only {kinds:?} in the store after 60 s, want {want:?}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_shows_live_recommendations_and_survives_failures() {
    let dir = std::env::temp_dir().join(format!("edgerec-shop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = format!("sqlite:{}", dir.join("events.sqlite").display());
    let mut origin = Origin::start_with(e2e::procs::free_port(), &repo().join("models/movielens"), &["--events", &store]).await;
    // A generous deadline: this test is about what the shopper sees from each
    // source, and a page load's first requests meet a cold isolate on a busy
    // 2-core machine; the deadline itself is tested in edge_failover and chaos_short.
    let edge = Edge::start(&[("ORIGIN_URL", &origin.url()), ("ORIGIN_DEADLINE_MS", "1000")]).await;
    let text = run_phase(&edge.url(), "origin");
    let session = text.lines().find_map(|l| l.strip_prefix("shop session: ")).expect("the page reports its session id").trim().to_string();
    // What the shopper did reached the store: the page → the edge → the queue → the origin.
    let kinds = until_stored(&store, &format!("s:{session}"), &["view", "cart", "purchase"]).await;
    eprintln!("shop events stored for session {session}: {kinds:?}");
    origin.kill();
    run_phase(&edge.url(), "edge");
    run_phase(&edge.url(), "blocked");
}
