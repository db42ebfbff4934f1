//! `/metrics` for authorization and TLS (issue 15): logins, rejected credentials by reason,
//! sessions held, TLS handshake failures per listener and certificate reloads. Apart from
//! `render.rs` because these counters belong to the HTTP front and TLS, not to the pipeline.

use super::Metrics;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

fn family(o: &mut String, name: &str, kind: &str, help: &str, rows: &[(&str, &AtomicU64)]) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
    for (labels, v) in rows {
        let v = v.load(Ordering::Relaxed);
        if labels.is_empty() {
            let _ = writeln!(o, "{name} {v}");
        } else {
            let _ = writeln!(o, "{name}{{{labels}}} {v}");
        }
    }
}

pub(super) fn render(m: &Metrics, o: &mut String) {
    if let Some(a) = m.auth.get() {
        family(
            o,
            "nfm_auth_logins_total",
            "counter",
            "Dashboard logins (a token exchanged for a session).",
            &[("", &a.logins)],
        );
        family(
            o,
            "nfm_auth_logouts_total",
            "counter",
            "Dashboard sessions ended by logout.",
            &[("", &a.logouts)],
        );
        family(
            o,
            "nfm_auth_rejected_total",
            "counter",
            "Requests refused by authorization, by reason.",
            &[
                ("reason=\"wrong_token\"", &a.wrong_token),
                ("reason=\"expired_session\"", &a.expired_session),
                ("reason=\"unknown_session\"", &a.unknown_session),
                ("reason=\"missing\"", &a.missing),
                ("reason=\"forbidden\"", &a.forbidden),
            ],
        );
        family(
            o,
            "nfm_auth_sessions",
            "gauge",
            "Dashboard sessions held.",
            &[("", &a.sessions)],
        );
    }
    if let Some(t) = m.tls.get() {
        family(
            o,
            "nfm_tls_errors_total",
            "counter",
            "Failed TLS handshakes or records (plain text on a TLS port, untrusted certificates), by listener.",
            &[
                ("listener=\"http\"", &t.http_errors),
                ("listener=\"ingest\"", &t.ingest_errors),
            ],
        );
        family(
            o,
            "nfm_tls_reloads_total",
            "counter",
            "Certificate reloads (SIGHUP), by result; on error the old certificate stays.",
            &[
                ("result=\"ok\"", &t.reloads),
                ("result=\"error\"", &t.reload_errors),
            ],
        );
    }
}
