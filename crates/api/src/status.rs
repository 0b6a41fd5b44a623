//! The status page (`GET /` and `GET /status` on the admin listener): one small HTML
//! page with no external assets, for an operator at a browser. It shows the pairing,
//! the timings and the rules they satisfy, what the stores hold, what the cleaners last
//! stored, the clock offsets, and a form that uploads one profile and shows it back
//! (through the API, which the admin listener serves too).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use profilestore_core::clocks::Offset;
use profilestore_core::service::{ProfileService, ServiceStatus, Tally};
use profilestore_core::settings::fmt_duration;
use profilestore_core::time::Timestamp;

/// How long the page may spend asking the stores.
const LIMIT: Duration = Duration::from_secs(5);
/// The most records and blobs the page counts (beyond, it says "at least").
const CAP: u64 = 100_000;

/// How long a gathered status is shown again instead of asking the stores anew: the
/// page counts up to [`CAP`] records and blobs (a hundred S3 listing requests), which
/// reloading operators, or a monitor polling the page, must not multiply.
const FRESH_FOR: Duration = Duration::from_secs(10);

/// A status and when it was gathered.
type Gathered = (tokio::time::Instant, Arc<ServiceStatus>);

/// What the status page needs besides the service.
#[derive(Clone)]
pub struct StatusPage {
    /// The service whose stores are shown.
    pub service: ProfileService,
    /// The pairing's cluster id.
    pub cluster_id: String,
    /// The last status gathered and when; one gathering at a time.
    last: Arc<Mutex<Option<Gathered>>>,
}

impl StatusPage {
    /// The page of `service`, whose stores are paired as `cluster_id`.
    pub fn new(service: ProfileService, cluster_id: String) -> Self {
        StatusPage { service, cluster_id, last: Arc::default() }
    }

    /// The status gathered at most [`FRESH_FOR`] ago, or a new one. Loads that arrive
    /// while one gathers wait for it rather than start their own.
    async fn status(&self) -> Arc<ServiceStatus> {
        let mut last = self.last.lock().await;
        // Transport-level caching on tokio's clock, not a decision about the stores.
        #[allow(clippy::disallowed_methods)]
        let now = tokio::time::Instant::now();
        if let Some((at, status)) = last.as_ref()
            && now.duration_since(*at) < FRESH_FOR
        {
            return status.clone();
        }
        let status = Arc::new(self.service.status(LIMIT, CAP).await);
        *last = Some((now, status.clone()));
        status
    }
}

pub(crate) async fn page(State(page): State<StatusPage>) -> impl IntoResponse {
    let status = page.status().await;
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], render(&page, &status))
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn tally(t: &Tally) -> String {
    let at_least = if t.complete { "" } else { "at least " };
    format!("{at_least}{} ({at_least}{} bytes)", t.count, t.bytes)
}

fn time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "never".to_owned(), |t| t.to_string())
}

fn offset(reading: &Option<Result<Offset, String>>) -> String {
    match reading {
        None => "not measured yet".into(),
        Some(Err(why)) => format!("not measured: {why}"),
        Some(Ok(o)) => format!("{:+} ms ± {} ms (measured {})", o.offset_ms, o.error_ms, o.measured_at),
    }
}

fn render(page: &StatusPage, s: &ServiceStatus) -> String {
    let mut rows = String::new();
    let mut row = |name: &str, value: String| {
        let _ = writeln!(rows, "<tr><th>{}</th><td>{}</td></tr>", esc(name), esc(&value));
    };
    let t = &s.timings;
    row("cluster id", page.cluster_id.clone());
    row("request-timeout", fmt_duration(t.request_timeout));
    row("min-blob-age", fmt_duration(t.min_blob_age));
    row("delete-delay", fmt_duration(t.delete_delay));
    row("clock-skew", fmt_duration(t.clock_skew));
    for (rule, holds) in &s.rules {
        row(if *holds { "rule holds" } else { "RULE BROKEN" }, rule.clone());
    }
    let or_error = |r: &Result<String, String>| r.clone().unwrap_or_else(|e| format!("unknown: {e}"));
    row(
        "records",
        or_error(
            &s.records.as_ref().map(|(n, t)| format!("{n}; the images they name: {}", tally(t))).map_err(Clone::clone),
        ),
    );
    row("blobs", or_error(&s.blobs.as_ref().map(tally).map_err(Clone::clone)));
    row("superseded images queued", or_error(&s.superseded_queued.as_ref().map(u64::to_string).map_err(Clone::clone)));
    let marks = s.sweep_marks.as_ref().map_err(Clone::clone);
    row("last full sweep started", or_error(&marks.clone().map(|m| time(m.last_full_sweep))));
    row("listing horizon", or_error(&marks.map(|m| time(m.listing_horizon))));
    let clocks = s.clocks.clone().unwrap_or_default();
    row("database clock", offset(&clocks.database));
    row("blob store clock", offset(&clocks.blob_store));
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>profilestore status</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2em; max-width: 60em; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .25em .8em; border-bottom: 1px solid #ddd; }}
th {{ font-weight: 600; white-space: nowrap; }} form {{ display: grid; gap: .5em; max-width: 30em; }}
textarea {{ font-family: monospace; }} #shown {{ max-width: 12em; margin-top: 1em; }}
</style></head>
<body>
<h1>profilestore</h1>
<table id="status">
{rows}</table>
<p>The cleaners' own figures are on their <code>--metrics-listen</code> address; this server's are at <a href="/metrics">/metrics</a>.</p>
<h2>Upload a profile</h2>
<form id="upload">
<label>User id <input id="user" required value="status-page-demo"></label>
<label>Metadata (a JSON object) <textarea id="metadata" rows="3">{{"name": "demo"}}</textarea></label>
<label>Image <input id="image" type="file" accept="image/png,image/jpeg,image/gif,image/webp" required></label>
<label>Bearer token, when this server checks tokens <input id="token" type="password" autocomplete="off"></label>
<button id="send" type="submit">Upload</button>
</form>
<p id="result" role="status"></p>
<img id="shown" alt="the stored image">
<script>
document.getElementById("upload").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const user = encodeURIComponent(document.getElementById("user").value);
  const body = new FormData();
  body.append("metadata", document.getElementById("metadata").value);
  body.append("image", document.getElementById("image").files[0]);
  const result = document.getElementById("result");
  const token = document.getElementById("token").value.trim();
  const headers = token ? {{ Authorization: "Bearer " + token }} : {{}};
  const answer = await fetch("/v1/profiles/" + user, {{ method: "PUT", body, headers }});
  const json = await answer.json();
  if (!answer.ok) {{ result.textContent = json.error.code + ": " + json.error.message; return; }}
  result.textContent = "stored image " + json.image_id + " (" + json.image_size + " bytes, " + json.content_type + ")";
  // Fetched, not linked: a server whose reads need a token gets it here too.
  const image = await fetch("/v1/profiles/" + user + "/image", {{ headers }});
  document.getElementById("shown").src = URL.createObjectURL(await image.blob());
}});
</script>
</body></html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
