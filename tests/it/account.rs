//! The account token: config, check, discover and the account streams (`servers`,
//! `domains`, `sender_signatures`) through the real binary against a 3-server fake.

use serde_json::{json, Value};

use crate::support::*;

/// Server tokens of the fake's three servers (docs/notes/fake.md).
const SERVER_TOKENS: [&str; 3] = [
    TOKEN,
    "fake-server-token-1235678",
    "fake-server-token-1236789",
];

fn three_servers() -> Fake {
    Fake::start(&["--servers", "3"])
}

/// A config with only what `extra` gives, pointing at `fake`.
fn config(s: &Scratch, fake: &Fake, extra: Value) -> String {
    let mut c = json!({ "base_url": fake.url });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    s.write_json("config.json", &c)
}

fn assert_no_token_anywhere(run: &Run) {
    for t in SERVER_TOKENS.iter().chain([&ACCOUNT_TOKEN]) {
        assert_no_secret(run, t);
    }
}

/// An Airbyte configured catalog of every stream `discover` offered.
fn configured(discovered: &Value) -> Value {
    let streams: Vec<Value> = discovered["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!({"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite",
                   "primary_key": s["source_defined_primary_key"]})
        })
        .collect();
    json!({ "streams": streams })
}

/// The fake's `servers` records as the connector must emit them: every token masked.
fn masked_servers(fake: &Fake) -> Vec<Value> {
    let mut truth = fake.truth_records("servers", None);
    for s in &mut truth {
        let n = s["ApiTokens"].as_array().unwrap().len();
        assert!(n > 0, "the fake lists tokens: {s}");
        s["ApiTokens"] = json!(vec!["***"; n]);
    }
    truth
}

fn sorted_by_id(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|r| r["ID"].as_u64().unwrap());
    v
}

