//! The catalogue of every error a client can receive: status, stable code, meaning.

use axum::http::StatusCode;

/// One answer a client can receive: its status, its stable code and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorCode {
    /// The HTTP status it is answered with.
    pub(crate) status: u16,
    /// The stable machine-readable code in `{"error": {"code": ...}}`.
    pub(crate) code: &'static str,
    /// What it means for the client, for the API document.
    pub(crate) meaning: &'static str,
}

const fn code(status: u16, code: &'static str, meaning: &'static str) -> ErrorCode {
    ErrorCode { status, code, meaning }
}

/// Every error a client can receive, the source of the API document's error answers.
/// An answer with a status and code missing here fails debug builds (and so every
/// test that reaches it), so the document cannot fall behind the code.
pub(crate) const ERROR_CODES: &[ErrorCode] = &[
    code(400, "invalid_user_id", "the user id in the path is not 1 to 128 characters of `[A-Za-z0-9._-]`"),
    code(400, "invalid_image_id", "the image id in the path is not the lowercase hyphenated form of a UUIDv7"),
    code(400, "malformed_multipart", "no boundary, broken framing or part headers, no parts, or an unreadable body"),
    code(400, "missing_part", "the upload lacks its `metadata` or its `image` part"),
    code(400, "duplicate_part", "the upload has two `metadata` or two `image` parts"),
    code(400, "unknown_part", "the upload has a part other than `metadata` and `image`"),
    code(400, "invalid_metadata", "the metadata part is not JSON"),
    code(
        400,
        "invalid_idempotency_key",
        "`Idempotency-Key` is not 1 to 255 visible ASCII characters, or is sent twice",
    ),
    code(400, "bad_request", "the request is malformed in a way the HTTP layer refused before the API saw it"),
    code(
        400,
        "invalid_precondition",
        "an `If-Match` tag that is not a quoted string, or `If-None-Match` with tags on a change (only `*`)",
    ),
    code(401, "unauthenticated", "the request carries no bearer token and this server needs one (`WWW-Authenticate`)"),
    code(
        401,
        "invalid_token",
        "the bearer token is not valid here: bad signature or algorithm, expired, not yet valid, wrong issuer or audience",
    ),
    code(
        403,
        "forbidden",
        "the token is valid but may not write this profile (another user's, without the admin scope)",
    ),
    code(404, "profile_not_found", "there is no profile for this user"),
    code(404, "image_not_found", "there is no image with this id"),
    code(404, "not_found", "no route matches the path"),
    code(405, "method_not_allowed", "the route exists, the method does not; `Allow` lists the methods"),
    code(408, "request_timeout", "the upload's body did not arrive within the request timeout; nothing was stored"),
    code(
        412,
        "precondition_failed",
        "the profile is not a version `If-Match` names, or exists despite `If-None-Match: *`; nothing changed",
    ),
    code(413, "metadata_too_large", "the metadata (part, or patched) is over 64 KiB"),
    code(413, "image_too_large", "the image part is over the server's `max-image-size`"),
    code(413, "payload_too_large", "the whole body is over the image and metadata limits plus 16 KiB of framing"),
    code(416, "range_not_satisfiable", "the `Range` starts past the image's end (`Content-Range` gives its length)"),
    code(
        415,
        "unsupported_media_type",
        "the body is not what the operation takes: `multipart/form-data` for a PUT, JSON for a PATCH",
    ),
    code(415, "unsupported_image", "the image bytes are not PNG, JPEG, GIF or WebP, whatever was declared"),
    code(
        422,
        "idempotency_key_reused",
        "this `Idempotency-Key` names an earlier write of another request (image or metadata); nothing was written",
    ),
    code(422, "metadata_not_object", "the metadata (or the patch) is JSON, but not an object"),
    code(
        422,
        "invalid_image",
        "recognised magic bytes, but no usable dimensions in the image's header, a structure (segments, chunks, blocks) \
         that cannot be walked to remove its metadata, or pixels that do not decode when its EXIF orientation is applied",
    ),
    code(
        422,
        "image_too_many_pixels",
        "width × height is over the server's `max-image-pixels`, or applying its EXIF orientation would need more memory \
         than that many pixels allow",
    ),
    code(
        422,
        "image_too_many_frames",
        "the image has more frames (APNG, animated WebP, GIF) than the server's `max-image-frames`",
    ),
    code(429, "too_many_requests", "this client is over the server's `max-requests-per-client`; see `Retry-After`"),
    code(429, "too_many_uploads", "this client has its `max-uploads-per-client` uploads in progress; retry later"),
    code(500, "dangling_reference", "the profile names an image missing from the blob store; an operator must look"),
    code(500, "internal", "anything else; the details are logged, never answered"),
    code(503, "store_unavailable", "a store failed or did not answer; nothing is known to have changed; retry"),
    code(503, "contended", "the profile changed repeatedly while it was being read; retry"),
    code(
        503,
        "commit_unknown",
        "the write's commit was under way when it failed: read the profile to learn whether it changed (retrying is safe)",
    ),
    code(
        503,
        "clock_out_of_bounds",
        "this server's clock is off from a store's by more than the bound; writes resume by themselves",
    ),
    code(503, "timings_changed", "the cluster's timings changed while the request ran; nothing was done; retry"),
    code(503, "not_ready", "a store did not answer the readiness probe"),
    code(503, "overloaded", "the server is reading as many uploads (or upload bytes) as it may at once; retry"),
    code(504, "deadline_exceeded", "the request reached its `request-timeout`; nothing was written after it"),
];

/// The catalogued entry for `status` and `code`, if there is one.
pub(crate) fn catalogued(status: StatusCode, code: &str) -> Option<&'static ErrorCode> {
    ERROR_CODES.iter().find(|c| c.status == status.as_u16() && c.code == code)
}
