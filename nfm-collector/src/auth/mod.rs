//! Who may use the API and the dashboard (issue 15 items 3 and 4): bearer tokens with roles,
//! browser sessions behind a login page, and the decision for each request, made by the HTTP
//! front (`crate::http`) before a request reaches the API actor.
//!
//! - `api_token` is the admin: everything. `viewer_token` reads: GET and HEAD (including
//!   `/metrics`); anything else is a 403. Tokens are compared in constant time, both always.
//! - A browser exchanges a token (POST `/login`, a form or JSON) for a session cookie
//!   (`nfm_session`: HttpOnly, SameSite=Strict, Secure under TLS, Max-Age = the session's life).
//!   Sessions live in a server-side table with an expiry; ids are 256 random bits from the OS
//!   (`getrandom`). POST `/logout` deletes the session. No token travels in a URL or is kept by
//!   the dashboard's JavaScript: it sends the cookie.
//! - Without credentials the dashboard's pages redirect to `/login` (never a 401 a browser
//!   cannot act on); the API and `/metrics` answer 401. The dashboard's static files are
//!   public (they hold no data). `GET /api/session` tells the dashboard whether sign-in is on
//!   and the caller's role.
//!
//! Wrong tokens, expired or unknown sessions and viewer writes are counted ([`AuthCounters`],
//! `nfm_auth_rejected_total`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "nfm_session";
const LOGIN_PAGE: &str = include_str!("login.html");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub admin_token: Option<String>,
    pub viewer_token: Option<String>,
    pub session_ttl: Duration,
    /// Add `Secure` to the cookie (the API is served over TLS).
    pub secure_cookie: bool,
    /// Sessions held at most; the oldest goes when a login would exceed it.
    pub max_sessions: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            admin_token: None,
            viewer_token: None,
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookie: false,
            max_sessions: 10_000,
        }
    }
}

/// `nfm_auth_*` in `/metrics`.
#[derive(Debug, Default)]
pub struct AuthCounters {
    pub logins: AtomicU64,
    pub logouts: AtomicU64,
    /// A token (bearer or at login) that is neither the admin's nor the viewer's.
    pub wrong_token: AtomicU64,
    pub expired_session: AtomicU64,
    /// A session cookie the table does not hold (logged out, or the collector restarted).
    pub unknown_session: AtomicU64,
    /// Requests without any credentials to a protected path.
    pub missing: AtomicU64,
    /// A viewer's write (403).
    pub forbidden: AtomicU64,
    /// Sessions held now.
    pub sessions: AtomicU64,
}

/// The parts of a request the decision needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Head<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub authorization: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// An answer the front writes itself (login, logout, refusals).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Extra headers (`Set-Cookie`, `Location`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, v: serde_json::Value) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }
    fn error(status: u16, msg: &str) -> Answer {
        Answer::json(status, serde_json::json!({ "error": msg }))
    }
    fn redirect(to: &str) -> Answer {
        Answer {
            status: 303,
            content_type: "text/plain; charset=utf-8",
            body: format!("see {to}").into_bytes(),
            headers: vec![("Location", to.to_string())],
        }
    }
    fn login_page(status: u16, error: Option<&str>) -> Answer {
        let block = error
            .map(|e| format!("<p class=\"error\" id=\"error\" role=\"alert\">{e}</p>"))
            .unwrap_or_default();
        Answer {
            status,
            content_type: "text/html; charset=utf-8",
            body: LOGIN_PAGE.replace("<!--error-->", &block).into_bytes(),
            headers: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub enum Decision {
    /// Hand the request to the API actor (`None`: a public path, no credentials needed).
    Forward(Option<Role>),
    /// Answer it here.
    Answer(Answer),
}

struct Session {
    role: Role,
    created: Instant,
    expires: Instant,
}

pub struct Auth {
    cfg: AuthConfig,
    sessions: Mutex<HashMap<String, Session>>,
    pub counters: Arc<AuthCounters>,
}

/// Equal in time that depends only on the lengths, never on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A `name=value` from a `Cookie:` header.
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v.trim())
    })
}

