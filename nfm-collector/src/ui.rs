//! The dashboard: every static asset of `nfm-collector/ui/` embedded in the binary and served
//! at `GET /` and `GET /ui/...`, routed here by `api::Api::route`.
//!
//! Why embedded: operators open the collector's own address and get the dashboard, on a machine
//! that may be offline and with no files to install next to the binary. Nothing is read from disk
//! at run time and no asset refers to another host (the tests below check both), so what was
//! built is exactly what is served. The dashboard itself only reads the JSON API (docs/api.md).

use crate::http::Reply;
/// One embedded file, by its path under `ui/`.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($path:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
        }
    };
}

/// Every file of `ui/`; `test_every_file_is_embedded` fails when one is missing here.
const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("style.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/route.js", JS),
    asset!("js/util.js", JS),
    asset!("js/charts.js", JS),
    asset!("js/topology.js", JS),
    asset!("js/views/common.js", JS),
    asset!("js/views/insights.js", JS),
    asset!("js/views/monitors.js", JS),
    asset!("js/views/overview.js", JS),
    asset!("js/views/history.js", JS),
    asset!("js/views/topology.js", JS),
    asset!("js/views/agents.js", JS),
];

fn lookup(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

fn serve(a: &Asset) -> Reply {
    Reply {
        status: 200,
        content_type: a.content_type,
        body: a.body.to_vec(),
    }
}

/// Answers a dashboard request (`path` without its query string), or `None` when the path is
/// not the dashboard's. Only GET and HEAD are allowed; an unknown `/ui/` file is a 404 (never a
/// file-system lookup, so `..` cannot escape).
pub fn route(method: &str, path: &str) -> Option<Reply> {
    let file = match path {
        "/" | "/index.html" => "index.html",
        "/favicon.ico" => "favicon.svg",
        _ => path.strip_prefix("/ui/")?,
    };
    if method != "GET" && method != "HEAD" {
        return Some(Reply::error(
            405,
            format!("{method} {path}: the dashboard is read-only (GET)"),
        ));
    }
    Some(match lookup(file) {
        Some(a) => serve(a),
        None => Reply::error(404, format!("no dashboard asset `{path}`")),
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use std::path::{Path, PathBuf};

    fn ui_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
    }

    fn files(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("read ui dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                files(&p, base, out);
            } else {
                let rel = p.strip_prefix(base).expect("under ui");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn test_every_file_is_embedded() {
        let mut on_disk = Vec::new();
        files(&ui_dir(), &ui_dir(), &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "ui/ and ASSETS differ: add new files to ASSETS"
        );
        for a in ASSETS {
            let disk = std::fs::read(ui_dir().join(a.path)).expect("read asset");
            assert_eq!(
                disk, a.body,
                "{} embedded bytes differ from the file",
                a.path
            );
        }
    }

    #[test]
    fn test_no_asset_refers_to_another_host() {
        // The machine may be offline: no CDN, no web fonts. The SVG namespace is a name, not a
        // request, so it is the one allowed URL.
        for a in ASSETS {
            let text = std::str::from_utf8(a.body).expect("utf-8 asset");
            let cleaned = text.replace("http://www.w3.org/2000/svg", "");
            for bad in ["http://", "https://", "//cdn", "@import url("] {
                assert!(!cleaned.contains(bad), "{} contains `{bad}`", a.path);
            }
        }
    }

    /// Quoted module specifiers after `from` / `import` / `import(`, and `src=`/`href=` in HTML.
    fn references(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for marker in ["from '", "import '", "import('", "src=\"", "href=\""] {
            let mut rest = text;
            while let Some(i) = rest.find(marker) {
                rest = &rest[i + marker.len()..];
                let end = rest.find(['\'', '"']).unwrap_or(rest.len());
                out.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
        out
    }

    fn resolve(from_file: &str, spec: &str) -> Option<String> {
        if let Some(abs) = spec.strip_prefix("/ui/") {
            return Some(abs.to_string());
        }
        if !spec.starts_with('.') {
            return None;
        }
        let mut parts: Vec<&str> = from_file.split('/').collect();
        parts.pop();
        for seg in spec.split('/') {
            match seg {
                "." => {}
                ".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
        Some(parts.join("/"))
    }

    #[test]
    fn test_every_reference_resolves_to_an_asset() {
        let mut checked = 0;
        for a in ASSETS
            .iter()
            .filter(|a| a.path.ends_with(".js") || a.path.ends_with(".html"))
        {
            let text = std::str::from_utf8(a.body).expect("utf-8");
            for r in references(text) {
                if r.starts_with('#') || r.is_empty() || r.contains("${") {
                    continue; // in-page links and template strings
                }
                let target = resolve(a.path, &r)
                    .unwrap_or_else(|| panic!("{}: `{r}` is neither relative nor /ui/", a.path));
                assert!(
                    lookup(&target).is_some(),
                    "{}: `{r}` → `{target}` is not embedded",
                    a.path
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 15,
            "only {checked} references found: the scan is broken"
        );
    }

    #[test]
    fn test_route_serves_index_and_assets() {
        let r = route("GET", "/").expect("dashboard");
        assert_eq!((r.status, r.content_type), (200, HTML));
        assert!(String::from_utf8(r.body).unwrap().contains("/ui/js/app.js"));
        let r = route("GET", "/ui/js/app.js").expect("asset");
        assert_eq!((r.status, r.content_type), (200, JS));
        let r = route("HEAD", "/ui/style.css").expect("asset");
        assert_eq!((r.status, r.content_type), (200, CSS));
        assert_eq!(
            route("GET", "/favicon.ico").expect("icon").content_type,
            SVG
        );
    }

    #[test]
    fn test_route_refuses_unknown_escaping_and_writes() {
        assert_eq!(route("GET", "/ui/nope.js").expect("ours").status, 404);
        assert_eq!(route("GET", "/ui/../Cargo.toml").expect("ours").status, 404);
        assert_eq!(route("GET", "/ui/").expect("ours").status, 404);
        assert_eq!(route("POST", "/ui/js/app.js").expect("ours").status, 405);
        assert_eq!(route("DELETE", "/").expect("ours").status, 405);
        // Not the dashboard's paths: the API answers those.
        assert!(route("GET", "/api/monitors").is_none());
        assert!(route("GET", "/metrics").is_none());
        assert!(route("GET", "/uix").is_none());
    }
}
