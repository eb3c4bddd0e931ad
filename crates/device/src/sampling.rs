//! The sample ring between a timer interrupt and the metering task, with
//! gap fill for missed timer ticks.
//!
//! On the chip a hardware timer interrupts at the sample rate; the handler
//! reads one sample set (one value per channel) and calls
//! [`SampleRing::on_tick`] with the time since its previous run. The metering
//! task drains the ring ([`SampleRing::drain`]) in the thread context and
//! feeds [`crate::Device::push_samples`].
//!
//! Gaps: while SPI flash is erased or programmed, interrupts are masked, so
//! ticks are missed. The metering engine's time base is the sample count, so
//! for every missed tick the ring repeats the set taken one mains cycle
//! earlier (`cycle_sets` back): the stream keeps its exact length and the
//! energy of the gap is estimated from the cycle before it. A fill is bounded
//! to one ring; a longer outage is a real gap (time runs short by it).
//!
//! Pure logic, no IO and no interrupts: the board wraps it in its own
//! critical section. Host-tested below.

/// Ticks missed between two runs of the timer handler that are `elapsed_us`
/// apart, with a timer period of `period_us`: `elapsed / period − 1`,
/// rounded to the nearest tick (a late interrupt is not a missed one).
pub fn missed_ticks(elapsed_us: u64, period_us: u64) -> u64 {
    if period_us == 0 {
        return 0;
    }
    (elapsed_us.saturating_add(period_us / 2) / period_us).saturating_sub(1)
}

/// Sampling counters since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Timer ticks handled ([`SampleRing::on_tick`] calls).
    pub ticks: u32,
    /// Sets synthesised for ticks missed while interrupts were masked.
    pub filled: u32,
    /// Sets lost because the consumer fell a whole ring behind.
    pub overruns: u32,
    /// Sets waiting in the ring.
    pub pending: u32,
}

/// A fixed-size ring of `N` sample sets of `CH` channels (12-bit ADC
/// counts), written by the timer handler and drained by the metering task.
///
/// `N` must be a power of two (the indices are free-running `u32` counters
/// that wrap).
pub struct SampleRing<const CH: usize, const N: usize> {
    buf: [[u16; CH]; N],
    /// Sets ever written (wrapping).
    head: u32,
    /// Sets ever read (wrapping).
    tail: u32,
    /// Sets written so far, saturating at `N` (how far back history exists).
    valid: u32,
    /// Sets per mains cycle: the distance of the gap filler's copy.
    cycle_sets: u32,
    /// Timer period in microseconds.
    period_us: u64,
    stats: Stats,
}

impl<const CH: usize, const N: usize> SampleRing<CH, N> {
    /// An empty ring for a timer with period `period_us` and `cycle_sets`
    /// sets per mains cycle (48 at 2400 Hz and 50 Hz).
    pub const fn new(period_us: u64, cycle_sets: u32) -> Self {
        const { assert!(N.is_power_of_two() && N <= (1 << 31) && CH > 0) };
        Self {
            buf: [[0; CH]; N],
            head: 0,
            tail: 0,
            valid: 0,
            cycle_sets,
            period_us,
            stats: Stats {
                ticks: 0,
                filled: 0,
                overruns: 0,
                pending: 0,
            },
        }
    }

    /// One timer tick: `set` was just read; `elapsed_us` is the time since
    /// the previous tick (`None` on the first). Missed ticks are filled
    /// first (each with the set one mains cycle before it), then `set` is
    /// appended. Returns the number of sets filled.
    pub fn on_tick(&mut self, elapsed_us: Option<u64>, set: [u16; CH]) -> u32 {
        self.stats.ticks = self.stats.ticks.wrapping_add(1);
        let missed = elapsed_us.map_or(0, |us| missed_ticks(us, self.period_us));
        // Bound the fill to one ring: a longer outage is a real gap.
        let fill = missed.min(N as u64 - 1) as u32;
        for _ in 0..fill {
            let copy = self.earlier(self.cycle_sets);
            self.push(copy);
        }
        self.stats.filled = self.stats.filled.wrapping_add(fill);
        self.push(set);
        fill
    }

    /// Appends one set; if the consumer is a whole ring behind, the oldest
    /// unread set is dropped (counted as an overrun).
    pub fn push(&mut self, set: [u16; CH]) {
        if self.head.wrapping_sub(self.tail) as usize >= N {
            self.tail = self.tail.wrapping_add(1);
            self.stats.overruns = self.stats.overruns.wrapping_add(1);
        }
        self.buf[self.head as usize % N] = set;
        self.head = self.head.wrapping_add(1);
        self.valid = self.valid.saturating_add(1).min(N as u32);
    }

    /// The set `back` sets before the next one to be written (`back` = 1 is
    /// the newest), or zeros if that far back was never written.
    pub fn earlier(&self, back: u32) -> [u16; CH] {
        if back == 0 || back > self.valid {
            return [0; CH];
        }
        self.buf[self.head.wrapping_sub(back) as usize % N]
    }

