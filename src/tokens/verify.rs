//! Checking tokens: access tokens (opaque or JWT) and OpenID Connect ID tokens.

use super::*;

impl Tokens {
    /// Checks an access token: well-formed (and, with JWTs, correctly signed and not
    /// expired) and still live in the store. A malformed or forged token is refused
    /// without any store command.
    ///
    /// # Errors
    /// [`TokenError::InvalidToken`] if it is not a live access token;
    /// [`TokenError::Store`] if the store failed.
    pub async fn authenticate(&self, access_token: &str) -> Result<TokenClaims, TokenError> {
        let checked = self.check_access(access_token).await;
        count_refusal("authenticate", &checked);
        checked
    }

    pub(super) async fn check_access(&self, access_token: &str) -> Result<TokenClaims, TokenError> {
        #[cfg(feature = "jwt")]
        let verified;
        #[cfg(feature = "jwt")]
        let access_token = match &self.jwt {
            Some(keys) => {
                verified = keys.verify(access_token).ok_or(TokenError::InvalidToken)?;
                verified.as_str()
            }
            None => access_token,
        };
        let record = self.look_up(access_token, Lookup::Access).await?;
        self.keep_alive(&record).await;
        Ok(TokenClaims {
            user_id: record.user,
            family: FamilyId::parse(&record.family).ok_or(TokenError::InvalidToken)?,
            session: record.session,
            scope: record.scope,
            issued_at: time(record.issued_ms),
            expires_at: time(record.expires_ms),
        })
    }

    /// The live record of an opaque access token or ID-token handle: the exact format
    /// and its check (no I/O), then one lookup in the store.
    pub(super) async fn look_up(
        &self,
        token: &str,
        kind: Lookup,
    ) -> Result<AccessRecord, TokenError> {
        let want = match kind {
            Lookup::Access => Kind::Access,
            Lookup::Id => Kind::Id,
        };
        let token = Opaque::parse(token)
            .filter(|t| t.kind() == want)
            .ok_or(TokenError::InvalidToken)?;
        if !token.verify(&self.check_key().await?) {
            return Err(TokenError::InvalidToken);
        }
        let stored = token.stored();
        self.backend
            .authenticate(&stored.tag, kind, &stored.hash, now_ms())
            .await?
            .ok_or(TokenError::InvalidToken)
    }

    /// Checks an OpenID Connect ID token issued by these `Tokens`: signature (by its
    /// `kid`), `iss`, `aud` (must be `expected_audience`), `exp`, then that it is still
    /// live in the store: not expired, its family not revoked (revocation, log out
    /// everywhere) and its bound session not ended. A malformed, forged, oversized or
    /// unknown-`kid` token is refused without any store command.
    ///
    /// # Errors
    /// [`TokenError::InvalidToken`] if it is not a live ID token for that audience;
    /// [`TokenError::Store`] if the store failed.
    #[cfg(feature = "jwt")]
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        expected_audience: &str,
    ) -> Result<IdTokenClaims, TokenError> {
        let checked = self.check_id(id_token, expected_audience).await;
        count_refusal("verify_id_token", &checked);
        checked
    }

    #[cfg(feature = "jwt")]
    pub(super) async fn check_id(
        &self,
        id_token: &str,
        expected_audience: &str,
    ) -> Result<IdTokenClaims, TokenError> {
        let keys = self.jwt.as_ref().ok_or(TokenError::InvalidToken)?;
        let claims = keys
            .verify_id(id_token, expected_audience)
            .ok_or(TokenError::InvalidToken)?;
        let record = Some(self.look_up(&claims.jti, Lookup::Id).await?)
            .filter(|r| r.user == claims.sub)
            .ok_or(TokenError::InvalidToken)?;
        Ok(IdTokenClaims {
            subject: claims.sub,
            audience: claims.aud,
            issuer: claims.iss,
            issued_at: time(record.issued_ms),
            expires_at: time(record.expires_ms),
            auth_time: time(claims.auth_time.saturating_mul(1000)),
            nonce: claims.nonce,
            session: record.session,
            family: FamilyId::parse(&record.family).ok_or(TokenError::InvalidToken)?,
        })
    }

    /// The public keys that verify this `Tokens`' JWTs, as a JSON Web Key Set to serve
    /// at `/.well-known/jwks.json` (empty without asymmetric keys).
    #[cfg(feature = "jwt")]
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.jwt.as_ref().map_or_else(
            || jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
            |k| k.jwks(),
        )
    }
}
