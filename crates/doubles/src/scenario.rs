//! The AWS that `examples/aws-web-app-deploy` runs against: its Lambda functions, its SSM
//! documents and the instances tagged for it, on the doubles. The example's script starts
//! it through the `aws-doubles` binary; the tests start it in process.

use std::time::Duration;

use serde_json::{Value, json};

use crate::lambda::{self, Function, Lambda, Outcome};
use crate::ssm::{self, Document, InstanceResult, Ssm};

/// The application's instances (tagged `app=shop`, and `env=staging` or `env=production`).
pub const INSTANCES: [&str; 2] = ["i-0a1b2c3d4e5f60001", "i-0a1b2c3d4e5f60002"];
/// The instance that runs the CodeDeploy command.
pub const DEPLOY_HOST: &str = "i-0d3b1e5a7c9f20001";

/// The running doubles.
pub struct WebAppDeploy {
    pub lambda: Lambda,
    pub ssm: Ssm,
}

impl WebAppDeploy {
    /// The environment that points the AWS SDK (and so opsbook) at the doubles.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_LAMBDA", self.lambda.url.clone()),
            ("AWS_ENDPOINT_URL_SSM", self.ssm.url.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".into()),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// Starts the doubles; with `fail_post_check` the post-deployment check finds the new
/// version unhealthy, so the run rolls back through SSM.
pub fn web_app_deploy(fail_post_check: bool) -> WebAppDeploy {
    let health = Function::new(|e| {
        Outcome::Return(json!({ "healthy": true, "environment": e["environment"], "checks": { "alb": "ok", "rds": "ok", "alarms": 0 } }))
    })
    .logging(&["checking load balancer targets", "checking RDS", "no alarm in ALARM state"]);
    let post = Function::new(move |e| {
        if fail_post_check {
            Outcome::Return(json!({ "healthy": false, "version": e["version"], "healthy_targets": 0, "reason": "5xx rate 12% on /checkout" }))
        } else {
            Outcome::Return(json!({ "healthy": true, "version": e["version"], "healthy_targets": INSTANCES.len() }))
        }
    })
    .logging(&["probing /health on every target"])
    .slow(Duration::from_millis(200));
    let validator = Function::new(|e| {
        let targets = e["result"]["healthy_targets"].as_u64().unwrap_or(0);
        if targets >= INSTANCES.len() as u64 {
            Outcome::Return(json!(true))
        } else {
            Outcome::Return(
                json!({ "valid": false, "reason": format!("{targets} of {} targets healthy", INSTANCES.len()) }),
            )
        }
    });
    let lambda = Lambda::start(lambda::Script {
        functions: [
            ("health-check-function".to_string(), health),
            ("post-deployment-check".to_string(), post),
            ("deployment-validator".to_string(), validator),
        ]
        .into(),
        ..lambda::Script::default()
    });
    let ok = |output: String| InstanceResult { success: true, code: 0, output };
    let mut script = ssm::Script::default();
    for tag in ["app=shop", "env=staging", "env=production"] {
        script.tags.insert(tag.into(), INSTANCES.iter().map(|i| i.to_string()).collect());
    }
    script.documents.insert(
        "backup-application".into(),
        Document::new(2, move |i, p| {
            ok(format!(
                "backed up {} to s3://backups/{}/{i}/latest.tar.gz",
                text(&p["app_name"][0]),
                text(&p["app_name"][0])
            ))
        }),
    );
    script.documents.insert(
        "restore-application".into(),
        Document::new(2, move |i, p| {
            ok(format!(
                "restored {} on {i} from the backup of command {}",
                text(&p["app_name"][0]),
                text(&p["backup_command"][0])
            ))
        }),
    );
    script.documents.insert(
        "AWS-RunShellScript".into(),
        Document::new(3, move |_, _| ok("d-7XKQ2Z1AB\ndeployment d-7XKQ2Z1AB created".into())),
    );
    WebAppDeploy { lambda, ssm: Ssm::start(script) }
}
