//! SNS: Publish of a notification, once (the caller retries and records each attempt),
//! awsQuery.

use crate::wire::{Policy, SNS, xml_element};
use crate::{Call, Error, Target};

/// One message to publish.
pub struct Message<'a> {
    pub topic_arn: &'a str,
    /// At most 100 printable ASCII characters (cut and cleaned here).
    pub subject: &'a str,
    pub body: &'a str,
    /// String message attributes (subscribers filter on them).
    pub attributes: &'a [(&'a str, &'a str)],
}

/// The region a topic ARN names (`arn:aws:sns:REGION:ACCOUNT:TOPIC`).
pub fn topic_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    (parts.len() == 6 && parts[0] == "arn" && parts[2] == "sns" && !parts[3].is_empty()).then(|| parts[3])
}

/// A subject SNS accepts: printable ASCII, no line breaks, fewer than 100 characters.
fn subject(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(99).collect();
    if clean.trim().is_empty() { "opsbook".into() } else { clean }
}

/// Publish's form fields; attributes are `MessageAttributes.entry.N.*`, numbered from 1.
fn fields(msg: &Message<'_>) -> Vec<(String, String)> {
    let mut f = vec![
        ("TopicArn".to_string(), msg.topic_arn.to_string()),
        ("Subject".to_string(), subject(msg.subject)),
        ("Message".to_string(), msg.body.to_string()),
    ];
    // SNS refuses an attribute with an empty value.
    for (i, (name, value)) in msg.attributes.iter().filter(|(_, v)| !v.is_empty()).enumerate() {
        let entry = format!("MessageAttributes.entry.{}", i + 1);
        f.push((format!("{entry}.Name"), name.to_string()));
        f.push((format!("{entry}.Value.DataType"), "String".into()));
        f.push((format!("{entry}.Value.StringValue"), value.to_string()));
    }
    f
}

/// Publishes `msg`; the message id. One try, so that every attempt is the caller's,
/// recorded.
pub fn publish<'a>(target: &'a Target, msg: &'a Message<'_>) -> crate::Boxed<'a, Result<String, Error>> {
    crate::boxed(async move {
        let client = crate::config(target).await?.client_with(&SNS, Policy { attempts: 1, timeout: None });
        let xml = client.query("Publish", "2010-03-31", &fields(msg)).await.map_err(|e| match e.code() {
            Some("NotFound") => Error::fatal(format!("SNS topic {} does not exist", msg.topic_arn)),
            _ => {
                let resource = format!("topic {}", msg.topic_arn);
                crate::describe(&Call { service: "SNS", action: "sns:Publish", resource: &resource, target }, &e)
            }
        })?;
        Ok(xml_element(&xml, "MessageId").unwrap_or_default())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_attributes_and_skips_empty_ones() {
        let msg = super::Message {
            topic_arn: "arn:aws:sns:us-east-1:1:t",
            subject: "line\nbreak",
            body: "b",
            attributes: &[("a", "1"), ("empty", ""), ("c", "3")],
        };
        let f = super::fields(&msg);
        assert_eq!(f[1], ("Subject".into(), "line?break".into()));
        assert!(f.contains(&("MessageAttributes.entry.2.Name".into(), "c".into())), "{f:?}");
        assert!(f.contains(&("MessageAttributes.entry.2.Value.StringValue".into(), "3".into())), "{f:?}");
        assert!(!f.iter().any(|(_, v)| v == "empty"));
    }
}
