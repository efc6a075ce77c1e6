//! A shop's CSV log, as the trainer reads it: a typed error, or a log whose
//! every item id follows the API's rules, within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainer::data::{LogLimits, load_csv_from};

fuzz_target!(|data: &[u8]| {
    let limits = LogLimits { max_row_bytes: 1024, max_users: 64, max_items: 64, max_events_per_user: 64 };
    if let Ok(log) = load_csv_from(data, std::path::Path::new("fuzz.csv"), &limits) {
        assert!(log.users.len() <= 64 && log.items.len() <= 64);
        for id in &log.items {
            shared::wire::check_item_id(id).expect("trained ids can be asked for");
        }
    }
});
