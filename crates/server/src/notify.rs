//! Notifications: webhook (JSON, HMAC-SHA256 signed), Slack incoming webhook and Amazon
//! SNS topic, on execution events. Delivery runs beside the executions: retried with backoff, every
//! attempt recorded, and never able to fail or stall an execution.

use std::time::Duration;

use opsbook_core::ExecStatus;
use opsbook_engine::{Event, Observer, Start};
use opsbook_store::{NotificationAttempt, ServerStore, Store, WaitKind, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::state::Db;

pub const EVENTS: [&str; 10] = [
    "started",
    "resumed",
    "succeeded",
    "failed",
    "cancelled",
    "waiting",
    "blocked",
    "overridden",
    "rolled_back",
    "review_due",
];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Webhook,
    Slack,
    /// An SNS topic (`sns = "arn:aws:sns:REGION:ACCOUNT:TOPIC"`).
    Sns,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// `webhook` or `slack` (with `url`); an `sns` topic needs no kind.
    #[serde(default)]
    pub kind: Option<Kind>,
    #[serde(default)]
    pub url: String,
    /// An SNS topic ARN to publish to (Publish, with message attributes runbook, status,
    /// event and execution_id), with the server's AWS credentials.
    #[serde(default)]
    pub sns: Option<String>,
    /// Events to send; empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Runbook name patterns (`*` wildcard); empty: all runbooks.
    #[serde(default)]
    pub runbooks: Vec<String>,
    /// Environment variable holding the HMAC key of a webhook (keeps the key out of the file).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The HMAC key itself (prefer `secret_env`; keep the file readable by the server only).
    #[serde(default)]
    pub secret: Option<String>,
    /// Tries before giving up.
    #[serde(default = "five")]
    pub attempts: u32,
    /// Pause before the first retry; doubled for each further one (at most 5 minutes).
    #[serde(default = "one_second")]
    pub backoff: String,
}

fn five() -> u32 {
    5
}

fn one_second() -> String {
    "1s".into()
}

