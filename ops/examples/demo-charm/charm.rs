//! The demo charm: a web server in container `web`, configured from config,
//! a `db` relation (credentials in a secret), and an optional user secret.
//! It shows the shape of a charm on `ops`: one exhaustive `match`, one
//! idempotent reconcile, actions apart.
//!
//! - Config `port`, `greeting`, `api-key` (a user secret) shape the layer.
//! - The leader asks for a database on `db-relation-created`; the provider
//!   answers with `host` and `password-secret` (a secret URI).
//! - The Pebble layer runs `/usr/bin/demo-server`; a config file is pushed
//!   first. The plan is only changed when the desired service differs.
//! - While the container is unreachable the event is deferred.
//! - Action `greet` runs `/usr/bin/demo-greet <name>` in the container.

use anyhow::Context as _;
use ops::hookcmds::{LogLevel, Port};
use ops::pebble::{self, Check, ExecOptions, Layer, PushOptions, Service};
use ops::{Bag, Charm, Event, Model, Status};

/// The container the workload runs in.
pub(crate) const CONTAINER: &str = "web";
/// The label this charm gives the database password secret.
pub(crate) const DB_SECRET_LABEL: &str = "db-password";
/// Where the server's config file goes.
pub(crate) const CONFIG_FILE: &str = "/etc/demo/config.json";

/// The charm. It keeps nothing between events: everything is re-read.
#[derive(Debug, Default)]
pub(crate) struct DemoCharm;

/// Validated config.
struct Config {
    port: u16,
    greeting: String,
    api_key: Option<String>,
}

