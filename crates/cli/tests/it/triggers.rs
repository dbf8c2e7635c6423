//! Event-driven runs through a real server: `POST /api/v1/triggers/{name}` with a bearer
//! token (an EventBridge API destination) or an HMAC signature (a GitHub webhook).

use opsbook_store::ServerStore;
use serde_json::{Value, json};

use crate::server::{Serve, client, token};
use crate::support::{Env, request, runbook, start_server};

const KEY: &str = "github-webhook-key";

fn book() -> String {
    let token_sha = opsbook_core::sha256_hex(b"eventbridge-token");
    runbook(
        "    service: { type: string, required: true, pattern: \"[a-z]+\" }\n    region: { type: string, default: us-east-1 }\n    ref: { type: string, default: main }\n",
        "    - id: handle\n      run: echo \"{{ params.service }} {{ params.region }} {{ params.ref }}\" >> \"$T/handled\"\n",
    )
    .replace("name: test", "name: respond")
    .replace(
        "  steps:\n",
        &format!(
            "  triggers:\n    - name: on-alarm\n      token_sha256: {token_sha}\n      params: {{ service: \"$.detail.service\", region: \"$.region\" }}\n    - name: on-push\n      hmac_secret_env: OPSBOOK_TEST_HOOK_KEY\n      event_id: \"$.after\"\n      params: {{ ref: \"$.ref\", service: web }}\n  steps:\n"
        ),
    )
}