impl Rule {
    pub fn check(&self) -> Result<(), String> {
        // A key that is not there would send every delivery unsigned, saying nothing.
        if let Some(var) = &self.secret_env
            && std::env::var(var).map_or(true, |v| v.is_empty())
        {
            return Err(format!(
                "notify `{}`: secret_env names `{var}`, which is not set (or empty) in the server's environment",
                self.name
            ));
        }
        if self.runbooks.iter().any(|p| p.trim().is_empty()) {
            return Err(format!("notify `{}`: runbooks: an empty pattern matches no runbook", self.name));
        }
        if matches!(self.kind, Some(Kind::Slack)) && (self.secret.is_some() || self.secret_env.is_some()) {
            return Err(format!(
                "notify `{}`: Slack messages are not signed: `secret` and `secret_env` are for webhooks",
                self.name
            ));
        }
        for e in &self.events {
            if !EVENTS.contains(&e.as_str()) {
                return Err(format!("notify `{}`: unknown event `{e}` (use {})", self.name, EVENTS.join(", ")));
            }
        }
        match (&self.kind, &self.sns) {
            (None | Some(Kind::Sns), Some(arn)) => {
                if !self.url.is_empty() {
                    return Err(format!("notify `{}`: set `sns` or `url`, not both", self.name));
                }
                if opsbook_aws::sns::topic_region(arn).is_none() {
                    return Err(format!(
                        "notify `{}`: sns must be a topic ARN, arn:aws:sns:REGION:ACCOUNT:TOPIC (not `{arn}`)",
                        self.name
                    ));
                }
            }
            (Some(Kind::Sns), None) => {
                return Err(format!("notify `{}`: kind sns needs `sns = \"arn:aws:sns:…\"`", self.name));
            }
            (Some(_), Some(_)) => return Err(format!("notify `{}`: `sns` goes without a kind", self.name)),
            (None, None) => {
                return Err(format!("notify `{}`: set `kind` (webhook or slack) and `url`, or `sns`", self.name));
            }
            (Some(_), None) => {
                if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
                    return Err(format!("notify `{}`: url must be http:// or https://", self.name));
                }
            }
        }
        opsbook_core::duration::parse(&self.backoff).map_err(|e| format!("notify `{}`: backoff: {e}", self.name))?;
        if self.attempts == 0 || self.attempts > 20 {
            return Err(format!("notify `{}`: attempts must be between 1 and 20", self.name));
        }
        Ok(())
    }

    fn wants(&self, event: &str, runbook: &str) -> bool {
        (self.events.is_empty() || self.events.iter().any(|e| e == event))
            && (self.runbooks.is_empty() || self.runbooks.iter().any(|p| crate::policy::glob(p, runbook)))
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// One notification event of an execution, on its way to the dispatcher.
#[derive(Debug, Clone)]
pub struct Note {
    pub execution_id: String,
    pub event: &'static str,
    /// What happened, in words (masked): for `blocked`, what blocks; for a `resumed`
    /// after a gate, how long it waited. Sent as `detail`.
    pub detail: Option<String>,
    /// For an event of a runbook rather than an execution (`review_due`): the runbook,
    /// with `execution_id` empty.
    pub runbook: Option<RunbookNote>,
}

/// The runbook a runbook event is about.
#[derive(Debug, Clone)]
pub struct RunbookNote {
    pub name: String,
    pub version: String,
    pub owner: Option<String>,
}

/// How a `waiting` detail names the execution's web page; the dispatcher puts its URL
/// there when the server knows its public URL.
const PAGE: &str = "the execution's page";

/// Turns engine events of one execution into notification events and metrics.
pub struct Notifier {
    pub execution_id: String,
    pub runbook: String,
    pub tx: mpsc::UnboundedSender<Note>,
    rolled_back: std::sync::atomic::AtomicBool,
    /// When the execution first started (epoch ms), over waits and restarts; else when
    /// this stretch of it did.
    started_at: i64,
}

impl Notifier {
    pub fn new(
        execution_id: &str,
        runbook: &str,
        started_at: Option<i64>,
        tx: mpsc::UnboundedSender<Note>,
    ) -> Notifier {
        Notifier {
            execution_id: execution_id.to_string(),
            runbook: runbook.to_string(),
            tx,
            rolled_back: Default::default(),
            started_at: started_at.unwrap_or_else(opsbook_store::now_ms),
        }
    }

    fn send(&self, event: &'static str) {
        self.send_with(event, None);
    }

    fn send_with(&self, event: &'static str, detail: Option<String>) {
        // An unbounded queue: sending never waits, so delivery can never stall a run.
        let _ = self.tx.send(Note { execution_id: self.execution_id.clone(), event, detail, runbook: None });
    }
}

impl Observer for Notifier {
    fn on_event(&self, e: &Event<'_>) {
        use std::sync::atomic::Ordering;
        match e {
            Event::Started { start: Start::Fresh, .. } => self.send("started"),
            Event::Started { start: Start::Resumed, .. } => self.send("resumed"),
            // A gate looked at again is no news, nor a worker going on after it cleared
            // (`resumed` went out then) or was overridden (`overridden` did); a change of
            // verdict is.
            Event::Started { start: Start::GatePoll | Start::Continued, .. } => {}
            Event::GateBlocked { step_id, gate, reasons } => {
                self.send_with("blocked", Some(format!("step `{step_id}`: gate `{gate}` blocks: {reasons}")));
            }
            Event::GateCleared { step_id, gate, waited_ms } => {
                let waited = opsbook_core::duration::human_ms(u64::try_from(*waited_ms).unwrap_or(0));
                self.send_with("resumed", Some(format!("step `{step_id}`: gate `{gate}` is clear after {waited}")));
            }
            // A gate's wait went out as `blocked`, which says what blocks: one notification.
            Event::Waiting { kind: WaitKind::Gate, .. } => {}
            // What the child waits for is in the message (the child's own approval, say).
            Event::Waiting { step_id, kind: WaitKind::Child, message } => {
                let detail =
                    format!("step `{step_id}` is {message}. This execution goes on when the child execution ends.");
                self.send_with("waiting", Some(detail));
            }
            Event::Waiting { step_id, kind, message } => {
                let id = &self.execution_id;
                let (what, how) = match kind {
                    WaitKind::Approval => (
                        "approval",
                        format!("decide on {PAGE}, or with `opsbook approve {id}` or `opsbook reject {id}`"),
                    ),
                    _ => ("a person", format!("when it is done, confirm on {PAGE} or with `opsbook confirm {id}`")),
                };
                let message = message.trim_end_matches(['.', ' ']);
                let stop = if message.ends_with(['?', '!']) { "" } else { "." };
                let detail = format!("step `{step_id}` waits for {what}: {message}{stop} To go on: {how}.");
                self.send_with("waiting", Some(detail));
            }
            Event::RollbackFinished { .. } => self.rolled_back.store(true, Ordering::Relaxed),
            Event::StepFinished { step_id, status, duration_ms, .. } => {
                crate::metrics::step_finished(&self.runbook, step_id, status.as_str(), *duration_ms as f64 / 1000.0);
            }
            Event::Finished { status } => {
                if status.is_terminal() {
                    // The whole execution, as analytics count it: waits for approvals and
                    // gates, and stretches on other workers, included.
                    let secs = (opsbook_store::now_ms() - self.started_at).max(0) as f64 / 1000.0;
                    crate::metrics::execution_finished(&self.runbook, status.as_str(), secs);
                }
                if self.rolled_back.swap(false, Ordering::Relaxed) {
                    self.send("rolled_back");
                }
                match status {
                    ExecStatus::Succeeded => self.send("succeeded"),
                    ExecStatus::Failed => self.send("failed"),
                    ExecStatus::Cancelled => self.send("cancelled"),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// Receives notification events and delivers them to every matching rule.
pub fn spawn_dispatcher(
    store: Db,
    rules: Vec<Rule>,
    public_url: Option<String>,
    mut rx: mpsc::UnboundedReceiver<Note>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = match opsbook_aws::wire::client_builder().timeout(Duration::from_secs(10)).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(%e, "notifications disabled: cannot create the HTTP client");
                return;
            }
        };
        while let Some(note) = rx.recv().await {
            // The execution is read only for an event some rule may want.
            if !rules.iter().any(|r| r.events.is_empty() || r.events.iter().any(|e| e == note.event)) {
                continue;
            }
            let base = public_url.as_deref().map(|u| u.trim_end_matches('/').to_string());
            let (name, summary, link) = match &note.runbook {
                Some(r) => {
                    // What an execution's summary says, as far as a runbook has it.
                    let summary = json!({
                        "id": "", "runbook": { "name": r.name, "version": r.version },
                        "status": note.event, "actor": r.owner.clone().unwrap_or_default(),
                    });
                    (r.name.clone(), summary, base.map(|u| format!("{u}/runbooks/{}", r.name)))
                }
                None => {
                    let Ok(exec) = store.execution(&note.execution_id).await else { continue };
                    let summary = serde_json::to_value(opsbook_api::ExecutionSummary::from(&exec)).unwrap_or_default();
                    // The execution's web page (the API's URL answers 401 in a browser).
                    (exec.runbook_name.clone(), summary, base.map(|u| format!("{u}/executions/{}", exec.id)))
                }
            };
            let mut note = note;
            if let (Some(detail), Some(link)) = (&mut note.detail, &link) {
                *detail = detail.replace(PAGE, link);
            }
            for rule in rules.iter().filter(|r| r.wants(note.event, &name)) {
                let (summary, link) = (summary.clone(), link.clone());
                tokio::spawn(deliver(http.clone(), store.clone(), rule.clone(), note.clone(), summary, link));
            }
        }
    })
}

fn body(rule: &Rule, note: &Note, summary: &Value, link: Option<&str>, delivery: &str) -> Value {
    let event = note.event;
    match rule.kind.as_ref().unwrap_or(&Kind::Sns) {
        Kind::Webhook | Kind::Sns => json!({
            "event": event,
            "delivery_id": delivery,
            "timestamp": jiff::Timestamp::now().to_string(),
            "detail": note.detail,
            "execution": summary,
            "url": link,
        }),
        Kind::Slack => {
            let name = summary["runbook"]["name"].as_str().unwrap_or("?");
            let version = summary["runbook"]["version"].as_str().unwrap_or("?");
            let duration =
                summary["duration_ms"].as_u64().map(opsbook_core::duration::human_ms).unwrap_or_else(|| "-".into());
            let title = format!("*{name}* {version}: {}", event.replace('_', " "));
            let mut blocks = vec![
                json!({ "type": "section", "text": { "type": "mrkdwn", "text": title } }),
                json!({ "type": "section", "fields": [
                    { "type": "mrkdwn", "text": format!("*Runbook*\n{name} {version}") },
                    { "type": "mrkdwn", "text": format!("*Status*\n{}", summary["status"].as_str().unwrap_or("?")) },
                    { "type": "mrkdwn", "text": format!("*Actor*\n{}", slack_escaped(summary["actor"].as_str().unwrap_or("?"))) },
                    { "type": "mrkdwn", "text": format!("*Duration*\n{duration}") },
                ]}),
            ];
            // What others wrote (an incident's name, a step's error) is text, not Slack markup:
            // no `<!channel>`, no disguised link.
            if let Some(d) = &note.detail {
                blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": slack_escaped(d) } }));
            } else if let Some(err) = summary["error"].as_str() {
                let text = format!("```{}```", slack_escaped(&err.replace("```", "'''")));
                blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } }));
            }
            if let Some(l) = link {
                blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("<{l}|Open execution {}>", summary["id"].as_str().unwrap_or("")) } }));
            }
            json!({ "text": format!("{name} {version}: {event}"), "blocks": blocks })
        }
    }
}

