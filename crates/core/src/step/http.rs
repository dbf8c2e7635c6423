//! The `http` kind: one HTTP request whose status and body are checked.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::duration::Dur;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    #[serde(default)]
    pub method: Method,
    /// Template; each value is percent-encoded for the part of the URL it lands in (a
    /// value before the path, such as a base URL, as it is).
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    /// Templates, each written as it is (a line break refused).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Template; in a JSON body (by `Content-Type`, or one that begins with `{` or `[`)
    /// values are JSON-escaped in strings and JSON values elsewhere; in a form body,
    /// form-encoded.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub body: Option<Spanned<String>>,
    /// Accepted status codes. Default: any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// Template: text the response's body must contain.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub expect_body_contains: Option<Spanned<String>>,
    /// Timeout of one request (the step timeout bounds all attempts of one try).
    #[serde(default)]
    pub timeout: Option<Dur>,
}

impl HttpSpec {
    pub fn accepts_status(&self, status: u16) -> bool {
        if self.expect_status.is_empty() { (200..300).contains(&status) } else { self.expect_status.contains(&status) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
pub enum Method {
    #[default]
    GET,
    HEAD,
    POST,
    PUT,
    PATCH,
    DELETE,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
        }
    }
}
