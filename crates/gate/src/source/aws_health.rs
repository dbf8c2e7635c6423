//! AWS Health: DescribeEvents (or DescribeEventsForOrganization) over every page, with
//! the latest description of each blocking event from DescribeEventDetails (or, for the
//! organization view, the affected accounts and DescribeEventDetailsForOrganization).

use std::collections::HashMap;
use std::sync::Arc;

use opsbook_aws::wire::{Client, Credential, Failure, HEALTH, Policy};
use opsbook_core::aws_regions::region_of_zone;
use serde_json::{Value, json};

use crate::config::AwsHealth;
use crate::{BlockRecord, Checker};

/// The Health API lives in one region at a time; without an explicit endpoint we try the
/// usual one, then the other.
const REGIONS: [&str; 2] = ["us-east-1", "us-east-2"];

/// The region named by a Health endpoint host, e.g. `health.us-east-2.amazonaws.com`.
fn region_of(host: &str) -> Option<&'static str> {
    REGIONS.iter().copied().find(|r| host.split('.').any(|part| part == *r))
}

/// The active Health region: the canonical name (CNAME target) of the global endpoint,
/// as the system resolver reports it (`getent ahosts`: the third column of the first
/// line). `None` when it cannot be told; the caller then tries the usual order.
async fn active_region() -> Option<&'static str> {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::process::Command::new("getent")
            .args(["ahosts", "global.health.amazonaws.com"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    canonical_region(&String::from_utf8_lossy(&out.stdout))
}

/// The region of the canonical name in `getent ahosts` output (`ADDRESS STREAM CNAME`).
fn canonical_region(getent: &str) -> Option<&'static str> {
    region_of(getent.lines().next()?.split_whitespace().nth(2)?)
}

fn explicit_endpoint(a: &AwsHealth) -> Option<String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    a.endpoint_url.clone().or_else(|| env("AWS_ENDPOINT_URL_HEALTH")).or_else(|| env("AWS_ENDPOINT_URL"))
}

/// What went wrong, and whether another region may do better (it may not when AWS
/// answered, refusing: that answer is the same in every region).
fn describe(e: &Failure) -> (String, bool) {
    match e {
        Failure::Service { status, code, message } => {
            let msg = if code == "SubscriptionRequiredException" {
                "the AWS Health API needs a Business, Enterprise On-Ramp or Enterprise support plan".to_string()
            } else {
                format!("AWS Health answered {code}: {message}")
            };
            (msg, *status >= 500)
        }
        Failure::Timeout => ("AWS Health did not answer in time".into(), true),
        // The same credentials sign for every region: no failover.
        Failure::Credentials(why) => (
            format!("no AWS credentials (environment, profile, SSO, web identity, container or instance role): {why}"),
            false,
        ),
        Failure::Unreachable(why) => (format!("cannot reach AWS Health: {why}"), true),
    }
}

/// One way to reach the API: the region to sign for and, when configured, the endpoint.
#[derive(Debug, Clone, PartialEq)]
struct Route {
    region: &'static str,
    endpoint: Option<String>,
}

/// The routes to try, in order. An explicit endpoint is the only one; otherwise the
/// active region (from the global endpoint's canonical name) first, then the other.
fn routes(explicit: Option<String>, active: Option<&'static str>) -> Vec<Route> {
    if let Some(ep) = explicit {
        return vec![Route { region: REGIONS[0], endpoint: Some(ep) }];
    }
    let first = active.unwrap_or(REGIONS[0]);
    let mut order = vec![first];
    order.extend(REGIONS.iter().copied().filter(|r| *r != first));
    order.into_iter().map(|region| Route { region, endpoint: None }).collect()
}

pub(crate) async fn check(c: &Checker, a: &AwsHealth, now: jiff::Timestamp) -> Result<Vec<BlockRecord>, String> {
    let explicit = explicit_endpoint(a);
    let active = if explicit.is_some() { None } else { active_region().await };
    let credential = opsbook_aws::chain_credential().await.map_err(|e| e.message)?;
    check_routes(c, a, now, &routes(explicit, active), credential).await
}

