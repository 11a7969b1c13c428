//! `ouro`, the command-line client of the Ouro PaaS: Heroku-style topics (`apps`, `config`,
//! `releases`, `ps`, `logs`, `drains`, `domains`, `certs`, `deploy`, `git`, `builds`, `buildpacks`,
//! `addons`, `pg`, `redis`, `run`) that log in, manage apps and print what the Ouro Platform API answers.
//!
//! The CLI speaks only the HTTP API, with the token that `ouro login` stored. It must never
//! talk to Docker or the database, nor read the API's data directory: everything it knows
//! comes from the API, so it works the same on a laptop as on the server. The one command for
//! the server itself, `ouro up`, starts the dyno runner there and registers the platform's
//! components through the API (see `up.rs`).
//!
//! Output contract (scripts depend on it): results on stdout (`--json` gives only JSON);
//! failures as one `ouro: <message>` line on stderr; exit 0 on success, 1 when the API or
//! the machine fails, 2 for usage errors. `pg:psql` and `redis:cli` exit with their
//! client's code instead, and `run` with its dyno's.

mod access;
mod addons;
mod apps;
mod audit;
mod authorizations;
mod buildpacks;
mod builds;
mod certs;
mod chaos;
mod client;
mod config;
mod context;
mod credentials;
mod deploy;
mod domains;
mod error;
mod git;
mod git_remote;
mod login;
mod logs;
mod nodes;
mod pg;
mod ps;
mod releases;
mod run;
mod slug;
mod stack;
mod table;
mod teams;
mod trust;
mod tunnel;
mod up;
mod upgraded;
mod users;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::context::Ctx;
use crate::error::CliError;

#[derive(Parser)]
#[command(name = "ouro", version, about = "Deploy and run apps on an Ouro platform", arg_required_else_help = true)]
struct Cli {
    /// App to act on (default: the app of the git remote named `ouro`)
    #[arg(short, long, global = true, value_name = "APP")]
    app: Option<String>,

