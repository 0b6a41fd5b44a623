//! The API document: OpenAPI 3.1, generated from the handlers' annotations and the
//! bodies' types (`utoipa`), with every error answer taken from [`ERROR_CODES`].
//!
//! The derive gives the paths, parameters and success bodies. What its attributes
//! cannot say is added to the JSON here, from tables in this file: each operation's
//! error answers (their codes, meanings and a schema whose `code` lists exactly those
//! codes), the headers every answer carries, the multipart encoding of the upload and
//! the media types of image answers.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::error::{ERROR_CODES, ErrorCode};
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "profilestore",
        description = "User profiles (JSON metadata and one image) kept in a database and a blob store. \
            A read answers the metadata and the image one write submitted together, or no profile. \
            Every error is `{\"error\": {\"code\", \"message\"}}` with a stable code; every answer \
            carries `X-Request-Id`."
    ),
    paths(
        routes::put_profile,
        routes::get_profile,
        routes::delete_profile,
        crate::patch::patch_profile,
        routes::get_profile_image,
        routes::get_image,
        routes::healthz,
        routes::readyz,
        routes::openapi_document
    )
)]
struct ApiDoc;

const PROFILE: &str = "/v1/profiles/{user_id}";
const PROFILE_IMAGE: &str = "/v1/profiles/{user_id}/image";
const IMAGE: &str = "/v1/images/{image_id}";

/// Refusals of the upload itself, before any store is touched.
const UPLOAD: &[&str] = &[
    "malformed_multipart",
    "missing_part",
    "duplicate_part",
    "unknown_part",
    "invalid_metadata",
    "request_timeout",
    "metadata_too_large",
    "image_too_large",
    "payload_too_large",
    "unsupported_media_type",
    "unsupported_image",
    "metadata_not_object",
    "invalid_image",
    "image_too_many_pixels",
    "image_too_many_frames",
    "overloaded",
];
/// A path whose user id is refused, or so malformed that no route matches it.
const USER_PATH: &[&str] = &["invalid_user_id", "not_found", "bad_request"];
/// A write or a delete without the right token, where the server checks tokens.
const WRITER: &[&str] = &["unauthenticated", "invalid_token", "forbidden"];
/// A read without a valid token, where the server makes reads need one.
const READER: &[&str] = &["unauthenticated", "invalid_token"];
/// What a write or a delete can meet in the stores.
const WRITING: &[&str] =
    &["store_unavailable", "commit_unknown", "clock_out_of_bounds", "timings_changed", "deadline_exceeded", "internal"];
/// A change's `If-Match` / `If-None-Match`, malformed or not met.
const CONDITION: &[&str] = &["invalid_precondition", "precondition_failed"];
/// A write's `Idempotency-Key`, malformed or naming another request's write.
const IDEMPOTENCY: &[&str] = &["invalid_idempotency_key", "idempotency_key_reused"];
/// Refusals of a metadata patch itself.
const PATCH_BODY: &[&str] =
    &["invalid_metadata", "metadata_too_large", "metadata_not_object", "unsupported_media_type", "contended"];
/// What a read can meet in the stores.
const READING: &[&str] = &["store_unavailable", "contended", "deadline_exceeded", "dangling_reference", "internal"];

/// The per-client request rate, which every operation may meet.
const RATE: &[&str] = &["too_many_requests"];

