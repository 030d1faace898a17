//! Operator secrets named by the `*-secret` options.

use ops::testing::Secret;
use ops::{Event, Status};

use crate::world::*;

const HASH: &str = "$2y$10$Y8o/3mvBaM7SfdNoHf9v4eWKh9yXHBS1YRKqKRpIhyfnAVD7f4qzK";

#[test]
fn a_sync_token_secret_feeds_the_server_and_rotation_reconfigures_it() {
    let secret = Secret::new(&[("token", "old-token")]).with_id("secret:t0k3nt0k3nt0k3nt0k3n");
    let state = world()
        .with_config("patch-sync.enabled", true)
        .with_config("patch-sync.token-secret", "secret:t0k3nt0k3nt0k3nt0k3n")
        .with_secret(secret);
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(env(&out)["LP_PATCH_SYNC_TOKEN"], "old-token");

    let mut rotated = out.state.clone();
    let s = rotated
        .secrets
        .iter_mut()
        .find(|s| s.id == "secret:t0k3nt0k3nt0k3nt0k3n")
        .unwrap();
    *s = s.clone().with_latest(&[("token", "new-token")]);
    let event = rotated
        .secrets
        .iter()
        .find(|s| s.id == "secret:t0k3nt0k3nt0k3nt0k3n")
        .unwrap()
        .changed_event();
    let out = run(&rotated, event);
    assert_eq!(env(&out)["LP_PATCH_SYNC_TOKEN"], "new-token");
    assert!(service_active(&out));
}

#[test]
fn a_secret_that_is_not_granted_blocks_with_the_command_to_run() {
    let state = world().with_config("patch-sync.token-secret", "secret:n0tgr4nt3dn0tgr4nt3d");
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked(
            "patch-sync.token-secret: secret secret:n0tgr4nt3dn0tgr4nt3d is not granted to livepatch-server-k8s; run: juju grant-secret secret:n0tgr4nt3dn0tgr4nt3d livepatch-server-k8s"
        )
    );
    assert!(plan_is_empty(&out));
}

#[test]
fn a_secret_without_the_expected_key_names_the_option_and_the_key() {
    let state = world()
        .with_config("patch-storage.type", "s3")
        .with_config("patch-storage.s3-bucket", "patches")
        .with_config(
            "patch-storage.s3-credentials-secret",
            "secret:s3s3s3s3s3s3s3s3s3s3",
        )
        .with_secret(Secret::new(&[("access-key", "AK")]).with_id("secret:s3s3s3s3s3s3s3s3s3s3"));
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("patch-storage.s3-credentials-secret: secret secret:s3s3s3s3s3s3s3s3s3s3 has no key `secret-key`")
    );
}

#[test]
fn credential_secrets_win_over_the_plain_options() {
    let state = world()
        .with_config("contracts.user", "plaintext-user")
        .with_config("contracts.password", "plaintext-pass")
        .with_config("contracts.password-secret", "secret:c0ntr4ctsc0ntr4ctsc0")
        .with_secret(
            Secret::new(&[("user", "secret-user"), ("password", "secret-pass")])
                .with_id("secret:c0ntr4ctsc0ntr4ctsc0"),
        )
        .with_config("patch-storage.type", "swift")
        .with_config(
            "patch-storage.swift-auth-url",
            "https://keystone.example:5000/v3",
        )
        .with_config("patch-storage.swift-container", "patches")
        .with_config(
            "patch-storage.swift-credentials-secret",
            "secret:sw1ftsw1ftsw1ftsw1ft",
        )
        .with_secret(
            Secret::new(&[("username", "swift-user"), ("api-key", "swift-key")])
                .with_id("secret:sw1ftsw1ftsw1ftsw1ft"),
        );
    let env = env(&run(&state, Event::ConfigChanged));
    assert_eq!(env["LP_CONTRACTS_USER"], "secret-user");
    assert_eq!(env["LP_CONTRACTS_PASSWORD"], "secret-pass");
    assert_eq!(env["LP_PATCH_STORAGE_SWIFT_USERNAME"], "swift-user");
    assert_eq!(env["LP_PATCH_STORAGE_SWIFT_API_KEY"], "swift-key");
    assert_eq!(env["LP_PATCH_STORAGE_SWIFT_CONTAINER"], "patches");
}

#[test]
fn users_secret_passwords_are_hashed_once_and_kept_across_hooks() {
    let state = world()
        .with_config("auth.basic.enabled", true)
        .with_config("auth.basic.users-secret", "secret:us3rsus3rsus3rsus3rs")
        .with_secret(
            Secret::new(&[
                ("alice", "correct horse battery"),
                ("users", &format!("bob:{HASH}")),
            ])
            .with_id("secret:us3rsus3rsus3rsus3rs"),
        );
    let out = run(&state, Event::ConfigChanged);
    let users = env(&out)["LP_AUTH_BASIC_USERS"].clone();
    let entries: Vec<&str> = users.split(',').collect();
    assert_eq!(entries[0], format!("charm-admin:{}", admin_hash()));
    assert_eq!(entries[1], format!("bob:{HASH}"));
    let alice = entries[2].strip_prefix("alice:").unwrap();
    assert!(bcrypt::verify("correct horse battery", alice).unwrap());
    // No plain password anywhere in the unit's state or the layer.
    assert!(!serde_json::to_string(&out.state.stored)
        .unwrap()
        .contains("correct horse"));
    assert!(!users.contains("correct horse"));
    // The next hook keeps the same hash: no restart.
    let again = run(&out.state, Event::ConfigChanged);
    assert_eq!(env(&again)["LP_AUTH_BASIC_USERS"], users);
    assert_eq!(
        again.state.container("livepatch").unwrap().layers,
        out.state.container("livepatch").unwrap().layers
    );
}
