//! The charm's actions. Every failure goes through `action-fail` with a
//! message saying what went wrong (the hook itself succeeds, so whatever the
//! action did commit); results are flat keys, documented in `actions.yaml`.

use std::time::Duration;

use ops::hookcmds::{LogLevel, SecretMeta, SecretOwner};
use ops::pebble::{Client, PushOptions};
use ops::{Bag, Event, Model, ModelError, SecretContent};
use serde_json::{Map, Value};

use crate::admin::{self, AdminClient, AdminError};
use crate::config::{CharmConfig, RawConfig, Sensitive};
use crate::contracts::Exchange;
use crate::desired::{DbState, Proxies};
use crate::dsn;
use crate::gather::{self, log, UnitState, CONTAINER, PEER, PEER_ADMIN_SECRET, PEER_TOKEN_SECRET};
use crate::layer;
use crate::migrate;
use crate::reconcile::{self, Endpoints};
use crate::schema;

/// Runs action `name`.
pub fn run(
    name: &str,
    event: &Event,
    model: &mut Model,
    endpoints: &Endpoints,
) -> anyhow::Result<()> {
    let outcome = match name {
        "restart" => restart(model, event, endpoints),
        "schema-upgrade" => schema_upgrade(model, event, endpoints),
        "schema-version" => schema_version(model),
        "get-resource-token" => get_resource_token(model, event, endpoints),
        "emit-updated-config" => emit_updated_config(model),
        "create-auth-token" | "add-sync-token" | "list-tiers" | "add-tier" | "remove-tier"
        | "promote-patch" | "promote-all" | "blocklist-patch" | "trigger-sync" => {
            admin_action(name, model, endpoints)
        }
        other => Err(Failure(format!("unknown action {other:?}"))),
    };
    match outcome {
        Ok(results) => {
            if !results.is_empty() {
                model.set_action_results(&results)?;
            }
            Ok(())
        }
        Err(Failure(message)) => {
            model.fail_action(&message)?;
            Ok(())
        }
    }
}

/// An action failure: the message for `action-fail`.
#[derive(Debug)]
struct Failure(String);

impl From<ModelError> for Failure {
    fn from(e: ModelError) -> Failure {
        Failure(e.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure(format!("{e:#}"))
    }
}

type Results = Map<String, Value>;

fn results<const N: usize>(pairs: [(&str, String); N]) -> Results {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v)))
        .collect()
}

fn config(model: &mut Model) -> Result<CharmConfig, Failure> {
    let raw: RawConfig = model.config()?.values().clone();
    CharmConfig::try_from(&raw).map_err(|e| {
        Failure(format!(
            "the charm's configuration is invalid: {}",
            e.status_message()
        ))
    })
}

