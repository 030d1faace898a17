//! One module per resource; each owns its paths, wire types and handlers and exposes `router()`.

pub mod admin;
pub mod client;
pub mod debug;
pub mod patches;
pub mod sync;
pub mod sync_tokens;

/// RFC 3339 (UTC, seconds) for responses.
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Parses an optional RFC 3339 field of a request.
pub(crate) fn parse_time(
    field: &str,
    v: Option<&str>,
) -> Result<Option<time::OffsetDateTime>, super::ApiError> {
    v.map(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(
            |_| {
                super::ApiError::invalid(
                    field,
                    "expected an RFC 3339 time such as 2026-12-31T00:00:00Z",
                )
            },
        )
    })
    .transpose()
}
