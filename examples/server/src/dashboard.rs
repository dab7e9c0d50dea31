//! The archive's web page, `GET /dashboard`: conventions, hooks with their live
//! releases and, given a token, the deployment audit log, all read from the API by the
//! page's script. `osa dashboard` opens it with the stored token in the URL fragment
//! (which browsers never send to the server); the script keeps it for the tab only.
//!
//! The page, its script and its style sheet are compiled into the binary. They load
//! nothing from elsewhere, and a strict Content-Security-Policy says so: scripts and
//! styles from this origin only, no inline script, requests to this origin only.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const PAGE: &str = include_str!("../assets/dashboard.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

/// What the browser may load for the page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The dashboard routes for an API mounted at `api_prefix` (`/api/v1`, or `` for `/`).
pub fn routes(api_prefix: &str) -> Router {
    let page = PAGE.replace("{{API}}", &escape_attribute(api_prefix));
    Router::new()
        .route(
            "/dashboard",
            get(move || {
                let page = page.clone();
                async move { asset("text/html; charset=utf-8", page) }
            }),
        )
        .route(
            "/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT.to_string()) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE.to_string()) }),
        )
}

fn asset(content_type: &'static str, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `value` safe inside a double-quoted HTML attribute.
fn escape_attribute(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_cannot_break_out_of_its_attribute() {
        assert_eq!(
            escape_attribute(r#"/a"><script>"#),
            "/a&quot;&gt;&lt;script&gt;"
        );
        let page = PAGE.replace("{{API}}", &escape_attribute("/api/v1"));
        assert!(page.contains(r#"<meta name="osa-api" content="/api/v1">"#));
        assert!(!page.contains("{{API}}"));
    }
}
