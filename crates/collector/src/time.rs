//! Time reconstruction: from (boot id, uptime, optional device wall time),
//! clock syncs and boot events to a wall time with an explicit bound.
//!
//! # The model
//!
//! A device has no battery-backed clock. Each boot counts *uptime* from
//! zero; the uptime crystal runs at `1 + δ` times real time with
//! `|δ| ≤ ρ` ([`Params::drift_ppm`]). Between two uptimes `x < y` of the
//! same boot the true elapsed time therefore lies in
//! `[(y−x) − drift(y−x), (y−x) + drift(y−x)]` with
//! `drift(d) = ⌈d·ρ/(1−ρ)⌉ + 1` (the `+1` covers millisecond truncation).
//!
//! What we know, as inequalities on the unknown wall time `wall_B(u)` of
//! uptime `u` in boot `B`:
//!
//! 1. **Syncs** ([`Anchor`]): at uptime `a` of boot `B` the wall time was
//!    `t ± e`. The collector's own syncs state `e` as half the measured round
//!    trip; syncs known only from the device's events get
//!    [`Params::assumed_sync_uncertainty_ms`]. Then
//!    `wall_B(u) ∈ [t − e + (u−a) − drift(|u−a|), t + e + (u−a) + drift(|u−a|)]`.
//! 2. **Device wall time in a record** (used only for boots whose sync is not
//!    known as an [`Anchor`], e.g. its event was lost): the device had been
//!    synced earlier in the same boot, at an unknown uptime `a ≤ u`, so the
//!    record's `wall_ms` is off by at most `assumed + drift(u)`. The same
//!    holds for the previous boot's wall time persisted in a boot event.
//! 3. **Boot order**: records are ordered by seq, so boots come in the order
//!    of their records. A boot starts after the previous boot's last known
//!    uptime (its last record, or the `prev_uptime_ms` its successor's boot
//!    event persisted — see [`BootMark`]): `wall_B(0) ≥ wall_P(end_P)`.
//! 4. **Observation**: every record existed when the collector received it,
//!    so the last boot's last known moment is `≤ observed_at_ms`.
//!
//! A forward pass carries the earliest possible wall time of each boot's end
//! (`lo_end`) into the next boot; a backward pass carries the latest possible
//! wall time of each boot's start (`hi_start`) into the previous one. Every
//! record then takes the intersection of all bounds that apply to it and is
//! stored as the midpoint `ts_ms` with half the width as `ts_uncertainty_ms`.
//! Syncs of one boot that contradict each other (their bounds do not
//! intersect) are resolved by trust: syncs this collector measured
//! ([`Anchor::trusted`]) win over syncs known only from device events, and
//! among trusted ones the latest wins (a device whose uptime does not follow
//! real time, such as an accelerated simulator).
//! When no lower bound exists (boots before the device's first sync ever),
//! or the bounds contradict each other (a lying sync), the record gets no
//! time: [`Estimate::ts_ms`] is `None` — flagged, never guessed.
//!
//! # Worked example
//!
//! `ρ = 100 ppm`, records every 60 s (`drift(60 000) = ⌈6.0006⌉ + 1 = 8 ms`).
//!
//! - Boot 7: the collector syncs at uptime 1 000 000 with
//!   `t = 1 700 000 000 000`, measured round trip 40 ms, so `e = 20`.
//!   A record of boot 7 at uptime 1 060 000 gets
//!   `[t − 20 + 60 000 − 8, t + 20 + 60 000 + 8]`, i.e.
//!   `ts = 1 700 000 060 000 ± 28 ms`. Its last record is at uptime
//!   3 000 000, so boot 7 ended no earlier than
//!   `t − 20 + 2 000 000 − 202 = 1 700 001 999 778`.
//! - Power cut. Boot 8 has no sync; its records run from uptime 60 000 to
//!   600 000. Lower bound of a record at uptime `u`:
//!   `1 700 001 999 778 + u − drift(u)`.
//! - Boot 9 is synced at uptime 120 000 with `t' = 1 700 005 000 000 ± 20`,
//!   so boot 9 started no later than `t' + 20 − 120 000 + 14 = 1 700 004 880 034`,
//!   and boot 8's record at uptime `u` is no later than
//!   `1 700 004 880 034 − (600 000 − u) + drift(600 000 − u)`.
//! - For `u = 600 000` (boot 8's last record): `lo = 1 700 002 599 716`,
//!   `hi = 1 700 004 880 035`, so `ts = 1 700 003 739 875 ± 1 140 160 ms`
//!   (≈ 19 minutes): the device was off for an unknown part of the 48
//!   minutes between the two synced boots, and the bound says so.
//!
//! The property test at the bottom of this module simulates random
//! histories (boots, gaps, drift, syncs with random errors, lost events) with
//! known true times and checks that the true time is always within the bound.

