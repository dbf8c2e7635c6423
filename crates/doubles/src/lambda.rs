//! A double of AWS Lambda's Invoke as the SDK speaks it: restJson1,
//! `POST /2015-03-31/functions/{FunctionName}/invocations[?Qualifier=Q]`, the event as the
//! body, `X-Amz-Invocation-Type` and `X-Amz-Log-Type` headers; answered with the
//! function's result as the body, `X-Amz-Function-Error` when it failed,
//! `X-Amz-Log-Result` (the base64 log tail) when asked, and `X-Amz-Executed-Version`.
//! Errors as Lambda sends them: the status, an `X-Amzn-ErrorType` header and a JSON body.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{Request, percent_decode};

/// What a function does with an event.
pub type Handler = Arc<dyn Fn(&Value) -> Outcome + Send + Sync>;

/// What one invocation gives.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The function returned this value.
    Return(Value),
    /// The function raised (`X-Amz-Function-Error: Unhandled`).
    Raise { error_type: String, message: String },
}

/// One deployed function.
#[derive(Clone)]
pub struct Function {
    pub handler: Handler,
    /// Lines the function logs (sent back as the log tail).
    pub logs: Vec<String>,
    /// How long it runs before answering.
    pub delay: Duration,
}

impl Function {
    pub fn new(handler: impl Fn(&Value) -> Outcome + Send + Sync + 'static) -> Function {
        Function { handler: Arc::new(handler), logs: Vec::new(), delay: Duration::ZERO }
    }

    /// A function that always returns `value`.
    pub fn returning(value: Value) -> Function {
        Function::new(move |_| Outcome::Return(value.clone()))
    }

    /// A function that always raises.
    pub fn raising(error_type: &str, message: &str) -> Function {
        let (t, m) = (error_type.to_string(), message.to_string());
        Function::new(move |_| Outcome::Raise { error_type: t.clone(), message: m.clone() })
    }

    pub fn logging(mut self, lines: &[&str]) -> Function {
        self.logs = lines.iter().map(|l| l.to_string()).collect();
        self
    }

    pub fn slow(mut self, delay: Duration) -> Function {
        self.delay = delay;
        self
    }
}

/// What the double answers; change it while it runs.
#[derive(Default)]
pub struct Script {
    /// Functions by name.
    pub functions: BTreeMap<String, Function>,
    /// Throttle this many calls (429 TooManyRequestsException) before answering.
    pub throttle: usize,
    /// Functions the caller may not invoke (403 AccessDeniedException).
    pub denied: Vec<String>,
    /// Every call seen, in order.
    pub calls: Vec<Call>,
}

/// One call the double saw.
#[derive(Debug, Clone)]
pub struct Call {
    pub function: String,
    pub qualifier: Option<String>,
    pub event: Value,
    pub invocation_type: Option<String>,
    pub log_type: Option<String>,
    /// The region and access key the request was signed with (SigV4 credential scope).
    pub region: Option<String>,
    pub access_key: Option<String>,
}

/// A running double; `url` is its endpoint (`AWS_ENDPOINT_URL_LAMBDA`).
#[derive(Clone)]
pub struct Lambda {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

const ACCOUNT: &str = "123456789012";

impl Lambda {
    pub fn start(script: Script) -> Lambda {
        let (url, script) = crate::http::serve(script, answer);
        Lambda { url, script }
    }

    pub fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.script().calls.clone()
    }
}

fn error(status: u16, code: &str, body: Value) -> crate::http::Reply {
    crate::http::Reply::json(status, body).header("X-Amzn-ErrorType", code)
}

fn answer(script: &Mutex<Script>, req: &Request) -> crate::http::Reply {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let name =
        path.strip_prefix("/2015-03-31/functions/").and_then(|p| p.strip_suffix("/invocations")).map(percent_decode);
    let Some(name) = name else {
        return error(404, "UnknownOperationException", json!({ "message": format!("no operation at {path}") }));
    };
    let qualifier = query.split('&').find_map(|kv| kv.strip_prefix("Qualifier=")).map(percent_decode);
    // A function ARN names the function by its last part (`…:function:NAME[:QUALIFIER]`).
    let short = name.split(":function:").nth(1).map_or(name.as_str(), |s| s.split(':').next().unwrap_or(s)).to_string();
    let event = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let arn = format!("arn:aws:lambda:{}:{ACCOUNT}:function:{short}", req.signed_region().unwrap_or_default());
    let function = {
        let mut s = script.lock().unwrap_or_else(|e| e.into_inner());
        s.calls.push(Call {
            function: name.clone(),
            qualifier: qualifier.clone(),
            event: event.clone(),
            invocation_type: req.header("x-amz-invocation-type").map(str::to_string),
            log_type: req.header("x-amz-log-type").map(str::to_string),
            region: req.signed_region(),
            access_key: req.signed_access_key(),
        });
        if s.throttle > 0 {
            s.throttle -= 1;
            return error(
                429,
                "TooManyRequestsException",
                json!({ "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "Type": "User", "message": "Rate Exceeded." }),
            )
            .header("Retry-After", "1");
        }
        if s.denied.contains(&short) {
            let who = req.signed_access_key().unwrap_or_default();
            return error(
                403,
                "AccessDeniedException",
                json!({ "Message": format!("User: arn:aws:sts::{ACCOUNT}:assumed-role/{who} is not authorized to perform: lambda:InvokeFunction on resource: {arn} because no identity-based policy allows the lambda:InvokeFunction action") }),
            );
        }
        match s.functions.get(&short) {
            Some(f) => f.clone(),
            None => {
                return error(
                    404,
                    "ResourceNotFoundException",
                    json!({ "Type": "User", "message": format!("Function not found: {arn}") }),
                );
            }
        }
    };
    std::thread::sleep(function.delay);
    let outcome = (function.handler)(&event);
    let (body, failed) = match outcome {
        Outcome::Return(v) => (v, false),
        Outcome::Raise { error_type, message } => {
            (json!({ "errorType": error_type, "errorMessage": message, "trace": [] }), true)
        }
    };
    let mut reply =
        crate::http::Reply::json(200, body).header("X-Amz-Executed-Version", qualifier.as_deref().unwrap_or("$LATEST"));
    if failed {
        reply = reply.header("X-Amz-Function-Error", "Unhandled");
    }
    if req.header("x-amz-log-type") == Some("Tail") {
        let request_id = "8f5e5b1c-0000-4000-8000-000000000001";
        let mut log = format!("START RequestId: {request_id} Version: $LATEST\n");
        for l in &function.logs {
            log.push_str(l);
            log.push('\n');
        }
        log.push_str(&format!("END RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: 1.00 ms\n"));
        reply = reply.header("X-Amz-Log-Result", &crate::http::base64(log.as_bytes()));
    }
    reply
}
