//! The caps on what one user or one app may hold at once, in one place, so that README's
//! "Limits" table and the code say the same numbers. Each is enforced by the domain module of
//! its resource, in the transaction that adds one more (the app's or the owner's row is written
//! first, so two requests at once cannot both take the last place), and refused with `422
//! invalid_params` and a one-line message that names the cap and what to do.
//!
//! Bounds on sizes of single requests (JSON bodies, slugs, build sources) live with the code
//! that reads them; README's table lists those too.

/// Apps a user owns (`POST /apps`). The platform's own apps (`ouro-builder`, `ouro-api`, …) are
/// neither counted nor refused, and the add-on providers' users (tokens scoped `provider`) are
/// not capped: each of their apps is the server of some tenant's add-on, so their count is the
/// platform's number of add-ons, not one tenant's use.
pub const APPS_PER_OWNER: usize = 100;

/// One-off dynos of an app running at once, counted when a user asks for one (`POST
/// /apps/{app}/dynos`). The platform's own one-offs (builds on `ouro-builder`, an app's release
/// command) are not refused by it: there is at most one build and one release command per app
/// at a time already.
pub const ONE_OFFS_PER_APP: usize = 10;

/// A one-off dyno's own `env`: keys plus values, in bytes (as an app's config).
pub const ONE_OFF_ENV_BYTES: usize = 64 * 1024;

/// How long a one-off dyno runs unless asked otherwise (`time_to_live`), in seconds.
pub const ONE_OFF_TIME_TO_LIVE: u64 = 3600;

/// The longest `time_to_live` a one-off dyno may ask for, in seconds (a day).
pub const MAX_ONE_OFF_TIME_TO_LIVE: u64 = 24 * 3600;

/// An app's config: keys plus values, in bytes (Heroku's 64 kB).
pub const CONFIG_BYTES: usize = 64 * 1024;

/// Custom domains of an app.
pub const DOMAINS_PER_APP: usize = 100;

/// SNI endpoints (TLS certificates) of an app.
pub const SNI_ENDPOINTS_PER_APP: usize = 10;

/// Dynos of an app's formation, all process types together (Heroku's default: 100). Each
/// process type is also at most 100 on its own.
pub const DYNOS_PER_APP: i64 = 100;

/// Log drains of an app.
pub const DRAINS_PER_APP: usize = 10;