/// Text as Slack shows it, not as markup: `&`, `<` and `>` escaped (Slack's own rule), so
/// that `<!channel>` or `<https://…|a label>` arrive as written.
fn slack_escaped(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

async fn deliver(http: reqwest::Client, store: Db, rule: Rule, note: Note, summary: Value, link: Option<String>) {
    let event = note.event;
    let delivery = opsbook_store::id::new_id();
    let payload = body(&rule, &note, &summary, link.as_deref(), &delivery).to_string();
    let key = rule.secret_env.as_deref().and_then(|v| std::env::var(v).ok()).or_else(|| rule.secret.clone());
    let mut pause = opsbook_core::duration::parse(&rule.backoff).map(|d| d.0).unwrap_or(Duration::from_secs(1));
    // A runbook event is recorded under `runbook:NAME`.
    let execution_id = match &note.runbook {
        Some(r) => format!("runbook:{}", r.name),
        None => summary["id"].as_str().unwrap_or_default().to_string(),
    };
    for attempt in 1..=rule.attempts {
        let (status_code, error) = match &rule.sns {
            Some(topic) => publish(topic, &rule, &note, &summary, &payload).await,
            None => post(&http, &rule, event, &delivery, &payload, key.as_deref()).await,
        };
        let ok = error.is_none();
        let record = NotificationAttempt {
            delivery_id: delivery.clone(),
            execution_id: execution_id.clone(),
            event: event.to_string(),
            rule: rule.name.clone(),
            attempt: i64::from(attempt),
            status_code,
            error,
            at: now_ms(),
        };
        if let Err(e) = store.record_notification(&record).await {
            tracing::error!(%e, "cannot record a notification attempt");
        }
        if ok {
            return;
        }
        crate::metrics::notification_failed(&rule.name);
        if attempt < rule.attempts {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(300));
        }
    }
    tracing::warn!(rule = rule.name, event, execution_id, "notification not delivered after every attempt");
}