/// Tuning of the reconstruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Bound on the uptime clock's rate error, in parts per million.
    pub drift_ppm: u32,
    /// Uncertainty assumed for a sync the collector did not measure itself
    /// (a device event from another collector, or a record's own wall time).
    pub assumed_sync_uncertainty_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            drift_ppm: 100,
            assumed_sync_uncertainty_ms: 2_000,
        }
    }
}

impl Params {
    /// Worst-case clock error accumulated over `d` ms of uptime.
    pub fn drift(&self, d: u64) -> i64 {
        let ppm = u128::from(self.drift_ppm.min(999_999));
        let v = (u128::from(d) * ppm).div_ceil(1_000_000 - ppm) + 1;
        i64::try_from(v).unwrap_or(i64::MAX / 4)
    }
}

/// Time fields of one record, in seq order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordTime {
    /// Record seq (only used for ordering checks by callers).
    pub seq: u64,
    /// Boot the record was measured in.
    pub boot_id: u32,
    /// Uptime at interval end.
    pub uptime_ms: u64,
    /// The device's wall time at interval end, if it had a clock.
    pub wall_ms: Option<u64>,
}

/// A clock sync: at `uptime_ms` of boot `boot_id` the wall time was
/// `wall_ms ± uncertainty_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Boot of the sync.
    pub boot_id: u32,
    /// Device uptime when the sync was applied.
    pub uptime_ms: u64,
    /// Wall time set.
    pub wall_ms: u64,
    /// Bound on `|wall_ms − true time|`.
    pub uncertainty_ms: u64,
    /// Measured by this collector (its bound is known to hold). Syncs known
    /// only from device events are not trusted: if they contradict a trusted
    /// one, they are ignored.
    pub trusted: bool,
}

/// What a boot event says about the boot before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootMark {
    /// The new boot.
    pub boot_id: u32,
    /// The boot before it.
    pub prev_boot_id: u32,
    /// Last uptime the previous boot persisted (it lived at least this long).
    pub prev_uptime_ms: u64,
    /// The previous boot's wall time at `prev_uptime_ms`, if it had a clock.
    pub prev_wall_ms: Option<u64>,
}

/// Everything known about one device's time.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Records in seq order.
    pub records: Vec<RecordTime>,
    /// Clock syncs (any order).
    pub anchors: Vec<Anchor>,
    /// Boot events (any order).
    pub boots: Vec<BootMark>,
    /// Collector time at which the latest records were received (upper
    /// bound for all of them), if known.
    pub observed_at_ms: Option<u64>,
}

/// Reconstructed time of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// Best estimate (midpoint of the bound), unix ms; `None` when the time
    /// cannot be bounded.
    pub ts_ms: Option<i64>,
    /// Half-width of the bound: the true time is within `ts_ms ± this`.
    pub uncertainty_ms: Option<u64>,
}

impl Estimate {
    const UNKNOWN: Estimate = Estimate {
        ts_ms: None,
        uncertainty_ms: None,
    };
}

#[derive(Clone, Copy, Debug)]
struct Span {
    lo: Option<i64>,
    hi: Option<i64>,
}

impl Span {
    const ALL: Span = Span { lo: None, hi: None };
    fn lower(&mut self, v: i64) {
        self.lo = Some(self.lo.map_or(v, |l| l.max(v)));
    }
    fn upper(&mut self, v: i64) {
        self.hi = Some(self.hi.map_or(v, |h| h.min(v)));
    }
    fn meet(&mut self, other: Span) {
        if let Some(l) = other.lo {
            self.lower(l);
        }
        if let Some(h) = other.hi {
            self.upper(h);
        }
    }
}

/// A point known as `t ± e` at uptime `a`.
#[derive(Clone, Copy, Debug)]
struct Point {
    a: u64,
    t: i64,
    e: i64,
    trusted: bool,
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX / 4)
}

