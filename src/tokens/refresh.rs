//! Refreshing: rotation with reuse detection and the grace window.

use super::*;

impl Tokens {
    /// Rotates a refresh token: consumes it and issues a new pair in its family, in one
    /// atomic step. Of concurrent refreshes with one token, exactly one succeeds.
    ///
    /// # Errors
    /// - [`TokenError::InvalidGrant`]: malformed, unknown, expired, revoked, or its family
    ///   or bound session ended.
    /// - [`TokenError::Raced`]: the token was rotated within the grace window (a
    ///   double submit); nothing changed.
    /// - [`TokenError::Reused`]: the token was consumed before; its family is now
    ///   revoked.
    /// - [`TokenError::Store`]: the store failed.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, TokenError> {
        let rotated = self.rotate(refresh_token, None).await;
        count_refusal("refresh", &rotated);
        rotated
    }

    /// As [`refresh`](Self::refresh), for the OAuth client `client_id` that your token
    /// endpoint authenticated: a family issued to another client (or to none) is refused
    /// with [`TokenError::InvalidGrant`] and left as it was (RFC 6749 §6).
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh).
    pub async fn refresh_for_client(
        &self,
        client_id: &str,
        refresh_token: &str,
    ) -> Result<TokenPair, TokenError> {
        let rotated = self.rotate(refresh_token, Some(client_id)).await;
        count_refusal("refresh", &rotated);
        rotated
    }

    pub(super) async fn rotate(
        &self,
        refresh_token: &str,
        client: Option<&str>,
    ) -> Result<TokenPair, TokenError> {
        let key = self.check_key().await?;
        let presented = Opaque::parse(refresh_token)
            .filter(|t| t.kind() == Kind::Refresh && t.verify(&key))
            .ok_or(TokenError::InvalidGrant)?
            .stored();
        for _ in 0..COLLISION_RETRIES {
            let access = Opaque::generate(Kind::Access, &presented.tag, &key)?;
            let refresh = Opaque::generate(Kind::Refresh, &presented.tag, &key)?;
            let now = now_ms();
            let req = Refresh {
                tag: &presented.tag,
                presented: &presented.hash,
                access: &access.stored().hash,
                refresh: &refresh.stored().hash,
                now_ms: now,
                ttl: self.config.ttls(),
                client,
            };
            match self.backend.refresh(&req).await? {
                RefreshOutcome::Rotated {
                    access: record,
                    refresh_exp,
                } => {
                    let claims = TokenClaims {
                        user_id: record.user,
                        family: FamilyId::parse(&record.family)
                            .ok_or(StoreError::Protocol("token family id is not a UUID"))?,
                        session: record.session,
                        scope: record.scope,
                        issued_at: time(record.issued_ms),
                        expires_at: time(record.expires_ms),
                    };
                    self.emit(
                        crate::events::EventKind::TokenRefreshed,
                        Some(&claims.user_id),
                        Some(claims.family),
                    );
                    return self.pair(&access, &refresh, claims, now, refresh_exp);
                }
                RefreshOutcome::Invalid => return Err(TokenError::InvalidGrant),
                RefreshOutcome::Grace { family, user } => {
                    let kind = crate::events::EventKind::TokenGraceReplay;
                    self.emit(kind, Some(&user), FamilyId::parse(&family));
                    return Err(TokenError::Raced);
                }
                RefreshOutcome::Reused { family, user, .. } => {
                    tracing::warn!(
                        target: "tower_redis_session::tokens",
                        family = %family,
                        "refresh token reused: token family revoked"
                    );
                    let id = FamilyId::parse(&family);
                    self.emit(crate::events::EventKind::TokenReused, Some(&user), id);
                    return Err(match id {
                        Some(family) => TokenError::Reused { family },
                        None => TokenError::InvalidGrant,
                    });
                }
                RefreshOutcome::Collision => continue,
            }
        }
        Err(StoreError::Protocol("token collision persisted; is the RNG broken?").into())
    }
}
