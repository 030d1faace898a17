//! No secret ever reaches a log line, a status, an action message or a hook
//! command's arguments.

use ops::testing::{ExecHandler, Output, Secret};
use ops::Event;
use serde_json::json;

use crate::world::*;

const PLAIN_USER_PASSWORD: &str = "plain-user-pw-XYZ";
const CONTRACTS_PASSWORD: &str = "contracts-pw-QRS";
const SYNC_TOKEN: &str = "sync-token-LMN";

fn secrets() -> [&'static str; 5] {
    [
        DB_PASSWORD,
        ADMIN_PASSWORD,
        PLAIN_USER_PASSWORD,
        CONTRACTS_PASSWORD,
        SYNC_TOKEN,
    ]
}

fn assert_clean(out: &Output, what: &str) {
    let mut texts: Vec<String> = out.juju_log.iter().map(|l| l.message.clone()).collect();
    texts.extend(out.unit_status_history.iter().map(|s| s.message.clone()));
    texts.extend(out.action_failure.clone());
    texts.extend(out.action_logs.clone());
    for call in &out.hook_calls {
        texts.push(call.args.join(" "));
        // secret-add/secret-set carry content in files, relation-set on
        // stdin: stdin of these commands may hold a credential only for
        // secret commands, never for relation data or state.
        if call.command != "secret-add" && call.command != "secret-set" {
            texts.extend(call.stdin.clone());
        }
    }
    for text in &texts {
        for secret in secrets() {
            assert!(
                !text.contains(secret),
                "{what}: {secret} leaked in {text:?}"
            );
        }
    }
}

fn busy_world() -> ops::testing::State {
    world()
        .with_config("auth.basic.enabled", true)
        .with_config("auth.basic.users-secret", "secret:us3rsus3rsus3rsus3rs")
        .with_secret(
            Secret::new(&[("alice", PLAIN_USER_PASSWORD)]).with_id("secret:us3rsus3rsus3rsus3rs"),
        )
        .with_config("contracts.password", CONTRACTS_PASSWORD)
        .with_config("patch-sync.enabled", true)
        .with_config("patch-sync.token", SYNC_TOKEN)
}

#[test]
fn no_secret_appears_in_any_log_status_or_hook_command() {
    let out = run(&busy_world(), Event::ConfigChanged);
    assert_clean(&out, "config-changed");
    assert!(
        env(&out).values().any(|v| v.contains(DB_PASSWORD)),
        "the server itself does get the DSN"
    );
    assert_clean(
        &run(&out.state, db_relation().changed_event(None)),
        "relation-changed",
    );
    assert_clean(
        &run(&out.state, db_relation().broken_event()),
        "relation-broken",
    );
    assert_clean(&run(&out.state, Event::UpdateStatus), "update-status");
    assert_clean(
        &action(&out.state, "schema-version", json!({})),
        "schema-version",
    );
    assert_clean(&action(&out.state, "restart", json!({})), "restart");
}

#[test]
fn a_schema_tool_echoing_the_dsn_is_redacted_everywhere() {
    let mut state = busy_world();
    let c = container_of(&mut state);
    c.execs
        .retain(|h| h.prefix.first().map(String::as_str) != Some(TOOL));
    c.execs.push(ExecHandler::fail(
        &[TOOL, "check"],
        1,
        &format!("could not connect to server: {DSN}"),
    ));
    c.execs.push(ExecHandler::fail(
        &[TOOL, "upgrade"],
        1,
        &format!("could not connect to server: {DSN}"),
    ));
    let out = run(&state, Event::ConfigChanged);
    assert_clean(&out, "failed check");
    assert!(out.state.unit_status.message.contains("***REDACTED***"));
    let action_out = action(&state, "schema-upgrade", json!({}));
    assert_clean(&action_out, "failed schema-upgrade");
    assert!(action_out
        .action_failure
        .unwrap()
        .contains("***REDACTED***"));
}

#[test]
fn an_invalid_configuration_never_echoes_credentials() {
    // A malformed users list carrying a password where a hash belongs.
    let state = busy_world().with_config("auth.basic.users", format!("bob:{PLAIN_USER_PASSWORD}"));
    let out = run(&state, Event::ConfigChanged);
    assert_clean(&out, "invalid auth.basic.users");
    assert_eq!(
        out.state.unit_status.name,
        ops::hookcmds::StatusName::Blocked
    );
}
