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
            scenario.name,
            s.sent,
            100.0 * s.good_share,
            s.p99_ms,
            s.source_shares(),
            100.0 * peer.summary.good_share,
            peer.summary.p99_ms
        );
        assert!(s.sent >= 50, "{}: too few requests ({})", scenario.name, s.sent);
        assert_eq!(s.good_share, 1.0, "{}: every valid request gets 200 with {} items: {:?}", scenario.name, chaos::K, s.statuses);
        if ["down", "refused", "blackhole", "slow", "http-500", "truncated"].contains(&scenario.name) {
            // Nobody waits past the deadline (+20 ms) at the edge. (Under jitter the origin is late at
            // random all run long; that goal is in the full report.) The full report checks the
            // worst request; here at most 1 % may be late, for the OS descheduling workerd now and
            // then on 2 shared cores: a deadline that did not work would hold every request that
            // reaches the failing origin before the breaker opens (5, i.e. 2 % of the run).
            let late = share_over(&ours.outcomes, (DEADLINE_MS + 20) as f64);
            let worst = chaos::worst_server_total(&ours.outcomes);
            assert!(late <= 0.01, "{}: {:.1} % of requests waited past the deadline at the edge (worst {worst} ms)", scenario.name, 100.0 * late);
        }
        match scenario.name {
            "down" | "refused" | "blackhole" | "slow" | "http-500" | "truncated" => {
                // Once the breaker is open (half-open probes included: they run after the answer) no
                // shopper waits on the origin: the worker's own total stays far below the deadline.
                // The report compares client-side p99 with the edge-only run (goal +5 ms); with a few
                // hundred requests on 2 shared cores that figure is too noisy to gate on here.
                let open = &ours.outcomes[ours.outcomes.len() / 2..];
                let waited = share_over(open, (DEADLINE_MS / 2) as f64);
                let open_worst = chaos::worst_server_total(open);
                let who: Vec<String> = open
                    .iter()
                    .filter(|o| o.server_total_ms.is_some_and(|t| t > (DEADLINE_MS / 2) as f64))
                    .map(|o| format!("{:.0}ms:{}:{:.0}", o.sent_at_ms, o.source, o.server_total_ms.unwrap_or(0.0)))
                    .collect();
                assert!(waited <= 0.01, "{}: {:.1} % of requests waited with the breaker open (worst {open_worst} ms): {who:?}", scenario.name, 100.0 * waited);
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
    eprintln!(
        "overload: capacity {:.0} req/s, {:?}, shed p99 {:.1} ms, accepted p99 {:.1} ms, RSS {:?} KiB",
        o.capacity_rps, o.overload.statuses, o.shed_p99_ms, o.accepted_p99_ms, o.rss_kib
    );
    assert!(o.overload.statuses.get(&503).copied().unwrap_or(0) > 0, "4× overload is shed with 503: {:?}", o.overload.statuses);
    assert!(o.shed_p99_ms < 100.0, "shedding is quick: p99 {} ms", o.shed_p99_ms);
    assert!(o.accepted_p99_ms < 2_000.0, "accepted requests keep a bounded p99: {} ms", o.accepted_p99_ms);
    assert!(o.recovered, "the origin answers normally once the load drops");
    // A second identical burst stays near the first one's peak. glibc keeps the model runs' large
    // buffers in per-thread arenas, so a burst served by other threads can add some (measured in
    // docs/reliability.md, "Findings"); a per-request leak is the soak's to find.
    assert!(o.rss_kib.3 <= o.rss_kib.1 + o.rss_kib.1 / 4, "memory stays flat across bursts: {:?} KiB", o.rss_kib);
}

/// Share of `outcomes` whose server-side total (`Server-Timing`) exceeds `ms`.
fn share_over(outcomes: &[e2e::load::Outcome], ms: f64) -> f64 {
    outcomes.iter().filter(|o| o.server_total_ms.is_some_and(|t| t > ms)).count() as f64 / outcomes.len().max(1) as f64
}
