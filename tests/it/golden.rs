//! `spec.json` and `catalogs/` are exactly what the binary prints; these tests fail when
//! they drift. `UPDATE_GOLDEN=1 cargo test golden` rewrites them.

use std::path::Path;

use serde_json::Value;

use crate::support::*;

fn golden(rel: &str, actual: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{rel} is missing; run UPDATE_GOLDEN=1 cargo test golden")),
    )
    .unwrap();
    assert_eq!(&expected, actual, "{rel} drifted from the binary's output; run UPDATE_GOLDEN=1 cargo test golden and review the diff");
}

#[test]
fn spec_prints_exactly_spec_json_and_is_a_valid_airbyte_message() {
    let run = run(&["spec"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_valid_airbyte(&run);
    let lines = run.lines();
    assert_eq!(lines.len(), 1, "exactly one SPEC message");
    golden("spec.json", &lines[0]["spec"]);
    let spec = &lines[0]["spec"]["connectionSpecification"];
    assert_eq!(spec["properties"]["server_token"]["airbyte_secret"], true);
}

#[test]
fn airbyte_discover_prints_exactly_the_committed_catalog() {
    let s = Scratch::new("discover");
    let cfg = s.write("config.json", r#"{"server_token": "x"}"#);
    let run = run(&["discover", "--config", &cfg]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_valid_airbyte(&run);
    let catalogs = run.of_type("CATALOG");
    assert_eq!(catalogs.len(), 1);
    let catalog = &catalogs[0]["catalog"];
    golden("catalogs/airbyte_catalog.json", catalog);
    let names = catalog_names(catalog, "name");
    assert_eq!(names, all_streams());
    for stream in catalog["streams"].as_array().unwrap() {
        let name = stream["name"].as_str().unwrap();
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("catalogs/schemas/{name}.json"));
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        assert_eq!(
            stream["json_schema"], schema,
            "{name}: json_schema is catalogs/schemas/{name}.json"
        );
    }
}

#[test]
fn the_ready_made_configured_catalog_matches_discover() {
    golden(
        "catalogs/configured_catalog.json",
        &source_postmark::catalog::airbyte_configured_catalog(),
    );
    let configured: Value =
        serde_json::from_str(include_str!("../../catalogs/configured_catalog.json")).unwrap();
    let discovered: Value =
        serde_json::from_str(include_str!("../../catalogs/airbyte_catalog.json")).unwrap();
    for (c, d) in configured["streams"]
        .as_array()
        .unwrap()
        .iter()
        .zip(discovered["streams"].as_array().unwrap())
    {
        assert_eq!(&c["stream"], d);
    }
}

#[test]
fn singer_discover_prints_exactly_the_committed_catalog_with_full_metadata() {
    let s = Scratch::new("singer-discover");
    let cfg = s.write("config.json", r#"{"server_token": "x"}"#);
    let run = run(&["--config", &cfg, "--discover"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let catalog: Value = serde_json::from_str(&run.stdout).expect("stdout is exactly one catalog");
    golden("catalogs/singer_catalog.json", &catalog);
    for stream in catalog["streams"].as_array().unwrap() {
        let md = stream["metadata"].as_array().unwrap();
        let props = stream["schema"]["properties"].as_object().unwrap();
        assert_eq!(
            md.len(),
            props.len() + 1,
            "one breadcrumb per property plus the stream"
        );
        let top = &md[0]["metadata"];
        assert_eq!(md[0]["breadcrumb"], serde_json::json!([]));
        // Opt-in streams (one request per message) are listed but not selected by default.
        let opt_in = stream["tap_stream_id"] == "message_events";
        assert_eq!(top["selected-by-default"], !opt_in);
        assert_eq!(top["table-key-properties"], stream["key_properties"]);
        for key in stream["key_properties"].as_array().unwrap() {
            let key_md = md.iter().find(|m| m["breadcrumb"][1] == *key).unwrap();
            assert_eq!(key_md["metadata"]["inclusion"], "automatic", "{key}");
        }
        assert_eq!(
            top["forced-replication-method"],
            stream["replication_method"]
        );
    }
}

#[test]
fn about_describes_the_connector_in_json_and_text() {
    let json_run = run(&["--about", "--format", "json"]);
    assert_eq!(json_run.code, 0);
    let about: Value = serde_json::from_str(&json_run.stdout).unwrap();
    assert_eq!(about["name"], "source-postmark");
    assert_eq!(
        about["settings"]["properties"]["server_token"]["secret"],
        true
    );
    assert!(about["capabilities"]
        .as_array()
        .unwrap()
        .contains(&"discover".into()));
    let text = run(&["--about"]);
    assert!(text.stdout.contains("server_token"));
}

#[test]
fn the_dockerfile_is_a_valid_airbyte_image_definition() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let entrypoint = text
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an exec-form ENTRYPOINT");
    let parts: Vec<String> = serde_json::from_str(entrypoint).expect("exec form");
    // `ENV AIRBYTE_ENTRYPOINT=...` or a continuation line of a multi-variable ENV.
    let env = text
        .lines()
        .map(|l| l.trim_start().trim_start_matches("ENV "))
        .find_map(|l| l.strip_prefix("AIRBYTE_ENTRYPOINT="))
        .expect("AIRBYTE_ENTRYPOINT");
    assert_eq!(
        env.trim_matches('"'),
        parts.join(" "),
        "AIRBYTE_ENTRYPOINT equals ENTRYPOINT"
    );
    assert!(parts[0].starts_with('/'), "absolute entrypoint");
    assert!(text.contains(&format!(
        "io.airbyte.version=\"{}\"",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("io.airbyte.name="));
    let user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "non-root user"
    );
    // The runtime stage is `FROM scratch` plus a static busybox as /bin/sh (Airbyte's
    // launchers wrap the entrypoint in a shell); scripts/ci/docker.sh runs it for real.
    assert!(
        text.contains("cp /bin/busybox /rootfs/bin/busybox") && text.contains("ln -s busybox"),
        "a final image with /bin/sh"
    );
    assert!(
        text.contains("cargo build --release --locked --bin source-postmark"),
        "the README's build command"
    );
}
