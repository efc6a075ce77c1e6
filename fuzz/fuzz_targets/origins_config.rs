//! The worker's `ORIGINS` var (and `ORIGIN_URL`): refused with the var's
//! name, or a list whose every URL is a bare `scheme://host[:port]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::edge_config::EdgeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let (var, value) = if raw.starts_with('[') { ("ORIGINS", raw) } else { ("ORIGIN_URL", raw) };
    match EdgeConfig::from_vars(|name| (name == var).then(|| value.to_string())) {
        Err(e) => assert_eq!(e.var, var),
        Ok(cfg) => {
            for o in &cfg.origins {
                let rest = o.url.strip_prefix("https://").or_else(|| o.url.strip_prefix("http://")).expect("a checked scheme");
                assert!(!rest.is_empty() && !rest.contains(['/', '?', '#', '@']), "{:?}", o.url);
            }
        }
    }
});
