//! Stored state and the deferred-event queue, kept in Juju.
//!
//! Both live in one JSON document under the unit-state key [`STATE_KEY`]
//! (`ops.v1`), read with one `state-get` at the start of a dispatch and
//! written with one `state-set` at the end, only when something changed.
//! Juju keeps unit state on the controller, so it survives the pod being
//! recreated (the charm directory does not: juju.md §0), and it is buffered
//! like every other change: a failed hook leaves the previous document in
//! place (juju.md §1.5).
//!
//! Document shape: `{"version": 1, "stored": {key: value}, "deferred": [event]}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Event;
use crate::hookcmds::{self, Backend, HookCmdError};

/// The unit-state key holding the document.
pub const STATE_KEY: &str = "ops.v1";

/// The document format this version writes.
pub const FORMAT_VERSION: u32 = 1;

/// Juju's limit for one state value (juju.md §2).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Reading or writing the document failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A hook command failed.
    #[error(transparent)]
    HookCommand(#[from] HookCmdError),
    /// The stored document is not valid JSON of the expected shape.
    #[error("stored state under {STATE_KEY:?} is corrupt ({0}); inspect it with `juju exec -- state-get {STATE_KEY}`")]
    Corrupt(String),
    /// The document was written by a newer framework.
    #[error("stored state under {STATE_KEY:?} has format version {0}, newer than this charm understands ({FORMAT_VERSION}); refresh to a newer charm revision")]
    TooNew(u32),
    /// The document would exceed Juju's per-value limit.
    #[error("stored state would be {0} bytes but Juju allows {MAX_VALUE_BYTES} per key; keep large data in a peer relation or a secret")]
    TooLarge(usize),
    /// A stored value does not have the type asked for.
    #[error("stored value {key:?} cannot be read as the requested type: {message}")]
    Type {
        /// The key.
        key: String,
        /// What serde said.
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Document {
    version: u32,
    #[serde(default)]
    stored: BTreeMap<String, Value>,
    #[serde(default)]
    deferred: Vec<Value>,
    /// Remote application per relation id, learnt once: it never changes
    /// for a relation, and knowing it saves a `relation-list --app` per hook.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    apps: BTreeMap<String, String>,
}

/// The charm's stored values and the deferred queue for one dispatch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Storage {
    stored: BTreeMap<String, Value>,
    deferred: Vec<Event>,
    apps: BTreeMap<String, String>,
    /// The document as loaded, to write back only when something changed.
    original: Option<String>,
    /// Deferred entries this version cannot read (for example events a newer
    /// charm revision knew before a rollback); dropped with a warning.
    unreadable: Vec<String>,
}

impl Storage {
    /// Loads the document with `state-get --format=json ops.v1`.
    pub fn load(b: &dyn Backend) -> Result<Storage, StorageError> {
        let text = hookcmds::state_get_key(b, STATE_KEY)?;
        Storage::parse(text.as_deref())
    }

    /// Parses a document (`None`: nothing stored yet).
    pub fn parse(text: Option<&str>) -> Result<Storage, StorageError> {
        let Some(text) = text else {
            return Ok(Storage::default());
        };
        let doc: Document =
            serde_json::from_str(text).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        if doc.version > FORMAT_VERSION {
            return Err(StorageError::TooNew(doc.version));
        }
        let mut deferred = Vec::new();
        let mut unreadable = Vec::new();
        for entry in doc.deferred {
            match serde_json::from_value::<Event>(entry.clone()) {
                Ok(event) => deferred.push(event),
                Err(_) => unreadable.push(entry.to_string()),
            }
        }
        Ok(Storage {
            stored: doc.stored,
            deferred,
            apps: doc.apps,
            original: Some(text.to_owned()),
            unreadable,
        })
    }

    /// The document as it would be written.
    pub fn to_json(&self) -> String {
        let doc = Document {
            version: FORMAT_VERSION,
            stored: self.stored.clone(),
            deferred: self
                .deferred
                .iter()
                .map(|e| serde_json::to_value(e).expect("events serialise"))
                .collect(),
            apps: self.apps.clone(),
        };
        serde_json::to_string(&doc).expect("JSON values serialise")
    }

    /// Writes the document back with `state-set --file -` if it changed.
    /// Returns whether it wrote.
    pub fn save(&self, b: &dyn Backend) -> Result<bool, StorageError> {
        if self.original.is_none() && self.is_empty() {
            return Ok(false);
        }
        let text = self.to_json();
        if self.original.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        if text.len() > MAX_VALUE_BYTES {
            return Err(StorageError::TooLarge(text.len()));
        }
        let map = BTreeMap::from([(STATE_KEY.to_owned(), text)]);
        hookcmds::state_set(b, &map)?;
        Ok(true)
    }

    /// The stored value under `key`, as `T`.
    pub fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        match self.stored.get(key) {
            None => Ok(None),
            Some(v) => {
                serde_json::from_value(v.clone())
                    .map(Some)
                    .map_err(|e| StorageError::Type {
                        key: key.to_owned(),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Stores `value` under `key`.
    pub fn set<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), StorageError> {
        let v = serde_json::to_value(value).map_err(|e| StorageError::Type {
            key: key.to_owned(),
            message: e.to_string(),
        })?;
        self.stored.insert(key.to_owned(), v);
        Ok(())
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.stored.remove(key);
    }

    /// Every stored value.
    pub fn values(&self) -> &BTreeMap<String, Value> {
        &self.stored
    }

    /// Replaces every stored value.
    pub fn set_values(&mut self, values: BTreeMap<String, Value>) {
        self.stored = values;
    }

    /// True when there is nothing to keep.
    pub fn is_empty(&self) -> bool {
        self.stored.is_empty() && self.deferred.is_empty() && self.apps.is_empty()
    }

    /// The deferred events, oldest first.
    pub fn deferred(&self) -> &[Event] {
        &self.deferred
    }

    /// Replaces the deferred queue.
    pub fn set_deferred(&mut self, deferred: Vec<Event>) {
        self.deferred = deferred;
    }

    /// The remote application of `relation` (`endpoint:id`), if known.
    pub fn remote_app(&self, relation: &str) -> Option<&str> {
        self.apps.get(relation).map(String::as_str)
    }

    /// Remembers the remote application of `relation`.
    pub fn set_remote_app(&mut self, relation: &str, app: &str) {
        self.apps.insert(relation.to_owned(), app.to_owned());
    }

    /// Forgets a relation that is gone.
    pub fn forget_relation(&mut self, relation: &str) {
        self.apps.remove(relation);
    }

    /// Deferred entries that could not be read (and will be dropped).
    pub fn unreadable(&self) -> &[String] {
        &self.unreadable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_document_is_empty_and_is_not_written() {
        let s = Storage::parse(None).unwrap();
        assert!(s.values().is_empty() && s.deferred().is_empty());
        assert_eq!(s.to_json(), r#"{"version":1,"stored":{},"deferred":[]}"#);
    }

    #[test]
    fn values_and_deferred_events_round_trip() {
        let mut s = Storage::parse(None).unwrap();
        s.set("schema", &3u32).unwrap();
        s.set_deferred(vec![Event::ConfigChanged, Event::Unknown("x".into())]);
        let again = Storage::parse(Some(&s.to_json())).unwrap();
        assert_eq!(again.get::<u32>("schema").unwrap(), Some(3));
        assert_eq!(
            again.deferred(),
            [Event::ConfigChanged, Event::Unknown("x".into())]
        );
        assert!(again.get::<String>("schema").is_err());
    }

    #[test]
    fn unreadable_deferred_entries_are_set_aside_not_fatal() {
        let s = Storage::parse(Some(
            r#"{"version":1,"stored":{},"deferred":[{"event":"config-changed"},{"event":"from-the-future"}]}"#,
        ))
        .unwrap();
        assert_eq!(s.deferred(), [Event::ConfigChanged]);
        assert_eq!(s.unreadable(), [r#"{"event":"from-the-future"}"#]);
    }

    #[test]
    fn corrupt_or_newer_documents_are_clear_errors() {
        let err = Storage::parse(Some("{nope")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("stored state under \"ops.v1\" is corrupt"),
            "{err}"
        );
        let err = Storage::parse(Some(r#"{"version":2}"#)).unwrap_err();
        assert!(matches!(err, StorageError::TooNew(2)), "{err}");
    }
}
