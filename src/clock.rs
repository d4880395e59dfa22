//! The engine's clock. Everything that asks "what time is it" asks a [`Clock`], so tests
//! and simulations can move time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, as milliseconds since the Unix epoch (UTC).
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to; for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `ms` since the epoch.
    pub fn at(ms: i64) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicI64::new(ms),
        })
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// The wall clock moved forward by an offset: for simulation mode, where a process owner
/// moves time to watch timers and SLAs play out.
#[derive(Debug, Default)]
pub struct SimulatedClock {
    offset: AtomicI64,
}

impl SimulatedClock {
    /// Starts at the wall clock's now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Moves the clock forward by `ms` (never back).
    pub fn advance(&self, ms: i64) {
        self.offset.fetch_add(ms.max(0), Ordering::SeqCst);
    }
}

impl Clock for SimulatedClock {
    fn now_ms(&self) -> i64 {
        Utc::now()
            .timestamp_millis()
            .saturating_add(self.offset.load(Ordering::SeqCst))
    }
}

/// Milliseconds since the epoch as an RFC 3339 UTC string with milliseconds.
pub fn format_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 string into milliseconds since the epoch.
pub fn parse_ms(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Reads an RFC 3339 string as milliseconds since the epoch (the inverse of
/// [`serialize_ms`]).
pub fn deserialize_ms<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(deserializer)?;
    parse_ms(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 time")))
}

/// Serializes milliseconds since the epoch as an RFC 3339 UTC string.
pub fn serialize_ms<S: serde::Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_ms(*ms))
}
