//! The AWS Health source against a local double of the Health API that speaks its real
//! wire protocol: awsJson1_1, with paging, event details and errors.

use opsbook_doubles::health::{Health, Script, event};
use serde_json::json;

use crate::support::{Env, out};

/// `opsbook ARGS` pointed at the Health double, with example credentials and nothing read
/// from the machine's AWS configuration.
fn aws_cmd(env: &Env, url: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = env.cmd(args);
    cmd.env("AWS_ENDPOINT_URL_HEALTH", url)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", env.path("home"));
    cmd
}

fn gate_check(env: &Env, url: &str, gate: &str) -> crate::support::Out {
    out(aws_cmd(env, url, &["gate", "check", gate, "--output", "json", "--timeout", "10s"]).output().unwrap())
}

const GATES: &str = "gates:\n  prod:\n    sources:\n      - aws_health: { regions: [us-east-1, global], services: [EC2, RDS], lookahead: 2h, categories: [issue, scheduledChange] }\n  open:\n    fail_mode: open\n    sources:\n      - aws_health: { regions: [us-east-1] }\n";

#[test]
fn aws_health_pages_filters_and_describes() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let health = Health::start(Script { page_size: 2, ..Script::default() });
    health.script().events = vec![
        event("e1", "EC2", "us-east-1", "issue", "open", now - 3600.0),
        event("e2", "RDS", "global", "issue", "open", now - 1800.0),
        event("e3", "EC2", "eu-west-1", "issue", "open", now - 600.0),
        event("e4", "EC2", "us-east-1", "issue", "closed", now - 7200.0),
        event("e5", "RDS", "us-east-1", "scheduledChange", "upcoming", now + 3600.0),
        event("e6", "EC2", "us-east-1", "scheduledChange", "upcoming", now + 5.0 * 3600.0),
        event("e7", "EC2", "us-east-1", "issue", "open", now - 60.0),
        event("e8", "LAMBDA", "us-east-1", "issue", "open", now - 60.0),
    ];
    let url = &health.url;
    let env = Env::new();
    env.write("opsbook.yaml", GATES);
    let o = gate_check(&env, url, "prod");
    assert_eq!(o.code, 3, "{o:?}");
    let doc = o.json();
    let ids: Vec<&str> = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(ids, vec!["e1", "e2", "e5", "e7"], "{doc}");
    let first = &doc["records"][0];
    assert_eq!(first["title"], "EC2 AWS_EC2_OPERATIONAL_ISSUE: Details of e1");
    assert_eq!(first["region"], "us-east-1");
    assert_eq!(first["status"], "open");
    assert!(
        first["url"]
            .as_str()
            .unwrap()
            .starts_with("https://health.aws.amazon.com/health/home#/account/event-log?eventID=arn:aws:health")
    );
    assert_eq!(doc["records"][2]["rule"], "lookahead");
    let pages = health.calls("DescribeEvents");
    assert_eq!(pages.len(), 3, "every page is read: {pages:?}");
    assert_eq!(pages[0]["filter"]["regions"], json!(["us-east-1", "global"]));
    assert_eq!(pages[0]["filter"]["eventStatusCodes"], json!(["open", "upcoming"]));
    assert_eq!(pages[1]["nextToken"], "page-2");
    let details = health.calls("DescribeEventDetails");
    assert_eq!(details.len(), 1, "{details:?}");
    assert_eq!(details[0]["eventArns"].as_array().unwrap().len(), 4);

    // Everything closed: clear.
    health.script().events.retain(|e| e["statusCode"] == "closed");
    assert_eq!(gate_check(&env, url, "prod").code, 0);
}

