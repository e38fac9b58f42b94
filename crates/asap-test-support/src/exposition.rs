//! Reading a Prometheus text exposition (ours, or the reference's `/asap/metrics`):
//! families (name, type, label names) and series values.

use std::collections::{BTreeMap, BTreeSet};

/// A family as the exposition declares it: its type and the label names its series
/// use (histogram `le` left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// `counter`, `gauge`, `histogram`, ...
    pub kind: String,
    /// Label names.
    pub labels: BTreeSet<String>,
}

/// The series of a text exposition: `name{labels}` as written, with its value.
pub fn series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of one series (`name{a="b",...}` exactly as written; 0 when absent).
pub fn value(text: &str, key: &str) -> f64 {
    series(text).get(key).copied().unwrap_or(0.0)
}

/// Every family of a text exposition, by name.
pub fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            out.insert(
                name.to_owned(),
                Family {
                    kind: kind.trim().to_owned(),
                    labels: BTreeSet::new(),
                },
            );
        }
    }
    for key in series(text).keys() {
        let (name, labels) = match key.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (key.as_str(), ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| out.get(*base).is_some_and(|f| f.kind == "histogram"))
            })
            .unwrap_or(name);
        let Some(entry) = out.get_mut(family) else {
            continue;
        };
        for pair in split_labels(labels) {
            let label = pair.split_once('=').map_or(pair, |(n, _)| n);
            if label != "le" && label != "quantile" {
                entry.labels.insert(label.to_owned());
            }
        }
    }
    out
}

/// `a="x",b="y,z"` split at the commas between pairs (values may hold commas).
fn split_labels(labels: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        out.push(&labels[start..]);
    }
    out
}

/// The `# HELP` text of every family, by name.
pub fn helps(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, help)| (name.to_owned(), help.to_owned()))
        .collect()
}

/// The number of series lines.
pub fn series_count(text: &str) -> usize {
    series(text).len()
}
