//! Who may do what: bearer tokens (JWT) and the policy that asks for them.
//!
//! A [`TokenVerifier`] holds one key source (an HS256 secret, an RS256 or ES256 public
//! key, or a JWKS set) and the rules a token must meet. The algorithm it accepts comes
//! from the key, never from the token, so `alg: none` and an HS256 token signed with a
//! public key as its secret are refused. An [`AuthPolicy`] says whether writes (and
//! reads) need a token; a token may write the profile its `sub` names, or any profile
//! with the admin scope.
//!
//! Tokens and keys are never logged or answered: a refusal is logged by its kind only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use profilestore_core::ids::UserId;

use crate::error::ApiError;

/// Where the verifying keys come from.
pub enum KeySource {
    /// A shared secret for HS256: at least 32 bytes (RFC 7518 §3.2).
    HmacSecret(Vec<u8>),
    /// A PEM public key: RSA (RS256) or P-256 EC (ES256).
    PublicKeyPem(Vec<u8>),
    /// A JWKS document (RFC 7517): tokens name their key by `kid`; each key's own `alg`
    /// is the only algorithm accepted with it.
    Jwks(String),
}

/// The claims a token must carry, besides a valid signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// The `iss` required, if any.
    pub issuer: Option<String>,
    /// The `aud` required, if any (a token's `aud` may list several).
    pub audience: Option<String>,
    /// How far past `exp` or before `nbf` a token is still accepted: clock skew
    /// between the issuer and this server.
    pub leeway: Duration,
    /// The scope that may write and delete any profile.
    pub admin_scope: String,
}

impl TokenRules {
    /// The default admin scope.
    pub const DEFAULT_ADMIN_SCOPE: &str = "profiles:admin";
    /// The default leeway: one minute.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
}

impl Default for TokenRules {
    /// No issuer or audience required, one minute of leeway, `profiles:admin`.
    fn default() -> Self {
        TokenRules {
            issuer: None,
            audience: None,
            leeway: Self::DEFAULT_LEEWAY,
            admin_scope: Self::DEFAULT_ADMIN_SCOPE.to_owned(),
        }
    }
}

/// Why a key source was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// An HS256 secret shorter than the algorithm's own key length.
    #[error("the HS256 secret is {0} bytes; it must be at least 32")]
    ShortSecret(usize),
    /// A secret the HMAC implementation refused.
    #[error("the HS256 secret is unusable: {0}")]
    Secret(String),
    /// A PEM that is neither an RSA nor an EC public key.
    #[error("the public key is neither an RSA nor a P-256 EC key in PEM form: {0}")]
    Pem(String),
    /// An admin scope that is empty or holds whitespace (it would match too much).
    #[error("the admin scope {0:?} must be one non-empty word")]
    AdminScope(String),
    /// A JWKS document that does not parse, or holds no usable key.
    #[error("the JWKS document is unusable: {0}")]
    Jwks(String),
}

/// Verifies bearer tokens against one key source and [`TokenRules`].
pub struct TokenVerifier {
    keys: Keys,
    rules: TokenRules,
}

enum Keys {
    One(Box<Verifying>),
    ByKid(HashMap<String, Verifying>),
}

/// The keys a source holds, each with the one algorithm it is accepted with.
enum KeysFound {
    One(DecodingKey, Algorithm),
    ByKid(HashMap<String, (DecodingKey, Algorithm)>),
}

/// A key and the whole check of a token it verifies, built once.
struct Verifying {
    key: DecodingKey,
    validation: Validation,
}

/// What a verified token grants.
#[derive(Debug, serde::Deserialize)]
struct Claims {
    sub: Option<String>,
    /// Scopes: space-separated (RFC 8693), or an array (some issuers).
    #[serde(default)]
    scope: Option<Scopes>,
    /// The same under the name other issuers use, string or array alike.
    #[serde(default)]
    scp: Option<Scopes>,
}

/// Scopes as a space-separated string or as an array of them.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Scopes {
    Spaced(String),
    Listed(Vec<String>),
}

