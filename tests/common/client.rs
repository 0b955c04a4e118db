//! An in-process client for a `Router`, with a one-cookie jar.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A parsed `Set-Cookie`.
#[derive(Clone, Debug)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    pub raw: String,
}

impl SetCookie {
    pub fn is_removal(&self) -> bool {
        self.value.is_empty() || self.raw.contains("Max-Age=0")
    }

    pub fn max_age(&self) -> Option<u64> {
        self.raw
            .split(';')
            .find_map(|p| p.trim().strip_prefix("Max-Age="))
            .and_then(|v| v.parse().ok())
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
    pub headers: HeaderMap,
    pub set_cookie: Option<SetCookie>,
}

/// Sends requests through `app`, keeping the session cookie like a browser would.
#[derive(Clone)]
pub struct Client {
    pub app: Router,
    pub cookie_name: String,
    pub cookie: Option<String>,
    /// Sent with every request, e.g. `user-agent`.
    pub headers: Vec<(&'static str, String)>,
}

impl Client {
    pub fn new(app: Router) -> Self {
        Self {
            app,
            cookie_name: "__Host-id".to_owned(),
            cookie: None,
            headers: Vec::new(),
        }
    }

    pub async fn get(&mut self, uri: &str) -> Reply {
        self.send(Method::GET, uri).await
    }

    pub async fn post(&mut self, uri: &str) -> Reply {
        self.send(Method::POST, uri).await
    }

    pub async fn send(&mut self, method: Method, uri: &str) -> Reply {
        self.send_body(method, uri, None).await
    }

    /// Sends `form` as an `application/x-www-form-urlencoded` body.
    pub async fn post_form(&mut self, uri: &str, form: &str) -> Reply {
        self.send_body(Method::POST, uri, Some(form)).await
    }

    async fn send_body(&mut self, method: Method, uri: &str, form: Option<&str>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if form.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, format!("{}={c}", self.cookie_name));
        }
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }
        let body = form.map_or_else(Body::empty, |f| Body::from(f.to_owned()));
        let reply = send(self.app.clone(), req.body(body).unwrap()).await;
        if let Some(sc) = &reply.set_cookie {
            assert_eq!(sc.name, self.cookie_name);
            self.cookie = (!sc.is_removal()).then(|| sc.value.clone());
        }
        reply
    }
}

/// Sends one request and parses the reply.
pub async fn send(app: Router, req: Request<Body>) -> Reply {
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let cookies: Vec<_> = headers.get_all(header::SET_COOKIE).iter().collect();
    assert!(cookies.len() <= 1, "more than one Set-Cookie: {cookies:?}");
    let set_cookie = cookies.first().map(|v| {
        let raw = v.to_str().unwrap().to_owned();
        let first = raw.split(';').next().unwrap();
        let (name, value) = first.split_once('=').unwrap();
        SetCookie {
            name: name.trim().to_owned(),
            value: value.trim().to_owned(),
            raw: raw.clone(),
        }
    });
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        headers,
        set_cookie,
    }
}
