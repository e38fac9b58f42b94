//! docs/metrics.md and docs/grafana/asap-dashboard.json against the live endpoint: the
//! table lists exactly the families served (name, type, labels), and every metric the
//! dashboard queries exists.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use asap_test_support::exposition::{self as exposition, Family};

const DOC: &str = include_str!("../../../docs/metrics.md");
const DASHBOARD: &str = include_str!("../../../docs/grafana/asap-dashboard.json");

/// The backticked words of `cell` outside parentheses.
fn names(cell: &str) -> BTreeSet<String> {
    let mut depth = 0;
    let mut outside = String::new();
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn documented() -> BTreeMap<String, Family> {
    DOC.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let family = Family {
                kind: cells[2].to_owned(),
                labels: names(cells[3]),
            };
            (name, family)
        })
        .collect()
}

async fn served() -> String {
    let running = common::start(common::Options::default()).await;
    common::post(
        &running.base,
        &common::echo_request(serde_json::json!({"x": 1})),
    )
    .await;
    let text = common::get(&running.base, "/asap/metrics", &[]).await.text;
    running.stop().await;
    text
}

#[tokio::test]
async fn the_table_is_the_endpoint() {
    let live = exposition::families(&served().await);
    assert_eq!(documented(), live);
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_served() {
    let live = exposition::families(&served().await);
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 10);
    for expr in exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !(word.starts_with("asap_") || word.starts_with("process_")) {
                continue;
            }
            let base = word.strip_suffix("_bucket").unwrap_or(word);
            assert!(
                live.contains_key(base),
                "the dashboard queries {word}, not served"
            );
        }
    }
}
