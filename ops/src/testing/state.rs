//! The [`State`] a test runs a charm from, and gets back.
//!
//! One plain, serialisable value describes everything Juju and Pebble know
//! about the unit: config, leadership, relations and their bags, secrets,
//! stored state and deferred events, containers (plan layers, services,
//! files, canned exec results, checks), ports and statuses. The harness and
//! the binary-level fakes read it in and write the changed copy out; tests
//! assert on that copy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{
    CheckEvent, Event, NoticeEvent, RelationDepartedEvent, RelationEvent, SecretEvent,
    SecretRevisionEvent, WorkloadEvent,
};
use crate::hookcmds::{
    CloudSpec, Network, Port, RelationId, RotatePolicy, SecretContent, SecretOwner,
};
use crate::model::Status;
use crate::pebble::layer::Layer;
use crate::pebble::protocol::{CheckStatus, ServiceStatus};

/// Everything Juju and Pebble know about the unit under test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Config values the operator set (defaults come from `config.yaml`).
    pub config: BTreeMap<String, Value>,
    /// Whether this unit is the leader.
    pub leader: bool,
    /// The model.
    pub model: ModelInfo,
    /// Relations, including peer relations.
    pub relations: Vec<Relation>,
    /// Secrets this unit can see: owned ones and granted ones.
    pub secrets: Vec<Secret>,
    /// The charm's stored values (what [`crate::Model::set_stored`] keeps).
    pub stored: BTreeMap<String, Value>,
    /// Events deferred by earlier hooks, oldest first.
    pub deferred: Vec<Event>,
    /// Other unit-state keys (`state-set`) the charm wrote directly. The
    /// framework's own bookkeeping (remote application names) appears here
    /// under `ops.v1`; stored values and deferred events do not.
    pub unit_state: BTreeMap<String, String>,
    /// Workload containers.
    pub containers: Vec<Container>,
    /// Ports this unit has open.
    pub opened_ports: BTreeSet<Port>,
    /// This unit's status.
    pub unit_status: Status,
    /// The application status (only the leader can set it).
    pub app_status: Status,
    /// The workload version.
    pub workload_version: String,
    /// How many units Juju plans for the application (goal state).
    pub planned_units: u32,
    /// Network info by binding name; endpoints without an entry get a
    /// default address.
    pub networks: BTreeMap<String, Network>,
    /// Attached storage instances.
    pub storages: Vec<StorageInstance>,
    /// File resources: name → local path.
    pub resources: BTreeMap<String, PathBuf>,
    /// Deprecated leader settings (`leader-get`/`leader-set`).
    pub leader_settings: BTreeMap<String, String>,
    /// The cloud spec `credential-get` returns (`None`: not trusted).
    pub cloud_spec: Option<CloudSpec>,
    /// Storage the charm asked for with `storage-add` (name → count).
    pub storage_requested: BTreeMap<String, u32>,
}

impl Default for State {
    fn default() -> State {
        State {
            config: BTreeMap::new(),
            leader: false,
            model: ModelInfo::default(),
            relations: vec![],
            secrets: vec![],
            stored: BTreeMap::new(),
            deferred: vec![],
            unit_state: BTreeMap::new(),
            containers: vec![],
            opened_ports: BTreeSet::new(),
            unit_status: Status::unknown(),
            app_status: Status::unknown(),
            workload_version: String::new(),
            planned_units: 1,
            networks: BTreeMap::new(),
            storages: vec![],
            resources: BTreeMap::new(),
            leader_settings: BTreeMap::new(),
            cloud_spec: None,
            storage_requested: BTreeMap::new(),
        }
    }
}

impl State {
    /// The relation with this id.
    pub fn relation(&self, id: u64) -> Option<&Relation> {
        self.relations.iter().find(|r| r.id == id)
    }

    /// The container with this name.
    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The secret with this label (owner or consumer label).
    pub fn secret_by_label(&self, label: &str) -> Option<&Secret> {
        self.secrets
            .iter()
            .find(|s| s.label.as_deref() == Some(label))
    }

    /// The secret with this id (any URI form).
    pub fn secret(&self, id: &str) -> Option<&Secret> {
        let want = canonical_secret_id(id);
        self.secrets
            .iter()
            .find(|s| canonical_secret_id(&s.id) == want)
    }

    /// Sets one config value (builder style).
    pub fn with_config(mut self, key: &str, value: impl Into<Value>) -> State {
        self.config.insert(key.to_owned(), value.into());
        self
    }

