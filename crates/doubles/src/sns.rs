//! A double of Amazon SNS's Publish as the SDK speaks it: awsQuery (`POST /`, a form
//! body `Action=Publish&Version=2010-03-31&TopicArn=…&Subject=…&Message=…` with
//! `MessageAttributes.entry.N.*`), answered in XML; errors as `<ErrorResponse>`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::http::{Reply, Request, xml_escape};

/// One message published.
#[derive(Debug, Clone)]
pub struct Published {
    pub topic_arn: String,
    pub subject: String,
    pub message: String,
    /// String attributes by name.
    pub attributes: BTreeMap<String, String>,
    pub region: Option<String>,
}

/// What the double answers; change it while it runs.
#[derive(Default)]
pub struct Script {
    /// Topics that exist (others: 404 NotFound).
    pub topics: Vec<String>,
    /// Answer this many Publish calls to existing topics with HTTP 500 InternalError before accepting.
    pub fail: usize,
    /// Topics the caller may not publish to (403 AuthorizationError).
    pub denied: Vec<String>,
    /// Every Publish accepted, in order.
    pub published: Vec<Published>,
    /// Every Publish seen, refused ones included.
    pub calls: usize,
}

/// A running double; `url` is its endpoint (`AWS_ENDPOINT_URL_SNS`).
#[derive(Clone)]
pub struct Sns {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Sns {
    pub fn start(script: Script) -> Sns {
        let (url, script) = crate::http::serve(script, answer);
        Sns { url, script }
    }

    pub fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn error(status: u16, kind: &str, code: &str, message: &str) -> Reply {
    let body = format!(
        "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>9b8f1e1a-0000-4000-8000-000000000000</RequestId></ErrorResponse>",
        xml_escape(message)
    );
    Reply::new(status, "text/xml", body)
}

fn answer(script: &Mutex<Script>, req: &Request) -> Reply {
    let form = req.form();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    if field("Action") != "Publish" {
        return error(400, "Sender", "InvalidAction", &format!("Could not find operation {}", field("Action")));
    }
    let mut s = script.lock().unwrap_or_else(|e| e.into_inner());
    s.calls += 1;
    let topic = field("TopicArn");
    if s.denied.contains(&topic) {
        let who = req.signed_access_key().unwrap_or_default();
        return error(
            403,
            "Sender",
            "AuthorizationError",
            &format!(
                "User: arn:aws:iam::123456789012:user/{who} is not authorized to perform: SNS:Publish on resource: {topic} because no identity-based policy allows the SNS:Publish action"
            ),
        );
    }
    if !s.topics.contains(&topic) {
        return error(404, "Sender", "NotFound", "Topic does not exist");
    }
    if s.fail > 0 {
        s.fail -= 1;
        return error(500, "Receiver", "InternalError", "Request could not be completed");
    }
    let mut attributes = BTreeMap::new();
    for n in 1.. {
        let name = field(&format!("MessageAttributes.entry.{n}.Name"));
        if name.is_empty() {
            break;
        }
        attributes.insert(name, field(&format!("MessageAttributes.entry.{n}.Value.StringValue")));
    }
    s.published.push(Published {
        topic_arn: topic,
        subject: field("Subject"),
        message: field("Message"),
        attributes,
        region: req.signed_region(),
    });
    let id = format!("95df01b4-ee98-5cb9-9903-{:012x}", s.published.len());
    Reply::new(
        200,
        "text/xml",
        format!(
            "<PublishResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><PublishResult><MessageId>{id}</MessageId></PublishResult><ResponseMetadata><RequestId>f187a3c1-0000-4000-8000-000000000000</RequestId></ResponseMetadata></PublishResponse>"
        ),
    )
}
