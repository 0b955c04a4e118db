//! Issuing token families: plain, with options (scope, client, OpenID Connect), or
//! bound to a session.

use super::*;

impl Tokens {
    /// Issues a new token family for `user_id` and returns its first pair.
    ///
    /// # Errors
    /// [`TokenError::Store`] if the store failed.
    pub async fn issue(&self, user_id: &str) -> Result<TokenPair, TokenError> {
        self.issue_with(user_id, IssueOptions::default()).await
    }

    /// As [`issue`](Self::issue), with options (a scope).
    ///
    /// # Errors
    /// [`TokenError::InvalidUserId`] for an empty or over-long user id, or one with a
    /// control character; [`TokenError::Store`] if the store failed.
    pub async fn issue_with(
        &self,
        user_id: &str,
        options: IssueOptions,
    ) -> Result<TokenPair, TokenError> {
        check_user_id(user_id).map_err(TokenError::InvalidUserId)?;
        options.check()?;
        self.id_token_wanted(&options)?;
        let tag = self.backend.user_tag(user_id).await?;
        self.issue_in(&tag, user_id, None, false, options).await
    }

    /// Issues a token family for the user logged in on `session`, bound to it: when the
    /// session ends (logout, revoke, expiry, or a login as another user), its tokens
    /// stop working too. The binding is by the session's handle, so it survives id
    /// rotation ([`Session::cycle_id`], a new login of the same user).
    ///
    /// # Errors
    /// [`TokenError::NotLoggedIn`] if the session is not logged in (or belongs to another
    /// namespace); [`TokenError::SessionEnded`] if it ended meanwhile;
    /// [`TokenError::Store`] / [`TokenError::Session`] if a store failed.
    pub async fn issue_for_session(
        &self,
        session: &Session,
        mut options: IssueOptions,
    ) -> Result<TokenPair, TokenError> {
        options.check()?;
        self.id_token_wanted(&options)?;
        let Some((user, key, handle, ns)) = session.binding().await? else {
            return Err(TokenError::NotLoggedIn);
        };
        // The ID token's auth_time is the session's login, not the issue.
        if options.auth_time.is_none() {
            options.auth_time = session.authenticated_at().await?;
        }
        if ns != self.backend.namespace() {
            return Err(TokenError::NotLoggedIn);
        }
        self.issue_in(key.tag(), &user, Some((key.hash(), handle)), false, options)
            .await
    }

    /// Signs `user_id` in on a device that keeps no cookie (a mobile or desktop app):
    /// one call creates the device's session record and a token family that lives and
    /// dies with it, and returns the family's first pair.
    ///
    /// The device is a session like a browser's, of the layer serving `session`:
    /// - it records this request's IP and user agent, and the options'
    ///   [details](IssueOptions::with_details);
    /// - it counts toward the per-user [`SessionLimit`](crate::SessionLimit) (under
    ///   `Reject`, a login at the limit fails with `TooManySessions`; under
    ///   `EvictOldest`, it may end the oldest session, a browser's or a device's);
    /// - it is listed by [`Session::user_sessions`] and
    ///   [`SessionAdmin::list`](crate::SessionAdmin::list), and revoked with the other
    ///   sessions (`revoke_session`, `revoke_other_sessions`, `logout_everywhere`),
    ///   which ends its tokens at once;
    /// - ending its family (an app's [`revoke`](Self::revoke) of its refresh token,
    ///   [`revoke_family`](Self::revoke_family), [`revoke_all_tokens`](Self::revoke_all_tokens),
    ///   a detected reuse) ends the device too.
    ///
    /// It lives as long as its tokens would: idle for the refresh token TTL, at most
    /// the family lifetime. Its bearer requests keep it alive, under the threshold rule,
    /// which is why these `Tokens` must have [`with_session_layer`](Self::with_session_layer).
    /// The request's own session (a browser's cookie, if any) is left as it is and no
    /// cookie is sent.
    ///
    /// # Errors
    /// [`TokenError::NoSessionLayer`] without `with_session_layer`, or if `session`'s
    /// layer is on another store; [`TokenError::InvalidUserId`],
    /// [`TokenError::InvalidRequest`]; [`TokenError::Session`] with
    /// [`SessionError::TooManySessions`] at a `Reject` limit; [`TokenError::Store`] /
    /// [`TokenError::Session`] if a store failed. Nothing is left behind on error.
    pub async fn login(
        &self,
        session: &Session,
        user_id: &str,
        mut options: IssueOptions,
    ) -> Result<TokenPair, TokenError> {
        check_user_id(user_id).map_err(TokenError::InvalidUserId)?;
        options.check()?;
        self.id_token_wanted(&options)?;
        let store = session.store();
        if self.sessions.is_none() || self.check_store(store).is_err() {
            return Err(TokenError::NoSessionLayer);
        }
        let expiry = crate::Expiry::idle(self.config.refresh_ttl)
            .with_absolute_lifetime(Some(self.config.family_lifetime));
        let details = options.details.take();
        let (key, handle) = session.login_device(user_id, expiry, details).await?;
        let bound = Some((key.hash(), handle));
        let issued = self
            .issue_in(key.tag(), user_id, bound, true, options)
            .await;
        if issued.is_err() {
            // A device without tokens would be listed but unusable: it goes.
            let gone = store
                .revoke_user(
                    key.tag(),
                    user_id,
                    crate::store::Revoke::Handle(handle),
                    now_ms(),
                )
                .await;
            if let Err(e) = gone {
                crate::error::log_store_error(&e, "end a device whose tokens failed");
            }
        }
        issued
    }

