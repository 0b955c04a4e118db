//! Signed JWTs (feature `jwt`), on the well-kept `jsonwebtoken` crate: access tokens
//! and OpenID Connect ID tokens, under one key ring with key ids, published as a JSON
//! Web Key Set.
//!
//! An access JWT's `jti` is the opaque access token and an ID token's `jti` an opaque
//! ID-token handle, so after the signature and the claims are verified (no I/O: a
//! forged token costs no store command) the token is looked up like an opaque one, and
//! revocation stays immediate.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::TokenClaims;
use crate::error::{ConfigError, StoreError};

/// Longest JWT this crate parses, in bytes: anything longer is refused unread.
const MAX_JWT: usize = 8 * 1024;

/// Longest key id, in bytes.
const MAX_KID: usize = 128;

/// One signing or verification key, with its key id (`kid`).
///
/// Asymmetric keys (`RS256`, `ES256`) publish their public half in
/// [`JwtKeys::jwks`]; their key id defaults to the RFC 7638 thumbprint of that public
/// key. `Debug` shows the algorithm and key id, never key material.
///
/// ```
/// use tower_redis_session::tokens::JwtKey;
/// let key = JwtKey::hs256(&[7u8; 32])?.with_kid("2026-12")?;
/// assert_eq!(key.kid(), Some("2026-12"));
/// # Ok::<(), tower_redis_session::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct JwtKey {
    kid: Option<String>,
    algorithm: Algorithm,
    /// `None` for a key that only verifies (a retired key during rotation).
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    /// The public key, for the key set; `None` for a shared secret.
    public: Option<Jwk>,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("signs", &self.encoding.is_some())
            .finish_non_exhaustive()
    }
}

/// Makes `jsonwebtoken`'s RustCrypto provider the process default unless one is chosen
/// already. `jsonwebtoken` picks its provider from its crate features, and panics on
/// first use when both of its providers are enabled (another crate of the application
/// may enable the other): choosing one when keys are built keeps that panic off the
/// request path.
fn choose_provider() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

fn bad_key(_: jsonwebtoken::errors::Error) -> ConfigError {
    ConfigError::JwtKey("the key could not be read (wrong format or algorithm)")
}

impl JwtKey {
    /// HMAC-SHA256 with a shared secret of at least 32 bytes. No key id unless set with
    /// [`with_kid`](Self::with_kid); never published in the key set.
    ///
    /// # Errors
    /// [`ConfigError::JwtKey`] if the secret is shorter than 32 bytes.
    pub fn hs256(secret: &[u8]) -> Result<Self, ConfigError> {
        choose_provider();
        if secret.len() < 32 {
            return Err(ConfigError::JwtKey(
                "an HS256 secret needs at least 32 bytes",
            ));
        }
        Ok(Self {
            kid: None,
            algorithm: Algorithm::HS256,
            encoding: Some(EncodingKey::from_secret(secret)),
            decoding: DecodingKey::from_secret(secret),
            public: None,
        })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256, from a PEM private key (PKCS#1 or PKCS#8) of at
    /// least 2048 bits.
    ///
    /// # Errors
    /// [`ConfigError::JwtKey`] if the PEM is not an RSA private key of 2048 bits or more.
    pub fn rs256_pem(private_key_pem: &[u8]) -> Result<Self, ConfigError> {
        let encoding = EncodingKey::from_rsa_pem(private_key_pem).map_err(bad_key)?;
        let key = Self::asymmetric(Algorithm::RS256, encoding)?;
        let modulus = match key.public.as_ref().map(|j| &j.algorithm) {
            Some(jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa)) => {
                URL_SAFE_NO_PAD.decode(&rsa.n).map_or(0, |n| n.len())
            }
            _ => 0,
        };
        if modulus < 256 {
            return Err(ConfigError::JwtKey("an RS256 key needs at least 2048 bits"));
        }
        Ok(key)
    }

    /// ECDSA on P-256 with SHA-256, from a PKCS#8 PEM private key.
    ///
    /// # Errors
    /// [`ConfigError::JwtKey`] if the PEM is not a P-256 private key.
    pub fn es256_pem(private_key_pem: &[u8]) -> Result<Self, ConfigError> {
        let encoding = EncodingKey::from_ec_pem(private_key_pem).map_err(bad_key)?;
        Self::asymmetric(Algorithm::ES256, encoding)
    }

    /// A key that only verifies, from its public JWK (e.g. the key a rotation retired,
    /// kept until the tokens it signed have expired). The JWK must name its algorithm
    /// (`alg`) and key id (`kid`).
    ///
    /// # Errors
    /// [`ConfigError::JwtKey`] if the JWK has no `alg` or `kid`, holds a shared
    /// secret, or is not a key `jsonwebtoken` can verify with.
    pub fn from_public_jwk(jwk: &Jwk) -> Result<Self, ConfigError> {
        choose_provider();
        let algorithm = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok())
            .ok_or(ConfigError::JwtKey("the JWK names no signing algorithm"))?;
        if is_symmetric(algorithm) {
            return Err(ConfigError::JwtKey("a shared secret is never published"));
        }
        // The key's type must be the algorithm's: a symmetric (`oct`) key never, so a
        // secret can never reach the JWKS, whatever `alg` it claims.
        use jsonwebtoken::jwk::AlgorithmParameters as P;
        let fits = match (&jwk.algorithm, algorithm) {
            (P::OctetKey(_), _) => {
                return Err(ConfigError::JwtKey("a shared secret is never published"));
            }
            (
                P::RSA(_),
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512,
            ) => true,
            (P::EllipticCurve(_), Algorithm::ES256 | Algorithm::ES384) => true,
            (P::OctetKeyPair(_), Algorithm::EdDSA) => true,
            _ => false,
        };
        if !fits {
            return Err(ConfigError::JwtKey(
                "the JWK's key type (kty) does not match its algorithm (alg)",
            ));
        }
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or(ConfigError::JwtKey("the JWK has no key id"))?;
        let decoding = DecodingKey::from_jwk(jwk).map_err(bad_key)?;
        Self {
            kid: None,
            algorithm,
            encoding: None,
            decoding,
            public: Some(jwk.clone()),
        }
        .checked_kid(kid)
    }

