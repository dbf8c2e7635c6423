//! The HTTP client of `aws-config`'s own calls (instance metadata, container
//! credentials, STS for web identity and assumed roles): the process's one reqwest
//! client, behind the Smithy runtime's connector interface.

use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// Sends each request whole (the chain's requests are small and in memory), within the
/// connect and read timeouts the caller set.
#[derive(Debug)]
struct Connector {
    timeout: Option<Duration>,
}

fn failed(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() { ConnectorError::timeout(e.into()) } else { ConnectorError::io(e.into()) }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = request.body().bytes().map(<[u8]>::to_vec);
        let method = reqwest::Method::from_bytes(request.method().as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = crate::wire::http().request(method, request.uri());
        for (k, v) in request.headers().iter() {
            req = req.header(k, v);
        }
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        HttpConnectorFuture::new(async move {
            let Some(body) = body else {
                return Err(ConnectorError::other("a streaming request body is not supported here".into(), None));
            };
            let resp = req.body(body).send().await.map_err(failed)?;
            let status =
                StatusCode::try_from(resp.status().as_u16()).map_err(|e| ConnectorError::other(e.into(), None))?;
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(failed)?;
            let mut out = HttpResponse::new(status, SdkBody::from(bytes.to_vec()));
            for (k, v) in &headers {
                if let Ok(v) = v.to_str() {
                    out.headers_mut().append(k.as_str().to_string(), v.to_string());
                }
            }
            Ok(out)
        })
    }
}

/// The chain's HTTP client.
pub(crate) fn client() -> SharedHttpClient {
    http_client_fn(|settings, _| {
        let timeout = match (settings.connect_timeout(), settings.read_timeout()) {
            (None, None) => None,
            (c, r) => Some(c.unwrap_or_default() + r.unwrap_or_default()),
        };
        SharedHttpConnector::new(Connector { timeout })
    })
}
