//! The states the platform's resources move through, as one type each: the API stores them, the
//! runner reports them, the CLI and the dashboard show them, all with the same words (Heroku's,
//! lower case on the wire and in SQL).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Defines a state enum with its wire word per variant, `as_str`, `Display` and `FromStr`.
macro_rules! states {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            /// Every state, in the order of the definition.
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The word on the wire and in SQL.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;

            fn from_str(word: &str) -> Result<Self, UnknownState> {
                match word {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownState { kind: stringify!($name), word: word.to_string() }),
                }
            }
        }
    };
}

states! {
    /// A dyno as the runner last saw it.
    DynoState {
        /// Created, its process not yet accepting on `$PORT` (web and listening dynos) or not
        /// yet started.
        Starting = "starting",
        Up = "up",
        /// Exited on its own or did not boot in time; the runner restarts it with backoff.
        Crashed = "crashed",
        /// Stopped, or exited with status 0 (a one-off that finished).
        Down = "down",
    }
}

states! {
    /// A build of a `git push`.
    BuildStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

states! {
    /// An add-on, from the API's point of view and in its provider's answers.
    AddonState {
        /// Asked for; the provider has not said it is ready (`addons:wait` waits).
        Provisioning = "provisioning",
        Provisioned = "provisioned",
        /// Only in a provider's answer: it gave up (the add-on is then removed).
        Failed = "failed",
    }
}

states! {
    /// A self-upgrade of the platform's components (`ouro upgrades`).
    UpgradeState {
        Rolling = "rolling",
        Succeeded = "succeeded",
        Failed = "failed",
        /// A newer upgrade started before this one ended.
        Superseded = "superseded",
    }
}

impl DynoState {
    /// The dyno's process is gone (it may be restarted).
    pub fn is_finished(self) -> bool {
        matches!(self, DynoState::Crashed | DynoState::Down)
    }
}

/// A word that names no state of its kind (a row written by a newer version, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownState {
    pub kind: &'static str,
    pub word: String,
}

impl fmt::Display for UnknownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a {}", self.word, self.kind)
    }
}

impl std::error::Error for UnknownState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_the_same_on_the_wire_in_sql_and_on_screen() {
        for state in DynoState::ALL {
            let wire = serde_json::to_string(state).unwrap();
            assert_eq!(wire, format!("\"{state}\""));
            assert_eq!(serde_json::from_str::<DynoState>(&wire).unwrap(), *state);
            assert_eq!(state.as_str().parse::<DynoState>(), Ok(*state));
        }
        for state in BuildStatus::ALL {
            assert_eq!(state.as_str().parse::<BuildStatus>(), Ok(*state));
        }
        assert_eq!(AddonState::Provisioned.to_string(), "provisioned");
        assert_eq!(UpgradeState::Rolling.as_str(), "rolling");
    }

    #[test]
    fn unknown_words_are_refused_with_their_kind() {
        let err = "sleeping".parse::<DynoState>().unwrap_err();
        assert_eq!(err.to_string(), "\"sleeping\" is not a DynoState");
        assert!(serde_json::from_str::<BuildStatus>("\"done\"").is_err());
    }
}
