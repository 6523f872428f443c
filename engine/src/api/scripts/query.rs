//! The query string of `GET /scripts/scheduled` (seed 003): pagination and filters.
//!
//! Read by hand from the raw pairs so that `id_list` can be given either as repeated
//! parameters (`id_list=a&id_list=b`) or as one comma-separated value, and so that
//! every bad value is a 400 naming its parameter.

use chrono::{DateTime, Utc};
use utoipa::IntoParams;

use super::super::ApiError;
use crate::store::RecurrenceKind;
use crate::store::listing::{ScheduleFilter, ScheduleType};

/// Page size when the caller does not give one.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 50;

/// The listing's parameters, as `/openapi.json` describes them.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ListParams {
    /// Whether to paginate (default `true`); `false` returns every match, or 422
    /// `too_many_to_list` when more than 1000 match.
    paginate: Option<bool>,
    /// Page number, from 1 (default 1).
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    page: Option<i64>,
    /// Schedules per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    page_size: Option<u64>,
    /// Only the schedule with this id.
    id: Option<String>,
    /// Only schedules with these ids: repeated, or one comma-separated value.
    #[param(style = Form, explode)]
    id_list: Option<Vec<String>>,
    /// Only schedules whose description contains this text (any case).
    name: Option<String>,
    /// `one_time` (a single launch) or `recurring` (any case).
    #[param(value_type = Option<TypeParam>)]
    r#type: Option<String>,
    /// Frequency (any case).
    #[param(value_type = Option<FrequencyParam>)]
    schedule: Option<String>,
    /// Only schedules created at or after this instant, in UNIX microseconds (an RFC 3339
    /// time is read too).
    #[param(value_type = Option<i64>)]
    scheduled_at_start: Option<String>,
    /// Only schedules created at or before this instant, in UNIX microseconds (an RFC 3339
    /// time is read too; so is the seed's spelling `scheduled_by_end`).
    #[param(value_type = Option<i64>)]
    scheduled_at_end: Option<String>,
    /// Only schedules created by this user id.
    scheduled_by: Option<String>,
}

/// The values of `type`, as documented.
#[derive(utoipa::ToSchema)]
#[schema(as = ScheduleKindFilter)]
#[allow(dead_code, non_camel_case_types)]
pub(crate) enum TypeParam {
    one_time,
    recurring,
}

/// The values of `schedule`, as documented.
#[derive(utoipa::ToSchema)]
#[schema(as = FrequencyFilter)]
#[allow(dead_code, non_camel_case_types, clippy::upper_case_acronyms)]
pub(crate) enum FrequencyParam {
    ONE_TIME,
    HOURLY,
    DAILY,
    WEEKLY,
    MONTHLY,
}

/// What the query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// `Some((page, page_size))` when paginated, page from 1.
    pub paging: Option<(usize, usize)>,
    pub filter: ScheduleFilter,
}

fn bad(param: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_query",
        format!("{param}: {why}"),
    )
}

fn number(param: &str, value: &str, max: usize) -> Result<usize, ApiError> {
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(bad(
            param,
            format!("`{value}` is not a whole number from 1 to {max}"),
        )),
    }
}

fn instant(param: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    let value = value.trim();
    if let Ok(micros) = value.parse::<i64>() {
        // Beyond the calendar's range a bound excludes nothing (or everything).
        return Ok(
            DateTime::from_timestamp_micros(micros).unwrap_or(if micros < 0 {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            }),
        );
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            bad(
                param,
                format!("`{value}` is neither UNIX microseconds nor an RFC 3339 time"),
            )
        })
}