/// Tries each route until one answers. A region that cannot be reached, times out or
/// answers 5xx fails over to the next; an answer (even a refusal such as
/// SubscriptionRequiredException, the same in every region) is final. Each route gets
/// its share of the timeout, and one retry when another route is left.
async fn check_routes(
    c: &Checker,
    a: &AwsHealth,
    now: jiff::Timestamp,
    routes: &[Route],
    credential: Arc<Credential>,
) -> Result<Vec<BlockRecord>, String> {
    let share = c.timeout / u32::try_from(routes.len().max(1)).unwrap_or(1);
    let mut last = String::from("no AWS Health endpoint to try");
    for (i, route) in routes.iter().enumerate() {
        let attempts = if i + 1 < routes.len() { 2 } else { 4 };
        let endpoint = match &route.endpoint {
            Some(ep) => ep.trim_end_matches('/').to_string(),
            None => opsbook_aws::chain_endpoint(&HEALTH, route.region).await,
        };
        let policy = Policy { attempts, timeout: Some(share) };
        let client = Client::new(&HEALTH, route.region, endpoint, credential.clone(), policy);
        match fetch(&client, a, now).await {
            Ok(records) => return Ok(records),
            Err((msg, fail_over)) => {
                last = if routes.len() > 1 { format!("{msg} (signing for {})", route.region) } else { msg };
                if !fail_over {
                    break;
                }
            }
        }
    }
    Err(last)
}

struct Found {
    arn: String,
    service: Option<String>,
    code: Option<String>,
    category: Option<String>,
    region: Option<String>,
    az: Option<String>,
    status: Option<String>,
    start: Option<i64>,
    updated: Option<i64>,
    /// `PUBLIC`, `ACCOUNT_SPECIFIC` or `NONE`.
    scope: Option<String>,
    /// Organization view: the affected accounts of an account-specific event.
    accounts: Vec<String>,
}

/// An awsJson timestamp (epoch seconds, with a fraction) in epoch milliseconds.
fn ts(t: &Value) -> Option<i64> {
    #[allow(clippy::cast_possible_truncation)]
    t.as_f64().map(|secs| (secs * 1000.0).round() as i64)
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

impl Found {
    /// An event as DescribeEvents (or its organization form) lists it.
    fn new(e: &Value) -> Found {
        Found {
            arn: text(&e["arn"]).unwrap_or_default(),
            service: text(&e["service"]),
            code: text(&e["eventTypeCode"]),
            category: text(&e["eventTypeCategory"]),
            region: text(&e["region"]),
            az: text(&e["availabilityZone"]),
            status: text(&e["statusCode"]),
            start: ts(&e["startTime"]),
            updated: ts(&e["lastUpdatedTime"]),
            scope: text(&e["eventScopeCode"]),
            accounts: Vec::new(),
        }
    }
}

/// The items of a list member (none when it is absent).
fn items<'v>(doc: &'v Value, key: &str) -> &'v [Value] {
    doc[key].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Adds each event's latest description from a DescribeEventDetails* answer.
fn add_descriptions(out: &Value, descriptions: &mut HashMap<String, String>) {
    for d in items(out, "successfulSet") {
        if let (Some(arn), Some(desc)) = (text(&d["event"]["arn"]), text(&d["eventDescription"]["latestDescription"])) {
            descriptions.insert(arn, desc);
        }
    }
}

/// What one DescribeEvents call asks for. The API filters by what it is given, so a
/// few things are asked more widely and narrowed by [`Wanted::keeps`]:
/// - availability zones are not sent: AWS then returns only events tagged with one of
///   them, and a region-wide event (no zone) affects every zone of its region;
/// - with `lookahead`, upcoming `scheduledChange` events are asked for whatever
///   `categories` says (categories govern open events; maintenance starting soon blocks).
struct Wanted {
    regions: Vec<String>,
    categories: Vec<String>,
    statuses: Vec<String>,
    asked: Vec<String>,
    zones: Vec<String>,
    asked_upcoming: bool,
    /// Upcoming events starting before this (epoch ms) block; `None` without lookahead.
    horizon: Option<i64>,
}

