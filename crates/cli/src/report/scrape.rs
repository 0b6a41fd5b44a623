//! Prometheus text-format scrapes: parsed into samples, and the increase of a counter
//! (or the largest value of a gauge) across several scrapes of one process.

use std::collections::BTreeMap;

/// One series' labels, by name.
pub type Labels = BTreeMap<String, String>;

/// One scrape: every sample, by metric name and labels.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Scrape {
    samples: BTreeMap<String, Vec<(Labels, f64)>>,
}

/// Why a text is not a scrape.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {why}: {text:?}")]
pub struct ParseError {
    line: usize,
    why: &'static str,
    text: String,
}

impl Scrape {
    /// Parses the Prometheus text exposition format (comments and blank lines skipped;
    /// an optional timestamp after the value ignored).
    pub fn parse(text: &str) -> Result<Scrape, ParseError> {
        let mut scrape = Scrape::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |why| ParseError { line: n + 1, why, text: raw.chars().take(200).collect() };
            let (name, labels, rest) = match line.find(['{', ' ']) {
                Some(at) if line.as_bytes()[at] == b'{' => {
                    let (labels, rest) = parse_labels(&line[at + 1..]).ok_or_else(|| fail("malformed labels"))?;
                    (&line[..at], labels, rest)
                }
                Some(at) => (&line[..at], Labels::new(), &line[at..]),
                None => return Err(fail("no value")),
            };
            let value = rest.split_whitespace().next().ok_or_else(|| fail("no value"))?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse::<f64>().map_err(|_| fail("the value is not a number"))?,
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                return Err(fail("not a metric name"));
            }
            scrape.samples.entry(name.to_owned()).or_default().push((labels, value));
        }
        Ok(scrape)
    }

    /// The samples of `name` whose labels `keep` accepts.
    fn series<'a>(
        &'a self,
        name: &str,
        keep: &'a dyn Fn(&Labels) -> bool,
    ) -> impl Iterator<Item = (&'a Labels, f64)> + 'a {
        self.samples.get(name).into_iter().flatten().filter(move |(l, _)| keep(l)).map(|(l, v)| (l, *v))
    }
}

/// How much the counter `name` (the series `keep` accepts, summed) grew over
/// `scrapes`, taken in order: from zero to the first scrape when there is one
/// (everything since the process started), else from the first to the last. A series
/// that went down was reset (the process restarted) and counts from zero again.
pub fn increase(scrapes: &[Scrape], name: &str, keep: &dyn Fn(&Labels) -> bool) -> f64 {
    let value_in = |scrape: &Scrape, labels: &Labels| {
        scrape.series(name, keep).find(|(l, _)| *l == labels).map(|(_, v)| v).unwrap_or(0.0)
    };
    match scrapes {
        [] => 0.0,
        [only] => only.series(name, keep).map(|(_, v)| v).sum(),
        _ => scrapes
            .windows(2)
            .map(|pair| {
                pair[1]
                    .series(name, keep)
                    .map(|(labels, now)| {
                        let before = value_in(&pair[0], labels);
                        if now >= before { now - before } else { now }
                    })
                    .sum::<f64>()
            })
            .sum(),
    }
}

/// The largest value the gauge `name` (the series `keep` accepts) showed in any scrape.
pub fn largest(scrapes: &[Scrape], name: &str, keep: &dyn Fn(&Labels) -> bool) -> Option<f64> {
    scrapes.iter().flat_map(|s| s.series(name, keep).map(|(_, v)| v)).reduce(f64::max)
}

/// Parses `{a="x",b="y"} rest` (after the brace); answers the labels and the rest.
fn parse_labels(text: &str) -> Option<(Labels, &str)> {
    let mut labels = Labels::new();
    let mut rest = text.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key, value);
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').map(str::trim_start).unwrap_or(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = r#"# HELP profilestore_writes_total Profile writes by how they ended.
# TYPE profilestore_writes_total counter
profilestore_writes_total{outcome="committed"} 10
profilestore_writes_total{outcome="failed"} 1
profilestore_clock_offset_worst_seconds{clock="database"} 0.25
weird_label{text="a \"quoted\" \\ value, with a comma"} 3 1700000000000
"#;

    const SECOND: &str = r#"profilestore_writes_total{outcome="committed"} 25
profilestore_writes_total{outcome="failed"} 1
profilestore_writes_total{outcome="refused"} 2
profilestore_clock_offset_worst_seconds{clock="database"} 0.5
"#;

    fn all(_: &Labels) -> bool {
        true
    }

    #[test]
    fn a_scrape_parses_labels_escapes_and_timestamps() {
        let scrape = Scrape::parse(FIRST).unwrap();
        let weird: Vec<_> = scrape.series("weird_label", &all).collect();
        assert_eq!(weird.len(), 1);
        assert_eq!(weird[0].0["text"], r#"a "quoted" \ value, with a comma"#);
        assert_eq!(weird[0].1, 3.0);
        assert_eq!(increase(&[scrape], "profilestore_writes_total", &all), 11.0, "since the start");
    }

    #[test]
    fn increases_count_between_the_first_and_last_scrape_and_survive_resets() {
        let (a, b) = (Scrape::parse(FIRST).unwrap(), Scrape::parse(SECOND).unwrap());
        let committed = |l: &Labels| l.get("outcome").is_some_and(|o| o == "committed");
        assert_eq!(increase(&[a.clone(), b.clone()], "profilestore_writes_total", &committed), 15.0);
        // A new series counts from zero.
        assert_eq!(increase(&[a.clone(), b.clone()], "profilestore_writes_total", &all), 17.0);
        // The process restarted between b and a: a's values count from zero.
        assert_eq!(increase(&[b.clone(), a.clone()], "profilestore_writes_total", &committed), 10.0);
        assert_eq!(largest(&[a, b], "profilestore_clock_offset_worst_seconds", &all), Some(0.5));
    }

    #[test]
    fn malformed_lines_are_named() {
        assert_eq!(Scrape::parse("x{a=\"1\" 2").unwrap_err().why, "malformed labels");
        assert_eq!(Scrape::parse("ok 1\nx notanumber").unwrap_err().line, 2);
        assert!(Scrape::parse("<html>").is_err());
    }
}
