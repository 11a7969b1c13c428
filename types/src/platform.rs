//! The platform's own apps and volumes, named once for the API, the runner, the CLI and the
//! tests. When Ouro runs on itself (`ouro up`) each component is an app of the platform.

/// The app that holds Ouro's own source: a `git push` of Ouro's repository to it upgrades the
/// platform.
pub const SOURCE_APP: &str = "ouro";
/// The Platform API's app.
pub const API_APP: &str = "ouro-api";
/// The router's app.
pub const ROUTER_APP: &str = "ouro-router";
/// The app whose one-off dynos are builds.
pub const BUILDER_APP: &str = "ouro-builder";
/// The components a self-upgrade rolls, in that order: the API hands over first, then the
/// router.
pub const COMPONENT_APPS: [&str; 2] = [API_APP, ROUTER_APP];
/// The volume that holds the API's data (without the platform's prefix).
pub const DATA_VOLUME: &str = "ouro-data";

/// The add-on kinds Ouro ships providers for.
pub const ADDON_KINDS: &[&str] = &["postgresql", "redis"];

/// The app that runs the add-on provider of `kind` (`postgresql`, `redis`).
pub fn provider_app(kind: &str) -> String {
    format!("ouro-{kind}")
}

/// Whether `name` is one of the platform's own apps: users do not see them in their app list.
pub fn is_system_app(name: &str) -> bool {
    name == BUILDER_APP
        || name == SOURCE_APP
        || COMPONENT_APPS.contains(&name)
        || ADDON_KINDS.iter().any(|kind| name == provider_app(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_apps_are_the_platforms_own() {
        for name in ["ouro", "ouro-api", "ouro-router", "ouro-builder", "ouro-postgresql", "ouro-redis"] {
            assert!(is_system_app(name), "{name}");
        }
        for name in ["shop", "ouro-shop", "ouro-mysql", "api"] {
            assert!(!is_system_app(name), "{name}");
        }
    }
}
