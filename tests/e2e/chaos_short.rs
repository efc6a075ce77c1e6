//! The failover suite, short: every scenario for a few seconds through the
//! edge (two regions, A then B) and through the nginx peer (`server A;
//! server B backup;`), plus an origin overload, asserting the goals on the
//! edge (the full run with the report is `cargo xtask chaos`).

use e2e::chaos::{self, A_FAULTS, DEADLINE_MS, Front, HEDGE_BUDGET_PCT, Rig, Run, Sizing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_leaves_every_valid_request_answered() {
    let sizing = Sizing::short();
    let mut rig = Rig::start(sizing).await;
    let (edge_only, _) = rig.edge_only_baseline().await;
    assert_eq!(edge_only.good_share, 1.0, "edge-only baseline: {edge_only:?}");
    let mut healthy_p99 = None;
    // `CHAOS_ONLY=tail-slow,recovery` runs those (and the baseline) while working on them.
    let only = std::env::var("CHAOS_ONLY").ok();
    let wanted = |name: &str| name == "baseline" || only.as_deref().is_none_or(|o| o.split(',').any(|n| n == name));
    for scenario in chaos::scenarios(sizing).into_iter().filter(|s| wanted(s.name)) {
        let ours = rig.run(&scenario, Front::Edge).await;
        let peer = rig.run(&scenario, Front::Nginx).await;
        let s = &ours.summary;
        eprintln!(
            "{:<12} edge: {:>4} req, {:.1} % good, {:.1} % full model, NDCG@10 {:.3}, p99 {:.1} ms, {} (A {:.0} %) | nginx: {:.1} % good, {:.1} % full model, NDCG@10 {:.3}, p99 {:.1} ms",
            scenario.name,
            s.sent,
            100.0 * s.good_share,
            100.0 * ours.full_model_share(),
            ours.quality,
            s.p99_ms,
            s.source_shares(),
            100.0 * ours.share_from("a", 0.0),
            100.0 * peer.summary.good_share,
            100.0 * peer.full_model_share(),
            peer.quality,
            peer.summary.p99_ms
        );
        assert!(s.sent >= 50, "{}: too few requests ({})", scenario.name, s.sent);
        assert_eq!(s.good_share, 1.0, "{}: every valid request gets 200 with {} items: {:?}", scenario.name, chaos::K, s.statuses);
        if A_FAULTS.contains(&scenario.name) {
            // Region A fails, B is healthy: shoppers keep getting the full model, from B.
            assert!(ours.full_model_share() >= 0.99, "{}: {:.1} % from the full model ({})", scenario.name, 100.0 * ours.full_model_share(), s.source_shares());
            // Nobody waits past the deadline (+20 ms). The full report checks the worst
            // request; here at most 1 % may be late, for the OS descheduling workerd now and
            // then on 2 shared cores: a deadline that did not work would hold every request
            // that reaches A before its breaker opens.
            let late = share_over(&ours.outcomes, (DEADLINE_MS + 20) as f64);
            let worst = chaos::worst_server_total(&ours.outcomes);
            assert!(late <= 0.01, "{}: {:.1} % of requests waited past the deadline at the edge (worst {worst} ms)", scenario.name, 100.0 * late);
        }
        match scenario.name {
            "baseline" => {
                assert!(ours.share_from("a", 0.0) >= 0.99, "the primary serves: {:.1} % from A", 100.0 * ours.share_from("a", 0.0));
                healthy_p99 = Some(chaos::server_p99(&ours.outcomes));
            }
            "tail-slow" => {
                let healthy = healthy_p99.expect("baseline runs first");
                let h = ours.hedging.expect("edge runs count hedges");
                eprintln!("tail-slow: hedging {h:?}, extra origin load {:.1} %", h.extra_load_pct());
                let mut slowest: Vec<&e2e::load::Outcome> = ours.outcomes.iter().collect();
                slowest.sort_by(|a, b| b.latency_ms.total_cmp(&a.latency_ms));
                for o in slowest.iter().take(5) {
                    eprintln!("  slowest: {:.1} ms at {:.0} ms, {} {} server {:?}", o.latency_ms, o.sent_at_ms, o.source, o.origin, o.server_total_ms);
                }
                assert!(h.hedges > 0 && h.won > 0, "slow answers were hedged: {h:?}");
                assert!(h.extra_load_pct() <= HEDGE_BUDGET_PCT + 100.0 * chaos_burst(&ours), "hedges within the budget: {h:?}");
                // Hedging cut the tail: no more than 1 % of requests waited for A's share of
                // the deadline (without hedging, each of the 5 % slow answers waits it out, then
                // fails over). The goal against the healthy p99 (+20 ms) is the full report's,
                // with four times the requests: over 240 requests on 2 shared cores the p99 is
                // one scheduler stall away from either side of it (cold CI: 36 ms vs 14 + 20).
                let waited = share_over(&ours.outcomes, (DEADLINE_MS / 2) as f64);
                assert!(waited <= 0.01, "tail-slow: {:.1} % of requests waited A's share of the deadline despite hedging", 100.0 * waited);
                eprintln!("tail-slow: the edge's own p99 {:.1} ms vs healthy {healthy:.1} ms (report goal ≤ +20 ms)", chaos::server_p99(&ours.outcomes));
            }
            "both-down" => {
                // Both breakers open: no shopper waits on the origins (half-open probes
                // run after the answer): the worker's own total stays far below the deadline.
                let open = &ours.outcomes[ours.outcomes.len() * 3 / 4..];
                let waited = share_over(open, (DEADLINE_MS / 2) as f64);
                assert!(waited <= 0.01, "both-down: {:.1} % of requests waited with both breakers open", 100.0 * waited);
            }
            "recovery" => {
                let at = ours.healthy_at_ms.expect("recovery time") + (sizing.open_ms + DEADLINE_MS) as f64;
                let on_a = ours.share_from("a", at);
                assert!(on_a >= 0.95, "failback: {:.1} % on A from one open period plus one probe after it recovered", 100.0 * on_a);
            }
            "model-swap" => {
                assert!(ours.versions_monotone(), "A's answers switch model version once, cleanly");
                assert_eq!(ours.mismatch_seen, Some(true), "/healthz shows that A and B serve different versions");
            }
            "replica-slow" => {
                let fast = ours.share_from("b", ours.fault_at_ms + 500.0);
                assert!(fast >= 0.8, "the balancer moves traffic to the fast replica: {:.1} % on B", 100.0 * fast);
            }
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

/// The budget's burst as a share of the run's origin requests: the bucket
/// starts full, so a short run may hedge that many more.
fn chaos_burst(run: &Run) -> f64 {
    let h = run.hedging.unwrap_or_default();
    shared::failover_path::balancer::HEDGE_BURST / h.requests.max(1) as f64
}

/// Share of `outcomes` whose server-side total (`Server-Timing`) exceeds `ms`.
fn share_over(outcomes: &[e2e::load::Outcome], ms: f64) -> f64 {
    outcomes.iter().filter(|o| o.server_total_ms.is_some_and(|t| t > ms)).count() as f64 / outcomes.len().max(1) as f64
}
