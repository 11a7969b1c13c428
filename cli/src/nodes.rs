//! `ouro nodes` (admins): the nodes of the swarm the platform runs on, in Swarm's words (as
//! `docker node ls`), with the dynos on each.

use ouro_types::ClusterNode;

use crate::context::{Ctx, Output, pretty};
use crate::table::{columns, heading};

pub fn show(ctx: &Ctx) -> Output {
    let raw = ctx.client()?.get("/nodes")?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let nodes: Vec<ClusterNode> = serde_json::from_value(raw).unwrap_or_default();
    Ok(render(&nodes))
}

fn render(nodes: &[ClusterNode]) -> String {
    if nodes.is_empty() {
        return "This platform runs on one Docker Engine, not a swarm: it has no nodes to list.\n".to_string();
    }
    let mut rows = vec![["name", "address", "state", "role", "availability", "dynos"].map(String::from).to_vec()];
    rows.extend(nodes.iter().map(|n| {
        vec![
            n.name.clone(),
            n.addr.clone(),
            n.state.clone(),
            n.role.clone(),
            n.availability.clone(),
            n.dynos.to_string(),
        ]
    }));
    heading("Nodes") + &columns(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_show_as_a_table_and_one_engine_says_so() {
        let node = |name: &str, state: &str, role: &str, dynos: u32| ClusterNode {
            name: name.into(),
            addr: format!("10.0.0.{}", dynos + 1),
            state: state.into(),
            role: role.into(),
            availability: "active".into(),
            dynos,
        };
        let shown = render(&[node("node1", "ready", "manager", 2), node("node3", "down", "worker", 0)]);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0], "=== Nodes");
        assert!(lines[1].starts_with("name") && lines[1].contains("availability"), "{shown}");
        let words: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(words, ["node3", "10.0.0.1", "down", "worker", "active", "0"], "{shown}");
        assert!(render(&[]).contains("one Docker Engine"));
    }
}