    /// Makes this unit the leader or not (builder style).
    pub fn with_leader(mut self, leader: bool) -> State {
        self.leader = leader;
        self
    }

    /// Adds a relation (builder style).
    pub fn with_relation(mut self, relation: Relation) -> State {
        self.relations.push(relation);
        self
    }

    /// Adds a container (builder style).
    pub fn with_container(mut self, container: Container) -> State {
        self.containers.push(container);
        self
    }

    /// Adds a secret (builder style).
    pub fn with_secret(mut self, secret: Secret) -> State {
        self.secrets.push(secret);
        self
    }
}

/// The last path element of a secret URI: `secret:ID` and
/// `secret://<model>/ID` name the same secret.
pub fn canonical_secret_id(id: &str) -> &str {
    id.rsplit('/')
        .next()
        .unwrap_or(id)
        .trim_start_matches("secret:")
}

/// Model name and UUID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model name.
    pub name: String,
    /// The model UUID.
    pub uuid: String,
}

impl Default for ModelInfo {
    fn default() -> ModelInfo {
        ModelInfo {
            name: "test-model".into(),
            uuid: "8b6c2f2e-7a2d-4c1e-9b3a-1f0e5d4c3b2a".into(),
        }
    }
}

/// A relation as this unit sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Relation {
    /// The local endpoint.
    pub endpoint: String,
    /// Juju's relation id.
    pub id: u64,
    /// The remote application (ignored for peer relations: it is this one).
    pub remote_app: String,
    /// The remote model's UUID, for cross-model relations.
    pub remote_model_uuid: Option<String>,
    /// Whether this is a peer relation.
    pub peer: bool,
    /// This application's bag.
    pub local_app_data: BTreeMap<String, String>,
    /// This unit's bag (pre-filled with Juju's address keys).
    pub local_unit_data: BTreeMap<String, String>,
    /// The remote application's bag.
    pub remote_app_data: BTreeMap<String, String>,
    /// Remote (or peer) units by number, with their bags.
    pub remote_units: BTreeMap<u32, BTreeMap<String, String>>,
}

impl Default for Relation {
    fn default() -> Relation {
        Relation {
            endpoint: String::new(),
            id: 0,
            remote_app: "remote".into(),
            remote_model_uuid: None,
            peer: false,
            local_app_data: BTreeMap::new(),
            local_unit_data: default_unit_bag("10.0.0.10"),
            remote_app_data: BTreeMap::new(),
            remote_units: BTreeMap::new(),
        }
    }
}

/// The keys Juju pre-fills in every unit bag.
pub fn default_unit_bag(address: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("egress-subnets".to_owned(), format!("{address}/32")),
        ("ingress-address".to_owned(), address.to_owned()),
        ("private-address".to_owned(), address.to_owned()),
    ])
}

impl Relation {
    /// A relation on `endpoint` with id `id` to `remote_app`, no units yet.
    pub fn new(endpoint: &str, id: u64, remote_app: &str) -> Relation {
        Relation {
            endpoint: endpoint.into(),
            id,
            remote_app: remote_app.into(),
            ..Relation::default()
        }
    }

    /// A peer relation on `endpoint`.
    pub fn peer(endpoint: &str, id: u64) -> Relation {
        Relation {
            endpoint: endpoint.into(),
            id,
            remote_app: String::new(),
            peer: true,
            ..Relation::default()
        }
    }

