//! The results as Markdown tables: readable on a terminal, and pasted as they are
//! into docs/performance.md.

use std::fmt::Write;

use crate::goals::{Bound, Measure};
use crate::results::Results;
use crate::stats::Spread;

/// A latency in the unit that keeps it short: `412 µs`, `3.10 ms`, `1.20 s`.
pub fn latency(us: f64) -> String {
    if !us.is_finite() {
        "-".into()
    } else if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A size in MiB, or `-` when unknown.
fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".into(), |b| format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0)))
}

fn spread(s: Option<Spread>) -> String {
    s.map_or_else(|| "-".into(), |s| s.to_string())
}

/// A small ratio as a percentage: `1.37 % (1.35–1.40)`.
fn percent(s: Option<Spread>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{:.2} % ({:.2}–{:.2})", s.median * 100.0, s.min * 100.0, s.max * 100.0))
}

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    Spread::of(values).map_or(f64::NAN, |s| s.median)
}

/// Every table of `results`, with a heading line for each.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let s = &results.settings;
    let _ = writeln!(
        out,
        "Machine: {} cores, {} ({}). {} runs × {:.1} s per side, interleaved; image {} bytes; {} users; stores: {} + {}.\n",
        m.cores, m.cpu, m.os, s.runs, s.run_time_s, s.image_size, s.users, s.database, s.blobs
    );
    if !results.pairs.is_empty() {
        out.push_str("| product | floor | clients | floor ops/s | floor p50 / p99 | product ops/s | product p50 / p99 | p50 ratio (min–max) | throughput ratio (min–max) | errors |\n");
        out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for p in &results.pairs {
            let errors: u64 = p.runs.floor.iter().chain(&p.runs.product).map(|r| r.errors).sum();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} / {} | {:.0} | {} / {} | {} | {} | {} |",
                p.scenario,
                p.floor,
                p.clients,
                p.median(false, |r| r.throughput),
                latency(p.median(false, |r| r.p50_us)),
                latency(p.median(false, |r| r.p99_us)),
                p.median(true, |r| r.throughput),
                latency(p.median(true, |r| r.p50_us)),
                latency(p.median(true, |r| r.p99_us)),
                spread(p.latency_ratio),
                spread(p.throughput_ratio),
                errors,
            );
        }
        out.push('\n');
    }
    if !results.sweeps.is_empty() {
        out.push_str("| sweep blobs | orphans | list+scan | cleaner cycle | time ratio (min–max) | peak RSS list+scan | peak RSS cleaner |\n");
        out.push_str("|--:|--:|--:|--:|--:|--:|--:|\n");
        for w in &results.sweeps {
            let peak = |runs: &[crate::child::ChildOutcome]| runs.iter().filter_map(|r| r.peak_rss_bytes).max();
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} s | {:.2} s | {} | {} | {} |",
                w.blobs,
                w.orphans,
                median(w.runs.floor.iter().map(|r| r.seconds)),
                median(w.runs.product.iter().map(|r| r.seconds)),
                spread(w.time_ratio),
                mib(peak(&w.runs.floor)),
                mib(peak(&w.runs.product)),
            );
        }
        out.push('\n');
    }
    if let Some(r) = &results.read_memory {
        read_memory(&mut out, r);
    }
    if !results.incremental.is_empty() {
        incremental(&mut out, &results.incremental);
    }
    if !results.listings.is_empty() {
        listings(&mut out, &results.listings);
    }
    if !results.model.is_empty() {
        out.push_str(
            "| model configuration | threads | distinct states | time | states/s | peak RSS |\n|---|--:|--:|--:|--:|--:|\n",
        );
        for r in &results.model {
            let own = if r.own_process { "" } else { " (shared process)" };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} s | {:.0}k | {}{own} |",
                r.name,
                r.threads,
                r.states,
                r.seconds,
                r.states_per_second / 1000.0,
                mib(r.peak_rss_bytes)
            );
        }
        out.push('\n');
        for (name, speedup) in crate::model::thread_speedups(&results.model) {
            let met = if speedup >= 1.8 { "met" } else { "**missed**" };
            let _ =
                writeln!(out, "model checker, {name}: states/s on 2 threads ÷ 1 = {speedup:.2}× (goal ≥ 1.8: {met})");
        }
        out.push('\n');
    }
    if !results.goals.is_empty() {
        out.push_str("| goal | measured (min–max) | limit | met |\n|---|--:|--:|---|\n");
        for g in &results.goals {
            let bound = match g.bound {
                Bound::AtMost => "≤",
                Bound::AtLeast => "≥",
            };
            let met = if g.met { "met" } else { "**missed**" };
            let measured = match g.measure {
                Measure::TouchedRatio | Measure::TimeRatio => percent(g.ratio),
                _ => spread(g.ratio),
            };
            let _ = writeln!(out, "| {} | {measured} | {bound} {} | {met} |", g.goal, g.limit);
        }
        out.push('\n');
    }
    for todo in &results.not_yet_measured {
        let _ = writeln!(out, "not measured: {todo}");
    }
    out
}

