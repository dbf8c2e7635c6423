//! AWS Health: DescribeEvents (or DescribeEventsForOrganization) over every page, with
//! the latest description of each blocking event from DescribeEventDetails (or, for the
//! organization view, the affected accounts and DescribeEventDetailsForOrganization).

use std::collections::HashMap;

use aws_config::Region;
use aws_sdk_health::Client;
use aws_sdk_health::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_health::types::{
    DateTimeRange, EventAccountFilter, EventFilter, EventStatusCode, EventTypeCategory, OrganizationEventFilter,
};

use opsbook_core::aws_regions::region_of_zone;

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

fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &SdkError<E, aws_sdk_health::config::http::HttpResponse>,
) -> (String, bool) {
    match e {
        SdkError::ServiceError(s) => {
            let server_side = s.raw().status().is_server_error();
            let err = s.err();
            let code = err.code().unwrap_or("unknown error");
            let msg = if code == "SubscriptionRequiredException" {
                "the AWS Health API needs a Business, Enterprise On-Ramp or Enterprise support plan".to_string()
            } else {
                format!("AWS Health answered {code}: {}", err.message().unwrap_or(""))
            };
            (msg, server_side)
        }
        SdkError::TimeoutError(_) => ("AWS Health did not answer in time".into(), true),
        SdkError::DispatchFailure(d) if d.as_connector_error().is_some_and(|c| opsbook_aws::credentials_failed(c)) => {
            let why = d.as_connector_error().map(|c| super::root_cause(c)).unwrap_or_default();
            // The same credentials sign for every region: no failover.
            (
                format!(
                    "no AWS credentials (environment, profile, SSO, web identity, container or instance role): {why}"
                ),
                false,
            )
        }
        SdkError::DispatchFailure(d) => {
            let why =
                d.as_connector_error().map_or_else(|| "the request could not be sent".into(), |c| super::root_cause(c));
            (format!("cannot reach AWS Health: {why}"), true)
        }
        other => (format!("AWS Health: {}", aws_sdk_health::error::DisplayErrorContext(other)), true),
    }
}

fn status_of(s: &str) -> EventStatusCode {
    EventStatusCode::from(s)
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
    check_routes(c, a, now, &routes(explicit, active), opsbook_aws::loader).await
}

