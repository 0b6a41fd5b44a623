//! The settings of who may write: bearer tokens and the key that verifies them.

use std::path::PathBuf;
use std::time::Duration;

use super::{Layer, duration, parse_duration};

/// Whether `serve` checks bearer tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Writes and deletes need a bearer token verified with the configured key.
    Token,
    /// No authentication at all: anyone who reaches the server may change any profile.
    None,
}

settings_group! {
    /// Who may write: bearer tokens (JWT) and the key that verifies them
    /// (docs/security.md).
    pub struct AuthSettings {
        /// `token` (needs one key below) or `none` (anyone may change any profile; warned
        /// about at every start). [default: `token` when a key is set; otherwise open
        /// writes, allowed only while every listener is on loopback]
        #[arg(long, env = "PROFILESTORE_AUTH", value_enum, value_name = "MODE")]
        pub auth: Option<AuthMode>,

        /// A file holding the HS256 shared secret (at least 32 bytes; a final newline
        /// is not part of it).
        #[arg(long, env = "PROFILESTORE_AUTH_HS256_SECRET_FILE", value_name = "FILE")]
        pub auth_hs256_secret_file: Option<PathBuf>,

        /// A PEM public key: RSA (tokens signed RS256) or P-256 EC (ES256).
        #[arg(long, env = "PROFILESTORE_AUTH_PUBLIC_KEY_FILE", value_name = "FILE")]
        pub auth_public_key_file: Option<PathBuf>,

        /// A JWKS file: tokens name their key by `kid`; each key's `alg` is the only one
        /// accepted with it.
        #[arg(long, env = "PROFILESTORE_AUTH_JWKS_FILE", value_name = "FILE")]
        pub auth_jwks_file: Option<PathBuf>,

        /// The `iss` a token must carry. [default: not checked]
        #[arg(long, env = "PROFILESTORE_AUTH_ISSUER", value_name = "ISSUER")]
        pub auth_issuer: Option<String>,

        /// The `aud` a token must carry. [default: not checked]
        #[arg(long, env = "PROFILESTORE_AUTH_AUDIENCE", value_name = "AUDIENCE")]
        pub auth_audience: Option<String>,

        /// How far past `exp` (or before `nbf`) a token is still accepted. [default: 1m]
        #[arg(long, env = "PROFILESTORE_AUTH_LEEWAY", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub auth_leeway: Option<Duration>,

        /// The scope that may write and delete any profile. [default: profiles:admin]
        #[arg(long, env = "PROFILESTORE_AUTH_ADMIN_SCOPE", value_name = "SCOPE")]
        pub auth_admin_scope: Option<String>,

        /// Reads need a valid token too (any user's).
        #[arg(long, env = "PROFILESTORE_AUTH_READS")]
        pub auth_reads: bool,
    }
}
