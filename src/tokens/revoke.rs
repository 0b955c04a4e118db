//! Revoking and listing: one token, its family, a user's families (RFC 7009).

use super::*;

impl Tokens {
    /// Revokes a token (RFC 7009): an access token ends alone; a refresh token (live or
    /// already rotated) ends its whole family, access tokens included. Idempotent, and
    /// succeeds for unknown or malformed tokens. Whatever client the token was issued
    /// to: this is the server's own revocation (a logout, an admin); a revocation
    /// endpoint that serves OAuth clients calls
    /// [`revoke_for_client`](Self::revoke_for_client).
    ///
    /// # Errors
    /// [`TokenError::Store`] if the store failed.
    pub async fn revoke(&self, token: &str) -> Result<(), TokenError> {
        Ok(self.revoke_as(token, None).await.map(|_| ())?)
    }

    /// As [`revoke`](Self::revoke), for the OAuth client `client_id` that your
    /// revocation endpoint authenticated (RFC 7009 §2.1): a token whose family was
    /// issued to another client (or to none) is refused and nothing changes.
    ///
    /// # Errors
    /// - [`TokenError::InvalidGrant`]: the token was issued to another client.
    /// - [`TokenError::Store`]: the store failed.
    pub async fn revoke_for_client(&self, client_id: &str, token: &str) -> Result<(), TokenError> {
        match self.revoke_as(token, Some(client_id)).await? {
            true => Ok(()),
            false => Err(TokenError::InvalidGrant),
        }
    }

    /// Revokes `token` as `client` asks (`None`: unchecked); false when its family
    /// belongs to another client.
    pub(super) async fn revoke_as(
        &self,
        token: &str,
        client: Option<&str>,
    ) -> Result<bool, StoreError> {
        #[cfg(feature = "jwt")]
        let unwrapped;
        #[cfg(feature = "jwt")]
        let token = match self.jwt.as_ref().and_then(|k| k.jti_ignoring_expiry(token)) {
            Some(jti) => {
                unwrapped = jti;
                unwrapped.as_str()
            }
            None => token,
        };
        let Some(t) = Opaque::parse(token) else {
            return Ok(true);
        };
        if !t.verify(&self.check_key().await?) {
            return Ok(true);
        }
        let stored = t.stored();
        let target = match t.kind() {
            Kind::Access => Target::Access(&stored.hash, client),
            Kind::Refresh => Target::Refresh(&stored.hash, client),
            // An ID token ends with its family.
            Kind::Id => return Ok(true),
        };
        let Some(ended) = self.backend.revoke(&stored.tag, target, now_ms()).await? else {
            return Ok(false);
        };
        for family in ended {
            let kind = crate::events::EventKind::TokenRevoked;
            self.emit(kind, None, FamilyId::parse(&family));
        }
        Ok(true)
    }

    /// The live token families of `user_id`, oldest first ("apps signed in to your
    /// account").
    ///
    /// # Errors
    /// [`TokenError::Store`] if the store failed.
    pub async fn list(&self, user_id: &str) -> Result<Vec<FamilyInfo>, TokenError> {
        let tag = self.backend.user_tag(user_id).await?;
        let mut list: Vec<FamilyInfo> = self
            .backend
            .list(&tag, user_id, now_ms())
            .await?
            .into_iter()
            .filter_map(|r| {
                Some(FamilyInfo {
                    family: FamilyId::parse(&r.family)?,
                    created: time(r.created_ms),
                    last_refreshed: r.refreshed_ms.map(time),
                    expires: time(r.expires_ms),
                    session: r.session,
                    scope: r.scope,
                    id_token_expires: r.id_expires_ms.map(time),
                    client_id: r.client,
                })
            })
            .collect();
        list.sort_by_key(|f| (f.created, f.family));
        Ok(list)
    }

    /// Revokes one token family of `user_id` (e.g. "sign out that app"); returns whether
    /// it existed.
    ///
    /// # Errors
    /// [`TokenError::Store`] if the store failed.
    pub async fn revoke_family(&self, user_id: &str, family: FamilyId) -> Result<bool, TokenError> {
        let tag = self.backend.user_tag(user_id).await?;
        let id = family.to_string();
        let target = Target::Family {
            id: &id,
            user: user_id,
        };
        let revoked = self
            .backend
            .revoke(&tag, target, now_ms())
            .await?
            .is_some_and(|ended| !ended.is_empty());
        if revoked {
            let kind = crate::events::EventKind::TokenRevoked;
            self.emit(kind, Some(user_id), Some(family));
        }
        Ok(revoked)
    }

    /// Revokes every token of `user_id`, in one atomic step; returns how many families
    /// ended. (To end sessions too, use [`SessionAdmin::revoke_all`](crate::SessionAdmin::revoke_all).)
    ///
    /// # Errors
    /// [`TokenError::Store`] if the store failed.
    pub async fn revoke_all_tokens(&self, user_id: &str) -> Result<usize, TokenError> {
        let tag = self.backend.user_tag(user_id).await?;
        let revoked = self
            .backend
            .revoke(&tag, Target::User(user_id), now_ms())
            .await?
            .unwrap_or_default();
        for family in &revoked {
            let kind = crate::events::EventKind::TokenRevoked;
            self.emit(kind, Some(user_id), FamilyId::parse(family));
        }
        Ok(revoked.len())
    }
}