fn param(model: &mut Model, key: &str) -> Result<Option<String>, Failure> {
    Ok(model
        .action_param::<String>(key)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

fn required_param(model: &mut Model, key: &str) -> Result<String, Failure> {
    param(model, key)?.ok_or_else(|| Failure(format!("parameter {key} must not be empty")))
}

fn restart(model: &mut Model, event: &Event, endpoints: &Endpoints) -> Result<Results, Failure> {
    let container = model.container(CONTAINER)?;
    match container.stop(&[layer::SERVICE]) {
        Ok(_) => {}
        Err(e) if e.is_connection() => {
            return Err(Failure(
                "cannot restart: the workload container is not reachable".into(),
            ))
        }
        // Not defined or not running yet: the reconcile below starts it.
        Err(_) => {}
    }
    reconcile::reconcile(model, event, endpoints)?;
    Ok(results([("result", "restarted".to_string())]))
}

/// The database and the container, for the schema actions.
fn schema_context(model: &mut Model, failure: &str) -> Result<(Client, Sensitive), Failure> {
    let cfg = config(model)?;
    let mut state = UnitState::load(model);
    let snap = gather::snapshot(model, &cfg, &mut state)?;
    let DbState::Ready(db) = snap.database else {
        return Err(Failure(format!(
            "{failure}: database connection not set/ready"
        )));
    };
    let container = model.container(CONTAINER)?;
    if !snap.container {
        return Err(Failure(format!(
            "{failure}: cannot connect to the workload container"
        )));
    }
    if let Some(ca) = &db.ca {
        container
            .push(
                dsn::DB_CA_PATH,
                ca.clone(),
                &PushOptions::default().make_dirs().permissions(0o644),
            )
            .map_err(|e| Failure(format!("{failure}: cannot install the database CA: {e}")))?;
    }
    Ok((container, db.dsn))
}

fn schema_upgrade(
    model: &mut Model,
    event: &Event,
    endpoints: &Endpoints,
) -> Result<Results, Failure> {
    let (container, dsn) = schema_context(model, "schema migration failed")?;
    match schema::run(&container, "upgrade", &dsn) {
        schema::Outcome::Ok(output) => {
            log(model, LogLevel::Info, &format!("schema-upgrade: {output}"));
            model.set_unit_status(ops::Status::waiting(crate::status::SCHEMA_DONE))?;
            // The server may have been waiting for this.
            reconcile::reconcile(model, event, endpoints)?;
            Ok(results([("result", "schema migration done".to_string())]))
        }
        schema::Outcome::Unreachable => Err(Failure(
            "schema migration failed: cannot connect to the workload container".into(),
        )),
        schema::Outcome::Pending(e) | schema::Outcome::Failed(e) => {
            log(
                model,
                LogLevel::Error,
                &format!("schema-upgrade failed: {e}"),
            );
            Err(Failure(format!(
                "schema migration failed for {} database: {e}",
                schema::TARGET
            )))
        }
    }
}

fn schema_version(model: &mut Model) -> Result<Results, Failure> {
    let (container, dsn) = schema_context(model, "schema version check failed")?;
    let required = match schema::run(&container, "check", &dsn) {
        schema::Outcome::Ok(_) => false,
        schema::Outcome::Pending(_) => true,
        schema::Outcome::Unreachable => {
            return Err(Failure(
                "schema version check failed: cannot connect to the workload container".into(),
            ))
        }
        schema::Outcome::Failed(e) => {
            return Err(Failure(format!(
                "schema version check failed for {}: {e}",
                schema::TARGET
            )))
        }
    };
    let mut out = Results::new();
    out.insert(
        format!("migration-required-{}", schema::TARGET),
        Value::String(required.to_string()),
    );
    Ok(out)
}

fn get_resource_token(
    model: &mut Model,
    event: &Event,
    endpoints: &Endpoints,
) -> Result<Results, Failure> {
    const PREFIX: &str = "cannot fetch the resource token";
    if !model.is_leader()? {
        return Err(Failure(format!("{PREFIX}: unit is not the leader")));
    }
    let Some(peer) = model.relation(PEER)? else {
        return Err(Failure(format!("{PREFIX}: peer relation not ready")));
    };
    let cfg = config(model)?;
    if cfg.sync_token.is_some() {
        return Err(Failure(
            "patch-sync.token is already set. It should be unset before setting a resource token"
                .into(),
        ));
    }
    if cfg.secrets.sync_token.is_some() {
        return Err(Failure(
            "patch-sync.token-secret is already set. It should be unset before setting a resource token".into(),
        ));
    }
    if model.relation("pro-airgapped-server")?.is_some() {
        return Err(Failure(
            "already integrated with `pro-airgapped-server`. The relation should be removed before setting a resource token".into(),
        ));
    }
    let contract_token = match param(model, "contract-token-secret")? {
        Some(uri) => {
            let app = model.app_name().to_string();
            let content = model.get_secret(Some(&uri), None).map_err(|_| {
                Failure(format!(
                    "{PREFIX}: cannot read secret {uri}; run: juju grant-secret {uri} {app}"
                ))
            })?;
            content
                .get("token")
                .or_else(|| content.get("value"))
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .ok_or_else(|| Failure(format!("{PREFIX}: secret {uri} has no key `token`")))?
        }
        None => param(model, "contract-token")?
            .ok_or_else(|| Failure(format!("{PREFIX}: no contract token provided")))?,
    };
    let proxy = &model.context().proxy;
    let proxies = Proxies {
        http: proxy.http.clone().unwrap_or_default(),
        https: proxy.https.clone().unwrap_or_default(),
        no_proxy: proxy.no_proxy.clone().unwrap_or_default(),
    };
    let exchange = Exchange::new(
        &cfg.contracts_url,
        cfg.contracts_ca.as_ref().map(|c| c.pem.clone()),
        proxies,
    );
    model.action_log(&format!(
        "exchanging the contract token at {}",
        cfg.contracts_url
    ))?;
    let runtime = model.runtime()?;
    let token = runtime
        .block_on(exchange.resource_token(&contract_token))
        // The message is the charm's own and names no token; should a token
        // ever be echoed back by the service, it is hidden (tokens are long,
        // so this cannot mangle ordinary words).
        .map_err(|e| {
            let text = e.to_string();
            Failure(if contract_token.len() >= 8 {
                text.replace(contract_token.as_str(), crate::redact::REDACTED)
            } else {
                text
            })
        })?;

    // A new secret each time (never a new revision): units learn of it
    // through the peer relation, since owners get no secret-changed.
    let content = SecretContent([("token".to_string(), token.expose().to_string())].into());
    let meta = SecretMeta {
        label: None,
        description: Some("Livepatch on-prem resource token (get-resource-token)".into()),
        ..SecretMeta::default()
    };
    let uri = model.add_secret(&content, &meta, SecretOwner::Application)?;
    let old = model
        .relation_data(&peer, &Bag::LocalApp)?
        .get(PEER_TOKEN_SECRET)
        .cloned();
    model.set_relation_data(&peer, true, [(PEER_TOKEN_SECRET, uri.as_str())])?;
    if let Some(old) = old.filter(|o| *o != uri) {
        if let Err(e) = model.remove_secret(&old, None) {
            log(
                model,
                LogLevel::Warning,
                &format!("cannot remove the previous resource token secret: {e}"),
            );
        }
    }
    log(model, LogLevel::Info, "resource token set");
    reconcile::reconcile(model, event, endpoints)?;
    Ok(results([("result", "resource token set".to_string())]))
}

fn emit_updated_config(model: &mut Model) -> Result<Results, Failure> {
    let text = param(model, "config-file")?.unwrap_or_default();
    let app = model.app_name().to_string();
    let t = migrate::translate(&text, &app).map_err(|e| Failure(e.to_string()))?;
    Ok(results([
        ("new-config", t.new_config),
        ("removed-keys", t.removed_keys.join(",")),
        ("unrecognized-keys", t.unrecognized_keys.join(",")),
    ]))
}

/// The admin API client with the internal credential.
fn admin_client(model: &mut Model, endpoints: &Endpoints) -> Result<AdminClient, Failure> {
    let cfg = config(model)?;
    let Some(peer) = model.relation(PEER)? else {
        return Err(Failure(
            "the peer relation is not ready yet; try again shortly".into(),
        ));
    };
    let Some(uri) = model
        .relation_data(&peer, &Bag::LocalApp)?
        .get(PEER_ADMIN_SECRET)
        .cloned()
    else {
        return Err(Failure(
            "the charm's admin credential does not exist yet: the leader creates it once the database is related; try again shortly".into(),
        ));
    };
    let content = model.get_secret(Some(&uri), None)?;
    let (Some(user), Some(password)) = (content.get("username"), content.get("password")) else {
        return Err(Failure(format!(
            "the charm's admin secret {uri} is incomplete"
        )));
    };
    let base = endpoints.admin_url.clone().unwrap_or_else(|| {
        format!(
            "http://127.0.0.1:{}",
            cfg.admin_port.unwrap_or(crate::config::PUBLIC_PORT)
        )
    });
    AdminClient::new(&base, user, Sensitive(password.to_string())).map_err(admin_failure)
}

fn admin_failure(e: AdminError) -> Failure {
    Failure(e.to_string())
}

fn admin_action(name: &str, model: &mut Model, endpoints: &Endpoints) -> Result<Results, Failure> {
    // Parameters first: a typo fails before any network call.
    let params: Vec<Option<String>> = match name {
        "create-auth-token" => vec![
            Some(required_param(model, "tier")?),
            Some(required_param(model, "id")?),
        ],
        "add-sync-token" => vec![
            Some(required_param(model, "tier")?),
            Some(required_param(model, "name")?),
            param(model, "valid-until")?
                .map(|v| admin::normalise_valid_until(&v))
                .transpose()
                .map_err(Failure)?,
        ],
        "add-tier" => vec![Some(required_param(model, "name")?), param(model, "after")?],
        "remove-tier" => vec![Some(required_param(model, "name")?)],
        "promote-patch" => vec![
            Some(required_param(model, "version")?),
            Some(required_param(model, "tier")?),
        ],
        "promote-all" => vec![
            Some(required_param(model, "from")?),
            Some(required_param(model, "to")?),
        ],
        "blocklist-patch" => vec![
            Some(required_param(model, "version")?),
            Some(required_param(model, "reason")?),
        ],
        _ => vec![],
    };
    let wait = name == "trigger-sync" && model.action_param::<bool>("wait")?.unwrap_or(false);
    let p = |i: usize| params.get(i).cloned().flatten().unwrap_or_default();
    let client = admin_client(model, endpoints)?;
    let runtime = model.runtime()?;
    if wait {
        model.action_log("sync started; waiting for it to finish")?;
    }
    let out = runtime.block_on(async {
        Ok::<Results, AdminError>(match name {
            "create-auth-token" => {
                let (token, tier, id) = client.create_auth_token(&p(0), &p(1)).await?;
                results([
                    ("token", token.expose().to_string()),
                    ("tier", tier),
                    ("id", id),
                ])
            }
            "add-sync-token" => {
                let valid = params.get(2).cloned().flatten();
                let (token, name, tier) = client
                    .add_sync_token(&p(0), &p(1), valid.as_deref())
                    .await?;
                results([
                    ("token", token.expose().to_string()),
                    ("name", name),
                    ("tier", tier),
                ])
            }
            "list-tiers" => results([("tiers", client.list_tiers().await?.join(","))]),
            "add-tier" => {
                client
                    .add_tier(&p(0), params.get(1).cloned().flatten().as_deref())
                    .await?;
                results([("tier", p(0))])
            }
            "remove-tier" => {
                client.remove_tier(&p(0)).await?;
                results([("tier", p(0))])
            }
            "promote-patch" => {
                client.promote_patch(&p(0), &p(1)).await?;
                results([("version", p(0)), ("tier", p(1))])
            }
            "promote-all" => results([(
                "promoted",
                client.promote_all(&p(0), &p(1)).await?.to_string(),
            )]),
            "blocklist-patch" => {
                client.blocklist_patch(&p(0), &p(1)).await?;
                results([("version", p(0))])
            }
            "trigger-sync" => {
                let id = client.trigger_sync().await?;
                if wait {
                    let s = client
                        .wait_sync(&id, Duration::from_secs(30 * 60), Duration::from_secs(2))
                        .await?;
                    if s.state == "failed" {
                        return Err(AdminError::SyncFailed {
                            id,
                            reason: s.error.unwrap_or_else(|| "no reason given".into()),
                        });
                    }
                    results([
                        ("sync-id", id),
                        ("state", s.state),
                        ("patches-done", s.patches_done.to_string()),
                        ("bytes-done", s.bytes_done.to_string()),
                    ])
                } else {
                    let state = client
                        .sync_state(&id)
                        .await
                        .map(|s| s.state)
                        .unwrap_or_else(|_| "running".into());
                    results([("sync-id", id), ("state", state)])
                }
            }
            other => {
                return Err(AdminError::Invalid(format!(
                    "unknown admin action {other:?}"
                )))
            }
        })
    });
    out.map_err(admin_failure)
}