/// One POST of a webhook or Slack message: the status code, and what went wrong.
async fn post(
    http: &reqwest::Client,
    rule: &Rule,
    event: &str,
    delivery: &str,
    payload: &str,
    key: Option<&str>,
) -> (Option<i64>, Option<String>) {
    let mut req = http
        .post(&rule.url)
        .header("content-type", "application/json")
        .header("x-opsbook-event", event)
        .header("x-opsbook-delivery", delivery)
        .body(payload.to_string());
    if let Some(k) = key {
        req = req.header(
            "x-opsbook-signature",
            format!("sha256={}", hex::encode(hmac_sha256(k.as_bytes(), payload.as_bytes()))),
        );
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => (Some(i64::from(r.status().as_u16())), None),
        Ok(r) => (Some(i64::from(r.status().as_u16())), Some(format!("HTTP {}", r.status()))),
        // Why, not only that it failed (`error sending request`): refused, timed out, DNS.
        Err(e) if e.is_timeout() => (None, Some("no answer in time".into())),
        Err(e) => (None, Some(opsbook_core::diagnostic::root_cause(&e.without_url()))),
    }
}

/// One Publish to an SNS topic, in the topic's region: the webhook's JSON as the
/// message, a readable subject, and attributes subscribers can filter on.
async fn publish(
    topic: &str,
    rule: &Rule,
    note: &Note,
    summary: &Value,
    payload: &str,
) -> (Option<i64>, Option<String>) {
    let target = opsbook_aws::Target {
        region: opsbook_aws::sns::topic_region(topic).map(str::to_string),
        role_arn: None,
        session: format!("opsbook-notify-{}", rule.name),
    };
    let name = summary["runbook"]["name"].as_str().unwrap_or("?");
    let version = summary["runbook"]["version"].as_str().unwrap_or("?");
    let status = summary["status"].as_str().unwrap_or("?");
    let id = summary["id"].as_str().unwrap_or("");
    let subject = format!("opsbook: {name} {version} {}", note.event.replace('_', " "));
    let attributes = [("runbook", name), ("status", status), ("event", note.event), ("execution_id", id)];
    let msg = opsbook_aws::sns::Message { topic_arn: topic, subject: &subject, body: payload, attributes: &attributes };
    match tokio::time::timeout(Duration::from_secs(30), opsbook_aws::sns::publish(&target, &msg)).await {
        Ok(Ok(_)) => (Some(200), None),
        Ok(Err(e)) => (None, Some(e.message)),
        Err(_) => (None, Some("SNS did not answer within 30s".into())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sns_rules_name_a_topic() {
        let rule = |toml: &str| -> Result<(), String> {
            let r: super::Rule = toml::from_str(&format!("name = \"n\"\n{toml}")).map_err(|e| e.to_string())?;
            r.check()
        };
        assert_eq!(rule("sns = \"arn:aws:sns:eu-west-1:123456789012:t\""), Ok(()));
        assert_eq!(rule("kind = \"sns\"\nsns = \"arn:aws:sns:eu-west-1:123456789012:t\""), Ok(()));
        assert_eq!(
            rule("sns = \"deployments\""),
            Err("notify `n`: sns must be a topic ARN, arn:aws:sns:REGION:ACCOUNT:TOPIC (not `deployments`)".into())
        );
        assert_eq!(
            rule("sns = \"arn:aws:sns:eu-west-1:123456789012:t\"\nurl = \"https://x\""),
            Err("notify `n`: set `sns` or `url`, not both".into())
        );
        assert_eq!(rule(""), Err("notify `n`: set `kind` (webhook or slack) and `url`, or `sns`".into()));
        assert_eq!(
            rule("kind = \"slack\"\nurl = \"ftp://x\""),
            Err("notify `n`: url must be http:// or https://".into())
        );
        assert_eq!(
            rule("kind = \"slack\"\nurl = \"https://x\"\nsecret = \"k\""),
            Err("notify `n`: Slack messages are not signed: `secret` and `secret_env` are for webhooks".into())
        );
        assert_eq!(
            rule("kind = \"webhook\"\nurl = \"https://x\"\nrunbooks = [\"web-*\", \"\"]"),
            Err("notify `n`: runbooks: an empty pattern matches no runbook".into())
        );
        assert_eq!(
            rule("kind = \"webhook\"\nurl = \"https://x\"\nsecret_env = \"OPSBOOK_TEST_NO_SUCH_KEY\""),
            Err(
                "notify `n`: secret_env names `OPSBOOK_TEST_NO_SUCH_KEY`, which is not set (or empty) in the server's \
                 environment"
                    .into()
            )
        );
    }

    /// What a status page or a step wrote reaches Slack as text: no mention, no link.
    #[test]
    fn slack_messages_escape_what_others_wrote() {
        let rule: super::Rule = toml::from_str("name = \"s\"\nkind = \"slack\"\nurl = \"https://x\"").unwrap();
        let note = super::Note {
            execution_id: "e".into(),
            event: "blocked",
            detail: Some("statuspage: <!channel> <http://evil.example|Log in> & more".into()),
            runbook: None,
        };
        let summary = serde_json::json!({ "runbook": { "name": "web", "version": "1.0.0" }, "actor": "ann" });
        let body = super::body(&rule, &note, &summary, None, "d").to_string();
        assert!(body.contains("statuspage: &lt;!channel&gt; &lt;http://evil.example|Log in&gt; &amp; more"), "{body}");
        assert!(!body.contains("<!channel>"), "{body}");
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let mac = super::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block.
        let mac = super::hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex::encode(mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }
}