    fn asymmetric(algorithm: Algorithm, encoding: EncodingKey) -> Result<Self, ConfigError> {
        choose_provider();
        let jwk = Jwk::from_encoding_key(&encoding, algorithm).map_err(bad_key)?;
        let decoding = DecodingKey::from_jwk(&jwk).map_err(bad_key)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(bad_key)?;
        Self {
            kid: None,
            algorithm,
            encoding: Some(encoding),
            decoding,
            public: Some(jwk),
        }
        .checked_kid(kid)
    }

    fn checked_kid(mut self, kid: String) -> Result<Self, ConfigError> {
        if kid.is_empty() || kid.len() > MAX_KID || kid.chars().any(char::is_control) {
            return Err(ConfigError::JwtKey(
                "a key id needs 1 to 128 bytes and no control character",
            ));
        }
        if let Some(jwk) = &mut self.public {
            jwk.common.key_id = Some(kid.clone());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            jwk.common.key_algorithm = Some(self.algorithm.into());
        }
        self.kid = Some(kid);
        Ok(self)
    }

    /// Sets the key id (`kid`) carried by the tokens this key signs.
    ///
    /// # Errors
    /// [`ConfigError::JwtKey`] if it is empty, longer than 128 bytes, or holds a
    /// control character.
    pub fn with_kid(self, kid: impl Into<String>) -> Result<Self, ConfigError> {
        self.checked_kid(kid.into())
    }

    /// Its key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Its public key as a JWK (with `kid`, `alg` and `use`), or `None` for a shared
    /// secret.
    pub fn public_jwk(&self) -> Option<&Jwk> {
        self.public.as_ref()
    }
}

/// The keys that sign and verify JWTs: one signing key, and any number of keys that
/// only verify (for rotation: publish the next key, switch, keep the old one until its
/// tokens have expired).
///
/// ```
/// use tower_redis_session::tokens::{JwtKey, JwtKeys};
/// let keys = JwtKeys::new(JwtKey::hs256(&[7u8; 32])?)?.with_issuer("https://auth.example.com");
/// # Ok::<(), tower_redis_session::ConfigError>(())
/// ```
pub struct JwtKeys {
    /// The signing key first, then the keys that only verify.
    keys: Vec<JwtKey>,
    issuer: Option<String>,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys")
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// Claims of an access JWT.
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

/// Claims of an OpenID Connect ID token (OpenID Connect Core 1.0 §2).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct IdClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) aud: String,
    pub(crate) exp: i64,
    pub(crate) iat: i64,
    pub(crate) auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sid: Option<String>,
    pub(crate) at_hash: String,
    pub(crate) jti: String,
}

impl JwtKeys {
    /// Keys that sign with `signing`.
    ///
    /// # Errors
    /// [`ConfigError::JwtKey`] if `signing` only verifies.
    pub fn new(signing: JwtKey) -> Result<Self, ConfigError> {
        if signing.encoding.is_none() {
            return Err(ConfigError::JwtKey("the signing key has no private part"));
        }
        Ok(Self {
            keys: vec![signing],
            issuer: None,
        })
    }