impl Scopes {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Scopes::Spaced(text) => text.split_whitespace().any(|s| s == wanted),
            Scopes::Listed(list) => list.iter().flat_map(|s| s.split_whitespace()).any(|s| s == wanted),
        }
    }
}

/// Why a request's token was refused; logged by [`kind`](Refusal::kind), never with
/// the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Missing,
    NotBearer,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    WrongAlgorithm,
    UnknownKey,
    BadSignature,
    Malformed,
}

impl Refusal {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::NotBearer => "not_bearer",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::WrongAlgorithm => "wrong_algorithm",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Malformed => "malformed",
        }
    }
}

impl TokenVerifier {
    /// A verifier of tokens signed by `source`'s keys and meeting `rules`.
    pub fn new(source: KeySource, rules: TokenRules) -> Result<Self, KeyError> {
        if rules.admin_scope.is_empty() || rules.admin_scope.contains(char::is_whitespace) {
            return Err(KeyError::AdminScope(rules.admin_scope));
        }
        let keys = match source {
            KeySource::HmacSecret(secret) if secret.len() < 32 => return Err(KeyError::ShortSecret(secret.len())),
            KeySource::HmacSecret(secret) => {
                let key = DecodingKey::from_secret(&secret).map_err(|e| KeyError::Secret(e.to_string()))?;
                KeysFound::One(key, Algorithm::HS256)
            }
            // A private key would verify too (it holds the public one), but it has no
            // business on a server that only verifies: refuse it rather than keep it.
            KeySource::PublicKeyPem(pem) if pem.windows(11).any(|w| w == b"PRIVATE KEY") => {
                return Err(KeyError::Pem("this is a private key; give the public key".into()));
            }
            KeySource::PublicKeyPem(pem) => match DecodingKey::from_rsa_pem(&pem) {
                Ok(key) => KeysFound::One(key, Algorithm::RS256),
                Err(rsa) => match DecodingKey::from_ec_pem(&pem) {
                    Ok(key) => KeysFound::One(key, Algorithm::ES256),
                    Err(ec) => return Err(KeyError::Pem(format!("as RSA: {rsa}; as EC: {ec}"))),
                },
            },
            KeySource::Jwks(text) => KeysFound::ByKid(jwks(&text)?),
        };
        let verifying = |(key, algorithm)| Verifying { key, validation: validation(&rules, algorithm) };
        let keys = match keys {
            KeysFound::One(key, algorithm) => Keys::One(Box::new(verifying((key, algorithm)))),
            KeysFound::ByKid(found) => Keys::ByKid(found.into_iter().map(|(kid, k)| (kid, verifying(k))).collect()),
        };
        Ok(TokenVerifier { keys, rules })
    }

    /// The subject and scopes of `token`, if it is valid.
    fn verify(&self, token: &str) -> Result<Claims, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| refusal(e.kind()))?;
        let verifying = match &self.keys {
            Keys::One(verifying) => verifying,
            Keys::ByKid(keys) => {
                let kid = header.kid.as_deref().ok_or(Refusal::UnknownKey)?;
                keys.get(kid).ok_or(Refusal::UnknownKey)?
            }
        };
        jsonwebtoken::decode::<Claims>(token, &verifying.key, &verifying.validation)
            .map(|data| data.claims)
            .map_err(|e| refusal(e.kind()))
    }
}

