//! Durations as seconds (a JSON number), for the types `--json` output and eval files carry.
//! `#[serde(with = "crate::serde_secs")]` on a [`Duration`] field; on the wire (bincode) that
//! is one `f64`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Writes `d` as fractional seconds.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Reads fractional seconds; negative, infinite or NaN values are an error naming the value.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| serde::de::Error::custom(format!("{secs} is not a duration in seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct T {
        #[serde(with = "super")]
        d: Duration,
    }

    #[test]
    fn durations_are_seconds_and_bad_ones_are_named() {
        let t = T {
            d: Duration::from_millis(1500),
        };
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(text, r#"{"d":1.5}"#);
        assert_eq!(serde_json::from_str::<T>(&text).unwrap(), t);
        let e = serde_json::from_str::<T>(r#"{"d":-2.0}"#).unwrap_err();
        assert!(e.to_string().contains("-2"), "{e}");
    }
}
