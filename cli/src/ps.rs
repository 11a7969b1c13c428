//! `ps`, `ps:scale`, `ps:restart` and `ps:stop`: the formation (how many dynos of each
//! process type, and how big) and the dynos running it.

use std::time::SystemTime;

use serde_json::json;

use ouro_types::{
    DYNO_SIZES, Dyno, DynoState, Formation, FormationBatch, FormationUpdate, dyno_size, valid_process_type,
};

use crate::client::{Client, app_path, decode, segment};
use crate::context::{Ctx, Output, pretty};
use crate::error::CliError;
use crate::table::{columns, heading, when};

pub fn show(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let client = ctx.client()?;
    let formation = client.get(&app_path(&app, "/formation"))?;
    let dynos = client.get(&app_path(&app, "/dynos"))?;
    if ctx.json {
        return Ok(pretty(&json!({ "formation": formation, "dynos": dynos })));
    }
    let formation: Vec<Formation> = decode(formation)?;
    let dynos: Vec<Dyno> = decode(dynos)?;
    Ok(render_formation(&formation) + &render_dynos(&dynos, SystemTime::now()) + &render_agreement(&formation, &dynos))
}

/// One line saying whether the live dynos match the formation, as `ouro ps` should show the
/// delta between desired and live state.
fn render_agreement(formation: &[Formation], dynos: &[Dyno]) -> String {
    let behind: Vec<String> = formation
        .iter()
        .filter_map(|f| {
            let up =
                dynos.iter().filter(|d| d.process_type == f.process_type && d.state == DynoState::Up).count() as i64;
            (up != f.quantity).then(|| format!("{} {up}/{} up", f.process_type, f.quantity))
        })
        .collect();
    if behind.is_empty() {
        "Desired and live agree.\n".to_string()
    } else {
        format!("Converging: {}.\n", behind.join(", "))
    }
}

fn render_formation(formation: &[Formation]) -> String {
    if formation.is_empty() {
        return heading("Formation") + "No process types yet.\n";
    }
    let rows: Vec<Vec<String>> = formation
        .iter()
        .map(|f| {
            let command = f.command.clone().unwrap_or_else(|| "(no release yet)".to_string());
            vec![f.process_type.clone(), f.quantity.to_string(), f.size.clone(), command]
        })
        .collect();
    heading("Formation") + &columns(&rows)
}

fn render_dynos(dynos: &[Dyno], now: SystemTime) -> String {
    if dynos.is_empty() {
        return heading("Dynos") + "No dynos running yet.\n";
    }
    let lines: String = dynos
        .iter()
        .map(|d| {
            let on = d.node.as_ref().map(|node| format!(" on {node}")).unwrap_or_default();
            let mut line =
                format!("{}: {} (release v{}){on} since {}", d.name, d.state, d.release, when(&d.created_at, now));
            // Why it stopped: a crash, or a one-off (or a stopped dyno) ending on its own.
            match (&d.reason, d.state) {
                (Some(reason), DynoState::Crashed) => line += &format!(", last crash: {reason}"),
                (Some(reason), _) => line += &format!(", {reason}"),
                (None, _) => {}
            }
            if d.restarts > 0 {
                line += &format!(", {} restarts", d.restarts);
            }
            line + "\n"
        })
        .collect();
    heading("Dynos") + &lines
}

/// What `ps:restart` and `ps:stop` act on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// Every dyno of a process type: `web`.
    Type(String),
    /// One dyno: `web.1`.
    Dyno(String),
}

/// Restarts every dyno of the app, those of one process type, or one dyno.
pub fn restart(ctx: &Ctx, target: Option<String>) -> Output {
    let target = target.as_deref().map(parse_target).transpose()?;
    let app = ctx.app()?;
    let path = match &target {
        None => app_path(&app, "/dynos"),
        Some(Target::Type(name) | Target::Dyno(name)) => app_path(&app, &format!("/dynos/{}", segment(name))),
    };
    let raw = ctx.client()?.delete(&path)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let what = match &target {
        None => "dynos".to_string(),
        Some(Target::Type(name)) => format!("{name} dynos"),
        Some(Target::Dyno(name)) => format!("{name} dyno"),
    };
    Ok(format!("Restarting {what} on {app}... done\n"))
}

