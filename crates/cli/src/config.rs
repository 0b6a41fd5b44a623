//! The optional TOML settings file, and how it fills in what flags and environment
//! variables left unset.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::args::{LogFormat, StoreArgs, TimingArgs, parse_delete_rate, parse_duration, parse_size};

/// Every setting the file may hold; keys are the long flag names. Unknown keys are
/// an error, so a typo never silently falls back to a default.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSettings {
    data_dir: Option<PathBuf>,
    database: Option<String>,
    blobs: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_skip_signature: Option<bool>,
    s3_list_concurrency: Option<std::num::NonZeroUsize>,
    request_timeout: Option<String>,
    min_blob_age: Option<String>,
    delete_delay: Option<String>,
    clock_skew: Option<String>,
    allow_unsafe_timing: Option<bool>,
    /// Address `serve` listens on.
    pub listen: Option<std::net::SocketAddr>,
    /// Address of `serve`'s admin listener, or `off`.
    pub admin_listen: Option<crate::args::Listen>,
    /// Address of the cleaner daemon's `/metrics`, or `off`.
    pub metrics_listen: Option<crate::args::Listen>,
    max_image_size: Option<SizeSetting>,
    /// Most pixels an image may have.
    pub max_image_pixels: Option<u64>,
    every: Option<String>,
    full_every: Option<String>,
    /// Delete even when the database holds no records.
    pub allow_empty_database: Option<bool>,
    /// Stop a cycle that would delete more than this share of the old blobs.
    pub max_unreferenced_fraction: Option<f64>,
    delete_rate: Option<String>,
    /// Keys per delete request.
    pub delete_batch_size: Option<usize>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    progress_interval: Option<String>,
}

/// A size written either as a number of bytes or as a string such as `"10MiB"`.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum SizeSetting {
    Bytes(u64),
    Text(String),
}

impl FileSettings {
    /// Reads `path`; errors name the file and the offending key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Fills every store setting `args` lacks from this file.
    pub fn fill_stores(&self, args: &mut StoreArgs) {
        fill(&mut args.data_dir, &self.data_dir);
        fill(&mut args.database, &self.database);
        fill(&mut args.blobs, &self.blobs);
        // Secrets stay out of files: credentials come from flags or the environment.
        fill(&mut args.s3.s3_endpoint, &self.s3_endpoint);
        fill(&mut args.s3.s3_region, &self.s3_region);
        args.s3.s3_skip_signature |= self.s3_skip_signature.unwrap_or(false);
        fill(&mut args.s3.s3_list_concurrency, &self.s3_list_concurrency);
    }

    /// `delete-rate`, if the file sets it.
    pub fn delete_rate(&self) -> anyhow::Result<Option<profilestore_cleaner::DeleteRate>> {
        self.delete_rate
            .as_deref()
            .map(parse_delete_rate)
            .transpose()
            .map_err(|e| anyhow::anyhow!("config file key delete-rate: {e}"))
    }

    /// Fills every timing setting `args` lacks from this file.
    pub fn fill_timings(&self, args: &mut TimingArgs) -> anyhow::Result<()> {
        for (slot, value, key) in [
            (&mut args.request_timeout, &self.request_timeout, "request-timeout"),
            (&mut args.min_blob_age, &self.min_blob_age, "min-blob-age"),
            (&mut args.delete_delay, &self.delete_delay, "delete-delay"),
            (&mut args.clock_skew, &self.clock_skew, "clock-skew"),
        ] {
            if slot.is_none()
                && let Some(text) = value
            {
                *slot = Some(parse_duration(text).map_err(|e| anyhow::anyhow!("config file key {key}: {e}"))?);
            }
        }
        args.allow_unsafe_timing |= self.allow_unsafe_timing.unwrap_or(false);
        Ok(())
    }

    /// `max-image-size` in bytes, if the file sets it.
    pub fn max_image_size(&self) -> anyhow::Result<Option<u64>> {
        match &self.max_image_size {
            None => Ok(None),
            Some(SizeSetting::Bytes(n)) => Ok(Some(*n)),
            Some(SizeSetting::Text(s)) => {
                parse_size(s).map(Some).map_err(|e| anyhow::anyhow!("config file key max-image-size: {e}"))
            }
        }
    }

