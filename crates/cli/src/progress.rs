//! How `clean`, `audit` and `simulate` show their progress on standard error.
//!
//! The cleaner crate only keeps counters (a [`Progress`]); presenting them is this
//! module's job. At a terminal a bar is redrawn from the counters ten times a second
//! and cleared when the command ends, so the report on standard output reads as if
//! the bar had never been there. Anywhere else (a log file, a collector, a test) a
//! redrawn bar would be noise, so one structured log line carries the same counters
//! every `--progress-interval`.
//!
//! Log lines written while a bar is drawn go through [`LogWriter`], which lifts the
//! bar out of the way for each line and draws it again below; without that, a line
//! would be written over the bar.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use profilestore_cleaner::{Progress, ProgressSnapshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// How often the log line is written unless `--progress-interval` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// How often a bar is redrawn from the counters.
const REDRAW: Duration = Duration::from_millis(100);

/// The bar being drawn, if any, for [`LogWriter`] to lift out of the way.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn active() -> Option<ProgressBar> {
    ACTIVE.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Standard error for log lines: while a bar is drawn, each line is written with the
/// bar lifted out of the way, so neither garbles the other.
pub struct LogWriter;

impl LogWriter {
    /// A writer for one log line (the shape `tracing_subscriber` asks for).
    pub fn make() -> LogWriter {
        LogWriter
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match active() {
            Some(bar) => bar.suspend(|| io::stderr().write(buf)),
            None => io::stderr().write(buf),
        }
    }

    // A whole line at once: lifting the bar for each piece of a split write would
    // let it be drawn in the middle of the line.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match active() {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf)),
            None => io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// A bar drawn on standard error and known to [`LogWriter`] until dropped, when it
/// is cleared.
pub struct ActiveBar(ProgressBar);

impl ActiveBar {
    /// Starts drawing `bar`, in the given style, to standard error.
    pub fn start(bar: ProgressBar) -> ActiveBar {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
        ActiveBar(bar)
    }

    /// The bar, to update.
    pub fn bar(&self) -> &ProgressBar {
        &self.0
    }
}

impl Drop for ActiveBar {
    fn drop(&mut self) {
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.0.finish_and_clear();
        // An update racing with the clearing draws nowhere.
        self.0.set_draw_target(ProgressDrawTarget::hidden());
    }
}

/// A style from a template written in this module (so a bad one is a bug, caught by
/// the tests, never a user's error).
/// Besides indicatif's keys, `{rate}` is the position's rate to a sensible precision
/// (indicatif's `{per_sec}` shows four decimals).
pub fn style(template: &str) -> ProgressStyle {
    let style =
        ProgressStyle::with_template(template).unwrap_or_else(|e| panic!("progress template {template:?}: {e}"));
    style.with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{}/s", rate_text(state.per_sec()));
    })
}

fn rate_text(per_second: f64) -> String {
    if per_second < 10.0 { format!("{per_second:.1}") } else { format!("{per_second:.0}") }
}

/// What the counters are of, which decides their wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A cleaner cycle; in a dry run nothing is deleted, only reported.
    Clean {
        /// Whether deletes are only reported.
        dry_run: bool,
    },
    /// An audit.
    Audit,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A bar on standard error, redrawn from the counters.
    Bar,
    /// A log line with the counters this often, while work is running.
    Log(Duration),
}

impl Mode {
    /// A bar when standard error is a terminal, otherwise a log line every `interval`.
    pub fn for_stderr(interval: Duration) -> Mode {
        if io::IsTerminal::is_terminal(&io::stderr()) { Mode::Bar } else { Mode::Log(interval) }
    }
}