impl Config {
    /// Reads and checks the config; the error text becomes the Blocked
    /// status.
    fn read(model: &mut Model) -> anyhow::Result<Result<Config, String>> {
        let cfg = model.config()?;
        let port = cfg.int("port")?.unwrap_or(8080);
        let Ok(port) =
            u16::try_from(port)
                .map_err(|_| ())
                .and_then(|p| if p == 0 { Err(()) } else { Ok(p) })
        else {
            return Ok(Err(format!("invalid port {port}: use 1-65535")));
        };
        let api_key = match cfg.secret("api-key") {
            Ok(uri) => uri,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(Ok(Config {
            port,
            greeting: cfg.string("greeting")?.unwrap_or_default(),
            api_key,
        }))
    }
}

impl Charm for DemoCharm {
    fn handle(&mut self, event: &Event, model: &mut Model) -> anyhow::Result<()> {
        match event {
            Event::RelationCreated(e) if e.relation.endpoint == "db" => {
                if model.is_leader()? {
                    model.set_relation_data(&e.relation, true, [("database", "demo")])?;
                }
                self.reconcile(model)
            }
            Event::SecretChanged(e) => {
                // Move tracking to the new revision, then use it.
                model.refresh_secret(Some(&e.id), e.label.as_deref())?;
                self.reconcile(model)
            }
            Event::Action(a) => match a.name.as_str() {
                "greet" => self.greet(model),
                other => {
                    model.fail_action(&format!("unknown action {other:?}"))?;
                    Ok(())
                }
            },
            Event::Install
            | Event::Start
            | Event::ConfigChanged
            | Event::UpdateStatus
            | Event::UpgradeCharm
            | Event::LeaderElected
            | Event::LeaderSettingsChanged
            | Event::RelationCreated(_)
            | Event::RelationJoined(_)
            | Event::RelationChanged(_)
            | Event::RelationDeparted(_)
            | Event::RelationBroken(_)
            | Event::PebbleReady(_)
            | Event::PebbleCustomNotice(_)
            | Event::PebbleCheckFailed(_)
            | Event::PebbleCheckRecovered(_)
            | Event::StorageAttached(_)
            | Event::StorageDetaching(_) => self.reconcile(model),
            Event::SecretRotate(_) | Event::SecretExpired(_) | Event::SecretRemove(_) => Ok(()),
            Event::Stop | Event::Remove | Event::CollectMetrics => Ok(()),
            Event::Unknown(_) => Ok(()),
        }
    }
}

impl DemoCharm {
    fn reconcile(&mut self, model: &mut Model) -> anyhow::Result<()> {
        let cfg = match Config::read(model)? {
            Ok(c) => c,
            Err(msg) => {
                model.set_unit_status(Status::blocked(msg))?;
                return Ok(());
            }
        };
        let web = model.container(CONTAINER)?;
        // Pebble-ready is only a hint: the first request (the plan, needed
        // anyway) is the probe; come back later if the container is not there.
        let plan = match web.plan() {
            Ok(plan) => plan,
            Err(e) if e.is_connection() => {
                model.set_unit_status(Status::waiting("waiting for the web container"))?;
                model.defer()?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let Some(db) = model.relation("db")? else {
            model.set_unit_status(Status::blocked("needs a db relation"))?;
            return Ok(());
        };
        let remote = model.relation_data(&db, &Bag::RemoteApp)?;
        let (Some(host), Some(secret)) = (remote.get("host"), remote.get("password-secret")) else {
            model.set_unit_status(Status::waiting("waiting for database credentials"))?;
            return Ok(());
        };
        let password = model
            .get_secret(Some(secret), Some(DB_SECRET_LABEL))?
            .get("password")
            .context("the database secret has no \"password\" key")?
            .to_owned();
        let api_key = match &cfg.api_key {
            Some(uri) => match model.get_secret(Some(uri), None) {
                Ok(c) => c.get("key").map(str::to_owned),
                Err(ops::ModelError::SecretNotFound(_)) => {
                    model.set_unit_status(Status::blocked(format!(
                        "api-key: secret {uri} is not granted to {}; run: juju grant-secret {uri} {}",
                        model.app_name(),
                        model.app_name()
                    )))?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };

        let config_json =
            serde_json::json!({"greeting": cfg.greeting, "port": cfg.port, "db-host": host})
                .to_string();
        let current = match web.pull(CONFIG_FILE) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        if current.as_deref() != Some(config_json.as_bytes()) {
            web.push(
                CONFIG_FILE,
                config_json,
                &PushOptions::default()
                    .make_dirs()
                    .permissions(0o640)
                    .user("_daemon_"),
            )?;
        }

        let mut service = Service::new(format!(
            "/usr/bin/demo-server --port {} --config {CONFIG_FILE}",
            cfg.port
        ))
        .user("_daemon_")
        .env("DB_PASSWORD", password);
        if let Some(key) = api_key {
            service = service.env("API_KEY", key);
        }
        let mut layer = Layer {
            summary: Some("demo".into()),
            ..Layer::default()
        };
        layer.services.insert("web".into(), service);
        layer.checks.insert(
            "web-up".into(),
            Check::http(format!("http://localhost:{}/health", cfg.port)).level("alive"),
        );

        let wanted = pebble::plan::finish_plan(
            pebble::plan::combine(&[("demo".into(), layer.clone())]).map_err(anyhow::Error::msg)?,
        )
        .map_err(anyhow::Error::msg)?;
        if plan.services.get("web") != wanted.services.get("web")
            || plan.checks.get("web-up") != wanted.checks.get("web-up")
        {
            model.set_unit_status(Status::maintenance("configuring the web server"))?;
            web.add_layer("demo", &layer, true)?;
            web.replan()?;
            model.log(
                LogLevel::Info,
                &format!("web server (re)configured on port {}", cfg.port),
            )?;
        }
        // Opened ports and stored state commit together at the end of the
        // hook, so the stored port says what is open: no need to ask Juju.
        if model.stored::<u16>("port")? != Some(cfg.port) {
            model.set_ports(&[Port::tcp(cfg.port)])?;
            model.set_stored("port", &cfg.port)?;
        }
        model.set_unit_status(Status::active(format!("serving on :{}", cfg.port)))?;
        Ok(())
    }

    fn greet(&mut self, model: &mut Model) -> anyhow::Result<()> {
        let name: String = model
            .action_param("name")?
            .context("juju requires the name parameter")?;
        let shout: bool = model.action_param("shout")?.unwrap_or(false);
        let greeting = model.config()?.string("greeting")?.unwrap_or_default();
        model.action_log(&format!("greeting {name}"))?;
        let web = model.container(CONTAINER)?;
        let out = match web.exec(
            &ExecOptions::new(["/usr/bin/demo-greet", name.as_str()]).env("GREETING", greeting),
        ) {
            Ok(out) => out,
            Err(pebble::Error::Exec { code, stderr, .. }) => {
                let stderr = String::from_utf8_lossy(&stderr);
                model.fail_action(&format!(
                    "demo-greet exited with status {code}: {}",
                    stderr.trim()
                ))?;
                return Ok(());
            }
            Err(e) if e.is_connection() => {
                model.fail_action("the web container is not reachable; try again later")?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let mut text = out.stdout_text().trim().to_owned();
        if shout {
            text = text.to_uppercase();
        }
        let results = serde_json::json!({ "greeting": text })
            .as_object()
            .cloned()
            .unwrap_or_default();
        model.set_action_results(&results)?;
        Ok(())
    }
}
