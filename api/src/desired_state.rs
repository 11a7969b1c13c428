//! The desired state: what the dyno runner should run, built from the store.
//!
//! One read of each table involved (apps, current releases, running one-offs, their slugs,
//! formations, domains, restarts, certificates, add-on attachments and servers), in one
//! transaction, then put together in memory: the number of queries does not grow with the
//! number of apps. Per app the rules are those of the Platform API: an app runs its current
//! release once that release's slug is uploaded; until then only a release-phase one-off on a
//! slug of its own may run.

use std::collections::{BTreeMap, HashMap};

use ouro_types::{
    ConfigVars, DesiredApp, DesiredOneOff, DesiredProcess, DesiredRelease, DesiredState, Service, TlsCert,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Result;
use crate::formation::{FormationRow, formation_row};
use crate::one_offs::{OneOffRow, one_off_row};
use crate::platform_key::PlatformKey;
use crate::releases::{ReleaseRow, SlugRow, release_row, slug_row};
use crate::store::Store;

/// The whole desired state. `public_url` is the API's address as dynos and the runner reach it:
/// slugs are fetched from under it.
pub async fn desired_state(store: &Store, public_url: &str, platform_key: &PlatformKey) -> Result<DesiredState> {
    let mut tables = store.desired_tables(platform_key).await?;
    let mut apps = Vec::new();
    let mut volumes = Vec::new();
    for app in std::mem::take(&mut tables.apps) {
        volumes.push(crate::pipeline::cache_volume(&app.id));
        volumes.extend(app.service.mounts.iter().map(|m| m.volume.clone()));
        if let Some(desired) = desired_app(&mut tables, app, public_url) {
            apps.push(desired);
        }
    }
    Ok(DesiredState { apps, volumes, seed: false })
}

/// One app's entry, or `None` when it has nothing to run.
fn desired_app(tables: &mut Tables, app: AppService, public_url: &str) -> Option<DesiredApp> {
    let release = tables.releases.remove(&app.id)?;
    let slug_of = |slug_id: &str| tables.slugs.get(&(app.id.clone(), slug_id.to_string()));
    let as_release = |slug: &SlugRow, version: i64, id: &str, config: &ConfigVars| {
        Some(DesiredRelease {
            id: id.to_string(),
            version,
            slug_url: format!("{public_url}/apps/{}/slugs/{}/blob", app.name, slug.id),
            slug_id: slug.id.clone(),
            slug_checksum: slug.checksum.clone()?,
            process_types: slug.process_types.clone(),
            config: config.clone(),
            stack: slug.stack.clone(),
            stack_update: tables
                .stack_update
                .clone()
                .filter(|_| [ouro_types::STACK, ouro_types::BUILD_STACK].contains(&slug.stack.as_str())),
        })
    };
    let mut one_offs = Vec::new();
    for o in tables.one_offs.remove(&app.id).unwrap_or_default() {
        // A one-off on a slug of its own (the release phase) waits for that slug's upload.
        let own_release = match &o.slug_id {
            Some(slug_id) => match slug_of(slug_id).and_then(|s| as_release(s, 0, "", &release.config)) {
                Some(r) => Some(r),
                None => continue,
            },
            None => None,
        };
        one_offs.push(DesiredOneOff {
            number: o.number as u32,
            command: o.command,
            size: o.size,
            env: o.env,
            mounts: o.mounts,
            api_access: o.api_access,
            release: own_release,
            attach: o.attach,
            tty: o.tty,
            time_to_live_seconds: o.time_to_live_seconds.map(|s| s.max(0) as u64),
        });
    }
    let current = release
        .slug_id
        .as_deref()
        .and_then(slug_of)
        .and_then(|slug| as_release(slug, release.version, &release.id, &release.config));
    // No release to run yet: only a release phase (on its own slug) may be desired.
    let (current, formation) = match current {
        Some(current) => (current, tables.formations.remove(&app.id).unwrap_or_default()),
        None => (one_offs.iter().find_map(|o| o.release.clone())?, Vec::new()),
    };
    // An add-on server joins the apps its add-ons are attached to, and a provider that runs on
    // Ouro joins its servers, besides any set by hand: each server's network holds its own
    // dynos, its provider's and its attached apps', and no other server's.
    let mut joins = app.service.joins;
    let served = tables.attached.remove(&app.name).unwrap_or_default();
    let servers = tables.servers.remove(&app.name).unwrap_or_default();
    for other in served.into_iter().chain(servers) {
        if other != app.name && !joins.contains(&other) {
            joins.push(other);
        }
    }
    Some(DesiredApp {
        release: current,
        formation: formation
            .into_iter()
            .map(|f| DesiredProcess { process_type: f.process_type, quantity: f.quantity, size: f.size })
            .collect(),
        domains: tables.domains.remove(&app.id).unwrap_or_default(),
        restarts: tables.restarts.remove(&app.id).unwrap_or_default(),
        one_offs,
        certificates: tables.certificates.remove(&app.id).unwrap_or_default(),
        acme_challenges: tables.acme_challenges.remove(&app.id).unwrap_or_default(),
        mounts: app.service.mounts,
        joins,
        api_access: app.service.api_access,
        host_network: app.service.host_network,
        listens: app.service.listens,
        app_id: app.id,
        app_name: app.name,
    })
}

/// An app with what makes it a service.
struct AppService {
    id: String,
    name: String,
    service: Service,
}

/// Every row the desired state needs, grouped by app (id, or name for `attached`), each group
/// in the order the desired state lists it.
struct Tables {
    apps: Vec<AppService>,
    releases: HashMap<String, ReleaseRow>,
    /// By (app id, slug id): only slugs of current releases and running one-offs.
    slugs: HashMap<(String, String), SlugRow>,
    one_offs: HashMap<String, Vec<OneOffRow>>,
    formations: HashMap<String, Vec<FormationRow>>,
    domains: HashMap<String, Vec<String>>,
    restarts: HashMap<String, BTreeMap<String, u64>>,
    certificates: HashMap<String, Vec<TlsCert>>,
    acme_challenges: HashMap<String, Vec<ouro_types::AcmeChallenge>>,
    /// By the name of the app that runs an add-on's server: the apps attached to its add-ons.
    attached: HashMap<String, Vec<String>>,
    /// By the name of a provider's app (its URL `app:<name>`): the apps that run its add-ons'
    /// servers, when its owner owns them too.
    servers: HashMap<String, Vec<String>>,
    /// The latest stack update's id (`stack_updates.rs`).
    stack_update: Option<String>,
}

/// Rows grouped by the app column `key`, in query order.
fn group<T>(rows: &[AnyRow], key: &str, each: impl Fn(&AnyRow) -> Result<T>) -> Result<HashMap<String, Vec<T>>> {
    let mut groups: HashMap<String, Vec<T>> = HashMap::new();
    for r in rows {
        groups.entry(r.try_get(key)?).or_default().push(each(r)?);
    }
    Ok(groups)
}

impl Store {
    /// Reads the tables of the desired state, one query each, in one transaction.
    async fn desired_tables(&self, platform_key: &PlatformKey) -> Result<Tables> {
        let mut tx = self.pool.begin().await?;
        let apps = sqlx::query(
            "SELECT id, name, service_mounts, service_joins, service_api_access, service_host_network, \
             service_listens FROM apps ORDER BY name",
        )
        .fetch_all(&mut *tx)
        .await?;
        let releases = sqlx::query(&format!(
            "SELECT app_id, {} WHERE id IN (SELECT current_release_id FROM apps)",
            crate::releases::RELEASE_COLUMNS
        ))
        .fetch_all(&mut *tx)
        .await?;
        let one_offs = sqlx::query(
            "SELECT app_id, id, number, command, size, env, mounts, api_access, slug_id, created_at, attach, tty, \
             time_to_live_seconds FROM one_off_dynos WHERE finished_at IS NULL ORDER BY app_id, number",
        )
        .fetch_all(&mut *tx)
        .await?;
        let slugs = sqlx::query(&format!(
            "SELECT app_id, {} WHERE id IN (SELECT slug_id FROM releases WHERE id IN \
             (SELECT current_release_id FROM apps) UNION SELECT slug_id FROM one_off_dynos WHERE finished_at IS NULL)",
            crate::releases::SLUG_COLUMNS
        ))
        .fetch_all(&mut *tx)
        .await?;
        let formations = sqlx::query(
            "SELECT app_id, id, process_type, quantity, size, updated_at FROM formations \
             ORDER BY app_id, process_type",
        )
        .fetch_all(&mut *tx)
        .await?;
        let domains =
            sqlx::query("SELECT app_id, hostname FROM domains ORDER BY app_id, hostname").fetch_all(&mut *tx).await?;
        let restarts =
            sqlx::query("SELECT app_id, target, requested_at_ms FROM dyno_restarts").fetch_all(&mut *tx).await?;
        let certificates = sqlx::query(
            "SELECT app_id, id, certificate_chain, private_key FROM certificates ORDER BY app_id, created_at, id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let acme_challenges = sqlx::query(
            "SELECT app_id, token, key_authorization FROM acme_challenges ORDER BY app_id, created_at, token",
        )
        .fetch_all(&mut *tx)
        .await?;
        let attached = sqlx::query(
            "SELECT DISTINCT a.service_app, p.name FROM addons a JOIN addon_attachments t ON t.addon_id = a.id \
             JOIN apps p ON p.id = t.app_id WHERE a.service_app IS NOT NULL ORDER BY a.service_app, p.name",
        )
        .fetch_all(&mut *tx)
        .await?;
        // The provider's owner must own the server app too: a provider cannot name another
        // user's app as a service app and so put its own dynos on that app's network.
        let servers = sqlx::query(
            "SELECT DISTINCT x.name AS provider_app, s.name AS service_app FROM addons a \
             JOIN addon_providers r ON r.id = a.provider_id JOIN apps x ON r.url = 'app:' || x.name \
             JOIN apps s ON s.name = a.service_app WHERE s.owner_id = x.owner_id ORDER BY x.name, s.name",
        )
        .fetch_all(&mut *tx)
        .await?;
        let stack_update = sqlx::query(crate::stack_updates::LATEST)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<String, _>("id"))
            .transpose()?;
        tx.commit().await?;
        Ok(Tables {
            apps: apps
                .iter()
                .map(|r| {
                    Ok(AppService {
                        id: r.try_get("id")?,
                        name: r.try_get("name")?,
                        service: crate::services::service_row(r)?,
                    })
                })
                .collect::<Result<_>>()?,
            releases: releases.iter().map(|r| Ok((r.try_get("app_id")?, release_row(r)?))).collect::<Result<_>>()?,
            slugs: slugs
                .iter()
                .map(|r| {
                    let slug = slug_row(r)?;
                    Ok(((r.try_get("app_id")?, slug.id.clone()), slug))
                })
                .collect::<Result<_>>()?,
            one_offs: group(&one_offs, "app_id", one_off_row)?,
            formations: group(&formations, "app_id", formation_row)?,
            domains: group(&domains, "app_id", |r| Ok(r.try_get("hostname")?))?,
            restarts: group(&restarts, "app_id", |r| {
                Ok((r.try_get("target")?, r.try_get::<i64, _>("requested_at_ms")?.max(0) as u64))
            })?
            .into_iter()
            .map(|(app, targets)| (app, targets.into_iter().collect()))
            .collect(),
            certificates: group(&certificates, "app_id", |r| {
                let place = crate::domains::private_key_place(&r.try_get::<String, _>("id")?);
                // One key that does not open (a replaced platform key) costs its certificate
                // (the router then serves its default one), not the whole desired state.
                let key_pem = platform_key.open(&place, &r.try_get::<String, _>("private_key")?).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "a TLS private key cannot be opened; its certificate is left out");
                    String::new()
                });
                Ok(TlsCert { chain_pem: r.try_get("certificate_chain")?, key_pem })
            })?,
            acme_challenges: group(&acme_challenges, "app_id", |r| {
                Ok(ouro_types::AcmeChallenge {
                    token: r.try_get("token")?,
                    key_authorization: r.try_get("key_authorization")?,
                })
            })?,
            attached: group(&attached, "service_app", |r| Ok(r.try_get("name")?))?,
            servers: group(&servers, "provider_app", |r| Ok(r.try_get("service_app")?))?,
            stack_update,
        })
    }
}
