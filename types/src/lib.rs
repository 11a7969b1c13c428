//! Wire types of the Ouro Platform API: the JSON resources that the API serves and that the
//! `ouro` CLI, the dyno runner and the router read, plus the naming rules both sides check,
//! the states resources move through and the platform's own app names.
//!
//! This crate holds data shapes and pure validation only: no I/O, no HTTP, no database.

pub mod attach;
pub mod egress;
pub mod http_upgrade;
pub mod log_line;
pub mod platform;
pub mod procfile;
mod states;

pub use states::{AddonState, BuildStatus, DynoState, UnknownState, UpgradeState};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{"id": "not_found", "message": "..."}`: every error body, as in Heroku's Platform API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub id: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub admin: bool,
}

/// A token of the caller's, as Heroku's `/oauth/authorizations` answers it
/// (`ouro authorizations`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Authorization {
    pub id: String,
    pub description: String,
    /// `["global"]` for a user's token, `["runner"]` or `["provider"]` for a scoped one.
    pub scope: Vec<String>,
    pub created_at: String,
    /// When its secret was last made (its creation or `authorizations:rotate`).
    pub updated_at: String,
    pub access_token: AccessToken,
    pub user: AuthorizationUser,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessToken {
    pub id: String,
    /// The token itself: only in the answer that made it (create, regenerate); only its hash
    /// is kept.
    pub token: Option<String>,
    /// Seconds until it expires; `None`: never.
    pub expires_in: Option<i64>,
    /// RFC 3339; `None`: never.
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorizationUser {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub name: String,
    pub owner: Owner,
    /// The team it belongs to; `None`: a personal app.
    #[serde(default)]
    pub team: Option<TeamRef>,
    pub web_url: String,
    pub git_url: String,
    pub created_at: String,
    pub updated_at: String,
    /// When the current release was made; `None` only before the first release.
    pub released_at: Option<String>,
    /// Version of the current release (`v1` right after creation).
    pub current_release: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub email: String,
}

/// A team as an app names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TeamRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppCreate {
    /// Omitted: the API picks a free name such as `quiet-river-4821`.
    #[serde(default)]
    pub name: Option<String>,
    /// The team to make it in (its name or id); omitted: a personal app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

/// Config vars as served: name → value.
pub type ConfigVars = BTreeMap<String, String>;

/// Body of `PATCH /apps/{app}/config-vars`: `null` unsets a key.
pub type ConfigVarsPatch = BTreeMap<String, Option<String>>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub id: String,
    pub version: i64,
    pub description: String,
    /// `succeeded` for every release today; `pending` and `failed` arrive with the release phase.
    pub status: String,
    /// True for the one release that the app runs now.
    pub current: bool,
    /// For the current release: why its dynos do not run (a crash on boot), from the dyno
    /// runner's last report; the previous release's dynos keep serving meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub slug: Option<SlugRef>,
    pub user: Actor,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlugRef {
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    pub email: String,
}

/// Body of `POST /apps/{app}/releases`: exactly one of `slug` (deploy) or `release` (rollback).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// Id or version (`3` or `"v3"`) of the release to roll back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Slug {
    pub id: String,
    pub process_types: BTreeMap<String, String>,
    pub commit: Option<String>,
    pub commit_description: Option<String>,
    /// `SHA256:<hex>` of the uploaded tar.gz; `None` until the blob is uploaded.
    pub checksum: Option<String>,
    /// Bytes of the uploaded tar.gz; `None` until the blob is uploaded.
    pub size: Option<i64>,
    pub stack: String,
    /// Where to `PUT` the tar.gz (and `GET` it back once uploaded).
    pub blob: Blob,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Blob {
    pub method: String,
    pub url: String,
}

/// A build of a `git push` (Heroku's build resource, trimmed). Made pending by an accepted
/// push to `main` or `master`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Build {
    pub id: String,
    pub status: BuildStatus,
    pub source_blob: SourceBlob,
    /// What the build printed so far (empty while pending).
    pub output: String,
    /// The release a successful build made.
    #[serde(default)]
    pub release: Option<BuildRelease>,
    pub created_at: String,
    pub updated_at: String,
}

/// An add-on: a resource (a database, say) a provider made for an app, attached to one or
/// more apps as config vars.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Addon {
    pub id: String,
    /// `postgresql-amber-3141`.
    pub name: String,
    pub plan: AddonPlan,
    pub state: AddonState,
    /// The app that owns it.
    pub app: AppRef,
    pub attachments: Vec<AddonAttachment>,
    pub created_at: String,
}

/// A backup of an add-on's data (`ouro pg:backups`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonBackup {
    pub id: String,
    /// `b001`, `b002`, … per add-on.
    pub name: String,
    /// Bytes.
    pub size: i64,
    pub addon: AppRef,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonPlan {
    /// `postgresql:standard`.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppRef {
    pub name: String,
}

/// An add-on on an app: its config vars there are `<name>_<KEY>` (`DATABASE_URL`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonAttachment {
    pub id: String,
    pub name: String,
    pub app: AppRef,
    pub config_vars: Vec<String>,
    pub created_at: String,
}

/// Body of `POST /apps/{app}/addons`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonCreate {
    /// `postgresql` or `postgresql:standard`: the provider's name, then the plan.
    pub plan: String,
    /// The attachment's name (config var prefix); default `DATABASE` for postgresql, `REDIS`
    /// for redis, else the provider's name in capitals.
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
}

/// Body of `POST /apps/{app}/addon-attachments`: attach an existing add-on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachmentCreate {
    pub addon: String,
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
}

/// A registered add-on provider. `password` is shown once, when it is registered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonProvider {
    pub id: String,
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub created_at: String,
}

/// What makes an app a service (`PUT /apps/{app}/service`, admins): volumes mounted into its
/// dynos, the apps whose networks they join, and whether they may call the API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Service {
    #[serde(default)]
    pub mounts: Vec<VolumeMount>,
    #[serde(default)]
    pub joins: Vec<String>,
    /// Its dynos may call the Platform API (they get `OURO_API_URL`): add-on providers.
    #[serde(default)]
    pub api_access: bool,
    /// Its dynos run on the host's network, with no network of their own (the platform's API
    /// and router, which listen on the host's ports).
    #[serde(default)]
    pub host_network: bool,
    /// Its dynos listen on `$PORT` (add-on servers): each counts as up only once it accepts
    /// connections there, as a web dyno does, so a restart is over when the server answers.
    #[serde(default)]
    pub listens: bool,
}

/// One of an app's buildpacks, in order (`GET /apps/{app}/buildpack-installations`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildpackInstallation {
    pub ordinal: i64,
    pub buildpack: BuildpackRef,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildpackRef {
    /// A shipped buildpack's name (`python`, `heroku/python`) or a buildpack URL.
    pub url: String,
    pub name: String,
}

/// Body of `PUT /apps/{app}/buildpack-installations`: the whole new list, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildpackInstallationsUpdate {
    pub updates: Vec<BuildpackUpdate>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildpackUpdate {
    pub buildpack: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildRelease {
    pub version: i64,
}

/// The pushed tree as a tar.gz (`git archive`), in the blob store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceBlob {
    /// `SHA256:<hex>` of the tar.gz.
    pub checksum: String,
    /// Bytes of the tar.gz.
    pub size: i64,
    /// `GET` it here (with a token).
    pub url: String,
    /// The pushed commit.
    pub version: String,
    /// The branch pushed, such as `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlugCreate {
    pub process_types: BTreeMap<String, String>,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub commit_description: Option<String>,
    /// Optional `SHA256:<hex>` that the upload must match.
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub stack: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Formation {
    pub id: String,
    #[serde(rename = "type")]
    pub process_type: String,
    pub quantity: i64,
    pub size: String,
    /// The command from the current release's slug; `None` while no slug declares this type.
    pub command: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FormationBatch {
    pub updates: Vec<FormationUpdate>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FormationUpdate {
    #[serde(rename = "type")]
    pub process_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

/// A dyno as the dyno runner last reported it; `reason` says why a dyno crashed (exit status,
/// boot timeout, out of memory).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Dyno {
    /// Container id.
    pub id: String,
    pub app: String,
    /// `web.1`
    pub name: String,
    #[serde(rename = "type")]
    pub process_type: String,
    pub state: DynoState,
    pub size: String,
    /// Release version the dyno runs.
    pub release: i64,
    #[serde(default)]
    pub reason: Option<String>,
    /// Times the runner restarted it since its release began.
    #[serde(default)]
    pub restarts: u32,
    pub created_at: String,
    /// The swarm node it runs on (none on a single engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `GET /runner/desired-state`: what should run, for the dyno runner. One entry per app whose
/// current release has a slug; apps without one run nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DesiredState {
    pub apps: Vec<DesiredApp>,
    /// Every volume the platform still needs (names without the platform prefix): build
    /// caches of existing apps and service volumes. The runner removes its other volumes.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// A bootstrap seed (`ouro up`, before any API exists): the runner keeps running its apps
    /// beside the API's desired state until that state has them all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DesiredApp {
    pub app_id: String,
    pub app_name: String,
    pub release: DesiredRelease,
    /// Every process type of the formation, also those at quantity 0.
    pub formation: Vec<DesiredProcess>,
    /// Custom domains, routed besides the default `<app>.<platform domain>`.
    #[serde(default)]
    pub domains: Vec<String>,
    /// One-off dynos (`run.N`) to run once on the current release, until reported finished.
    #[serde(default)]
    pub one_offs: Vec<DesiredOneOff>,
    /// Restart requests: target (`*`, a process type, or a dyno name like `web.1`) → time of
    /// the request in ms since the epoch. Dynos started before it are replaced.
    #[serde(default)]
    pub restarts: BTreeMap<String, u64>,
    /// TLS certificates (SNI endpoints) for the app's hosts, with their private keys.
    #[serde(default)]
    pub certificates: Vec<TlsCert>,
    /// ACME HTTP-01 challenges the router answers for the app's hosts (automatic certificates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acme_challenges: Vec<AcmeChallenge>,
    /// Volumes mounted into every dyno of the formation (an add-on server's data).
    #[serde(default)]
    pub mounts: Vec<VolumeMount>,
    /// Apps whose networks this app's formation dynos join, reachable there by this app's name
    /// (an add-on server joins the apps it is attached to, and no other).
    #[serde(default)]
    pub joins: Vec<String>,
    /// The formation's dynos may call the Platform API (add-on providers): the runner gives
    /// them `OURO_API_URL`.
    #[serde(default)]
    pub api_access: bool,
    /// The formation's dynos run on the host's network (the platform's own API and router).
    #[serde(default)]
    pub host_network: bool,
    /// The formation's dynos listen on `$PORT` and are up only once they accept there (add-on
    /// servers; web dynos always are).
    #[serde(default)]
    pub listens: bool,
}

/// A certificate chain and its private key, both PEM, as the runner and the router see them.
/// Only on the runner's and the router's internal channels: the Platform API never serves a
/// private key back.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TlsCert {
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCert").field("chain_pem", &self.chain_pem).field("key_pem", &"<redacted>").finish()
    }
}

/// `POST /apps/{app}/sni-endpoints`: a PEM certificate chain (leaf first) and its PEM private key.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertificateCreate {
    pub certificate_chain: String,
    pub private_key: String,
}

