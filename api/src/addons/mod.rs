//! Add-ons: the provider client ([`provider`]) and an add-on's life at the API
//! ([`provisioning`]); `routes/addons.rs` is their HTTP side.
//!
//! The provider contract (ARCHITECTURE.md, "Add-ons"): `POST {url}/ouro/resources` with
//! `{"uuid", "plan", "app_name"}` answers `{"id", "config": {"URL": "..."}}`; `DELETE
//! {url}/ouro/resources/{id}` removes it; HTTP Basic with the provider's name and the password
//! the API generated when it was registered. An attachment named `DATABASE` sets
//! `DATABASE_URL` (one var per key of the provider's config) on its app in one new release.
//!
//! Nothing is half-made: the provider is called first; if recording or releasing then fails,
//! the API deprovisions what it asked for. A provider that cannot be reached is a 503 with its
//! name, and changes nothing. A provider that runs the server as an app on Ouro answers its
//! name as `service_app`: that app's dynos then join the networks of the attached apps only.

pub(crate) mod provider;
pub(crate) mod provisioning;
pub(crate) mod store;