/// The error codes each operation may answer, by path and method.
fn operation_errors() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    let join = |groups: &[&[&'static str]]| groups.concat();
    vec![
        (
            PROFILE,
            "put",
            join(&[USER_PATH, WRITER, CONDITION, IDEMPOTENCY, UPLOAD, &["too_many_uploads"], WRITING, RATE]),
        ),
        (PROFILE, "get", join(&[USER_PATH, READER, &["profile_not_found"], READING, RATE])),
        (PROFILE, "delete", join(&[USER_PATH, WRITER, CONDITION, &["profile_not_found"], WRITING, RATE])),
        (PROFILE, "patch", join(&[USER_PATH, WRITER, CONDITION, &["profile_not_found"], PATCH_BODY, WRITING, RATE])),
        (
            PROFILE_IMAGE,
            "get",
            join(&[USER_PATH, READER, &["profile_not_found", "range_not_satisfiable"], READING, RATE]),
        ),
        (
            IMAGE,
            "get",
            join(&[
                &["invalid_image_id", "not_found", "bad_request", "image_not_found", "range_not_satisfiable"],
                READER,
                &["store_unavailable", "deadline_exceeded", "internal"],
                RATE,
            ]),
        ),
        ("/readyz", "get", join(&[&["not_ready", "clock_out_of_bounds"], RATE])),
        ("/healthz", "get", RATE.to_vec()),
        ("/openapi.json", "get", RATE.to_vec()),
    ]
}

/// The media types an image is served with: the accepted formats, recognised by their
/// bytes, and `application/octet-stream` for bytes that match none.
const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp", "application/octet-stream"];

/// The document as JSON, built once.
pub(crate) fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// The document as served and committed: pretty JSON with a final newline, rendered
/// once.
pub fn openapi_json() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = serde_json::to_string_pretty(document()).expect("a JSON value always serialises");
        text.push('\n');
        text
    })
}

fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the derived document serialises");
    let rows: String =
        ERROR_CODES.iter().map(|e| format!("\n| {} | `{}` | {} |", e.status, e.code, e.meaning)).collect();
    let intro = doc["info"]["description"].as_str().unwrap_or_default();
    doc["info"]["description"] =
        format!("{intro}\n\n## Every error code\n\n| status | code | meaning |\n|---|---|---|{rows}").into();
    for (path, method, codes) in operation_errors() {
        let responses = &mut doc["paths"][path][method]["responses"];
        assert!(responses.is_object(), "{method} {path} is not among the derived paths");
        for (status, entries) in by_status(&codes) {
            responses[status.to_string()] = error_response(&entries);
        }
    }
    for path in [PROFILE_IMAGE, IMAGE] {
        describe_image_answers(&mut doc["paths"][path]["get"]);
    }
    describe_profile_versions(&mut doc["paths"][PROFILE]);
    doc["paths"][PROFILE]["put"]["requestBody"]["content"]["multipart/form-data"]["encoding"] = json!({
        "metadata": {"contentType": "application/json"},
        "image": {"contentType": IMAGE_TYPES[..4].join(", ")},
    });
    // Tokens are optional in the document: a deployment decides whether writes (and
    // reads) need one (docs/security.md).
    doc["components"]["securitySchemes"]["bearer"] = json!({
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT whose `sub` is the profile's user id, or with the admin scope (default \
            `profiles:admin`); writes and deletes need one unless the server runs without authentication, \
            reads only when the server is told so.",
    });
    for (path, method, _) in operation_errors().iter().filter(|(p, _, _)| p.starts_with("/v1/")) {
        doc["paths"][path][method]["security"] = json!([{}, {"bearer": []}]);
    }
    // Exactly the two parts: any other is refused `unknown_part`.
    doc["components"]["schemas"]["UploadForm"]["additionalProperties"] = false.into();
    add_request_id_header(&mut doc);
    doc
}

