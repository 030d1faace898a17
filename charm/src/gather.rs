//! Reading the model into a [`Snapshot`]: relations, secrets, leadership,
//! the peer data and the container's reachability. Each relation and secret
//! is read once per hook; nothing here writes, except the leader creating
//! the charm's internal admin credential the first time it is needed.
//!
//! Remote data is untrusted: a garbled bag or a secret reference that cannot
//! be read becomes "waiting", with the reason in the log, never a failed
//! hook.

use std::collections::BTreeMap;

use ops::hookcmds::{LogLevel, SecretMeta, SecretOwner};
use ops::{Bag, Model, ModelError, Read, SecretContent};

use crate::ca;
use crate::config::{CharmConfig, PatchStorage, Sensitive};
use crate::desired::{
    AdminCredential, DbReady, DbState, Proxies, ResolvedSecrets, Schema, Snapshot,
};
use crate::dsn::{self, Tls};
use crate::relations;
use crate::status;
use crate::users::{self, HashCache};

/// The peer relation's endpoint.
pub const PEER: &str = "livepatch";
/// The workload container.
pub const CONTAINER: &str = "livepatch";
/// Peer application keys (no credential is ever among them).
pub const PEER_ADMIN_SECRET: &str = "admin-secret-id";
/// Peer key: the resource token's secret.
pub const PEER_TOKEN_SECRET: &str = "resource-token-secret-id";
/// Peer key: the schema version the leader migrated to.
pub const PEER_SCHEMA_VERSION: &str = "schema-version";
/// The internal admin user's login name.
pub const ADMIN_USER: &str = "charm-admin";

/// What the charm keeps in the unit's Juju state between hooks.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UnitState {
    /// A database relation was broken and none has come back.
    pub database_removed: bool,
    /// Digest of each relation bag last written, by `endpoint:id/app|unit`.
    pub written: BTreeMap<String, String>,
    /// bcrypt hashes of plain passwords from `auth.basic.users-secret`.
    pub hashes: HashCache,
    /// Digest of the NetworkPolicy last applied (leader).
    pub network_policy: Option<String>,
    /// The ports this unit last opened (Juju keeps them across pod churn).
    pub ports: Option<Vec<u16>>,
}

/// Key of [`UnitState`] in the stored document.
pub const STATE_KEY: &str = "livepatch";

impl UnitState {
    /// Loads the unit's state (default when never saved or unreadable).
    pub fn load(model: &Model) -> UnitState {
        model.stored(STATE_KEY).ok().flatten().unwrap_or_default()
    }

    /// Saves it when it changed.
    pub fn save(&self, model: &mut Model, before: &UnitState) -> Result<(), ModelError> {
        if self != before {
            model.set_stored(STATE_KEY, self)?;
        }
        Ok(())
    }
}

/// Logs through `juju-log`; a failure to log never fails the hook.
pub fn log(model: &mut Model, level: LogLevel, message: &str) {
    let _ = model.log(level, message);
}

