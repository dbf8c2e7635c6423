//! Secret parameters read from AWS (Secrets Manager, Parameter Store) and notifications
//! published to SNS, through the binary, against local doubles that speak each service's
//! real protocol.

use opsbook_store::{ServerStore, Store};
use serde_json::json;

use crate::aws_steps::{Aws, log_lines};
use crate::support::{Env, out, runbook};

const SECRET_PARAMS: &str = "    db_password: { type: secret, from: \"aws-secretsmanager:prod/db#password\" }\n    api_key: { type: secret, required: true, from: \"aws-ssm-parameter:/app/api-key\", min_length: 8 }\n";

fn secret_aws() -> Aws {
    let aws = Aws::start(&[]);
    aws.secrets
        .script()
        .secrets
        .insert("prod/db".into(), r#"{"username": "app", "password": "pw-from-secrets-manager"}"#.into());
    aws.ssm.script().parameters.insert("/app/api-key".into(), "key-from-parameter-store".into());
    aws
}

#[test]
fn secret_parameters_are_read_from_aws_masked_and_never_stored() {
    let aws = secret_aws();
    let env = Env::new();
    let book = runbook(
        SECRET_PARAMS,
        "    - id: use\n      run: |\n        printf %s \"$OPSBOOK_PARAM_DB_PASSWORD\" > pw.txt\n        printf %s {{ params.api_key }} > key.txt\n        echo \"db {{ params.db_password }} key {{ params.api_key }}\"\n      rollback: { run: \"printf %s {{ params.db_password }} > undone.txt\" }\n    - id: maybe\n      run: test -e go\n",
    )
    .replace("spec:\n", "spec:\n  on_failure: stop\n");
    let o = aws.run(&env, &book, &["--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(env.read("pw.txt"), "pw-from-secrets-manager");
    assert_eq!(env.read("key.txt"), "key-from-parameter-store");
    let doc = o.json();
    assert_eq!(
        doc["params"],
        json!({ "db_password": "<from aws-secretsmanager:prod/db#password>", "api_key": "<from aws-ssm-parameter:/app/api-key>" })
    );
    let lines = log_lines(&env);
    assert!(lines.contains(&"db *** key ***".to_string()), "{lines:?}");
    let everything = format!("{}{}{lines:?}", o.stdout, o.stderr);
    assert!(!everything.contains("pw-from-secrets-manager") && !everything.contains("key-from-parameter-store"));
    let db = std::fs::read(&env.db).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("from-secrets-manager"), "never stored");
    assert_eq!(aws.secrets.script().calls, vec![json!({ "SecretId": "prod/db" })]);
    assert_eq!(aws.ssm.calls("GetParameter"), vec![json!({ "Name": "/app/api-key", "WithDecryption": true })]);

    // A later rollback reads them again.
    let (e, _) = env.last();
    let o = out(aws.cmd(&env, &["rollback", &e.id]).output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.read("undone.txt"), "pw-from-secrets-manager");
    assert_eq!(aws.secrets.script().calls.len(), 2);
    assert_eq!(aws.ssm.calls("GetParameter").len(), 1, "the rollback does not use api_key: not read");

    // A value given on the command line wins over the source.
    let o = aws.run(&env, &book, &["-p", "api_key=given-on-the-line", "-p", "db_password=given-too"]);
    assert_eq!(env.read("key.txt"), "given-on-the-line", "{o:?}");
    assert_eq!(aws.ssm.calls("GetParameter").len(), 1, "not read when given");
}

#[test]
fn a_secret_that_cannot_be_read_starts_nothing() {
    let aws = secret_aws();
    aws.secrets.script().denied.push("prod/db".into());
    aws.ssm.script().parameters.insert("/app/api-key".into(), "short".into());
    let env = Env::new();
    let book = runbook(SECRET_PARAMS, "    - id: use\n      run: touch ran\n");
    let o = aws.run(&env, &book, &[]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("parameter `db_password`: from aws-secretsmanager:prod/db#password: access denied: allow `secretsmanager:GetSecretValue` on secret `prod/db` for the credentials opsbook runs with"),
        "{o:?}"
    );
    assert!(
        o.stderr.contains(
            "parameter `api_key`: from aws-ssm-parameter:/app/api-key: is 5 characters long, shorter than the minimum 8"
        ),
        "{o:?}"
    );
    assert!(!o.stderr.contains("short\""), "the value is never echoed: {o:?}");
    assert!(!env.path("ran").exists());
    let s = env.store();
    assert!(s.block(s.store.executions(&Default::default())).unwrap().is_empty(), "nothing stored");

    aws.secrets.script().denied.clear();
    aws.secrets.script().secrets.insert("prod/db".into(), r#"{"user": "app"}"#.into());
    let o = aws.run(&env, &book, &[]);
    assert!(
        o.stderr.contains(
            "parameter `db_password`: from aws-secretsmanager:prod/db#password: secret `prod/db` has no key `password`"
        ),
        "{o:?}"
    );
}

/// On the server, the worker reads the secret when it starts the execution: the request
/// carries none, and no node stores it.
#[test]
fn a_worker_reads_secret_parameters_from_aws() {
    let aws = secret_aws();
    let env = Env::new();
    let admin = crate::server::token(&env, "ann", &["admin"]);
    let args = ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--workers", "1"];
    let (child, url, _) = crate::support::start_server(aws.cmd(&env, &args));
    let _srv = crate::server::Serve { child, url: url.clone() };
    env.write(
        "books/secret.yaml",
        &runbook(
            SECRET_PARAMS,
            "    - id: use\n      run: printf %s \"$OPSBOOK_PARAM_DB_PASSWORD/{{ params.api_key }}\" > \"$T/seen\"\n",
        )
        .replace("name: test", "name: secret"),
    );
    assert_eq!(crate::server::client(&env, &url, &admin, &["push", "books"]).code, 0);
    let o = crate::server::client(&env, &url, &admin, &["run", "secret", "--output", "json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.read("seen"), "pw-from-secrets-manager/key-from-parameter-store");
    assert_eq!(
        o.json()["params"],
        json!({ "db_password": "<from aws-secretsmanager:prod/db#password>", "api_key": "<from aws-ssm-parameter:/app/api-key>" })
    );
    assert_eq!(aws.secrets.script().calls.len(), 1);
}

#[test]
fn sns_notifications_are_published_retried_and_recorded() {
    let aws = Aws::start(&[]);
    let topic = "arn:aws:sns:eu-west-1:123456789012:deployments";
    aws.sns.script().topics.push(topic.into());
    aws.sns.script().fail = 1;
    let env = Env::new();
    env.write(
        "opsbook.toml",
        &format!(
            "[[notify]]\nname = \"ops-topic\"\nsns = \"{topic}\"\nevents = [\"failed\"]\nbackoff = \"50ms\"\n\n[[notify]]\nname = \"gone\"\nsns = \"arn:aws:sns:eu-west-1:123456789012:gone\"\nevents = [\"failed\"]\nattempts = 2\nbackoff = \"50ms\"\n"
        ),
    );
    let admin = crate::server::token(&env, "ann", &["admin"]);
    let args = ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--workers", "1"];
    let (child, url, _) = crate::support::start_server(aws.cmd(&env, &args));
    let _srv = crate::server::Serve { child, url: url.clone() };
    env.write(
        "books/boom.yaml",
        &runbook("", "    - id: boom\n      run: exit 3\n").replace("name: test", "name: boom"),
    );
    assert_eq!(crate::server::client(&env, &url, &admin, &["push", "books"]).code, 0);
    let o = crate::server::client(&env, &url, &admin, &["run", "boom", "--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let id = o.json()["id"].as_str().unwrap().to_string();

    let s = env.store();
    crate::support::wait_until(
        || s.block(s.store.notifications(&id)).unwrap().len() >= 4,
        "two attempts for each topic",
    );
    let published = aws.sns.script().published.clone();
    assert_eq!(published.len(), 1, "{published:?}");
    let p = &published[0];
    assert_eq!(p.topic_arn, topic);
    assert_eq!(p.subject, "opsbook: boom 1.0.0 failed");
    assert_eq!(p.region.as_deref(), Some("eu-west-1"), "published in the topic's region");
    let attrs: Vec<(&str, &str)> = p.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        attrs,
        vec![("event", "failed"), ("execution_id", id.as_str()), ("runbook", "boom"), ("status", "failed")]
    );
    let body: serde_json::Value = serde_json::from_str(&p.message).unwrap();
    assert_eq!(body["event"], "failed");
    assert_eq!(body["execution"]["id"], id.as_str());

    let attempts = s.block(s.store.notifications(&id)).unwrap();
    let of = |rule: &str| -> Vec<(i64, Option<i64>, Option<String>)> {
        attempts.iter().filter(|a| a.rule == rule).map(|a| (a.attempt, a.status_code, a.error.clone())).collect()
    };
    assert_eq!(
        of("ops-topic"),
        vec![
            (1, None, Some("SNS `sns:Publish` failed (InternalError: Request could not be completed)".into())),
            (2, Some(200), None)
        ]
    );
    let gone = "SNS topic arn:aws:sns:eu-west-1:123456789012:gone does not exist".to_string();
    assert_eq!(of("gone"), vec![(1, None, Some(gone.clone())), (2, None, Some(gone))]);
}