/// An image read: its media types, its validators and the 304 `If-None-Match` earns.
fn describe_image_answers(operation: &mut Value) {
    let etag = json!({"description": "the image id, quoted: a strong validator", "required": true, "schema": {"type": "string"}});
    let ok = &mut operation["responses"]["200"];
    ok["content"] = IMAGE_TYPES.iter().map(|t| (t.to_string(), json!({}))).collect();
    ok["headers"]["ETag"] = etag.clone();
    ok["headers"]["Cache-Control"] = json!({"required": true, "schema": {"type": "string"}});
    ok["headers"]["Accept-Ranges"] =
        json!({"description": "`bytes`: one byte range may be asked for", "schema": {"type": "string"}});
    operation["responses"]["206"] = json!({
        "description": "the one byte range `Range` asked for (a request for several gets the whole image)",
        "headers": {
            "Content-Range": {"required": true, "schema": {"type": "string"}},
            "ETag": etag.clone(),
        },
        "content": IMAGE_TYPES.iter().map(|t| (t.to_string(), json!({}))).collect::<serde_json::Map<_, _>>(),
    });
    operation["responses"]["304"] = json!({
        "description": "`If-None-Match` names this image: no body",
        "headers": {"ETag": etag},
    });
    let if_none_match = json!({
        "name": "If-None-Match",
        "in": "header",
        "required": false,
        "description": "ETags (or `*`); answered 304 when one names the image",
        "schema": {"type": "string"},
    });
    let range = json!({
        "name": "Range",
        "in": "header",
        "required": false,
        "description": "`bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-SUFFIX`: one range of the image",
        "schema": {"type": "string"},
    });
    let if_range = json!({
        "name": "If-Range",
        "in": "header",
        "required": false,
        "description": "the image's ETag: serve the range only if the image is still this one",
        "schema": {"type": "string"},
    });
    operation["parameters"].as_array_mut().expect("path parameters").extend([if_none_match, range, if_range]);
}

/// A profile's versions: the `ETag` its answers carry, the 304 a read's
/// `If-None-Match` earns, and the conditions a change may send.
fn describe_profile_versions(profile: &mut Value) {
    let etag = json!({"description": "the profile's version, quoted: a strong validator that changes with every write",
        "required": true, "schema": {"type": "string"}});
    // Each pattern is exactly what the server accepts on a change: a value outside it
    // is 400. A read's `If-None-Match` takes any text (one naming no version is 200).
    let header = |name: &str, description: &str, pattern: Option<&str>| {
        let mut schema = json!({"type": "string"});
        if let Some(pattern) = pattern {
            schema["pattern"] = pattern.into();
        }
        json!({"name": name, "in": "header", "required": false, "description": description, "schema": schema})
    };
    // Tags hold no comma: the server splits lists at commas. Empty: no condition.
    let entity_tags = r#"^[ \t]*(|\*|(W/)?"[!#-+\x2D-~]*"([ \t]*,[ \t]*(W/)?"[!#-+\x2D-~]*")*)[ \t]*$"#;
    for method in ["get", "put", "patch"] {
        profile[method]["responses"]["200"]["headers"]["ETag"] = etag.clone();
    }
    profile["get"]["responses"]["304"] =
        json!({"description": "`If-None-Match` names the profile's version: no body", "headers": {"ETag": etag}});
    profile["get"]["parameters"].as_array_mut().expect("path parameters").push(header(
        "If-None-Match",
        "ETags (or `*`); answered 304 when one names the profile's version",
        None,
    ));
    profile["put"]["parameters"].as_array_mut().expect("path parameters").push(header(
        "Idempotency-Key",
        "1 to 255 visible ASCII characters: a retry with the same key (within the server's `idempotency-key-ttl`) \
         gets the first write's answer instead of writing again",
        Some("^[!-~]{1,255}$"),
    ));
    profile["put"]["responses"]["200"]["headers"]["Idempotent-Replayed"] = json!({
        "description": "`true` when the answer repeats the earlier write this request's `Idempotency-Key` names",
        "schema": {"type": "string"},
    });
    for method in ["put", "delete", "patch"] {
        let parameters = profile[method]["parameters"].as_array_mut().expect("path parameters");
        parameters.push(header(
            "If-Match",
            "`*`, or ETags of profile versions: change only one of these (else 412)",
            Some(entity_tags),
        ));
        parameters.push(header(
            "If-None-Match",
            "`*`: change only where there is no profile (else 412)",
            Some(r"^[ \t]*\*?[ \t]*$"),
        ));
    }
}

