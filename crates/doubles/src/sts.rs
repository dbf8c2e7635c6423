//! A double of AWS STS's AssumeRole as the SDK speaks it: awsQuery (`POST /`, a form
//! body `Action=AssumeRole&Version=2011-06-15&RoleArn=…&RoleSessionName=…`), answered in
//! XML. Each assumption hands out new temporary credentials (`ASIA…` access keys), so a
//! test can tell which calls were signed with them.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::http::{Reply, Request, xml_escape};

/// What the double answers; change it while it runs.
#[derive(Default)]
pub struct Script {
    /// Roles the caller may not assume (403 AccessDenied).
    pub denied: Vec<String>,
    /// Every AssumeRole seen, in order.
    pub calls: Vec<Call>,
}

/// One AssumeRole the double saw, and the access key it handed out.
#[derive(Debug, Clone)]
pub struct Call {
    pub role_arn: String,
    pub session_name: String,
    /// The caller's key, and the region it signed for.
    pub access_key: Option<String>,
    pub region: Option<String>,
    /// The temporary access key given back (none when refused).
    pub issued: Option<String>,
}

/// A running double; `url` is its endpoint (`AWS_ENDPOINT_URL_STS`).
#[derive(Clone)]
pub struct Sts {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Sts {
    pub fn start(script: Script) -> Sts {
        let (url, script) = crate::http::serve(script, answer);
        Sts { url, script }
    }

    pub fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.script().calls.clone()
    }
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>",
        xml_escape(message)
    );
    Reply::new(status, "text/xml", body)
}

fn answer(script: &Mutex<Script>, req: &Request) -> Reply {
    let form = req.form();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    if field("Action") != "AssumeRole" {
        return error(400, "InvalidAction", &format!("Could not find operation {}", field("Action")));
    }
    let role_arn = field("RoleArn");
    let session_name = field("RoleSessionName");
    let mut s = script.lock().unwrap_or_else(|e| e.into_inner());
    let n = s.calls.len() + 1;
    let denied = s.denied.contains(&role_arn);
    let issued = (!denied).then(|| format!("ASIATESTDOUBLE{n:06}"));
    s.calls.push(Call {
        role_arn: role_arn.clone(),
        session_name: session_name.clone(),
        access_key: req.signed_access_key(),
        region: req.signed_region(),
        issued: issued.clone(),
    });
    let Some(key) = issued else {
        let who = req.signed_access_key().unwrap_or_default();
        return error(
            403,
            "AccessDenied",
            &format!(
                "User: arn:aws:iam::123456789012:user/{who} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ),
        );
    };
    let expiration = an_hour_from_now();
    let role_name = role_arn.rsplit('/').next().unwrap_or("role");
    let body = format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
         <Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>doublesecret{n}</SecretAccessKey>\
         <SessionToken>doubletoken{n}</SessionToken><Expiration>{expiration}</Expiration></Credentials>\
         <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/{}/{}</Arn><AssumedRoleId>AROATESTDOUBLE:{}</AssumedRoleId></AssumedRoleUser>\
         </AssumeRoleResult><ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata></AssumeRoleResponse>",
        xml_escape(role_name),
        xml_escape(&session_name),
        xml_escape(&session_name)
    );
    Reply::new(200, "text/xml", body)
}

/// An hour from now, as STS writes it.
fn an_hour_from_now() -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
