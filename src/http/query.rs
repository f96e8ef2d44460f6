//! Strict query-string parsing: a malformed percent escape is an error, not
//! something to guess around.

/// A query string that is not valid `application/x-www-form-urlencoded`.
#[derive(Debug, thiserror::Error)]
#[error("malformed query string: {0}")]
pub struct QueryError(pub &'static str);

/// Decodes one form-urlencoded component (`+` is a space).
pub fn decode_component(s: &str) -> Result<String, QueryError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or(QueryError("truncated percent escape"))?;
                let hi = (hex[0] as char)
                    .to_digit(16)
                    .ok_or(QueryError("bad percent escape"))?;
                let lo = (hex[1] as char)
                    .to_digit(16)
                    .ok_or(QueryError("bad percent escape"))?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| QueryError("not UTF-8 after decoding"))
}

/// All (key, value) pairs, decoded, in order.
pub fn parse(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

/// The first value of `key`.
pub fn get(query: &str, key: &str) -> Result<Option<String>, QueryError> {
    Ok(parse(query)?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v))
}

/// A page size: an integer from 1 to `max`.
///
/// # Errors
/// A 400 problem naming the range, for anything else.
pub fn page_limit(v: &str, max: usize) -> Result<usize, super::problem::ApiError> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            super::problem::ApiError::bad_request(format!(
                "limit must be an integer from 1 to {max}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects() {
        assert_eq!(
            get("uri=eden%3A%2F%2Fa&x=1", "uri").unwrap().as_deref(),
            Some("eden://a")
        );
        assert_eq!(
            get("uri=eden://raw", "uri").unwrap().as_deref(),
            Some("eden://raw")
        );
        assert_eq!(get("a=1", "uri").unwrap(), None);
        assert!(get("uri=%zz", "uri").is_err());
        assert!(get("uri=%4", "uri").is_err());
        assert!(get("uri=%ff", "uri").is_err(), "invalid UTF-8");
        assert_eq!(get("name=a+b", "name").unwrap().as_deref(), Some("a b"));
    }
}
