//! The human form of `status`: one row per node (`-` for what is not
//! known), each node's problem below the table, then the MicroCloud
//! members as the initiator lists them.

use super::NodeStatus;

const HEADERS: [&str; 7] = [
    "NODE",
    "ADDRESS",
    "REACHABLE",
    "STATE",
    "ATTEMPT",
    "CLOUD-INIT",
    "REASON",
];

fn cells(s: &NodeStatus) -> [String; 7] {
    let dash = || "-".to_owned();
    [
        s.node.clone(),
        s.address.clone(),
        match s.reachable {
            Some(true) => "yes".to_owned(),
            Some(false) => "no".to_owned(),
            None => format!("({})", via_word(s)),
        },
        s.state.clone().unwrap_or_else(dash),
        s.attempt.map_or_else(dash, |a| a.to_string()),
        s.cloud_init.clone().unwrap_or_else(dash),
        s.reason.clone().unwrap_or_else(dash),
    ]
}

fn via_word(s: &NodeStatus) -> &'static str {
    match s.via {
        super::Via::Ssh => "?",
        super::Via::Serve => "serve",
    }
}

/// Column widths for these rows (in characters).
pub fn widths(rows: &[NodeStatus]) -> [usize; 7] {
    let mut w = HEADERS.map(|h| h.chars().count());
    for r in rows {
        for (i, c) in cells(r).iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    w
}

fn line(cells: &[String; 7], widths: &[usize; 7], color: bool, state: Option<&str>) -> String {
    let mut out = String::new();
    for (i, c) in cells.iter().enumerate() {
        let last = i == cells.len() - 1;
        let pad = if last {
            String::new()
        } else {
            " ".repeat(widths[i].saturating_sub(c.chars().count()) + 2)
        };
        let painted = match (i, color, state) {
            (3, true, Some("done")) => format!("\x1b[32m{c}\x1b[0m"),
            (3, true, Some("failed")) => format!("\x1b[31m{c}\x1b[0m"),
            (3, true, Some("running")) => format!("\x1b[33m{c}\x1b[0m"),
            _ => c.clone(),
        };
        out.push_str(&painted);
        out.push_str(&pad);
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// The header line.
pub fn header(widths: &[usize; 7]) -> String {
    line(&HEADERS.map(str::to_owned), widths, false, None)
}

/// One node's row.
pub fn row(s: &NodeStatus, widths: &[usize; 7], color: bool) -> String {
    line(&cells(s), widths, color, s.state.as_deref())
}

/// The nodes' problems, one line each: `pi3: ssh: connect … timed out`.
pub fn problems(rows: &[NodeStatus]) -> String {
    rows.iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}\n", r.node)))
        .collect()
}

/// The members the initiator listed, as a small table; empty when no
/// initiator was asked.
pub fn cluster(rows: &[NodeStatus]) -> String {
    let Some(init) = rows.iter().find(|r| r.initiator) else {
        return String::new();
    };
    let Some(members) = &init.cluster else {
        let why = if init.reachable == Some(false) {
            "is unreachable"
        } else {
            "gave no member list"
        };
        return format!("cluster: not listed: the initiator {} {why}\n", init.node);
    };
    let mut out = format!("cluster (microcloud cluster list on {}):\n", init.node);
    if members.is_empty() {
        out.push_str("  no members\n");
        return out;
    }
    let head = ["NAME", "ADDRESS", "ROLE", "STATUS"];
    let mut w = head.map(str::len);
    for m in members {
        for (i, c) in [&m.name, &m.address, &m.role, &m.status].iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let fmt_row = |c: [&str; 4]| {
        let mut l = String::from("  ");
        for (i, cell) in c.iter().enumerate() {
            l.push_str(cell);
            if i < 3 {
                l.push_str(&" ".repeat(w[i].saturating_sub(cell.chars().count()) + 2));
            }
        }
        l.truncate(l.trim_end().len());
        l.push('\n');
        l
    };
    out.push_str(&fmt_row(head));
    for m in members {
        out.push_str(&fmt_row([&m.name, &m.address, &m.role, &m.status]));
    }
    out
}

/// The whole report: table, problems, cluster.
pub fn render(rows: &[NodeStatus], color: bool) -> String {
    let w = widths(rows);
    let mut out = header(&w);
    for r in rows {
        out.push_str(&row(r, &w, color));
    }
    let problems = problems(rows);
    if !problems.is_empty() {
        out.push('\n');
        out.push_str(&problems);
    }
    let cluster = cluster(rows);
    if !cluster.is_empty() {
        out.push('\n');
        out.push_str(&cluster);
    }
    out
}

/// For `--watch` on a non-terminal: the rows (and problems, and cluster
/// list) that differ from the previous round, or everything the first time.
pub fn changes(prev: Option<&[NodeStatus]>, rows: &[NodeStatus]) -> String {
    let Some(prev) = prev else {
        return render(rows, false);
    };
    let w = widths(rows);
    let mut out = String::new();
    for r in rows {
        let old = prev.iter().find(|p| p.node == r.node);
        if old != Some(r) {
            out.push_str(&row(r, &w, false));
            if let Some(e) = &r.error
                && old.and_then(|o| o.error.as_ref()) != Some(e)
            {
                out.push_str(&format!("{}: {e}\n", r.node));
            }
        }
    }
    let (before, now) = (cluster(prev), cluster(rows));
    if before != now {
        out.push_str(&now);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Member, Via};

    fn node(name: &str, state: Option<&str>) -> NodeStatus {
        NodeStatus {
            node: name.into(),
            address: "10.0.0.1".into(),
            via: Via::Ssh,
            reachable: Some(state.is_some()),
            state: state.map(Into::into),
            attempt: state.map(|_| 1),
            reason: None,
            updated: None,
            cloud_init: None,
            initiator: name == "pi1",
            cluster: (name == "pi1").then(|| {
                vec![Member {
                    name: "pi1".into(),
                    address: "10.0.0.1:9443".into(),
                    role: "voter".into(),
                    status: "ONLINE".into(),
                }]
            }),
            error: state.is_none().then(|| "ssh: timed out".into()),
        }
    }

    #[test]
    fn absent_values_are_dashes_and_problems_follow_the_table() {
        let text = render(&[node("pi1", Some("done")), node("pi3", None)], false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NODE  ADDRESS"), "{text}");
        assert!(
            lines[2].starts_with("pi3 ") && lines[2].contains(" no "),
            "{text}"
        );
        assert!(text.contains("\npi3: ssh: timed out\n"), "{text}");
        assert!(
            text.contains("cluster (microcloud cluster list on pi1):"),
            "{text}"
        );
        assert!(
            text.contains("  pi1   10.0.0.1:9443  voter  ONLINE"),
            "{text}"
        );
    }

    #[test]
    fn watch_prints_only_what_changed() {
        let first = [node("pi1", Some("running")), node("pi2", Some("running"))];
        let second = [node("pi1", Some("running")), node("pi2", Some("done"))];
        let text = changes(Some(&first), &second);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("pi2 ") && text.contains("done"), "{text}");
        assert_eq!(changes(Some(&second), &second), "");
    }
}