/// `lookahead` blocks on maintenance starting soon even when `categories` asks only for
/// issues (the documented example): upcoming `scheduledChange` events are asked for too,
/// while open ones still follow `categories`.
#[test]
fn lookahead_blocks_on_scheduled_changes_whatever_the_categories() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let health = Health::start(Script::default());
    health.script().events = vec![
        event("soon", "EC2", "us-east-1", "scheduledChange", "upcoming", now + 3600.0),
        event("later", "EC2", "us-east-1", "scheduledChange", "upcoming", now + 5.0 * 3600.0),
        event("ongoing", "EC2", "us-east-1", "scheduledChange", "open", now - 600.0),
    ];
    let url = &health.url;
    let env = Env::new();
    env.write(
        "opsbook.yaml",
        "gates:\n  deploy:\n    sources:\n      - aws_health: { regions: [us-east-1], categories: [issue], lookahead: 2h }\n  now:\n    sources:\n      - aws_health: { regions: [us-east-1], categories: [issue] }\n",
    );
    let o = gate_check(&env, url, "deploy");
    assert_eq!(o.code, 3, "{o:?}");
    let doc = o.json();
    let ids: Vec<&str> = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(ids, vec!["soon"], "{doc}");
    assert_eq!(doc["records"][0]["rule"], "lookahead");
    let asked = health.calls("DescribeEvents");
    assert_eq!(asked[0]["filter"]["eventTypeCategories"], json!(["issue", "scheduledChange"]));
    assert_eq!(asked[0]["filter"]["eventStatusCodes"], json!(["open", "upcoming"]));

    // Without lookahead, nothing upcoming is asked for, and categories hold.
    assert_eq!(gate_check(&env, url, "now").code, 0);
    // Once the change starts beyond the horizon, the gate is clear.
    health.script().events.retain(|e| e["statusCode"] != "upcoming" || e["arn"].as_str().unwrap().ends_with("/later"));
    assert_eq!(gate_check(&env, url, "deploy").code, 0);
}

/// `gate wait` on AWS Health: an event opens, AWS updates its description, then closes
/// it; the wait shows each description as it stands and resumes by itself.
#[test]
fn aws_health_wait_follows_an_event_until_it_closes() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let mut e = event("w1", "EC2", "us-east-1", "issue", "open", now - 600.0);
    e["description"] = json!("Increased API error rates in us-east-1");
    let health = Health::start(Script { events: vec![e], ..Script::default() });
    let env = Env::new();
    env.write("opsbook.yaml", GATES);
    let child = aws_cmd(&env, &health.url, &["gate", "wait", "prod", "--poll", "200ms", "--max-wait", "60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let polls = || health.calls("DescribeEvents").len();
    crate::support::wait_until(|| polls() >= 2, "two checks while open");
    let mut s = health.script();
    s.events[0]["description"] = json!("We are seeing recovery; error rates are decreasing");
    s.events[0]["lastUpdatedTime"] = json!({ "$ts": now });
    drop(s);
    let seen = polls();
    crate::support::wait_until(|| polls() >= seen + 2, "two checks after the update");
    health.script().events[0]["statusCode"] = json!("closed");
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("gate prod blocked — ")
            && o.stderr.contains("aws_health: EC2 AWS_EC2_OPERATIONAL_ISSUE: Increased API error rates in us-east-1"),
        "{o:?}"
    );
    assert!(o.stderr.contains("aws_health: EC2 AWS_EC2_OPERATIONAL_ISSUE: We are seeing recovery"), "{o:?}");
    assert!(o.stderr.contains("gate prod is clear after"), "{o:?}");
}

#[test]
fn aws_health_errors_are_verdicts() {
    let env = Env::new();
    env.write("opsbook.yaml", GATES);
    let health = Health::start(Script {
        page_size: 10,
        error: Some("SubscriptionRequiredException".into()),
        ..Script::default()
    });
    let url = &health.url;
    let closed = gate_check(&env, url, "prod");
    assert_eq!(closed.code, 3, "{closed:?}");
    assert_eq!(
        closed.json()["sources"][0]["error"],
        "the AWS Health API needs a Business, Enterprise On-Ramp or Enterprise support plan"
    );
    let open = gate_check(&env, url, "open");
    assert_eq!(open.code, 0, "{open:?}");
    assert!(open.stderr.contains("passing under fail_mode: open"), "{open:?}");

    // Throttling is retried with backoff.
    let mut s = health.script();
    s.error = None;
    s.throttle = 2;
    s.calls.clear();
    drop(s);
    let o = gate_check(&env, url, "prod");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(health.calls("DescribeEvents").len(), 3);

    // No credentials anywhere: said so, and nothing is sent.
    let mut bare = aws_cmd(&env, url, &["gate", "check", "prod", "--output", "json", "--timeout", "10s"]);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        bare.env_remove(var);
    }
    let o = out(bare.output().unwrap());
    assert_eq!(o.code, 3, "{o:?}");
    let error = o.json()["sources"][0]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.starts_with("no AWS credentials (environment, profile, SSO, web identity, container or instance role): "),
        "{error}"
    );
    assert_eq!(health.calls("DescribeEvents").len(), 3, "nothing reached the API");
}

