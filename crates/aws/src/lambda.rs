//! Lambda: one synchronous Invoke (`RequestResponse`, `LogType: Tail`), restJson1.

use crate::wire::{LAMBDA, percent_encode};
use crate::{Call, Error, Target};

/// What an invocation returned.
#[derive(Debug, Clone)]
pub struct Invoked {
    /// The function's answer (its error document when `function_error` is set).
    pub payload: Vec<u8>,
    /// `Unhandled` or `Handled` when the function failed.
    pub function_error: Option<String>,
    /// The last 4 KB of the function's log, decoded.
    pub log_tail: String,
    /// The version that ran.
    pub version: Option<String>,
}

/// Invokes `function` (a name, ARN or partial ARN) with `payload` and waits for its answer.
pub fn invoke<'a>(
    target: &'a Target,
    function: &'a str,
    qualifier: Option<&'a str>,
    payload: Vec<u8>,
) -> crate::Boxed<'a, Result<Invoked, Error>> {
    crate::boxed(async move {
        let conf = crate::config(target).await?;
        let client = conf.client(&LAMBDA);
        let mut path = format!("/2015-03-31/functions/{}/invocations", percent_encode(function));
        if let Some(q) = qualifier {
            path.push_str(&format!("?Qualifier={}", percent_encode(q)));
        }
        let headers = [
            ("content-type", "application/octet-stream"),
            ("x-amz-invocation-type", "RequestResponse"),
            ("x-amz-log-type", "Tail"),
        ];
        let out = match client.rest("POST", &path, &headers, payload).await {
            Ok(out) => out,
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                return Err(Error::fatal(format!(
                    "Lambda function `{function}`{} not found in {}",
                    qualifier.map(|q| format!(" (qualifier {q})")).unwrap_or_default(),
                    conf.region
                )));
            }
            Err(e) => {
                let resource = format!("function `{function}`");
                let call = Call { service: "Lambda", action: "lambda:InvokeFunction", resource: &resource, target };
                return Err(crate::describe(&call, &e));
            }
        };
        let log_tail = out
            .header("x-amz-log-result")
            .and_then(|b64| aws_smithy_types::base64::decode(b64).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        Ok(Invoked {
            function_error: out.header("x-amz-function-error").map(str::to_string),
            version: out.header("x-amz-executed-version").map(str::to_string),
            payload: out.body,
            log_tail,
        })
    })
}