    /// Adds remote unit number `n` with its bag (Juju's address keys are
    /// added unless given).
    pub fn with_remote_unit(mut self, n: u32, bag: &[(&str, &str)]) -> Relation {
        let mut data = default_unit_bag(&format!("10.0.1.{}", n + 1));
        data.extend(bag.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self.remote_units.insert(n, data);
        self
    }

    /// Sets the remote application bag.
    pub fn with_remote_app_data(mut self, bag: &[(&str, &str)]) -> Relation {
        self.remote_app_data = bag
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self
    }

    /// Sets this application's bag.
    pub fn with_local_app_data(mut self, bag: &[(&str, &str)]) -> Relation {
        self.local_app_data = bag
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self
    }

    /// The relation id, `endpoint:id`.
    pub fn relation_id(&self) -> RelationId {
        RelationId::new(self.endpoint.clone(), self.id)
    }

    /// The remote application name (`own_app` for peer relations).
    pub fn remote_app_name<'a>(&'a self, own_app: &'a str) -> &'a str {
        if self.peer {
            own_app
        } else {
            &self.remote_app
        }
    }

    fn event(&self, remote_unit: Option<u32>) -> RelationEvent {
        RelationEvent {
            relation: self.relation_id(),
            remote_app: self.remote_app.clone(),
            remote_unit: remote_unit.map(|n| format!("{}/{n}", self.remote_app)),
        }
    }

    /// `-relation-created`.
    pub fn created_event(&self) -> Event {
        Event::RelationCreated(self.event(None))
    }
    /// `-relation-joined` for remote unit `n`.
    pub fn joined_event(&self, n: u32) -> Event {
        Event::RelationJoined(self.event(Some(n)))
    }
    /// `-relation-changed` for remote unit `n`, or for the remote
    /// application bag when `None`.
    pub fn changed_event(&self, n: Option<u32>) -> Event {
        Event::RelationChanged(self.event(n))
    }
    /// `-relation-departed` for remote unit `n` (also the departing unit).
    pub fn departed_event(&self, n: u32) -> Event {
        let e = self.event(Some(n));
        Event::RelationDeparted(RelationDepartedEvent {
            departing_unit: e.remote_unit.clone().unwrap_or_default(),
            relation: e.relation,
            remote_app: e.remote_app,
            remote_unit: e.remote_unit,
        })
    }
    /// `-relation-broken`.
    pub fn broken_event(&self) -> Event {
        Event::RelationBroken(self.event(None))
    }
}

/// A secret this unit owns or was granted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Secret {
    /// The URI, `secret:<20 characters>`.
    pub id: String,
    /// Who owns it; `None` when this unit only consumes it.
    pub owner: Option<SecretOwner>,
    /// Content by revision.
    pub revisions: BTreeMap<u32, SecretContent>,
    /// The revision this unit tracks.
    pub tracked: u32,
    /// This unit's label for it (owner or consumer label).
    pub label: Option<String>,
    /// Description (owner metadata).
    pub description: Option<String>,
    /// Expiry (owner metadata).
    pub expire: Option<String>,
    /// Rotation policy (owner metadata).
    pub rotate: Option<RotatePolicy>,
    /// Grants: relation id → granted application or unit names.
    pub grants: BTreeMap<u64, BTreeSet<String>>,
    /// Revisions removed with `secret-remove`.
    pub removed_revisions: BTreeSet<u32>,
}

impl Default for Secret {
    /// An empty secret without an id ([`Secret::new`] gives one); cheap, so
    /// that deserialising a state never draws random numbers.
    fn default() -> Secret {
        Secret {
            id: String::new(),
            owner: None,
            revisions: BTreeMap::new(),
            tracked: 1,
            label: None,
            description: None,
            expire: None,
            rotate: None,
            grants: BTreeMap::new(),
            removed_revisions: BTreeSet::new(),
        }
    }
}

/// A fresh secret URI in Juju's form: 20 characters of base32hex.
pub fn new_secret_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let mut rng = rand::rng();
    let id: String = (0..20)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("secret:{id}")
}

impl Secret {
    /// A secret this unit consumes, at revision 1 with `content`.
    pub fn new(content: &[(&str, &str)]) -> Secret {
        Secret {
            id: new_secret_id(),
            revisions: BTreeMap::from([(1, content.iter().copied().collect())]),
            ..Secret::default()
        }
    }

    /// Adds a newer revision this unit does not track yet.
    pub fn with_latest(mut self, content: &[(&str, &str)]) -> Secret {
        let next = self.latest_revision() + 1;
        self.revisions
            .insert(next, content.iter().copied().collect());
        self
    }

    /// Makes this unit (or its application) the owner.
    pub fn owned_by(mut self, owner: SecretOwner) -> Secret {
        self.owner = Some(owner);
        self
    }

    /// Sets this unit's label.
    pub fn with_label(mut self, label: &str) -> Secret {
        self.label = Some(label.into());
        self
    }

    /// Sets the URI.
    pub fn with_id(mut self, id: &str) -> Secret {
        self.id = id.into();
        self
    }

    /// The newest revision number.
    pub fn latest_revision(&self) -> u32 {
        self.revisions.keys().next_back().copied().unwrap_or(0)
    }

    /// The content of the tracked revision.
    pub fn tracked_content(&self) -> Option<&SecretContent> {
        self.revisions.get(&self.tracked)
    }

    /// The content of the newest revision.
    pub fn latest_content(&self) -> Option<&SecretContent> {
        self.revisions.values().next_back()
    }

