//! Property tests of the shop-log CSV loader (bounded fuzzing, part of every
//! test run): arbitrary files never panic, and every refusal names the file
//! and, for a bad row, its line.

use proptest::prelude::*;
use trainer::data::{self, DataError};

fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,6}",
        any::<i64>().prop_map(|n| n.to_string()),
        Just(String::new()),
        Just("\"quoted, with comma\"".to_string()),
        Just("\"unterminated".to_string()),
        Just("-1".to_string()),
        Just("NaN".to_string()),
        Just("1e99".to_string()),
        "[^\n]{0,8}",
    ]
}

fn csv_text() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        Just("user,item,time".to_string()),
        Just("user,item,time,weight".to_string()),
        Just("user,item,time,weight,title".to_string()),
        Just("item,user".to_string()),
        "[a-z,]{0,20}",
    ];
    (header, prop::collection::vec(prop::collection::vec(cell(), 0..6), 0..12))
        .prop_map(|(h, rows)| std::iter::once(h).chain(rows.into_iter().map(|r| r.join(","))).collect::<Vec<_>>().join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_csv_never_panics_and_errors_say_where(text in csv_text(), bytes in prop::collection::vec(any::<u8>(), 0..64), raw in any::<bool>()) {
        let dir = std::env::temp_dir().join(format!("edgerec-fuzz-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("log.csv");
        std::fs::write(&file, if raw { bytes } else { text.into_bytes() }).unwrap();
        match data::load_csv(&file) {
            Ok(log) => prop_assert!(!log.events.is_empty()),
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("log.csv"), "error names the file: {msg}");
                if let DataError::Row { line, .. } = e {
                    prop_assert!(line >= 1);
                    prop_assert!(msg.contains(&format!(":{line}:")), "error names the line: {msg}");
                }
            }
        }
    }
}
