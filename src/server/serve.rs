//! The HTTP/1 accept loop.
//!
//! `axum::serve` sets no header read timeout, so a client that sends its
//! request headers a byte at a time (slowloris) keeps a connection open for
//! as long as it likes. This loop serves each connection with hyper's HTTP/1 builder,
//! which closes a connection whose request line and headers have not all
//! arrived within the timeout. The same timer closes a keep-alive connection
//! that stays idle that long.
//!
//! hyper answers a request it cannot parse (a header line without a colon, a
//! bad request line, headers over the size limit) itself, before the router
//! runs, with an empty body. [`DmsParseErrors`] wraps each connection and
//! gives those answers the DMS error body too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tracing::{debug, error, warn};

/// Time that open connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then waits up to
/// [`SHUTDOWN_GRACE`] for the open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let io = TokioIo::new(DmsParseErrors::new(stream));
        let connection = builder.serve_connection(io, service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%remote, error = %e, "Connection closed with an error.");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "Connections still open after the shutdown grace period; closing them."
        );
    }
    Ok(())
}

/// Handles a failed `accept`. A reset of one connection is harmless. Other
/// errors, such as running out of file descriptors, are logged and followed by
/// a pause, so that the loop does not spin while they last.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    error!(error = %e, "Accepting a connection failed; retrying in 1 s.");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A connection whose writes pass through, except the bodiless responses
/// that hyper writes on its own when it cannot parse a request: those get a
/// DMS error body and an `X-Request-Id`.
struct DmsParseErrors<S> {
    inner: S,
    /// The rewritten response and how much of it is written, while it is
    /// being written in place of the buffer that hyper passed.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> DmsParseErrors<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DmsParseErrors<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DmsParseErrors<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            match rewrite_parse_error(buf) {
                Some(response) => this.pending = Some((response, 0)),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        // Write the whole rewritten response, then report hyper's buffer as written.
        while let Some((response, written)) = this.pending.as_mut() {
            if *written == response.len() {
                this.pending = None;
                return Poll::Ready(Ok(buf.len()));
            }
            match Pin::new(&mut this.inner).poll_write(cx, &response[*written..]) {
                Poll::Ready(Ok(0)) => {
                    this.pending = None;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => {
                    this.pending = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    /// Returns false so that hyper writes each response head as one buffer,
    /// which [`rewrite_parse_error`] can recognise.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// Returns the DMS version of `buf` when it is a whole response that hyper
/// wrote for a request it could not parse: status 400, 414 or 431, then
/// exactly `connection: close`, `content-length: 0` and `date`. Responses of
/// the router always carry `x-request-id`, so they never have this shape.
fn rewrite_parse_error(buf: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(buf).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let (status_line, headers) = rest.split_once("\r\n")?;
    let (code, message) = match status_line.get(..3)? {
        "400" => (
            "DMS.00400062",
            "The request is not valid HTTP/1.1, such as a header line without a colon or a malformed request line; fix the request line and headers.",
        ),
        "414" => (
            "DMS.00400062",
            "The request URI is longer than the server accepts; shorten the path and query.",
        ),
        "431" => (
            "DMS.00400062",
            "The request headers are larger or more numerous than the server accepts; send fewer or shorter headers.",
        ),
        _ => return None,
    };
    let date = headers
        .strip_prefix("connection: close\r\ncontent-length: 0\r\ndate: ")?
        .strip_suffix("\r\n\r\n")?;
    if date.contains('\r') || date.contains('\n') {
        return None;
    }
    let body = serde_json::json!({ "error_code": code, "error_msg": message }).to_string();
    let request_id = uuid::Uuid::new_v4().simple();
    let response = format!(
        "HTTP/1.1 {status_line}\r\nconnection: close\r\ncontent-type: application/json\r\nx-request-id: {request_id}\r\ncontent-length: {}\r\ndate: {date}\r\n\r\n{body}",
        body.len()
    );
    Some(response.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_responses_get_a_dms_body() {
        let hyper = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 17:38:56 GMT\r\n\r\n";
        let rewritten =
            String::from_utf8(rewrite_parse_error(hyper).expect("rewritten")).expect("UTF-8");
        let (head, body) = rewritten.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(body["error_code"], "DMS.00400062");
    }

    #[test]
    fn router_responses_pass_unchanged() {
        let with_id = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-request-id: 1\r\ncontent-length: 2\r\n\r\n{}";
        assert!(rewrite_parse_error(with_id).is_none());
        let ok = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert!(rewrite_parse_error(ok).is_none());
        assert!(rewrite_parse_error(b"\xff\xfe").is_none());
    }
}