/// Stops one dyno; one that the formation wants is started again by the platform.
pub fn stop(ctx: &Ctx, dyno: &str) -> Output {
    let dyno = match parse_target(dyno)? {
        Target::Dyno(name) => name,
        Target::Type(_) => {
            return Err(CliError::usage(format!("`{dyno}` is not a dyno name: use TYPE.N, such as web.1")));
        }
    };
    let app = ctx.app()?;
    let raw = ctx.client()?.post(&app_path(&app, &format!("/dynos/{}/actions/stop", segment(&dyno))), &json!({}))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Stopping {dyno} dyno on {app}... done\n"))
}

/// `type` or `type.N` with N ≥ 1 (no leading zeros, as the platform names dynos).
fn parse_target(arg: &str) -> Result<Target, CliError> {
    let bad = || CliError::usage(format!("`{arg}` is neither a process type nor a dyno name such as web or web.1"));
    match arg.split_once('.') {
        None => plain_type(arg).map(Target::Type).ok_or_else(bad),
        Some((process_type, number)) => {
            let numbered = valid_process_type(process_type)
                && !number.starts_with('0')
                && parse_count(number).is_some_and(|n| n >= 1);
            if numbered { Ok(Target::Dyno(arg.to_string())) } else { Err(bad()) }
        }
    }
}

/// One `ps:scale` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scale {
    process_type: String,
    quantity: Option<Quantity>,
    size: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantity {
    /// `type=N`
    Set(i64),
    /// `type+N` or `type-N`: relative to the current quantity.
    Change(i64),
}

pub fn scale(ctx: &Ctx, args: &[String]) -> Output {
    let scales = parse_scales(args)?;
    let app = ctx.app()?;
    let client = ctx.client()?;
    let current = current_formation(&client, &app, &scales)?;
    let batch = FormationBatch { updates: scales.iter().map(|s| update(s, &current)).collect() };
    let raw = client.patch(&app_path(&app, "/formation"), &batch)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let changed: Vec<Formation> = decode(raw)?;
    let order: Vec<&str> = scales.iter().map(|s| s.process_type.as_str()).collect();
    Ok(render_scaled(&order, &changed))
}

/// The formation as it is now, fetched only when some argument is relative.
fn current_formation(client: &Client, app: &str, scales: &[Scale]) -> Result<Vec<Formation>, CliError> {
    if !scales.iter().any(|s| matches!(s.quantity, Some(Quantity::Change(_)))) {
        return Ok(Vec::new());
    }
    decode(client.get(&app_path(app, "/formation"))?)
}

/// The absolute update for one argument; a type missing from `current` counts as 0 dynos,
/// and scaling down never goes below 0.
fn update(scale: &Scale, current: &[Formation]) -> FormationUpdate {
    let quantity = scale.quantity.map(|q| match q {
        Quantity::Set(n) => n,
        Quantity::Change(delta) => {
            let now = current.iter().find(|f| f.process_type == scale.process_type).map_or(0, |f| f.quantity);
            (now + delta).max(0)
        }
    });
    FormationUpdate { process_type: scale.process_type.clone(), quantity, size: scale.size.clone() }
}

fn render_scaled(order: &[&str], changed: &[Formation]) -> String {
    let parts: Vec<String> = order
        .iter()
        .filter_map(|t| changed.iter().find(|f| f.process_type == *t))
        .map(|f| format!("{} at {}:{}", f.process_type, f.quantity, f.size))
        .collect();
    format!("Scaling dynos... done, now running {}\n", parts.join(", "))
}

/// Parses every argument before anything is sent; a type may appear only once.
fn parse_scales(args: &[String]) -> Result<Vec<Scale>, CliError> {
    let mut scales: Vec<Scale> = Vec::with_capacity(args.len());
    for arg in args {
        let scale = parse_scale(arg)?;
        if scales.iter().any(|s| s.process_type == scale.process_type) {
            return Err(CliError::usage(format!("process type {} given twice", scale.process_type)));
        }
        scales.push(scale);
    }
    Ok(scales)
}