impl std::fmt::Debug for CertificateCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateCreate")
            .field("certificate_chain", &self.certificate_chain)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// An app's SNI endpoint: a certificate the router presents for the host names it covers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Certificate {
    pub id: String,
    /// The DNS names of the leaf certificate's subject alternative names (may hold wildcards).
    pub hostnames: Vec<String>,
    /// The leaf certificate's notAfter, RFC 3339.
    pub expires_at: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DesiredRelease {
    pub id: String,
    pub version: i64,
    pub slug_id: String,
    /// `SHA256:<hex>` of the slug's tar.gz: names the dyno image built from it.
    pub slug_checksum: String,
    /// Where to `GET` the slug's tar.gz (with the runner's token).
    pub slug_url: String,
    pub process_types: BTreeMap<String, String>,
    pub config: ConfigVars,
    /// The slug's stack: [`STACK`] or [`BUILD_STACK`] (the stack plus compilers).
    #[serde(default = "default_stack")]
    pub stack: String,
    /// The latest stack update an admin asked for (`ouro stack:update`, see [`valid_stack_update`]),
    /// for a slug on [`STACK`]: its dyno image is made on the stack with that update installed.
    /// `None`: the stack as this version of Ouro first made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_update: Option<String>,
}

/// Whether `id` can name a stack update: the ms since the epoch when it was asked for (it goes
/// into image tags, so nothing else).
pub fn valid_stack_update(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

/// How long a client of Ouro's own listeners (the API, the runner, the router, the add-on
/// providers) keeps an idle pooled connection, in seconds: less than the 10 s after which those
/// listeners close an idle keep-alive connection, so that no request is sent on a connection
/// the server is closing at that moment.
pub const CLIENT_IDLE_SECONDS: u64 = 5;

/// The stack apps run on: Debian 13 "trixie".
pub const STACK: &str = "debian-13";
/// The stack plus compilers (gcc, rustc, cargo): what builds run on, like Heroku's `-build`
/// images.
pub const BUILD_STACK: &str = "debian-13-build";

/// Where volumes may mount in a dyno. Slug images hold these directories owned by the dyno
/// user, and Docker gives a new volume the owner of the directory it first mounts on, so no
/// root helper ever has to chown a volume.
pub const MOUNT_PATHS: [&str; 2] = ["/data", "/cache"];

/// Why a slug may not hold the entry at `path` (relative, `.` and `..` already resolved), or
/// `None`: every entry of a slug is `app` or beneath it (Heroku's slug layout), and none is
/// an image layer's whiteout (`.wh.<name>`), which would delete a file of the stack.
pub fn slug_entry_refused(path: &std::path::Path) -> Option<&'static str> {
    let mut parts = path.components();
    if parts.next().map(|c| c.as_os_str()) != Some("app".as_ref()) {
        return Some("is not under app/");
    }
    if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".wh.")) {
        return Some("would be a layer whiteout");
    }
    None
}

