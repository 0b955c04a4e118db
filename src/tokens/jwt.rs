//! Signed-JWT access tokens (feature `jwt`), on the well-kept `jsonwebtoken` crate.
//!
//! The JWT's `jti` is the opaque access token, so after the signature and `exp` are
//! verified (no I/O: a forged token costs no store command) the token is looked up like
//! an opaque one, and revocation stays immediate.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::TokenClaims;
use crate::error::{ConfigError, StoreError};

/// Signing and verification keys for JWT access tokens.
///
/// ```
/// use tower_redis_session::tokens::JwtKeys;
/// let keys = JwtKeys::hs256(&[7u8; 32])?.with_issuer("https://auth.example.com");
/// # Ok::<(), tower_redis_session::ConfigError>(())
/// ```
pub struct JwtKeys {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: Option<String>,
    validation: Validation,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    sub: String,
    jti: String,
    iat: i64,
    exp: i64,
    fam: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
}

impl JwtKeys {
    /// HMAC-SHA256 with a shared secret of at least 32 bytes.
    ///
    /// # Errors
    /// [`ConfigError::JwtKey`] if the secret is shorter than 32 bytes.
    pub fn hs256(secret: &[u8]) -> Result<Self, ConfigError> {
        if secret.len() < 32 {
            return Err(ConfigError::JwtKey(
                "an HS256 secret needs at least 32 bytes",
            ));
        }
        Ok(Self::new(
            Algorithm::HS256,
            EncodingKey::from_secret(secret),
            DecodingKey::from_secret(secret),
        ))
    }

    /// Any algorithm `jsonwebtoken` supports (e.g. `ES256`, `EdDSA` with keys from PEM).
    pub fn new(algorithm: Algorithm, encoding: EncodingKey, decoding: DecodingKey) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "jti"]);
        Self {
            algorithm,
            encoding,
            decoding,
            issuer: None,
            validation,
        }
    }

    /// Sets the `iss` claim of issued tokens and requires it on verification.
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        self.validation.set_issuer(&[&issuer]);
        self.validation
            .set_required_spec_claims(&["exp", "sub", "jti", "iss"]);
        self.issuer = Some(issuer);
        self
    }

    pub(crate) fn sign(&self, jti: &str, claims: &TokenClaims) -> Result<String, StoreError> {
        let c = Claims {
            sub: claims.user_id.clone(),
            jti: jti.to_owned(),
            iat: claims.issued_ms / 1000,
            exp: claims.expires_ms / 1000,
            fam: claims.family.to_string(),
            sid: claims.session.map(|h| h.to_string()),
            scope: claims.scope.clone(),
            iss: self.issuer.clone(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &c, &self.encoding)
            .map_err(|_| StoreError::Protocol("could not sign a JWT"))
    }

    /// The `jti` of a correctly signed, unexpired token.
    pub(crate) fn verify(&self, token: &str) -> Option<String> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims.jti)
    }

    /// The `jti` of a correctly signed token, expired or not (for revocation).
    pub(crate) fn jti_ignoring_expiry(&self, token: &str) -> Option<String> {
        let mut v = self.validation.clone();
        v.validate_exp = false;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .ok()
            .map(|d| d.claims.jti)
    }
}
