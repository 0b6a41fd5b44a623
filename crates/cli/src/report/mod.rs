//! `profilestore report`: the nines report (see `nines`) from scrapes of `/metrics`.

mod nines;
mod scrape;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::args::ReportArgs;
use nines::NinesReport;
use scrape::Scrape;

/// How long fetching one scrape may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the scrapes, prints the report; exit 2 when a scrape cannot be read or counts
/// no request.
pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let mut scrapes = Vec::with_capacity(args.scrapes.len());
    for source in &args.scrapes {
        let text = fetch(source).await?;
        scrapes.push(Scrape::parse(&text).with_context(|| format!("{source} is not a Prometheus scrape"))?);
    }
    let report = nines::report(&scrapes)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

async fn fetch(source: &str) -> anyhow::Result<String> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?;
        let response = client.get(source).send().await.with_context(|| format!("cannot fetch {source}"))?;
        anyhow::ensure!(response.status().is_success(), "{source} answered {}", response.status());
        return Ok(response.text().await?);
    }
    std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))
}

/// The report as a table for people.
fn render(r: &NinesReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} API requests observed; {}.\n", r.requests, r.method);
    let _ = writeln!(out, "| assumption | events | rate per request (95 %) | nines observed | case study |");
    let _ = writeln!(out, "|---|--:|---|---|--:|");
    for a in &r.assumptions {
        let observed = if a.insufficient_data {
            format!("at most {:.1} (insufficient data for more)", a.nines_supported)
        } else {
            format!(
                "{:.1} ({:.1}–{:.1})",
                a.nines_estimate.unwrap_or(f64::INFINITY),
                a.nines_supported,
                nines::nines(a.rate_interval.0)
            )
        };
        let paper = a.paper_nines.map_or("—".to_owned(), |n| format!("{n:.0}"));
        let _ = writeln!(
            out,
            "| {} | {} | {:.2e} ({:.2e}–{:.2e}) | {observed} | {paper} |",
            a.name, a.events, a.rate, a.rate_interval.0, a.rate_interval.1
        );
    }
    let _ = writeln!(
        out,
        "\nAll of the case study's assumptions together: the data supports {:.1} nines (the case study: {:.1} pessimistic, {:.1} realistic).",
        r.combined_nines_supported, r.paper_combined_nines.0, r.paper_combined_nines.1
    );
    if let (Some(worst), Some(bound)) = (r.worst_clock_offset_seconds, r.clock_skew_bound_seconds) {
        let _ = writeln!(
            out,
            "Largest clock offset seen: {worst:.3} s (with its error bound) against a clock-skew bound of {bound:.3} s ({:.1} % of it).",
            100.0 * worst / bound.max(f64::MIN_POSITIVE)
        );
    }
    for a in &r.assumptions {
        let _ = writeln!(out, "- {}: {}", a.name, a.evidence);
    }
    out
}