impl Wanted {
    fn new(a: &AwsHealth, now: jiff::Timestamp) -> Wanted {
        let mut statuses: Vec<String> = if a.statuses.is_empty() { vec!["open".into()] } else { a.statuses.clone() };
        if a.lookahead.is_some() && !statuses.iter().any(|s| s == "upcoming") {
            statuses.push("upcoming".into());
        }
        let asked: Vec<String> = if a.categories.is_empty() { vec!["issue".into()] } else { a.categories.clone() };
        let mut categories = asked.clone();
        if a.lookahead.is_some() && !categories.iter().any(|c| c == "scheduledChange") {
            categories.push("scheduledChange".into());
        }
        let mut regions = a.regions.clone();
        if regions.is_empty() {
            // Zones name their regions: region-wide events there are wanted too.
            for r in a.availability_zones.iter().filter_map(|z| region_of_zone(z)) {
                if !regions.contains(&r) {
                    regions.push(r);
                }
            }
        }
        Wanted {
            regions,
            categories,
            statuses,
            asked,
            zones: a.availability_zones.clone(),
            asked_upcoming: a.statuses.iter().any(|s| s == "upcoming"),
            horizon: a
                .lookahead
                .map(|d| now.as_millisecond().saturating_add(i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX / 2))),
        }
    }

    fn keeps(&self, f: &Found) -> bool {
        let zone_ok = self.zones.is_empty() || f.az.as_ref().is_none_or(|z| self.zones.contains(z));
        let category = f.category.as_deref().unwrap_or_default();
        let category_ok = self.asked.iter().any(|c| c == category);
        let status_ok = if f.status.as_deref() == Some("upcoming") {
            (self.asked_upcoming && category_ok) || self.horizon.is_some_and(|h| f.start.is_some_and(|s| s <= h))
        } else {
            category_ok
        };
        zone_ok && status_ok
    }
}

async fn fetch(client: &Client, a: &AwsHealth, now: jiff::Timestamp) -> Result<Vec<BlockRecord>, (String, bool)> {
    let wanted = Wanted::new(a, now);
    let mut filter = json!({
        "eventTypeCategories": wanted.categories,
        "eventStatusCodes": wanted.statuses,
    });
    for (key, list) in [("regions", &wanted.regions), ("services", &a.services)] {
        if !list.is_empty() {
            filter[key] = json!(list);
        }
    }
    let op = if a.organization {
        if !a.accounts.is_empty() {
            filter["awsAccountIds"] = json!(a.accounts);
        }
        if a.lookahead.is_some() {
            // The organization filter takes single time ranges: anything still relevant.
            #[allow(clippy::cast_precision_loss)]
            let from = now.as_millisecond() as f64 / 1000.0;
            filter["endTime"] = json!({ "from": from });
        }
        "DescribeEventsForOrganization"
    } else {
        "DescribeEvents"
    };
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut input = json!({ "filter": filter, "maxResults": 100 });
        if let Some(t) = token.take() {
            input["nextToken"] = json!(t);
        }
        let out = client.json(op, &input).await.map_err(|e| describe(&e))?;
        for e in items(&out, "events") {
            let mut f = Found::new(e);
            // The organization's events name no zone.
            if a.organization {
                f.az = None;
            }
            found.push(f);
        }
        token = text(&out["nextToken"]).filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    found.retain(|f| wanted.keeps(f));
    let descriptions = if a.organization {
        organization_details(client, a, &mut found).await
    } else {
        account_details(client, &found).await
    };
    let time = |ms: Option<i64>| ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map(|t| format!("{t:.3}"));
    Ok(found
        .into_iter()
        .map(|f| {
            let mut headline =
                format!("{} {}", f.service.clone().unwrap_or_default(), f.code.clone().unwrap_or_default())
                    .trim()
                    .to_string();
            if !f.accounts.is_empty() {
                headline.push_str(&format!(" ({})", accounts_label(&f.accounts)));
            }
            let title = match descriptions.get(&f.arn).and_then(|d| d.lines().find(|l| !l.trim().is_empty())) {
                Some(line) => format!("{headline}: {}", line.trim()),
                None => headline,
            };
            BlockRecord {
                source: "aws_health".into(),
                url: Some(format!("https://health.aws.amazon.com/health/home#/account/event-log?eventID={}", f.arn)),
                id: f.arn,
                title,
                region: f.region,
                availability_zone: f.az,
                service: f.service,
                category: f.category,
                status: f.status.clone(),
                started_at: time(f.start),
                updated_at: time(f.updated),
                rule: if f.status.as_deref() == Some("upcoming") { "lookahead".into() } else { "event filter".into() },
            }
        })
        .collect())
}