fn default_stack() -> String {
    STACK.to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DesiredProcess {
    #[serde(rename = "type")]
    pub process_type: String,
    pub quantity: i64,
    pub size: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DesiredOneOff {
    /// `N` of `run.N`.
    pub number: u32,
    pub command: String,
    pub size: String,
    /// Extra environment on top of the release's config.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Docker volumes to mount (the builder's per-app cache).
    #[serde(default)]
    pub mounts: Vec<VolumeMount>,
    /// Whether the dyno may call the Platform API: the runner then gives it `OURO_API_URL`, an
    /// address of the API that a container can reach. Only platform one-offs (builds) ask.
    #[serde(default)]
    pub api_access: bool,
    /// Runs on this release instead of the app's (the release phase runs on a slug that is
    /// not released yet; its `version` is 0).
    #[serde(default)]
    pub release: Option<DesiredRelease>,
    /// Attached (`ouro run`): the runner creates the container with stdin open, attaches to
    /// it, opens `GET /runner/attach/{app}/run.N` (an upgrade, see [`attach`]) and only then
    /// starts it, copying frames both ways; the exit status is the last frame.
    #[serde(default)]
    pub attach: bool,
    /// With `attach`: a terminal (`Tty`), for an interactive `ouro run bash`.
    #[serde(default)]
    pub tty: bool,
    /// The runner stops the dyno this long after it started (Heroku's one-offs have a
    /// lifetime too); `None`: no limit (builds and the release phase have their own).
    #[serde(default)]
    pub time_to_live_seconds: Option<u64>,
}

/// A named volume mounted into a dyno. The runner prefixes the name with its platform and
/// makes the volume (owned by the dyno user) on first use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeMount {
    pub volume: String,
    pub path: String,
}

/// Body of `POST /apps/{app}/dynos`: a one-off dyno on the current release.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OneOffCreate {
    pub command: String,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Attached to the caller's terminal through `GET /apps/{app}/dynos/run.N/attach`
    /// (`ouro run`); else detached, its output in the logs (`ouro run --detached`).
    #[serde(default)]
    pub attach: bool,
    /// With `attach`: allocate a terminal.
    #[serde(default)]
    pub tty: bool,
    /// Seconds after which the dyno is stopped (default one hour, at most a day).
    #[serde(default)]
    pub time_to_live: Option<u64>,
}

