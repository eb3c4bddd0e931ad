//! CSV and JSON export of stored records, one row per record and CT.
//!
//! Columns (exactly, in this order): [`COLUMNS`]. Units: `ts_ms` unix ms,
//! `ts_uncertainty_ms` ms (the true time is within `ts_ms ±` this; both empty
//! or `null` when the time could not be bounded), `v_rms` V, `i_rms` A,
//! `real_power_w` W, `apparent_power_va` VA, `power_factor` −1..1,
//! `import_wh`/`export_wh` cumulative Wh. `channel` is the CT number (1..=3).

use std::io::Write;

use crate::Error;
use crate::db::{Db, ExportFilter, ExportRow};

/// The export columns, in order.
pub const COLUMNS: [&str; 12] = [
    "device_id",
    "seq",
    "ts_ms",
    "ts_uncertainty_ms",
    "channel",
    "v_rms",
    "i_rms",
    "real_power_w",
    "apparent_power_va",
    "power_factor",
    "import_wh",
    "export_wh",
];

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON array of objects keyed by [`COLUMNS`].
    Json,
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn csv_line(r: &ExportRow) -> String {
    // device ids are hex digits: no quoting needed.
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{}\n",
        r.device_id,
        r.seq,
        opt(r.ts_ms),
        opt(r.ts_uncertainty_ms),
        r.channel,
        opt(r.v_rms),
        r.i_rms,
        r.real_power_w,
        r.apparent_power_va,
        r.power_factor,
        r.import_wh,
        r.export_wh
    )
}

/// Writes the selected rows to `out`; returns the number of rows.
pub fn export(
    db: &Db,
    filter: &ExportFilter,
    format: Format,
    out: &mut dyn Write,
) -> Result<usize, Error> {
    match format {
        Format::Csv => {
            writeln!(out, "{}", COLUMNS.join(","))?;
            let n = db.export(filter, |r| Ok(out.write_all(csv_line(&r).as_bytes())?))?;
            out.flush()?;
            Ok(n)
        }
        Format::Json => {
            out.write_all(b"[")?;
            let mut first = true;
            let n = db.export(filter, |r| {
                if !first {
                    out.write_all(b",")?;
                }
                first = false;
                out.write_all(b"\n")?;
                serde_json::to_writer(&mut *out, &r).map_err(|e| Error::Io(e.into()))?;
                Ok(())
            })?;
            out.write_all(b"\n]\n")?;
            out.flush()?;
            Ok(n)
        }
    }
}