/// What a token verified with an `algorithm` key must carry under `rules`.
fn validation(rules: &TokenRules, algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = rules.leeway.as_secs();
    validation.validate_nbf = true;
    // A configured issuer or audience must be present, not merely right when present.
    let mut required = vec!["exp", "sub"];
    match &rules.issuer {
        Some(issuer) => {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        None => validation.iss = None,
    }
    // Without a configured audience, a token that names one is refused (the library's
    // default): it was minted for some other service.
    if let Some(audience) = &rules.audience {
        validation.set_audience(&[audience]);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// The keys of a JWKS document, by `kid`; each must name its algorithm.
fn jwks(text: &str) -> Result<HashMap<String, (DecodingKey, Algorithm)>, KeyError> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| KeyError::Jwks(e.to_string()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        // Issuers publish encryption keys and keys for other algorithms beside their
        // signing keys: those are skipped (and said so), not a reason to refuse the set.
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        let signing = !matches!(jwk.common.public_key_use, Some(jsonwebtoken::jwk::PublicKeyUse::Encryption));
        let algorithm = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
        match (kid.is_empty(), signing, algorithm) {
            (false, true, Some(algorithm)) => {
                let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Jwks(format!("key {kid:?}: {e}")))?;
                keys.insert(kid, (key, algorithm));
            }
            _ => tracing::warn!(
                kid,
                "skipping a JWKS key that has no kid, is not for signatures or names no supported alg"
            ),
        }
    }
    if keys.is_empty() {
        return Err(KeyError::Jwks("it holds no signing key with a kid and a supported alg".into()));
    }
    Ok(keys)
}

fn refusal(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotYetValid,
        ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
        ErrorKind::InvalidAudience => Refusal::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Refusal::WrongAlgorithm,
        ErrorKind::InvalidSignature => Refusal::BadSignature,
        _ => Refusal::Malformed,
    }
}

/// Whether writes and reads need a token, and how tokens are verified.
///
/// Promises: with a verifier, a write or delete of a profile goes ahead only with a
/// valid token whose `sub` is that profile's user id or whose scopes include the admin
/// scope; without one, every request is allowed (the binary allows that only on
/// loopback or when told to).
#[derive(Clone, Default)]
pub struct AuthPolicy {
    verifier: Option<Arc<TokenVerifier>>,
    reads_need_token: bool,
}

impl std::fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPolicy")
            .field("tokens", &self.verifier.is_some())
            .field("reads_need_token", &self.reads_need_token)
            .finish()
    }
}

impl AuthPolicy {
    /// No tokens: anyone may write any profile.
    pub fn open() -> Self {
        AuthPolicy::default()
    }

    /// Tokens from `verifier` for writes and deletes, and for reads when
    /// `reads_need_token`.
    pub fn tokens(verifier: TokenVerifier, reads_need_token: bool) -> Self {
        AuthPolicy { verifier: Some(Arc::new(verifier)), reads_need_token }
    }

    /// Whether tokens are checked at all.
    pub fn checks_tokens(&self) -> bool {
        self.verifier.is_some()
    }

    /// Whether reads need a token (answers must then not be kept by shared caches).
    pub fn reads_need_token(&self) -> bool {
        self.verifier.is_some() && self.reads_need_token
    }

    /// Allows writing or deleting `user`'s profile, or answers 401 or 403.
    pub(crate) fn authorize_write(&self, headers: &HeaderMap, user: &UserId) -> Result<(), ApiError> {
        let Some(verifier) = &self.verifier else { return Ok(()) };
        let claims = authenticate(verifier, headers)?;
        let admin = &verifier.rules.admin_scope;
        let is_admin = [&claims.scope, &claims.scp].into_iter().flatten().any(|scopes| scopes.contains(admin));
        if is_admin || claims.sub.as_deref() == Some(user.as_str()) {
            Ok(())
        } else {
            tracing::info!("refused a token for another user's profile");
            Err(ApiError::forbidden())
        }
    }

    /// Allows a read, or answers 401 when reads need a token and there is no valid one.
    pub(crate) fn authorize_read(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match &self.verifier {
            Some(verifier) if self.reads_need_token => authenticate(verifier, headers).map(drop),
            _ => Ok(()),
        }
    }
}

/// The claims of the request's valid bearer token, or the 401 that refuses it.
fn authenticate(verifier: &TokenVerifier, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let token = bearer(headers);
    let result = token.and_then(|token| verifier.verify(token));
    result.map_err(|refused| {
        tracing::info!(refusal = refused.kind(), "refused a request's token");
        if refused == Refusal::Missing { ApiError::unauthenticated() } else { ApiError::invalid_token() }
    })
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Result<&str, Refusal> {
    let value = headers.get(header::AUTHORIZATION).ok_or(Refusal::Missing)?;
    let value = value.to_str().map_err(|_| Refusal::NotBearer)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(Refusal::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Refusal::NotBearer);
    }
    Ok(token.trim())
}