    /// Print the API's JSON instead of tables
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring Ouro up on this machine, running on itself (the dyno runner on the host, the API
    /// and the router as dynos); run again, it changes nothing
    Up {
        /// Where the runner's state, the admin token and the bootstrap slug live
        /// [default: $OURO_DATA_DIR or ~/.local/share/ouro]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Label of this installation's containers, networks and volumes
        #[arg(long, default_value = "ouro", value_name = "NAME")]
        platform: String,
        #[arg(long, default_value_t = 7700, value_name = "PORT")]
        api_port: u16,
        /// The router's HTTP port on 127.0.0.1
        #[arg(long, default_value_t = 8080, value_name = "PORT")]
        http_port: u16,
        /// The router's HTTPS port on 127.0.0.1
        #[arg(long, default_value_t = 8443, value_name = "PORT")]
        https_port: u16,
        /// The runner's route table, on 127.0.0.1
        #[arg(long, default_value_t = 7701, value_name = "PORT")]
        runner_port: u16,
    },
    /// List the platform's self-upgrades (admins): how far each went and how it ended
    Upgrades,
    /// Show the stack dynos run on: its image and when Debian's updates were installed in it
    Stack,
    /// List the nodes of the swarm the platform runs on (admins): address, state, role, dynos
    Nodes,
    /// Rebuild the stack with Debian's latest updates and release every app onto it (admins)
    #[command(name = "stack:update")]
    StackUpdate,
    /// Kill the app's dynos and the platform's parts at random under a load of its own, and
    /// report how each healed, the failed requests and any data lost (admins, where `ouro up` runs)
    Chaos {
        /// How long to run, in seconds (at most 3600)
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        duration: u64,
        /// Seconds between two kills
        #[arg(long, default_value_t = 5, value_name = "SECONDS")]
        every: u64,
        /// What to kill: dynos (at every kill), and router, api, runner, addons (once each)
        #[arg(long, default_value = "dynos", value_name = "LIST")]
        targets: String,
        /// Run even though the platform runs other users' apps
        #[arg(long)]
        confirm: bool,
        /// The data dir of `ouro up` (for the runner's secret) [default: $OURO_DATA_DIR or ~/.local/share/ouro]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The runner's port on 127.0.0.1 (as given to `ouro up`)
        #[arg(long, default_value_t = 7701, value_name = "PORT")]
        runner_port: u16,
        /// Load loops (each at most 100 requests a second)
        #[arg(long, default_value_t = 4, value_name = "N")]
        concurrency: usize,
    },
    /// Check an API token and store it for the other commands
    Login {
        /// API base URL [default: $OURO_API_URL or http://127.0.0.1:7700]
        #[arg(long, value_name = "URL")]
        api: Option<String>,
        /// API token (read from stdin when omitted)
        #[arg(long, value_name = "TOKEN", conflicts_with_all = ["interactive", "invitation"])]
        token: Option<String>,
        /// Log in with your email and password (read from stdin): a token is made for you
        #[arg(short, long, conflicts_with = "invitation")]
        interactive: bool,
        /// Set your first password with the code of your invitation (`users:add`), then log in
        #[arg(long, value_name = "CODE")]
        invitation: Option<String>,
        /// Trust the API's certificate authority in this PEM file (an https:// API)
        #[arg(long, value_name = "FILE", conflicts_with = "fingerprint")]
        ca_file: Option<String>,
        /// Trust the API's certificate authority with this SHA-256 fingerprint, as `ouro up` printed it
        #[arg(long, value_name = "SHA256")]
        fingerprint: Option<String>,
    },
    /// Revoke the stored token at the API and forget it here
    Logout,
    /// List the platform's users (admins)
    #[command(name = "users")]
    Users,
    /// Add a user (admins): they get a one-time code to set their password with
    #[command(name = "users:add")]
    UsersAdd {
        email: String,
        /// Make them an admin
        #[arg(long)]
        admin: bool,
    },
    /// Remove a user and revoke their tokens (admins)
    #[command(name = "users:remove")]
    UsersRemove {
        email: String,
        /// The email again, to confirm
        #[arg(long, value_name = "EMAIL")]
        confirm: Option<String>,
    },
    /// List your API tokens
    #[command(name = "authorizations")]
    Authorizations,
    /// Make an API token (shown once)
    #[command(name = "authorizations:create")]
    AuthorizationsCreate {
        /// What it is for
        #[arg(short, long, value_name = "DESCRIPTION")]
        description: Option<String>,
        /// Seconds until it expires [default: never]
        #[arg(short, long, value_name = "SECONDS")]
        expires_in: Option<u64>,
    },
    /// Show an API token of yours (not its secret)
    #[command(name = "authorizations:info")]
    AuthorizationsInfo { id: String },
    /// Give an API token a new secret (shown once); the old one is refused at once
    #[command(name = "authorizations:rotate")]
    AuthorizationsRotate { id: String },
    /// Revoke an API token: refused at once
    #[command(name = "authorizations:revoke", alias = "authorizations:destroy")]
    AuthorizationsRevoke { id: String },
    /// The audit log: the app's with -a (whoever may view it), all of it for admins
    #[command(name = "audit")]
    Audit {
        /// How many of the newest events
        #[arg(short, long, default_value_t = 100, value_name = "NUM")]
        num: u32,
    },
    /// Who may do what to the app
    #[command(name = "access")]
    Access,
    /// Share the app with a user (default permissions: all)
    #[command(name = "access:add")]
    AccessAdd {
        email: String,
        /// view, deploy, operate, manage, comma-separated (view is always added)
        #[arg(short, long, value_name = "PERMISSIONS")]
        permissions: Option<String>,
    },
    /// Change a collaborator's permissions
    #[command(name = "access:update")]
    AccessUpdate {
        email: String,
        /// view, deploy, operate, manage, comma-separated (view is always added)
        #[arg(short, long, value_name = "PERMISSIONS")]
        permissions: String,
    },
    /// Stop sharing the app with a user
    #[command(name = "access:remove")]
    AccessRemove { email: String },
    /// Teams you are in, with your role
    #[command(name = "teams")]
    Teams,
    /// Make a team; you are its first admin
    #[command(name = "teams:create")]
    TeamsCreate { name: String },
    /// Delete a team that has no apps (its admins)
    #[command(name = "teams:destroy")]
    TeamsDestroy {
        name: String,
        /// The team's name again, to confirm
        #[arg(long, value_name = "TEAM")]
        confirm: Option<String>,
    },
    /// A team's members and their roles
    #[command(name = "members")]
    Members {
        #[arg(short, long, value_name = "TEAM")]
        team: String,
        /// Only members with this role
        #[arg(short, long, value_name = "ROLE")]
        role: Option<String>,
    },
    /// Add a user to a team (its admins)
    #[command(name = "members:add")]
    MembersAdd {
        email: String,
        #[arg(short, long, value_name = "TEAM")]
        team: String,
        /// admin or member
        #[arg(short, long, value_name = "ROLE", default_value = "member")]
        role: String,
    },
    /// Change a member's role (its admins)
    #[command(name = "members:set")]
    MembersSet {
        email: String,
        #[arg(short, long, value_name = "TEAM")]
        team: String,
        /// admin or member
        #[arg(short, long, value_name = "ROLE")]
        role: String,
    },
    /// Remove a user from a team (its admins)
    #[command(name = "members:remove")]
    MembersRemove {
        email: String,
        #[arg(short, long, value_name = "TEAM")]
        team: String,
    },
    /// List your apps, your teams' and those shared with you
    #[command(name = "apps")]
    Apps {
        /// Only this team's apps
        #[arg(short, long, value_name = "TEAM")]
        team: Option<String>,
    },
    /// Create an app and add the `ouro` git remote
    #[command(name = "apps:create")]
    AppsCreate {
        /// App name (default: one the API picks)
        name: Option<String>,
        /// Make it in this team (default: yours alone)
        #[arg(short, long, value_name = "TEAM")]
        team: Option<String>,
    },
    /// Print the app's web URL (and open it in $BROWSER when set)
    #[command(name = "open")]
    Open {
        /// Path to append to the URL
        path: Option<String>,
    },
    /// Show an app
    #[command(name = "apps:info")]
    AppsInfo,
    /// Delete an app and everything in it
    #[command(name = "apps:destroy")]
    AppsDestroy {
        /// Name of the app, to confirm the deletion
        #[arg(long, value_name = "APP")]
        confirm: Option<String>,
    },
    /// List config vars
    #[command(name = "config")]
    Config,
    /// Print one config var
    #[command(name = "config:get")]
    ConfigGet { key: String },
    /// Set config vars and restart the app
    #[command(name = "config:set")]
    ConfigSet {
        #[arg(required = true, value_name = "KEY=VALUE")]
        vars: Vec<String>,
    },
    /// Unset config vars and restart the app
    #[command(name = "config:unset")]
    ConfigUnset {
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// List releases, newest first
    #[command(name = "releases")]
    Releases {
        /// How many releases to show
        #[arg(short, long, value_name = "N", default_value_t = 15)]
        num: usize,
    },
    /// Show a release (default: the current one)
    #[command(name = "releases:info")]
    ReleasesInfo {
        /// `vN`, `N` or a release id
        release: Option<String>,
    },
    /// Roll back to an earlier release (default: the one before the current)
    #[command(name = "releases:rollback")]
    ReleasesRollback {
        /// `vN`, `N` or a release id
        release: Option<String>,
    },
    /// Show the formation and the running dynos
    #[command(name = "ps")]
    Ps,
    /// Change dyno quantities and sizes
    #[command(name = "ps:scale")]
    PsScale {
        /// TYPE=N, TYPE+N, TYPE-N, TYPE=N:SIZE or TYPE:SIZE
        #[arg(required = true, value_name = "CHANGE")]
        changes: Vec<String>,
    },
    /// Restart all dynos, those of one process type, or one dyno
    #[command(name = "ps:restart")]
    PsRestart {
        /// A process type (`web`) or a dyno (`web.1`); all dynos when omitted
        #[arg(value_name = "TYPE|DYNO")]
        target: Option<String>,
    },
    /// Stop one dyno (a dyno of the formation is started again)
    #[command(name = "ps:stop")]
    PsStop {
        /// The dyno, such as `web.1`
        #[arg(value_name = "DYNO")]
        dyno: String,
    },
    /// Run a command in a one-off dyno (run.N) on the current release, attached to this
    /// terminal; exits with the command's status
    #[command(name = "run")]
    Run {
        /// Dyno size, such as standard-2x
        #[arg(short, long, value_name = "SIZE")]
        size: Option<String>,
        /// Do not attach: the output goes to the app's log (`ouro logs --dyno run.N`)
        #[arg(short, long)]
        detached: bool,
        /// Stop the dyno after this many seconds [default: the platform's, one hour]
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
        /// A config var for this dyno only (repeatable)
        #[arg(short, long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The command and its arguments (`ouro run -- CMD ARGS…` is the safest form)
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// `run --detached`, by its older name
    #[command(name = "run:detached", hide = true)]
    RunDetached {
        /// Dyno size, such as standard-2x
        #[arg(short, long, value_name = "SIZE")]
        size: Option<String>,
        /// The command and its arguments
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Show the app's log: dynos' output, router requests, platform events (`--tail` follows)
    Logs {
        /// How many recent lines (at most 1500)
        #[arg(short, long, value_name = "N", default_value_t = 100)]
        num: usize,
        /// Keep following new lines
        #[arg(short, long)]
        tail: bool,
        /// Only this dyno (`web.1`) or process type (`web`, `router`, `api`)
        #[arg(short, long, value_name = "DYNO")]
        dyno: Option<String>,
        /// Only `app` (dynos' output) or `ouro` (the platform's lines)
        #[arg(short, long, value_name = "SOURCE")]
        source: Option<String>,
    },
    /// List the app's log drains
    #[command(name = "drains")]
    Drains,
    /// Forward the app's log to a syslog+tcp:// or https:// drain (RFC 5424)
    #[command(name = "drains:add")]
    DrainsAdd {
        #[arg(value_name = "URL")]
        url: String,
    },
    /// Stop forwarding the app's log to a drain (its URL or id)
    #[command(name = "drains:remove")]
    DrainsRemove {
        #[arg(value_name = "URL")]
        drain: String,
    },
    /// Release a local directory with a Procfile as a new slug
    #[command(name = "deploy")]
    Deploy {
        /// The app's directory
        #[arg(value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// List the app's domains
    #[command(name = "domains")]
    Domains,
    /// Add a custom domain to the app
    #[command(name = "domains:add")]
    DomainsAdd {
        #[arg(value_name = "HOSTNAME")]
        hostname: String,
    },
    /// Remove a custom domain from the app
    #[command(name = "domains:remove")]
    DomainsRemove {
        #[arg(value_name = "HOSTNAME")]
        hostname: String,
    },
    /// List the app's SSL certificates (SNI endpoints)
    #[command(name = "certs")]
    Certs,
    /// Add an SSL certificate: a PEM chain (leaf first) and its PEM private key
    #[command(name = "certs:add")]
    CertsAdd {
        #[arg(value_name = "CERT_FILE")]
        cert_file: PathBuf,
        #[arg(value_name = "KEY_FILE")]
        key_file: PathBuf,
    },
    /// Remove an SSL certificate
    #[command(name = "certs:remove")]
    CertsRemove {
        /// The certificate's id, as `ouro certs` lists it
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Automatic certificates: whether they are on, and each custom domain's status
    #[command(name = "certs:auto")]
    CertsAuto,
    /// Turn on automatic certificates (ACME, Let's Encrypt by default) for the app's custom domains
    #[command(name = "certs:auto:enable")]
    CertsAutoEnable,
    /// Turn off automatic certificates; the app's automatic certificates are removed
    #[command(name = "certs:auto:disable")]
    CertsAutoDisable {
        /// The app's name, to confirm
        #[arg(long, value_name = "APP")]
        confirm: Option<String>,
    },
    /// Get new automatic certificates now
    #[command(name = "certs:auto:refresh")]
    CertsAutoRefresh,
    /// Add or update the `ouro` git remote, and let `git push` use your login
    #[command(name = "git:remote")]
    GitRemote,
    /// git credential helper (used by the remote that `git:remote` sets up)
    #[command(name = "git:credentials", hide = true)]
    GitCredentials {
        /// `get`, `store` or `erase`
        #[arg(value_name = "ACTION")]
        action: String,
    },
    /// List the app's add-ons
    #[command(name = "addons")]
    Addons,
    /// Create an add-on: a plan like `postgresql` or `postgresql:standard`
    #[command(name = "addons:create")]
    AddonsCreate {
        #[arg(value_name = "PLAN")]
        plan: String,
        /// Attachment name (config var prefix), e.g. DATABASE
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
    },
    /// Show an add-on
    #[command(name = "addons:info")]
    AddonsInfo {
        #[arg(value_name = "ADDON")]
        name: String,
    },
    /// Wait until an add-on (default: every add-on of the app) is provisioned
    #[command(name = "addons:wait")]
    AddonsWait {
        #[arg(value_name = "ADDON")]
        addon: Option<String>,
        /// Give up after this many seconds
        #[arg(long, value_name = "SECONDS", default_value_t = 600)]
        timeout: u64,
    },
    /// Attach an existing add-on to the app
    #[command(name = "addons:attach")]
    AddonsAttach {
        #[arg(value_name = "ADDON")]
        addon: String,
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
    },
    /// Detach an add-on from the app, by attachment name (DATABASE)
    #[command(name = "addons:detach")]
    AddonsDetach {
        #[arg(value_name = "ATTACHMENT")]
        attachment: String,
    },
    /// Destroy an add-on and its data
    #[command(name = "addons:destroy")]
    AddonsDestroy {
        #[arg(value_name = "ADDON")]
        name: String,
        #[arg(long, value_name = "ADDON")]
        confirm: Option<String>,
    },
    /// Open psql on a PostgreSQL add-on, through a tunnel (default: DATABASE)
    #[command(name = "pg:psql")]
    PgPsql {
        /// Add-on or attachment name
        #[arg(value_name = "ADDON")]
        addon: Option<String>,
        /// Run this SQL and exit
        #[arg(short, long, value_name = "SQL")]
        command: Option<String>,
    },
    /// List a PostgreSQL add-on's backups, oldest first (default: DATABASE)
    #[command(name = "pg:backups")]
    PgBackups {
        #[arg(value_name = "ADDON")]
        addon: Option<String>,
    },
    /// Back up a PostgreSQL add-on's database now (default: DATABASE)
    #[command(name = "pg:backups:capture")]
    PgBackupsCapture {
        #[arg(value_name = "ADDON")]
        addon: Option<String>,
    },
    /// Replace a database's data with a backup's (default: the latest, into DATABASE)
    #[command(name = "pg:backups:restore")]
    PgBackupsRestore {
        /// The backup's name (`b001`) or id
        #[arg(value_name = "BACKUP")]
        backup: Option<String>,
        #[arg(value_name = "ADDON")]
        addon: Option<String>,
        /// Name of the app, to confirm that its data is overwritten
        #[arg(long, value_name = "APP")]
        confirm: Option<String>,
    },
    /// Give a database new credentials and its attached apps the new URL (default: DATABASE)
    #[command(name = "pg:credentials:rotate")]
    PgCredentialsRotate {
        #[arg(value_name = "ADDON")]
        addon: Option<String>,
        /// Name of the app, to confirm that connections with the old credentials are cut
        #[arg(long, value_name = "APP")]
        confirm: Option<String>,
    },
    /// Open redis-cli on a Redis add-on, through a tunnel (default: REDIS)
    #[command(name = "redis:cli")]
    RedisCli {
        /// Add-on or attachment name
        #[arg(value_name = "ADDON")]
        addon: Option<String>,
        /// Arguments for redis-cli, after `--` (a command to run: `-- GET key`)
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// List the app's buildpacks (none: the next push detects one)
    #[command(name = "buildpacks")]
    Buildpacks,
    /// Set the app's buildpack: a shipped one (`python`) or a classic buildpack's URL
    #[command(name = "buildpacks:set")]
    BuildpacksSet {
        #[arg(value_name = "BUILDPACK")]
        url: String,
        /// Position to replace, from 1 (needed when the app has several)
        #[arg(short, long)]
        index: Option<usize>,
    },
    /// Add a buildpack (last, or at --index): several run in order
    #[command(name = "buildpacks:add")]
    BuildpacksAdd {
        #[arg(value_name = "BUILDPACK")]
        url: String,
        /// Position to insert at, from 1
        #[arg(short, long)]
        index: Option<usize>,
    },
    /// Remove a buildpack, by URL or --index
    #[command(name = "buildpacks:remove")]
    BuildpacksRemove {
        #[arg(value_name = "BUILDPACK")]
        url: Option<String>,
        #[arg(short, long)]
        index: Option<usize>,
    },
    /// Remove every buildpack: the next push detects one
    #[command(name = "buildpacks:clear")]
    BuildpacksClear,
    /// List the app's builds, newest first
    #[command(name = "builds")]
    Builds,
    /// Show a build and its output (default: the newest)
    #[command(name = "builds:info")]
    BuildsInfo {
        #[arg(value_name = "ID")]
        id: Option<String>,
    },
}

/// How a command ends.
enum Done {
    /// Print this on stdout and exit 0.
    Print(String),
    /// Exit with the code of the client that the command ran (psql, redis-cli) or of the
    /// attached dyno (`run`).
    Exit(u8),
}

fn run(cli: Cli) -> Result<Done, CliError> {
    let ctx = Ctx::new(cli.app, cli.json);
    let printed = match cli.command {
        Command::Up { data_dir, platform, api_port, http_port, https_port, runner_port } => {
            up::up(&up::Settings { data_dir, platform, api_port, http_port, https_port, runner_port })
        }
        Command::Upgrades => up::upgrades(&ctx),
        Command::Stack => stack::show(&ctx),
        Command::Nodes => nodes::show(&ctx),
        Command::StackUpdate => stack::update(&ctx),
        Command::Chaos { duration, every, targets, confirm, data_dir, runner_port, concurrency } => {
            chaos::chaos(&ctx, &chaos::Args { duration, every, targets, confirm, data_dir, runner_port, concurrency })
        }
        Command::Login { api, token, interactive, invitation, ca_file, fingerprint } => {
            let way = match (interactive, invitation) {
                (_, Some(code)) => login::Way::Invitation(code),
                (true, None) => login::Way::Password,
                (false, None) => login::Way::Token(token),
            };
            login::login(&ctx, api, way, login::Trust { ca_file, fingerprint })
        }
        Command::Audit { num } => audit::list(&ctx, num),
        Command::Access => access::list(&ctx),
        Command::AccessAdd { email, permissions } => access::add(&ctx, &email, permissions.as_deref()),
        Command::AccessUpdate { email, permissions } => access::update(&ctx, &email, &permissions),
        Command::AccessRemove { email } => access::remove(&ctx, &email),
        Command::Users => users::list(&ctx),
        Command::UsersAdd { email, admin } => users::add(&ctx, &email, admin),
        Command::UsersRemove { email, confirm } => users::remove(&ctx, &email, confirm.as_deref()),
        Command::Logout => authorizations::logout(&ctx),
        Command::Authorizations => authorizations::list(&ctx),
        Command::AuthorizationsCreate { description, expires_in } => {
            authorizations::create(&ctx, description.as_deref(), expires_in)
        }
        Command::AuthorizationsInfo { id } => authorizations::info(&ctx, &id),
        Command::AuthorizationsRotate { id } => authorizations::rotate(&ctx, &id),
        Command::AuthorizationsRevoke { id } => authorizations::revoke(&ctx, &id),
        Command::Apps { team } => apps::list(&ctx, team.as_deref()),
        Command::AppsCreate { name, team } => apps::create(&ctx, name, team),
        Command::Teams => teams::list(&ctx),
        Command::TeamsCreate { name } => teams::create(&ctx, &name),
        Command::TeamsDestroy { name, confirm } => teams::destroy(&ctx, &name, confirm.as_deref()),
        Command::Members { team, role } => teams::members(&ctx, &team, role.as_deref()),
        Command::MembersAdd { email, team, role } | Command::MembersSet { email, team, role } => {
            teams::set(&ctx, &email, &team, &role)
        }
        Command::MembersRemove { email, team } => teams::remove(&ctx, &email, &team),
        Command::Open { path } => apps::open(&ctx, path),
        Command::AppsInfo => apps::info(&ctx),
        Command::AppsDestroy { confirm } => apps::destroy(&ctx, confirm),
        Command::Config => config::show(&ctx),
        Command::ConfigGet { key } => config::get(&ctx, &key),
        Command::ConfigSet { vars } => config::set(&ctx, &vars),
        Command::ConfigUnset { keys } => config::unset(&ctx, &keys),
        Command::Releases { num } => releases::list(&ctx, num),
        Command::ReleasesInfo { release } => releases::info(&ctx, release),
        Command::ReleasesRollback { release } => releases::rollback(&ctx, release),
        Command::Ps => ps::show(&ctx),
        Command::PsScale { changes } => ps::scale(&ctx, &changes),
        Command::PsRestart { target } => ps::restart(&ctx, target),
        Command::PsStop { dyno } => ps::stop(&ctx, &dyno),
        Command::Run { size, detached, ttl, env, command } => {
            let request = run::Request { size, ttl, env, command };
            if !detached {
                return run::attached(&ctx, &request).map(Done::Exit);
            }
            run::detached(&ctx, &request)
        }
        Command::RunDetached { size, command } => {
            run::detached(&ctx, &run::Request { size, ttl: None, env: Vec::new(), command })
        }
        Command::Logs { num, tail, dyno, source } => logs::logs(&ctx, &logs::LogsQuery { num, tail, dyno, source }),
        Command::Drains => logs::drains(&ctx),
        Command::DrainsAdd { url } => logs::add(&ctx, &url),
        Command::DrainsRemove { drain } => logs::remove(&ctx, &drain),
        Command::Deploy { dir } => deploy::deploy(&ctx, &dir),
        Command::Domains => domains::list(&ctx),
        Command::DomainsAdd { hostname } => domains::add(&ctx, &hostname),
        Command::DomainsRemove { hostname } => domains::remove(&ctx, &hostname),
        Command::Certs => certs::list(&ctx),
        Command::CertsAdd { cert_file, key_file } => certs::add(&ctx, &cert_file, &key_file),
        Command::CertsRemove { id } => certs::remove(&ctx, &id),
        Command::CertsAuto => certs::auto(&ctx),
        Command::CertsAutoEnable => certs::auto_enable(&ctx),
        Command::CertsAutoDisable { confirm } => certs::auto_disable(&ctx, confirm.as_deref()),
        Command::CertsAutoRefresh => certs::auto_refresh(&ctx),
        Command::GitRemote => git_remote::remote(&ctx),
        Command::GitCredentials { action } => git_remote::credentials(&action),
        Command::Addons => addons::list(&ctx),
        Command::AddonsCreate { plan, as_name } => addons::create(&ctx, &plan, as_name),
        Command::AddonsInfo { name } => addons::info(&ctx, &name),
        Command::AddonsWait { addon, timeout } => addons::wait(&ctx, addon.as_deref(), timeout),
        Command::AddonsAttach { addon, as_name } => addons::attach(&ctx, &addon, as_name),
        Command::AddonsDetach { attachment } => addons::detach(&ctx, &attachment),
        Command::AddonsDestroy { name, confirm } => addons::destroy(&ctx, &name, confirm.as_deref()),
        Command::PgPsql { addon, command } => {
            return pg::psql(&ctx, addon.as_deref(), command.as_deref()).map(Done::Exit);
        }
        Command::PgBackups { addon } => pg::backups(&ctx, addon.as_deref()),
        Command::PgBackupsCapture { addon } => pg::capture(&ctx, addon.as_deref()),
        Command::PgBackupsRestore { backup, addon, confirm } => {
            pg::restore(&ctx, backup.as_deref(), addon.as_deref(), confirm.as_deref())
        }
        Command::PgCredentialsRotate { addon, confirm } => {
            pg::rotate_credentials(&ctx, addon.as_deref(), confirm.as_deref())
        }
        Command::RedisCli { addon, args } => return tunnel::redis_cli(&ctx, addon.as_deref(), &args).map(Done::Exit),
        Command::Buildpacks => buildpacks::list(&ctx),
        Command::BuildpacksSet { url, index } => buildpacks::change(&ctx, buildpacks::Change::Set { url, index }),
        Command::BuildpacksAdd { url, index } => buildpacks::change(&ctx, buildpacks::Change::Add { url, index }),
        Command::BuildpacksRemove { url, index } => buildpacks::change(&ctx, buildpacks::Change::Remove { url, index }),
        Command::BuildpacksClear => buildpacks::change(&ctx, buildpacks::Change::Clear),
        Command::Builds => builds::list(&ctx),
        Command::BuildsInfo { id } => builds::info(&ctx, id),
    };
    printed.map(Done::Print)
}

/// Errors are one line, whatever the API put in its message.
fn one_line(text: &str) -> String {
    text.trim().replace(['\r', '\n'], " ")
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(Done::Exit(code)) => ExitCode::from(code),
        Ok(Done::Print(text)) => {
            let mut stdout = io::stdout().lock();
            // A closed pipe (`ouro apps | head -1`) is not a failure worth reporting.
            let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ouro: {}", one_line(&error.to_string()));
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn topics_parse() {
        let cli = Cli::try_parse_from(["ouro", "config:set", "A=1", "B=2", "-a", "demo", "--json"]).unwrap();
        assert_eq!(cli.app.as_deref(), Some("demo"));
        assert!(cli.json);
        assert!(matches!(cli.command, Command::ConfigSet { vars } if vars == ["A=1", "B=2"]));
        let cli = Cli::try_parse_from(["ouro", "releases", "-n", "3"]).unwrap();
        assert!(matches!(cli.command, Command::Releases { num: 3 }));
        assert!(Cli::try_parse_from(["ouro", "config:set"]).is_err());
        let cli = Cli::try_parse_from(["ouro", "deploy"]).unwrap();
        assert!(matches!(cli.command, Command::Deploy { dir } if dir == Path::new(".")));
        let cli = Cli::try_parse_from(["ouro", "deploy", "site", "-a", "demo"]).unwrap();
        assert!(matches!(cli.command, Command::Deploy { dir } if dir == Path::new("site")));
        let cli = Cli::try_parse_from(["ouro", "ps:restart"]).unwrap();
        assert!(matches!(cli.command, Command::PsRestart { target: None }));
        let cli = Cli::try_parse_from(["ouro", "run:detached", "-a", "demo", "python3", "-c", "print(1)"]).unwrap();
        assert!(
            matches!(&cli.command, Command::RunDetached { command, size: None } if command == &["python3", "-c", "print(1)"])
        );
        assert_eq!(cli.app.as_deref(), Some("demo"));
        let cli = Cli::try_parse_from(["ouro", "ps:stop", "web.1"]).unwrap();
        assert!(matches!(cli.command, Command::PsStop { dyno } if dyno == "web.1"));
        assert!(Cli::try_parse_from(["ouro", "ps:stop"]).is_err());
        let cli = Cli::try_parse_from(["ouro", "open", "/admin"]).unwrap();
        assert!(matches!(cli.command, Command::Open { path: Some(p) } if p == "/admin"));
        let cli = Cli::try_parse_from(["ouro", "domains:add", "www.example.com"]).unwrap();
        assert!(matches!(cli.command, Command::DomainsAdd { hostname } if hostname == "www.example.com"));
        assert!(Cli::try_parse_from(["ouro", "domains:remove"]).is_err());
        let cli = Cli::try_parse_from(["ouro", "certs:add", "cert.pem", "key.pem"]).unwrap();
        assert!(
            matches!(cli.command, Command::CertsAdd { cert_file, key_file } if cert_file == Path::new("cert.pem") && key_file == Path::new("key.pem"))
        );
        assert!(Cli::try_parse_from(["ouro", "certs:add", "cert.pem"]).is_err());
        assert!(matches!(Cli::try_parse_from(["ouro", "certs"]).unwrap().command, Command::Certs));
        assert!(matches!(
            Cli::try_parse_from(["ouro", "git:remote", "-a", "demo"]).unwrap().command,
            Command::GitRemote
        ));
        let cli = Cli::try_parse_from(["ouro", "git:credentials", "get"]).unwrap();
        assert!(matches!(cli.command, Command::GitCredentials { action } if action == "get"));
        assert!(matches!(Cli::try_parse_from(["ouro", "builds"]).unwrap().command, Command::Builds));
        let cli = Cli::try_parse_from(["ouro", "builds:info", "b1"]).unwrap();
        assert!(matches!(cli.command, Command::BuildsInfo { id: Some(id) } if id == "b1"));
        assert!(Cli::try_parse_from(["ouro", "nope"]).is_err());
    }

    #[test]
    fn addon_topics_parse() {
        let cli = Cli::try_parse_from(["ouro", "addons:wait", "-a", "demo"]).unwrap();
        assert!(matches!(cli.command, Command::AddonsWait { addon: None, timeout: 600 }));
        let cli = Cli::try_parse_from(["ouro", "addons:wait", "DATABASE", "--timeout", "5"]).unwrap();
        assert!(matches!(cli.command, Command::AddonsWait { addon: Some(a), timeout: 5 } if a == "DATABASE"));
        let cli = Cli::try_parse_from(["ouro", "pg:psql", "-a", "demo", "-c", "select 1"]).unwrap();
        assert!(matches!(cli.command, Command::PgPsql { addon: None, command: Some(c) } if c == "select 1"));
        let cli = Cli::try_parse_from(["ouro", "pg:psql", "HEROKU_POSTGRESQL_BLUE", "--command", "\\dt"]).unwrap();
        assert!(
            matches!(cli.command, Command::PgPsql { addon: Some(a), command: Some(_) } if a == "HEROKU_POSTGRESQL_BLUE")
        );
        let cli = Cli::try_parse_from(["ouro", "redis:cli", "-a", "demo", "--", "SET", "k", "-v"]).unwrap();
        assert!(matches!(&cli.command, Command::RedisCli { addon: None, args } if args == &["SET", "k", "-v"]));
        assert_eq!(cli.app.as_deref(), Some("demo"));
        let cli = Cli::try_parse_from(["ouro", "redis:cli", "CACHE"]).unwrap();
        assert!(matches!(&cli.command, Command::RedisCli { addon: Some(a), args } if a == "CACHE" && args.is_empty()));
        assert!(Cli::try_parse_from(["ouro", "redis:cli", "CACHE", "GET"]).is_err());
        let cli = Cli::try_parse_from(["ouro", "pg:backups:restore", "b002", "--confirm", "demo"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::PgBackupsRestore { backup: Some(b), addon: None, confirm: Some(c) } if b == "b002" && c == "demo"
        ));
        let cli = Cli::try_parse_from(["ouro", "pg:backups:restore", "b1", "PG2"]).unwrap();
        assert!(matches!(cli.command, Command::PgBackupsRestore { addon: Some(a), confirm: None, .. } if a == "PG2"));
        let cli = Cli::try_parse_from(["ouro", "pg:credentials:rotate", "--confirm", "demo", "-a", "demo"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::PgCredentialsRotate { addon: None, confirm: Some(c) } if c == "demo"
        ));
        let cli = Cli::try_parse_from(["ouro", "pg:backups:capture"]).unwrap();
        assert!(matches!(cli.command, Command::PgBackupsCapture { addon: None }));
        assert!(matches!(Cli::try_parse_from(["ouro", "pg:backups"]).unwrap().command, Command::PgBackups { .. }));
    }

    #[test]
    fn run_forms_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["ouro"], args].concat());
        let run = |args: &[&str]| match parse(args).unwrap().command {
            Command::Run { size, detached, ttl, env, command } => (size, detached, ttl, env, command),
            _ => panic!("not run: {args:?}"),
        };
        let (size, detached, ttl, env, command) = run(&["run", "-a", "demo", "--", "python3", "-c", "print(1)"]);
        assert_eq!((size, detached, ttl, env.len()), (None, false, None, 0));
        assert_eq!(command, ["python3", "-c", "print(1)"]);
        // Without `--`, options after the command's first word are the command's (`-a` too).
        let (_, detached, _, _, command) = run(&["run", "ls", "-la", "-a", "--detached"]);
        assert!(!detached);
        assert_eq!(command, ["ls", "-la", "-a", "--detached"]);
        let (size, detached, ttl, env, command) = run(&[
            "run",
            "-s",
            "standard-2x",
            "-d",
            "--ttl",
            "60",
            "-e",
            "A=1",
            "--env",
            "B=-x",
            "--",
            "-weird",
            "--x",
        ]);
        assert_eq!((size.as_deref(), detached, ttl), (Some("standard-2x"), true, Some(60)));
        assert_eq!(env, ["A=1", "B=-x"]);
        assert_eq!(command, ["-weird", "--x"]);
        let (_, detached, _, _, command) = run(&["run", "--detached", "sh", "-c", "exit 3"]);
        assert!(detached);
        assert_eq!(command, ["sh", "-c", "exit 3"]);
        let cli = parse(&["run", "--", "bash", "-a", "x"]).unwrap();
        assert_eq!(cli.app, None);
        assert!(parse(&["run"]).is_err());
        assert!(parse(&["run", "--"]).is_err());
        assert!(parse(&["run", "--ttl", "soon", "ls"]).is_err());
        assert!(parse(&["run", "-e"]).is_err());
        // The older name stays, hidden.
        let cli = parse(&["run:detached", "-s", "basic", "--", "rake", "-T"]).unwrap();
        assert!(
            matches!(&cli.command, Command::RunDetached { size: Some(s), command } if s == "basic" && command == &["rake", "-T"])
        );
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("run ") && !help.contains("run:detached"), "{help}");
    }

    #[test]
    fn errors_fit_on_one_line() {
        assert_eq!(one_line("bad\nthing  here\n"), "bad thing  here");
    }
}
