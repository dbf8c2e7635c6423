//! The HTTP API's wire types: what the server sends and accepts, and what its clients
//! (the CLI's `--server` mode, and next the web UI) read. Serde gives the JSON, utoipa
//! the OpenAPI schema, so the document and the code cannot drift apart.
//!
//! Store records are never the wire format: each type here is built from them
//! (`From`), so a change of storage does not change the API.
#![forbid(unsafe_code)]

mod admin;
mod executions;
mod quality;
mod registry;

pub use admin::*;
pub use executions::*;
pub use quality::*;
pub use registry::*;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every refusal: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `invalid_parameters`.
    pub code: String,
    pub message: String,
    /// Per-problem details (`param`, or `line` and `column`, with a `message`), or null.
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub details: Option<serde_json::Value>,
}

/// `{"items": [...]}`: a list answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// RFC 3339 time of an epoch-ms value (null when there is none), as [`rfc3339`] writes it.
pub fn time(ms: Option<i64>) -> Option<String> {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map(rfc3339::text)
}

/// Serde for a time held as epoch milliseconds and sent as RFC 3339 text (UTC, with
/// `Z`, milliseconds when there are any), as every time in the API is:
/// `#[serde(with = "crate::rfc3339")]` (and `rfc3339::option` for an optional one).
/// Reading also takes epoch milliseconds, as opsbook sent some times before (archives
/// written then import unchanged).
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Time {
        Ms(i64),
        Text(String),
    }

    impl Time {
        fn ms(self) -> Result<i64, String> {
            match self {
                Time::Ms(ms) => Ok(ms),
                Time::Text(text) => parse(&text),
            }
        }
    }

    /// A time as the API writes it: UTC, always three fractional digits (`…:03.000Z`),
    /// so that times sort as text.
    pub fn text(t: jiff::Timestamp) -> String {
        format!("{t:.3}")
    }

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        match jiff::Timestamp::from_millisecond(*ms) {
            Ok(t) => s.serialize_str(&text(t)),
            // Beyond year 9999 (a corrupt or hand-made row): the number as stored, which
            // reads back, rather than failing the whole answer.
            Err(_) => s.serialize_i64(*ms),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Time::deserialize(d)?.ms().map_err(D::Error::custom)
    }

    fn parse(text: &str) -> Result<i64, String> {
        text.parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        use super::Time;

        pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => super::serialize(ms, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            Option::<Time>::deserialize(d)?.map(|t| t.ms().map_err(D::Error::custom)).transpose()
        }
    }
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`); `ready` or `database unavailable` (`/readyz`).
    pub status: String,
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stamped {
        #[serde(with = "crate::rfc3339")]
        at: i64,
        #[serde(default, with = "crate::rfc3339::option")]
        next: Option<i64>,
    }

    /// Times go out as RFC 3339 (UTC, `Z`), come back to the same millisecond, and
    /// epoch milliseconds (what some answers held before) still read.
    #[test]
    fn times_are_rfc3339_both_ways() {
        let s = Stamped { at: 1_764_666_843_512, next: None };
        let text = serde_json::to_value(&s).unwrap();
        assert_eq!(text, serde_json::json!({ "at": "2025-12-02T09:14:03.512Z", "next": null }));
        assert_eq!(serde_json::from_value::<Stamped>(text).unwrap(), s);
        let old: Stamped =
            serde_json::from_value(serde_json::json!({ "at": 1_764_666_843_512_i64, "next": 5 })).unwrap();
        assert_eq!(old, Stamped { at: 1_764_666_843_512, next: Some(5) });
        let missing: Stamped = serde_json::from_value(serde_json::json!({ "at": "2025-12-02T09:14:03Z" })).unwrap();
        assert_eq!(missing, Stamped { at: 1_764_666_843_000, next: None });
        // Whole seconds keep their three digits, so that times sort as text.
        assert_eq!(serde_json::to_value(&missing).unwrap()["at"], "2025-12-02T09:14:03.000Z");
        let tenth = Stamped { at: 1_764_666_843_100, next: None };
        assert_eq!(serde_json::to_value(&tenth).unwrap()["at"], "2025-12-02T09:14:03.100Z");
        // A time beyond year 9999 (a corrupt row) goes out as its number, not as an error.
        let far = serde_json::to_value(Stamped { at: i64::MAX, next: None }).unwrap();
        assert_eq!(far["at"], i64::MAX);
        let bad = serde_json::from_value::<Stamped>(serde_json::json!({ "at": "yesterday" })).unwrap_err();
        assert!(bad.to_string().contains("`yesterday` is not an RFC 3339 time"), "{bad}");
    }
}
