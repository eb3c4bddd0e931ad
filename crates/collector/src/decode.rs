//! Sans-IO validation of a `GET /api/v1/records` binary body.
//!
//! The body is the store's own entries (see `store::record`): each checked
//! against its CRC and decoded with the store's codec. On top of the codec,
//! [`RecordStream`] insists on a strictly increasing seq across every entry
//! (including the leading entries of the first block, which carry
//! `seq <= after` and are skipped) and refuses a body that ends mid-entry.
//! Any failure rejects the whole body: the caller stores nothing of it.

use store::Record;
use store::record::{CodecState, ENTRY_HEADER, check_payload, entry_size, parse_header};

/// Why a records body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// An entry header is invalid (garbage or not the store's encoding).
    #[error("byte {offset}: invalid entry header (not OFMon record data)")]
    BadHeader {
        /// Offset of the entry in the body.
        offset: u64,
    },
    /// An entry does not match its CRC.
    #[error("byte {offset}: entry CRC mismatch (corrupted in flash or in transit)")]
    BadCrc {
        /// Offset of the entry in the body.
        offset: u64,
    },
    /// The payload could not be decoded.
    #[error("byte {offset}: {reason}")]
    Malformed {
        /// Offset of the entry in the body.
        offset: u64,
        /// Decoder's reason.
        reason: String,
    },
    /// A seq did not increase.
    #[error("seq went backwards: {seq} after {prev}")]
    SeqBackwards {
        /// The offending seq.
        seq: u64,
        /// The seq before it.
        prev: u64,
    },
    /// The body ended inside an entry.
    #[error("truncated: body ends {pending} bytes into an entry")]
    Truncated {
        /// Bytes of the incomplete entry.
        pending: usize,
    },
}

/// Incremental decoder of one records body.
pub struct RecordStream {
    state: CodecState,
    after: u64,
    prev: Option<u64>,
    buf: Vec<u8>,
    offset: u64,
    records: Vec<Record>,
    failed: Option<StreamError>,
}

impl RecordStream {
    /// Expects records with `seq > after`.
    pub fn new(after: u64) -> Self {
        Self {
            state: CodecState::default(),
            after,
            prev: None,
            buf: Vec::new(),
            offset: 0,
            records: Vec::new(),
            failed: None,
        }
    }

    /// Feeds the next bytes of the body. After an error, further input is
    /// ignored and the same error is returned.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let res = loop {
            let rest = &self.buf[pos..];
            let Some(word) = rest.get(..ENTRY_HEADER) else {
                break Ok(());
            };
            let offset = self.offset + pos as u64;
            let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            let Some(len) = parse_header(word) else {
                break Err(StreamError::BadHeader { offset });
            };
            let size = entry_size(len);
            if rest.len() < size {
                break Ok(());
            }
            let payload = &rest[ENTRY_HEADER..ENTRY_HEADER + len];
            if !check_payload(word, payload) {
                break Err(StreamError::BadCrc { offset });
            }
            let rec = match self.state.decode_payload(payload) {
                Ok(r) => r,
                Err(e) => {
                    break Err(StreamError::Malformed {
                        offset,
                        reason: e.to_string(),
                    });
                }
            };
            if let Some(prev) = self.prev
                && rec.seq <= prev
            {
                break Err(StreamError::SeqBackwards { seq: rec.seq, prev });
            }
            self.prev = Some(rec.seq);
            if rec.seq > self.after {
                self.records.push(rec);
            }
            pos += size;
        };
        self.buf.drain(..pos);
        self.offset += pos as u64;
        if let Err(e) = &res {
            self.failed = Some(e.clone());
        }
        res
    }

    /// Ends the body: every record decoded, or why the body is refused.
    pub fn finish(self) -> Result<Vec<Record>, StreamError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.buf.is_empty() {
            return Err(StreamError::Truncated {
                pending: self.buf.len(),
            });
        }
        Ok(self.records)
    }

    /// Records decoded so far.
    pub fn decoded(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use store::record::{Encoder, MAX_ENTRY};

    fn rec(seq: u64) -> Record {
        let mut r = Record {
            seq,
            boot_id: 1,
            uptime_ms: seq * 1000,
            duration_ms: 1000,
            frequency_mhz: 50_000,
            voltage_count: 1,
            circuit_count: 1,
            ..Record::default()
        };
        r.voltages[0].rms_cv = 23_000;
        r.circuits[0].i_rms_ma = 100 + seq as u32;
        r
    }

    pub(crate) fn encode(seqs: impl IntoIterator<Item = u64>) -> Vec<u8> {
        let mut enc = Encoder::new();
        let mut buf = [0u8; MAX_ENTRY];
        let mut out = Vec::new();
        for s in seqs {
            let n = enc.encode(&rec(s), false, &mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn decodes_in_any_chunking_and_skips_leading_context() {
        let body = encode(1..=50);
        for chunk in [1, 3, 7, 64, 4096] {
            let mut s = RecordStream::new(10);
            for c in body.chunks(chunk) {
                s.feed(c).unwrap();
            }
            let recs = s.finish().unwrap();
            assert_eq!(recs.len(), 40);
            assert_eq!(recs[0], rec(11));
            assert_eq!(recs[39], rec(50));
        }
    }

    #[test]
    fn truncated_garbage_crc_and_backwards_are_refused() {
        let body = encode(1..=5);
        let mut s = RecordStream::new(0);
        s.feed(&body[..body.len() - 2]).unwrap();
        assert!(matches!(s.finish(), Err(StreamError::Truncated { .. })));

        let mut s = RecordStream::new(0);
        assert!(matches!(
            s.feed(b"<html>oops</html>"),
            Err(StreamError::BadHeader { offset: 0 })
        ));

        let mut bad = body.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x40;
        let mut s = RecordStream::new(0);
        let e = s.feed(&bad).unwrap_err();
        assert!(
            matches!(
                e,
                StreamError::BadCrc { .. } | StreamError::BadHeader { .. }
            ),
            "{e}"
        );
        assert!(s.finish().is_err());

        let back = encode([1, 2, 3, 2, 4]);
        let mut s = RecordStream::new(0);
        assert_eq!(
            s.feed(&back),
            Err(StreamError::SeqBackwards { seq: 2, prev: 3 })
        );
    }

    proptest! {
        #[test]
        fn any_corruption_is_refused_or_decodes_to_what_was_sent(
            n in 1u64..30, flips in proptest::collection::vec((any::<usize>(), 0u8..8), 1..4)
        ) {
            let body = encode(1..=n);
            let mut bad = body.clone();
            for (at, bit) in flips {
                let at = at % bad.len();
                bad[at] ^= 1 << bit;
            }
            let mut s = RecordStream::new(0);
            let res = s.feed(&bad).and_then(|()| s.finish());
            if let Ok(recs) = res {
                // Whatever is accepted must be exactly the original records
                // (flips cancelled out) — never garbage.
                let want: Vec<_> = (1..=n).map(rec).collect();
                prop_assert_eq!(recs, want);
            }
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut s = RecordStream::new(0);
            let _ = s.feed(&data);
            let _ = s.finish();
        }
    }
}