/// Tries each route until one answers. A region that cannot be reached, times out or
/// answers 5xx fails over to the next; an answer (even a refusal such as
/// SubscriptionRequiredException, the same in every region) is final. Each route gets
/// its share of the timeout, and one retry when another route is left. `loader` is where
/// the configuration (credentials) comes from: the standard chain, outside tests.
async fn check_routes(
    c: &Checker,
    a: &AwsHealth,
    now: jiff::Timestamp,
    routes: &[Route],
    loader: impl Fn() -> aws_config::ConfigLoader,
) -> Result<Vec<BlockRecord>, String> {
    let share = c.timeout / u32::try_from(routes.len().max(1)).unwrap_or(1);
    let mut last = String::from("no AWS Health endpoint to try");
    for (i, route) in routes.iter().enumerate() {
        let attempts = if i + 1 < routes.len() { 2 } else { 4 };
        let shared = loader()
            .region(Region::new(route.region))
            .timeout_config(aws_config::timeout::TimeoutConfig::builder().operation_timeout(share).build())
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(attempts))
            .load()
            .await;
        let mut conf = aws_sdk_health::config::Builder::from(&shared);
        if let Some(ep) = &route.endpoint {
            conf = conf.endpoint_url(ep);
        }
        let client = Client::from_conf(conf.build());
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

fn ts(t: Option<&aws_sdk_health::primitives::DateTime>) -> Option<i64> {
    t.map(|d| d.secs() * 1000 + i64::from(d.subsec_nanos() / 1_000_000))
}

/// Account and organization events have the same fields under different types.
macro_rules! found {
    ($e:expr, $az:expr) => {
        Found {
            arn: $e.arn().unwrap_or_default().to_string(),
            service: $e.service().map(str::to_string),
            code: $e.event_type_code().map(str::to_string),
            category: $e.event_type_category().map(|c| c.as_str().to_string()),
            region: $e.region().map(str::to_string),
            az: $az,
            status: $e.status_code().map(|s| s.as_str().to_string()),
            start: ts($e.start_time()),
            updated: ts($e.last_updated_time()),
            scope: $e.event_scope_code().map(|s| s.as_str().to_string()),
            accounts: Vec::new(),
        }
    };
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
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let categories = || Some(wanted.categories.iter().map(|c| EventTypeCategory::from(c.as_str())).collect());
    let statuses = || Some(wanted.statuses.iter().map(|s| status_of(s)).collect());
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        if a.organization {
            let mut f = OrganizationEventFilter::builder()
                .set_regions(list(&wanted.regions))
                .set_services(list(&a.services))
                .set_aws_account_ids(list(&a.accounts))
                .set_event_type_categories(categories())
                .set_event_status_codes(statuses());
            if a.lookahead.is_some() {
                // The organization filter takes single time ranges: anything still relevant.
                f = f.end_time(
                    DateTimeRange::builder()
                        .from(aws_sdk_health::primitives::DateTime::from_millis(now.as_millisecond()))
                        .build(),
                );
            }
            let out = client
                .describe_events_for_organization()
                .filter(f.build())
                .set_next_token(token.clone())
                .max_results(100)
                .send()
                .await
                .map_err(|e| describe(&e))?;
            for e in out.events() {
                found.push(found!(e, None));
            }
            token = out.next_token().map(str::to_string);
        } else {
            let f = EventFilter::builder()
                .set_regions(list(&wanted.regions))
                .set_services(list(&a.services))
                .set_event_type_categories(categories())
                .set_event_status_codes(statuses());
            let out = client
                .describe_events()
                .filter(f.build())
                .set_next_token(token.clone())
                .max_results(100)
                .send()
                .await
                .map_err(|e| describe(&e))?;
            for e in out.events() {
                found.push(found!(e, e.availability_zone().map(str::to_string)));
            }
            token = out.next_token().map(str::to_string);
        }
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
    let time = |ms: Option<i64>| ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map(|t| t.to_string());
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
        let arns: Vec<String> = chunk.iter().map(|f| f.arn.clone()).collect();
        if let Ok(out) = client.describe_event_details().set_event_arns(Some(arns)).send().await {
            for d in out.successful_set() {
                if let (Some(e), Some(desc)) = (d.event(), d.event_description().and_then(|x| x.latest_description())) {
                    descriptions.insert(e.arn().unwrap_or_default().to_string(), desc.to_string());
                }
            }
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
            let Ok(out) = client
                .describe_affected_accounts_for_organization()
                .event_arn(&f.arn)
                .set_next_token(token.clone())
                .max_results(100)
                .send()
                .await
            else {
                break;
            };
            f.accounts.extend(
                out.affected_accounts().iter().filter(|acc| a.accounts.is_empty() || a.accounts.contains(acc)).cloned(),
            );
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    let mut descriptions = HashMap::new();
    let filters: Vec<EventAccountFilter> = found
        .iter()
        .filter(|f| f.scope.as_deref() != Some("ACCOUNT_SPECIFIC") || !f.accounts.is_empty())
        .filter_map(|f| {
            EventAccountFilter::builder()
                .event_arn(&f.arn)
                .set_aws_account_id((f.scope.as_deref() == Some("ACCOUNT_SPECIFIC")).then(|| f.accounts[0].clone()))
                .build()
                .ok()
        })
        .collect();
    for chunk in filters.chunks(10) {
        let Ok(out) = client
            .describe_event_details_for_organization()
            .set_organization_event_detail_filters(Some(chunk.to_vec()))
            .send()
            .await
        else {
            continue;
        };
        for d in out.successful_set() {
            if let (Some(e), Some(desc)) = (d.event(), d.event_description().and_then(|x| x.latest_description())) {
                descriptions.insert(e.arn().unwrap_or_default().to_string(), desc.to_string());
            }
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

    use aws_config::BehaviorVersion;
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

    fn loader() -> aws_config::ConfigLoader {
        let key =
            aws_sdk_health::config::Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/EXAMPLEKEY", None, None, "test");
        aws_config::defaults(BehaviorVersion::latest()).credentials_provider(key)
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
        let records = check_routes(&checker, &a, now, &order, loader).await.unwrap();
        assert_eq!(records.len(), 1);
        assert!(records[0].id.ends_with("/f1"), "{records:?}");
        let tried: Vec<_> = down.script().calls.iter().map(|c| (c.op.clone(), c.region.clone())).collect();
        assert_eq!(tried, vec![("DescribeEvents".to_string(), Some("us-east-2".to_string())); 2]);
        let answered: Vec<_> = up.script().calls.iter().map(|c| c.region.clone()).collect();
        assert_eq!(answered, vec![Some("us-east-1".to_string()); 2], "DescribeEvents, DescribeEventDetails");

        // Both regions down: unknown, naming the last one tried.
        up.script().unavailable = true;
        let err = check_routes(&checker, &a, now, &order, loader).await.unwrap_err();
        assert_eq!(err, "AWS Health answered ServiceUnavailableException: Service unavailable (signing for us-east-1)");

        // A refusal is the same in every region: no failover.
        let refusing =
            Health::start(Script { error: Some("SubscriptionRequiredException".into()), ..Script::default() });
        let order = [
            Route { region: "us-east-2", endpoint: Some(refusing.url.clone()) },
            Route { region: "us-east-1", endpoint: Some(up.url.clone()) },
        ];
        up.script().calls.clear();
        let err = check_routes(&checker, &a, now, &order, loader).await.unwrap_err();
        assert!(err.starts_with("the AWS Health API needs a Business"), "{err}");
        assert!(up.script().calls.is_empty());
    }
}
