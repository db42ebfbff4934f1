//! The API's one error type: each variant is an HTTP status, so a handler says what went wrong
//! and the router turns it into a JSON `{"error": ...}` reply with the right code.

use crate::http::Reply;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: a parameter or body that does not parse or does not fit the topology.
    BadRequest(String),
    /// 404: an unknown monitor or endpoint.
    NotFound(String),
    /// 409: the resource exists already.
    Conflict(String),
    /// 503: the history on disk could not be read (issue 16).
    Unavailable(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::Unavailable(_) => 503,
        }
    }

    pub fn unknown_monitor(name: &str) -> ApiError {
        ApiError::NotFound(format!("unknown monitor `{name}`"))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BadRequest(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ApiError {}

/// Parsers and validators below the API report plain messages: those are bad requests.
impl From<String> for ApiError {
    fn from(m: String) -> ApiError {
        ApiError::BadRequest(m)
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::error(e.status(), e.to_string())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_status_and_reply() {
        let r: Reply = ApiError::unknown_monitor("m").into();
        assert_eq!(r.status, 404);
        assert_eq!(r.json_value()["error"], "unknown monitor `m`");
        assert_eq!(ApiError::from("bad".to_string()).status(), 400);
        assert_eq!(ApiError::Conflict("x".into()).status(), 409);
    }
}