/// Reads everything `desired` needs.
pub fn snapshot(
    model: &mut Model,
    cfg: &CharmConfig,
    state: &mut UnitState,
) -> anyhow::Result<Snapshot> {
    let leader = model.is_leader()?;
    let app = model.app_name().to_string();
    // One goal-state call gives the planned units (filesystem storage cannot
    // be shared) and which optional endpoints are related at all, so the
    // endpoints nobody related to cost no relation-ids call each.
    let goal = model.goal_state()?;
    let planned_units = match cfg.storage {
        PatchStorage::Filesystem { .. } => u32::try_from(goal.planned_units()).unwrap_or(u32::MAX),
        _ => 1,
    };
    let optional =
        |model: &mut Model, endpoint: &str| -> Result<Option<ops::RelationId>, ModelError> {
            if goal.relations.contains_key(endpoint) {
                model.relation(endpoint)
            } else {
                Ok(None)
            }
        };
    // The relations of the optional endpoints that are related, then every
    // bag this snapshot reads: one batch of concurrent hook commands each.
    let optional_endpoints = [
        "database-legacy",
        "metrics-db",
        "ingress",
        "nginx-route",
        "pro-airgapped-server",
        "cve-catalog",
    ];
    model.prefetch(
        &optional_endpoints
            .iter()
            .filter(|e| goal.relations.contains_key(**e))
            .map(|e| Read::RelationIds((*e).to_string()))
            .collect::<Vec<_>>(),
    );
    {
        let mut bags = Vec::new();
        if let Some(r) = model.relation(PEER)? {
            bags.push(Read::RelationData(r, Bag::LocalApp));
        }
        let mut remote = vec!["database", "metrics-db", "cve-catalog"];
        if cfg.ingress == crate::config::IngressInterface::Ingress {
            remote.push("ingress");
        }
        for endpoint in remote {
            if endpoint == "database" || goal.relations.contains_key(endpoint) {
                if let Some(r) = model.relation(endpoint)? {
                    bags.push(Read::RelationData(r, Bag::RemoteApp));
                }
            }
        }
        model.prefetch(&bags);
    }
    let peer = model.relation(PEER)?;
    let peer_data = match &peer {
        Some(r) => model.relation_data(r, &Bag::LocalApp)?,
        None => BTreeMap::new(),
    };
    let container = model.container(CONTAINER)?.system_info().is_ok();
    let proxy = &model.context().proxy;
    let proxies = Proxies {
        http: proxy.http.clone().unwrap_or_default(),
        https: proxy.https.clone().unwrap_or_default(),
        no_proxy: proxy.no_proxy.clone().unwrap_or_default(),
    };

    let database_relation = model.relation("database")?;
    let legacy_relation = optional(model, "database-legacy")?;
    if database_relation.is_some() || legacy_relation.is_some() {
        state.database_removed = false;
    }
    let database = match (&database_relation, &legacy_relation) {
        (Some(_), Some(_)) => DbState::Conflict,
        (Some(r), None) => postgres(
            model,
            r,
            relations::DATABASE_NAME,
            &cfg.db_sslmode,
            dsn::DB_CA_PATH,
        ),
        (None, Some(r)) => legacy(model, r),
        (None, None) if state.database_removed => DbState::Removed,
        (None, None) => DbState::Absent,
    };
    if let DbState::Waiting(reason) = &database {
        log(
            model,
            LogLevel::Info,
            &format!("database not ready: {reason}"),
        );
    }
    let metrics_relation = optional(model, "metrics-db")?;
    let metrics_db = match &metrics_relation {
        Some(r) => match postgres(
            model,
            r,
            relations::METRICS_DATABASE_NAME,
            &cfg.db_sslmode,
            dsn::METRICS_DB_CA_PATH,
        ) {
            DbState::Ready(db) => Some(db),
            other => {
                log(
                    model,
                    LogLevel::Info,
                    &format!("metrics database not ready: {other:?}"),
                );
                None
            }
        },
        None => None,
    };

    let ingress_relation = optional(model, "ingress")?;
    let ingress_url = match (&ingress_relation, cfg.ingress) {
        (Some(r), crate::config::IngressInterface::Ingress) => remote_app_bag(model, r)
            .as_ref()
            .and_then(relations::ingress_url),
        _ => None,
    };
    let nginx_route_relation = optional(model, "nginx-route")?;

    let airgapped_url = match optional(model, "pro-airgapped-server")? {
        Some(r) => {
            let mut bags = BTreeMap::new();
            for unit in model.relation_units(&r)? {
                if let Ok(bag) = model.relation_data(&r, &Bag::Unit(unit.clone())) {
                    bags.insert(unit, bag);
                }
            }
            relations::airgapped_contracts_url(&bags)
        }
        None => None,
    };
    let cve_catalog_url = match optional(model, "cve-catalog")? {
        Some(r) => remote_app_bag(model, &r)
            .as_ref()
            .and_then(relations::cve_catalog_url),
        None => None,
    };

    let (secrets, secret_problems) = user_secrets(model, cfg, &mut state.hashes);
    let admin = match &peer {
        Some(r) => admin_credential(model, r, &peer_data, leader)?,
        None => None,
    };
    let resource_token = match peer_data.get(PEER_TOKEN_SECRET) {
        Some(uri) => match model.get_secret(Some(uri), None) {
            Ok(c) => c
                .get("token")
                .filter(|t| !t.is_empty())
                .map(|t| Sensitive(t.to_string())),
            Err(e) => {
                log(
                    model,
                    LogLevel::Warning,
                    &format!("cannot read the resource token secret: {e}"),
                );
                None
            }
        },
        None => None,
    };

    Ok(Snapshot {
        app,
        unit: model.unit_name().to_string(),
        model: model.model_name().to_string(),
        model_uuid: model.model_uuid().to_string(),
        leader,
        planned_units,
        peer: peer.is_some(),
        container,
        proxies,
        database,
        metrics_db,
        ingress_url,
        database_relation: database_relation.map(|r| r.id),
        legacy_database_relation: legacy_relation.map(|r| r.id),
        metrics_db_relation: metrics_relation.map(|r| r.id),
        ingress_relation: ingress_relation.map(|r| r.id),
        nginx_route_relation: nginx_route_relation.map(|r| r.id),
        airgapped_url,
        cve_catalog_url,
        secrets,
        secret_problems,
        admin,
        resource_token,
        schema: Schema::NotRun,
    })
}