/// The latest description of each event, ten at a time (the API's limit). Descriptions
/// only enrich block records: an event whose details cannot be read still blocks.
async fn account_details(client: &Client, found: &[Found]) -> HashMap<String, String> {
    let mut descriptions = HashMap::new();
    for chunk in found.chunks(10) {
        let arns: Vec<&str> = chunk.iter().map(|f| f.arn.as_str()).collect();
        if let Ok(out) = client.json("DescribeEventDetails", &json!({ "eventArns": arns })).await {
            add_descriptions(&out, &mut descriptions);
        }
    }
    descriptions
}

/// The organization view: the affected accounts of each account-specific event
/// (DescribeAffectedAccountsForOrganization, narrowed to the gate's `accounts`), then the
/// latest descriptions (DescribeEventDetailsForOrganization, which wants an account for
/// account-specific events and none for public ones).
async fn organization_details(client: &Client, a: &AwsHealth, found: &mut [Found]) -> HashMap<String, String> {
    for f in found.iter_mut().filter(|f| f.scope.as_deref() == Some("ACCOUNT_SPECIFIC")) {
        let mut token: Option<String> = None;
        // Bounded: ten pages of 100 accounts name enough of them.
        for _ in 0..10 {
            let mut input = json!({ "eventArn": f.arn, "maxResults": 100 });
            if let Some(t) = token.take() {
                input["nextToken"] = json!(t);
            }
            let Ok(out) = client.json("DescribeAffectedAccountsForOrganization", &input).await else {
                break;
            };
            f.accounts.extend(
                items(&out, "affectedAccounts")
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|acc| a.accounts.is_empty() || a.accounts.iter().any(|x| x == acc))
                    .map(str::to_string),
            );
            token = text(&out["nextToken"]).filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
    }
    let mut descriptions = HashMap::new();
    let filters: Vec<Value> = found
        .iter()
        .filter(|f| f.scope.as_deref() != Some("ACCOUNT_SPECIFIC") || !f.accounts.is_empty())
        .map(|f| match f.scope.as_deref() {
            Some("ACCOUNT_SPECIFIC") => json!({ "eventArn": f.arn, "awsAccountId": f.accounts[0] }),
            _ => json!({ "eventArn": f.arn }),
        })
        .collect();
    for chunk in filters.chunks(10) {
        let input = json!({ "organizationEventDetailFilters": chunk });
        if let Ok(out) = client.json("DescribeEventDetailsForOrganization", &input).await {
            add_descriptions(&out, &mut descriptions);
        }
    }
    descriptions
}

