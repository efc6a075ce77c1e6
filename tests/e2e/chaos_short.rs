//! The failover suite, short: every fault scenario for a few seconds through
//! the edge and through the nginx peer, plus an origin overload, asserting
//! the goals on the edge (the full run with the report is `cargo xtask chaos`).

use e2e::chaos::{self, DEADLINE_MS, Front, Rig, Sizing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_leaves_every_valid_request_answered() {
    let sizing = Sizing::short();
    let mut rig = Rig::start(sizing).await;
    let edge_only = rig.edge_only_baseline().await;
    assert_eq!(edge_only.good_share, 1.0, "edge-only baseline: {edge_only:?}");
    for scenario in chaos::scenarios(sizing) {
        let ours = rig.run(&scenario, Front::Edge).await;
        let peer = rig.run(&scenario, Front::Nginx).await;
        let s = &ours.summary;
        eprintln!(
            "{:<11} edge: {:>5} req, {:.1} % good, p99 {:.1} ms, {} | nginx: {:.1} % good, p99 {:.1} ms",
            scenario.name, s.sent, 100.0 * s.good_share, s.p99_ms, s.source_shares(), 100.0 * peer.summary.good_share, peer.summary.p99_ms
        );
        assert!(s.sent >= 50, "{}: too few requests ({})", scenario.name, s.sent);
        assert_eq!(s.good_share, 1.0, "{}: every valid request gets 200 with {} items: {:?}", scenario.name, chaos::K, s.statuses);
        if ["down", "refused", "blackhole", "slow", "jitter", "http-500", "truncated"].contains(&scenario.name) {
            // Before the breaker opens (and, under jitter, whenever the origin is late) nobody waits past the deadline (+20 ms).
            let worst = chaos::worst_server_total(&ours, ours.outcomes.len());
            assert!(worst <= (DEADLINE_MS + 20) as f64, "{}: a request waited {worst} ms at the edge", scenario.name);
        }
        match scenario.name {
            "down" | "refused" | "blackhole" | "slow" | "http-500" | "truncated" => {
                // Once the breaker is open the origin costs nothing (the strict +5 ms goal is in the report;
                // here a margin for the shared 2-core machine).
                let open = chaos::second_half(&ours);
                assert!(open.p99_ms <= edge_only.p99_ms + 25.0, "{}: p99 {} ms with the breaker open vs edge-only {} ms", scenario.name, open.p99_ms, edge_only.p99_ms);
            }
            "recovery" => {
                let back = ours.failback_ms().expect("traffic returns to the origin");
                assert!(back <= (sizing.open_ms + 500) as f64, "failback took {back} ms (open period {} ms)", sizing.open_ms);
            }
            "model-swap" => assert!(ours.versions_monotone(), "origin answers switch model version once, cleanly"),
            _ => {}
        }
    }
    drop(rig);
    let o = chaos::overload(std::time::Duration::from_secs(2), 4).await;
    eprintln!("overload: capacity {:.0} req/s, {:?}, shed p99 {:.1} ms, accepted p99 {:.1} ms, RSS {:?} KiB", o.capacity_rps, o.overload.statuses, o.shed_p99_ms, o.accepted_p99_ms, o.rss_kib);
    assert!(o.overload.statuses.get(&503).copied().unwrap_or(0) > 0, "4× overload is shed with 503: {:?}", o.overload.statuses);
    assert!(o.shed_p99_ms < 100.0, "shedding is quick: p99 {} ms", o.shed_p99_ms);
    assert!(o.accepted_p99_ms < 2_000.0, "accepted requests keep a bounded p99: {} ms", o.accepted_p99_ms);
    assert!(o.recovered, "the origin answers normally once the load drops");
    // The allocator keeps what the first burst's 128 connections needed; a second burst must not add to it.
    assert!(o.rss_kib.3 <= o.rss_kib.2 + 16 * 1024, "memory stays flat across bursts: {:?} KiB", o.rss_kib);
}
