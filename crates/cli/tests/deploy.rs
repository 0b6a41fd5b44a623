//! What `deploy/` and `docs/operations.md` say about the figures agrees with what the
//! code records: the operations page lists exactly the exported figures, the Grafana
//! dashboard and the Prometheus alert rules name only exported ones, and the rules
//! pass `promtool check rules` and their unit tests (`promtool test rules`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every figure the processes record.
fn exported() -> BTreeSet<String> {
    [
        profilestore_core::metrics::NAMES,
        profilestore_stores::measured::NAMES,
        profilestore_api::metrics::NAMES,
        profilestore_cleaner::metrics::NAMES,
    ]
    .concat()
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// The `profilestore_…` names in `text`, a histogram's series (`_bucket`, `_sum`,
/// `_count`) named by their histogram.
fn names_in(text: &str) -> BTreeSet<String> {
    let exported = exported();
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("profilestore_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|b| exported.contains(*b)))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

#[test]
fn the_operations_page_lists_exactly_the_exported_figures() {
    let page = read("docs/operations.md");
    // The figures are the first column of the tables: `| \`profilestore_…\` |`.
    let listed: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("| `profilestore_"))
        .map(|l| format!("profilestore_{}", &l[..l.find('`').unwrap()]))
        .collect();
    assert_eq!(listed, exported(), "docs/operations.md's tables against the code's names");
}

#[test]
fn the_dashboard_parses_and_names_only_exported_figures() {
    let text = read("deploy/grafana/profilestore.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let exprs: Vec<&str> =
        panels.iter().flat_map(|p| p["targets"].as_array().unwrap()).map(|t| t["expr"].as_str().unwrap()).collect();
    assert!(!exprs.is_empty());
    let named = names_in(&exprs.join("\n"));
    let exported = exported();
    let unknown: Vec<_> = named.difference(&exported).collect();
    assert!(unknown.is_empty(), "the dashboard names figures nobody exports: {unknown:?}");
    // Every figure has a panel.
    let missing: Vec<_> = exported.iter().filter(|n| !named.contains(*n)).collect();
    assert!(missing.is_empty(), "figures without a panel: {missing:?}");
}

#[test]
fn the_alert_rules_name_only_exported_figures_and_pass_promtool() {
    let rules = read("deploy/prometheus/alerts.yml");
    let unknown: Vec<_> = names_in(&rules).into_iter().filter(|n| !exported().contains(n)).collect();
    assert!(unknown.is_empty(), "the rules name figures nobody exports: {unknown:?}");

    let dir = repo().join("deploy/prometheus");
    let promtool = |args: &[&str]| Command::new("promtool").args(args).current_dir(&dir).output();
    let checked = match promtool(&["check", "rules", "alerts.yml"]) {
        Ok(out) => out,
        Err(e) if std::env::var_os("PROFILESTORE_REQUIRE_SERVICES").is_none() => {
            eprintln!("skipping promtool (Debian's `prometheus` package; the test command installs it): {e}");
            return;
        }
        Err(e) => panic!("promtool is required here (Debian's `prometheus` package): {e}"),
    };
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let tested = promtool(&["test", "rules", "alerts_test.yml"]).unwrap();
    assert!(
        tested.status.success(),
        "{}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
}
