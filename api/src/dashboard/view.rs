//! The formation as the dashboard shows it: per process type, the desired quantity and size
//! against the dynos the runner last reported, each dyno good (up on the current release) or
//! not, with why. Pure, so the page and the event stream render the same thing.

use ouro_types::{Dyno, DynoState};
use serde::Serialize;

use crate::formation::FormationRow;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FormationView {
    /// The app's current release version.
    pub release: i64,
    pub processes: Vec<ProcessView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ProcessView {
    #[serde(rename = "type")]
    pub process_type: String,
    pub quantity: i64,
    pub size: String,
    /// `web: 2 × standard-1x wanted, 1 up`
    pub summary: String,
    /// Every wanted dyno is up on the current release and no other runs.
    pub ok: bool,
    pub dynos: Vec<DynoView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DynoView {
    pub name: String,
    /// The runner's state, or `missing` when it reported no such dyno.
    pub state: String,
    pub release: Option<i64>,
    pub ok: bool,
    /// `up`, or why not: `crashed: process exited with status 3`, `starting`, `old release
    /// v2`, `missing`, `not wanted: scaled to 1`.
    pub reason: String,
}

/// Desired (`formation`, at `release`; `deployed` is false while the app has no slug, when
/// nothing can run) against `live`, the runner's last report for the app. One-off dynos
/// (`run.N`) are not part of the formation and are left out.
pub(crate) fn formation_view(release: i64, deployed: bool, formation: &[FormationRow], live: &[Dyno]) -> FormationView {
    let mut types: Vec<&str> = formation.iter().map(|f| f.process_type.as_str()).collect();
    for dyno in live {
        if dyno.process_type != "run" && !types.contains(&dyno.process_type.as_str()) {
            types.push(&dyno.process_type);
        }
    }
    types.sort_unstable();
    let processes = types
        .into_iter()
        .map(|process_type| {
            let row = formation.iter().find(|f| f.process_type == process_type);
            let quantity = row.map_or(0, |r| r.quantity);
            let size = row.map_or_else(String::new, |r| r.size.clone());
            let mine: Vec<&Dyno> = live.iter().filter(|d| d.process_type == process_type).collect();
            let mut dynos = Vec::new();
            for index in 1..=quantity.max(0) {
                let name = format!("{process_type}.{index}");
                dynos.push(match mine.iter().find(|d| d.name == name) {
                    Some(dyno) => dyno_view(dyno, release),
                    None => DynoView {
                        name,
                        state: "missing".into(),
                        release: None,
                        ok: false,
                        reason: if deployed { "missing".into() } else { "missing: nothing deployed yet".into() },
                    },
                });
            }
            let wanted = |d: &Dyno| index_of(&d.name).is_some_and(|i| (1..=quantity).contains(&i));
            for dyno in mine.iter().filter(|d| !wanted(d)) {
                dynos.push(DynoView {
                    ok: false,
                    reason: format!("not wanted: scaled to {quantity}"),
                    ..dyno_view(dyno, release)
                });
            }
            let up = dynos.iter().filter(|d| d.ok).count();
            let ok = dynos.iter().all(|d| d.ok);
            let summary = match size.as_str() {
                "" => format!("{process_type}: not in the formation, {up} up"),
                size => format!("{process_type}: {quantity} × {size} wanted, {up} up"),
            };
            ProcessView { process_type: process_type.to_string(), quantity, size, summary, ok, dynos }
        })
        .collect();
    FormationView { release, processes }
}

fn dyno_view(dyno: &Dyno, release: i64) -> DynoView {
    let reason = match dyno.state {
        DynoState::Up if dyno.release == release => "up".to_string(),
        DynoState::Up => format!("old release v{}", dyno.release),
        DynoState::Crashed => format!("crashed: {}", dyno.reason.as_deref().unwrap_or("no reason known")),
        state => match &dyno.reason {
            Some(reason) => format!("{state}: {reason}"),
            None => state.to_string(),
        },
    };
    DynoView {
        name: dyno.name.clone(),
        state: dyno.state.to_string(),
        release: Some(dyno.release),
        ok: reason == "up",
        reason,
    }
}

/// `web.2` → 2.
fn index_of(name: &str) -> Option<i64> {
    name.rsplit_once('.')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(process_type: &str, quantity: i64) -> FormationRow {
        FormationRow {
            id: String::new(),
            process_type: process_type.into(),
            quantity,
            size: "standard-1x".into(),
            updated_at: String::new(),
        }
    }

    fn dyno(name: &str, state: &str, release: i64, reason: Option<&str>) -> Dyno {
        Dyno {
            id: String::new(),
            app: "shop".into(),
            name: name.into(),
            process_type: name.split('.').next().unwrap().into(),
            state: state.parse().unwrap(),
            size: "standard-1x".into(),
            release,
            reason: reason.map(String::from),
            restarts: 0,
            created_at: String::new(),
            node: None,
        }
    }

    /// (name, ok, reason) of every dyno of the view, in order.
    fn check(view: &FormationView, expect: &[(&str, bool, &str)]) {
        let got: Vec<(&str, bool, &str)> = view
            .processes
            .iter()
            .flat_map(|p| p.dynos.iter().map(|d| (d.name.as_str(), d.ok, d.reason.as_str())))
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn each_dyno_is_good_or_says_why_not() {
        let formation = [row("web", 3), row("worker", 1)];
        let live = [
            dyno("web.1", "up", 4, None),
            dyno("web.2", "up", 3, None),
            dyno("worker.1", "crashed", 4, Some("process exited with status 3")),
            dyno("web.3", "starting", 4, None),
            dyno("clock.1", "up", 4, None),
            dyno("run.1", "up", 4, None),
        ];
        let view = formation_view(4, true, &formation, &live);
        check(
            &view,
            &[
                ("clock.1", false, "not wanted: scaled to 0"),
                ("web.1", true, "up"),
                ("web.2", false, "old release v3"),
                ("web.3", false, "starting"),
                ("worker.1", false, "crashed: process exited with status 3"),
            ],
        );
        let summaries: Vec<(&str, bool)> = view.processes.iter().map(|p| (p.summary.as_str(), p.ok)).collect();
        assert_eq!(
            summaries,
            [
                ("clock: not in the formation, 0 up", false),
                ("web: 3 × standard-1x wanted, 1 up", false),
                ("worker: 1 × standard-1x wanted, 0 up", false),
            ]
        );
    }

    #[test]
    fn missing_and_extra_dynos_are_named() {
        let live = [dyno("web.1", "up", 2, None), dyno("web.3", "down", 2, Some("stopping"))];
        check(
            &formation_view(2, true, &[row("web", 2)], &live),
            &[("web.1", true, "up"), ("web.2", false, "missing"), ("web.3", false, "not wanted: scaled to 2")],
        );
        check(&formation_view(1, false, &[row("web", 1)], &[]), &[("web.1", false, "missing: nothing deployed yet")]);
        let all_up = formation_view(2, true, &[row("web", 1)], &live[..1]);
        assert!(all_up.processes[0].ok);
        assert!(formation_view(2, true, &[row("web", 0)], &[]).processes[0].ok, "nothing wanted, nothing runs");
    }
}
