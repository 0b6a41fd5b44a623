//! The parts of `bucket_config` that need no server: reading S3's XML answers and
//! deciding which lifecycle rules expire a store's noncurrent versions. The requests
//! themselves run against a real server in `tests/s3_versioning.rs`.

use reqwest::StatusCode;

use super::*;

fn rules(xml: &str) -> Vec<LifecycleRule> {
    parse::<xml::LifecycleConfiguration>(xml.as_bytes(), "test")
        .unwrap()
        .rules
        .into_iter()
        .map(xml::Rule::into_rule)
        .collect()
}

#[test]
fn lifecycle_rules_are_read_in_every_filter_form() {
    let found = rules(
        r#"<?xml version="1.0" encoding="UTF-8"?>
        <LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
          <Rule><ID>all</ID><Filter/><Status>Enabled</Status>
            <NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays></NoncurrentVersionExpiration></Rule>
          <Rule><ID>photos</ID><Filter><Prefix>photos/</Prefix></Filter><Status>Disabled</Status>
            <Expiration><Days>30</Days></Expiration></Rule>
          <Rule><Prefix>old/</Prefix><Status>Enabled</Status>
            <NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>
              <NewerNoncurrentVersions>2</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>
          <Rule><ID>tagged</ID><Filter><And><Prefix>p/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag>
            <Tag><Key>k2</Key><Value>v2</Value></Tag></And></Filter><Status>Enabled</Status>
            <NoncurrentVersionExpiration><NoncurrentDays>3</NoncurrentDays></NoncurrentVersionExpiration></Rule>
          <Rule><ID>big</ID><Filter><ObjectSizeGreaterThan>1000</ObjectSizeGreaterThan></Filter>
            <Status>Enabled</Status></Rule>
        </LifecycleConfiguration>"#,
    );
    let rule = |id: Option<&str>, enabled, prefix: &str, narrowed, days, newer| LifecycleRule {
        id: id.map(str::to_owned),
        enabled,
        prefix: prefix.to_owned(),
        narrowed,
        noncurrent_days: days,
        newer_noncurrent_versions: newer,
    };
    assert_eq!(
        found,
        [
            rule(Some("all"), true, "", false, Some(7), None),
            rule(Some("photos"), false, "photos/", false, None, None),
            rule(None, true, "old/", false, Some(1), Some(2)),
            rule(Some("tagged"), true, "p/", true, Some(3), None),
            rule(Some("big"), true, "", true, None, None),
        ]
    );
    assert_eq!(rules("<LifecycleConfiguration/>"), []);
}

#[test]
fn only_an_enabled_unfiltered_rule_over_the_whole_prefix_expires_noncurrent_versions() {
    let rule = LifecycleRule {
        id: None,
        enabled: true,
        prefix: "prod/".into(),
        narrowed: false,
        noncurrent_days: Some(5),
        newer_noncurrent_versions: None,
    };
    assert_eq!(rule.expires_noncurrent_under("prod/avatars"), Some(5));
    assert_eq!(rule.expires_noncurrent_under("prod"), Some(5));
    assert_eq!(rule.expires_noncurrent_under("production"), None, "the rule's prefix ends at a slash");
    assert_eq!(rule.expires_noncurrent_under(""), None, "the root holds keys outside prod/");
    let whole = LifecycleRule { prefix: String::new(), ..rule.clone() };
    assert_eq!(whole.expires_noncurrent_under(""), Some(5));
    // A rule that keeps the newest noncurrent version keeps a deleted photo's only one.
    let keeps = LifecycleRule { newer_noncurrent_versions: Some(1), ..whole.clone() };
    assert_eq!(keeps.expires_noncurrent_under("p"), None);
    assert_eq!(
        LifecycleRule { newer_noncurrent_versions: Some(0), ..whole.clone() }.expires_noncurrent_under("p"),
        Some(5)
    );
    assert_eq!(LifecycleRule { enabled: false, ..whole.clone() }.expires_noncurrent_under("p"), None);
    assert_eq!(LifecycleRule { narrowed: true, ..whole.clone() }.expires_noncurrent_under("p"), None);
    assert_eq!(LifecycleRule { noncurrent_days: None, ..whole }.expires_noncurrent_under("p"), None);
}

#[test]
fn refusals_carry_s3_code_and_message_and_never_more_than_a_bit_of_a_foreign_body() {
    let xml = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>x</RequestId></Error>"#;
    let e = refused("reading", StatusCode::FORBIDDEN, xml);
    assert_eq!(e.code(), Some("AccessDenied"));
    assert_eq!(e.to_string(), "reading: the S3 server answered 403 AccessDenied: Access Denied");
    let e = refused("reading", StatusCode::NOT_IMPLEMENTED, &[b'x'; 1000]);
    assert_eq!(e.code(), None);
    assert_eq!(e.to_string(), format!("reading: the S3 server answered 501: {}", "x".repeat(200)));
    assert!(refused("reading", StatusCode::BAD_GATEWAY, b"").to_string().ends_with("(no body)"));
}

#[test]
fn clients_are_refused_without_explicit_credentials_before_any_request() {
    let err = BucketConfigClient::new("bucket", &S3Options::default()).unwrap_err();
    assert!(matches!(err, BucketConfigError::Misconfigured(_)), "{err}");
    assert!(err.to_string().contains("metadata endpoint"), "{err}");
    let options = S3Options {
        endpoint: Some("ftp://host".into()),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        ..S3Options::default()
    };
    assert!(BucketConfigClient::new("bucket", &options).is_err());
    assert!(
        BucketConfigClient::new("Bad_Bucket", &S3Options { skip_signature: true, ..S3Options::default() }).is_err()
    );
}

#[test]
fn buckets_are_addressed_as_the_blob_store_addresses_them() {
    let signed = |endpoint: Option<&str>| {
        let options = S3Options {
            endpoint: endpoint.map(str::to_owned),
            region: Some("eu-west-1".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            ..S3Options::default()
        };
        BucketConfigClient::new("photos/prod", &options).unwrap().url.to_string()
    };
    assert_eq!(signed(Some("http://127.0.0.1:9000")), "http://127.0.0.1:9000/photos");
    assert_eq!(signed(Some("https://s3.example/base/")), "https://s3.example/base/photos");
    assert_eq!(signed(None), "https://photos.s3.eu-west-1.amazonaws.com/");
}
