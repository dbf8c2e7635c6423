//! How record fields are spelled in a database, for every backend: JSON as text, and
//! statuses by name, read back with a `Corrupt` error that names what did not read.

use opsbook_core::{ExecStatus, StepStatus};

use crate::{Error, Phase, Result};

pub fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("JSON values always serialize")
}

pub fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

pub fn exec_status(s: &str) -> Result<ExecStatus> {
    ExecStatus::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown execution status `{s}`")))
}

pub fn step_status(s: &str) -> Result<StepStatus> {
    StepStatus::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown step status `{s}`")))
}

pub fn opt_step_status(s: Option<String>) -> Result<Option<StepStatus>> {
    s.map(|s| step_status(&s)).transpose()
}

pub fn phase(s: &str) -> Result<Phase> {
    Phase::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown phase `{s}`")))
}

/// `(approved, manual)` from a stored decision (see `Approval::decision`).
pub fn decision(s: &str) -> Result<(bool, bool)> {
    match s {
        "approved" => Ok((true, false)),
        "rejected" => Ok((false, false)),
        "confirmed" => Ok((true, true)),
        "declined" => Ok((false, true)),
        _ => Err(Error::Corrupt(format!("unknown decision `{s}`"))),
    }
}

/// The conflict of a second decision by the same person on the same step and phase.
pub fn decided_twice(a: &crate::Approval) -> String {
    let what = match (a.manual, a.phase) {
        (true, crate::Phase::Rollback) => "confirmed the rollback of",
        (true, _) => "confirmed",
        (false, _) => "decided on",
    };
    format!("{} has already {what} step `{}` of execution {}", a.approver, a.step_id, a.execution_id)
}

/// A step's targets as stored: NULL for a step without any.
pub fn targets_text(targets: &[crate::TargetRecord]) -> Option<String> {
    (!targets.is_empty()).then(|| json_text(&targets))
}

pub fn parse_targets(text: Option<String>) -> Result<Vec<crate::TargetRecord>> {
    text.map_or(Ok(Vec::new()), |t| parse_json(&t, "step targets"))
}

/// A step status as its name, in JSON.
pub mod status_name {
    use opsbook_core::StepStatus;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &StepStatus, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StepStatus, D::Error> {
        let s = String::deserialize(d)?;
        StepStatus::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown step status `{s}`")))
    }
}

/// An optional step status as its name, in JSON.
pub mod opt_status_name {
    use opsbook_core::StepStatus;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Option<StepStatus>, ser: S) -> Result<S::Ok, S::Error> {
        match s {
            Some(s) => ser.serialize_some(s.as_str()),
            None => ser.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StepStatus>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| StepStatus::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown step status `{s}`"))))
            .transpose()
    }
}
