//! A sandbox's network mode, Docker's `--network` value: a network (by name or id), `host`,
//! `none` or `container:NAME`. The CLI parses what the user typed, the API carries the same
//! text, and berthd acts on the parsed value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const HOST_MODE: &str = "host";
const NONE_MODE: &str = "none";
const CONTAINER_MODE_PREFIX: &str = "container:";

/// The value of `--network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NetworkMode {
    /// A network, by name or id.
    Network(String),
    /// The host's network namespace.
    Host,
    /// A namespace of its own with only `lo`.
    None,
    /// The namespace of another sandbox, by name or id.
    Container(String),
}

impl NetworkMode {
    /// The network a sandbox in this mode is connected to, if it has one.
    pub fn network(&self) -> Option<&str> {
        match self {
            Self::Network(network) => Some(network),
            _ => None,
        }
    }
}

impl FromStr for NetworkMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(sandbox) = text.strip_prefix(CONTAINER_MODE_PREFIX) {
            if sandbox.is_empty() {
                return Err("container: needs the name or id of a sandbox".to_owned());
            }
            return Ok(Self::Container(sandbox.to_owned()));
        }
        Ok(match text {
            "" => return Err("a network name must not be empty".to_owned()),
            HOST_MODE => Self::Host,
            NONE_MODE => Self::None,
            network => Self::Network(network.to_owned()),
        })
    }
}

impl fmt::Display for NetworkMode {
    /// What the user typed, and what the API carries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network(network) => f.write_str(network),
            Self::Host => f.write_str(HOST_MODE),
            Self::None => f.write_str(NONE_MODE),
            Self::Container(sandbox) => write!(f, "{CONTAINER_MODE_PREFIX}{sandbox}"),
        }
    }
}

impl TryFrom<String> for NetworkMode {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<NetworkMode> for String {
    fn from(mode: NetworkMode) -> Self {
        mode.to_string()
    }
}

/// (De)serialises an `Option<T>` as its text, for API fields where absent and `""` both mean
/// "not given": `#[serde(default, with = "optional_text", skip_serializing_if = "Option::is_none")]`.
pub mod optional_text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: Display>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.collect_str(value),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr,
        T::Err: Display,
    {
        match Option::<String>::deserialize(deserializer)?.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|e| D::Error::custom(format!("invalid value {text:?}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes_parse_like_dockers() {
        assert_eq!("host".parse(), Ok(NetworkMode::Host));
        assert_eq!("none".parse(), Ok(NetworkMode::None));
        assert_eq!("container:web".parse(), Ok(NetworkMode::Container("web".into())));
        assert_eq!("n1".parse(), Ok(NetworkMode::Network("n1".into())));
        assert!("container:".parse::<NetworkMode>().unwrap_err().contains("needs the name"));
        assert!("".parse::<NetworkMode>().is_err());
        for text in ["host", "none", "container:web", "n1"] {
            assert_eq!(text.parse::<NetworkMode>().unwrap().to_string(), text);
        }
    }
}
