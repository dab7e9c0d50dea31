//! The outputs `osa-run-hook` (the Python SDK's entrypoint) wrote for a shared fixture
//! batch are read by the engine's contract reader exactly as the SDK's tests expect.
//! The fixture is produced and checked by `osa-py/tests/test_contract_fixture.py`.

use std::fs;
use std::path::Path;

use osa_core::contract::{OutputLimits, RecordOutcome, read_outcomes};
use osa_core::feature::FeatureSpec;
use osa_core::id::RecordId;
use serde_json::Value;

#[test]
fn engine_reads_sdk_outputs_as_the_sdk_expects() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../osa-py/tests/fixtures/contract"
    ));
    let spec: FeatureSpec =
        serde_json::from_str(&fs::read_to_string(dir.join("feature.json")).unwrap()).unwrap();
    let expected: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let batch: Vec<RecordId> = expected["batch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| RecordId::new(v.as_str().unwrap()).unwrap())
        .collect();
    let out = read_outcomes(&dir.join("out"), &batch, &spec, &OutputLimits::default()).unwrap();
    assert!(
        out.missing.is_empty(),
        "every record has an outcome: {:?}",
        out.missing
    );
    assert!(out.torn_lines.is_empty());
    let mut stray = out.stray_ids.clone();
    stray.sort();
    let mut expected_stray: Vec<String> = expected["stray_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    expected_stray.sort();
    assert_eq!(stray, expected_stray);
    assert_eq!(out.outcomes.len(), batch.len());
    for id in &batch {
        let want = &expected["outcomes"][id.as_str()];
        match (&out.outcomes[id], want["status"].as_str().unwrap()) {
            (RecordOutcome::Passed { rows }, "passed") => {
                assert_eq!(rows.len() as u64, want["rows"].as_u64().unwrap(), "{id}")
            }
            (RecordOutcome::Rejected { reason }, "rejected") => {
                assert_eq!(reason, want["reason"].as_str().unwrap())
            }
            (RecordOutcome::Errored { error, retryable }, "errored") => {
                assert_eq!(error, want["error"].as_str().unwrap(), "{id}");
                assert_eq!(*retryable, want["retryable"].as_bool().unwrap());
            }
            (got, status) => panic!("{id}: expected {status}, got {got:?}"),
        }
    }
}
