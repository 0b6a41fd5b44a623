//! What the S3 tests share: the test server named by `PROFILESTORE_TEST_S3_*`, fresh
//! stores under prefixes of their own, bulk puts, listings, and a TCP forwarder to
//! take the server away mid-test.
#![allow(dead_code)] // each test file uses a different part

use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::NonZeroUsize;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use profilestore_core::ids::{BlobKey, IdSource};
use profilestore_core::store::{BlobStore, ListedBlob};
use profilestore_runtime::UuidV7Ids;
use profilestore_stores::s3::S3BlobStore;
use profilestore_stores::{OpenMode, S3Options};
use tokio::net::{TcpListener, TcpStream};

pub const VARS: [&str; 4] = [
    "PROFILESTORE_TEST_S3_ENDPOINT",
    "PROFILESTORE_TEST_S3_BUCKET",
    "PROFILESTORE_TEST_S3_ACCESS_KEY_ID",
    "PROFILESTORE_TEST_S3_SECRET_ACCESS_KEY",
];

pub struct Server {
    pub endpoint: String,
    pub bucket: String,
    pub key: String,
    pub secret: String,
}

/// The test server, or `None` after saying (outside the test harness's output capture,
/// so it shows in a passing run) that the test is skipped.
pub fn server() -> Option<Server> {
    let values: Vec<Option<String>> =
        VARS.iter().map(|var| std::env::var(var).ok().filter(|v| !v.is_empty())).collect();
    if let [Some(endpoint), Some(bucket), Some(key), Some(secret)] = values.as_slice() {
        return Some(Server {
            endpoint: endpoint.clone(),
            bucket: bucket.clone(),
            key: key.clone(),
            secret: secret.clone(),
        });
    }
    let unset: Vec<&str> = VARS.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(var, _)| *var).collect();
    let unset =
        if unset.len() == VARS.len() { "PROFILESTORE_TEST_S3_* are".to_owned() } else { unset.join(", ") + " is" };
    profilestore_testkit::services::missing(&format!("{unset} not set (run scripts/test.sh to start the S3 server)"))
}

impl Server {
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: None,
            access_key_id: Some(self.key.clone()),
            secret_access_key: Some(self.secret.clone()),
            session_token: None,
            skip_signature: false,
            list_concurrency: None,
        }
    }

    /// `bucket/test-<uuid>`: a prefix no other test (or run) uses.
    pub fn fresh_location(&self) -> String {
        format!("{}/test-{}", self.bucket, UuidV7Ids.next_image_id())
    }

    pub async fn open(&self, bucket_and_prefix: &str) -> S3BlobStore {
        S3BlobStore::open(bucket_and_prefix, format!("s3://{bucket_and_prefix}"), OpenMode::Migrate, &self.options())
            .await
            .expect("open the S3 test store")
    }

    pub async fn fresh(&self) -> S3BlobStore {
        self.open(&self.fresh_location()).await
    }

    /// The store at `bucket_and_prefix`, listing `concurrency` prefixes at once.
    pub async fn open_listing(&self, bucket_and_prefix: &str, concurrency: usize) -> S3BlobStore {
        let options = S3Options { list_concurrency: NonZeroUsize::new(concurrency), ..self.options() };
        S3BlobStore::open(bucket_and_prefix, format!("s3://{bucket_and_prefix}"), OpenMode::Migrate, &options)
            .await
            .expect("open the S3 test store")
    }

    /// A plain object_store client for the bucket, to write keys the blob store never
    /// writes (foreign keys, keys in odd places).
    pub fn raw(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_access_key_id(&self.key)
            .with_secret_access_key(&self.secret)
            .with_virtual_hosted_style_request(false)
            .build()
            .expect("an object_store client for the test bucket")
    }
}

pub fn key() -> BlobKey {
    BlobKey::original(UuidV7Ids.next_image_id())
}

/// Stores `n` small blobs, 32 at a time; returns their keys.
pub async fn put_many(store: &S3BlobStore, n: usize) -> Vec<BlobKey> {
    let keys: Vec<BlobKey> = (0..n).map(|_| key()).collect();
    futures::stream::iter(keys.iter())
        .map(|k| async move { store.put_new(k, Bytes::from(k.to_string())).await })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("put_new");
    keys
}

pub async fn list_pages(store: &S3BlobStore, page_size: usize) -> Vec<Vec<ListedBlob>> {
    store.list(page_size).try_collect().await.expect("list")
}

pub async fn listed_keys(store: &S3BlobStore) -> HashSet<String> {
    list_pages(store, 1000).await.into_iter().flatten().map(|b| b.key).collect()
}

/// A TCP forwarder to `target`, to take a server away mid-test: dropping the returned
/// handle's task closes the port and every forwarded connection.
pub async fn forwarder(target: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, task)
}