/// Memory per in-flight read: one line per side, medians.
fn read_memory(out: &mut String, r: &crate::read_memory::ReadMemoryResult) {
    out.push_str("| held read | image | reads held | RSS idle | RSS held | per read | per read ÷ image (min–max) |\n");
    out.push_str("|---|--:|--:|--:|--:|--:|--:|\n");
    for (name, runs, per_image) in
        [("image GET (floor)", &r.runs.floor, r.floor_per_image), ("profile GET", &r.runs.product, r.product_per_image)]
    {
        let per_read = median(runs.iter().filter_map(|o| crate::read_memory::per_read_bytes(o, r.reads)));
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            mib(Some(r.image_bytes)),
            r.reads,
            mib(median_u64(runs.iter().filter_map(|o| o.rss_idle_bytes))),
            mib(median_u64(runs.iter().filter_map(|o| o.rss_held_bytes))),
            mib(per_read.is_finite().then_some(per_read as u64)),
            spread(per_image),
        );
    }
    out.push('\n');
}

/// The median of `values`, or `None` without any.
fn median_u64(values: impl Iterator<Item = u64>) -> Option<u64> {
    let m = median(values.map(|v| v as f64));
    m.is_finite().then_some(m as u64)
}

/// The S3 listing: one line per size, medians of each side.
fn listings(out: &mut String, results: &[crate::listing::ListingResult]) {
    out.push_str("| S3 keys | concurrency | sequential keys/s | parallel keys/s | rate ratio (min–max) | CPU busy, sequential / parallel | peak pages held (bound) |\n");
    out.push_str("|--:|--:|--:|--:|--:|--:|--:|\n");
    for r in results {
        let peak = r.runs.product.iter().map(|m| m.peak_pages_held).max().unwrap_or(0);
        let busy = |runs: &[crate::listing::ListingMeasure]| {
            let share = median(runs.iter().filter_map(|m| m.machine_busy));
            if share.is_nan() { "-".to_owned() } else { format!("{:.0} %", share * 100.0) }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {} | {} / {} | {peak} ({}) |",
            r.keys,
            r.concurrency,
            median(r.runs.floor.iter().map(|m| m.keys_per_second)),
            median(r.runs.product.iter().map(|m| m.keys_per_second)),
            spread(r.rate_ratio),
            busy(&r.runs.floor),
            busy(&r.runs.product),
            r.max_pages_held,
        );
    }
    out.push('\n');
}

/// The incremental scenario: one line per cycle kind and size (medians), then the
/// write cost of the queue's statement.
fn incremental(out: &mut String, results: &[crate::incremental::IncrementalResult]) {
    out.push_str("| blobs | changed per cycle | cycle | time | listed | queried | claimed | deleted | touched | touched, incr. ÷ full (min–max) | time, incr. ÷ full (min–max) |\n");
    out.push_str("|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for r in results {
        let c = &r.changes;
        let changed = format!(
            "{} ({} replaced, {} deleted, {} new, {} orphans)",
            c.total(),
            c.replaced,
            c.deleted,
            c.created,
            c.orphans
        );
        for (name, runs, ratios) in [("full sweep", &r.runs.floor, None), ("incremental", &r.runs.product, Some(r))] {
            let m = |f: fn(&crate::incremental::CycleMeasure) -> f64| median(runs.iter().map(f));
            let (touched, time) =
                ratios.map_or((String::new(), String::new()), |r| (percent(r.touched_ratio), percent(r.time_ratio)));
            let _ = writeln!(
                out,
                "| {} | {changed} | {name} | {:.3} s | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {touched} | {time} |",
                r.blobs,
                m(|c| c.seconds),
                m(|c| c.listed as f64),
                m(|c| c.queried as f64),
                m(|c| c.claimed as f64),
                m(|c| c.deleted as f64),
                m(|c| c.touched as f64),
            );
        }
    }
    out.push('\n');
    for r in results {
        let _ = writeln!(
            out,
            "{} blobs: one staging-file sweep of the blob store alone (full sweeps make one; incremental cycles leave staging files to them): {:.3} s",
            r.blobs, r.staging_sweep_seconds
        );
        let p50 = |runs: &[crate::stats::RunStats]| latency(median(runs.iter().map(|s| s.p50_us)));
        let costs = [
            (&r.writes, "record write p50, first write", "vs replacement (queue statement fires)"),
            (&r.journal, "blob put p50, without the listing journal", "vs with it"),
        ];
        for (cost, floor, product) in costs {
            if let Some(c) = cost {
                let (f, p, ratio) = (p50(&c.runs.floor), p50(&c.runs.product), spread(c.p50_ratio));
                let _ = writeln!(out, "{} blobs: {floor} {f} {product} {p}: ratio {ratio}", r.blobs);
            }
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::latency;

    #[test]
    fn latencies_pick_a_short_unit() {
        assert_eq!(latency(412.4), "412 µs");
        assert_eq!(latency(3100.0), "3.10 ms");
        assert_eq!(latency(1_200_000.0), "1.20 s");
        assert_eq!(latency(f64::NAN), "-");
    }
}
