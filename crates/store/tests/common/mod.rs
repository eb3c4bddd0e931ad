//! Shared helpers for the store's integration tests.
#![allow(dead_code)]

use store::emulated::{EmulatedFlash, Rng};
use store::{Circuit, Config, Record, Voltage};

/// Region config of `sectors` 4 KiB sectors (2 for state).
pub fn cfg(sectors: u32) -> Config {
    Config {
        offset: 0,
        size: sectors * 4096,
        state_sectors: 2,
    }
}

/// Deterministic, plausible 1 V + 3 CT intervals with cumulative registers.
pub struct Gen {
    rng: Rng,
    pub boot: u32,
    pub uptime: u64,
    pub wall: Option<u64>,
    import: [u64; 3],
    export: [u64; 3],
    power: [i32; 3],
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen {
            rng: Rng::new(seed),
            boot: 1,
            uptime: 0,
            wall: Some(1_700_000_000_000),
            import: [1_000_000, 0, 5],
            export: [0, 0, 3_000_000],
            power: [3000, 0, -1500],
        }
    }

    pub fn reboot(&mut self) {
        self.boot += 1;
        self.uptime = 0;
        self.wall = None;
    }

    pub fn interval(&mut self) -> Record {
        let dur = if self.rng.below(50) == 0 {
            1 + self.rng.below(60_000) as u32
        } else {
            60_000
        };
        self.uptime += u64::from(dur);
        if let Some(w) = self.wall.as_mut() {
            *w += u64::from(dur);
        }
        let mut r = Record {
            boot_id: self.boot,
            uptime_ms: self.uptime,
            wall_ms: self.wall,
            duration_ms: dur,
            frequency_mhz: 49_980 + self.rng.below(40) as u32,
            voltage_count: 1,
            circuit_count: 3,
            ..Record::default()
        };
        if dur != 60_000 {
            r.flags.0 |= store::Flags::PARTIAL;
        }
        let v = 22_800 + self.rng.below(400) as u32;
        r.voltages[0] = Voltage {
            rms_cv: v,
            min_cv: v - self.rng.below(300) as u32,
            max_cv: v + self.rng.below(300) as u32,
        };
        for c in 0..3 {
            if self.rng.below(10) == 0 {
                self.power[c] += self.rng.below(4001) as i32 - 2000;
            }
            let p = self.power[c] + self.rng.below(50) as i32 - 25;
            let e = i64::from(p) * i64::from(dur) / 36_000;
            if e >= 0 {
                self.import[c] += e as u64;
            } else {
                self.export[c] += (-e) as u64;
            }
            let s = p.unsigned_abs() + self.rng.below(100) as u32;
            r.circuits[c] = Circuit {
                i_rms_ma: s * 10_000 / v.max(1),
                real_power_dw: p,
                real_power_min_dw: p - self.rng.below(500) as i32,
                real_power_max_dw: p + self.rng.below(500) as i32,
                apparent_power_dva: s,
                power_factor_milli: if s > 0 {
                    (i64::from(p) * 1000 / i64::from(s)) as i16
                } else {
                    0
                },
                import_mwh: self.import[c],
                export_mwh: self.export[c],
            };
        }
        r
    }
}

pub fn blank(sectors: u32) -> EmulatedFlash {
    EmulatedFlash::new(sectors as usize * 4096)
}
