//! `serve`'s transport: HTTPS from a certificate and key, the rule that bearer
//! tokens never cross a network in clear (off loopback, TLS or a declared proxy), and
//! that a declared proxy comes with the addresses whose `X-Forwarded-For` is believed.

use std::net::SocketAddr;
use std::sync::Arc;

use profilestore_api::TlsFiles;

use crate::args::ServeSettings;

/// The TLS files to serve with, if any; refuses plain HTTP on a non-loopback address
/// unless `--behind-proxy` says a TLS-terminating proxy is in front, and refuses
/// `--behind-proxy` without `--trusted-proxies`.
pub fn decide(settings: &ServeSettings, listeners: &[SocketAddr]) -> anyhow::Result<Option<Arc<TlsFiles>>> {
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles::load(cert, key, TlsFiles::DEFAULT_CHECK_EVERY)?),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    // A proxy in front hides every client behind its own address: the per-client
    // limits need to be told whose `X-Forwarded-For` to believe (or, with `none`,
    // that the proxy's address is to be counted as one client).
    if settings.behind_proxy && settings.trusted_proxies.is_none() {
        anyhow::bail!(
            "--behind-proxy needs --trusted-proxies: the addresses of the proxies in front (e.g. 10.0.0.0/8), \
             whose X-Forwarded-For names the client; `none` counts every request as coming from the proxy"
        );
    }
    if tls.is_none()
        && !settings.behind_proxy
        && let Some(public) = listeners.iter().find(|addr| !addr.ip().is_loopback())
    {
        anyhow::bail!(
            "refusing to serve plain HTTP on {public}: requests (and their bearer tokens) would cross the \
             network in clear. Give --tls-cert and --tls-key, or --behind-proxy when a TLS-terminating proxy \
             is in front"
        );
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_off_loopback_needs_a_declared_proxy() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let plain = ServeSettings::default();
        assert!(decide(&plain, &[loopback]).unwrap().is_none());
        let refused = decide(&plain, &[loopback, public]).unwrap_err().to_string();
        assert!(refused.contains("refusing to serve plain HTTP on 0.0.0.0:8080"), "{refused}");
        let unnamed = ServeSettings { behind_proxy: true, ..ServeSettings::default() };
        assert!(decide(&unnamed, &[public]).unwrap_err().to_string().contains("needs --trusted-proxies"));
        let trusted_proxies = Some("10.0.0.0/8".parse().unwrap());
        let proxied = ServeSettings { behind_proxy: true, trusted_proxies, ..ServeSettings::default() };
        assert!(decide(&proxied, &[public]).unwrap().is_none());
        let half = ServeSettings { tls_cert: Some("cert.pem".into()), ..ServeSettings::default() };
        assert!(decide(&half, &[loopback]).unwrap_err().to_string().contains("go together"));
    }
}