/// The remote application's bag, or `None` when it cannot be read yet.
fn remote_app_bag(model: &mut Model, r: &ops::RelationId) -> Option<BTreeMap<String, String>> {
    model.relation_data(r, &Bag::RemoteApp).ok()
}

/// A `postgresql_client` relation (juju.md §5.1): credentials from the
/// `secret-user` secret, TLS from `secret-tls`, plain fields as a fallback
/// for providers without `requested-secrets` support.
pub fn postgres(
    model: &mut Model,
    r: &ops::RelationId,
    database: &str,
    sslmode: &str,
    ca_path: &'static str,
) -> DbState {
    let Some(bag) = remote_app_bag(model, r) else {
        return DbState::Waiting("the provider has not joined yet".into());
    };
    let mut read_secret = |uri: &str, group: &str| {
        let label = relations::secret_label(&r.endpoint, r.id, group);
        model
            .get_secret(Some(uri), Some(&label))
            .map_err(|e| e.to_string())
    };
    postgres_from_bag(
        &bag,
        &mut read_secret,
        PostgresTarget {
            database,
            sslmode,
            ca_path,
        },
        time::OffsetDateTime::now_utc(),
    )
}

/// Where a `postgresql_client` DSN points and how it checks TLS.
#[derive(Debug, Clone, Copy)]
pub struct PostgresTarget<'a> {
    /// The database name requested.
    pub database: &'a str,
    /// `database.sslmode`.
    pub sslmode: &'a str,
    /// Where the provider's CA goes in the container.
    pub ca_path: &'static str,
}