#[test]
fn aws_health_filters_zones_and_reads_the_organization_view() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let mut ec2a = event("z1", "EC2", "us-east-1", "issue", "open", now - 60.0);
    ec2a["availabilityZone"] = json!("us-east-1a");
    let mut ec2b = event("z2", "EC2", "us-east-1", "issue", "open", now - 60.0);
    ec2b["availabilityZone"] = json!("us-east-1b");
    let health = Health::start(Script { page_size: 1, events: vec![ec2a, ec2b], ..Script::default() });
    let url = &health.url;
    let env = Env::new();
    env.write(
        "opsbook.yaml",
        "gates:
  zone:
    sources:
      - aws_health: { regions: [us-east-1], availability_zones: [us-east-1b] }
  org:
    sources:
      - aws_health: { regions: [us-east-1], organization: true, accounts: [\"111122223333\"] }
",
    );
    let o = gate_check(&env, url, "zone");
    assert_eq!(o.code, 3, "{o:?}");
    let doc = o.json();
    assert_eq!(doc["records"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["records"][0]["availability_zone"], "us-east-1b");
    // Zones are filtered here: AWS would return only events tagged with the zone.
    let asked = health.calls("DescribeEvents");
    assert!(asked[0]["filter"].get("availabilityZones").is_none(), "{asked:?}");

    // A region-wide event (no zone) in the zone's region blocks too; one in another
    // zone or another region does not.
    let saved = health.script().events.clone();
    health.script().events = vec![
        event("wide", "EC2", "us-east-1", "issue", "open", now - 60.0),
        event("elsewhere", "EC2", "eu-west-1", "issue", "open", now - 60.0),
        saved[0].clone(),
    ];
    let o = gate_check(&env, url, "zone");
    assert_eq!(o.code, 3, "a region-wide event blocks a zone gate: {o:?}");
    let doc = o.json();
    let ids: Vec<&str> = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(ids, vec!["wide"], "{doc}");
    assert!(doc["records"][0].get("availability_zone").is_none_or(|z| z.is_null()), "{doc}");
    health.script().events = saved;

    // Organization: DescribeEventsForOrganization with the account filter over every
    // page; account-specific events name their affected accounts; details come from
    // DescribeEventDetailsForOrganization (an account for account-specific events, none
    // for public ones, as AWS requires).
    let mut s = health.script();
    for (i, e) in s.events.iter_mut().enumerate() {
        e["account"] = json!(if i == 0 { "111122223333" } else { "444455556666" });
        e["eventScopeCode"] = json!("ACCOUNT_SPECIFIC");
    }
    s.events.push({
        let mut e = event("z3", "RDS", "us-east-1", "issue", "open", now - 30.0);
        e["account"] = json!("111122223333");
        e
    });
    s.calls.clear();
    drop(s);
    let o = gate_check(&env, url, "org");
    assert_eq!(o.code, 3, "{o:?}");
    let doc = o.json();
    let titles: Vec<&str> = doc["records"].as_array().unwrap().iter().map(|r| r["title"].as_str().unwrap()).collect();
    assert_eq!(
        titles,
        vec![
            "EC2 AWS_EC2_OPERATIONAL_ISSUE (account 111122223333): Details of z1",
            "RDS AWS_RDS_OPERATIONAL_ISSUE: Details of z3"
        ],
        "{doc}"
    );
    let org = health.calls("DescribeEventsForOrganization");
    assert_eq!(org.len(), 2, "two pages: {org:?}");
    assert_eq!(org[0]["filter"]["awsAccountIds"], json!(["111122223333"]));
    let affected = health.calls("DescribeAffectedAccountsForOrganization");
    assert_eq!(affected.len(), 1, "only account-specific events: {affected:?}");
    assert!(affected[0]["eventArn"].as_str().unwrap().ends_with("/z1"));
    let details = health.calls("DescribeEventDetailsForOrganization");
    assert_eq!(details.len(), 1, "{details:?}");
    let filters = details[0]["organizationEventDetailFilters"].as_array().unwrap();
    assert_eq!(filters.len(), 2);
    assert_eq!(filters[0]["awsAccountId"], "111122223333");
    assert!(filters[1].get("awsAccountId").is_none(), "{filters:?}");
    assert!(health.calls("DescribeEventDetails").is_empty());
}
