//! Photo privacy through the API: a phone's JPEG with GPS in its EXIF is stored
//! without it, the answer names the stored bytes (size and SHA-256) and every read
//! returns exactly those; with `keep_image_metadata` the upload is stored as sent; an
//! image over the pixel or frame limits is refused 422 and stores nothing.

mod common;

use base64::Engine as _;
use common::{TestServer, expect_error, form};
use image::{GenericImageView, ImageEncoder};
use profilestore_api::ApiConfig;
use serde_json::Value;

/// A big-endian EXIF (TIFF) block: IFD0 holds `Orientation` and a GPS IFD pointer;
/// the GPS IFD holds a latitude whose rationals are [`LATITUDE`].
const EXIF_HEAD: [u8; 38] = [
    b'M', b'M', 0, 42, 0, 0, 0, 8, // header, IFD0 at 8
    0, 2, // two entries
    0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, // Orientation (value patched in)
    0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 38, // GPS IFD at 38
    0, 0, 0, 0, // no next IFD
];
const GPS_IFD: [u8; 18] = [0, 1, 0, 2, 0, 5, 0, 0, 0, 3, 0, 0, 0, 56, 0, 0, 0, 0];
/// 48/1, 51/1, 29/1: Paris.
const LATITUDE: [u8; 24] = [0, 0, 0, 48, 0, 0, 0, 1, 0, 0, 0, 51, 0, 0, 0, 1, 0, 0, 0, 29, 0, 0, 0, 1];

/// A 12×6 JPEG, its EXIF naming `orientation` and a GPS latitude, as a phone writes it.
fn phone_jpeg(orientation: u8) -> Vec<u8> {
    let mut exif = EXIF_HEAD.to_vec();
    exif[19] = orientation;
    exif.extend_from_slice(&GPS_IFD);
    exif.extend_from_slice(&LATITUDE);
    let pixels = image::RgbImage::from_fn(12, 6, |x, y| [(x * 20) as u8, (y * 40) as u8, 90].into());
    let mut jpeg = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90);
    encoder.set_exif_metadata(exif).unwrap();
    encoder.write_image(pixels.as_raw(), 12, 6, image::ExtendedColorType::Rgb8).unwrap();
    assert!(has(&jpeg, &LATITUDE), "the fixture carries the GPS latitude");
    jpeg
}

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn sha256(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// PUTs `image` as `user`'s photo; returns the answer and the bytes each read path
/// serves (by id, and in the profile's JSON), checking both against the answer.
async fn stored(server: &TestServer, user: &str, image: Vec<u8>) -> Vec<u8> {
    let response = server.put(user, form("{}", image, "image/jpeg")).await;
    assert_eq!(response.status(), 200);
    let written: Value = response.json().await.unwrap();
    let by_id = server.get(written["image_url"].as_str().unwrap()).await.bytes().await.unwrap().to_vec();
    assert_eq!(written["image_sha256"], sha256(&by_id), "the answer's hash names the bytes served");
    assert_eq!(written["image_size"], by_id.len(), "the answer's size is the stored size");
    let read: Value = server.get(&format!("/v1/profiles/{user}")).await.json().await.unwrap();
    let in_json = base64::engine::general_purpose::STANDARD.decode(read["image"].as_str().unwrap()).unwrap();
    assert_eq!(in_json, by_id, "both reads serve the stored form");
    assert_eq!(read["image_sha256"], written["image_sha256"]);
    by_id
}

#[tokio::test]
async fn a_photo_is_stored_without_its_gps_and_reads_return_what_the_answer_names() {
    let server = TestServer::start(ApiConfig::default()).await;
    let sent = phone_jpeg(1);
    let served = stored(&server, "ada", sent.clone()).await;
    assert!(!has(&served, &LATITUDE), "the GPS latitude was stored");
    assert!(!has(&served, b"Exif\0\0"), "an EXIF block was stored");
    assert!(served.len() < sent.len());
    assert_eq!(image::load_from_memory(&served).unwrap().dimensions(), (12, 6));

    let turned = stored(&server, "bob", phone_jpeg(6)).await;
    assert!(!has(&turned, &LATITUDE));
    assert_eq!(image::load_from_memory(&turned).unwrap().dimensions(), (6, 12), "orientation 6 applied");
}

#[tokio::test]
async fn with_keep_image_metadata_the_photo_is_stored_as_sent() {
    let server = TestServer::start(ApiConfig { keep_image_metadata: true, ..ApiConfig::default() }).await;
    let sent = phone_jpeg(6);
    assert_eq!(stored(&server, "ada", sent.clone()).await, sent);
}

#[tokio::test]
async fn images_over_the_pixel_or_frame_limits_are_refused_and_nothing_is_stored() {
    let server = TestServer::start(ApiConfig { max_image_frames: 2, ..ApiConfig::default() }).await;
    // A 50000×50000 PNG in 33 bytes: refused from its header.
    let bomb = common::png(50_000, 50_000);
    expect_error(server.put("ada", form("{}", bomb, "image/png")).await, 422, "image_too_many_pixels").await;
    // Three 1×1 frames, one more than allowed.
    let frame = b"\x2c\0\0\0\0\x01\0\x01\0\0\x02\x02\x44\x01\0";
    let gif = [b"GIF89a\x01\0\x01\0\0\0\0".as_slice(), &frame.repeat(3), b";"].concat();
    expect_error(server.put("ada", form("{}", gif, "image/gif")).await, 422, "image_too_many_frames").await;
    assert!(server.blobs.keys().is_empty(), "a refused image was stored");
    assert!(server.record("ada").await.is_none());
}
