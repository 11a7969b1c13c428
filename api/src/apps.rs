//! Apps as the other modules need them: the app a caller may act on, where it answers, and
//! the rules for the process types its slugs declare.

use ouro_types::valid_process_type;

use crate::auth::User;
use crate::store::AppRow;
use crate::{ApiError, AppState};

/// The app named (or identified) in a path, if `user` may act on it.
pub(crate) async fn find_app(state: &AppState, user: &User, name_or_id: &str) -> Result<AppRow, ApiError> {
    let app = state
        .store
        .app(name_or_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app `{name_or_id}` not found; `ouro apps` lists yours")))?;
    if !user.admin && app.owner_id != user.id {
        return Err(ApiError::forbidden(format!("you do not have access to app `{}`", app.name)));
    }
    Ok(app)
}

/// Process types of a slug: at most 50, valid names (`run` is kept for one-off dynos), commands
/// of 1 to 4096 characters.
pub(crate) fn validate_process_types(types: &std::collections::BTreeMap<String, String>) -> Result<(), ApiError> {
    if types.len() > 50 {
        return Err(ApiError::invalid_params("a slug may declare at most 50 process types"));
    }
    for (name, command) in types {
        if !valid_process_type(name) || name == "run" {
            return Err(ApiError::invalid_params(format!(
                "process type `{name}` is invalid: use 1 to 30 lowercase letters, digits, `-` and `_` \
                 (`run` is kept for one-off dynos)"
            )));
        }
        if command.trim().is_empty() || command.len() > 4096 || command.contains('\0') {
            return Err(ApiError::invalid_params(format!("command of `{name}` must be 1 to 4096 characters")));
        }
    }
    Ok(())
}

/// Where an app answers through the router.
pub(crate) fn web_url(settings: &crate::Settings, app_name: &str) -> String {
    match settings.apps_port {
        80 => format!("http://{app_name}.{}/", settings.domain),
        port => format!("http://{app_name}.{}:{port}/", settings.domain),
    }
}