/// `type=N`, `type+N`, `type-N`, `type=N:size` or `type:size`. Types may contain `-`, so
/// `type-N` splits at the last `-`, and only `=N` combines with a size.
fn parse_scale(arg: &str) -> Result<Scale, CliError> {
    let bad = || CliError::usage(format!("`{arg}` is not TYPE=N, TYPE+N, TYPE-N, TYPE=N:SIZE or TYPE:SIZE"));
    let (head, size) = match arg.split_once(':') {
        Some((head, size)) => (head, Some(parse_size(size)?)),
        None => (arg, None),
    };
    let (process_type, quantity) = if let Some((t, n)) = head.split_once('=') {
        (t, Quantity::Set(parse_count(n).ok_or_else(bad)?))
    } else if size.is_some() {
        return plain_type(head).map(|process_type| Scale { process_type, quantity: None, size }).ok_or_else(bad);
    } else if let Some((t, n)) = head.split_once('+') {
        (t, Quantity::Change(parse_count(n).ok_or_else(bad)?))
    } else if let Some((t, n)) = head.rsplit_once('-') {
        (t, Quantity::Change(-parse_count(n).ok_or_else(bad)?))
    } else {
        return Err(bad());
    };
    let process_type = plain_type(process_type).ok_or_else(bad)?;
    Ok(Scale { process_type, quantity: Some(quantity), size })
}

fn plain_type(text: &str) -> Option<String> {
    valid_process_type(text).then(|| text.to_string())
}

/// A dyno count: digits only, so `+1`, `-1` and `1.5` are refused.
fn parse_count(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().map(i64::from)
}

