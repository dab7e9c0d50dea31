//! A configuration that cannot work stops `osa-server` before it creates anything:
//! exit code 2 and one line on stderr that names the setting.

mod common;

use std::path::PathBuf;

/// One bad configuration: the file's text (if any), environment, arguments, and the
/// setting the error must name.
struct Case {
    name: &'static str,
    file: Option<&'static str>,
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    setting: &'static str,
    /// Text the line must not show (passwords).
    hidden: Option<&'static str>,
}

const fn case(
    name: &'static str,
    file: Option<&'static str>,
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    setting: &'static str,
) -> Case {
    Case {
        name,
        file,
        env,
        args,
        setting,
        hidden: None,
    }
}

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const SECRET: (&str, &str) = ("OSA_AUTH__SECRET", "0123456789abcdef0123456789abcdef-test");

fn cases() -> Vec<Case> {
    vec![
        case(
            "unknown key in the file",
            Some("[storage]\nurll = \"x\"\n"),
            &[],
            &["serve"],
            "storage.urll",
        ),
        case(
            "unknown section in the file",
            Some("[storag]\nurl = \"x\"\n"),
            &[],
            &["serve"],
            "storag",
        ),
        case(
            "unknown key in the environment",
            None,
            &[("OSA_STORAGE__URLL", "x")],
            &["serve"],
            "OSA_STORAGE__URLL",
        ),
        case(
            "a file that is not TOML",
            Some("[storage\n"),
            &[],
            &["serve"],
            "config",
        ),
        case(
            "a config file that does not exist",
            None,
            &[],
            &["--config", "absent.toml", "serve"],
            "--config",
        ),
        Case {
            hidden: Some("hunter2"),
            ..case(
                "a database URL of another kind",
                Some("[storage]\nurl = \"mysql://me:hunter2@db/osa\"\n"),
                &[],
                &["serve"],
                "storage.url",
            )
        },
        case(
            "an unreachable database",
            None,
            &[("OSA_STORAGE__URL", "postgres://postgres@127.0.0.1:1/test")],
            &["worker"],
            "storage.url",
        ),
        Case {
            hidden: Some("hunter2"),
            ..case(
                "a database that refuses the user",
                None,
                &[
                    (
                        "OSA_STORAGE__URL",
                        "postgres://nobody:hunter2@127.0.0.1:5432/test",
                    ),
                    SECRET,
                ],
                &["serve"],
                "storage.url",
            )
        },
        case(
            "Postgres without a node secret",
            None,
            &[("OSA_STORAGE__URL", PG)],
            &["serve"],
            "auth.secret",
        ),
        case(
            "a node secret that is too short",
            Some("[auth]\nsecret = \"short\"\n"),
            &[],
            &["serve"],
            "auth.secret",
        ),
        case(
            "a secret file that does not exist",
            Some("[auth]\nsecret_file = \"absent\"\n"),
            &[],
            &["serve"],
            "auth.secret_file",
        ),
        case(
            "a machine issuer without a key",
            Some("[[auth.machine_issuers]]\nissuer = \"ci\"\n"),
            &[],
            &["serve"],
            "auth.machine_issuers.0.public_key_file",
        ),
        case(
            "a machine issuer with a key file and a key set URL",
            Some(
                "[[auth.machine_issuers]]\nissuer = \"ci\"\npublic_key_file = \"ci.pem\"\n\
                 jwks_url = \"https://ci.example.org/jwks\"\n",
            ),
            &[],
            &["serve"],
            "auth.machine_issuers.0.jwks_url",
        ),
        case(
            "a machine issuer with algorithms and no key",
            Some("[[auth.machine_issuers]]\nissuer = \"ci\"\nalgorithms = [\"RS256\"]\n"),
            &[],
            &["serve"],
            "auth.machine_issuers.0.public_key_file",
        ),
        case(
            "a key set URL that is not http(s)",
            Some(
                "[[auth.machine_issuers]]\nissuer = \"ci\"\n\
                 jwks_url = \"file:///etc/osa/jwks.json\"\n",
            ),
            &[],
            &["serve"],
            "auth.machine_issuers.0.jwks_url",
        ),
        case(
            "an unknown algorithm",
            Some(
                "[[auth.machine_issuers]]\nissuer = \"ci\"\n\
                 jwks_url = \"https://ci.example.org/jwks\"\nalgorithms = [\"RS257\"]\n",
            ),
            &[],
            &["serve"],
            "auth.machine_issuers.0.algorithms",
        ),
        case(
            "a shared-secret algorithm for a machine issuer",
            Some(
                "[[auth.machine_issuers]]\nissuer = \"ci\"\n\
                 jwks_url = \"https://ci.example.org/jwks\"\nalgorithms = [\"HS256\"]\n",
            ),
            &[],
            &["serve"],
            "auth.machine_issuers.0.algorithms",
        ),
        case(
            "an algorithm that does not fit the key",
            Some(concat!(
                "[[auth.machine_issuers]]\nissuer = \"ci\"\npublic_key_file = \"",
                env!("CARGO_MANIFEST_DIR"),
                "/../../osa-core/tests/fixtures/jwks/ec-1.pub.pem\"\nalgorithms = [\"RS256\"]\n",
            )),
            &[],
            &["serve"],
            "auth.machine_issuers.0.algorithms",
        ),
        case(
            "a private key as a machine issuer's key",
            Some(concat!(
                "[[auth.machine_issuers]]\nissuer = \"ci\"\npublic_key_file = \"",
                env!("CARGO_MANIFEST_DIR"),
                "/../../osa-core/tests/fixtures/jwks/rsa-1.key.pem\"\n",
            )),
            &[],
            &["serve"],
            "auth.machine_issuers.0.public_key_file",
        ),
        case(
            "a blob store of unknown scheme",
            None,
            &[("OSA_BLOBS__URL", "ftp://example.org/blobs")],
            &["serve"],
            "blobs.url",
        ),
        case(
            "an unknown object-store option",
            Some("[blobs]\nurl = \"s3://bucket\"\noptions = { aws_colour = \"blue\" }\n"),
            &[],
            &["serve"],
            "blobs.options.aws_colour",
        ),
        case(
            "options for a local directory",
            Some("[blobs]\noptions = { aws_region = \"x\" }\n"),
            &[],
            &["serve"],
            "blobs.options.aws_region",
        ),
        case(
            "a duration that is not one",
            None,
            &[("OSA_WORKER__LEASE", "soon")],
            &["worker"],
            "OSA_WORKER__LEASE",
        ),
        case(
            "no worker slots",
            Some("[worker]\nconcurrency = 0\n"),
            &[],
            &["worker"],
            "worker.concurrency",
        ),
        case(
            "an unknown sandbox",
            Some("[runners.process]\nsandbox = \"maybe\"\n"),
            &[],
            &["serve"],
            "runners.process.sandbox",
        ),
        case(
            "no runner at all",
            Some("[runners.process]\nenabled = false\n"),
            &[],
            &["serve"],
            "runners",
        ),
        case(
            "a container engine that is not there",
            Some("[runners.oci]\nenabled = true\nhost = \"unix:///nonexistent/podman.sock\"\n"),
            &[],
            &["serve"],
            "runners.oci.host",
        ),
        case(
            "a registry password file that does not exist",
            Some(
                "[runners.oci]\nenabled = true\nhost = \"tcp://127.0.0.1:1\"\n\
                 [[runners.oci.registries]]\nserver = \"ghcr.io\"\nusername = \"bot\"\n\
                 password_file = \"absent\"\n",
            ),
            &[],
            &["serve"],
            "runners.oci.registries.0.password_file",
        ),
        case(
            "a log filter that does not parse",
            None,
            &[("OSA_LOG__FILTER", "osa=[")],
            &["serve"],
            "log.filter",
        ),
        case(
            "an address that is not one",
            None,
            &[],
            &["serve", "--bind", "localhost:99999"],
            "server.bind",
        ),
        case(
            "an empty upload prefix",
            Some("[server]\nupload_prefix = \"\"\n"),
            &[],
            &["serve"],
            "server.upload_prefix",
        ),
        case(
            "an API prefix without a leading slash",
            None,
            &[("OSA_SERVER__API_PREFIX", "api/v1")],
            &["serve"],
            "server.api_prefix",
        ),
        case(
            "an API prefix over the operations routes",
            Some("[server]\napi_prefix = \"/metrics\"\n"),
            &[],
            &["serve"],
            "server.api_prefix",
        ),
        case(
            "a token with no role or scope",
            None,
            &[],
            &["token"],
            "token",
        ),
    ]
}

#[test]
fn bad_configurations_name_their_setting_and_create_nothing() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<&str> = Vec::new();
        let mut before: Vec<PathBuf> = Vec::new();
        if let Some(text) = case.file {
            std::fs::write(dir.path().join("osa.toml"), text).expect("write config");
            args.extend(["--config", "osa.toml"]);
            before.push(PathBuf::from("osa.toml"));
        }
        args.extend_from_slice(case.args);
        let env: Vec<(&str, String)> = case.env.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let output = common::command(dir.path(), &args, &env)
            .output()
            .expect("run osa-server");
        let stderr = String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_string();
        let expected = format!("osa-server: {}: ", case.setting);
        let mut problems = Vec::new();
        if output.status.code() != Some(2) {
            problems.push(format!("exit {:?}", output.status.code()));
        }
        if stderr.lines().count() != 1 || !stderr.starts_with(&expected) {
            problems.push(format!(
                "stderr {stderr:?}, expected one line starting {expected:?}"
            ));
        }
        if let Some(hidden) = case.hidden
            && stderr.contains(hidden)
        {
            problems.push(format!("stderr shows {hidden:?}"));
        }
        let after = common::tree(dir.path());
        if after != before {
            problems.push(format!("it left {after:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
