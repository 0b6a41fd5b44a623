//! The optional TOML settings file. It holds the same settings groups the command
//! line does (`crate::args::settings`), deserialised by their one definition; each
//! command fills what its flags and environment variables left unset from them
//! ([`Layer`](crate::args::Layer)).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

use crate::args::{
    AuthSettings, CleanSettings, ClockCheckArgs, LogArgs, ProgressArgs, ServeSettings, StoreArgs, TimingArgs,
};

/// Every setting the file may hold; keys are the long flag names. Unknown keys are
/// an error, so a typo never silently falls back to a default.
#[derive(Debug, Default, serde::Deserialize)]
pub struct FileSettings {
    /// `log-format`.
    #[serde(flatten)]
    pub log: LogArgs,
    /// Where the stores are (S3 credentials never come from the file).
    #[serde(flatten)]
    pub stores: StoreArgs,
    /// How to reach S3, moved into `stores.s3` once read: serde hands a group nested
    /// in a flattened group every key, not only its own, so the leftovers could not
    /// be told apart; read side by side, each group takes just its keys.
    #[serde(flatten)]
    s3: crate::args::S3Args,
    /// The cluster-wide timings.
    #[serde(flatten)]
    pub timings: TimingArgs,
    /// The clock check's interval.
    #[serde(flatten)]
    pub clocks: ClockCheckArgs,
    /// The progress line's interval.
    #[serde(flatten)]
    pub progress: ProgressArgs,
    /// `serve`'s own settings.
    #[serde(flatten)]
    pub serve: ServeSettings,
    /// `serve`'s authentication.
    #[serde(flatten)]
    pub auth: AuthSettings,
    /// `clean`'s own settings.
    #[serde(flatten)]
    pub clean: CleanSettings,
    /// Every key no group took. serde's `deny_unknown_fields` does not work beside
    /// `flatten`, so the leftovers are collected here and refused by [`parse`](Self::parse).
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

impl FileSettings {
    /// Reads `path`; errors name the file and the offending key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses a file's text; errors name the offending key.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let table: toml::Table = toml::from_str(text)?;
        let mut settings = match Self::from_table(table.clone()) {
            Ok(settings) => settings,
            // Flattened groups lose the key a value failed under: find it by trying
            // each key alone (only on this error path).
            Err(e) => {
                let bad = table.into_iter().find_map(|(key, value)| {
                    Self::from_table(toml::Table::from_iter([(key.clone(), value)])).err().map(|e| (key, e))
                });
                return Err(match bad {
                    Some((key, e)) => anyhow::anyhow!("key {key}: {}", e.message()),
                    None => e.into(),
                });
            }
        };
        settings.stores.s3 = std::mem::take(&mut settings.s3);
        if let Some(key) = settings.unknown.keys().next() {
            anyhow::bail!(
                "unknown key {key:?}: keys are the long names of the settings flags, e.g. `min-blob-age = \"2h\"` \
                 (S3 credentials and one-off flags such as --dry-run are not read from the file)"
            );
        }
        Ok(settings)
    }

    fn from_table(table: toml::Table) -> Result<Self, toml::de::Error> {
        toml::Value::Table(table).try_into()
    }