    /// Also accepts tokens signed by `key` (found by its key id), and publishes it in
    /// the key set when it is public. It never signs.
    ///
    /// # Errors
    /// [`ConfigError::JwtKey`] if it has no key id, or one another key already has.
    pub fn with_verification_key(mut self, key: JwtKey) -> Result<Self, ConfigError> {
        let Some(kid) = key.kid.as_deref() else {
            return Err(ConfigError::JwtKey("a verification key needs a key id"));
        };
        if self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
            return Err(ConfigError::JwtKey("two keys have the same key id"));
        }
        self.keys.push(JwtKey {
            encoding: None,
            ..key
        });
        Ok(self)
    }

    /// Sets the `iss` claim of issued tokens and requires it on verification. ID tokens
    /// need it.
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The issuer, if set.
    pub(crate) fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The public keys, as a JSON Web Key Set (RFC 7517) to serve at
    /// `/.well-known/jwks.json`. Shared secrets are never in it.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().filter_map(|k| k.public.clone()).collect(),
        }
    }

    fn signing(&self) -> &JwtKey {
        &self.keys[0]
    }

    /// Whether tokens are signed with a shared secret (HS256): fine for access tokens
    /// this service checks itself, never for ID tokens that clients verify.
    pub(crate) fn signs_with_secret(&self) -> bool {
        is_symmetric(self.signing().algorithm)
    }

    fn sign_claims(&self, claims: &impl serde::Serialize) -> Result<String, StoreError> {
        let key = self.signing();
        let Some(encoding) = &key.encoding else {
            return Err(StoreError::Protocol("the signing key has no private part"));
        };
        let mut header = Header::new(key.algorithm);
        header.kid.clone_from(&key.kid);
        jsonwebtoken::encode(&header, claims, encoding)
            .map_err(|_| StoreError::Protocol("could not sign a JWT"))
    }

    pub(crate) fn sign(&self, jti: &str, claims: &TokenClaims) -> Result<String, StoreError> {
        self.sign_claims(&Claims {
            sub: claims.user_id.clone(),
            jti: jti.to_owned(),
            iat: crate::time::unix_ms(claims.issued_at) / 1000,
            exp: crate::time::unix_ms(claims.expires_at) / 1000,
            fam: claims.family.to_string(),
            sid: claims.session.map(|h| h.to_string()),
            scope: claims.scope.clone(),
            iss: self.issuer.clone(),
        })
    }

    pub(crate) fn sign_id(&self, claims: &IdClaims) -> Result<String, StoreError> {
        self.sign_claims(claims)
    }

    /// `at_hash` (OpenID Connect Core §3.1.3.6): the left half of the hash of the
    /// access token, under the hash of the signing algorithm, base64url.
    pub(crate) fn at_hash(&self, access_token: &str) -> String {
        let t = access_token.as_bytes();
        let digest: Vec<u8> = match self.signing().algorithm {
            Algorithm::HS384 | Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => {
                Sha384::digest(t).to_vec()
            }
            Algorithm::HS512 | Algorithm::RS512 | Algorithm::PS512 | Algorithm::EdDSA => {
                Sha512::digest(t).to_vec()
            }
            _ => Sha256::digest(t).to_vec(),
        };
        URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
    }

    /// The key that signed `token`, by its header's key id (a token without one only
    /// matches a key without one), if the header's algorithm is that key's.
    fn key_for(&self, token: &str) -> Option<&JwtKey> {
        if token.len() > MAX_JWT {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = self.keys.iter().find(|k| k.kid == header.kid)?;
        (header.alg == key.algorithm).then_some(key)
    }

    fn validation(&self, key: &JwtKey, required: &[&str]) -> Validation {
        let mut v = Validation::new(key.algorithm);
        v.leeway = 0;
        v.validate_aud = false;
        let mut required = required.to_vec();
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        v: &Validation,
        key: &JwtKey,
    ) -> Option<T> {
        jsonwebtoken::decode::<T>(token, &key.decoding, v)
            .ok()
            .map(|d| d.claims)
    }

    /// The `jti` of a correctly signed, unexpired access token.
    pub(crate) fn verify(&self, token: &str) -> Option<String> {
        let key = self.key_for(token)?;
        let v = self.validation(key, &["exp", "sub", "jti"]);
        self.decode::<Claims>(token, &v, key).map(|c| c.jti)
    }

    /// The `jti` of a correctly signed access token, expired or not (for revocation).
    pub(crate) fn jti_ignoring_expiry(&self, token: &str) -> Option<String> {
        let key = self.key_for(token)?;
        let mut v = self.validation(key, &["sub", "jti"]);
        v.validate_exp = false;
        self.decode::<Claims>(token, &v, key).map(|c| c.jti)
    }

    /// The claims of a correctly signed, unexpired ID token for `audience`.
    pub(crate) fn verify_id(&self, token: &str, audience: &str) -> Option<IdClaims> {
        let key = self.key_for(token)?;
        self.issuer.as_ref()?;
        if is_symmetric(key.algorithm) {
            // ID tokens are signed with public-key algorithms only.
            return None;
        }
        let mut v = self.validation(key, &["exp", "iat", "sub", "aud", "jti"]);
        v.validate_aud = true;
        v.set_audience(&[audience]);
        self.decode::<IdClaims>(token, &v, key)
    }
}
/// Whether `algorithm` signs with a shared secret.
fn is_symmetric(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}
