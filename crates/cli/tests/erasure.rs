//! Erasure after a `DELETE`, end to end with a real server and a real cleaner daemon on
//! compressed timings: the photo stops being served at once (404 by id), and its bytes
//! leave the blob store within the bound `docs/security.md` derives: the deleted
//! record's image joins the superseded queue in the delete's own transaction, and the
//! next cycle that finds it `delete-delay` old deletes it, so
//! `delete-delay + every + one cycle's own time`.

// These tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{PNG, Server, start_cleaner};

const TIMINGS: [&str; 8] =
    ["--request-timeout", "1s", "--min-blob-age", "2s", "--delete-delay", "1s", "--clock-skew", "1s"];
/// The cleaner daemon's interval.
const EVERY: Duration = Duration::from_secs(1);
/// What a cycle may take on its own (listing, asking, deleting) on a slow, busy machine.
const CYCLE_ALLOWANCE: Duration = Duration::from_secs(10);

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_photo_stops_being_served_at_once_and_its_bytes_go_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stores = vec!["--data-dir".to_owned(), data.display().to_string()];
    let server = Server::start(&[stores.clone(), TIMINGS.iter().map(|s| s.to_string()).collect()].concat());
    let http = reqwest::Client::new();
    let put = |user: &str| {
        let form = reqwest::multipart::Form::new()
            .text("metadata", "{}")
            .part("image", reqwest::multipart::Part::bytes(PNG).file_name("a.png"));
        http.put(format!("{}/v1/profiles/{user}", server.base)).multipart(form).send()
    };
    // Another profile stays: a cleaner never deletes while the database holds no
    // records at all (a wiped database would make every image look unreferenced).
    assert_eq!(put("bob").await.unwrap().status(), 200);
    let stored: serde_json::Value = put("ada").await.unwrap().json().await.unwrap();
    let image_url = format!("{}{}", server.base, stored["image_url"].as_str().unwrap());
    let image_id = stored["image_id"].as_str().unwrap().to_owned();
    assert_eq!(http.get(&image_url).send().await.unwrap().status(), 200);
    let blob = files(&data.join("blobs")).into_iter().find(|p| p.to_string_lossy().contains(&image_id));
    let blob = blob.expect("the image's blob file");

    let deleted_at = Instant::now();
    let deleted = http.delete(format!("{}/v1/profiles/ada", server.base)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(http.get(&image_url).send().await.unwrap().status(), 404, "a deleted photo is still served");

    let log = dir.path().join("cleaner.log");
    let _cleaner = start_cleaner(&stores, "1s", &log);
    let bound = Duration::from_secs(1) + EVERY + CYCLE_ALLOWANCE;
    while blob.exists() {
        assert!(
            deleted_at.elapsed() < bound,
            "the photo's bytes were still stored {:?} after the DELETE (bound {bound:?}); cleaner log:\n{}",
            deleted_at.elapsed(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("erased {:?} after the DELETE (bound {bound:?})", deleted_at.elapsed());
}
