//! AWS Health: DescribeEvents (or DescribeEventsForOrganization) over every page, with
//! the latest description of each blocking event from DescribeEventDetails.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_health::Client;
use aws_sdk_health::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_health::types::{DateTimeRange, EventFilter, EventStatusCode, EventTypeCategory, OrganizationEventFilter};

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
    let text = String::from_utf8_lossy(&out.stdout);
    region_of(text.lines().next()?.split_whitespace().nth(2)?)
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
            let err = s.err();
            let code = err.code().unwrap_or("unknown error");
            let msg = if code == "SubscriptionRequiredException" {
                "the AWS Health API needs a Business, Enterprise On-Ramp or Enterprise support plan".to_string()
            } else {
                format!("AWS Health answered {code}: {}", err.message().unwrap_or(""))
            };
            (msg, false)
        }
        SdkError::TimeoutError(_) => ("AWS Health did not answer in time".into(), true),
        SdkError::DispatchFailure(d) => {
            (format!("cannot reach AWS Health: {:?}", d.as_connector_error().map(|c| c.to_string())), true)
        }
        other => (format!("AWS Health: {}", aws_sdk_health::error::DisplayErrorContext(other)), true),
    }
}

fn status_of(s: &str) -> EventStatusCode {
    EventStatusCode::from(s)
}

pub(crate) async fn check(c: &Checker, a: &AwsHealth, now: jiff::Timestamp) -> Result<Vec<BlockRecord>, String> {
    let explicit = explicit_endpoint(a);
    let candidates: Vec<&str> = match (&explicit, active_region().await) {
        (Some(_), _) => vec![REGIONS[0]],
        // Sign for the active region first, fall back to the other on failure.
        (None, Some(active)) => {
            let mut order = vec![active];
            order.extend(REGIONS.iter().copied().filter(|r| *r != active));
            order
        }
        (None, None) => REGIONS.to_vec(),
    };
    let mut last = String::new();
    for region in candidates {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region))
            .timeout_config(aws_config::timeout::TimeoutConfig::builder().operation_timeout(c.timeout).build())
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4))
            .load()
            .await;
        let mut conf = aws_sdk_health::config::Builder::from(&shared);
        if let Some(ep) = &explicit {
            conf = conf.endpoint_url(ep);
        }
        let client = Client::from_conf(conf.build());
        match fetch(&client, a, now).await {
            Ok(records) => return Ok(records),
            Err((msg, fail_over)) => {
                last = msg;
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
        }
    };
}

async fn fetch(client: &Client, a: &AwsHealth, now: jiff::Timestamp) -> Result<Vec<BlockRecord>, (String, bool)> {
    let mut statuses: Vec<String> = if a.statuses.is_empty() { vec!["open".into()] } else { a.statuses.clone() };
    if a.lookahead.is_some() && !statuses.iter().any(|s| s == "upcoming") {
        statuses.push("upcoming".into());
    }
    let categories: Vec<String> = if a.categories.is_empty() { vec!["issue".into()] } else { a.categories.clone() };
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        if a.organization {
            let mut f = OrganizationEventFilter::builder()
                .set_regions((!a.regions.is_empty()).then(|| a.regions.clone()))
                .set_services((!a.services.is_empty()).then(|| a.services.clone()))
                .set_aws_account_ids((!a.accounts.is_empty()).then(|| a.accounts.clone()))
                .set_event_type_categories(Some(
                    categories.iter().map(|c| EventTypeCategory::from(c.as_str())).collect(),
                ))
                .set_event_status_codes(Some(statuses.iter().map(|s| status_of(s)).collect()));
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
                .set_regions((!a.regions.is_empty()).then(|| a.regions.clone()))
                .set_services((!a.services.is_empty()).then(|| a.services.clone()))
                .set_availability_zones((!a.availability_zones.is_empty()).then(|| a.availability_zones.clone()))
                .set_event_type_categories(Some(
                    categories.iter().map(|c| EventTypeCategory::from(c.as_str())).collect(),
                ))
                .set_event_status_codes(Some(statuses.iter().map(|s| status_of(s)).collect()));
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
    // Upcoming changes block only when they start within the lookahead.
    let horizon = now.as_millisecond() + a.lookahead.map_or(0, |d| i64::try_from(d.0.as_millis()).unwrap_or(0));
    let asked_upcoming = a.statuses.iter().any(|s| s == "upcoming");
    found
        .retain(|f| f.status.as_deref() != Some("upcoming") || asked_upcoming || f.start.is_some_and(|s| s <= horizon));
    // The latest description of each, ten at a time (the API's limit).
    let mut descriptions = std::collections::HashMap::new();
    if !a.organization {
        for chunk in found.chunks(10) {
            let arns: Vec<String> = chunk.iter().map(|f| f.arn.clone()).collect();
            if let Ok(out) = client.describe_event_details().set_event_arns(Some(arns)).send().await {
                for d in out.successful_set() {
                    if let (Some(e), Some(desc)) =
                        (d.event(), d.event_description().and_then(|x| x.latest_description()))
                    {
                        descriptions.insert(e.arn().unwrap_or_default().to_string(), desc.to_string());
                    }
                }
            }
        }
    }
    let time = |ms: Option<i64>| ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map(|t| t.to_string());
    Ok(found
        .into_iter()
        .map(|f| {
            let headline = format!("{} {}", f.service.clone().unwrap_or_default(), f.code.clone().unwrap_or_default())
                .trim()
                .to_string();
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

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_region_of_the_active_endpoint() {
        assert_eq!(super::region_of("health.us-east-2.amazonaws.com"), Some("us-east-2"));
        assert_eq!(super::region_of("health.us-east-1.amazonaws.com"), Some("us-east-1"));
        assert_eq!(super::region_of("global.health.amazonaws.com"), None);
    }
}
