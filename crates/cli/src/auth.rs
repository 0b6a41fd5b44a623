//! `serve`'s authentication policy from its settings, and the rule that open writes
//! are allowed only on loopback.

use std::net::SocketAddr;

use anyhow::Context;
use profilestore_api::{AuthPolicy, KeySource, TokenRules, TokenVerifier};

use crate::args::{AuthMode, AuthSettings};

/// The policy, and what `serve` must say about it at every start (a warning when
/// writes are open).
pub struct Decided {
    /// What the API enforces.
    pub policy: AuthPolicy,
    /// Said at start: how writes are authorised.
    pub notice: Notice,
}

/// How writes are authorised, as `serve` reports it at start.
pub enum Notice {
    /// Tokens are checked; the flag says a shared issuer's tokens are not tied to this
    /// service by `iss` and `aud`.
    Tokens { unchecked_issuer_or_audience: bool },
    /// Open writes on loopback listeners only.
    OpenOnLoopback,
    /// `--auth none`: open writes wherever it listens.
    ExplicitlyOff,
}

/// Decides the policy from `settings` for a server listening on `listeners` (the API's
/// and, when on, the admin one: it serves the API too).
///
/// Refuses a contradiction (two keys, `--auth none` with a key, `--auth token` or
/// `--auth-reads` without one) and open writes on any address but loopback unless
/// `--auth none` says so.
pub fn decide(settings: &AuthSettings, listeners: &[SocketAddr]) -> anyhow::Result<Decided> {
    let sources = [
        settings.auth_hs256_secret_file.as_ref().map(|p| ("--auth-hs256-secret-file", p)),
        settings.auth_public_key_file.as_ref().map(|p| ("--auth-public-key-file", p)),
        settings.auth_jwks_file.as_ref().map(|p| ("--auth-jwks-file", p)),
    ];
    let given: Vec<_> = sources.into_iter().flatten().collect();
    anyhow::ensure!(given.len() <= 1, "give one token key, not {}", names(&given));
    let key = given.first().copied();
    match (settings.auth, key) {
        (Some(AuthMode::None), Some((flag, _))) => {
            anyhow::bail!("--auth none turns authentication off, yet {flag} gives a key: drop one of them")
        }
        (Some(AuthMode::None), None) => {
            anyhow::ensure!(!settings.auth_reads, "--auth-reads needs tokens, and --auth none turns them off");
            Ok(Decided { policy: AuthPolicy::open(), notice: Notice::ExplicitlyOff })
        }
        (Some(AuthMode::Token), None) => anyhow::bail!(
            "--auth token needs a key: --auth-hs256-secret-file, --auth-public-key-file or --auth-jwks-file"
        ),
        (_, Some((flag, path))) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))?;
            let source = match flag {
                "--auth-hs256-secret-file" => KeySource::HmacSecret(strip_newline(bytes)),
                "--auth-public-key-file" => KeySource::PublicKeyPem(bytes),
                _ => KeySource::Jwks(String::from_utf8(bytes).with_context(|| format!("{flag} is not UTF-8"))?),
            };
            let defaults = TokenRules::default();
            let rules = TokenRules {
                issuer: settings.auth_issuer.clone(),
                audience: settings.auth_audience.clone(),
                leeway: settings.auth_leeway.unwrap_or(defaults.leeway),
                admin_scope: settings.auth_admin_scope.clone().unwrap_or(defaults.admin_scope),
            };
            // A public key's tokens may be minted by an issuer for many services: without
            // an issuer and audience to check, any of them whose `sub` matches writes.
            let unchecked = flag != "--auth-hs256-secret-file" && (rules.issuer.is_none() || rules.audience.is_none());
            let verifier = TokenVerifier::new(source, rules).with_context(|| format!("{flag} {}", path.display()))?;
            let notice = Notice::Tokens { unchecked_issuer_or_audience: unchecked };
            Ok(Decided { policy: AuthPolicy::tokens(verifier, settings.auth_reads), notice })
        }
        (None, None) => {
            anyhow::ensure!(!settings.auth_reads, "--auth-reads needs a token key");
            let orphans = [
                settings.auth_issuer.as_ref().map(|_| "--auth-issuer"),
                settings.auth_audience.as_ref().map(|_| "--auth-audience"),
                settings.auth_admin_scope.as_ref().map(|_| "--auth-admin-scope"),
                settings.auth_leeway.as_ref().map(|_| "--auth-leeway"),
            ];
            if let Some(flag) = orphans.into_iter().flatten().next() {
                anyhow::bail!("{flag} says how tokens are checked, but no token key is given");
            }
            if let Some(public) = listeners.iter().find(|addr| !addr.ip().is_loopback()) {
                anyhow::bail!(
                    "refusing to serve on {public} without authentication: anyone who reaches it could change any \
                     profile. Give a token key (--auth-hs256-secret-file, --auth-public-key-file or \
                     --auth-jwks-file), or --auth none to serve without authentication anyway"
                );
            }
            Ok(Decided { policy: AuthPolicy::open(), notice: Notice::OpenOnLoopback })
        }
    }
}

