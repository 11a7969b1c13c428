//! `/teams` and `/teams/{team}/members`, Heroku's `teams` and `members`: any user makes a team
//! (and is its first admin); its admins (and the platform's) add, change and remove members
//! and delete it once it has no apps; its members see it and its members. A team a caller is
//! not in is a 404 to them, as if it did not exist.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch};
use axum::{Extension, Router};
use ouro_types::valid_app_name;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::User;
use crate::error::Json;
use crate::teams::{Member, MemberChange, Role, TeamRow};
use crate::{ApiError, AppState, Error};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/teams", get(list).post(create))
        .route("/teams/{team}", get(info).delete(destroy))
        .route("/teams/{team}/members", get(members).put(set_member))
        .route("/teams/{team}/members/{member}", patch(set_member_by_path).delete(remove_member))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamCreate {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberSet {
    user: String,
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleSet {
    role: String,
}

fn team_json(team: &TeamRow, role: Option<Role>) -> Value {
    json!({ "id": team.id, "name": team.name, "role": role.map(Role::as_str), "created_at": team.created_at })
}

fn member_json(team: &TeamRow, m: &Member) -> Value {
    json!({
        "team": { "id": team.id, "name": team.name },
        "user": { "id": m.user_id, "email": m.email },
        "role": m.role.as_str(),
        "created_at": m.created_at,
    })
}

/// Team `name` and the caller's role in it, if they may see it (its members and admins); with
/// `manage`, only when they may change it (its admins and the platform's).
async fn find_team(
    state: &AppState,
    user: &User,
    name: &str,
    manage: bool,
) -> Result<(TeamRow, Option<Role>), ApiError> {
    let missing = || ApiError::not_found(format!("no team `{name}`; `ouro teams` lists yours"));
    let team = state.store.team(name).await?.ok_or_else(missing)?;
    let role = state.store.team_role(&team.id, &user.id).await?;
    if role.is_none() && !user.admin {
        return Err(missing());
    }
    if manage && role != Some(Role::Admin) && !user.admin {
        return Err(ApiError::forbidden(format!("only an admin of team `{}` may change it", team.name)));
    }
    Ok((team, role))
}

async fn list(State(state): State<AppState>, Extension(user): Extension<User>) -> Result<axum::Json<Value>, ApiError> {
    // An admin sees every team, with their own role where they are in it.
    let teams = state.store.teams(&user.id, user.admin).await?;
    Ok(axum::Json(Value::Array(teams.iter().map(|(t, r)| team_json(t, *r)).collect())))
}

async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Json(body): Json<TeamCreate>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let name = body.name.trim();
    if !valid_app_name(name) {
        return Err(ApiError::invalid_params(format!(
            "team name `{name}` is invalid: use 3 to 30 lowercase letters, digits and dashes, \
             starting with a letter and not ending with a dash"
        )));
    }
    match state.store.create_team(name, &user.id).await {
        Ok(team) => Ok((StatusCode::CREATED, axum::Json(team_json(&team, Some(Role::Admin))))),
        Err(Error::Conflict) => Err(ApiError::conflict(format!("team name `{name}` is already taken; pick another"))),
        Err(e) => Err(e.into()),
    }
}

async fn info(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let (team, role) = find_team(&state, &user, &name, false).await?;
    Ok(axum::Json(team_json(&team, role)))
}

async fn destroy(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let (team, role) = find_team(&state, &user, &name, true).await?;
    match state.store.delete_team(&team.id).await? {
        Ok(()) => Ok(axum::Json(team_json(&team, role))),
        Err(apps) => Err(ApiError::conflict(format!(
            "team `{}` still has apps ({}); destroy them first (`ouro apps:destroy`)",
            team.name,
            apps.join(", ")
        ))),
    }
}

async fn members(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let (team, _) = find_team(&state, &user, &name, false).await?;
    let members = state.store.members(&team.id).await?;
    Ok(axum::Json(Value::Array(members.iter().map(|m| member_json(&team, m)).collect())))
}

/// Adds a member or changes their role (Heroku's `PUT /teams/{team}/members`).
async fn set_member(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<MemberSet>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    change(&state, &user, &name, &body.user, Some(&body.role)).await
}

async fn set_member_by_path(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, email)): Path<(String, String)>,
    Json(body): Json<RoleSet>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    change(&state, &user, &name, &email, Some(&body.role)).await
}

async fn remove_member(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, email)): Path<(String, String)>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    change(&state, &user, &name, &email, None).await
}

/// Gives user `email` role `role` in team `name` (`None`: removes them).
async fn change(
    state: &AppState,
    user: &User,
    name: &str,
    email: &str,
    role: Option<&str>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let role = role
        .map(|r| {
            Role::parse(r).ok_or_else(|| ApiError::invalid_params(format!("`{r}` is not a role: admin or member")))
        })
        .transpose()?;
    let (team, _) = find_team(state, user, name, true).await?;
    let email = email.trim().to_ascii_lowercase();
    let user_id =
        state.store.user_id(&email).await?.ok_or_else(|| {
            ApiError::not_found(format!("no user `{email}`; an admin adds users with `ouro users:add`"))
        })?;
    let before = state.store.members(&team.id).await?.into_iter().find(|m| m.user_id == user_id);
    let status = match state.store.set_member(&team.id, &user_id, role).await? {
        MemberChange::Added => StatusCode::CREATED,
        MemberChange::Changed | MemberChange::Removed => StatusCode::OK,
        MemberChange::NotAMember => {
            return Err(ApiError::not_found(format!("`{email}` is not a member of team `{}`", team.name)));
        }
        MemberChange::LastAdmin => {
            return Err(ApiError::invalid_params(format!(
                "`{email}` is the last admin of team `{}`; make another member admin first (`ouro members:set`)",
                team.name
            )));
        }
    };
    let after = state.store.members(&team.id).await?.into_iter().find(|m| m.user_id == user_id);
    let shown = after.or(before).ok_or_else(|| ApiError::not_found(format!("no member `{email}`")))?;
    Ok((status, axum::Json(member_json(&team, &shown))))
}
