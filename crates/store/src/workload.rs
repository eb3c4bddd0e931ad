//! A benchmark workload (feature `emulated`): a deterministic household,
//! 1 V + 3 CT, simulated per second and aggregated per minute like the
//! meter does, so the record codec sees realistic residuals rather than
//! constant values. Used by `store-bench` and `collect-bench`.

use crate::emulated::Rng;
use crate::{Circuit, Record, Voltage};

/// Deterministic household: CT1 whole house (fridge, lights, cooking, TV,
/// random appliances), CT2 a water heater (two cycles a day), CT3 a PV
/// inverter (exporting in daylight, clouds); one voltage. Simulated per
/// second, aggregated per minute like the meter does.
pub struct Household {
    rng: Rng,
    second: u64,
    v_walk: f64,
    f_walk: f64,
    cloud: f64,
    event: (u32, f64),
    energy_dws: [i64; 3],
    import: [u64; 3],
    export: [u64; 3],
}

impl Household {
    /// A household seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Household {
            rng: Rng::new(seed),
            second: 0,
            v_walk: 0.0,
            f_walk: 0.0,
            cloud: 0.8,
            event: (0, 0.0),
            energy_dws: [0; 3],
            import: [0; 3],
            export: [0; 3],
        }
    }

    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True power (W) and power factor of the three circuits at second `s`.
    fn loads(&mut self, s: u64) -> [(f64, f64); 3] {
        let day_s = s % 86_400;
        let h = day_s as f64 / 3600.0;
        let m = day_s / 60;
        // CT1
        let mut p1 = 85.0;
        if (s / 60) % 40 < 12 {
            p1 += 110.0; // fridge compressor
        }
        if (18.0..23.0).contains(&h) {
            p1 += 150.0 + 120.0; // lights + TV
        } else if (6.5..8.0).contains(&h) {
            p1 += 80.0;
        }
        if (420..423).contains(&m) {
            p1 += 2000.0; // kettle
        }
        if (720..750).contains(&m) && (s / 90).is_multiple_of(2) {
            p1 += 1800.0; // oven thermostat
        }
        if (1110..1155).contains(&m) && !(s / 40).is_multiple_of(3) {
            p1 += 1500.0; // hob
        }
        if day_s.is_multiple_of(60) {
            if self.event.0 == 0 && self.rng.below(100) == 0 {
                self.event = (
                    1 + self.rng.below(10) as u32,
                    500.0 + 1500.0 * self.uniform(),
                );
            } else if self.event.0 > 0 {
                self.event.0 -= 1;
            }
        }
        if self.event.0 > 0 {
            p1 += self.event.1;
        }
        // CT2: water heater
        let p2 = if (300..345).contains(&m) || (1260..1290).contains(&m) {
            2500.0
        } else {
            0.0
        };
        // CT3: PV
        if day_s.is_multiple_of(60) {
            self.cloud = (self.cloud + (self.uniform() - 0.5) * 0.1).clamp(0.3, 1.0);
        }
        let p3 = if (6.0..20.0).contains(&h) {
            -3500.0 * (std::f64::consts::PI * (h - 6.0) / 14.0).sin() * self.cloud
        } else {
            0.0
        };
        [(p1, 0.9), (p2, 0.99), (p3, 0.98)]
    }

    /// The next 1-minute interval (seq, boot and uptime are the store's business).
    pub fn interval(&mut self) -> Record {
        let mut p_sum = [0i64; 3];
        let mut p_min = [i32::MAX; 3];
        let mut p_max = [i32::MIN; 3];
        let mut s_sum = [0i64; 3];
        let (mut v_sum, mut v_min, mut v_max, mut f_sum) = (0u64, u32::MAX, 0u32, 0u64);
        for _ in 0..60 {
            let s = self.second;
            self.second += 1;
            let day = (s % 86_400) as f64 / 86_400.0;
            self.v_walk = (self.v_walk + (self.uniform() - 0.5) * 8.0) * 0.995;
            let v = 23_000.0 + 250.0 * (2.0 * std::f64::consts::PI * day).sin() + self.v_walk;
            let v_cv = v as u32;
            v_sum += u64::from(v_cv);
            v_min = v_min.min(v_cv);
            v_max = v_max.max(v_cv);
            self.f_walk = (self.f_walk + (self.uniform() - 0.5) * 4.0) * 0.99;
            f_sum += (50_000.0 + self.f_walk) as u64;
            let loads = self.loads(s);
            for (c, (p, pf)) in loads.into_iter().enumerate() {
                // meter noise; below the 2 W noise gate a channel reads 0
                let meas = if p.abs() < 2.0 {
                    0.0
                } else {
                    p * (1.0 + (self.uniform() - 0.5) * 0.006) + (self.uniform() - 0.5) * 1.0
                };
                let dw = (meas * 10.0).round() as i32;
                p_sum[c] += i64::from(dw);
                p_min[c] = p_min[c].min(dw);
                p_max[c] = p_max[c].max(dw);
                s_sum[c] += (f64::from(dw.abs()) / pf).round() as i64;
                self.energy_dws[c] += i64::from(dw);
            }
        }
        let v_rms = (v_sum / 60) as u32;
        let mut r = Record {
            duration_ms: 60_000,
            frequency_mhz: (f_sum / 60) as u32,
            voltage_count: 1,
            circuit_count: 3,
            ..Record::default()
        };
        r.voltages[0] = Voltage {
            rms_cv: v_rms,
            min_cv: v_min,
            max_cv: v_max,
        };
        for c in 0..3 {
            // exact registers: 1 mWh = 36 dW·s
            let e = self.energy_dws[c];
            if e >= 0 {
                self.import[c] = self.import[c].max((e / 36) as u64);
            } else {
                self.export[c] = self.export[c].max((-e / 36) as u64);
            }
            let p = (p_sum[c] / 60) as i32;
            let s = (s_sum[c] / 60) as u32;
            r.circuits[c] = Circuit {
                i_rms_ma: (u64::from(s) * 10_000 / u64::from(v_rms.max(1))) as u32,
                real_power_dw: p,
                real_power_min_dw: p_min[c],
                real_power_max_dw: p_max[c],
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