/// The model-free half of [`postgres`]: a provider's application bag, and
/// `read_secret(uri, group)` for the secrets it names, to a DSN or the
/// reason to wait. Whatever the bag holds, the answer is one or the other.
pub fn postgres_from_bag(
    bag: &BTreeMap<String, String>,
    read_secret: &mut dyn FnMut(&str, &str) -> Result<SecretContent, String>,
    target: PostgresTarget<'_>,
    now: time::OffsetDateTime,
) -> DbState {
    let offer = relations::postgres_offer(bag);
    let Some(endpoints) = &offer.endpoints else {
        return DbState::Waiting("no endpoints yet".into());
    };
    let endpoint = match dsn::first_endpoint(endpoints) {
        Ok(e) => e,
        Err(e) => return DbState::Waiting(e),
    };
    let (username, password) = match &offer.secret_user {
        Some(uri) => match read_secret(uri, "user") {
            Ok(c) => (
                c.get("username").map(str::to_string),
                c.get("password").map(str::to_string),
            ),
            Err(e) => return DbState::Waiting(format!("cannot read secret-user: {e}")),
        },
        None => (offer.username.clone(), offer.password.clone()),
    };
    let (Some(username), Some(password)) = (
        username.filter(|u| !u.is_empty()),
        password.filter(|p| !p.is_empty()),
    ) else {
        return DbState::Waiting("no username and password yet".into());
    };
    let (tls, tls_ca) = match &offer.secret_tls {
        Some(uri) => match read_secret(uri, "tls") {
            Ok(c) => (
                c.get("tls").map(str::to_string),
                c.get("tls-ca").map(str::to_string),
            ),
            Err(e) => return DbState::Waiting(format!("cannot read secret-tls: {e}")),
        },
        None => (offer.tls.clone(), offer.tls_ca.clone()),
    };
    let ca = if relations::tls_enabled(tls.as_deref()) {
        let Some(text) = tls_ca.filter(|c| !c.trim().is_empty()) else {
            return DbState::Waiting("TLS is on but the provider gave no CA yet".into());
        };
        match ca::parse_ca_pem(&text, now, false) {
            Ok(bundle) => Some(bundle.pem),
            Err(e) => return DbState::Waiting(format!("the provider's CA {e}")),
        }
    } else {
        None
    };
    let dsn = dsn::compose(
        &username,
        &password,
        &endpoint,
        target.database,
        ca.as_ref().map(|_| Tls {
            sslmode: target.sslmode,
            root_cert: target.ca_path,
        }),
    );
    DbState::Ready(DbReady { dsn, ca })
}

/// The legacy `pgsql` relation: the primary's `master` string, once our unit
/// is allowed.
fn legacy(model: &mut Model, r: &ops::RelationId) -> DbState {
    let app_bag = remote_app_bag(model, r).unwrap_or_default();
    let mut unit_bags = BTreeMap::new();
    if let Ok(units) = model.relation_units(r) {
        for unit in units {
            if let Ok(bag) = model.relation_data(r, &Bag::Unit(unit.clone())) {
                unit_bags.insert(unit, bag);
            }
        }
    }
    let unit = model.unit_name().to_string();
    match relations::legacy_master(&app_bag, &unit_bags, &unit) {
        None => DbState::Waiting(
            "the legacy provider has not published `master` for this unit yet".into(),
        ),
        Some(master) => match dsn::from_legacy_master(&master) {
            Ok(dsn) => DbState::Ready(DbReady { dsn, ca: None }),
            Err(e) => DbState::Waiting(format!("the legacy `master` string is unusable: {e}")),
        },
    }
}

/// Reads one operator secret; the error is the Blocked message.
fn read_user_secret(model: &mut Model, option: &str, uri: &str) -> Result<SecretContent, String> {
    let app = model.app_name().to_string();
    match model.get_secret(Some(uri), None) {
        Ok(c) => Ok(c),
        Err(ModelError::SecretNotFound(_)) => Err(status::secret_not_granted(option, uri, &app)),
        Err(e) if e.to_string().contains("permission denied") => {
            Err(status::secret_not_granted(option, uri, &app))
        }
        Err(e) => Err(format!("{option}: cannot read secret {uri}: {e}")),
    }
}

fn required<'a>(
    content: &'a SecretContent,
    option: &str,
    uri: &str,
    key: &str,
) -> Result<&'a str, String> {
    content
        .get(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{option}: secret {uri} has no key `{key}`"))
}

