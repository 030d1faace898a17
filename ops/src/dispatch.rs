//! Running a charm for one Juju dispatch: the path shared by the binary
//! ([`main`]) and the test harness.
//!
//! Order of work: read the context and the event; ignore unknown events
//! with success; load stored state and the deferred queue (one
//! `state-get`); re-run every deferred event in order, then the new one;
//! save the document if it changed (one `state-set`). Any handler error
//! fails the whole dispatch, so Juju discards every buffered change,
//! including the queue (juju.md §1.5): nothing is half-applied.

use crate::context::{ContextError, JujuContext};
use crate::event::{Event, EventError};
use crate::hookcmds::{self, Backend, LogLevel, ProcessBackend};
use crate::model::{Model, Prefetching, Read};
use crate::storage::{Storage, StorageError};

/// A charm: one handler for every event.
///
/// Handle events with a `match` without a wildcard arm, so a new event kind
/// is a compile error. Make the handler idempotent ("holistic"): Juju gives
/// few ordering guarantees (juju.md §1.4).
pub trait Charm {
    /// Handles `event`. Returning an error fails the hook: Juju discards
    /// this hook's buffered changes and retries later. Call
    /// [`Model::defer`] to have the event re-run in a later hook instead.
    fn handle(&mut self, event: &Event, model: &mut Model) -> anyhow::Result<()>;

    /// Reads the handler will make for `event` whatever the model holds
    /// (config, leadership, goal state, an endpoint's relations). They are
    /// fetched with the stored state in one batch of concurrent hook
    /// commands before the handler runs, instead of one process after
    /// another. Relation bags are not known yet here: fetch those with
    /// [`Model::prefetch`]. The default fetches nothing ahead.
    fn prefetch(&self, event: &Event) -> Vec<Read> {
        let _ = event;
        Vec::new()
    }
}

/// Why a dispatch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The hook environment is incomplete.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The event's variables are inconsistent.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Stored state could not be loaded or saved.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A handler returned an error.
    #[error("{event}: {source:#}")]
    Handler {
        /// The event being handled (possibly a deferred one).
        event: String,
        /// The handler's error.
        source: anyhow::Error,
    },
}

/// What a successful dispatch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatchOutcome {
    /// The event was unknown and ignored.
    pub ignored: bool,
    /// Events handled, deferred ones first.
    pub handled: Vec<Event>,
    /// Events still deferred afterwards.
    pub deferred: Vec<Event>,
    /// Whether the stored-state document was written.
    pub saved: bool,
}

/// Runs `charm` for the event `ctx` describes, with hook commands going to
/// `backend`. This is what [`main`] does after reading the environment,
/// and what the test harness does with its fake Juju.
pub fn dispatch<C: Charm + ?Sized>(
    charm: &mut C,
    ctx: JujuContext,
    backend: Box<dyn Backend>,
) -> Result<DispatchOutcome, DispatchError> {
    let event = Event::from_context(&ctx)?;
    if let Event::Unknown(_) = event {
        // No hook command at all: a rolled-back charm must not touch state
        // written by a newer revision for an event it does not know.
        return Ok(DispatchOutcome {
            ignored: true,
            ..Default::default()
        });
    }
    let backend = Prefetching::new(backend);
    let mut first = vec![hookcmds::state_get_key_call(crate::storage::STATE_KEY)];
    first.extend(charm.prefetch(&event).iter().filter_map(Read::call));
    backend.fetch(first);
    let storage = Storage::load(&backend)?;
    let mut model = Model::with_prefetching(ctx, backend, storage);
    for lost in model.storage_mut().unreadable().to_vec() {
        // Best effort: the warning is for the operator; failing to log it
        // must not fail the hook.
        let _ = hookcmds::juju_log(
            model.backend(),
            LogLevel::Warning,
            &format!("dropping a deferred event this charm revision cannot read: {lost}"),
        );
    }
    let queue = model.storage_mut().deferred().to_vec();
    let mut outcome = DispatchOutcome::default();
    let mut still_deferred = Vec::new();
    for ev in queue.into_iter().chain(std::iter::once(event)) {
        model.begin_event(&ev);
        if let Err(source) = charm.handle(&ev, &mut model) {
            let err = DispatchError::Handler {
                event: ev.name(),
                source,
            };
            // The unit log is where operators look (`juju debug-log`); a
            // failure to log must not hide the original error.
            let _ = hookcmds::juju_log(
                model.backend(),
                LogLevel::Error,
                &format!("{} failed: {err}", model.context().dispatch_path),
            );
            return Err(err);
        }
        if model.take_defer() && !still_deferred.contains(&ev) {
            still_deferred.push(ev.clone());
        }
        outcome.handled.push(ev);
    }
    model.storage_mut().set_deferred(still_deferred.clone());
    outcome.saved = model.save_storage()?;
    outcome.deferred = still_deferred;
    Ok(outcome)
}

/// The entry point of a charm binary: `fn main() { ops::main(MyCharm::default()) }`.
///
/// Reads the environment, dispatches, and exits: 0 on success and for
/// unknown events; 1 on failure, after logging the error with `juju-log`
/// (ERROR) and on stderr (which Juju logs at WARNING).
pub fn main<C: Charm>(mut charm: C) -> ! {
    std::process::exit(run(&mut charm))
}

fn run<C: Charm>(charm: &mut C) -> i32 {
    let ctx = match JujuContext::from_env() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let name = ctx.dispatch_path.clone();
    match dispatch(charm, ctx, Box::new(ProcessBackend)) {
        Ok(outcome) => {
            if outcome.ignored {
                // Stdout is logged at DEBUG by Juju.
                println!("ignoring {name}: not an event this charm knows");
            }
            0
        }
        Err(e) => {
            let message = format!("{name} failed: {e}");
            // Handler errors were already sent to juju-log by dispatch.
            if !matches!(e, DispatchError::Handler { .. }) {
                let _ = hookcmds::juju_log(&ProcessBackend, LogLevel::Error, &message);
            }
            eprintln!("{message}");
            1
        }
    }
}
