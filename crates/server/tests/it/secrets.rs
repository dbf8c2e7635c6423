//! Secret parameters on the server: sealed in the database (never in the clear), opened
//! by whichever run needs them (after a restart too), gone when the execution ends; a
//! server without the key says so; rotated keys still open.

use serde_json::json;

use crate::support::{Server, TEST_KEY, runbook};

/// Every byte of the server's database files, to search for a value.
fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("opsbook.db") {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

const BOOK: &str = "    - id: ask\n      approval: { message: \"go?\" }\n    - id: use\n      run: test \"$(printf %s \"$PW\" | wc -c)\" -eq 21 && case \"$PW\" in correct-horse-*) echo used it;; *) exit 1;; esac\n      env: { PW: \"{{ params.pw }}\" }\n";

async fn waiting_with_a_secret(srv: &Server, op: &str) -> String {
    let book = runbook("vault", "1.0.0", "", "    pw: { type: secret, required: true }\n", BOOK);
    assert!(srv.publish(op, &book).await.0.is_success());
    let (_, sub) =
        srv.post("/api/v1/runbooks/vault/executions", op, json!({ "params": { "pw": "correct-horse-battery" } })).await;
    let id = sub["id"].as_str().unwrap_or_else(|| panic!("{sub}")).to_string();
    srv.wait_for(&id, op, |d| d["status"] == "waiting").await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_survive_a_restart_and_go_when_the_execution_ends() {
    let srv = Server::start().await;
    let op = srv.token("olga", &["operator", "author"]).await;
    let approver = srv.token("apu", &["approver"]).await;
    let id = waiting_with_a_secret(&srv, &op).await;
    let sealed = opsbook_store::ServerStore::sealed_secrets(&srv.store, &id).await.unwrap().expect("sealed");
    assert_eq!(sealed.nonce.len(), 12);
    let bytes = database_bytes(srv.dir.path());
    if let Some(at) = bytes.windows(21).position(|w| w == b"correct-horse-battery") {
        let around = String::from_utf8_lossy(&bytes[at.saturating_sub(300)..(at + 100).min(bytes.len())]).into_owned();
        panic!("in the clear: {around:?}");
    }

    // The server restarts while the execution waits: its secret is still there.
    let dir = srv.stop_keep_dir().await;
    let srv = Server::start_in(dir, |_| {}).await;
    // A secret pasted into the comment is masked before it is stored or audited.
    let decision = json!({ "decision": "approve", "comment": "checked, the pw is correct-horse-battery" });
    let (status, body) = srv.post(&format!("/api/v1/executions/{id}/approvals"), &approver, decision).await;
    assert!(status.is_success(), "{body}");
    assert_eq!(body["comment"], "checked, the pw is ***", "{body}");
    let done = srv.settled(&id, &op).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["approvals"][0]["comment"], "checked, the pw is ***", "{done}");
    let admin = srv.token("ann", &["admin"]).await;
    let (_, audit) = srv.get("/api/v1/audit?action=execution.approval", &admin).await;
    assert!(audit.to_string().contains("the pw is ***"), "{audit}");
    let (_, logs) = srv.get(&format!("/api/v1/executions/{id}/logs"), &op).await;
    assert!(logs.to_string().contains("used it"), "{logs}");
    assert!(
        opsbook_store::ServerStore::sealed_secrets(&srv.store, &id).await.unwrap().is_none(),
        "deleted when it ended"
    );
    assert!(!contains(&database_bytes(srv.dir.path()), "correct-horse-battery"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_key_says_so_and_a_rotated_key_still_opens() {
    let srv = Server::start().await;
    let op = srv.token("olga", &["operator", "author"]).await;
    let approver = srv.token("apu", &["approver"]).await;
    let first = waiting_with_a_secret(&srv, &op).await;
    let (_, sub) = srv
        .post("/api/v1/runbooks/vault/executions", &op, json!({ "params": { "pw": "correct-horse-battery" } }))
        .await;
    let second = sub["id"].as_str().unwrap().to_string();
    srv.wait_for(&second, &op, |d| d["status"] == "waiting").await;

    // Rotated: a new key seals from now on, the old one (second in the list) still opens.
    let dir = srv.stop_keep_dir().await;
    let new_key = opsbook_server::vault::new_key_text();
    let rotated = format!("{new_key}\n{TEST_KEY}\n");
    let srv = Server::start_in(dir, |c| c.secret_keys = Some(rotated)).await;
    srv.post(&format!("/api/v1/executions/{first}/approvals"), &approver, json!({ "decision": "approve" })).await;
    assert_eq!(srv.settled(&first, &op).await["status"], "succeeded");

    // A node configured with another key only: the execution fails and says why.
    let dir = srv.stop_keep_dir().await;
    let other = opsbook_server::vault::new_key_text();
    let srv = Server::start_in(dir, |c| c.secret_keys = Some(other)).await;
    srv.post(&format!("/api/v1/executions/{second}/approvals"), &approver, json!({ "decision": "approve" })).await;
    let failed = srv.settled(&second, &op).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("sealed with key") && error.contains("does not have"), "{error}");
    assert!(!error.contains("correct-horse-battery"));
    srv.stop().await;
}