impl Point {
    /// Bounds of the wall time at uptime `x` of the same boot.
    fn at(&self, x: u64, p: &Params) -> Span {
        let delta = as_i64(x) - as_i64(self.a);
        let d = p.drift(x.abs_diff(self.a));
        Span {
            lo: Some(self.t - self.e + delta - d),
            hi: Some(self.t + self.e + delta + d),
        }
    }
}

struct Segment {
    boot_id: u32,
    start: usize,
    end: usize, // exclusive
    end_uptime: u64,
    points: Vec<Point>,
    /// Has explicit syncs: device wall times are then derived, not used.
    synced: bool,
}

/// Reconstructs the wall time of every record of `h` (same order).
pub fn reconstruct(h: &History, p: &Params) -> Vec<Estimate> {
    let recs = &h.records;
    let assumed = as_i64(p.assumed_sync_uncertainty_ms);
    // Contiguous runs of one boot id.
    let mut segs: Vec<Segment> = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        match segs.last_mut() {
            Some(s) if s.boot_id == r.boot_id => {
                s.end = i + 1;
                s.end_uptime = s.end_uptime.max(r.uptime_ms);
            }
            _ => segs.push(Segment {
                boot_id: r.boot_id,
                start: i,
                end: i + 1,
                end_uptime: r.uptime_ms,
                points: Vec::new(),
                synced: false,
            }),
        }
    }
    let n = segs.len();
    // Syncs belong to the last segment of their boot id (a later segment with
    // the same id would be an id collision; syncs are for the live boot).
    for a in &h.anchors {
        if let Some(s) = segs.iter_mut().rev().find(|s| s.boot_id == a.boot_id) {
            s.synced = true;
            s.points.push(Point {
                a: a.uptime_ms,
                t: as_i64(a.wall_ms),
                e: as_i64(a.uncertainty_ms),
                trusted: a.trusted,
            });
        }
    }
    // Syncs that contradict each other: keep the trusted ones; if those
    // still disagree (a device whose uptime does not follow real time), keep
    // the latest trusted one; without any, treat the boot as unsynced.
    let consistent = |pts: &[Point]| {
        let mut span = Span::ALL;
        for pt in pts {
            span.meet(pt.at(0, p));
        }
        matches!((span.lo, span.hi), (Some(l), Some(h)) if l <= h)
    };
    for s in segs.iter_mut().filter(|s| s.synced) {
        if consistent(&s.points) {
            continue;
        }
        s.points.retain(|pt| pt.trusted);
        if !consistent(&s.points) {
            let last = s.points.last().copied();
            s.points = last.into_iter().collect();
        }
        s.synced = !s.points.is_empty();
    }
    // Boot events extend the previous boot and may carry its wall time.
    for i in 1..n {
        let (prev, next) = (segs[i - 1].boot_id, segs[i].boot_id);
        if let Some(m) = h
            .boots
            .iter()
            .find(|m| m.boot_id == next && m.prev_boot_id == prev)
        {
            let s = &mut segs[i - 1];
            s.end_uptime = s.end_uptime.max(m.prev_uptime_ms);
            if let Some(w) = m.prev_wall_ms
                && !s.synced
            {
                s.points.push(Point {
                    a: m.prev_uptime_ms,
                    t: as_i64(w),
                    e: assumed + p.drift(m.prev_uptime_ms),
                    trusted: false,
                });
            }
        }
    }
    // The first and last records with a device wall time act as anchors for
    // the whole segment, unless the sync they came from is known (its own
    // stated uncertainty is then the right one).
    for s in segs.iter_mut().filter(|s| !s.synced) {
        let walls = || recs[s.start..s.end].iter().filter(|r| r.wall_ms.is_some());
        let first = walls().next().copied();
        let last = walls().next_back().copied();
        for r in [first, last].into_iter().flatten() {
            if let Some(w) = r.wall_ms {
                s.points.push(Point {
                    a: r.uptime_ms,
                    t: as_i64(w),
                    e: assumed + p.drift(r.uptime_ms),
                    trusted: false,
                });
            }
        }
    }
    let own = |s: &Segment, x: u64| {
        let mut span = Span::ALL;
        for pt in &s.points {
            span.meet(pt.at(x, p));
        }
        span
    };
    // Forward: earliest wall time of each segment's end.
    let mut lo_end: Vec<Option<i64>> = vec![None; n];
    for i in 0..n {
        let s = &segs[i];
        let mut v = own(s, s.end_uptime).lo;
        if i > 0
            && let Some(prev) = lo_end[i - 1]
        {
            let c = prev + as_i64(s.end_uptime) - p.drift(s.end_uptime);
            v = Some(v.map_or(c, |x| x.max(c)));
        }
        lo_end[i] = v;
    }
    // Backward: latest wall time of each segment's start.
    let mut hi_start: Vec<Option<i64>> = vec![None; n];
    for i in (0..n).rev() {
        let s = &segs[i];
        let mut v = own(s, 0).hi;
        let next = if i + 1 < n {
            hi_start[i + 1]
        } else {
            h.observed_at_ms.map(as_i64)
        };
        if let Some(nx) = next {
            let c = nx - as_i64(s.end_uptime) + p.drift(s.end_uptime);
            v = Some(v.map_or(c, |x| x.min(c)));
        }
        hi_start[i] = v;
    }
    let mut out = vec![Estimate::UNKNOWN; recs.len()];
    for (i, s) in segs.iter().enumerate() {
        for (j, r) in recs.iter().enumerate().take(s.end).skip(s.start) {
            let u = r.uptime_ms;
            let mut span = own(s, u);
            if let Some(w) = r.wall_ms
                && !s.synced
            {
                span.meet(
                    Point {
                        a: u,
                        t: as_i64(w),
                        e: assumed + p.drift(u),
                        trusted: false,
                    }
                    .at(u, p),
                );
            }
            if i > 0
                && let Some(prev) = lo_end[i - 1]
            {
                span.lower(prev + as_i64(u) - p.drift(u));
            }
            let next = if i + 1 < n {
                hi_start[i + 1]
            } else {
                h.observed_at_ms.map(as_i64)
            };
            if let Some(nx) = next {
                let rest = s.end_uptime.saturating_sub(u);
                span.upper(nx - as_i64(rest) + p.drift(rest));
            }
            out[j] = match (span.lo, span.hi) {
                (Some(lo), Some(hi)) if lo <= hi => {
                    let ts = lo + (hi - lo) / 2;
                    Estimate {
                        ts_ms: Some(ts),
                        uncertainty_ms: u64::try_from(hi - ts).ok(),
                    }
                }
                _ => Estimate::UNKNOWN,
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn worked_example_from_the_docs() {
        let p = Params::default();
        assert_eq!(p.drift(60_000), 8);
        let mut h = History::default();
        let mut seq = 0;
        let mut push = |h: &mut History, boot, u| {
            seq += 1;
            h.records.push(RecordTime {
                seq,
                boot_id: boot,
                uptime_ms: u,
                wall_ms: None,
            });
        };
        push(&mut h, 7, 1_060_000);
        push(&mut h, 7, 3_000_000);
        for k in 1..=10 {
            push(&mut h, 8, 60_000 * k);
        }
        push(&mut h, 9, 60_000);
        h.anchors.push(Anchor {
            boot_id: 7,
            uptime_ms: 1_000_000,
            wall_ms: T0,
            uncertainty_ms: 20,
            trusted: true,
        });
        h.anchors.push(Anchor {
            boot_id: 9,
            uptime_ms: 120_000,
            wall_ms: 1_700_005_000_000,
            uncertainty_ms: 20,
            trusted: true,
        });
        let est = reconstruct(&h, &p);
        // boot 7, uptime 1_060_000
        assert_eq!(est[0].ts_ms, Some(1_700_000_060_000));
        assert_eq!(est[0].uncertainty_ms, Some(28));
        // boot 8, uptime 600_000 (last record of boot 8)
        let b8 = &est[2 + 9];
        assert_eq!(b8.ts_ms, Some(1_700_003_739_875));
        assert_eq!(b8.uncertainty_ms, Some(1_140_160));
    }

    #[test]
    fn no_sync_ever_means_no_time() {
        let h = History {
            records: vec![RecordTime {
                seq: 1,
                boot_id: 1,
                uptime_ms: 60_000,
                wall_ms: None,
            }],
            observed_at_ms: Some(T0),
            ..Default::default()
        };
        assert_eq!(reconstruct(&h, &Params::default())[0], Estimate::UNKNOWN);
    }

    #[test]
    fn contradicting_bounds_are_flagged() {
        let p = Params::default();
        let h = History {
            records: vec![RecordTime {
                seq: 1,
                boot_id: 1,
                uptime_ms: 60_000,
                wall_ms: None,
            }],
            anchors: vec![Anchor {
                boot_id: 1,
                uptime_ms: 0,
                wall_ms: T0,
                uncertainty_ms: 10,
                trusted: true,
            }],
            observed_at_ms: Some(T0), // "received" before it was measured
            ..Default::default()
        };
        assert_eq!(reconstruct(&h, &p)[0], Estimate::UNKNOWN);
    }

    #[test]
    fn a_foreign_sync_contradicting_ours_is_ignored() {
        let p = Params::default();
        let rec = RecordTime {
            seq: 1,
            boot_id: 1,
            uptime_ms: 60_000,
            wall_ms: None,
        };
        let ours = Anchor {
            boot_id: 1,
            uptime_ms: 120_000,
            wall_ms: T0 + 120_000,
            uncertainty_ms: 5,
            trusted: true,
        };
        let foreign = Anchor {
            boot_id: 1,
            uptime_ms: 0,
            wall_ms: T0 - 10_000, // 10 s off while claiming ±1 s
            uncertainty_ms: 1_000,
            trusted: false,
        };
        let h = History {
            records: vec![rec],
            anchors: vec![foreign, ours],
            observed_at_ms: Some(T0 + 200_000),
            ..Default::default()
        };
        let e = reconstruct(&h, &p)[0];
        assert_eq!(e.ts_ms, Some((T0 + 60_000) as i64));
        assert_eq!(e.uncertainty_ms, Some(5 + p.drift(60_000) as u64));
        // Two trusted syncs that disagree: the latest one is kept.
        let mut older = ours;
        older.uptime_ms = 0;
        older.wall_ms = T0 + 30_000;
        let h = History {
            anchors: vec![older, ours],
            ..h
        };
        assert_eq!(reconstruct(&h, &p)[0].ts_ms, Some((T0 + 60_000) as i64));
    }

    /// How a simulated boot's sync is seen by the collector.
    #[derive(Clone, Copy, Debug)]
    enum SyncKind {
        /// Measured by this collector: stated uncertainty `e`.
        Ours(u64),
        /// Known from a device event only (assumed uncertainty).
        Foreign,
        /// Event lost: only the records' wall times remain.
        Lost,
    }

    #[derive(Clone, Debug)]
    struct SimBoot {
        gap_ms: u64,
        drift_ppm: i32,
        records: u64,
        interval: u64,
        first_at: u64,
        tail_ms: u64,
        sync: Option<(u64, i64, SyncKind)>, // (uptime, error in ms, kind)
        persisted_frac: u8,                 // how much of the tail was persisted
    }

    fn sim_boot() -> impl Strategy<Value = SimBoot> {
        let kind = prop_oneof![
            (1u64..5_000).prop_map(SyncKind::Ours),
            Just(SyncKind::Foreign),
            Just(SyncKind::Lost)
        ];
        (
            0u64..20_000_000,
            -100i32..=100,
            0u64..40,
            prop_oneof![Just(1_000u64), Just(60_000), Just(3_600_000)],
            0u64..120_000,
            0u64..10_000_000,
            proptest::option::weighted(0.6, (0u64..200_000_000, any::<i64>(), kind)),
            0u8..=100,
        )
            .prop_map(
                |(
                    gap_ms,
                    drift_ppm,
                    records,
                    interval,
                    first_at,
                    tail_ms,
                    sync,
                    persisted_frac,
                )| {
                    SimBoot {
                        gap_ms,
                        drift_ppm,
                        records,
                        interval,
                        first_at,
                        tail_ms,
                        sync,
                        persisted_frac,
                    }
                },
            )
    }

    /// Builds the observed history of a simulated device and the true time
    /// of each record.
    fn simulate(boots: &[SimBoot], p: &Params, observe_delay: u64) -> (History, Vec<f64>) {
        let mut h = History::default();
        let mut truth = Vec::new();
        let mut now = T0 as f64; // true time of the current boot's start
        let mut seq = 0;
        let mut prev: Option<(u32, u64, Option<u64>)> = None; // (boot, persisted uptime, wall at it)
        for (b, sb) in boots.iter().enumerate() {
            let boot_id = 100 + b as u32;
            now += sb.gap_ms as f64;
            let rate = 1.0 + f64::from(sb.drift_ppm) / 1e6;
            let true_at = |u: u64| now + u as f64 / rate;
            let length = sb.first_at + sb.records * sb.interval + sb.tail_ms;
            // The device's sync: wall = T at uptime a, with T off by err.
            let sync = sb.sync.map(|(a, err, kind)| {
                let a = a % (length + 1);
                let e = match kind {
                    SyncKind::Ours(e) => e,
                    _ => p.assumed_sync_uncertainty_ms,
                };
                let err = err.rem_euclid(2 * e as i64 - 1) - (e as i64 - 1);
                let t = (true_at(a).round() as i64 + err) as u64;
                (a, t, e, kind)
            });
            let device_wall = |u: u64| match sync {
                Some((a, t, _, _)) if u >= a => Some(t + (u - a)),
                _ => None,
            };
            if let Some((a, t, e, kind)) = sync {
                match kind {
                    SyncKind::Ours(_) | SyncKind::Foreign => h.anchors.push(Anchor {
                        boot_id,
                        uptime_ms: a,
                        wall_ms: t,
                        uncertainty_ms: e,
                        trusted: matches!(kind, SyncKind::Ours(_)),
                    }),
                    SyncKind::Lost => {}
                }
            }
            if let Some((pb, pu, pw)) = prev {
                h.boots.push(BootMark {
                    boot_id,
                    prev_boot_id: pb,
                    prev_uptime_ms: pu,
                    prev_wall_ms: pw,
                });
            }
            for k in 0..sb.records {
                let u = sb.first_at + (k + 1) * sb.interval;
                seq += 1;
                h.records.push(RecordTime {
                    seq,
                    boot_id,
                    uptime_ms: u,
                    wall_ms: device_wall(u),
                });
                truth.push(true_at(u));
            }
            let persisted = length * u64::from(sb.persisted_frac) / 100;
            prev = Some((boot_id, persisted, device_wall(persisted)));
            now = true_at(length);
        }
        h.observed_at_ms = Some(now as u64 + observe_delay);
        (h, truth)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn true_time_is_always_inside_the_bound(
            boots in proptest::collection::vec(sim_boot(), 1..7),
            observe_delay in 0u64..1_000_000,
        ) {
            let p = Params::default();
            let (h, truth) = simulate(&boots, &p, observe_delay);
            let est = reconstruct(&h, &p);
            prop_assert_eq!(est.len(), truth.len());
            for (i, (e, t)) in est.iter().zip(&truth).enumerate() {
                if let (Some(ts), Some(unc)) = (e.ts_ms, e.uncertainty_ms) {
                    let err = (ts as f64 - t).abs();
                    prop_assert!(err <= unc as f64, "record {i}: ts {ts} ± {unc}, true {t}, off by {err}");
                }
            }
        }

        #[test]
        fn synced_boots_are_exact_up_to_the_sync(
            boots in proptest::collection::vec(sim_boot(), 1..5),
        ) {
            let p = Params::default();
            let (h, _) = simulate(&boots, &p, 0);
            let est = reconstruct(&h, &p);
            for (r, e) in h.records.iter().zip(&est) {
                // Every record of a boot with a stated sync has a time, at
                // least as tight as that sync plus drift.
                for a in h.anchors.iter().filter(|a| a.boot_id == r.boot_id) {
                    let bound = a.uncertainty_ms as i64 + p.drift(r.uptime_ms.abs_diff(a.uptime_ms));
                    let unc = e.uncertainty_ms;
                    prop_assert!(unc.is_some(), "synced record without time");
                    prop_assert!(unc.unwrap_or(u64::MAX) as i64 <= bound);
                }
            }
        }

        #[test]
        fn any_record_after_a_synced_boot_is_bounded(
            boots in proptest::collection::vec(sim_boot(), 1..6),
        ) {
            let p = Params::default();
            let (h, _) = simulate(&boots, &p, 0);
            let est = reconstruct(&h, &p);
            let first_synced = h.records.iter().position(|r| {
                r.wall_ms.is_some() || h.anchors.iter().any(|a| a.boot_id == r.boot_id)
            });
            if let Some(first) = first_synced {
                let boot = h.records[first].boot_id;
                for (r, e) in h.records.iter().zip(&est).skip(first) {
                    if r.boot_id != boot {
                        prop_assert!(e.ts_ms.is_some());
                    }
                }
            }
        }
    }
}