/// Reads the `*-secret` options; problems come back as Blocked messages.
fn user_secrets(
    model: &mut Model,
    cfg: &CharmConfig,
    cache: &mut HashCache,
) -> (ResolvedSecrets, Vec<String>) {
    let mut out = ResolvedSecrets::default();
    let mut problems = Vec::new();
    let s = &cfg.secrets;
    if let Some(uri) = &s.users {
        let option = "auth.basic.users-secret";
        match read_user_secret(model, option, uri).and_then(|c| {
            users::users_from_secret(&c.0, cache).map_err(|e| format!("{option}: {e}"))
        }) {
            Ok(u) => out.users = u,
            Err(p) => problems.push(p),
        }
    } else {
        cache.entries.clear();
    }
    if let Some(uri) = &s.contracts {
        let option = "contracts.password-secret";
        match read_user_secret(model, option, uri).and_then(|c| {
            let password = required(&c, option, uri, "password")?.to_string();
            Ok((c.get("user").map(str::to_string), password))
        }) {
            Ok((user, password)) => {
                out.contracts_user = user;
                out.contracts_password = Some(Sensitive(password));
            }
            Err(p) => problems.push(p),
        }
    }
    for (uri, option, keys) in [
        (
            &s.s3,
            "patch-storage.s3-credentials-secret",
            ["access-key", "secret-key"],
        ),
        (
            &s.swift,
            "patch-storage.swift-credentials-secret",
            ["username", "api-key"],
        ),
    ] {
        let Some(uri) = uri else { continue };
        match read_user_secret(model, option, uri).and_then(|c| {
            Ok((
                Sensitive(required(&c, option, uri, keys[0])?.to_string()),
                Sensitive(required(&c, option, uri, keys[1])?.to_string()),
            ))
        }) {
            Ok(pair) if option.contains("s3") => out.s3 = Some(pair),
            Ok(pair) => out.swift = Some(pair),
            Err(p) => problems.push(p),
        }
    }
    if let Some(uri) = &s.sync_token {
        let option = "patch-sync.token-secret";
        match read_user_secret(model, option, uri).and_then(|c| {
            c.get("token")
                .or_else(|| c.get("value"))
                .filter(|t| !t.is_empty())
                .map(|t| Sensitive(t.to_string()))
                .ok_or_else(|| format!("{option}: secret {uri} has no key `token`"))
        }) {
            Ok(t) => out.sync_token = Some(t),
            Err(p) => problems.push(p),
        }
    }
    (out, problems)
}

/// The internal admin credential: read from its secret, or (leader, first
/// time) created. Non-leaders get `None` until the leader has made it.
fn admin_credential(
    model: &mut Model,
    peer: &ops::RelationId,
    peer_data: &BTreeMap<String, String>,
    leader: bool,
) -> anyhow::Result<Option<AdminCredential>> {
    if let Some(uri) = peer_data.get(PEER_ADMIN_SECRET) {
        match model.get_secret(Some(uri), None) {
            Ok(c) => {
                let (Some(username), Some(password), Some(hash)) =
                    (c.get("username"), c.get("password"), c.get("password-hash"))
                else {
                    anyhow::bail!(
                        "the charm's admin secret {uri} lacks username, password or password-hash"
                    );
                };
                return Ok(Some(AdminCredential {
                    username: username.to_string(),
                    password: Sensitive(password.to_string()),
                    hash: hash.to_string(),
                }));
            }
            // The leader re-creates a secret that went missing; others wait.
            Err(ModelError::SecretNotFound(_)) if leader => {}
            Err(e) if !leader => {
                log(
                    model,
                    LogLevel::Warning,
                    &format!("cannot read the charm's admin secret yet: {e}"),
                );
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !leader {
        return Ok(None);
    }
    let password = users::random_token(32);
    let hash = bcrypt::hash(&password, users::BCRYPT_COST)?;
    let content = SecretContent(
        [
            ("username".to_string(), ADMIN_USER.to_string()),
            ("password".to_string(), password.clone()),
            ("password-hash".to_string(), hash.clone()),
        ]
        .into(),
    );
    let meta = SecretMeta {
        label: Some("livepatch-admin-credential".into()),
        description: Some("Internal admin user of the livepatch-server-k8s charm's actions".into()),
        ..SecretMeta::default()
    };
    let uri = model.add_secret(&content, &meta, SecretOwner::Application)?;
    model.set_relation_data(peer, true, [(PEER_ADMIN_SECRET, uri.as_str())])?;
    log(
        model,
        LogLevel::Info,
        "created the charm's internal admin credential",
    );
    Ok(Some(AdminCredential {
        username: ADMIN_USER.to_string(),
        password: Sensitive(password),
        hash,
    }))
}
