//! The device's time model.
//!
//! No battery-backed clock: each boot draws a random boot id and counts
//! uptime from zero. After a `POST /api/v1/time` the device knows
//! `wall = sync_wall + (uptime − sync_uptime)` for the rest of the boot.

/// A wall-clock sync received from a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sync {
    /// Unix milliseconds the collector sent.
    pub wall_ms: u64,
    /// Device uptime when it was applied.
    pub uptime_ms: u64,
    /// Collector's stated uncertainty in milliseconds.
    pub uncertainty_ms: u32,
}

/// Boot id + optional wall-clock sync for the current boot.
#[derive(Debug, Clone, Copy)]
pub struct TimeModel {
    /// Random id of this boot.
    pub boot_id: u32,
    /// Latest sync in this boot, if any.
    pub sync: Option<Sync>,
}

impl TimeModel {
    /// A fresh boot with no wall clock.
    pub const fn new(boot_id: u32) -> Self {
        Self {
            boot_id,
            sync: None,
        }
    }

    /// Applies a sync at `uptime_ms`; returns the previous wall estimate
    /// at that instant (so the caller can log the correction).
    pub fn set(&mut self, uptime_ms: u64, wall_ms: u64, uncertainty_ms: u32) -> Option<u64> {
        let before = self.wall_ms(uptime_ms);
        self.sync = Some(Sync {
            wall_ms,
            uptime_ms,
            uncertainty_ms,
        });
        before
    }

    /// Wall time at `uptime_ms`, if the clock was set in this boot.
    pub fn wall_ms(&self, uptime_ms: u64) -> Option<u64> {
        self.sync.map(|s| {
            if uptime_ms >= s.uptime_ms {
                s.wall_ms.saturating_add(uptime_ms - s.uptime_ms)
            } else {
                s.wall_ms.saturating_sub(s.uptime_ms - uptime_ms)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_follows_uptime_after_sync() {
        let mut t = TimeModel::new(7);
        assert_eq!(t.wall_ms(1000), None);
        assert_eq!(t.set(5_000, 1_700_000_000_000, 20), None);
        assert_eq!(t.wall_ms(65_000), Some(1_700_000_060_000));
        assert_eq!(t.wall_ms(4_000), Some(1_699_999_999_000));
        assert_eq!(
            t.set(65_000, 1_700_000_060_500, 20),
            Some(1_700_000_060_000)
        );
    }
}