    /// Whether `options` ask for an ID token; an error if they do and none can be made.
    pub(super) fn id_token_wanted(&self, options: &IssueOptions) -> Result<bool, TokenError> {
        if !options.openid() {
            return Ok(false);
        }
        #[cfg(feature = "jwt")]
        return match &self.jwt {
            Some(keys) if keys.signs_with_secret() => Err(TokenError::IdTokenUnavailable(
                "ID tokens need a public-key signing key (JwtKey::rs256_pem or es256_pem), \
                 not a shared secret",
            )),
            Some(keys) if keys.issuer().is_some() => Ok(true),
            Some(_) => Err(TokenError::IdTokenUnavailable(
                "the JWT keys have no issuer (JwtKeys::with_issuer)",
            )),
            None => Err(TokenError::IdTokenUnavailable(
                "no JWT keys (Tokens::with_jwt)",
            )),
        };
        #[cfg(not(feature = "jwt"))]
        Err(TokenError::IdTokenUnavailable(
            "built without the `jwt` feature",
        ))
    }

    pub(super) async fn issue_in(
        &self,
        tag: &str,
        user: &str,
        session: Option<(&str, SessionHandle)>,
        device: bool,
        options: IssueOptions,
    ) -> Result<TokenPair, TokenError> {
        let with_id = self.id_token_wanted(&options)?;
        for _ in 0..COLLISION_RETRIES {
            let family = FamilyId::generate();
            let fid = family.to_string();
            let key = self.check_key().await?;
            let access = Opaque::generate(Kind::Access, tag, &key)?;
            let refresh = Opaque::generate(Kind::Refresh, tag, &key)?;
            let id = match with_id {
                true => Some(Opaque::generate(Kind::Id, tag, &key)?),
                false => None,
            };
            let id_hash = id.as_ref().map(|t| t.stored().hash);
            let now = now_ms();
            let req = Issue {
                user,
                tag,
                family: &fid,
                access: &access.stored().hash,
                refresh: &refresh.stored().hash,
                now_ms: now,
                ttl: self.config.ttls(),
                session,
                scope: options.scope.as_deref(),
                max_families: self.config.max_families.unwrap_or(0),
                id_token: id_hash.as_deref(),
                client: options.client_id.as_deref(),
                device,
            };
            match self.backend.issue(&req).await? {
                IssueOutcome::Issued {
                    access_exp,
                    refresh_exp,
                    id_exp,
                    evicted,
                } => {
                    for gone in &evicted {
                        let kind = crate::events::EventKind::TokenRevoked;
                        self.emit(kind, Some(user), FamilyId::parse(gone));
                    }
                    self.emit(
                        crate::events::EventKind::TokenIssued,
                        Some(user),
                        Some(family),
                    );
                    let claims = TokenClaims {
                        user_id: user.to_owned(),
                        family,
                        session: session.map(|s| s.1),
                        scope: options.scope.clone(),
                        issued_at: time(now),
                        expires_at: time(access_exp),
                    };
                    #[cfg_attr(not(feature = "jwt"), allow(unused_mut))]
                    let mut pair = self.pair(&access, &refresh, claims, now, refresh_exp)?;
                    #[cfg(feature = "jwt")]
                    if let (Some(keys), Some(id), Some(exp)) = (&self.jwt, &id, id_exp) {
                        let claims = jwt::IdClaims {
                            iss: keys.issuer().unwrap_or_default().to_owned(),
                            sub: user.to_owned(),
                            aud: options.client_id.clone().unwrap_or_default(),
                            exp: exp / 1000,
                            iat: now / 1000,
                            auth_time: options.auth_time.map_or(now, crate::time::unix_ms) / 1000,
                            nonce: options.nonce.clone(),
                            sid: session.map(|s| s.1.to_string()),
                            at_hash: keys.at_hash(&pair.access_token),
                            jti: id.encode(),
                        };
                        pair.id_token = Some(keys.sign_id(&claims)?);
                    }
                    #[cfg(not(feature = "jwt"))]
                    let _ = (id, id_exp);
                    return Ok(pair);
                }
                IssueOutcome::SessionGone => return Err(TokenError::SessionEnded),
                IssueOutcome::Collision => continue,
            }
        }
        Err(StoreError::Protocol("token collision persisted; is the RNG broken?").into())
    }

    pub(super) fn pair(
        &self,
        access: &Opaque,
        refresh: &Opaque,
        claims: TokenClaims,
        now: i64,
        refresh_exp: i64,
    ) -> Result<TokenPair, TokenError> {
        let secs = |exp: i64| u64::try_from((exp - now) / 1000).unwrap_or(0);
        #[cfg(feature = "jwt")]
        let access_token = match &self.jwt {
            Some(keys) => keys.sign(&access.encode(), &claims)?,
            None => access.encode(),
        };
        #[cfg(not(feature = "jwt"))]
        let access_token = access.encode();
        Ok(TokenPair {
            access_token,
            token_type: "Bearer",
            expires_in: secs(crate::time::unix_ms(claims.expires_at)),
            refresh_token: refresh.encode(),
            refresh_token_expires_in: secs(refresh_exp),
            scope: claims.scope,
            id_token: None,
            family: claims.family,
        })
    }
}
