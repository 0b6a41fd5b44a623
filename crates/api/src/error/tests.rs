//! Every refusal is catalogued, and every catalogued code is answered by something.

use super::*;
use profilestore_core::error::StoreError;

#[test]
fn service_errors_map_to_statuses_by_kind() {
    let unavailable: ApiError = ServiceError::Unavailable(StoreError::unavailable("db host 10.1.2.3 down")).into();
    assert_eq!((unavailable.status(), unavailable.code()), (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"));
    assert!(!unavailable.message.contains("10.1.2.3"), "store detail leaked: {}", unavailable.message);
    assert_eq!(unavailable.retry_after, Some(RETRY_AFTER_SECS));

    let late: ApiError = ServiceError::DeadlineExceeded.into();
    assert_eq!((late.status(), late.code()), (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"));
    let unknown = ApiError::from(ServiceError::CommitUnknown("ran out of time".into()));
    assert_eq!((unknown.status(), unknown.code()), (StatusCode::SERVICE_UNAVAILABLE, "commit_unknown"));
    assert!(unknown.to_string().contains("may or may not"), "{unknown}");

    let internal: ApiError = ServiceError::Internal("row 7 unreadable".into()).into();
    assert_eq!((internal.status(), internal.code()), (StatusCode::INTERNAL_SERVER_ERROR, "internal"));
    assert!(!internal.message.contains("row 7"));

    let invalid: ApiError = ServiceError::InvalidInput(InvalidInput::new("invalid_user_id", "bad")).into();
    assert_eq!((invalid.status(), invalid.code()), (StatusCode::BAD_REQUEST, "invalid_user_id"));
}

#[test]
fn statuses_axum_answers_itself_get_a_code() {
    assert_eq!(ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE).code(), "payload_too_large");
    let conflict = ApiError::for_status(StatusCode::CONFLICT);
    assert_eq!((conflict.status(), conflict.code()), (StatusCode::BAD_REQUEST, "bad_request"));
    let bad_gateway = ApiError::for_status(StatusCode::BAD_GATEWAY);
    assert_eq!((bad_gateway.status(), bad_gateway.code()), (StatusCode::INTERNAL_SERVER_ERROR, "internal"));
}

/// Every refusal the API can make, one per variant of each cause.
fn every_refusal() -> Vec<ApiError> {
    let json_error = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
    let uploads = [
        UploadError::NotMultipart,
        UploadError::Malformed("x"),
        UploadError::BodyTooLarge { limit: 1 },
        UploadError::MissingPart("image"),
        UploadError::DuplicatePart("image"),
        UploadError::UnknownPart,
        UploadError::MetadataTooLarge { limit: 1 },
        UploadError::MetadataNotJson(json_error),
        UploadError::MetadataNotObject,
        UploadError::ImageTooLarge { limit: 1 },
        UploadError::Image(ImageError::Unrecognised),
        UploadError::Image(ImageError::Unreadable { format: "image/png" }),
        UploadError::Image(ImageError::TooManyPixels { width: 2, height: 2, limit: 1 }),
        UploadError::TooSlow,
    ];
    let photos = [
        PhotoError::Header(ImageError::Unrecognised),
        PhotoError::Malformed { format: "image/png", why: "x" },
        PhotoError::TooManyFrames { frames: 2, limit: 1 },
        PhotoError::Undecodable { format: "image/jpeg" },
        PhotoError::DecodingLimit { format: "image/jpeg" },
        PhotoError::Overloaded,
    ];
    let user = profilestore_core::ids::UserId::parse("u").unwrap();
    let image_id = "01900000-0000-7000-8000-000000000001".parse().unwrap();
    let services = [
        ServiceError::InvalidInput(InvalidInput::new("invalid_user_id", "x")),
        ServiceError::InvalidInput(InvalidInput::new("invalid_image_id", "x")),
        ServiceError::DeadlineExceeded,
        ServiceError::Unavailable(StoreError::unavailable("x")),
        ServiceError::DanglingReference { user, image_id },
        ServiceError::CommitUnknown("x".into()),
        ServiceError::ClockOutOfBounds("x".into()),
        ServiceError::TimingsChanged("x".into()),
        ServiceError::Contended,
        ServiceError::Internal("x".into()),
        ServiceError::PreconditionFailed,
    ];
    let statuses = (400..600).filter_map(|s| StatusCode::from_u16(s).ok()).map(ApiError::for_status);
    let named = [
        ApiError::profile_not_found(),
        ApiError::image_not_found(),
        ApiError::route_not_found(),
        ApiError::method_not_allowed(),
        ApiError::not_ready(),
        ApiError::internal(),
        ApiError::unauthenticated(),
        ApiError::invalid_token(),
        ApiError::forbidden(),
        ApiError::overloaded(),
        ApiError::too_many_requests(1),
        ApiError::too_many_uploads(),
        ApiError::range_not_satisfiable(),
        ApiError::invalid_precondition("x"),
        ApiError::invalid_idempotency_key("x"),
        ApiError::idempotency_key_reused(),
    ];
    uploads
        .into_iter()
        .map(ApiError::from)
        .chain(photos.into_iter().map(ApiError::from))
        .chain(services.into_iter().map(ApiError::from))
        .chain(statuses)
        .chain(named)
        .collect()
}

#[test]
fn every_refusal_is_catalogued_and_every_catalogued_code_is_made() {
    let refusals = every_refusal();
    for refusal in &refusals {
        assert!(
            catalogued(refusal.status, refusal.code).is_some(),
            "{} {} is not catalogued",
            refusal.status,
            refusal.code
        );
    }
    for entry in ERROR_CODES {
        let made = refusals.iter().any(|r| r.status.as_u16() == entry.status && r.code == entry.code);
        assert!(made, "{} {} is catalogued but nothing answers it", entry.status, entry.code);
    }
}
