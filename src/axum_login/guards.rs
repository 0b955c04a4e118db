//! The guard macros (axum-login's `login_required!`, `permission_required!`) and the
//! login URL they redirect to.

/// The login URL with `field=<the original URI, percent-encoded>` first in its query,
/// unless the login URL names `field` itself. Used by the guard macros.
#[doc(hidden)]
pub fn __login_url(login_url: &str, field: &str, original: &http::Uri) -> String {
    let (path, query) = match login_url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (login_url, None),
    };
    let named = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some(field))
    });
    if named {
        return login_url.to_owned();
    }
    let mut url = format!("{path}?{field}=");
    for b in original.to_string().bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('&');
        url.push_str(q);
    }
    url
}

/// A guard (`route_layer`) that lets a request through when its [`AuthSession`](crate::axum_login::AuthSession) has
/// a user, as axum-login's macro of the same name does:
/// - `login_required!(Backend)`: `401` otherwise;
/// - `login_required!(Backend, login_url = "/login")`: a `307` redirect to
///   `/login?next=<the original URI>`;
/// - `login_required!(Backend, login_url = "/login", redirect_field = "to")`: the same
///   with `to=`.
#[macro_export]
macro_rules! login_required {
    ($backend:ty) => {{
        async fn is_authenticated(auth: $crate::axum_login::AuthSession<$backend>) -> bool {
            auth.user().await.is_some()
        }
        $crate::__predicate_required!(
            is_authenticated,
            $crate::axum_login::__axum::http::StatusCode::UNAUTHORIZED
        )
    }};
    ($backend:ty, login_url = $login_url:expr, redirect_field = $field:expr) => {{
        async fn is_authenticated(auth: $crate::axum_login::AuthSession<$backend>) -> bool {
            auth.user().await.is_some()
        }
        $crate::__predicate_required!(
            is_authenticated,
            login_url = $login_url,
            redirect_field = $field
        )
    }};
    ($backend:ty, login_url = $login_url:expr) => {
        $crate::login_required!($backend, login_url = $login_url, redirect_field = "next")
    };
}

/// A guard (`route_layer`) that lets a request through when its user has every
/// listed permission (`AuthzBackend::has_perm`; a backend failure counts as no), as
/// axum-login's macro of the same name does: `permission_required!(Backend, "p", …)`
/// answers `403` otherwise; with `login_url = "/login"` (and optionally
/// `redirect_field`) it redirects there instead.
#[macro_export]
macro_rules! permission_required {
    ($backend:ty, login_url = $login_url:expr, redirect_field = $field:expr, $($perm:expr),+ $(,)?) => {{
        $crate::__permission_check!($backend, $($perm),+);
        $crate::__predicate_required!(is_authorized, login_url = $login_url, redirect_field = $field)
    }};
    ($backend:ty, login_url = $login_url:expr, $($perm:expr),+ $(,)?) => {
        $crate::permission_required!($backend, login_url = $login_url, redirect_field = "next", $($perm),+)
    };
    ($backend:ty, $($perm:expr),+ $(,)?) => {{
        $crate::__permission_check!($backend, $($perm),+);
        $crate::__predicate_required!(
            is_authorized,
            $crate::axum_login::__axum::http::StatusCode::FORBIDDEN
        )
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __permission_check {
    ($backend:ty, $($perm:expr),+) => {
        async fn is_authorized(auth: $crate::axum_login::AuthSession<$backend>) -> bool {
            use $crate::axum_login::__AuthzBackend as _;
            let Some(user) = auth.user().await else {
                return false;
            };
            $(
                if !auth.backend().has_perm(&user, $perm.into()).await.unwrap_or(false) {
                    return false;
                }
            )+
            true
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __predicate_required {
    ($predicate:expr, $alternative:expr) => {{
        use $crate::axum_login::__axum::{
            middleware::{Next, from_fn},
            response::IntoResponse,
        };
        from_fn(
            |auth: $crate::axum_login::AuthSession<_>, req, next: Next| async move {
                if $predicate(auth).await {
                    next.run(req).await
                } else {
                    $alternative.into_response()
                }
            },
        )
    }};
    ($predicate:expr, login_url = $login_url:expr, redirect_field = $field:expr) => {{
        use $crate::axum_login::__axum::{
            extract::OriginalUri,
            middleware::{Next, from_fn},
            response::{IntoResponse, Redirect},
        };
        from_fn(
            |auth: $crate::axum_login::AuthSession<_>,
             OriginalUri(original): OriginalUri,
             req,
             next: Next| async move {
                if $predicate(auth).await {
                    next.run(req).await
                } else {
                    let to = $crate::axum_login::__login_url($login_url, $field, &original);
                    Redirect::temporary(&to).into_response()
                }
            },
        )
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_url_carries_where_the_user_was_going() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert_eq!(__login_url("/login", "next", &uri("/")), "/login?next=%2F");
        assert_eq!(
            __login_url("/login", "next", &uri("/?foo=bar&foo=baz")),
            "/login?next=%2F%3Ffoo%3Dbar%26foo%3Dbaz"
        );
        assert_eq!(
            __login_url("/login?foo=bar", "next", &uri("/a?x=1")),
            "/login?next=%2Fa%3Fx%3D1&foo=bar"
        );
        // A login URL that names the field itself is kept.
        assert_eq!(
            __login_url("/login?next=%2Fdashboard", "next", &uri("/x")),
            "/login?next=%2Fdashboard"
        );
        assert_eq!(
            __login_url("/signin", "to", &uri("/nested/foo")),
            "/signin?to=%2Fnested%2Ffoo"
        );
    }
}