    /// `secret-changed` for this secret.
    pub fn changed_event(&self) -> Event {
        Event::SecretChanged(SecretEvent {
            id: self.id.clone(),
            label: self.label.clone(),
        })
    }
    /// `secret-rotate` for this secret.
    pub fn rotate_event(&self) -> Event {
        Event::SecretRotate(SecretEvent {
            id: self.id.clone(),
            label: self.label.clone(),
        })
    }
    /// `secret-remove` for one revision.
    pub fn remove_event(&self, revision: u32) -> Event {
        Event::SecretRemove(SecretRevisionEvent {
            id: self.id.clone(),
            label: self.label.clone(),
            revision,
        })
    }
    /// `secret-expired` for one revision.
    pub fn expired_event(&self, revision: u32) -> Event {
        Event::SecretExpired(SecretRevisionEvent {
            id: self.id.clone(),
            label: self.label.clone(),
            revision,
        })
    }
}

/// A storage instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageInstance {
    /// The storage name from metadata.
    pub name: String,
    /// The instance number (`data/0` is 0).
    pub index: u32,
    /// Where it is mounted.
    pub location: String,
    /// `filesystem` or `block`.
    pub kind: String,
}

/// A file or directory in a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEntry {
    /// File content; `None` for a directory.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "content_serde"
    )]
    pub content: Option<Vec<u8>>,
    /// Permission bits.
    #[serde(with = "crate::pebble::protocol::octal")]
    pub permissions: u32,
    /// Owner name.
    pub user: String,
    /// Owner UID.
    pub user_id: u32,
    /// Group name.
    pub group: String,
    /// Group GID.
    pub group_id: u32,
}

impl FsEntry {
    /// A root-owned 0644 file.
    pub fn file(content: impl Into<Vec<u8>>) -> FsEntry {
        FsEntry {
            content: Some(content.into()),
            permissions: 0o644,
            user: "root".into(),
            user_id: 0,
            group: "root".into(),
            group_id: 0,
        }
    }

    /// A root-owned 0755 directory.
    pub fn dir() -> FsEntry {
        FsEntry {
            content: None,
            permissions: 0o755,
            ..FsEntry::file(Vec::new())
        }
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.content.is_none()
    }

    /// The content as text (lossy); empty for directories.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.content.as_deref().unwrap_or_default()).into_owned()
    }
}

/// File content in JSON: text when it is UTF-8, else `{"base64": …}`.
mod content_serde {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Binary { base64: String },
    }

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(t) => Repr::Text(t.to_owned()).serialize(s),
                Err(_) => Repr::Binary {
                    base64: base64::engine::general_purpose::STANDARD.encode(bytes),
                }
                .serialize(s),
            },
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<Repr>::deserialize(d)? {
            None => Ok(None),
            Some(Repr::Text(t)) => Ok(Some(t.into_bytes())),
            Some(Repr::Binary { base64 }) => base64::engine::general_purpose::STANDARD
                .decode(base64)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A canned answer to exec'd commands that start with `prefix`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecHandler {
    /// The command prefix this answers (the longest matching prefix wins).
    pub prefix: Vec<String>,
    /// The exit code.
    pub exit_code: i32,
    /// What it prints on stdout.
    pub stdout: String,
    /// What it prints on stderr.
    pub stderr: String,
}

impl ExecHandler {
    /// Answers `prefix…` with exit code 0 and `stdout`.
    pub fn ok(prefix: &[&str], stdout: &str) -> ExecHandler {
        ExecHandler {
            prefix: prefix.iter().map(|s| (*s).to_owned()).collect(),
            stdout: stdout.into(),
            ..ExecHandler::default()
        }
    }

    /// Answers `prefix…` with `exit_code` and `stderr`.
    pub fn fail(prefix: &[&str], exit_code: i32, stderr: &str) -> ExecHandler {
        ExecHandler {
            prefix: prefix.iter().map(|s| (*s).to_owned()).collect(),
            exit_code,
            stderr: stderr.into(),
            ..ExecHandler::default()
        }
    }
}

/// One command a charm ran in a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecRecord {
    /// The command.
    pub command: Vec<String>,
    /// The environment the request asked for.
    pub environment: BTreeMap<String, String>,
    /// The working directory, if given.
    pub working_dir: Option<String>,
    /// The user, if given.
    pub user: Option<String>,
    /// The group, if given.
    pub group: Option<String>,
    /// What the charm fed to stdin.
    pub stdin: String,
    /// The exit code it got.
    pub exit_code: i32,
}

