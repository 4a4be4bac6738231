//! Answers the gateway writes itself: small JSON bodies (SPEC 5 errors,
//! health), and the Pingora errors that stand for upstream failures.

use crate::net::Timeouts;
use crate::routes::headers::REQUEST_ID_HEADER;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// The head of a complete small JSON answer of `len` bytes.
pub(super) fn json_head(status: u16, len: usize, request_id: &str, retry_after: Option<&str>) -> Result<ResponseHeader> {
    // Room for these and `/openai`'s four who-answered headers: a header
    // map that grows rehashes every entry.
    let mut resp = ResponseHeader::build_no_case(status, Some(10))?;
    if let Some(s) = retry_after {
        resp.insert_header("retry-after", s)?;
    }
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", len.to_string())?;
    resp.insert_header(REQUEST_ID_HEADER, request_id)?;
    resp.insert_header("cache-control", "no-store")?;
    Ok(resp)
}

/// Write a complete small JSON response.
pub(super) async fn write_json(session: &mut Session, status: u16, body: &[u8], request_id: &str, retry_after: Option<&str>) -> Result<()> {
    write_json_tagged(session, status, body, request_id, retry_after, None).await
}

/// Write a complete small JSON response; on `/openai`, with the headers
/// that say who answered (SPEC 10).
pub(super) async fn write_json_tagged(session: &mut Session, status: u16, body: &[u8], request_id: &str, retry_after: Option<&str>, tags: Option<&super::openai_route::Answered>) -> Result<()> {
    let mut resp = json_head(status, body.len(), request_id, retry_after)?;
    if let Some(t) = tags {
        t.apply(&mut resp)?;
    }
    // A request body we did not read makes the connection unusable.
    if !session.as_mut().is_body_empty() && !session.as_mut().is_body_done() {
        session.set_keepalive(None);
    }
    super::drain::close_when_draining(session);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(Bytes::copy_from_slice(body)), true).await?;
    Ok(())
}

/// An error on the provider's side (counted and answered as upstream).
pub(super) fn upstream_error(etype: ErrorType, context: String) -> Box<Error> {
    let mut e = Error::explain(etype, context);
    e.as_up();
    e
}

/// The error for a request past `timeouts.total` (504 `upstream_timeout`).
pub(super) fn total_timeout(t: &Timeouts) -> Box<Error> {
    upstream_error(ErrorType::ReadTimedout, format!("total timeout of {} ms reached", t.total.as_millis()))
}