impl ListQuery {
    /// Reads the pairs of a query string; unknown parameters are ignored.
    pub(crate) fn parse(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
        let mut paginate = true;
        let mut page = None;
        let mut page_size = None;
        let mut filter = ScheduleFilter::default();
        let mut ids: Option<Vec<String>> = None;
        for (key, value) in pairs {
            match key.as_str() {
                "paginate" => {
                    paginate = match value.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => {
                            return Err(bad("paginate", format!("`{value}` is not true or false")));
                        }
                    }
                }
                "page" => page = Some(number("page", value, i64::MAX as usize)?),
                "page_size" => {
                    page_size = Some(number("page_size", value, crate::store::MAX_PAGE)?)
                }
                "id" | "id_list" | "id_list[]" => {
                    let list = ids.get_or_insert_with(Vec::new);
                    list.extend(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned),
                    );
                    if list.len() > crate::store::MAX_PAGE {
                        return Err(bad(key, format!("at most {} ids", crate::store::MAX_PAGE)));
                    }
                }
                "name" => filter.name = Some(value.clone()).filter(|v| !v.is_empty()),
                "type" => {
                    let norm = value.trim().to_ascii_lowercase().replace('-', "_");
                    filter.schedule_type = match norm.as_str() {
                        "one_time" | "onetime" | "once" => Some(ScheduleType::OneTime),
                        "recurring" | "recurrent" => Some(ScheduleType::Recurring),
                        _ => {
                            return Err(bad(
                                "type",
                                format!("`{value}` is not one_time or recurring"),
                            ));
                        }
                    }
                }
                "schedule" => {
                    let norm = value.trim().to_ascii_uppercase().replace('-', "_");
                    filter.frequency = match norm.as_str() {
                        "ONE_TIME" | "ONCE" => Some(RecurrenceKind::OneTime),
                        "HOURLY" => Some(RecurrenceKind::Hourly),
                        "DAILY" => Some(RecurrenceKind::Daily),
                        "WEEKLY" => Some(RecurrenceKind::Weekly),
                        "MONTHLY" => Some(RecurrenceKind::Monthly),
                        _ => {
                            return Err(bad(
                                "schedule",
                                format!(
                                    "`{value}` is not ONE_TIME, HOURLY, DAILY, WEEKLY or MONTHLY"
                                ),
                            ));
                        }
                    }
                }
                "scheduled_at_start" => filter.created_from = Some(instant(key, value)?),
                "scheduled_at_end" | "scheduled_by_end" => {
                    filter.created_to = Some(instant(key, value)?)
                }
                "scheduled_by" => filter.created_by = Some(value.clone()).filter(|v| !v.is_empty()),
                _ => {}
            }
        }
        filter.ids = ids;
        let paging = paginate.then(|| (page.unwrap_or(1), page_size.unwrap_or(DEFAULT_PAGE_SIZE)));
        Ok(ListQuery { paging, filter })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &[(&str, &str)]) -> Result<ListQuery, ApiError> {
        let pairs: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ListQuery::parse(&pairs)
    }

    #[test]
    fn defaults_and_every_filter() {
        let q = parse(&[]).expect("empty");
        assert_eq!(q.paging, Some((1, DEFAULT_PAGE_SIZE)));
        assert_eq!(q.filter, ScheduleFilter::default());

        let q = parse(&[
            ("paginate", "false"),
            ("id_list", "a, b"),
            ("id_list", "c"),
            ("name", "BGP"),
            ("type", "Recurring"),
            ("schedule", "weekly"),
            ("scheduled_at_start", "1705497139412776"),
            ("scheduled_by_end", "2030-01-01T00:00:00Z"),
            ("scheduled_by", "alice"),
            ("unknown", "ignored"),
        ])
        .expect("full");
        assert_eq!(q.paging, None);
        assert_eq!(q.filter.ids, Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(q.filter.schedule_type, Some(ScheduleType::Recurring));
        assert_eq!(q.filter.frequency, Some(RecurrenceKind::Weekly));
        assert_eq!(
            q.filter.created_from.map(|t| t.timestamp_micros()),
            Some(1705497139412776)
        );
        assert_eq!(q.filter.created_to.map(|t| t.timestamp()), Some(1893456000));
        assert_eq!(q.filter.created_by.as_deref(), Some("alice"));
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (key, value) in [
            ("page", "0"),
            ("page", "x"),
            ("page_size", "1001"),
            ("page_size", "-1"),
            ("paginate", "maybe"),
            ("type", "sometimes"),
            ("schedule", "YEARLY"),
            ("scheduled_at_start", "yesterday"),
            ("type", ""),
            ("page", ""),
        ] {
            let e = parse(&[(key, value)]).expect_err(value);
            assert_eq!(e.status.as_u16(), 400);
            assert_eq!(e.code, "invalid_query");
            assert!(e.message.starts_with(key), "{}", e.message);
        }
    }
}