/// An app's host name: its default one (`<app>.<platform domain>`) or a custom one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Domain {
    pub id: String,
    pub hostname: String,
    /// `default` or `custom`.
    pub kind: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainCreate {
    pub hostname: String,
}

/// A host name the router can serve: lower-case labels of letters, digits and inner dashes,
/// at least two labels, at most 253 characters.
pub fn valid_hostname(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// `PUT /runner/dynos`: every dyno the runner sees, replacing its previous report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DynoReport {
    pub dynos: Vec<Dyno>,
    /// The stacks the runner's dynos and builds run on, once it has them.
    #[serde(default)]
    pub stacks: Vec<Stack>,
    /// The swarm's nodes (none on a single engine).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<ClusterNode>,
}

/// A node of the swarm the platform runs on, as `GET /nodes` (`ouro nodes`) shows it, in
/// Swarm's words.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its host name.
    pub name: String,
    /// The address the other nodes reach it at.
    pub addr: String,
    /// `ready`, `down`, `unknown` or `disconnected`.
    pub state: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// Dynos on it (by the runner's report; filled in by the API).
    #[serde(default)]
    pub dynos: u32,
}

/// A stack as `GET /stacks` shows it (Heroku's resource, with what Ouro knows of it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stack {
    /// [`STACK`] or [`BUILD_STACK`].
    pub name: String,
    /// The Docker image of it.
    pub image: String,
    /// When Debian's updates and security updates were last installed in it (RFC 3339), if
    /// the image says.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// The stack update (`ouro stack:update`) the image has, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    /// `GET /stacks`: the stack update asked for that the runner has not reported yet (being
    /// made, then rolled out as a release of every app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_update: Option<String>,
}