/// `account 1111…`, `accounts 1111…, 2222…`, `accounts 1111…, 2222…, 3333… and 4 more`.
fn accounts_label(accounts: &[String]) -> String {
    let shown = accounts.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    match accounts.len() {
        1 => format!("account {shown}"),
        n if n <= 3 => format!("accounts {shown}"),
        n => format!("accounts {shown} and {} more", n - 3),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opsbook_doubles::health::{Health, Script, event};

    use super::{Route, check_routes, routes};
    use crate::Checker;

    #[test]
    fn reads_the_region_of_the_active_endpoint() {
        assert_eq!(super::region_of("health.us-east-2.amazonaws.com"), Some("us-east-2"));
        assert_eq!(super::region_of("health.us-east-1.amazonaws.com"), Some("us-east-1"));
        assert_eq!(super::region_of("global.health.amazonaws.com"), None);
        let getent = "3.216.0.1       STREAM health.us-east-2.amazonaws.com\n3.216.0.1       DGRAM  \n";
        assert_eq!(super::canonical_region(getent), Some("us-east-2"));
        assert_eq!(super::canonical_region("3.216.0.1       STREAM global.health.amazonaws.com\n"), None);
        assert_eq!(super::canonical_region(""), None);
    }

    #[test]
    fn tries_the_active_region_first_and_an_explicit_endpoint_alone() {
        let regions = |r: Vec<Route>| r.iter().map(|r| r.region).collect::<Vec<_>>();
        assert_eq!(regions(routes(None, Some("us-east-2"))), ["us-east-2", "us-east-1"]);
        assert_eq!(regions(routes(None, Some("us-east-1"))), ["us-east-1", "us-east-2"]);
        assert_eq!(regions(routes(None, None)), ["us-east-1", "us-east-2"]);
        assert_eq!(
            routes(Some("http://127.0.0.1:9".into()), Some("us-east-2")),
            vec![Route { region: "us-east-1", endpoint: Some("http://127.0.0.1:9".into()) }]
        );
    }

    fn key() -> std::sync::Arc<opsbook_aws::Credential> {
        opsbook_aws::Credential::fixed("AKIDEXAMPLE", "wJalrXUtnFEMI/EXAMPLEKEY")
    }

    /// The active region is in an outage (HTTP 503): the check signs for it, gives up
    /// after one retry, and asks the other region, signing for that one.
    #[tokio::test]
    async fn fails_over_to_the_other_region_signing_for_each() {
        let now = jiff::Timestamp::now();
        let secs = now.as_second() as f64;
        let down = Health::start(Script { unavailable: true, ..Script::default() });
        let up = Health::start(Script {
            events: vec![event("f1", "EC2", "us-east-1", "issue", "open", secs - 60.0)],
            ..Script::default()
        });
        let a = serde_json::from_value(serde_json::json!({ "regions": ["us-east-1"] })).unwrap();
        let order = [
            Route { region: "us-east-2", endpoint: Some(down.url.clone()) },
            Route { region: "us-east-1", endpoint: Some(up.url.clone()) },
        ];
        let checker = Checker::new(Duration::from_secs(20)).unwrap();
        let records = check_routes(&checker, &a, now, &order, key()).await.unwrap();
        assert_eq!(records.len(), 1);
        assert!(records[0].id.ends_with("/f1"), "{records:?}");
        let tried: Vec<_> = down.script().calls.iter().map(|c| (c.op.clone(), c.region.clone())).collect();
        assert_eq!(tried, vec![("DescribeEvents".to_string(), Some("us-east-2".to_string())); 2]);
        let answered: Vec<_> = up.script().calls.iter().map(|c| c.region.clone()).collect();
        assert_eq!(answered, vec![Some("us-east-1".to_string()); 2], "DescribeEvents, DescribeEventDetails");

        // Both regions down: unknown, naming the last one tried.
        up.script().unavailable = true;
        let err = check_routes(&checker, &a, now, &order, key()).await.unwrap_err();
        assert_eq!(err, "AWS Health answered ServiceUnavailableException: Service unavailable (signing for us-east-1)");

        // A refusal is the same in every region: no failover.
        let refusing =
            Health::start(Script { error: Some("SubscriptionRequiredException".into()), ..Script::default() });
        let order = [
            Route { region: "us-east-2", endpoint: Some(refusing.url.clone()) },
            Route { region: "us-east-1", endpoint: Some(up.url.clone()) },
        ];
        up.script().calls.clear();
        let err = check_routes(&checker, &a, now, &order, key()).await.unwrap_err();
        assert!(err.starts_with("the AWS Health API needs a Business"), "{err}");
        assert!(up.script().calls.is_empty());
    }
}
