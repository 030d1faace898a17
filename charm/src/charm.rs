//! The charm's event handling: every hook runs the same reconcile, except
//! the few that need something first (a relation broken, a secret changed,
//! the unit stopping) and actions.

use ops::hookcmds::LogLevel;
use ops::{Charm, Event, Model, Read};

use crate::actions;
use crate::gather::{self, log, UnitState, CONTAINER};
use crate::layer;
use crate::reconcile::{self, Endpoints};
use crate::status;

/// Endpoints whose relation going away means "no database".
const DATABASE_ENDPOINTS: &[&str] = &["database", "database-legacy"];

/// The Livepatch charm.
#[derive(Debug, Default)]
pub struct LivepatchCharm {
    /// Where network clients connect; the default is production's.
    pub endpoints: Endpoints,
}

impl Charm for LivepatchCharm {
    /// Every reconcile reads the config, leadership, the goal state, the
    /// peer relation and the database relation: fetched with the stored
    /// state in one batch (see [`gather::snapshot`] for the next batch).
    fn prefetch(&self, event: &Event) -> Vec<Read> {
        match event {
            Event::Action(_)
            | Event::Stop
            | Event::SecretRemove(_)
            | Event::SecretRotate(_)
            | Event::SecretExpired(_)
            | Event::Remove
            | Event::CollectMetrics
            | Event::Unknown(_) => Vec::new(),
            _ => vec![
                Read::Config,
                Read::Leader,
                Read::GoalState,
                Read::RelationIds(gather::PEER.into()),
                Read::RelationIds("database".into()),
            ],
        }
    }

    fn handle(&mut self, event: &Event, model: &mut Model) -> anyhow::Result<()> {
        match event {
            Event::Action(a) => actions::run(&a.name, event, model, &self.endpoints),
            Event::Stop => stop(model),
            Event::RelationBroken(e)
                if DATABASE_ENDPOINTS.contains(&e.relation.endpoint.as_str()) =>
            {
                // Remembered until a database relation comes back, so later
                // hooks keep saying why the server is down.
                let mut state = UnitState::load(model);
                let before = state.clone();
                state.database_removed = true;
                state.save(model, &before)?;
                log(
                    model,
                    LogLevel::Warning,
                    &format!("relation {} removed: stopping the server", e.relation),
                );
                reconcile::reconcile(model, event, &self.endpoints)
            }
            Event::SecretChanged(e) => {
                // Move to the new revision (a database credential rotated, or
                // an operator secret changed), then use it.
                if let Err(err) = model.refresh_secret(Some(&e.id), e.label.as_deref()) {
                    log(
                        model,
                        LogLevel::Warning,
                        &format!("cannot refresh secret {}: {err}", e.id),
                    );
                }
                reconcile::reconcile(model, event, &self.endpoints)
            }
            Event::SecretRemove(e) => {
                // A revision of a secret this application owns is no longer
                // tracked by anyone: drop it.
                if let Err(err) = model.remove_secret(&e.id, Some(e.revision)) {
                    log(
                        model,
                        LogLevel::Warning,
                        &format!("cannot remove revision {} of {}: {err}", e.revision, e.id),
                    );
                }
                Ok(())
            }
            // The charm sets no rotation or expiry on its secrets.
            Event::SecretRotate(_) | Event::SecretExpired(_) => Ok(()),
            Event::Remove | Event::CollectMetrics | Event::Unknown(_) => Ok(()),
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
            | Event::StorageDetaching(_) => reconcile::reconcile(model, event, &self.endpoints),
        }
    }
}

/// The unit is going away: stop the server cleanly.
fn stop(model: &mut Model) -> anyhow::Result<()> {
    let container = model.container(CONTAINER)?;
    if let Err(e) = container.stop(&[layer::SERVICE]) {
        if !e.is_connection() {
            log(
                model,
                LogLevel::Warning,
                &format!("cannot stop the server: {e}"),
            );
        }
    }
    model.set_unit_status(ops::Status::waiting(status::STOPPED))?;
    Ok(())
}
