//! Durations as the spec spells them (`1h30m`, `5m`, `45s`), parsed once when an object is read:
//! a spec that deserialises holds valid durations, and no later reader parses the text again.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The CRD's pattern for durations; `parse` accepts exactly what it matches, minus zero. The digit
/// limits keep every match far below what a signed 64-bit count of nanoseconds holds, so no
/// reader (Rust, kube's CEL, the API server's CEL `duration()`) can overflow on it.
pub const PATTERN: &str = "^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$";
/// At most `99999h9999999m999999999s`.
pub const MAX_LENGTH: usize = 24;
const MAX_DIGITS: [usize; 3] = [5, 7, 9];

/// A positive duration with the text the user wrote (kept so the object round-trips unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecDuration {
    text: String,
    value: Duration,
}

impl SpecDuration {
    pub fn get(&self) -> Duration {
        self.value
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::str::FromStr for SpecDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map(|value| Self { text: s.to_string(), value }).ok_or_else(|| {
            format!(
                "{:?} is not a duration like 30s, 5m or 1h30m (hours, minutes, seconds in that order, at most 5, \
                    7 and 9 digits)",
                s.chars().take(40).collect::<String>()
            )
        })
    }
}

impl fmt::Display for SpecDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for SpecDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SpecDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for SpecDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "maxLength": MAX_LENGTH, "pattern": PATTERN})
    }
}

/// Parses `1h30m`, `5m`, `45s`. None for anything else, for zero, and for a value that overflows.
pub fn parse(s: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut last_unit = 0;
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let (rank, secs): (usize, u64) = match ch {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return None,
        };
        if num.is_empty() || rank <= last_unit || num.len() > MAX_DIGITS[rank - 1] {
            return None;
        }
        total = total.checked_add(num.parse::<u64>().ok()?.checked_mul(secs)?)?;
        num.clear();
        last_unit = rank;
    }
    (num.is_empty() && total > 0).then(|| Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_crd_pattern_and_refuses_the_rest() {
        assert_eq!(parse("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("45s"), Some(Duration::from_secs(45)));
        assert_eq!(
            parse("99999h9999999m999999999s"),
            Some(Duration::from_secs(99999 * 3600 + 9999999 * 60 + 999999999))
        );
        for bad in
            ["", "0s", "5", "m", "5x", "1m1h", "5m5m", "-5m", "99999999999999999999h", "3000000000000000h", "100000h"]
        {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips_the_users_text() {
        let d: SpecDuration = serde_json::from_value(serde_json::json!("90m")).expect("parses");
        assert_eq!(d.get(), Duration::from_secs(5400));
        assert_eq!(serde_json::to_value(&d).expect("serialises"), serde_json::json!("90m"));
        let err = serde_json::from_value::<SpecDuration>(serde_json::json!("5 minutes")).expect_err("refused");
        assert!(err.to_string().contains("not a duration like 30s"), "{err}");
    }
}
