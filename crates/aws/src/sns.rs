//! SNS: Publish of a notification, once (the caller retries and records each attempt).

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

/// Publishes `msg`; the message id. One try: SDK retries are off so that every attempt is
/// the caller's, recorded.
pub fn publish<'a>(target: &'a Target, msg: &'a Message<'_>) -> crate::Boxed<'a, Result<String, Error>> {
    crate::boxed(async move {
        use aws_sdk_sns::types::MessageAttributeValue;
        let conf = crate::config(target).await?;
        let conf =
            aws_sdk_sns::config::Builder::from(&conf).retry_config(aws_config::retry::RetryConfig::disabled()).build();
        let client = aws_sdk_sns::Client::from_conf(conf);
        let mut call = client.publish().topic_arn(msg.topic_arn).subject(subject(msg.subject)).message(msg.body);
        // SNS refuses an attribute with an empty value.
        for (name, value) in msg.attributes.iter().filter(|(_, v)| !v.is_empty()) {
            let v = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(*value)
                .build()
                .map_err(|e| Error { message: format!("message attribute `{name}`: {e}"), retryable: false })?;
            call = call.message_attributes(*name, v);
        }
        let out = call.send().await.map_err(|e| {
            use aws_smithy_types::error::metadata::ProvideErrorMetadata;
            match e.as_service_error().and_then(ProvideErrorMetadata::code) {
                Some("NotFound") => Error::fatal(format!("SNS topic {} does not exist", msg.topic_arn)),
                _ => {
                    let resource = format!("topic {}", msg.topic_arn);
                    crate::describe(&Call { service: "SNS", action: "sns:Publish", resource: &resource, target }, &e)
                }
            }
        })?;
        Ok(out.message_id().unwrap_or_default().to_string())
    })
}
