//! Strict JSON bodies for v0: an object, no unknown keys, no `null`s, the
//! right types — anything else is 400 `bad-request`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::http::problem::ApiError;

/// Parses `body` as a JSON object with only `allowed` keys and no null values.
pub fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    };
    for (k, v) in &map {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("unknown field {k:?}")));
        }
        if v.is_null() {
            return Err(ApiError::bad_request(format!(
                "field {k:?} must not be null"
            )));
        }
    }
    Ok(map)
}

/// An optional string field.
pub fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!(
            "field {key:?} must be a string"
        ))),
    }
}

/// An optional array of strings.
pub fn strings(map: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, ApiError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ApiError::bad_request(format!(
                    "field {key:?} must be an array of strings"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::bad_request(format!(
            "field {key:?} must be an array of strings"
        ))),
    }
}

/// An optional string → string map.
pub fn string_map(
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ApiError::bad_request(format!(
                    "field {key:?} must map strings to strings"
                ))),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::bad_request(format!(
            "field {key:?} must be an object"
        ))),
    }
}