    /// Moves up to `out.len() / CH` whole sets into `out` (interleaved) and
    /// returns the number of `u16` values written.
    pub fn drain(&mut self, out: &mut [u16]) -> usize {
        let mut n = 0;
        while self.tail != self.head && n + CH <= out.len() {
            out[n..n + CH].copy_from_slice(&self.buf[self.tail as usize % N]);
            self.tail = self.tail.wrapping_add(1);
            n += CH;
        }
        n
    }

    /// Counters since boot.
    pub fn stats(&self) -> Stats {
        Stats {
            pending: self.head.wrapping_sub(self.tail),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const P: u64 = 417; // 2400 Hz

    fn drain_all<const CH: usize, const N: usize>(r: &mut SampleRing<CH, N>) -> Vec<u16> {
        let mut out = std::vec![0u16; N * CH];
        let n = r.drain(&mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn missed_ticks_rounds_to_the_nearest_tick() {
        assert_eq!(missed_ticks(P, P), 0);
        assert_eq!(missed_ticks(P + P / 2 - 1, P), 0, "late, not missed");
        assert_eq!(missed_ticks(P + P / 2 + 1, P), 1);
        assert_eq!(missed_ticks(10 * P, P), 9);
        assert_eq!(missed_ticks(0, P), 0);
        assert_eq!(missed_ticks(u64::MAX, P), u64::MAX / P - 1);
        assert_eq!(missed_ticks(1000, 0), 0);
    }

    #[test]
    fn in_order_without_gaps() {
        let mut r = SampleRing::<2, 8>::new(P, 4);
        for i in 0..5u16 {
            assert_eq!(r.on_tick(Some(P), [i, 100 + i]), 0);
        }
        assert_eq!(r.stats().pending, 5);
        assert_eq!(drain_all(&mut r), [0, 100, 1, 101, 2, 102, 3, 103, 4, 104]);
        assert_eq!(
            r.stats(),
            Stats {
                ticks: 5,
                filled: 0,
                overruns: 0,
                pending: 0
            }
        );
    }

    #[test]
    fn gap_is_filled_from_one_cycle_earlier() {
        // 4 sets per cycle: a sawtooth 0,1,2,3,0,1,2,3...
        let mut r = SampleRing::<1, 64>::new(P, 4);
        r.on_tick(None, [0]);
        for i in 1..8u16 {
            r.on_tick(Some(P), [i % 4]);
        }
        // Interrupts masked for 3 periods: ticks 8, 9, 10 missed, tick 11 read.
        assert_eq!(r.on_tick(Some(4 * P), [11 % 4]), 3);
        let got = drain_all(&mut r);
        let want: Vec<u16> = (0..12).map(|i| i % 4).collect();
        assert_eq!(got, want, "the filled sets continue the waveform");
        assert_eq!(r.stats().filled, 3);
        assert_eq!(r.stats().ticks, 9);
    }

    #[test]
    fn fill_before_a_cycle_of_history_uses_zeros() {
        let mut r = SampleRing::<1, 16>::new(P, 4);
        r.on_tick(None, [7]);
        r.on_tick(Some(3 * P), [8]);
        // Two filled: one cycle (4 sets) before each does not exist yet.
        assert_eq!(drain_all(&mut r), [7, 0, 0, 8]);
    }

    #[test]
    fn fill_is_bounded_to_one_ring() {
        let mut r = SampleRing::<1, 16>::new(P, 4);
        r.on_tick(None, [1]);
        assert_eq!(r.on_tick(Some(1000 * P), [2]), 15);
        let s = r.stats();
        assert_eq!((s.filled, s.pending), (15, 16));
        // 1 + 15 + 1 = 17 sets into 16 slots: the oldest was dropped.
        assert_eq!(s.overruns, 1);
        let got = drain_all(&mut r);
        assert_eq!(got.len(), 16);
        assert_eq!(*got.last().unwrap(), 2);
    }

    #[test]
    fn overrun_drops_the_oldest_and_counts() {
        let mut r = SampleRing::<1, 4>::new(P, 2);
        for i in 0..7u16 {
            r.push([i]);
        }
        assert_eq!(r.stats().overruns, 3);
        assert_eq!(drain_all(&mut r), [3, 4, 5, 6]);
    }

    #[test]
    fn drain_takes_whole_sets_only() {
        let mut r = SampleRing::<3, 8>::new(P, 2);
        r.push([1, 2, 3]);
        r.push([4, 5, 6]);
        let mut out = [0u16; 5];
        assert_eq!(r.drain(&mut out), 3);
        assert_eq!(out[..3], [1, 2, 3]);
        assert_eq!(r.stats().pending, 1);
        assert_eq!(r.drain(&mut out), 3);
        assert_eq!(out[..3], [4, 5, 6]);
        assert_eq!(r.drain(&mut out), 0);
    }

    #[test]
    fn counters_wrap_without_losing_order() {
        let mut r = SampleRing::<1, 8>::new(P, 2);
        r.head = u32::MAX - 2;
        r.tail = u32::MAX - 2;
        for i in 0..6u16 {
            r.on_tick(Some(P), [i]);
        }
        assert_eq!(r.stats().pending, 6);
        assert_eq!(drain_all(&mut r), [0, 1, 2, 3, 4, 5]);
        // Gap fill across the wrap reads the right history.
        r.on_tick(Some(2 * P), [9]);
        assert_eq!(drain_all(&mut r), [4, 9]);
    }
}
