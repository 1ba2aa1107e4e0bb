//! The web dashboard: static files embedded in the binary (`dashboard/`), served under
//! `/dashboard/`. Plain HTML, CSS and JavaScript with no framework, nothing fetched from another
//! origin; the page talks to the admin API of the broker that serves it (login, lists, the
//! `GET /api/v1/events` stream).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::Body;

/// The dashboard's files: name under `/dashboard/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("dashboard/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("dashboard/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("dashboard/favicon.svg"),
    ),
];

/// The Content-Security-Policy of every dashboard file: everything from this origin only, no
/// inline script or style, no framing, forms posted nowhere else.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The file at `path` under `/dashboard/` (`""` is `index.html`; a leading `/` is ignored):
/// its content type and bytes.
pub(crate) fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        name => name,
    };
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, content_type, bytes)| (*content_type, *bytes))
}

/// The response for `GET /dashboard/{path}`: the file with its content type, the security
/// headers and `Cache-Control: no-cache` (the files change with the binary and have no
/// versioned names; they are small and served from the same host); `None` for an unknown
/// file.
pub(crate) fn response(path: &str) -> Option<Response<Body>> {
    let (content_type, bytes) = asset(path)?;
    let mut response = Response::new(super::router::full(bytes));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Some(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn assets_by_path() {
        let (content_type, index) = asset("").unwrap();
        assert_eq!(content_type, "text/html; charset=utf-8");
        assert_eq!(asset("index.html").unwrap().1, index);
        assert_eq!(asset("/index.html").unwrap().1, index);
        assert_eq!(asset("app.js").unwrap().0, "text/javascript; charset=utf-8");
        assert_eq!(asset("app.css").unwrap().0, "text/css; charset=utf-8");
        assert_eq!(asset("favicon.svg").unwrap().0, "image/svg+xml");
        for missing in [
            "nope.js",
            "../Cargo.toml",
            "dashboard/app.js",
            "APP.JS",
            "index.html/",
        ] {
            assert!(asset(missing).is_none(), "{missing}");
        }
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        let html = std::str::from_utf8(asset("").unwrap().1).unwrap();
        // Relative references only (resolved under /dashboard/), nothing inline that the
        // policy would block.
        for reference in ["src=\"app.js\"", "href=\"app.css\"", "href=\"favicon.svg\""] {
            assert!(html.contains(reference), "{reference}");
        }
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<script>") && !html.contains("style=\""));
        for handler in ["onclick=", "onload=", "onsubmit=", "javascript:"] {
            assert!(!html.contains(handler), "{handler}");
        }
        let js = std::str::from_utf8(asset("app.js").unwrap().1).unwrap();
        // Data reaches the page as text only.
        assert!(!js.contains("innerHTML") && !js.contains("outerHTML"));
        assert!(!js.contains("insertAdjacentHTML") && !js.contains("eval("));
    }

    #[test]
    fn responses_carry_the_security_headers() {
        let response = response("app.js").unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'")
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert!(super::response("missing").is_none());
    }
}