fn fire(url: &str, name: &str, headers: &[(&str, &str)], event: &Value) -> (u16, Value) {
    let body = event.to_string();
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let (status, text) = request(url, "POST", &format!("/api/v1/triggers/{name}"), &all, body.as_bytes());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn signature(body: &str) -> String {
    format!("sha256={}", hex_hmac(KEY.as_bytes(), body.as_bytes()))
}

/// HMAC-SHA256, written out here so the test does not trust the server's own.
fn hex_hmac(key: &[u8], msg: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(msg).finalize();
    let outer = Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn events_start_runbooks_once_each_and_every_call_is_audited() {
    let env = Env::new();
    let admin = token(&env, "ann", &["admin"]);
    let args = ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--workers", "1"];
    let (child, url, _) = start_server({
        let mut c = env.cmd(&args);
        c.env("OPSBOOK_TEST_HOOK_KEY", KEY);
        c
    });
    let _srv = Serve { child, url: url.clone() };
    env.write("books/respond.yaml", &book());
    // A trigger runs the runbook whenever it is called: an author who may not run it may
    // not publish one (they would hold a token that runs code).
    let author = token(&env, "art", &["author"]);
    let refused = client(&env, &url, &author, &["push", "books"]);
    assert_ne!(refused.code, 0, "{refused:?}");
    let why = "trigger `on-alarm` would run `respond` whenever it is called, and running it needs the";
    assert!(refused.stderr.contains(why), "{refused:?}");
    let pushed = client(&env, &url, &admin, &["push", "books"]);
    assert_eq!(pushed.code, 0, "{pushed:?}");

    // An EventBridge event through an API destination: a bearer token, the id at $.id.
    let event = json!({ "id": "7bf73129-1428-4cd3-a780-95db273d1602", "detail-type": "CloudWatch Alarm State Change", "region": "eu-west-1", "detail": { "service": "checkout" } });
    let bearer = [("Authorization", "Bearer eventbridge-token")];
    let (status, first) = fire(&url, "on-alarm", &bearer, &event);
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["runbook"], "respond");
    assert_eq!(first["event_id"], "7bf73129-1428-4cd3-a780-95db273d1602");
    let id = first["execution_id"].as_str().unwrap().to_string();
    // The same event again (EventBridge delivers at least once): nothing new; the
    // scheme's case does not matter.
    let (status, again) = fire(&url, "on-alarm", &[("Authorization", "bearer eventbridge-token")], &event);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["execution_id"], id.as_str());
    assert_eq!(again["repeated"], true);
    crate::support::wait_until(|| env.path("handled").exists(), "the execution ran");
    let shown = client(&env, &url, &admin, &["show", &id, "--output", "json"]);
    let doc = shown.json();
    crate::support::wait_until(
        || client(&env, &url, &admin, &["show", &id, "--output", "json"]).json()["status"] == "succeeded",
        "the execution succeeded",
    );
    assert_eq!(doc["actor"], "trigger:on-alarm");
    assert_eq!(doc["params"], json!({ "service": "checkout", "region": "eu-west-1", "ref": "main" }));

    // A GitHub push, signed; its id at $.after; a literal parameter.
    let push = json!({ "ref": "refs/heads/release", "after": "9f2c1e0", "repository": { "full_name": "acme/web" } });
    let body = push.to_string();
    let sig = signature(&body);
    let (status, pushed) =
        fire(&url, "on-push", &[("X-Hub-Signature-256", sig.as_str()), ("X-GitHub-Event", "push")], &push);
    assert_eq!(status, 202, "{pushed}");
    crate::support::wait_until(|| env.read("handled").lines().count() == 2, "the push ran");
    assert_eq!(env.read("handled"), "checkout eu-west-1 main\nweb us-east-1 refs/heads/release\n");

    // Refusals: wrong token, no token, bad signature, unknown trigger, invalid parameters.
    // An unknown name answers like wrong credentials, so that names cannot be probed.
    let (status, wrong) = fire(&url, "on-alarm", &[("Authorization", "Bearer guess")], &event);
    assert_eq!(
        (status, wrong["error"]["message"].as_str()),
        (401, Some("trigger `on-alarm`: unknown, or not these credentials"))
    );
    assert_eq!(fire(&url, "on-alarm", &[], &event).0, 401);
    let (status, bad) = fire(&url, "on-push", &[("X-Hub-Signature-256", "sha256=00")], &push);
    assert_eq!(
        (status, bad["error"]["message"].as_str()),
        (401, Some("trigger `on-push`: unknown, or not these credentials"))
    );
    let (status, unknown) = fire(&url, "no-such-trigger", &bearer, &event);
    assert_eq!(
        (status, unknown["error"]["message"].as_str()),
        (401, Some("trigger `no-such-trigger`: unknown, or not these credentials"))
    );
    // A signed event without its id could be replayed: refused.
    let no_id = json!({ "ref": "refs/heads/main" });
    let sig = signature(&no_id.to_string());
    let (status, refused) =
        fire(&url, "on-push", &[("X-Hub-Signature-256", sig.as_str()), ("X-GitHub-Delivery", "d-1")], &no_id);
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["message"],
        "trigger `on-push`: the signed event has no id at $.after (set `event_id`): without one a captured event could be replayed"
    );
    let invalid = json!({ "id": "e-2", "region": "eu-west-1", "detail": { "service": "Not Valid!" } });
    let (status, refused) = fire(&url, "on-alarm", &bearer, &invalid);
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("service"), "{refused}");
    let missing = json!({ "id": "e-3", "detail": {} });
    let (status, refused) = fire(&url, "on-alarm", &bearer, &missing);
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("is required"), "{refused}");

    // Every call is on the audit trail.
    let s = env.store();
    let audit = s.block(s.store.audit(&Default::default())).unwrap();
    let actions: Vec<(&str, &str)> = audit.iter().map(|a| (a.actor.as_str(), a.action.as_str())).collect();
    for want in [
        ("trigger:on-alarm", "trigger.fired"),
        ("trigger:on-alarm", "trigger.repeated"),
        ("trigger:on-push", "trigger.fired"),
        ("trigger:on-alarm", "trigger.refused"),
        ("anonymous", "auth.failed"),
    ] {
        assert!(actions.contains(&want), "{want:?} in {actions:?}");
    }
    let fired = audit.iter().find(|a| a.action == "trigger.fired").unwrap();
    assert_eq!(fired.details["event_id"], "7bf73129-1428-4cd3-a780-95db273d1602");
}
