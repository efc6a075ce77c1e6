//! Helpers the benchmark binaries share (`bench-edge`, `bench-scale`): the
//! worker's upload size, timed requests and latency statistics.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{load, repo};

/// Latency statistics, ms.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
}

/// Statistics of `ms` (latencies in ms).
pub fn stats(mut ms: Vec<f64>) -> Stats {
    ms.sort_by(f64::total_cmp);
    Stats { p50: load::percentile(&ms, 0.5), p99: load::percentile(&ms, 0.99), mean: ms.iter().sum::<f64>() / ms.len().max(1) as f64 }
}

/// A fresh directory name under the system temp dir.
pub fn tempdir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("edgerec-bench-{name}-{}", std::process::id()))
}

/// The worker's upload as `wrangler deploy --dry-run` reports it: (raw KiB,
/// gzip KiB, the line it printed). The worker must be built.
///
/// # Errors
/// When wrangler cannot run or prints no sizes.
pub fn upload_size() -> anyhow::Result<(f64, f64, String)> {
    let out = tempdir("dry-run");
    let output = Command::new(repo().join("node_modules/.bin/wrangler"))
        .args(["deploy", "--dry-run", "--outdir"])
        .arg(&out)
        .current_dir(repo())
        .env("EDGEREC_SKIP_EDGE_BUILD", "1")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .output()
        .context("running wrangler deploy --dry-run")?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let line = text.lines().find(|l| l.contains("Total Upload")).with_context(|| format!("no 'Total Upload' in:\n{text}"))?.trim().to_string();
    // "Total Upload: 4321.00 KiB / gzip: 1234.00 KiB"
    let nums: Vec<f64> = line.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter_map(|s| s.parse().ok()).collect();
    if nums.len() < 2 {
        bail!("cannot read sizes from {line:?}");
    }
    let _ = std::fs::remove_dir_all(out);
    Ok((nums[0], nums[1], line))
}

/// One GET: (round trip in ms, `x-rec-source`).
///
/// # Errors
/// On a transport error.
pub async fn timed_get(client: &reqwest::Client, url: &str) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let r = client.get(url).send().await?;
    let source = r.headers().get("x-rec-source").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let _ = r.bytes().await?;
    Ok((started.elapsed().as_secs_f64() * 1e3, source))
}

/// Mean ms of one `recommend(history, 10, true)` natively (the call the worker
/// makes per request), over `passes` passes of `histories` after one warm-up pass.
///
/// # Errors
/// The model's error.
pub fn native_recommend_ms(model: &shared::Recommender, histories: &[Vec<String>], passes: usize) -> anyhow::Result<f64> {
    for h in histories {
        model.recommend(h, 10, true)?;
    }
    let started = Instant::now();
    for _ in 0..passes {
        for h in histories {
            model.recommend(h, 10, true)?;
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1e3 / (passes * histories.len()).max(1) as f64)
}

/// The `dur` of entry `name` in a `Server-Timing` header value (W3C Server
/// Timing: `name;dur=12;desc="x", …`), ms.
pub fn server_timing(header: &str, name: &str) -> Option<f64> {
    header.split(',').map(str::trim).find(|e| e.split(';').next() == Some(name))?.split(';').find_map(|p| p.trim().strip_prefix("dur="))?.parse().ok()
}

/// Today's date, UTC, `YYYY-MM-DD`.
pub fn today() -> String {
    Command::new("date").arg("-u").arg("+%Y-%m-%d").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::server_timing;

    #[test]
    fn server_timing_finds_an_entry_by_name_wherever_its_dur_is() {
        let h = r#"cache;dur=0, origin;dur=30;desc="us", try-eu;desc="abandoned";dur=7, edge;dur=3, total;dur=31"#;
        assert_eq!(server_timing(h, "total"), Some(31.0));
        assert_eq!(server_timing(h, "cache"), Some(0.0));
        assert_eq!(server_timing(h, "try-eu"), Some(7.0));
        assert_eq!(server_timing(h, "edge-model"), None, "a name is matched whole, not as a prefix");
        assert_eq!(server_timing(h, "try"), None);
        assert_eq!(server_timing("total;desc=\"x\"", "total"), None, "no dur");
    }
}
