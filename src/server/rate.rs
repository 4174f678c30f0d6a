//! A rate limit, `count` requests per `period`: parsed from the config and applied by
//! both stores. A leaf, so that the config, the stores and the state need not import
//! each other for one small type.

use std::time::Duration;

/// `count` requests per `period`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

/// `60/min`, `10/s`, `1000/h`, `5000/d`.
pub fn parse_rate(s: &str) -> Option<Rate> {
    let (count, per) = s.trim().split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
    let period = match per.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86400),
        _ => return None,
    };
    Some(Rate { count, period })
}