/// A known size, by its canonical (lower-case) name.
fn parse_size(text: &str) -> Result<String, CliError> {
    dyno_size(text).map(|s| s.name.to_string()).ok_or_else(|| {
        let known: Vec<&str> = DYNO_SIZES.iter().map(|s| s.name).collect();
        CliError::usage(format!("unknown dyno size `{text}`: use one of {}", known.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(process_type: &str, quantity: Option<Quantity>, size: Option<&str>) -> Scale {
        Scale { process_type: process_type.into(), quantity, size: size.map(str::to_string) }
    }

    #[test]
    fn scale_args() {
        use Quantity::{Change, Set};
        let ok = [
            ("web=2", scale("web", Some(Set(2)), None)),
            ("web=0", scale("web", Some(Set(0)), None)),
            ("web+3", scale("web", Some(Change(3)), None)),
            ("web-1", scale("web", Some(Change(-1)), None)),
            ("worker-2-1", scale("worker-2", Some(Change(-1)), None)),
            ("web=2:standard-2x", scale("web", Some(Set(2)), Some("standard-2x"))),
            ("web=1:Standard-2X", scale("web", Some(Set(1)), Some("standard-2x"))),
            ("web:performance", scale("web", None, Some("performance"))),
            ("my-worker:basic", scale("my-worker", None, Some("basic"))),
            ("clock_1=1", scale("clock_1", Some(Set(1)), None)),
        ];
        for (arg, expect) in ok {
            assert_eq!(parse_scale(arg).unwrap(), expect, "{arg}");
        }
        let bad = [
            "web",
            "web=",
            "web=x",
            "web=-1",
            "web=+1",
            "web=1.5",
            "web+",
            "web+x",
            "web-",
            "my-worker",
            "=2",
            "Web=1",
            "web=1:huge",
            "web:",
            "web+1:basic",
            "web=1:basic:basic",
            "",
            "web=99999999999",
        ];
        for arg in bad {
            let error = parse_scale(arg).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{arg}");
            assert!(!error.to_string().contains('\n'), "{arg}");
        }
    }

    #[test]
    fn restart_and_stop_targets() {
        let ok = [
            ("web", Target::Type("web".into())),
            ("my-worker_2", Target::Type("my-worker_2".into())),
            ("web.1", Target::Dyno("web.1".into())),
            ("worker-2.10", Target::Dyno("worker-2.10".into())),
        ];
        for (arg, expect) in ok {
            assert_eq!(parse_target(arg).unwrap(), expect, "{arg}");
        }
        for arg in
            ["", "Web", "web.", "web.0", "web.01", "web.-1", "web.1.2", "web.x", ".1", "web 1", "web.99999999999"]
        {
            let error = parse_target(arg).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{arg}");
        }
    }

    #[test]
    fn repeated_types_are_refused() {
        let args = ["web=1".to_string(), "worker=1".to_string(), "web+1".to_string()];
        assert!(parse_scales(&args).is_err());
        assert_eq!(parse_scales(&args[..2]).unwrap().len(), 2);
    }

    fn formation(process_type: &str, quantity: i64, size: &str, command: Option<&str>) -> Formation {
        Formation {
            id: format!("f-{process_type}"),
            process_type: process_type.into(),
            quantity,
            size: size.into(),
            command: command.map(str::to_string),
            updated_at: "2026-11-26T00:25:55Z".into(),
        }
    }

    #[test]
    fn relative_updates() {
        use Quantity::{Change, Set};
        let current = [formation("web", 2, "basic", None)];
        let cases = [
            (scale("web", Some(Change(3)), None), Some(5)),
            (scale("web", Some(Change(-5)), None), Some(0)),
            (scale("worker", Some(Change(2)), None), Some(2)),
            (scale("web", Some(Set(1)), None), Some(1)),
            (scale("web", None, Some("basic")), None),
        ];
        for (arg, expect) in cases {
            let update = update(&arg, &current);
            assert_eq!(update.quantity, expect, "{arg:?}");
            assert_eq!(update.size, arg.size);
            assert_eq!(update.process_type, arg.process_type);
        }
    }

    #[test]
    fn scaled_summary_follows_argument_order() {
        let changed = [formation("web", 2, "basic", None), formation("worker", 1, "standard-1x", None)];
        assert_eq!(
            render_scaled(&["worker", "web"], &changed),
            "Scaling dynos... done, now running worker at 1:standard-1x, web at 2:basic\n"
        );
    }

    #[test]
    fn agreement_between_formation_and_dynos() {
        let formation = [formation("web", 2, "basic", Some("serve")), formation("worker", 0, "basic", Some("work"))];
        let dyno = |name: &str, state: &str| Dyno {
            id: name.into(),
            app: "demo".into(),
            name: name.into(),
            process_type: name.split('.').next().unwrap().into(),
            state: state.parse().unwrap(),
            size: "basic".into(),
            release: 2,
            reason: None,
            restarts: 0,
            created_at: "2026-11-26T03:25:00Z".into(),
            node: None,
        };
        assert_eq!(
            render_agreement(&formation, &[dyno("web.1", "up"), dyno("web.2", "up")]),
            "Desired and live agree.\n"
        );
        assert_eq!(
            render_agreement(&formation, &[dyno("web.1", "up"), dyno("web.2", "starting")]),
            "Converging: web 1/2 up.\n"
        );
    }

    #[test]
    fn formation_and_dynos() {
        let rows =
            [formation("web", 1, "basic", Some("bundle exec puma")), formation("worker", 0, "standard-2x", None)];
        let expect =
            "=== Formation\nweb     1  basic        bundle exec puma\nworker  0  standard-2x  (no release yet)\n";
        assert_eq!(render_formation(&rows), expect);
        assert_eq!(render_formation(&[]), "=== Formation\nNo process types yet.\n");
        let now = humantime::parse_rfc3339("2026-11-26T03:30:00Z").unwrap();
        assert_eq!(render_dynos(&[], now), "=== Dynos\nNo dynos running yet.\n");
        let dyno = Dyno {
            id: "d".into(),
            app: "demo".into(),
            reason: None,
            restarts: 0,
            name: "web.1".into(),
            process_type: "web".into(),
            state: DynoState::Up,
            size: "basic".into(),
            release: 3,
            created_at: "2026-11-26T03:25:00Z".into(),
            node: None,
        };
        assert_eq!(
            render_dynos(std::slice::from_ref(&dyno), now),
            "=== Dynos\nweb.1: up (release v3) since 2026-11-26T03:25:00Z (5m ago)\n"
        );
        let crashed =
            Dyno { state: DynoState::Crashed, reason: Some("process exited with status 3".into()), ..dyno.clone() };
        assert!(render_dynos(&[crashed], now).ends_with(", last crash: process exited with status 3\n"));
        let done = Dyno { state: DynoState::Down, reason: Some("process exited with status 0".into()), ..dyno };
        assert!(
            render_dynos(&[done], now)
                .ends_with("down (release v3) since 2026-11-26T03:25:00Z (5m ago), process exited with status 0\n")
        );
    }
}
