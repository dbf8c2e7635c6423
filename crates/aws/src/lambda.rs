//! Lambda: one synchronous Invoke (`RequestResponse`, `LogType: Tail`).

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{InvocationType, LogType};

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
        let client = aws_sdk_lambda::Client::new(&conf);
        let sent = client
            .invoke()
            .function_name(function)
            .set_qualifier(qualifier.map(str::to_string))
            .invocation_type(InvocationType::RequestResponse)
            .log_type(LogType::Tail)
            .payload(Blob::new(payload))
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) => {
                let resource = format!("function `{function}`");
                let call = Call { service: "Lambda", action: "lambda:InvokeFunction", resource: &resource, target };
                let code = e.as_service_error().and_then(aws_smithy_types::error::metadata::ProvideErrorMetadata::code);
                if code == Some("ResourceNotFoundException") {
                    let region = conf.region().map_or("", |r| r.as_ref());
                    return Err(Error::fatal(format!(
                        "Lambda function `{function}`{} not found in {region}",
                        qualifier.map(|q| format!(" (qualifier {q})")).unwrap_or_default()
                    )));
                }
                return Err(crate::describe(&call, &e));
            }
        };
        let log_tail = out
            .log_result()
            .and_then(|b64| aws_smithy_types::base64::decode(b64).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        Ok(Invoked {
            payload: out.payload().map(|b| b.as_ref().to_vec()).unwrap_or_default(),
            function_error: out.function_error().map(str::to_string),
            log_tail,
            version: out.executed_version().map(str::to_string),
        })
    })
}
