//! One collected interval as a ThingsBoard telemetry point.
//!
//! Keys (exactly): `v_rms`, `frequency`, and per CT n (1..=3) `i_rms_n`,
//! `real_power_n`, `apparent_power_n`, `power_factor_n`, `import_kwh_n`,
//! `export_kwh_n`; the original firmware's keys for CT 1 (`i_rms`,
//! `real_power`, `apparent_power`, `power_factor`, `kwh` = imported kWh;
//! `v_rms` is shared) so dashboards built for the original keep working;
//! `ts_uncertainty_ms` when it is not zero; `v_rms_2`, `v_rms_3` only for
//! meters with three voltage sensors. One point per record: the original sent
//! one point per CT with the same ts and keys, so the server kept only the
//! last CT.
//!
//! Numbers are written from the stored integers with a fixed number of
//! decimals (`230.15`, `0.000120`), never through binary floats, and always
//! with a decimal point, so ThingsBoard types every key as a double from the
//! first point on (it types `5` as a long and `5.5` as a double).

use std::io::Write;

/// One CT of a record, in the device's integer units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Circuit {
    /// CT number, 1..=3.
    pub ct: u8,
    /// RMS current, mA.
    pub i_rms_ma: i64,
    /// Mean real power, dW (negative when exporting).
    pub real_power_dw: i64,
    /// Apparent power, dVA.
    pub apparent_power_dva: i64,
    /// Power factor × 1000.
    pub power_factor_milli: i64,
    /// Cumulative imported energy, mWh.
    pub import_mwh: i64,
    /// Cumulative exported energy, mWh.
    pub export_mwh: i64,
}

/// One record (one interval of one device) ready to be sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// Record seq on the device.
    pub seq: u64,
    /// Reconstructed wall time, unix ms.
    pub ts_ms: i64,
    /// Bound on the error of `ts_ms`, ms.
    pub ts_uncertainty_ms: i64,
    /// Mains frequency, mHz.
    pub frequency_mhz: i64,
    /// RMS voltage per voltage sensor, cV.
    pub v_cv: [Option<i64>; 3],
    /// CTs, in CT order.
    pub circuits: Vec<Circuit>,
}

/// Every key a point can carry (CTs 1..=3, three voltage sensors,
/// `ts_uncertainty_ms`): what to name when deleting a point.
pub fn all_keys() -> Vec<String> {
    let mut k: Vec<String> = [
        "v_rms",
        "v_rms_2",
        "v_rms_3",
        "frequency",
        "i_rms",
        "real_power",
        "apparent_power",
        "power_factor",
        "kwh",
        "ts_uncertainty_ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for ct in 1..=3 {
        for name in [
            "i_rms",
            "real_power",
            "apparent_power",
            "power_factor",
            "import_kwh",
            "export_kwh",
        ] {
            k.push(format!("{name}_{ct}"));
        }
    }
    k
}

/// Writes `v / 10^decimals` as a decimal number with exactly `decimals`
/// fraction digits.
fn fixed(out: &mut Vec<u8>, v: i64, decimals: u32) {
    let p = 10u64.pow(decimals);
    let a = v.unsigned_abs();
    if v < 0 {
        out.push(b'-');
    }
    digits(out, a / p, 1);
    out.push(b'.');
    digits(out, a % p, decimals as usize);
}

/// Appends `n` in decimal, left-padded with zeros to at least `width` digits
/// (no `fmt` machinery: this runs 27 times per record).
fn digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while n > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = i.min(buf.len().saturating_sub(width.max(1)));
    out.extend_from_slice(&buf[start..]);
}

fn key(out: &mut Vec<u8>, first: &mut bool, name: &str, n: Option<u8>) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    if let Some(n) = n {
        out.push(b'_');
        let _ = write!(out, "{n}");
    }
    out.extend_from_slice(b"\":");
}

