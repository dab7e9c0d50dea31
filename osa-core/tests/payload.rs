//! Deploy payloads in the published SDK's shape.

use osa_core::deploy::{DeployConvention, ReleaseRequest, SetLiveRequest, parse_payload};
use osa_core::feature::Cardinality;
use osa_core::runtime::RuntimeConfig;
use osa_core::testing::{SDK_DEPLOY_PAYLOAD, sdk_deploy_payload};
use osa_core::{Error, ErrorKind};
use serde_json::{Value, json};

fn sdk_value() -> Value {
    serde_json::from_str(SDK_DEPLOY_PAYLOAD).unwrap()
}

fn parse(value: &Value) -> Result<DeployConvention, Error> {
    parse_payload(value.to_string().as_bytes())
}

#[test]
fn sdk_payload_parses_and_plans() {
    let payload = sdk_deploy_payload();
    assert_eq!(payload.hooks.len(), 2);
    assert_eq!(payload.hooks[1].feature.cardinality(), Cardinality::Many);
    assert_eq!(
        payload.hooks[1].feature.columns()[3].format.as_deref(),
        Some("date-time")
    );
    assert_eq!(
        payload
            .ingester
            .as_ref()
            .unwrap()
            .schedule
            .as_ref()
            .unwrap()
            .cron,
        "0 * * * *"
    );
    let plan = payload.plan(Some("user-1")).unwrap();
    assert_eq!(plan.slug.as_str(), "protein-structures");
    assert_eq!(plan.identities.len(), 2);
    let release = &plan.releases[1];
    assert_eq!(release.built_by.as_deref(), Some("user-1"));
    let RuntimeConfig::Oci { image, limits, .. } = &release.runtime else {
        panic!("an image release is an OCI runtime");
    };
    assert_eq!(image, "osa-hooks/find_pockets:latest");
    assert_eq!(limits.memory.to_string(), "512m");
}

#[test]
fn canonical_bytes_are_stable() {
    let a = sdk_deploy_payload().canonical_bytes();
    // Reordering keys of the input does not change the canonical form.
    let mut value = sdk_value();
    let hooks = value["hooks"].take();
    value.as_object_mut().unwrap().remove("hooks");
    value["hooks"] = hooks;
    let b = parse(&value).unwrap().canonical_bytes();
    assert_eq!(a, b);
    let reparsed: DeployConvention = parse_payload(&a).unwrap();
    assert_eq!(reparsed.canonical_bytes(), a);
}

/// One unknown key inserted at `pointer` fails with an error naming its path.
#[test]
fn unknown_keys_are_rejected_at_every_level_with_their_path() {
    let cases = [
        ("", "colour"),
        ("/schema", "colour"),
        ("/schema/fields/1", "colour"),
        ("/file_requirements", "extensions"),
        ("/hooks/0", "runtime"),
        ("/hooks/1/feature", "colour"),
        ("/hooks/1/feature/columns/2", "colour"),
        ("/hooks/0/limits", "gpu"),
        ("/hooks/0/release", "config"),
        ("/ingester", "colour"),
        ("/ingester/schedule", "colour"),
        ("/ingester/release", "limits"),
        ("/docs", "colour"),
        ("/docs/examples/0", "colour"),
    ];
    for (pointer, key) in cases {
        let mut value = sdk_value();
        value
            .pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.into(), json!(1));
        let err = parse(&value).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        let path = pointer
            .split('/')
            .skip(1)
            .map(|seg| {
                if seg.parse::<usize>().is_ok() {
                    format!("[{seg}]")
                } else {
                    format!(".{seg}")
                }
            })
            .collect::<String>();
        let expected = format!("{}.{key}", path)
            .trim_start_matches('.')
            .replace(".[", "[");
        assert_eq!(err.field(), Some(expected.as_str()), "{pointer}: {err}");
        assert!(
            err.to_string().contains(&format!("unknown field `{key}`")),
            "{err}"
        );
    }
}

#[test]
fn bad_values_name_their_path() {
    let cases: [(&str, Value, &str); 6] = [
        ("/hooks/0/name", json!("Bad-Name"), "hooks[0].name"),
        (
            "/hooks/1/feature/columns/0/name",
            json!("_id"),
            "hooks[1].feature.columns[0].name",
        ),
        (
            "/hooks/0/limits/memory",
            json!("lots"),
            "hooks[0].limits.memory",
        ),
        (
            "/hooks/0/release/digest",
            json!("sha256:xyz"),
            "hooks[0].release.digest",
        ),
        ("/schema/version", json!("1.0"), "schema.version"),
        (
            "/hooks/1/feature/cardinality",
            json!("several"),
            "hooks[1].feature.cardinality",
        ),
    ];
    for (pointer, bad, path) in cases {
        let mut value = sdk_value();
        *value.pointer_mut(pointer).unwrap() = bad;
        let err = parse(&value).unwrap_err();
        assert_eq!(err.field(), Some(path), "{err}");
    }
}

