use super::*;

fn auth(ttl: Duration) -> Auth {
    Auth::new(AuthConfig {
        admin_token: Some("adm1n".into()),
        viewer_token: Some("v1ewer".into()),
        session_ttl: ttl,
        secure_cookie: true,
        max_sessions: 3,
    })
}

fn head<'a>(method: &'a str, url: &'a str) -> Head<'a> {
    Head {
        method,
        url,
        ..Head::default()
    }
}

fn answer(d: Decision) -> Answer {
    match d {
        Decision::Answer(a) => a,
        Decision::Forward(r) => panic!("forwarded as {r:?}"),
    }
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

/// Logs in with a form and returns the cookie header to send back.
fn login(a: &Auth, token: &str) -> String {
    let body = format!("token={token}");
    let r = answer(a.decide(&Head {
        body: body.as_bytes(),
        content_type: Some("application/x-www-form-urlencoded"),
        ..head("POST", "/login")
    }));
    assert_eq!(r.status, 303, "{:?}", String::from_utf8_lossy(&r.body));
    let c = header(&r, "Set-Cookie").expect("a cookie");
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Max-Age=",
        "Path=/",
    ] {
        assert!(c.contains(part), "{c}");
    }
    let id = cookie_value(c.split(';').next().unwrap(), COOKIE).unwrap();
    assert_eq!(id.len(), 64);
    format!("other=1; {COOKIE}={id}")
}

#[test]
fn test_dashboard_without_session_redirects_to_login_and_api_is_401() {
    let a = auth(Duration::from_secs(60));
    let r = answer(a.decide(&head("GET", "/")));
    assert_eq!((r.status, header(&r, "Location")), (303, Some("/login")));
    let r = answer(a.decide(&head("GET", "/login")));
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("name=\"token\""));
    for url in ["/api/monitors", "/metrics", "/api/status?x=1"] {
        let r = answer(a.decide(&head("GET", url)));
        assert_eq!(r.status, 401, "{url}");
        assert!(header(&r, "WWW-Authenticate").is_some());
    }
    // Static files hold no data: public, so the login page can use them.
    assert!(matches!(
        a.decide(&head("GET", "/ui/favicon.svg")),
        Decision::Forward(None)
    ));
    assert_eq!(a.counters.missing.load(Ordering::Relaxed), 4);
}

#[test]
fn test_roles_by_bearer_token() {
    let a = auth(Duration::from_secs(60));
    let with = |m: &'static str, url: &'static str, t: &'static str| Head {
        authorization: Some(t),
        ..head(m, url)
    };
    assert!(matches!(
        a.decide(&with("GET", "/metrics", "Bearer v1ewer")),
        Decision::Forward(Some(Role::Viewer))
    ));
    for m in ["POST", "PUT", "DELETE"] {
        let r = answer(a.decide(&with(m, "/api/monitors", "Bearer v1ewer")));
        assert_eq!(r.status, 403, "{m}");
    }
    assert_eq!(a.counters.forbidden.load(Ordering::Relaxed), 3);
    assert!(matches!(
        a.decide(&with("DELETE", "/api/monitors/x", "Bearer adm1n")),
        Decision::Forward(Some(Role::Admin))
    ));
    let r = answer(a.decide(&with("GET", "/api/status", "Bearer adm1n-not")));
    assert_eq!(r.status, 401);
    let r = answer(a.decide(&with("GET", "/api/status", "Basic YTpi")));
    assert_eq!(r.status, 401);
    assert_eq!(a.counters.wrong_token.load(Ordering::Relaxed), 2);
}

