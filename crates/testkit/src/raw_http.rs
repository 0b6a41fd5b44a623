//! Raw HTTP/1.1 requests for tests that write to a socket themselves (slow, cut short
//! or oversized clients), where an HTTP library would not let them misbehave.

/// The multipart boundary of [`multipart_body`] and [`put_head`].
pub const BOUNDARY: &str = "b";

/// A profile upload's body: a `metadata` part holding `metadata`, then an `image` part
/// holding `image`.
pub fn multipart_body(metadata: &str, image: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"metadata\"\r\n\r\n{metadata}\r\n--{BOUNDARY}\r\n\
         content-disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The head of `PUT /v1/profiles/{user}` announcing a multipart body of `length`
/// bytes, with `extra` header lines (each ending in `\r\n`).
pub fn put_head(user: &str, length: usize, extra: &str) -> String {
    format!(
        "PUT /v1/profiles/{user} HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary={BOUNDARY}\r\n\
         content-length: {length}\r\n{extra}\r\n"
    )
}