impl Reading {
    /// Appends `{"ts":…,"values":{…}}` to `out`.
    pub fn write_point(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "{{\"ts\":{},\"values\":{{", self.ts_ms);
        let mut first = true;
        if let Some(v) = self.v_cv[0] {
            key(out, &mut first, "v_rms", None);
            fixed(out, v, 2);
        }
        for (i, v) in self.v_cv.iter().enumerate().skip(1) {
            if let Some(v) = v {
                key(out, &mut first, "v_rms", Some(i as u8 + 1));
                fixed(out, *v, 2);
            }
        }
        key(out, &mut first, "frequency", None);
        fixed(out, self.frequency_mhz, 3);
        for c in &self.circuits {
            let n = Some(c.ct);
            key(out, &mut first, "i_rms", n);
            fixed(out, c.i_rms_ma, 3);
            key(out, &mut first, "real_power", n);
            fixed(out, c.real_power_dw, 1);
            key(out, &mut first, "apparent_power", n);
            fixed(out, c.apparent_power_dva, 1);
            key(out, &mut first, "power_factor", n);
            fixed(out, c.power_factor_milli, 3);
            key(out, &mut first, "import_kwh", n);
            fixed(out, c.import_mwh, 6);
            key(out, &mut first, "export_kwh", n);
            fixed(out, c.export_mwh, 6);
        }
        if let Some(c) = self.circuits.iter().find(|c| c.ct == 1) {
            key(out, &mut first, "i_rms", None);
            fixed(out, c.i_rms_ma, 3);
            key(out, &mut first, "real_power", None);
            fixed(out, c.real_power_dw, 1);
            key(out, &mut first, "apparent_power", None);
            fixed(out, c.apparent_power_dva, 1);
            key(out, &mut first, "power_factor", None);
            fixed(out, c.power_factor_milli, 3);
            key(out, &mut first, "kwh", None);
            fixed(out, c.import_mwh, 6);
        }
        if self.ts_uncertainty_ms != 0 {
            key(out, &mut first, "ts_uncertainty_ms", None);
            let _ = write!(out, "{}", self.ts_uncertainty_ms);
        }
        out.extend_from_slice(b"}}");
    }

    /// The point as JSON text.
    pub fn to_json(&self) -> String {
        let mut v = Vec::with_capacity(512);
        self.write_point(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }

    /// The expected (key, value) pairs of this point, as numbers (tests and
    /// read-back checks).
    pub fn expected_values(&self) -> Vec<(String, f64)> {
        let v: serde_json::Value = match serde_json::from_str(&self.to_json()) {
            Ok(v) => v,
            Err(_) => return Vec::new(),
        };
        v["values"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_decimals() {
        let mut o = Vec::new();
        fixed(&mut o, 23015, 2);
        o.push(b' ');
        fixed(&mut o, -5, 1);
        o.push(b' ');
        fixed(&mut o, 120, 6);
        o.push(b' ');
        fixed(&mut o, 0, 3);
        o.push(b' ');
        fixed(&mut o, i64::MIN, 6);
        o.push(b' ');
        fixed(&mut o, 1_234_567_890, 1);
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "230.15 -0.5 0.000120 0.000 -9223372036854.775808 123456789.0"
        );
    }

    #[test]
    fn one_point_with_all_keys() {
        let r = Reading {
            seq: 1,
            ts_ms: 1_700_000_000_000,
            ts_uncertainty_ms: 250,
            frequency_mhz: 50_012,
            v_cv: [Some(23_015), None, None],
            circuits: (1..=3)
                .map(|ct| Circuit {
                    ct,
                    i_rms_ma: 1000 * i64::from(ct),
                    real_power_dw: -2300,
                    apparent_power_dva: 2301,
                    power_factor_milli: -999,
                    import_mwh: 1_234_567,
                    export_mwh: 5,
                })
                .collect(),
        };
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["ts"], 1_700_000_000_000i64);
        let vals = v["values"].as_object().unwrap();
        assert_eq!(vals.len(), 2 + 3 * 6 + 5 + 1);
        assert_eq!(vals["v_rms"].as_f64(), Some(230.15));
        assert_eq!(vals["frequency"].as_f64(), Some(50.012));
        assert_eq!(vals["i_rms_2"].as_f64(), Some(2.0));
        assert!(vals["i_rms_2"].is_f64(), "always typed as a double");
        assert_eq!(vals["real_power_3"].as_f64(), Some(-230.0));
        assert_eq!(vals["power_factor_1"].as_f64(), Some(-0.999));
        assert_eq!(vals["import_kwh_1"].as_f64(), Some(1.234567));
        assert_eq!(vals["export_kwh_1"].as_f64(), Some(0.000005));
        assert_eq!(vals["i_rms"].as_f64(), Some(1.0));
        assert_eq!(vals["kwh"].as_f64(), Some(1.234567));
        assert_eq!(vals["ts_uncertainty_ms"], 250);
        let r0 = Reading {
            ts_uncertainty_ms: 0,
            ..r
        };
        assert!(!r0.to_json().contains("ts_uncertainty_ms"));
        let three = Reading {
            v_cv: [Some(1), Some(2), Some(3)],
            ts_uncertainty_ms: 7,
            ..r0.clone()
        };
        let all = all_keys();
        for reading in [&three, &r0] {
            for (key, _) in reading.expected_values() {
                assert!(all.contains(&key), "{key} missing from all_keys");
            }
        }
        assert_eq!(all.len(), 3 + 1 + 5 + 1 + 3 * 6);
    }
}