/// The router's view: which hosts go to which dynos. Served by the dyno runner, which alone
/// knows which dynos are up; `version` grows with every change so the router can long-poll.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouteTable {
    pub version: u64,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Route {
    pub app: String,
    /// Lower-case host names without port, e.g. `demo.localhost`.
    pub hosts: Vec<String>,
    /// The `up` web dynos; empty means the app has none (the router answers 503).
    pub backends: Vec<RouteBackend>,
    /// TLS certificates the router presents, by SNI, for names they cover.
    #[serde(default)]
    pub certificates: Vec<TlsCert>,
    /// ACME HTTP-01 challenges: `GET /.well-known/acme-challenge/{token}` on one of the
    /// route's hosts answers the key authorization, without reaching a dyno.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acme_challenges: Vec<AcmeChallenge>,
}

/// An ACME HTTP-01 challenge (RFC 8555 §8.3): the token in the URL and the key authorization
/// to answer with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AcmeChallenge {
    pub token: String,
    pub key_authorization: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouteBackend {
    /// `web.1`
    pub dyno: String,
    /// `ip:port` the router connects to.
    pub addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: String,
    /// Email of the user whose token made the request.
    pub actor: String,
    /// Method and route, e.g. `PATCH /apps/{app}/config-vars`.
    pub action: String,
    /// The resource acted on, e.g. `/apps/demo/config-vars`.
    pub target: String,
    /// HTTP status of the answer: failed attempts are recorded too.
    pub status: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct DynoSize {
    pub name: &'static str,
    pub memory_mib: u32,
    /// CPU share relative to one core (1.0 = one core).
    pub cpu: f32,
}

/// Dyno sizes, smallest first. Names follow Heroku's, lower-cased.
pub const DYNO_SIZES: &[DynoSize] = &[
    DynoSize { name: "basic", memory_mib: 512, cpu: 0.5 },
    DynoSize { name: "standard-1x", memory_mib: 512, cpu: 1.0 },
    DynoSize { name: "standard-2x", memory_mib: 1024, cpu: 1.0 },
    DynoSize { name: "performance", memory_mib: 2560, cpu: 2.0 },
    DynoSize { name: "performance-l", memory_mib: 14336, cpu: 2.0 },
];

pub const DEFAULT_DYNO_SIZE: &str = "basic";

/// Looks a size up by name, ignoring case (`Standard-2X` works, as on Heroku).
pub fn dyno_size(name: &str) -> Option<&'static DynoSize> {
    DYNO_SIZES.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// `^[a-z][a-z0-9-]{1,28}[a-z0-9]$`: 3 to 30 characters, starts with a letter, ends with a
/// letter or digit. The name becomes a host name label and a Docker network name.
pub fn valid_app_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`: a name a shell can export.
pub fn valid_config_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `^[a-z0-9_-]{1,30}$`, lower-case so that `DYNO=web.1` and container names stay predictable.
/// Stricter than Heroku's `^[-\w]{1,128}$`: every Procfile in the wild fits.
pub fn valid_process_type(name: &str) -> bool {
    (1..=30).contains(&name.len())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_both_alphabets() {
        for (input, standard, url) in [
            (&b""[..], "", ""),
            (b"f", "Zg==", "Zg"),
            (b"fo", "Zm8=", "Zm8"),
            (b"foo", "Zm9v", "Zm9v"),
            (&[0xfb, 0xff][..], "+/8=", "-_8"),
        ] {
            assert_eq!(encode_base64(input), standard);
            assert_eq!(encode_base64url(input), url);
        }
        let pem = pem("CERTIFICATE", &[7u8; 100]);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n") && pem.ends_with("\n-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64), "{pem}");
    }

    fn check(f: fn(&str) -> bool, cases: &[(&str, bool)]) {
        for (input, expect) in cases {
            assert_eq!(f(input), *expect, "input {input:?}");
        }
    }

    #[test]
    fn app_names() {
        check(
            valid_app_name,
            &[
                ("demo", true),
                ("a1b", true),
                ("my-app-2", true),
                ("ab", false),
                ("1abc", false),
                ("abc-", false),
                ("Demo", false),
                ("de_mo", false),
                ("a".repeat(30).as_str(), true),
                ("a".repeat(31).as_str(), false),
                ("", false),
                ("dém", false),
            ],
        );
    }

    #[test]
    fn config_keys() {
        check(
            valid_config_key,
            &[
                ("A", true),
                ("_X1", true),
                ("DATABASE_URL", true),
                ("1A", false),
                ("A-B", false),
                ("", false),
                ("A B", false),
                ("É", false),
            ],
        );
    }

    #[test]
    fn process_types() {
        check(
            valid_process_type,
            &[("web", true), ("worker-2", true), ("clock_x", true), ("", false), ("Web", false), ("a.b", false)],
        );
    }

    #[test]
    fn hostnames() {
        check(
            valid_hostname,
            &[
                ("www.example.com", true),
                ("a.b", true),
                ("xn--bcher-kva.example", true),
                ("example", false),
                ("Example.com", false),
                ("-a.com", false),
                ("a-.com", false),
                ("a..com", false),
                ("a.com.", false),
                ("*.example.com", false),
                ("a_b.com", false),
            ],
        );
    }

    #[test]
    fn sizes_ignore_case() {
        assert_eq!(dyno_size("Standard-2X").map(|s| s.memory_mib), Some(1024));
        assert_eq!(dyno_size("performance").map(|s| s.memory_mib), Some(2560));
        assert!(dyno_size("huge").is_none());
    }
}

/// The dyno runner's `GET /health` on its loopback listener: `problems` are what keeps it from
/// converging that it cannot get past by itself (the Docker Engine unreachable, the stack
/// image that cannot be built, a platform component that keeps crashing), each one line that
/// says what to do. `ouro up` stops on them instead of waiting.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunnerHealth {
    /// `ok`, or `stuck` when there are problems.
    pub status: String,
    #[serde(default)]
    pub problems: Vec<String>,
}

/// `Basic base64(user:password)`, the value of an `Authorization` header.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", encode_base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 (RFC 4648 §4) with `=` padding.
pub fn encode_base64(bytes: &[u8]) -> String {
    encode_with(bytes, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", true)
}

/// URL-safe base64 (RFC 4648 §5) without padding, as JOSE wants it (RFC 7515 §2).
pub fn encode_base64url(bytes: &[u8]) -> String {
    encode_with(bytes, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", false)
}

fn encode_with(bytes: &[u8], table: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(table[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// A certificate's SHA-256 fingerprint as `AB:CD:…`: what the API prints for its certificate
/// authority and `ouro login` shows, to be compared by a person.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// A DER object as PEM (`-----BEGIN {label}-----`, 64-column base64).
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = encode_base64(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}