#[test]
fn with_only_an_account_token_airbyte_discovers_every_stream_and_reads_the_account_streams_as_the_fake_has_them(
) {
    let fake = three_servers();
    let s = Scratch::new("account-airbyte");
    let cfg = config(&s, &fake, json!({ "account_token": ACCOUNT_TOKEN }));
    let discover = run(&["discover", "--config", &cfg]);
    assert_eq!(discover.code, 0, "{}", discover.stderr);
    assert_valid_airbyte(&discover);
    let catalog = &discover.of_type("CATALOG")[0]["catalog"];
    let names = catalog_names(catalog, "name");
    // Whole-account mode: the server streams are read per server of the account.
    let mut expected = all_streams();
    expected.extend(account_streams());
    assert_eq!(names, expected);
    let account: Vec<Value> = catalog["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| account_streams().contains(&s["name"].as_str().unwrap()))
        .cloned()
        .collect();
    let catalog = &json!({ "streams": account });
    let servers_schema = &catalog["streams"][0]["json_schema"]["properties"]["ApiTokens"];
    assert!(
        servers_schema["description"]
            .as_str()
            .unwrap()
            .contains("masked"),
        "the schema says the tokens are masked: {servers_schema}"
    );

    let cat = s.write_json("catalog.json", &configured(catalog));
    let read = run(&["read", "--config", &cfg, "--catalog", &cat]);
    assert_eq!(read.code, 0, "{}", read.stderr);
    assert_valid_airbyte(&read);
    assert_records_match_schemas(&read);
    for stream in account_streams() {
        assert_exactly(stream, &read.keys(stream), &fake.truth(stream, None));
    }
    let records = read.records();
    assert_eq!(
        sorted_by_id(records["servers"].clone()),
        sorted_by_id(masked_servers(&fake))
    );
    assert_eq!(records["servers"].len(), 3);
    for stream in ["domains", "sender_signatures"] {
        assert_eq!(
            sorted_by_id(records[stream].clone()),
            sorted_by_id(fake.truth_records(stream, None)),
            "{stream}"
        );
    }
    assert_no_token_anywhere(&discover);
    assert_no_token_anywhere(&read);
    // The account token went only to account endpoints, and no server token was sent.
    for r in fake.requests() {
        assert_eq!(r["account_token"], true, "{r}");
        assert_eq!(r["server_token"], false, "{r}");
    }
}

#[test]
fn with_only_an_account_token_a_singer_sync_emits_the_account_streams_and_no_token() {
    // (Every server's streams in the same sync: tests/it/whole_account.rs.)
    let fake = three_servers();
    let s = Scratch::new("account-singer");
    let cfg = config(
        &s,
        &fake,
        json!({ "X-Postmark-Account-Token": ACCOUNT_TOKEN }),
    );
    let discover = run(&["--config", &cfg, "--discover"]);
    assert_eq!(discover.code, 0, "{}", discover.stderr);
    let names = catalog_names(&discover.lines()[0], "tap_stream_id");
    let mut expected = all_streams();
    expected.extend(account_streams());
    assert_eq!(names, expected);
    let sync = run(&["--config", &cfg]);
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    for stream in account_streams() {
        assert_exactly(stream, &sync.keys(stream), &fake.truth(stream, None));
    }
    let schema = sync
        .lines()
        .iter()
        .find(|m| m["type"] == "SCHEMA" && m["stream"] == "servers")
        .cloned()
        .expect("SCHEMA of servers");
    assert_eq!(schema["key_properties"], json!(["ID"]));
    assert_eq!(
        sorted_by_id(sync.records()["servers"].clone()),
        sorted_by_id(masked_servers(&fake))
    );
    assert_no_token_anywhere(&discover);
    assert_no_token_anywhere(&sync);
}

#[test]
fn with_both_tokens_each_goes_only_to_its_own_endpoints() {
    let fake = three_servers();
    let s = Scratch::new("account-both");
    let cfg = config(
        &s,
        &fake,
        json!({ "server_token": TOKEN, "account_token": ACCOUNT_TOKEN }),
    );
    let discover = run(&["discover", "--config", &cfg]);
    let catalog = &discover.of_type("CATALOG")[0]["catalog"];
    let names = catalog_names(catalog, "name");
    let mut expected = all_streams();
    expected.extend(account_streams());
    assert_eq!(names, expected);
    let mut cat = airbyte_catalog(&["templates", "message_streams"], "full_refresh");
    let mut account = configured(catalog);
    account["streams"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["stream"]["name"] == "domains");
    cat["streams"]
        .as_array_mut()
        .unwrap()
        .extend(account["streams"].as_array().unwrap().clone());
    let cat = s.write_json("catalog.json", &cat);
    let read = run(&["read", "--config", &cfg, "--catalog", &cat]);
    assert_eq!(read.code, 0, "{}", read.stderr);
    assert_exactly(
        "domains",
        &read.keys("domains"),
        &fake.truth("domains", None),
    );
    // With the account token, every server's templates are read with its own token.
    let templates = read.records()["templates"].clone();
    for id in [1234567u64, 1235678, 1236789] {
        let keys: Vec<String> = templates
            .iter()
            .filter(|r| r["ServerID"] == id)
            .map(|r| r["TemplateId"].to_string())
            .collect();
        let truth = fake.truth_with("templates", &format!("&server={id}"));
        assert_exactly("templates", &keys, &truth);
    }
    let requests = fake.requests();
    assert!(requests.iter().any(|r| r["path"] == "/domains"));
    for r in &requests {
        let account = r["path"] == "/domains" || r["path"] == "/servers";
        assert_eq!(r["account_token"], account, "{r}");
        assert_eq!(r["server_token"], !account, "{r}");
    }
    assert_no_token_anywhere(&read);
}

#[test]
fn check_verifies_each_token_and_names_the_wrong_one() {
    let fake = three_servers();
    let s = Scratch::new("account-check");
    let status = |extra: Value| {
        let cfg = config(&s, &fake, extra);
        let run = run(&["check", "--config", &cfg]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_no_token_anywhere(&run);
        assert_no_secret(&run, "wrong-token-0000");
        run.of_type("CONNECTION_STATUS")[0]["connectionStatus"].clone()
    };
    let ok = status(json!({"server_token": TOKEN, "account_token": ACCOUNT_TOKEN}));
    assert_eq!(ok["status"], "SUCCEEDED", "{ok}");
    let ok = status(json!({"account_token": ACCOUNT_TOKEN}));
    assert_eq!(ok["status"], "SUCCEEDED", "{ok}");

    let bad_account = status(json!({"server_token": TOKEN, "account_token": "wrong-token-0000"}));
    assert_eq!(bad_account["status"], "FAILED");
    let msg = bad_account["message"].as_str().unwrap();
    assert!(msg.starts_with("'account_token':"), "{msg}");
    assert!(
        msg.contains("Account API token") && msg.contains("401"),
        "{msg}"
    );
    assert!(!msg.contains("'server_token'"), "{msg}");

    let bad_server =
        status(json!({"server_token": "wrong-token-0000", "account_token": ACCOUNT_TOKEN}));
    assert_eq!(bad_server["status"], "FAILED");
    let msg = bad_server["message"].as_str().unwrap();
    assert!(msg.starts_with("'server_token':"), "{msg}");
    assert!(!msg.contains("'account_token'"), "{msg}");

    // A server token in the account token's place is refused by the account endpoints.
    let swapped = status(json!({"account_token": TOKEN}));
    assert_eq!(swapped["status"], "FAILED");
    assert!(swapped["message"]
        .as_str()
        .unwrap()
        .contains("'account_token'"));
}

#[test]
fn a_listed_server_that_does_not_exist_is_named_with_the_servers_that_do() {
    let fake = three_servers();
    let s = Scratch::new("account-servers");
    let cfg = config(
        &s,
        &fake,
        json!({"account_token": ACCOUNT_TOKEN, "servers": [1235678, "Acme Production", "Acme Dev"]}),
    );
    let check = run(&["check", "--config", &cfg]);
    let status = &check.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED");
    let msg = status["message"].as_str().unwrap();
    assert!(
        msg.contains("\"Acme Dev\" is not a server of this account"),
        "{msg}"
    );
    assert!(
        msg.contains("1234567 \"Acme Production\"")
            && msg.contains("1235678 \"Acme Staging\"")
            && msg.contains("1236789 \"Acme Client: Globex\""),
        "{msg}"
    );
    let cat = s.write_json("catalog.json", &json!({"streams": []}));
    let read = run(&["read", "--config", &cfg, "--catalog", &cat]);
    assert_ne!(read.code, 0, "a read with an unknown server fails");
    assert_eq!(trace_errors(&read).len(), 1, "{}", read.stdout);
    assert!(
        read.stdout.contains("\\\"Acme Dev\\\" is not a server"),
        "{}",
        read.stdout
    );
    assert_no_token_anywhere(&check);
    assert_no_token_anywhere(&read);

    // Existing servers by ID and by name: check passes.
    let good = config(
        &s,
        &fake,
        json!({"account_token": ACCOUNT_TOKEN, "servers": [1235678, "Acme Production"]}),
    );
    let check = run(&["check", "--config", &good]);
    assert_eq!(
        check.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"],
        "SUCCEEDED"
    );
}

#[test]
fn config_errors_name_each_problem_once() {
    let s = Scratch::new("account-config");
    let check_message = |c: Value| {
        let cfg = s.write_json("config.json", &c);
        let run = run(&["check", "--config", &cfg]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let status = &run.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
        assert_eq!(status["status"], "FAILED");
        status["message"].as_str().unwrap().to_string()
    };
    let neither = check_message(json!({"max_concurrency": "four"}));
    assert!(neither.contains("'server_token' is missing"), "{neither}");
    assert!(neither.contains("'account_token'"), "{neither}");
    assert!(neither.contains("'max_concurrency'"), "{neither}");
    assert_eq!(neither.matches("'server_token' is missing").count(), 1);

    let servers_alone = check_message(json!({"server_token": "t", "servers": ["x"]}));
    assert!(servers_alone.contains("'servers'") && servers_alone.contains("'account_token'"));

    let empty = check_message(json!({"account_token": " \n"}));
    assert!(empty.contains("'account_token' is empty"), "{empty}");

    // A token of the wrong type is named, never echoed.
    let wrong_type = check_message(json!({"account_token": 987654321}));
    assert!(wrong_type.contains("'account_token'"), "{wrong_type}");
    assert!(!wrong_type.contains("987654321"), "{wrong_type}");
}

#[test]
fn a_read_that_selects_an_account_stream_without_the_account_token_reports_it_incomplete() {
    let fake = three_servers();
    let s = Scratch::new("account-missing");
    let cfg = s.config(&fake, json!({}));
    let mut cat = airbyte_catalog(&["message_streams"], "full_refresh");
    cat["streams"].as_array_mut().unwrap().push(json!({
        "stream": {"name": "servers", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}));
    let cat = s.write_json("catalog.json", &cat);
    let read = run(&["read", "--config", &cfg, "--catalog", &cat]);
    assert!(read
        .logs()
        .iter()
        .any(|l| l.contains("'servers'") && l.contains("'account_token'")));
    assert!(read.of_type("TRACE").iter().any(|t| {
        t["trace"]["stream_status"]["stream_descriptor"]["name"] == "servers"
            && t["trace"]["stream_status"]["status"] == "INCOMPLETE"
    }));
    assert!(read.keys("servers").is_empty());
    assert!(!read.keys("message_streams").is_empty());
    assert!(fake.requests().iter().all(|r| r["account_token"] == false));
}

#[test]
fn a_wrong_account_token_fails_the_read_of_an_account_stream_naming_it_and_is_never_printed() {
    let fake = three_servers();
    let s = Scratch::new("account-wrong-read");
    let wrong = "wrong-account-token-31337";
    let cfg = config(&s, &fake, json!({ "account_token": wrong }));
    let sync = run(&["--config", &cfg]);
    assert_ne!(sync.code, 0, "{}", sync.stderr);
    assert!(
        sync.stderr.contains("'account_token'") && sync.stderr.contains("401"),
        "{}",
        sync.stderr
    );
    assert!(sync.keys("servers").is_empty());
    assert_no_secret(&sync, wrong);
    assert_no_token_anywhere(&sync);
}