    /// Whether `key` is a setting the file may hold (whatever its value).
    #[cfg(test)]
    pub fn accepts_key(key: &str) -> bool {
        // A known key with the wrong type of value fails; an unknown one lands in `unknown`.
        Self::from_table(toml::Table::from_iter([(key.to_owned(), toml::Value::Table(toml::Table::new()))]))
            .map_or(true, |settings| settings.unknown.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Layer;
    use std::time::Duration;

    #[test]
    fn the_file_fills_only_what_flags_left_unset() {
        let file = FileSettings::parse(
            r#"
            min-blob-age = "3h"
            delete-delay = "90m"
            database = "sqlite://from-file.db"
            max-image-size = "2MiB"
            delete-rate = "100/s"
            s3-list-concurrency = 4
            allow-empty-database = true
            "#,
        )
        .unwrap();
        let mut timings = TimingArgs { delete_delay: Some(Duration::from_secs(7200)), ..Default::default() };
        timings.fill_from(&file.timings);
        assert_eq!(timings.min_blob_age, Some(Duration::from_secs(3 * 3600)));
        assert_eq!(timings.delete_delay, Some(Duration::from_secs(7200)), "the flag wins");
        assert_eq!(timings.request_timeout, None);
        let mut stores = StoreArgs { database: Some("sqlite://flag.db".into()), ..Default::default() };
        stores.fill_from(&file.stores);
        assert_eq!(stores.database.as_deref(), Some("sqlite://flag.db"));
        assert_eq!(stores.s3.s3_list_concurrency.map(|n| n.get()), Some(4), "nested groups are filled too");
        let mut clean = CleanSettings::default();
        clean.fill_from(&file.clean);
        assert_eq!(clean.delete_rate.map(|r| r.to_string()), Some("100/1s".to_owned()));
        assert!(clean.allow_empty_database, "a switch the file turns on is on");
        assert_eq!(file.serve.max_image_size.map(|s| s.as_u64()), Some(2 * 1024 * 1024));
    }

    #[test]
    fn a_file_may_hold_every_setting() {
        let file = FileSettings::parse(
            r#"
            log-format = "json"
            data-dir = "/var/lib/profilestore"
            database = "postgres://profilestore@db/profilestore"
            blobs = "s3://avatars/profiles"
            s3-endpoint = "http://127.0.0.1:9000"
            s3-region = "eu-west-1"
            s3-skip-signature = true
            s3-list-concurrency = 16
            request-timeout = "30m"
            min-blob-age = "1h 30m"
            delete-delay = "45m"
            clock-skew = "2m"
            allow-unsafe-timing = false
            clock-check-interval = "5s"
            progress-interval = "1m"
            listen = "0.0.0.0:8080"
            max-image-size = "5MiB"
            max-image-pixels = 1000000
            admin-listen = "off"
            every = "10m"
            full-every = "1d"
            allow-empty-database = false
            max-unreferenced-fraction = 0.5
            delete-rate = "30000/min"
            delete-batch-size = 500
            metrics-listen = "127.0.0.1:9465"
            "#,
        )
        .unwrap();
        assert_eq!(file.log.log_format, Some(crate::args::LogFormat::Json));
        assert_eq!(file.stores.s3.s3_region.as_deref(), Some("eu-west-1"), "S3 settings land in the stores group");
        assert!(file.stores.s3.s3_skip_signature);
        assert_eq!(file.timings.overrides().min_blob_age, Some(Duration::from_secs(5400)));
        assert_eq!(file.clocks.clock_check_interval, Some(Duration::from_secs(5)));
        assert_eq!(file.serve.admin_listen, Some(crate::args::Listen::Off));
        assert_eq!(file.clean.full_every, Some(Duration::from_secs(86400)));
        assert_eq!(file.clean.delete_batch_size, Some(500));
    }

    #[test]
    fn sizes_and_rates_may_be_bare_numbers() {
        let file = FileSettings::parse("max-image-size = 1000000\ndelete-rate = 500\n").unwrap();
        assert_eq!(file.serve.max_image_size.map(|s| s.as_u64()), Some(1_000_000));
        assert_eq!(file.clean.delete_rate.map(|r| r.to_string()), Some("500/1s".to_owned()));
    }

    #[test]
    fn the_progress_interval_comes_from_the_flag_then_the_file_and_is_never_zero() {
        let file = FileSettings::parse("progress-interval = \"30s\"").unwrap();
        let mut unset = ProgressArgs::default();
        unset.fill_from(&file.progress);
        assert_eq!(unset.interval().unwrap(), Duration::from_secs(30));
        let mut flag = ProgressArgs { progress_interval: Some(Duration::from_secs(2)) };
        flag.fill_from(&file.progress);
        assert_eq!(flag.interval().unwrap(), Duration::from_secs(2));
        assert_eq!(ProgressArgs::default().interval().unwrap(), crate::progress::DEFAULT_INTERVAL);
        let zero = ProgressArgs { progress_interval: Some(Duration::ZERO) };
        assert!(zero.interval().unwrap_err().to_string().contains("progress-interval"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_that_name_the_key() {
        let unknown = FileSettings::parse("min-blob-ag = \"2h\"").unwrap_err().to_string();
        assert!(unknown.contains("min-blob-ag") && unknown.contains("min-blob-age = \"2h\""), "{unknown}");
        let secret = FileSettings::parse("s3-secret-access-key = \"hunter2\"").unwrap_err().to_string();
        assert!(secret.contains("s3-secret-access-key") && !secret.contains("hunter2"), "{secret}");
        for (text, key, example) in [
            ("database = \"x\"\nclock-skew = \"a while\"", "clock-skew", "1h 30m"),
            ("max-image-size = \"big\"", "max-image-size", "10MiB"),
            ("delete-rate = \"fast\"", "delete-rate", "500/s"),
            ("admin-listen = \"localhost\"", "admin-listen", "127.0.0.1:9464"),
            ("max-unreferenced-fraction = 1.5", "max-unreferenced-fraction", "0.5"),
            ("s3-list-concurrency = 0", "s3-list-concurrency", ""),
            ("allow-unsafe-timing = \"yes\"", "allow-unsafe-timing", ""),
        ] {
            let err = format!("{:#}", FileSettings::parse(text).unwrap_err());
            assert!(err.contains(&format!("key {key}")) && err.contains(example), "{text}: {err}");
        }
    }

    #[test]
    fn only_settings_are_keys() {
        assert!(FileSettings::accepts_key("min-blob-age"));
        assert!(FileSettings::accepts_key("s3-region"));
        assert!(!FileSettings::accepts_key("s3-access-key-id"));
        assert!(!FileSettings::accepts_key("dry-run"));
    }
}
