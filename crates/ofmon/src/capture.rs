//! Reading recorded ADC captures: CSV with a header row naming the channels
//! (`v` or `v1,v2,v3`, then `i1`..`i3`), one row per sample instant, raw
//! 12-bit counts. Streaming: a capture of hours never sits in memory.

use std::fmt;
use std::io::BufRead;

/// Which physical channel a CSV column carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Voltage of phase 1..=3 (`v` is phase 1 on a single-voltage capture).
    V(u8),
    /// Current transformer 1..=3.
    I(u8),
}

impl Channel {
    fn parse(name: &str) -> Option<Channel> {
        match name.to_ascii_lowercase().as_str() {
            "v" | "v1" => Some(Channel::V(1)),
            "v2" => Some(Channel::V(2)),
            "v3" => Some(Channel::V(3)),
            "i1" => Some(Channel::I(1)),
            "i2" => Some(Channel::I(2)),
            "i3" => Some(Channel::I(3)),
            _ => None,
        }
    }
}

/// What went wrong reading a capture; every variant names where.
#[derive(Debug)]
pub enum CaptureError {
    Io(std::io::Error),
    Empty,
    MissingHeader {
        first: String,
    },
    BadHeader(String),
    NoSamples,
    Ragged {
        row: u64,
        expected: usize,
        found: usize,
    },
    NotNumber {
        row: u64,
        column: String,
        value: String,
    },
    OutOfRange {
        row: u64,
        column: String,
        value: i64,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Io(e) => write!(f, "could not read the capture: {e}"),
            CaptureError::Empty => write!(
                f,
                "the capture is empty: expected a header row such as `v,i1` followed by one row of ADC counts per sample"
            ),
            CaptureError::MissingHeader { first } => write!(
                f,
                "row 1: missing header (found `{first}`); the first row must name the channels, e.g. `v,i1,i2`"
            ),
            CaptureError::BadHeader(why) => write!(f, "row 1: bad header: {why}"),
            CaptureError::NoSamples => write!(f, "the capture has a header but no sample rows"),
            CaptureError::Ragged {
                row,
                expected,
                found,
            } => write!(
                f,
                "row {row}: expected {expected} values (one per header column), found {found}"
            ),
            CaptureError::NotNumber { row, column, value } => write!(
                f,
                "row {row}, column {column}: `{value}` is not a whole number of ADC counts"
            ),
            CaptureError::OutOfRange { row, column, value } => write!(
                f,
                "row {row}, column {column}: {value} is outside the 12-bit ADC range 0..4095"
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

/// A capture being read row by row. Sample sets come out in the metering
/// engine's channel order: voltages first (v1..), then currents (i1..).
pub struct Capture<R> {
    reader: R,
    names: Vec<String>,
    /// For each CSV column, its index in the output sample set.
    slot: Vec<usize>,
    pub voltages: u8,
    pub currents: u8,
    row: u64,
    line: String,
}

impl<R: BufRead> Capture<R> {
    /// Reads and checks the header row.
    pub fn open(mut reader: R) -> Result<Self, CaptureError> {
        let mut line = String::new();
        let mut row = 0u64;
        // Skip leading blank lines, but count them so row numbers match an editor.
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(CaptureError::Io)? == 0 {
                return Err(CaptureError::Empty);
            }
            row += 1;
            if !line.trim().is_empty() {
                break;
            }
        }
        let header = line.trim_start_matches('\u{feff}').trim();
        let names: Vec<String> = header.split(',').map(|c| c.trim().to_string()).collect();
        if names.iter().all(|n| n.parse::<f64>().is_ok()) {
            return Err(CaptureError::MissingHeader {
                first: header.chars().take(40).collect(),
            });
        }
        let mut channels = Vec::with_capacity(names.len());
        for n in &names {
            let ch = Channel::parse(n).ok_or_else(|| {
                CaptureError::BadHeader(format!(
                    "unknown column `{n}`; columns must be `v` (or `v1`,`v2`,`v3`) and `i1`..`i3`"
                ))
            })?;
            if channels.contains(&ch) {
                return Err(CaptureError::BadHeader(format!(
                    "column `{n}` appears twice"
                )));
            }
            channels.push(ch);
        }
        let voltages = channels
            .iter()
            .filter(|c| matches!(c, Channel::V(_)))
            .count() as u8;
        let currents = channels
            .iter()
            .filter(|c| matches!(c, Channel::I(_)))
            .count() as u8;
        if voltages == 0 {
            return Err(CaptureError::BadHeader("no voltage column `v`".into()));
        }
        if voltages == 2 {
            return Err(CaptureError::BadHeader(
                "two voltage columns: use `v` for single phase or all of `v1,v2,v3`".into(),
            ));
        }
        if currents == 0 {
            return Err(CaptureError::BadHeader("no current column `i1`".into()));
        }
        for (k, want) in (1..=voltages).map(|k| (k, Channel::V(k))) {
            if !channels.contains(&want) {
                return Err(CaptureError::BadHeader(format!(
                    "voltage column v{k} is missing"
                )));
            }
        }
        for k in 1..=currents {
            if !channels.contains(&Channel::I(k)) {
                return Err(CaptureError::BadHeader(format!(
                    "current columns must be numbered from i1 without gaps; i{k} is missing"
                )));
            }
        }
        let slot = channels
            .iter()
            .map(|c| match *c {
                Channel::V(k) => usize::from(k - 1),
                Channel::I(k) => usize::from(voltages) + usize::from(k - 1),
            })
            .collect();
        Ok(Capture {
            reader,
            names,
            slot,
            voltages,
            currents,
            row,
            line,
        })
    }

    /// Number of channels per sample set.
    pub fn width(&self) -> usize {
        self.slot.len()
    }

    /// Reads the next sample set into `out` (length [`Self::width`]).
    /// Returns `Ok(false)` at the end of the file. Blank lines are skipped.
    pub fn next_set(&mut self, out: &mut [u16]) -> Result<bool, CaptureError> {
        loop {
            self.line.clear();
            if self
                .reader
                .read_line(&mut self.line)
                .map_err(CaptureError::Io)?
                == 0
            {
                return Ok(false);
            }
            self.row += 1;
            let text = self.line.trim();
            if text.is_empty() {
                continue;
            }
            let mut found = 0usize;
            for (col, cell) in text.split(',').enumerate() {
                found += 1;
                if col >= self.slot.len() {
                    continue;
                }
                let cell = cell.trim();
                let value: i64 = parse_count(cell).ok_or_else(|| CaptureError::NotNumber {
                    row: self.row,
                    column: self.names[col].clone(),
                    value: cell.chars().take(32).collect(),
                })?;
                if !(0..=4095).contains(&value) {
                    return Err(CaptureError::OutOfRange {
                        row: self.row,
                        column: self.names[col].clone(),
                        value,
                    });
                }
                out[self.slot[col]] = value as u16;
            }
            if found != self.slot.len() {
                return Err(CaptureError::Ragged {
                    row: self.row,
                    expected: self.slot.len(),
                    found,
                });
            }
            return Ok(true);
        }
    }
}

/// Parses a cell of ADC counts: a whole number, optionally written as `123.0`.
fn parse_count(cell: &str) -> Option<i64> {
    if let Ok(v) = cell.parse::<i64>() {
        return Some(v);
    }
    let f: f64 = cell.parse().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 1e12).then_some(f as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(text: &str) -> Result<Capture<&[u8]>, CaptureError> {
        Capture::open(text.as_bytes())
    }

    #[test]
    fn reorders_columns_into_engine_order() {
        let mut c = open("i2,v,i1\n1,2,3\n").unwrap();
        assert_eq!((c.voltages, c.currents), (1, 2));
        let mut set = [0u16; 3];
        assert!(c.next_set(&mut set).unwrap());
        assert_eq!(set, [2, 3, 1]);
        assert!(!c.next_set(&mut set).unwrap());
    }

    #[test]
    fn errors_name_row_and_column() {
        let mut c = open("v,i1\n1,2\n3,x\n").unwrap();
        let mut set = [0u16; 2];
        assert!(c.next_set(&mut set).unwrap());
        let e = c.next_set(&mut set).unwrap_err().to_string();
        assert!(e.contains("row 3") && e.contains("column i1"), "{e}");

        let mut c = open("v,i1\n1,5000\n").unwrap();
        let e = c.next_set(&mut set).unwrap_err().to_string();
        assert!(e.contains("row 2") && e.contains("5000"), "{e}");

        let mut c = open("v,i1\n1,-1\n").unwrap();
        assert!(matches!(
            c.next_set(&mut set),
            Err(CaptureError::OutOfRange { .. })
        ));

        let mut c = open("v,i1\n1,2,3\n").unwrap();
        assert!(matches!(
            c.next_set(&mut set),
            Err(CaptureError::Ragged { row: 2, .. })
        ));
        let mut c = open("v,i1\n1\n").unwrap();
        assert!(matches!(
            c.next_set(&mut set),
            Err(CaptureError::Ragged { row: 2, .. })
        ));
    }

    #[test]
    fn header_problems() {
        assert!(matches!(open(""), Err(CaptureError::Empty)));
        assert!(matches!(open("\n\n"), Err(CaptureError::Empty)));
        assert!(matches!(
            open("2048,2048\n"),
            Err(CaptureError::MissingHeader { .. })
        ));
        assert!(matches!(open("v,x\n"), Err(CaptureError::BadHeader(_))));
        assert!(matches!(open("v,i2\n"), Err(CaptureError::BadHeader(_))));
        assert!(matches!(open("v,v2,i1\n"), Err(CaptureError::BadHeader(_))));
        assert!(matches!(open("v,i1,i1\n"), Err(CaptureError::BadHeader(_))));
        assert!(matches!(open("i1\n"), Err(CaptureError::BadHeader(_))));
        let c = open("\u{feff}V1,V2,V3,I1,I2,I3\r\n").unwrap();
        assert_eq!((c.voltages, c.currents), (3, 3));
    }

    #[test]
    fn accepts_crlf_and_float_counts() {
        let mut c = open("v,i1\r\n2048.0,17\r\n").unwrap();
        let mut set = [0u16; 2];
        assert!(c.next_set(&mut set).unwrap());
        assert_eq!(set, [2048, 17]);
        let mut c = open("v,i1\n2048.5,17\n").unwrap();
        assert!(matches!(
            c.next_set(&mut set),
            Err(CaptureError::NotNumber { .. })
        ));
    }
}