    /// `full-every`, if the file sets it.
    pub fn full_every(&self) -> anyhow::Result<Option<std::time::Duration>> {
        self.full_every
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| anyhow::anyhow!("config file key full-every: {e}"))
    }

    /// `every`, if the file sets it.
    pub fn every(&self) -> anyhow::Result<Option<std::time::Duration>> {
        self.every.as_deref().map(parse_duration).transpose().map_err(|e| anyhow::anyhow!("config file key every: {e}"))
    }
}

impl FileSettings {
    /// How often `clean` and `audit` log progress: the flag, else the file, else the
    /// default; never zero.
    pub fn progress_interval(&self, args: &crate::args::ProgressArgs) -> anyhow::Result<std::time::Duration> {
        let from_file = self.progress_interval.as_deref().map(parse_duration).transpose();
        let from_file = from_file.map_err(|e| anyhow::anyhow!("config file key progress-interval: {e}"))?;
        let interval = args.progress_interval.or(from_file).unwrap_or(crate::progress::DEFAULT_INTERVAL);
        anyhow::ensure!(!interval.is_zero(), "progress-interval must be more than zero");
        Ok(interval)
    }
}

fn fill<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
    if slot.is_none() {
        slot.clone_from(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_file_fills_only_what_flags_left_unset() {
        let file: FileSettings = toml::from_str(
            r#"
            min-blob-age = "3h"
            delete-delay = "90m"
            database = "sqlite://from-file.db"
            max-image-size = "2MiB"
            delete-rate = "100/s"
            s3-list-concurrency = 4
            "#,
        )
        .unwrap();
        let mut timings = TimingArgs { delete_delay: Some(Duration::from_secs(7200)), ..Default::default() };
        file.fill_timings(&mut timings).unwrap();
        assert_eq!(timings.min_blob_age, Some(Duration::from_secs(3 * 3600)));
        assert_eq!(timings.delete_delay, Some(Duration::from_secs(7200)), "the flag wins");
        assert_eq!(timings.request_timeout, None);
        let mut stores = StoreArgs { database: Some("sqlite://flag.db".into()), ..Default::default() };
        file.fill_stores(&mut stores);
        assert_eq!(stores.database.as_deref(), Some("sqlite://flag.db"));
        assert_eq!(file.max_image_size().unwrap(), Some(2 * 1024 * 1024));
        assert_eq!(file.delete_rate().unwrap().map(|r| r.to_string()), Some("100/1s".to_owned()));
        assert_eq!(stores.s3.s3_list_concurrency.map(|n| n.get()), Some(4));
    }

    #[test]
    fn the_progress_interval_comes_from_the_flag_then_the_file_and_is_never_zero() {
        use crate::args::ProgressArgs;
        let file: FileSettings = toml::from_str("progress-interval = \"30s\"").unwrap();
        assert_eq!(file.progress_interval(&ProgressArgs::default()).unwrap(), Duration::from_secs(30));
        let flag = ProgressArgs { progress_interval: Some(Duration::from_secs(2)) };
        assert_eq!(file.progress_interval(&flag).unwrap(), Duration::from_secs(2));
        let default = FileSettings::default().progress_interval(&ProgressArgs::default()).unwrap();
        assert_eq!(default, crate::progress::DEFAULT_INTERVAL);
        let zero = ProgressArgs { progress_interval: Some(Duration::ZERO) };
        assert!(file.progress_interval(&zero).unwrap_err().to_string().contains("progress-interval"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_that_name_the_key() {
        assert!(toml::from_str::<FileSettings>("min-blob-ag = \"2h\"").is_err());
        let file: FileSettings = toml::from_str("clock-skew = \"a while\"").unwrap();
        let err = file.fill_timings(&mut TimingArgs::default()).unwrap_err().to_string();
        assert!(err.contains("clock-skew"), "{err}");
    }
}