#[test]
fn test_login_session_logout() {
    let a = auth(Duration::from_secs(60));
    let cookie = login(&a, "v1ewer");
    let with = |m: &'static str, url: &'static str| Head {
        cookie: Some(&cookie),
        ..head(m, url)
    };
    assert!(matches!(
        a.decide(&with("GET", "/")),
        Decision::Forward(Some(Role::Viewer))
    ));
    let r = answer(a.decide(&with("GET", "/api/session")));
    assert_eq!(r.body, br#"{"auth":true,"role":"viewer"}"#);
    // The session carries the role: a viewer's session cannot write.
    assert_eq!(answer(a.decide(&with("POST", "/api/monitors"))).status, 403);
    // Signed in: /login goes to the dashboard.
    let r = answer(a.decide(&with("GET", "/login")));
    assert_eq!(header(&r, "Location"), Some("/"));
    let r = answer(a.decide(&with("POST", "/logout")));
    assert_eq!(header(&r, "Location"), Some("/login"));
    assert!(header(&r, "Set-Cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(a.counters.logouts.load(Ordering::Relaxed), 1);
    assert_eq!(a.counters.sessions.load(Ordering::Relaxed), 0);
    // The old cookie is dead: the dashboard redirects, the API is a 401, both counted.
    let r = answer(a.decide(&with("GET", "/")));
    assert_eq!(header(&r, "Location"), Some("/login"));
    assert_eq!(answer(a.decide(&with("GET", "/api/status"))).status, 401);
    assert_eq!(a.counters.unknown_session.load(Ordering::Relaxed), 2);
    // An admin session writes.
    let admin = login(&a, "adm1n");
    assert!(matches!(
        a.decide(&Head {
            cookie: Some(&admin),
            ..head("PUT", "/api/monitors/x")
        }),
        Decision::Forward(Some(Role::Admin))
    ));
}

#[test]
fn test_wrong_token_at_login_is_a_clear_401_and_counted() {
    let a = auth(Duration::from_secs(60));
    let r = answer(a.decide(&Head {
        body: b"token=nope",
        content_type: Some("application/x-www-form-urlencoded"),
        ..head("POST", "/login")
    }));
    assert_eq!(r.status, 401);
    assert!(String::from_utf8_lossy(&r.body).contains("That token is not valid"));
    assert!(header(&r, "Set-Cookie").is_none());
    let r = answer(a.decide(&Head {
        body: br#"{"token":"adm1n"}"#,
        content_type: Some("application/json"),
        ..head("POST", "/login")
    }));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, br#"{"role":"admin"}"#);
    assert_eq!(a.counters.wrong_token.load(Ordering::Relaxed), 1);
    assert_eq!(a.counters.logins.load(Ordering::Relaxed), 1);
}

#[test]
fn test_expired_session_is_refused_and_counted() {
    let a = auth(Duration::from_millis(30));
    let cookie = login(&a, "adm1n");
    // Bounded wait for the session's expiry (30 ms) to pass.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let d = a.decide(&Head {
            cookie: Some(&cookie),
            ..head("GET", "/api/status")
        });
        if let Decision::Answer(r) = d {
            assert_eq!(r.status, 401);
            assert!(String::from_utf8_lossy(&r.body).contains("expired"));
            assert_eq!(a.counters.expired_session.load(Ordering::Relaxed), 1);
            return;
        }
        std::thread::yield_now();
    }
    panic!("the session never expired");
}

#[test]
fn test_session_table_is_bounded_and_ids_are_random() {
    let a = auth(Duration::from_secs(60));
    let ids: Vec<String> = (0..5).map(|_| login(&a, "adm1n")).collect();
    assert_eq!(a.sessions().len(), 3);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5);
    // The oldest went first.
    assert!(matches!(
        a.decide(&Head {
            cookie: Some(&ids[0]),
            ..head("GET", "/api/status")
        }),
        Decision::Answer(_)
    ));
    assert!(matches!(
        a.decide(&Head {
            cookie: Some(&ids[4]),
            ..head("GET", "/api/status")
        }),
        Decision::Forward(Some(Role::Admin))
    ));
}

#[test]
fn test_no_token_configured_forwards_everything() {
    let a = Auth::new(AuthConfig::default());
    assert!(matches!(
        a.decide(&head("POST", "/api/monitors")),
        Decision::Forward(Some(Role::Admin))
    ));
    assert_eq!(answer(a.decide(&head("GET", "/login"))).status, 303);
}

#[test]
fn test_constant_time_eq() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
}

/// The login page works offline like the dashboard: nothing from another host, no script
/// (a plain form POST), and the token field is a password field.
#[test]
fn test_login_page_is_self_contained() {
    for bad in ["http://", "https://", "//cdn", "<script", "localStorage"] {
        assert!(!LOGIN_PAGE.contains(bad), "login.html contains `{bad}`");
    }
    assert!(LOGIN_PAGE.contains("type=\"password\""));
    assert!(LOGIN_PAGE.contains("method=\"post\" action=\"/login\""));
}
