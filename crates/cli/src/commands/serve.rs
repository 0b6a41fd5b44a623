//! `profilestore serve`: the HTTP API over paired stores.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use profilestore_api::{ApiConfig, ClientLimits, RenderMetrics, ServeOptions, Spool, SpoolSettings, UploadLimits};
use profilestore_core::service::ProfileService;
use profilestore_core::settings::fmt_duration;
use profilestore_runtime::{SystemClock, UuidV7Ids};

use crate::args::{Layer, Listen, ServeArgs};
use crate::config::FileSettings;
use crate::metrics::{AdminListener, announce};
use crate::stores::open_and_pair;

/// Where `serve` listens when `--listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Where the admin listener listens when `--admin-listen` is not given: loopback, on
/// a free port (so any number of servers start side by side; a deployment names its
/// port).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:0";

/// Serves until SIGINT/SIGTERM, then finishes the requests in flight; `/metrics` (from
/// `render`) on the admin listener.
pub async fn run(mut args: ServeArgs, file: &FileSettings, render: RenderMetrics) -> anyhow::Result<ExitCode> {
    args.stores.fill_from(&file.stores);
    args.timings.fill_from(&file.timings);
    args.clocks.fill_from(&file.clocks);
    args.serve.fill_from(&file.serve);
    args.auth.fill_from(&file.auth);
    let listen: SocketAddr = match args.serve.listen {
        Some(addr) => addr,
        None => DEFAULT_LISTEN.parse().expect("default address parses"),
    };
    let admin_listen = match args.serve.admin_listen {
        Some(Listen::On(addr)) => Some(addr),
        Some(Listen::Off) => None,
        None => Some(DEFAULT_ADMIN_LISTEN.parse().expect("default address parses")),
    };
    // Before any store is opened: a server that must not start touches nothing.
    let listeners: Vec<SocketAddr> = [Some(listen), admin_listen].into_iter().flatten().collect();
    let auth = crate::auth::decide(&args.auth, &listeners)?;
    let tls = crate::transport::decide(&args.serve, &listeners)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let defaults = ApiConfig::default();
    let mut config = ApiConfig {
        max_image_size: args.serve.max_image_size.map_or(defaults.max_image_size, |size| size.as_u64()),
        max_image_pixels: args.serve.max_image_pixels.unwrap_or(defaults.max_image_pixels),
        max_image_frames: args.serve.max_image_frames.unwrap_or(defaults.max_image_frames),
        keep_image_metadata: args.serve.keep_image_metadata,
        auth: auth.policy,
        uploads: UploadLimits {
            max_concurrent: args.serve.max_concurrent_uploads.map_or(defaults.uploads.max_concurrent, |n| n.get()),
            max_bytes_in_flight: args
                .serve
                .max_upload_memory
                .map_or(defaults.uploads.max_bytes_in_flight, |size| size.as_u64()),
        },
        clients: ClientLimits {
            trusted_proxies: args.serve.trusted_proxies.clone().unwrap_or_default(),
            max_uploads_per_client: args.serve.max_uploads_per_client.map(NonZeroUsize::get),
            max_requests_per_second: args.serve.max_requests_per_client.unwrap_or(0),
            request_burst: args.serve.client_request_burst,
        },
        min_upload_rate: args.serve.min_upload_rate.map_or(defaults.min_upload_rate, |rate| rate.as_u64()),
        image_cache_max_age: args.serve.image_cache_max_age.unwrap_or(defaults.image_cache_max_age),
        idempotency_key_ttl: args.serve.idempotency_key_ttl.unwrap_or(defaults.idempotency_key_ttl),
        spool: None,
    };

    let clock = Arc::new(SystemClock::new());
    let opened = open_and_pair(&args.stores, &args.timings, clock.clone()).await?;
    // The cleaner deletes, but every server says it too: servers are what operators
    // watch start.
    crate::stores::check_bucket_versioning(&args.stores, clock.as_ref()).await;
    let timings = opened.timings;
    // After the stores: a server that cannot reach them leaves no directory behind.
    config.spool = open_spool(&args)?;
    let clock_check = super::start_clock_check(&opened, clock.clone(), &args.clocks).await?;
    let service = ProfileService::new(opened.metadata, opened.blobs, clock, Arc::new(UuidV7Ids), timings)
        .with_clock_check(clock_check);
    let refresher = service.clone();
    let every = args.clocks.clock_check_interval.unwrap_or(super::DEFAULT_CLOCK_CHECK_INTERVAL);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            refresher.reload_timings().await;
        }
    });
    let page = profilestore_api::StatusPage::new(service.clone(), opened.cluster_id.to_string());
    let app = profilestore_api::router(service, config);

    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        address = %addr,
        cluster_id = %opened.cluster_id,
        request_timeout = %fmt_duration(timings.request_timeout),
        min_blob_age = %fmt_duration(timings.min_blob_age),
        delete_delay = %fmt_duration(timings.delete_delay),
        clock_skew = %fmt_duration(timings.clock_skew),
        commit_stall_slack = %fmt_duration(timings.commit_stall_margin()),
        "serving"
    );
    auth.notice.log();
    // A request in flight at shutdown has at most its request timeout left.
    let options = ServeOptions {
        header_timeout: args.serve.header_timeout.unwrap_or(ServeOptions::DEFAULT_HEADER_TIMEOUT),
        send_timeout: args.serve.send_timeout.unwrap_or(ServeOptions::DEFAULT_SEND_TIMEOUT),
        min_send_rate: args.serve.min_download_rate.map_or(ServeOptions::DEFAULT_MIN_SEND_RATE, |rate| rate.as_u64()),
        shutdown_limit: Some(timings.request_timeout),
        tls,
    };
    let admin = match admin_listen {
        Some(addr) => Some(AdminListener::bind(addr).await?),
        None => None,
    };
    // The addresses go to stdout, the API's on the first line, so scripts (and port 0
    // users) can read them.
    let mut lines = format!("profilestore listening on {scheme}://{addr}\n");
    if let Some(admin) = admin {
        lines.push_str(&format!("profilestore admin on {scheme}://{}\n", admin.addr));
        admin.serve(render, Some((page, app.clone())), options.clone(), super::shutdown_signal());
    }
    announce(&lines)?;
    profilestore_api::serve_with(listener, app, super::shutdown_signal(), options).await.context("server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// The spool large uploads are received in (`--spool-dir`, by default `spool` in the
/// data directory), or `None` when `--max-spool-size 0` turns it off.
fn open_spool(args: &ServeArgs) -> anyhow::Result<Option<Spool>> {
    let max_bytes = args.serve.max_spool_size.map_or(SpoolSettings::DEFAULT_MAX_BYTES, |size| size.as_u64());
    if max_bytes == 0 {
        return Ok(None);
    }
    let dir = match &args.serve.spool_dir {
        Some(dir) => dir.clone(),
        None => {
            let data_dir = args.stores.data_dir.clone().unwrap_or_else(|| crate::stores::DEFAULT_DATA_DIR.into());
            std::path::absolute(&data_dir)
                .with_context(|| format!("bad data directory {}", data_dir.display()))?
                .join("spool")
        }
    };
    let above = args.serve.spool_above.map_or(SpoolSettings::DEFAULT_ABOVE, |size| size.as_u64());
    let spool = Spool::open(SpoolSettings { dir, above, max_bytes })?;
    tracing::info!(dir = %spool.dir().display(), above, max_bytes, "large uploads are spooled to disk");
    Ok(Some(spool))
}