/// A layer with its label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelledLayer {
    /// The label.
    pub label: String,
    /// The layer.
    pub layer: Layer,
}

/// A workload container and its Pebble.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Container {
    /// The container name from metadata.
    pub name: String,
    /// Whether Pebble answers (false: the socket is missing).
    pub can_connect: bool,
    /// Layers, bottom first (the rock's own layers go first).
    pub layers: Vec<LabelledLayer>,
    /// Current service states; services not listed are inactive.
    pub service_statuses: BTreeMap<String, ServiceStatus>,
    /// Services whose start fails, with the output Pebble reports.
    pub start_failures: BTreeMap<String, String>,
    /// The filesystem: absolute path → entry. Parents are implied.
    pub filesystem: BTreeMap<String, FsEntry>,
    /// Canned exec answers.
    pub execs: Vec<ExecHandler>,
    /// Commands run (output only).
    pub exec_history: Vec<ExecRecord>,
    /// Check states to report (checks not listed are up, or inactive when
    /// disabled).
    pub check_statuses: BTreeMap<String, CheckStatus>,
    /// Custom notices recorded: key → data of the last occurrence.
    pub notices: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for Container {
    fn default() -> Container {
        Container {
            name: String::new(),
            can_connect: true,
            layers: vec![],
            service_statuses: BTreeMap::new(),
            start_failures: BTreeMap::new(),
            filesystem: BTreeMap::new(),
            execs: vec![],
            exec_history: vec![],
            check_statuses: BTreeMap::new(),
            notices: BTreeMap::new(),
        }
    }
}

impl Container {
    /// A reachable container with nothing in it.
    pub fn new(name: &str) -> Container {
        Container {
            name: name.into(),
            ..Container::default()
        }
    }

    /// Makes Pebble (un)reachable.
    pub fn with_can_connect(mut self, can_connect: bool) -> Container {
        self.can_connect = can_connect;
        self
    }

    /// Adds a canned exec answer.
    pub fn with_exec(mut self, handler: ExecHandler) -> Container {
        self.execs.push(handler);
        self
    }

    /// Adds a layer.
    pub fn with_layer(mut self, label: &str, layer: Layer) -> Container {
        self.layers.push(LabelledLayer {
            label: label.into(),
            layer,
        });
        self
    }

    /// Adds a file.
    pub fn with_file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Container {
        self.filesystem.insert(path.into(), FsEntry::file(content));
        self
    }

    /// The combined plan of the layers (empty when they do not combine).
    pub fn plan(&self) -> Layer {
        let layers: Vec<(String, Layer)> = self
            .layers
            .iter()
            .map(|l| (l.label.clone(), l.layer.clone()))
            .collect();
        crate::pebble::plan::combine(&layers)
            .and_then(crate::pebble::plan::finish_plan)
            .unwrap_or_default()
    }

    /// A file's content as text.
    pub fn file_text(&self, path: &str) -> Option<String> {
        self.filesystem
            .get(path)
            .filter(|e| !e.is_dir())
            .map(FsEntry::text)
    }

    /// The state of a service (`inactive` when never started).
    pub fn service_status(&self, name: &str) -> ServiceStatus {
        self.service_statuses
            .get(name)
            .copied()
            .unwrap_or(ServiceStatus::Inactive)
    }

    /// `<container>-pebble-ready`.
    pub fn pebble_ready_event(&self) -> Event {
        Event::PebbleReady(WorkloadEvent {
            container: self.name.clone(),
        })
    }
    /// `<container>-pebble-check-failed`.
    pub fn check_failed_event(&self, check: &str) -> Event {
        Event::PebbleCheckFailed(CheckEvent {
            container: self.name.clone(),
            check: check.into(),
        })
    }
    /// `<container>-pebble-check-recovered`.
    pub fn check_recovered_event(&self, check: &str) -> Event {
        Event::PebbleCheckRecovered(CheckEvent {
            container: self.name.clone(),
            check: check.into(),
        })
    }
    /// `<container>-pebble-custom-notice`.
    pub fn custom_notice_event(&self, id: &str, key: &str) -> Event {
        Event::PebbleCustomNotice(NoticeEvent {
            container: self.name.clone(),
            notice_id: id.into(),
            notice_type: "custom".into(),
            notice_key: key.into(),
        })
    }
}