#[test]
fn plan_rules_beyond_serde() {
    let mut value = sdk_value();
    value["title"] = json!("3D structures");
    let err = parse(&value).unwrap().plan(None).unwrap_err();
    assert_eq!(err.field(), Some("title"));

    let mut value = sdk_value();
    value["docs"]["examples"] = json!([]);
    value["docs"]["purpose"] = json!(" ");
    let err = parse(&value).unwrap().plan(None).unwrap_err();
    assert_eq!(err.field(), Some("docs"));
    let msg = err.to_string();
    assert!(
        msg.contains("purpose (must be non-empty)")
            && msg.contains("examples (need ≥ 1 Example, got 0)"),
        "{msg}"
    );

    let mut value = sdk_value();
    value["hooks"][1]["name"] = json!("validate_structure");
    let err = parse(&value).unwrap().plan(None).unwrap_err();
    assert_eq!(err.field(), Some("hooks[1].name"));

    let mut value = sdk_value();
    value["hooks"][0]["release"]["command"] = json!(["python3", "hook.py"]);
    let err = parse(&value).unwrap().plan(None).unwrap_err();
    assert_eq!(err.field(), Some("hooks[0].release"));
    assert!(err.to_string().contains("exactly one of `image`"), "{err}");

    let mut value = sdk_value();
    value["description"] = json!("");
    assert_eq!(
        parse(&value).unwrap().plan(None).unwrap_err().field(),
        Some("description")
    );
}

#[test]
fn process_releases_and_defaults() {
    let mut value = sdk_value();
    let hook = value["hooks"][0].as_object_mut().unwrap();
    hook.remove("config");
    hook.remove("limits");
    hook["release"] = json!({
        "command": ["python3", "hooks/validate.py"],
        "digest": format!("sha256:{}", "4".repeat(64)),
        "source_ref": "git:abc1234"
    });
    let plan = parse(&value).unwrap().plan(None).unwrap();
    let RuntimeConfig::Process {
        command,
        config,
        limits,
        ..
    } = &plan.releases[0].runtime
    else {
        panic!("a command release is a process runtime");
    };
    assert_eq!(command, &["python3", "hooks/validate.py"]);
    assert!(config.is_empty());
    assert_eq!(limits.memory.to_string(), "1g");
}

#[test]
fn release_and_live_requests() {
    let req: ReleaseRequest = parse_payload(
        br#"{"image": "x/check", "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "config": {"k": 1}, "source_ref": "git:1"}"#,
    )
    .unwrap();
    let release = req
        .into_new_release("check".parse().unwrap(), Some("bot"))
        .unwrap();
    assert_eq!(release.runtime.config()["k"], json!(1));
    let err = parse_payload::<SetLiveRequest>(br#"{"version": 2, "force": true}"#).unwrap_err();
    assert_eq!(err.field(), Some("force"));
    let err = parse_payload::<SetLiveRequest>(b"[1]").unwrap_err();
    assert_eq!(err.field(), Some("body"));
}

#[test]
fn json_schemas_describe_the_payloads() {
    let schemas = osa_core::deploy::payload_schemas();
    let deploy = &schemas["DeployConvention"];
    let text = deploy.to_string();
    assert_eq!(deploy["additionalProperties"], json!(false));
    assert!(
        text.contains("^[a-z][a-z0-9_]{0,39}$"),
        "hook name pattern published"
    );
    assert!(
        text.contains("^sha256:[0-9a-f]{64}$"),
        "digest pattern published"
    );
    assert!(schemas.contains_key("ReleaseRequest"));
    assert!(schemas.contains_key("SetLiveRequest"));
}

#[test]
fn hook_lists_are_unique_and_bounded() {
    let mut value = sdk_value();
    let first = value["hooks"][0].clone();
    value["hooks"].as_array_mut().unwrap().push(first);
    let err = parse(&value).unwrap().plan(None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(err.field(), Some("hooks[2].name"), "{err}");

    let mut value = sdk_value();
    let template = value["hooks"][0].clone();
    let hooks: Vec<Value> = (0..=osa_core::deploy::MAX_HOOKS)
        .map(|i| {
            let mut hook = template.clone();
            hook["name"] = json!(format!("hook_{i}"));
            hook
        })
        .collect();
    value["hooks"] = json!(hooks);
    let err = parse(&value).unwrap().plan(None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(err.field(), Some("hooks"), "{err}");
    value["hooks"].as_array_mut().unwrap().pop();
    let plan = parse(&value)
        .unwrap()
        .plan(None)
        .expect("the maximum is allowed");
    assert_eq!(plan.identities.len(), osa_core::deploy::MAX_HOOKS);
}
