//! Execution and step statuses, shared by the engine, the store and every front end.

use std::fmt;

macro_rules! status_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&text).ok_or_else(|| {
                    let known: Vec<&str> = $name::ALL.iter().map(|s| s.as_str()).collect();
                    serde::de::Error::custom(format!("unknown status `{text}` (one of {})", known.join(", ")))
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum! {
    /// Where an execution stands.
    ExecStatus {
        Queued => "queued",
        Running => "running",
        Waiting => "waiting",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Interrupted => "interrupted",
    }
}

impl ExecStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, ExecStatus::Succeeded | ExecStatus::Failed | ExecStatus::Cancelled)
    }

    /// The status as messages say it after "execution ID": "is running", "has
    /// succeeded", "was cancelled".
    pub fn phrase(self) -> &'static str {
        match self {
            ExecStatus::Queued => "is queued",
            ExecStatus::Running => "is running",
            ExecStatus::Waiting => "is waiting",
            ExecStatus::Succeeded => "has succeeded",
            ExecStatus::Failed => "has failed",
            ExecStatus::Cancelled => "was cancelled",
            ExecStatus::Interrupted => "was interrupted",
        }
    }
}

status_enum! {
    /// Where a step (or its rollback) stands.
    StepStatus {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        TimedOut => "timed_out",
        Skipped => "skipped",
        Cancelled => "cancelled",
        Waiting => "waiting",
    }
}

impl StepStatus {
    /// A failure of any kind.
    pub fn is_failure(self) -> bool {
        matches!(self, StepStatus::Failed | StepStatus::TimedOut | StepStatus::Cancelled)
    }
}
