//! Where an `/openai` answer goes: the client's session, or the result of an
//! async job (SPEC 9), which must hold exactly what the session would have
//! received (status and body).

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

#[async_trait]
pub(super) trait Sink: Send {
    async fn head(&mut self, head: ResponseHeader) -> Result<()>;
    async fn body(&mut self, data: Option<Bytes>, end: bool) -> Result<()>;
    /// Resolves when the receiver went away; never for a job.
    async fn gone(&mut self);
}

/// The client's session.
pub(super) struct SessionSink<'a>(pub &'a mut Session);

#[async_trait]
impl Sink for SessionSink<'_> {
    async fn head(&mut self, head: ResponseHeader) -> Result<()> {
        super::drain::close_when_draining(self.0);
        self.0.write_response_header(Box::new(head), false).await
    }
    async fn body(&mut self, data: Option<Bytes>, end: bool) -> Result<()> {
        self.0.write_response_body(data, end).await
    }
    async fn gone(&mut self) {
        // Errors and EOF both mean the client is gone; data (a pipelined
        // request) is not, so keep waiting then.
        loop {
            if self.0.as_mut().read_body_or_idle(true).await.is_err() {
                return;
            }
        }
    }
}

/// An async job's result, bounded.
pub(super) struct JobSink {
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub limit: usize,
}

impl JobSink {
    pub fn new(limit: usize) -> JobSink {
        JobSink { status: None, content_type: None, body: Vec::new(), limit }
    }
}

#[async_trait]
impl Sink for JobSink {
    async fn head(&mut self, head: ResponseHeader) -> Result<()> {
        self.status = Some(head.status.as_u16());
        self.content_type = head.headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok(())
    }
    async fn body(&mut self, data: Option<Bytes>, _end: bool) -> Result<()> {
        if let Some(d) = data {
            if self.body.len() + d.len() > self.limit {
                return Error::e_explain(ErrorType::InternalError, format!("the job's result exceeds {} bytes", self.limit));
            }
            self.body.extend_from_slice(&d);
        }
        Ok(())
    }
    async fn gone(&mut self) {
        std::future::pending::<()>().await
    }
}

/// A complete small JSON answer.
pub(super) async fn json(sink: &mut dyn Sink, status: u16, body: &[u8], request_id: &str, retry_after: Option<&str>) -> Result<()> {
    sink.head(super::reply::json_head(status, body.len(), request_id, retry_after)?).await?;
    sink.body(Some(Bytes::copy_from_slice(body)), true).await
}
