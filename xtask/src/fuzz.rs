//! `cargo xtask fuzz`: every libFuzzer target under `fuzz/` (one per parser
//! a stranger reaches: the query string, the JSON body, the `ORIGINS`
//! config, the trainer's CSV reader, the manifest) for a bounded time each,
//! with cargo-fuzz on the nightly toolchain, then a table of executions,
//! corpus size and crashes. Seeds are written into each corpus first, so
//! the fuzzer starts from real inputs. Not part of `cargo xtask test`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{root, run};

/// The targets (`fuzz/fuzz_targets/<name>.rs`) and a few real inputs for each.
const TARGETS: [(&str, &[&str]); 5] = [
    ("query_string", &["history=50,172&k=5", "history=a%2Cb&exclude_seen=false", "k=10&history=%C3%A9%20x,50"]),
    ("json_body", &[r#"{"history": ["50", 172], "k": 5}"#, r#"{"history": [" x "], "exclude_seen": false, "user_id": "u"}"#]),
    (
        "origins_config",
        &[
            r#"[{"name": "eu-west", "url": "https://eu.origin.shop.example", "priority": 1}, {"name": "us", "url": "http://127.0.0.1:8081", "weight": 2}]"#,
            "https://origin.example:8443/",
        ],
    ),
    ("csv_reader", &["user,item,time,weight,title\nu1,a,1,2,Apple\nu1,b,2,,\n", "user,item,time\n\"u,1\",\"b\"\"c\",3\n"]),
    ("manifest", &[]),
];

/// Runs every target for `secs` seconds and prints the table.
///
/// # Errors
/// When cargo-fuzz cannot be installed or a target cannot be built; a crash
/// is reported in the table (and its input kept under `fuzz/artifacts/`), and
/// fails the command at the end.
pub fn all(secs: u64) -> anyhow::Result<()> {
    if !Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success()) {
        eprintln!("fuzz: installing cargo-fuzz (cargo install, a minute once)");
        run(Command::new("cargo").args(["install", "--quiet", "--locked", "cargo-fuzz"]))?;
    }
    let fuzz = root().join("fuzz");
    let mut rows = Vec::new();
    for (target, seeds) in TARGETS {
        let corpus = fuzz.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(corpus.join(format!("seed-{i}")), seed)?;
        }
        if target == "manifest"
            && let Ok(m) = std::fs::read(root().join("models/movielens/manifest.json"))
        {
            std::fs::write(corpus.join("seed-movielens"), m)?;
        }
        eprintln!("fuzz: {target} for {secs} s");
        // `-s none`: safe Rust needs no AddressSanitizer to report a panic, and runs several times faster without it.
        let out = Command::new("cargo")
            .args(["+nightly", "fuzz", "run", "--sanitizer", "none", target, "--", &format!("-max_total_time={secs}"), "-print_final_stats=1"])
            .current_dir(&fuzz)
            .output()
            .context("running cargo fuzz")?;
        let log = String::from_utf8_lossy(&out.stderr);
        let stat = |name: &str| log.lines().find_map(|l| l.strip_prefix(&format!("stat::{name}:"))).map(|v| v.trim().to_string()).unwrap_or_else(|| "?".into());
        let crashes = count_files(&fuzz.join("artifacts").join(target));
        if !out.status.success() && crashes == 0 {
            std::fs::write(fuzz.join(format!("{target}.log")), log.as_bytes())?;
            bail!("cargo fuzz run {target} failed without a crash input (see fuzz/{target}.log)");
        }
        rows.push((target, stat("number_of_executed_units"), stat("new_units_added"), count_files(&corpus), crashes));
    }
    println!("| target | seconds | executions | new corpus units | corpus files | crash inputs |");
    println!("|---|---|---|---|---|---|");
    for (t, execs, new, corpus, crashes) in &rows {
        println!("| `{t}` | {secs} | {execs} | {new} | {corpus} | {crashes} |");
    }
    let crashed: Vec<&str> = rows.iter().filter(|r| r.4 > 0).map(|r| r.0).collect();
    if !crashed.is_empty() {
        bail!("crash inputs under fuzz/artifacts/ for {crashed:?}: reproduce with `cargo +nightly fuzz run <target> <file>`");
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.flatten().filter(|e| e.path().is_file()).count()).unwrap_or(0)
}
