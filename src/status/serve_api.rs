//! Reading the first-boot states from a running `serve` (its
//! `GET /api/nodes`, src/netboot/http/api.rs) instead of logging in to
//! each node. The server knows what the nodes reported: the state, the
//! detail (the status file's `reason`) and when; not cloud-init's state
//! nor the cluster members, and not whether a node answers now.

use std::time::Duration;

use serde::Deserialize;

use crate::profile::status_url::StatusUrl;
use crate::source::http::{Http, HttpOptions, parse_url};

/// The largest `/api/nodes` answer read (64 reports of 512 characters per
/// node leave room for hundreds of nodes).
pub const MAX_ANSWER: u64 = 8 << 20;

/// One node in `/api/nodes` (the fields `status` uses; others ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiNode {
    pub name: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub reports: Vec<ApiReport>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiReport {
    pub state: String,
    #[serde(default)]
    pub detail: Option<String>,
    /// Seconds since the Unix epoch when the server received it.
    pub at: u64,
}

/// `GET URL/api/nodes`, once (no retries: a server that does not answer
/// within `timeout` is not running).
pub fn fetch(url: &StatusUrl, timeout: Duration) -> Result<Vec<ApiNode>, String> {
    let http = Http::new(HttpOptions {
        connect_timeout: timeout,
        read_timeout: timeout,
        retries: 0,
        retry_delay: Duration::from_secs(1),
        mirror: None,
    })
    .map_err(|e| e.to_string())?;
    let api = parse_url(&format!("{url}/api/nodes")).map_err(|e| e.to_string())?;
    let (_, body) = http
        .get_small(&api, MAX_ANSWER)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&body)
        .map_err(|e| format!("GET {api}: the answer is not serve's list of nodes: {e}"))
}

/// What the reports say, in the status file's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reported {
    pub state: Option<String>,
    pub attempt: Option<u32>,
    pub reason: Option<String>,
    /// `YYYY-MM-DDThh:mm:ssZ` of the last report.
    pub updated: Option<String>,
}

/// The last report's state and detail; the attempt from the last
/// `attempt N of M` detail, which the first-boot script reports as it
/// starts each attempt (render/firstboot.rs), so later `done` or `failed`
/// reports belong to that attempt.
pub fn reported(node: &ApiNode) -> Reported {
    let clean = |s: &str| super::remote::clean(s);
    let last = node.reports.last();
    let attempt = node.reports.iter().rev().find_map(|r| {
        let d = r.detail.as_deref()?.strip_prefix("attempt ")?;
        let (n, rest) = d.split_once(' ')?;
        rest.starts_with("of ").then(|| n.parse().ok()).flatten()
    });
    Reported {
        state: node
            .state
            .as_deref()
            .or(last.map(|r| r.state.as_str()))
            .map(clean),
        attempt,
        reason: last.and_then(|r| r.detail.as_deref()).map(clean),
        updated: last.map(|r| iso_utc(r.at)),
    }
}

/// `YYYY-MM-DDThh:mm:ssZ`, the status file's form of `updated`.
fn iso_utc(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    format!("{}Z", crate::time::format_utc(secs).replacen(' ', "T", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_comes_from_the_last_attempt_report() {
        let node: ApiNode = serde_json::from_str(
            r#"{"name":"pi1","state":"done","serial":null,"reports":[
                {"state":"running","detail":"attempt 1 of 5","at":0},
                {"state":"running","detail":"attempt 2 of 5","at":60},
                {"state":"done","detail":"first boot finished","at":1764240000}]}"#,
        )
        .unwrap();
        let r = reported(&node);
        assert_eq!(r.state.as_deref(), Some("done"));
        assert_eq!(r.attempt, Some(2));
        assert_eq!(r.reason.as_deref(), Some("first boot finished"));
        assert_eq!(r.updated.as_deref(), Some("2025-11-27T10:40:00Z"));
    }

    #[test]
    fn a_node_that_never_reported_has_nothing() {
        let node: ApiNode = serde_json::from_str(r#"{"name":"pi1","state":null}"#).unwrap();
        assert_eq!(reported(&node), Reported::default());
    }
}
