//! Errors the gateway itself answers (SPEC 5): status, type, JSON body.
//! Provider errors are never rewritten; they pass through as sent.

use pingora::{Error, ErrorSource, ErrorType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    RouteNotFound,
    InvalidPath,
    ProviderNotConfigured,
    VirtualKeyRequired,
    VirtualKeyInvalid,
    Forbidden,
    RateLimited,
    BudgetExceeded,
    UpstreamUnreachable,
    UpstreamTimeout,
    UpstreamError,
    PayloadTooLarge,
    HeadersTooLarge,
    BadRequest,
    AsyncJobNotFound,
    AsyncJobStoreError,
    StoreUnavailable,
    Internal,
}

impl GatewayError {
    pub fn status(self) -> u16 {
        use GatewayError::*;
        match self {
            RouteNotFound | AsyncJobNotFound => 404,
            StoreUnavailable => 503,
            InvalidPath | BadRequest => 400,
            ProviderNotConfigured => 503,
            VirtualKeyRequired | VirtualKeyInvalid => 401,
            Forbidden => 403,
            RateLimited => 429,
            BudgetExceeded => 402,
            UpstreamUnreachable | UpstreamError => 502,
            UpstreamTimeout => 504,
            PayloadTooLarge => 413,
            HeadersTooLarge => 431,
            Internal | AsyncJobStoreError => 500,
        }
    }

    pub fn kind(self) -> &'static str {
        use GatewayError::*;
        match self {
            RouteNotFound => "route_not_found",
            InvalidPath => "invalid_path",
            ProviderNotConfigured => "provider_not_configured",
            VirtualKeyRequired => "virtual_key_required",
            VirtualKeyInvalid => "virtual_key_invalid",
            Forbidden => "forbidden",
            RateLimited => "rate_limited",
            BudgetExceeded => "budget_exceeded",
            UpstreamUnreachable => "upstream_unreachable",
            UpstreamTimeout => "upstream_timeout",
            UpstreamError => "upstream_error",
            PayloadTooLarge => "payload_too_large",
            HeadersTooLarge => "headers_too_large",
            BadRequest => "bad_request",
            AsyncJobNotFound => "async_job_not_found",
            AsyncJobStoreError => "async_job_store_error",
            StoreUnavailable => "store_unavailable",
            Internal => "internal_error",
        }
    }

    /// The JSON body: `{"error":{"type","message","request_id"}}`.
    pub fn body(self, message: &str, request_id: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "error": { "type": self.kind(), "message": message, "request_id": request_id }
        }))
        .unwrap_or_default()
    }

    /// Classify a Pingora proxy error into the gateway error answered for it,
    /// `None` when nothing should be answered (the client went away).
    pub fn from_proxy_error(e: &Error) -> Option<GatewayError> {
        use ErrorType::*;
        match e.etype() {
            ConnectTimedout => return Some(GatewayError::UpstreamTimeout),
            ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure | BindError
            | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError
            | TLSWantX509Lookup | SocketError => {
                return Some(if matches!(e.etype(), TLSHandshakeTimedout) {
                    GatewayError::UpstreamTimeout
                } else {
                    GatewayError::UpstreamUnreachable
                })
            }
            HTTPStatus(413) => return Some(GatewayError::PayloadTooLarge),
            HTTPStatus(431) => return Some(GatewayError::HeadersTooLarge),
            HTTPStatus(400) => return Some(GatewayError::BadRequest),
            _ => {}
        }
        match e.esource() {
            ErrorSource::Upstream => Some(match e.etype() {
                ReadTimedout | WriteTimedout => GatewayError::UpstreamTimeout,
                _ => GatewayError::UpstreamError,
            }),
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed | ReadTimedout | WriteTimedout => None,
                _ => Some(GatewayError::BadRequest),
            },
            ErrorSource::Internal | ErrorSource::Unset => Some(GatewayError::Internal),
        }
    }

    /// A message for the client: the error's kind and context, never a key.
    pub fn describe(self) -> &'static str {
        use GatewayError::*;
        match self {
            RouteNotFound => "no route for this path; use /openai, /openai_passthrough, /anthropic_passthrough, /azure_passthrough or /genai_passthrough",
            InvalidPath => "unsafe path refused",
            ProviderNotConfigured => "no key is configured for this provider and direct keys are not allowed",
            VirtualKeyRequired => "a virtual key is required",
            VirtualKeyInvalid => "unknown virtual key",
            Forbidden => "the virtual key does not allow this provider or model",
            RateLimited => "rate limit exceeded",
            BudgetExceeded => "budget exceeded",
            UpstreamUnreachable => "could not connect to the provider",
            UpstreamTimeout => "the provider did not answer in time",
            UpstreamError => "the provider connection failed",
            PayloadTooLarge => "request body too large",
            HeadersTooLarge => "request headers too large",
            BadRequest => "bad request",
            AsyncJobNotFound => "no such async job (unknown, expired, or submitted by someone else)",
            AsyncJobStoreError => "the async job ran, but its result could not be stored; submit it again",
            StoreUnavailable => "the async job store is unavailable",
            Internal => "internal gateway error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let b = GatewayError::RouteNotFound.body("no route", "rid-1");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["type"], "route_not_found");
        assert_eq!(v["error"]["message"], "no route");
        assert_eq!(v["error"]["request_id"], "rid-1");
    }

    #[test]
    fn classifies_proxy_errors() {
        let e = Error::new(ErrorType::ConnectRefused);
        assert_eq!(GatewayError::from_proxy_error(&e), Some(GatewayError::UpstreamUnreachable));
        let e = Error::new(ErrorType::ConnectTimedout);
        assert_eq!(GatewayError::from_proxy_error(&e), Some(GatewayError::UpstreamTimeout));
        let mut e = Error::new(ErrorType::ReadTimedout);
        e.as_up();
        assert_eq!(GatewayError::from_proxy_error(&e), Some(GatewayError::UpstreamTimeout));
        let mut e = Error::new(ErrorType::ConnectionClosed);
        e.as_down();
        assert_eq!(GatewayError::from_proxy_error(&e), None);
        let mut e = Error::new(ErrorType::InvalidCert);
        e.as_up();
        assert_eq!(GatewayError::from_proxy_error(&e), Some(GatewayError::UpstreamUnreachable));
        for g in [GatewayError::RouteNotFound, GatewayError::PayloadTooLarge, GatewayError::HeadersTooLarge, GatewayError::BudgetExceeded] {
            assert!(g.status() >= 400);
        }
    }
}
