//! [`SessionService`]: the tower service that runs the session around a request.

use std::fmt;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::context::{LayerState, RequestMeta};
use crate::cookie;
use crate::events::EventKind;
use crate::future::ResponseFuture;
use crate::layer::SessionLayer;
use crate::session::{Commit, CookieAction, Session};

/// Wraps a service with sessions; made by [`SessionLayer`].
pub struct SessionService<S> {
    pub(crate) inner: S,
    pub(crate) layer: SessionLayer,
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

impl<S: Clone> Clone for SessionService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let layer = self.layer.clone();
        let name = &layer.ctx.config.cookie.name;
        let namespace = layer.ctx.store.namespace();
        let incoming = cookie::extract(req.headers(), name, namespace, &layer.codec);
        let meta = request_meta(&req, layer.ctx.config.client_ip_header.as_ref());
        if let cookie::Incoming::Invalid(reason) = incoming {
            layer.ctx.rejected.fetch_add(1, Ordering::Relaxed);
            // Never the value: it is attacker-controlled and may be someone's secret.
            tracing::info!(target: "tower_redis_session::suspicious", reason, "rejected session cookie");
            crate::metrics::cookie_refused(reason);
            invalid_cookie_event(&layer.ctx, &req, &meta);
        }
        let session = Session::new(layer.ctx.clone(), incoming, meta);
        req.extensions_mut().insert(session.clone());

        // The ready service goes into the future; a fresh clone stays behind.
        // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(async move {
            let mut res = inner.call(req).await?;
            match session.commit().await {
                Commit::Cookie(action) => apply(&layer, action, &mut res),
                Commit::Failed(e) => {
                    let (parts, ()) = (layer.on_store_error)(&e).into_parts();
                    res = Response::from_parts(parts, ResBody::default());
                }
                Commit::TooLarge => {
                    res = Response::new(ResBody::default());
                    *res.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
                }
            }
            Ok(res)
        })
    }
}

/// The client's IP (trusted proxy header, else axum's `ConnectInfo`) and user agent.
/// Cheap: a header value clone, no formatting.
fn request_meta<B>(req: &Request<B>, ip_header: Option<&http::HeaderName>) -> RequestMeta {
    let ip = match ip_header {
        Some(h) => req
            .headers()
            .get_all(h)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok()),
        None => req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip()),
    };
    RequestMeta {
        ip,
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
    }
}

/// Queues an [`EventKind::InvalidCookie`] event, fingerprinted by a keyed hash of the
/// request's `Cookie` headers.
fn invalid_cookie_event<B>(ctx: &LayerState, req: &Request<B>, meta: &RequestMeta) {
    let Some(mut event) = ctx.event(EventKind::InvalidCookie, None, None, Some(meta)) else {
        return;
    };
    let mut raw = Vec::new();
    for v in req.headers().get_all(header::COOKIE) {
        raw.extend_from_slice(v.as_bytes());
        raw.push(b'\n');
    }
    event.fingerprint = ctx.events.fingerprint(&raw);
    ctx.events.emit(event);
}

fn apply<B>(layer: &SessionLayer, action: CookieAction, res: &mut Response<B>) {
    let config = &layer.ctx.config.cookie;
    let value = match action {
        CookieAction::Keep => return,
        CookieAction::Set { id, max_age } => layer
            .cookie_value(&id)
            .and_then(|v| cookie::session_cookie(config, v, max_age)),
        CookieAction::Remove => cookie::removal_cookie(config),
    };
    let Some(value) = value else {
        tracing::error!("could not encode the session cookie");
        return;
    };
    let headers = res.headers_mut();
    headers.append(header::SET_COOKIE, value);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