/// Progress being shown; [`Shown::finish`] stops it and clears the bar.
pub struct Shown {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Starts showing `progress` in `mode` on standard error. Must run inside a Tokio
/// runtime.
pub fn show(progress: Arc<Progress>, work: Work, mode: Mode) -> Shown {
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = match mode {
        Mode::Bar => tokio::spawn(draw(progress, work, stopped)),
        Mode::Log(interval) => tokio::spawn(log(progress, work, interval, stopped)),
    };
    Shown { stop: Some(stop), task }
}

impl Shown {
    /// Stops showing progress and waits until the bar, if any, is cleared, so what is
    /// printed next is not drawn over.
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Shown {
    // On an early return (an error) the process is on its way out: stop at once.
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn draw(progress: Arc<Progress>, work: Work, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let bar = ProgressBar::no_length().with_style(spinner_style(work));
    bar.set_message(bar_text(work, &progress.snapshot()).1);
    let shown = ActiveBar::start(bar);
    let mut with_total = false;
    let mut redraw = tokio::time::interval(REDRAW);
    redraw.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => return,
            _ = redraw.tick() => {}
        }
        let s = progress.snapshot();
        let bar = shown.bar();
        if let (Some(total), false) = (s.total, with_total) {
            with_total = true;
            bar.set_length(total);
            bar.set_style(total_style());
        }
        let (position, message) = bar_text(work, &s);
        bar.set_position(position);
        bar.set_message(message);
    }
}

fn spinner_style(work: Work) -> ProgressStyle {
    match work {
        Work::Clean { .. } => style("{spinner} {pos} keys listed ({rate}) · {msg} · {elapsed}"),
        Work::Audit => style("{spinner} {pos} records checked ({rate}) · {msg} · {elapsed}"),
    }
}

/// An audit's bar once its records are counted.
fn total_style() -> ProgressStyle {
    style("[{bar:30}] {pos}/{len} records checked ({rate}, ETA {eta}) · {msg} · {elapsed}")
}

/// The bar's position (keys listed for a cycle, whose length is never known; records
/// checked for an audit) and its message with the other counters.
fn bar_text(work: Work, s: &ProgressSnapshot) -> (u64, String) {
    match work {
        Work::Clean { dry_run } => {
            let deleted = if dry_run { "would delete" } else { "deleted" };
            (
                s.listed,
                format!("{} checked · {} waiting · {} {deleted} · {} kept", s.checked, s.waiting, s.deleted, s.kept),
            )
        }
        Work::Audit => (s.checked, format!("{} keys listed", s.listed)),
    }
}

async fn log(progress: Arc<Progress>, work: Work, every: Duration, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is at once, with nothing to say yet.
    let mut last = (ticks.tick().await, progress.snapshot());
    loop {
        let now = tokio::select! {
            biased;
            _ = &mut stopped => return,
            now = ticks.tick() => now,
        };
        let s = progress.snapshot();
        // Rates over the last interval, by the ticks' own instants; a new cycle
        // started counting again from zero.
        let secs = now.saturating_duration_since(last.0).as_secs_f64().max(1e-3);
        let since = |current: u64, before: u64| if current >= before { current - before } else { current };
        let keys_per_second = since(s.listed, last.1.listed) as f64 / secs;
        let checked_per_second = since(s.checked, last.1.checked) as f64 / secs;
        last = (now, s);
        // A daemon resting between cycles has nothing new to say.
        if !s.running {
            continue;
        }
        log_line(work, &s, keys_per_second, checked_per_second);
    }
}

fn log_line(work: Work, s: &ProgressSnapshot, keys_per_second: f64, checked_per_second: f64) {
    let (keys_per_second, checked_per_second) = (round(keys_per_second), round(checked_per_second));
    match work {
        Work::Clean { dry_run } => tracing::info!(
            listed = s.listed,
            checked = s.checked,
            waiting = s.waiting,
            deleted = s.deleted,
            kept = s.kept,
            dry_run,
            keys_per_second,
            "clean progress"
        ),
        Work::Audit => {
            let remaining = s.total.map(|total| total.saturating_sub(s.checked));
            let eta = match remaining {
                Some(0) => Some("0s".to_owned()),
                Some(n) if checked_per_second > 0.0 => Some(
                    humantime::format_duration(Duration::from_secs((n as f64 / checked_per_second) as u64)).to_string(),
                ),
                _ => None,
            };
            tracing::info!(
                records_checked = s.checked,
                records = s.total,
                listed = s.listed,
                records_per_second = checked_per_second,
                keys_per_second,
                eta,
                "audit progress"
            );
        }
    }
}

/// A rate to one decimal: a log line needs no more.
fn round(rate: f64) -> f64 {
    (rate * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_the_counters_are_worded_for_the_work() {
        for work in [Work::Clean { dry_run: false }, Work::Audit] {
            spinner_style(work);
        }
        total_style();
        assert_eq!((rate_text(3.24), rate_text(1234.4)), ("3.2".to_owned(), "1234".to_owned()));
        let s = ProgressSnapshot { listed: 9, checked: 4, waiting: 2, deleted: 1, kept: 3, ..Default::default() };
        let (position, text) = bar_text(Work::Clean { dry_run: false }, &s);
        assert_eq!((position, text.as_str()), (9, "4 checked · 2 waiting · 1 deleted · 3 kept"));
        assert!(bar_text(Work::Clean { dry_run: true }, &s).1.contains("1 would delete"));
        assert_eq!(bar_text(Work::Audit, &s), (4, "9 keys listed".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bar_is_known_to_the_log_writer_only_while_it_is_shown() {
        let shown = show(Arc::new(Progress::new()), Work::Audit, Mode::Bar);
        // The drawing task registers its bar when it first runs: wait for that.
        while active().is_none() {
            tokio::task::yield_now().await;
        }
        shown.finish().await;
        assert!(active().is_none());
    }
}
