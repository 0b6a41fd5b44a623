//! The HTTP paths: a real axum server on 127.0.0.1 in this process, and a keep-alive
//! client issuing the requests.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use profilestore_core::ids::{ImageId, UserId};
use profilestore_core::service::ProfileService;

use crate::error::BenchError;
use crate::fixture::METADATA;
use crate::load::Operation;
use crate::scenarios::library::user_for;

/// A server answering the API on a loopback port; shut down (gracefully) on drop.
pub(crate) struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Serves `service` with the default limits, but for the per-client upload cap, on
    /// a free loopback port.
    pub async fn start(service: ProfileService) -> Result<Server, BenchError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(BenchError::io("cannot listen on a loopback port"))?;
        let base = format!("http://{}", listener.local_addr().map_err(BenchError::io("no local address"))?);
        // The bench's clients are one peer address with many connections: the
        // per-client upload cap (a share of the uploads read at once, for fairness
        // between clients) would refuse most of them at 64 clients.
        let clients = profilestore_api::ClientLimits {
            max_uploads_per_client: Some(usize::MAX),
            ..profilestore_api::ClientLimits::default()
        };
        let config = profilestore_api::ApiConfig { clients, ..profilestore_api::ApiConfig::default() };
        let app = profilestore_api::router(service, config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(e) = profilestore_api::serve(listener, app, stop).await {
                tracing::error!(error = %e, "the bench's server failed");
            }
        });
        Ok(Server { base, shutdown: Some(tx) })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The client every HTTP side shares: connections are kept alive and reused, as a
/// real client's would be, so a request costs no TCP handshake.
pub(crate) fn client() -> Result<reqwest::Client, BenchError> {
    reqwest::Client::builder().build().map_err(|e| BenchError::Http(format!("cannot build the client: {e}")))
}

/// Sends `request`, requires a 200, and reads the whole body.
async fn fetch(request: reqwest::RequestBuilder) -> Result<Bytes, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])));
    }
    Ok(body)
}

/// `PUT /v1/profiles/{user}` with the metadata and the image as a multipart form.
pub(crate) fn write_http(
    client: reqwest::Client,
    server: Arc<Server>,
    users: Arc<Vec<UserId>>,
    image: Bytes,
) -> Operation {
    Arc::new(move |n| {
        let url = format!("{}/v1/profiles/{}", server.base, user_for(&users, n));
        let (client, image) = (client.clone(), image.clone());
        async move {
            let len = image.len() as u64;
            let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::from(image), len)
                .file_name("avatar.png")
                .mime_str("image/png")
                .map_err(|e| e.to_string())?;
            let form = reqwest::multipart::Form::new().text("metadata", METADATA).part("image", part);
            let body = fetch(client.put(url).multipart(form)).await?;
            // The floor stores the image as it is: so must the product, or it would
            // be measured writing fewer bytes (the API strips what a decoder skips).
            let stored = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["image_size"].as_u64());
            match stored {
                Some(stored) if stored == len => Ok(()),
                other => Err(format!("the API stored {other:?} bytes of the {len}-byte image, not all of it")),
            }
        }
        .boxed()
    })
}

/// `GET /v1/profiles/{user}`: the JSON with the image in base64.
pub(crate) fn get_profile(client: reqwest::Client, server: Arc<Server>, users: Arc<Vec<UserId>>) -> Operation {
    Arc::new(move |n| {
        let url = format!("{}/v1/profiles/{}", server.base, user_for(&users, n));
        let client = client.clone();
        async move { fetch(client.get(url)).await.map(|_| ()) }.boxed()
    })
}

/// `GET /v1/images/{id}` of the image user `n` holds: the same bytes as the profile
/// GET, without the record read and the JSON.
pub(crate) fn get_image(
    client: reqwest::Client,
    server: Arc<Server>,
    users: Arc<Vec<UserId>>,
    images: Arc<HashMap<UserId, ImageId>>,
) -> Operation {
    Arc::new(move |n| {
        let image = images.get(&user_for(&users, n)).copied();
        let url = image.map(|id| format!("{}/v1/images/{id}", server.base));
        let client = client.clone();
        async move { fetch(client.get(url.ok_or("user was not seeded")?)).await.map(|_| ()) }.boxed()
    })
}