impl Notice {
    /// Logs how writes are authorised: a warning unless tokens are checked.
    pub fn log(&self) {
        match self {
            Notice::Tokens { unchecked_issuer_or_audience } => {
                tracing::info!("writes and deletes need a bearer token");
                if *unchecked_issuer_or_audience {
                    tracing::warn!(
                        "tokens are verified by a public key without --auth-issuer and --auth-audience: any token \
                         its issuer signs for any service may write the profile its `sub` names"
                    );
                }
            }
            Notice::OpenOnLoopback => tracing::warn!(
                "no token key is set: accepting unauthenticated writes, because every listener is on loopback"
            ),
            Notice::ExplicitlyOff => tracing::warn!(
                "authentication is off (--auth none): anyone who reaches this server can change or delete any profile"
            ),
        }
    }
}

fn names(given: &[(&str, &std::path::PathBuf)]) -> String {
    given.iter().map(|(flag, _)| *flag).collect::<Vec<_>>().join(" and ")
}

/// A secret file's bytes without the final newline editors add.
fn strip_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn error(settings: &AuthSettings, listeners: &[SocketAddr]) -> String {
        match decide(settings, listeners) {
            Ok(_) => panic!("accepted {settings:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn open_writes_only_on_loopback_unless_turned_off_explicitly() {
        let none = AuthSettings::default();
        let loopback = [addr("127.0.0.1:8080"), addr("[::1]:9464")];
        assert!(matches!(decide(&none, &loopback).unwrap().notice, Notice::OpenOnLoopback));
        let public = [addr("127.0.0.1:8080"), addr("0.0.0.0:9464")];
        let refused = error(&none, &public);
        assert!(refused.contains("refusing to serve on 0.0.0.0:9464") && refused.contains("--auth none"), "{refused}");
        let off = AuthSettings { auth: Some(AuthMode::None), ..AuthSettings::default() };
        let decided = decide(&off, &public).unwrap();
        assert!(matches!(decided.notice, Notice::ExplicitlyOff));
        assert!(!decided.policy.checks_tokens());
    }

    #[test]
    fn contradictions_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "x".repeat(40)).unwrap();
        let loopback = [addr("127.0.0.1:0")];
        let two = AuthSettings {
            auth_hs256_secret_file: Some(secret.clone()),
            auth_jwks_file: Some(secret.clone()),
            ..AuthSettings::default()
        };
        assert!(error(&two, &loopback).contains("--auth-hs256-secret-file and --auth-jwks-file"));
        let off_with_key = AuthSettings {
            auth: Some(AuthMode::None),
            auth_hs256_secret_file: Some(secret),
            ..AuthSettings::default()
        };
        assert!(error(&off_with_key, &loopback).contains("drop one"));
        let token_without_key = AuthSettings { auth: Some(AuthMode::Token), ..AuthSettings::default() };
        assert!(error(&token_without_key, &loopback).contains("needs a key"));
        let reads_without_key = AuthSettings { auth_reads: true, ..AuthSettings::default() };
        assert!(error(&reads_without_key, &loopback).contains("--auth-reads"));
        let issuer_without_key = AuthSettings { auth_issuer: Some("https://id".into()), ..AuthSettings::default() };
        assert!(error(&issuer_without_key, &loopback).contains("--auth-issuer says how tokens are checked"));
    }

    #[test]
    fn a_secret_file_loses_its_final_newline_and_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let public = [addr("0.0.0.0:8080")];
        // 31 bytes and a newline: the newline does not make it long enough.
        std::fs::write(&path, format!("{}\n", "s".repeat(31))).unwrap();
        let settings = AuthSettings { auth_hs256_secret_file: Some(path.clone()), ..AuthSettings::default() };
        assert!(error(&settings, &public).contains("31 bytes"));
        std::fs::write(&path, format!("{}\r\n", "s".repeat(32))).unwrap();
        let decided = decide(&settings, &public).unwrap();
        assert!(decided.policy.checks_tokens() && matches!(decided.notice, Notice::Tokens { .. }));
        let missing =
            AuthSettings { auth_public_key_file: Some(dir.path().join("absent.pem")), ..AuthSettings::default() };
        assert!(error(&missing, &public).contains("cannot read --auth-public-key-file"));
    }
}