/// The token from a login body: a form (`token=...`) or JSON (`{"token": "..."}`).
fn login_token(h: &Head) -> Option<String> {
    let ct = h.content_type.unwrap_or("");
    if ct.starts_with("application/json") {
        let v: serde_json::Value = serde_json::from_slice(h.body).ok()?;
        return v.get("token")?.as_str().map(String::from);
    }
    let body = std::str::from_utf8(h.body).ok()?;
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "token").then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// `GET /api/session`: whether sign-in is on and the caller's role (the dashboard shows it
/// with a logout button).
fn session_answer(auth: bool, role: Role) -> Answer {
    Answer::json(
        200,
        serde_json::json!({ "auth": auth, "role": role.as_str() }),
    )
}

impl Auth {
    pub fn new(cfg: AuthConfig) -> Auth {
        Auth {
            cfg,
            sessions: Mutex::new(HashMap::new()),
            counters: Arc::new(AuthCounters::default()),
        }
    }

    /// Whether any token is configured (otherwise every request is forwarded as the admin's).
    pub fn enabled(&self) -> bool {
        self.cfg.admin_token.is_some()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The role a token grants. Both tokens are always compared.
    pub fn role_of_token(&self, token: &str) -> Option<Role> {
        let t = token.trim().as_bytes();
        let cmp = |k: &Option<String>| {
            k.as_ref()
                .is_some_and(|k| constant_time_eq(t, k.as_bytes()))
        };
        let admin = cmp(&self.cfg.admin_token);
        let viewer = cmp(&self.cfg.viewer_token);
        if admin {
            Some(Role::Admin)
        } else if viewer {
            Some(Role::Viewer)
        } else {
            None
        }
    }

    fn new_session(&self, role: Role) -> Result<String, String> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| format!("no randomness for a session id: {e}"))?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut s = self.sessions();
        s.retain(|_, v| v.expires > now);
        while s.len() >= self.cfg.max_sessions.max(1) {
            let Some(oldest) = s
                .iter()
                .min_by_key(|(_, v)| v.created)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            s.remove(&oldest);
        }
        s.insert(
            id.clone(),
            Session {
                role,
                created: now,
                expires: now + self.cfg.session_ttl,
            },
        );
        self.counters
            .sessions
            .store(s.len() as u64, Ordering::Relaxed);
        Ok(id)
    }

    fn set_cookie(&self, id: &str, max_age: u64) -> String {
        format!(
            "{COOKIE}={id}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            if self.cfg.secure_cookie {
                "; Secure"
            } else {
                ""
            }
        )
    }

    /// The session's role; counts expired and unknown ones.
    fn session_role(&self, id: &str) -> Option<Role> {
        let now = Instant::now();
        let mut s = self.sessions();
        match s.get(id) {
            Some(v) if v.expires > now => Some(v.role),
            Some(_) => {
                s.remove(id);
                self.counters
                    .sessions
                    .store(s.len() as u64, Ordering::Relaxed);
                self.counters
                    .expired_session
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                self.counters
                    .unknown_session
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn wants_json(h: &Head) -> bool {
        h.content_type
            .is_some_and(|c| c.starts_with("application/json"))
    }

    /// What to do with one request.
    pub fn decide(&self, h: &Head) -> Decision {
        let path = h.url.split_once('?').map_or(h.url, |(p, _)| p);
        if !self.enabled() {
            return match path {
                "/login" | "/logout" => Decision::Answer(Answer::redirect("/")),
                "/api/session" => Decision::Answer(session_answer(false, Role::Admin)),
                _ => Decision::Forward(Some(Role::Admin)),
            };
        }
        let read = matches!(h.method, "GET" | "HEAD");
        let session = h.cookie.and_then(|c| cookie_value(c, COOKIE));
        match (h.method, path) {
            ("GET" | "HEAD", "/login") => {
                // Already signed in: straight to the dashboard (not counted as a rejection).
                let live = session.is_some_and(|id| {
                    self.sessions()
                        .get(id)
                        .is_some_and(|v| v.expires > Instant::now())
                });
                return Decision::Answer(if live {
                    Answer::redirect("/")
                } else {
                    Answer::login_page(200, None)
                });
            }
            ("POST", "/login") => return Decision::Answer(self.login(h)),
            ("POST" | "GET", "/logout") => {
                if let Some(id) = session {
                    if self.sessions().remove(id).is_some() {
                        self.counters.logouts.fetch_add(1, Ordering::Relaxed);
                    }
                    self.counters
                        .sessions
                        .store(self.sessions().len() as u64, Ordering::Relaxed);
                }
                let mut a = Answer::redirect("/login");
                a.headers.push(("Set-Cookie", self.set_cookie("", 0)));
                return Decision::Answer(a);
            }
            _ => {}
        }
        if read && (path.starts_with("/ui/") || path == "/favicon.ico") {
            return Decision::Forward(None);
        }
        let role = if let Some(a) = h.authorization {
            let role = a
                .strip_prefix("Bearer ")
                .and_then(|t| self.role_of_token(t));
            if role.is_none() {
                self.counters.wrong_token.fetch_add(1, Ordering::Relaxed);
                let mut r = Answer::error(
                    401,
                    "wrong bearer token (Authorization: Bearer TOKEN, the api_token or viewer_token)",
                );
                r.headers
                    .push(("WWW-Authenticate", "Bearer realm=\"nfm\"".into()));
                return Decision::Answer(r);
            }
            role
        } else if let Some(id) = session {
            self.session_role(id)
        } else {
            None
        };
        let Some(role) = role else {
            if session.is_none() {
                self.counters.missing.fetch_add(1, Ordering::Relaxed);
            }
            if read && matches!(path, "/" | "/index.html") {
                let mut a = Answer::redirect("/login");
                if session.is_some() {
                    a.headers.push(("Set-Cookie", self.set_cookie("", 0)));
                }
                return Decision::Answer(a);
            }
            let mut r = Answer::error(
                401,
                if session.is_some() {
                    "your session expired or was logged out: sign in again at /login"
                } else {
                    "missing credentials: send Authorization: Bearer TOKEN, or sign in at /login"
                },
            );
            r.headers
                .push(("WWW-Authenticate", "Bearer realm=\"nfm\"".into()));
            return Decision::Answer(r);
        };
        if path == "/api/session" && read {
            return Decision::Answer(session_answer(true, role));
        }
        if role == Role::Viewer && !read {
            self.counters.forbidden.fetch_add(1, Ordering::Relaxed);
            return Decision::Answer(Answer::error(
                403,
                &format!(
                    "{} {path}: the viewer token reads only (GET); changes need the api_token",
                    h.method
                ),
            ));
        }
        Decision::Forward(Some(role))
    }

    fn login(&self, h: &Head) -> Answer {
        let json = Self::wants_json(h);
        let Some(role) = login_token(h).and_then(|t| self.role_of_token(&t)) else {
            self.counters.wrong_token.fetch_add(1, Ordering::Relaxed);
            let msg = "That token is not valid: use the collector's api_token or viewer_token.";
            return if json {
                Answer::error(401, msg)
            } else {
                Answer::login_page(401, Some(msg))
            };
        };
        let id = match self.new_session(role) {
            Ok(id) => id,
            Err(e) => {
                log::error!("auth: {e}");
                return Answer::error(500, &e);
            }
        };
        self.counters.logins.fetch_add(1, Ordering::Relaxed);
        let cookie = self.set_cookie(&id, self.cfg.session_ttl.as_secs());
        let mut a = if json {
            Answer::json(200, serde_json::json!({ "role": role.as_str() }))
        } else {
            Answer::redirect("/")
        };
        a.headers.push(("Set-Cookie", cookie));
        a
    }
}

#[cfg(test)]
mod test;