/// `codes`' catalogue entries grouped by status.
fn by_status(codes: &[&str]) -> BTreeMap<u16, Vec<&'static ErrorCode>> {
    let mut grouped: BTreeMap<u16, Vec<&'static ErrorCode>> = BTreeMap::new();
    for code in codes {
        let entries: Vec<_> = ERROR_CODES.iter().filter(|e| e.code == *code).collect();
        assert!(!entries.is_empty(), "{code} is not in ERROR_CODES");
        for entry in entries {
            grouped.entry(entry.status).or_default().push(entry);
        }
    }
    grouped
}

/// One error answer: each code with its meaning, and a schema admitting exactly them.
fn error_response(entries: &[&ErrorCode]) -> Value {
    let description: Vec<String> = entries.iter().map(|e| format!("`{}`: {}", e.code, e.meaning)).collect();
    let codes: Vec<&str> = entries.iter().map(|e| e.code).collect();
    let mut response = json!({
        "description": description.join("\n\n"),
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": codes},
                    "message": {"type": "string", "description": "for people; may change between versions"},
                },
            }},
        }}},
    });
    if entries.iter().any(|e| e.status == 503) {
        response["headers"]["Retry-After"] = json!({
            "description": "seconds to wait before retrying",
            "required": true,
            "schema": {"type": "integer", "minimum": 0},
        });
    }
    response
}

/// Every answer carries the request's id.
fn add_request_id_header(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
        let Some(responses) = operation["responses"].as_object_mut() else { continue };
        for response in responses.values_mut() {
            response["headers"][crate::REQUEST_ID.as_str()] = json!({
                "description": "the request's `X-Request-Id` when well formed (1 to 64 of `A-Z a-z 0-9 . _ -`), else a fresh one",
                "required": true,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let generated = openapi_json();
        if std::env::var_os("PROFILESTORE_UPDATE_OPENAPI").is_some() {
            std::fs::write(committed_path, generated).unwrap();
        }
        let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the generated document; \
             run PROFILESTORE_UPDATE_OPENAPI=1 cargo test -p profilestore-api openapi to update it"
        );
    }

    #[test]
    fn the_readme_lists_exactly_the_documented_operations() {
        let readme = include_str!("../../../README.md");
        let section = readme.split("## HTTP API").nth(1).expect("README has an HTTP API section");
        let section = section.split("\n## ").next().unwrap_or_default();
        let mut listed: Vec<String> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `")?.split('`').next().map(str::to_owned))
            .filter(|cell| cell.contains(" /"))
            .flat_map(|cell| {
                // `GET` and `PUT` may share a row: "GET /x" or "GET, PUT /x".
                let (methods, path) = cell.rsplit_once(' ').unwrap();
                methods.split(", ").map(|m| format!("{m} {path}")).collect::<Vec<_>>()
            })
            .collect();
        listed.sort();
        let mut documented: Vec<String> = document()["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object().unwrap().keys().map(move |m| format!("{} {path}", m.to_uppercase()))
            })
            .collect();
        documented.sort();
        assert_eq!(listed, documented, "README's HTTP API table and the document differ");
    }

    #[test]
    fn every_catalogued_code_is_answered_by_some_operation_and_no_other_code_is() {
        let documented: Vec<&str> = operation_errors().into_iter().flat_map(|(_, _, codes)| codes).collect();
        for entry in ERROR_CODES {
            // 405 answers a method no operation has, so no operation documents it.
            if entry.code != "method_not_allowed" {
                assert!(documented.contains(&entry.code), "{} is answered by no operation", entry.code);
            }
        }
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let put = &doc["paths"][PROFILE]["put"]["responses"];
        assert_eq!(
            put["413"]["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]["enum"],
            json!(["metadata_too_large", "image_too_large", "payload_too_large"])
        );
        assert!(put["503"]["headers"]["Retry-After"]["required"].as_bool().unwrap());
        assert!(put["200"]["headers"][crate::REQUEST_ID.as_str()].is_object());
    }
}
