//! The compressed history block: a run of one VM's samples in time order.
//!
//! A block is a fixed header followed by a bit stream:
//!
//! ```text
//! offset  size  content
//!      0     1  format, BLOCK_FORMAT
//!      1     2  field count, u16 little-endian
//!      3     4  sample count, u32 LE
//!      7     8  first timestamp in ms, u64 LE
//!     15     8  last timestamp in ms, u64 LE
//!     23     4  bit length of the stream, u32 LE
//!     27     …  bit stream, (bit length + 7) / 8 bytes
//! ```
//!
//! Per sample the stream contains the timestamp as a delta of deltas (absent for the first sample,
//! whose timestamp is in the header), the presence bitmap (one `0` bit when it equals the
//! previous sample's, else `1` and one bit per field), then each present value as
//! [`field`] codes it. Absent values take no bits, so `None` costs nothing and can never
//! decode as 0.
//!
//! The stream only ever grows at its end, so the open block of a VM is extended in place:
//! [`BlockEncoder::open_bytes`] appends the coding state after the block and
//! [`BlockEncoder::from_open_bytes`] resumes from it without decoding the samples.

mod field;

use crate::bits::{BitReader, BitWriter};
pub(crate) use field::CodecError;
use field::{FieldState, Fixed, XorWindow, scale_exactly, unzigzag, zigzag};

/// Format byte of blocks written by this version.
const BLOCK_FORMAT: u8 = 1;
const HEADER_LEN: usize = 27;

/// Largest accepted timestamp. Deltas between timestamps are then at most `i64::MAX`, so the
/// delta of deltas fits an `i64`.
pub(crate) const MAX_TIMESTAMP_MS: u64 = i64::MAX as u64;

/// One decoded sample: its timestamp and one value per field of its block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) timestamp_ms: u64,
    pub(crate) values: Vec<Option<f64>>,
}

/// The fixed part of a block, readable without decoding the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockHeader {
    pub(crate) field_count: u16,
    pub(crate) sample_count: u32,
    pub(crate) first_ms: u64,
    pub(crate) last_ms: u64,
    bit_len: u32,
}

impl BlockHeader {
    /// Splits `bytes` into the header, the stream and whatever follows the stream.
    pub(crate) fn parse(bytes: &[u8]) -> Result<(BlockHeader, &[u8], &[u8]), CodecError> {
        if bytes.len() < HEADER_LEN {
            return Err(CodecError::InvalidHeader("shorter than the header"));
        }
        if bytes[0] != BLOCK_FORMAT {
            return Err(CodecError::InvalidHeader("unknown block format"));
        }
        let header = BlockHeader {
            field_count: u16::from_le_bytes(bytes[1..3].try_into().expect("2 bytes")),
            sample_count: u32::from_le_bytes(bytes[3..7].try_into().expect("4 bytes")),
            first_ms: u64::from_le_bytes(bytes[7..15].try_into().expect("8 bytes")),
            last_ms: u64::from_le_bytes(bytes[15..23].try_into().expect("8 bytes")),
            bit_len: u32::from_le_bytes(bytes[23..27].try_into().expect("4 bytes")),
        };
        let stream_end = HEADER_LEN + (header.bit_len as usize).div_ceil(8);
        if bytes.len() < stream_end {
            return Err(CodecError::InvalidHeader("stream longer than the block"));
        }
        if header.sample_count == 0 || header.first_ms > header.last_ms {
            return Err(CodecError::InvalidHeader(
                "empty block or reversed time span",
            ));
        }
        Ok((header, &bytes[HEADER_LEN..stream_end], &bytes[stream_end..]))
    }
}

/// Builds a block sample by sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BlockEncoder {
    field_count: u16,
    sample_count: u32,
    first_ms: u64,
    last_ms: u64,
    previous_delta: u64,
    presence: Vec<bool>,
    fields: Vec<FieldState>,
    stream: BitWriter,
}

impl BlockEncoder {
    pub(crate) fn new(field_count: u16) -> Self {
        Self {
            field_count,
            sample_count: 0,
            first_ms: 0,
            last_ms: 0,
            previous_delta: 0,
            presence: vec![false; usize::from(field_count)],
            fields: vec![FieldState::default(); usize::from(field_count)],
            stream: BitWriter::default(),
        }
    }

    /// Encodes `samples`, which must be in strictly increasing time order.
    pub(crate) fn from_samples(field_count: u16, samples: &[Sample]) -> Self {
        let mut encoder = Self::new(field_count);
        for sample in samples {
            encoder.push(sample.timestamp_ms, &sample.values);
        }
        encoder
    }

    pub(crate) fn field_count(&self) -> u16 {
        self.field_count
    }

    pub(crate) fn sample_count(&self) -> u32 {
        self.sample_count
    }

    pub(crate) fn first_ms(&self) -> u64 {
        self.first_ms
    }

    pub(crate) fn last_ms(&self) -> u64 {
        self.last_ms
    }

    /// Appends one sample.
    ///
    /// The caller guarantees `values.len() == field_count`, `timestamp_ms <=`
    /// [`MAX_TIMESTAMP_MS`], and, unless the block is empty, `timestamp_ms > last_ms`: the
    /// delta coding has no way to express a repeated or earlier timestamp.
    pub(crate) fn push(&mut self, timestamp_ms: u64, values: &[Option<f64>]) {
        assert_eq!(values.len(), usize::from(self.field_count));
        assert!(timestamp_ms <= MAX_TIMESTAMP_MS);
        if self.sample_count == 0 {
            self.first_ms = timestamp_ms;
        } else {
            assert!(timestamp_ms > self.last_ms, "timestamps must increase");
            self.write_timestamp(timestamp_ms);
        }
        self.write_presence(values);
        for (state, value) in self.fields.iter_mut().zip(values) {
            if let Some(value) = value {
                state.encode(*value, &mut self.stream);
            }
        }
        self.last_ms = timestamp_ms;
        self.sample_count += 1;
    }

    fn write_timestamp(&mut self, timestamp_ms: u64) {
        let delta = timestamp_ms - self.last_ms;
        // Both deltas are at most MAX_TIMESTAMP_MS, so the difference fits an i64.
        let delta_of_delta = zigzag(delta as i64 - self.previous_delta as i64);
        write_delta_of_delta(delta_of_delta, &mut self.stream);
        self.previous_delta = delta;
    }

    fn write_presence(&mut self, values: &[Option<f64>]) {
        let unchanged = values
            .iter()
            .zip(&self.presence)
            .all(|(value, present)| value.is_some() == *present);
        self.stream.write_bit(!unchanged);
        if unchanged {
            return;
        }
        for (value, present) in values.iter().zip(self.presence.iter_mut()) {
            *present = value.is_some();
            self.stream.write_bit(*present);
        }
    }

    /// Returns the length of [`BlockEncoder::block_bytes`] without building it.
    pub(crate) fn block_len(&self) -> usize {
        HEADER_LEN + self.stream.bytes().len()
    }

    /// Returns the block as stored once sealed: header and stream.
    pub(crate) fn block_bytes(&self) -> Vec<u8> {
        let stream = self.stream.bytes();
        let bit_len = u32::try_from(self.stream.bit_len()).expect("a block stays below 512 MiB");
        let mut bytes = Vec::with_capacity(HEADER_LEN + stream.len());
        bytes.push(BLOCK_FORMAT);
        bytes.extend_from_slice(&self.field_count.to_le_bytes());
        bytes.extend_from_slice(&self.sample_count.to_le_bytes());
        bytes.extend_from_slice(&self.first_ms.to_le_bytes());
        bytes.extend_from_slice(&self.last_ms.to_le_bytes());
        bytes.extend_from_slice(&bit_len.to_le_bytes());
        bytes.extend_from_slice(stream);
        bytes
    }

    /// Returns the block followed by the coding state, so that appending can resume without decoding.
    ///
    /// State layout: previous timestamp delta (u64 LE), the presence bitmap of the last sample
    /// (one bit per field, LSB first), then per field a flags byte (1 = previous value,
    /// 2 = fixed-point form, 4 = XOR window) followed by the previous value's bits (u64 LE),
    /// the fixed-point divisor index, the delta mean (u64 LE) and the XOR window's leading and
    /// trailing counts, each only when present (the delta mean always).
    pub(crate) fn open_bytes(&self) -> Vec<u8> {
        let mut bytes = self.block_bytes();
        bytes.extend_from_slice(&self.previous_delta.to_le_bytes());
        let mut bitmap = vec![0u8; self.presence.len().div_ceil(8)];
        for (index, present) in self.presence.iter().enumerate() {
            bitmap[index / 8] |= u8::from(*present) << (index % 8);
        }
        bytes.extend_from_slice(&bitmap);
        for state in &self.fields {
            write_field_state(state, &mut bytes);
        }
        bytes
    }

    /// Resumes an encoder from [`BlockEncoder::open_bytes`].
    pub(crate) fn from_open_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let (header, stream, state) = BlockHeader::parse(bytes)?;
        let mut state = StateReader(state);
        let previous_delta = u64::from_le_bytes(state.take()?);
        let field_count = usize::from(header.field_count);
        let bitmap = state.take_slice(field_count.div_ceil(8))?;
        let presence = (0..field_count)
            .map(|index| bitmap[index / 8] & (1 << (index % 8)) != 0)
            .collect();
        let fields = (0..field_count)
            .map(|_| read_field_state(&mut state))
            .collect::<Result<_, _>>()?;
        if !state.0.is_empty() {
            return Err(CodecError::InvalidHeader(
                "trailing bytes after the coding state",
            ));
        }
        Ok(Self {
            field_count: header.field_count,
            sample_count: header.sample_count,
            first_ms: header.first_ms,
            last_ms: header.last_ms,
            previous_delta,
            presence,
            fields,
            stream: BitWriter::resume(stream.to_vec(), u64::from(header.bit_len)),
        })
    }
}

/// Timestamp delta-of-delta buckets, Gorilla style, on the zigzag value: `0` for a steady
/// interval, then `10`, `110`, `1110` with 7, 12 and 20 bits, and `1111` with all 64 bits. A
/// collection cycle that drifts by up to 63 ms costs 9 bits.
const TIMESTAMP_BUCKETS: [(u64, u32, u32); 4] = [
    (0b10, 2, 7),
    (0b110, 3, 12),
    (0b1110, 4, 20),
    (0b1111, 4, 64),
];

fn write_delta_of_delta(zigzag: u64, out: &mut BitWriter) {
    if zigzag == 0 {
        out.write_bit(false);
        return;
    }
    for (prefix, prefix_len, width) in TIMESTAMP_BUCKETS {
        if width == 64 || zigzag < 1 << width {
            out.write_bits(prefix, prefix_len);
            out.write_bits(zigzag, width);
            return;
        }
    }
}

fn read_delta_of_delta(input: &mut BitReader<'_>) -> Result<u64, CodecError> {
    let mut ones = 0;
    while ones < 4 && input.read_bit()? {
        ones += 1;
    }
    let width = match ones {
        0 => return Ok(0),
        1 => 7,
        2 => 12,
        3 => 20,
        _ => 64,
    };
    Ok(input.read_bits(width)?)
}

/// Decodes every sample of a block, each with the block's field count.
pub(crate) fn decode_block(bytes: &[u8]) -> Result<(BlockHeader, Vec<Sample>), CodecError> {
    let (header, stream, _) = BlockHeader::parse(bytes)?;
    let field_count = usize::from(header.field_count);
    let mut input = BitReader::new(stream, u64::from(header.bit_len));
    let mut fields = vec![FieldState::default(); field_count];
    let mut presence = vec![false; field_count];
    let mut timestamp_ms = header.first_ms;
    let mut previous_delta = 0u64;
    let mut samples = Vec::with_capacity(header.sample_count as usize);

    for index in 0..header.sample_count {
        if index > 0 {
            let delta = (previous_delta as i64)
                .checked_add(unzigzag(read_delta_of_delta(&mut input)?))
                .filter(|delta| *delta > 0)
                .ok_or(CodecError::TimestampNotIncreasing)?;
            previous_delta = delta as u64;
            timestamp_ms = timestamp_ms
                .checked_add(previous_delta)
                .ok_or(CodecError::TimestampNotIncreasing)?;
        }
        if input.read_bit()? {
            for present in presence.iter_mut() {
                *present = input.read_bit()?;
            }
        }
        let mut values = Vec::with_capacity(field_count);
        for (state, present) in fields.iter_mut().zip(&presence) {
            values.push(if *present {
                Some(state.decode(&mut input)?)
            } else {
                None
            });
        }
        samples.push(Sample {
            timestamp_ms,
            values,
        });
    }

    if timestamp_ms != header.last_ms {
        return Err(CodecError::InvalidHeader(
            "last timestamp does not match the stream",
        ));
    }
    Ok((header, samples))
}

fn write_field_state(state: &FieldState, bytes: &mut Vec<u8>) {
    let flags = u8::from(state.previous.is_some())
        | u8::from(state.fixed.is_some()) << 1
        | u8::from(state.xor_window.is_some()) << 2;
    bytes.push(flags);
    if let Some(previous) = state.previous {
        bytes.extend_from_slice(&previous.to_le_bytes());
    }
    if let Some(fixed) = state.fixed {
        bytes.push(fixed.divisor);
    }
    bytes.extend_from_slice(&state.delta_mean.to_le_bytes());
    if let Some(window) = state.xor_window {
        bytes.extend_from_slice(&[window.leading, window.trailing]);
    }
}

fn read_field_state(state: &mut StateReader<'_>) -> Result<FieldState, CodecError> {
    let [flags] = state.take()?;
    let previous = (flags & 1 != 0)
        .then(|| state.take().map(u64::from_le_bytes))
        .transpose()?;
    let divisor = (flags & 2 != 0).then(|| state.take::<1>()).transpose()?;
    // The scaled integer is not stored: it is always the exact scaling of the previous value,
    // because every code that sets a fixed-point form computes it with `scale_exactly`.
    let fixed = match (divisor, previous) {
        (None, _) => None,
        (Some([divisor]), Some(bits)) => Some(Fixed {
            divisor,
            scaled: scale_exactly(f64::from_bits(bits), divisor).ok_or(
                CodecError::InvalidHeader("fixed-point state does not match the value"),
            )?,
        }),
        (Some(_), None) => {
            return Err(CodecError::InvalidHeader(
                "fixed-point state without a value",
            ));
        }
    };
    let delta_mean = u64::from_le_bytes(state.take()?);
    let xor_window = (flags & 4 != 0)
        .then(|| state.take::<2>())
        .transpose()?
        .map(|[leading, trailing]| XorWindow { leading, trailing });
    Ok(FieldState {
        previous,
        fixed,
        delta_mean,
        xor_window,
    })
}

struct StateReader<'a>(&'a [u8]);

impl<'a> StateReader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        Ok(self.take_slice(N)?.try_into().expect("N bytes"))
    }

    fn take_slice(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < len {
            return Err(CodecError::InvalidHeader("coding state ends early"));
        }
        let (head, tail) = self.0.split_at(len);
        self.0 = tail;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the tests need no random crate.
    fn samples(count: u32, field_count: u16) -> Vec<Sample> {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut timestamp_ms = 1_700_000_000_000u64;
        (0..count)
            .map(|index| {
                timestamp_ms += 30_000 + next() % 400;
                let values = (0..field_count)
                    .map(|field| match (field % 5, next() % 10) {
                        (_, 0) => None,
                        (0, _) => Some(f64::from(index)),
                        (1, _) => Some((next() % 10_000) as f64 / 100.0),
                        (2, _) => Some(f64::from_bits(next() >> 2)),
                        (3, _) => Some(4096.0),
                        _ => Some(-((next() % 1_000_000) as f64)),
                    })
                    .collect();
                Sample {
                    timestamp_ms,
                    values,
                }
            })
            .collect()
    }

    fn assert_same_samples(decoded: &[Sample], expected: &[Sample]) {
        assert_eq!(decoded.len(), expected.len());
        for (got, want) in decoded.iter().zip(expected) {
            assert_eq!(got.timestamp_ms, want.timestamp_ms);
            let got_bits: Vec<Option<u64>> =
                got.values.iter().map(|v| v.map(f64::to_bits)).collect();
            let want_bits: Vec<Option<u64>> =
                want.values.iter().map(|v| v.map(f64::to_bits)).collect();
            assert_eq!(got_bits, want_bits, "values at {}", want.timestamp_ms);
        }
    }

    #[test]
    fn block_round_trips_samples_with_gaps() {
        let expected = samples(150, 23);
        let encoder = BlockEncoder::from_samples(23, &expected);
        let (header, decoded) = decode_block(&encoder.block_bytes()).expect("decodes");
        assert_eq!(header.sample_count, 150);
        assert_eq!(header.first_ms, expected[0].timestamp_ms);
        assert_eq!(header.last_ms, expected[149].timestamp_ms);
        assert_same_samples(&decoded, &expected);
    }

    #[test]
    fn resumed_encoder_writes_same_bytes() {
        let all = samples(90, 17);
        let whole = BlockEncoder::from_samples(17, &all);

        let mut resumed = BlockEncoder::from_samples(17, &all[..1]);
        for sample in &all[1..] {
            resumed = BlockEncoder::from_open_bytes(&resumed.open_bytes()).expect("resumes");
            resumed.push(sample.timestamp_ms, &sample.values);
        }

        assert_eq!(resumed, whole);
        assert_eq!(resumed.block_bytes(), whole.block_bytes());
    }

    #[test]
    fn all_absent_sample_round_trips() {
        let expected = vec![
            Sample {
                timestamp_ms: 10,
                values: vec![None, None],
            },
            Sample {
                timestamp_ms: 20,
                values: vec![Some(0.0), None],
            },
            Sample {
                timestamp_ms: 25,
                values: vec![None, None],
            },
        ];
        let encoder = BlockEncoder::from_samples(2, &expected);
        let (_, decoded) = decode_block(&encoder.block_bytes()).expect("decodes");
        assert_same_samples(&decoded, &expected);
    }

    #[test]
    fn extreme_timestamp_steps_round_trip() {
        let expected: Vec<Sample> = [0, 1, MAX_TIMESTAMP_MS - 1, MAX_TIMESTAMP_MS]
            .into_iter()
            .map(|timestamp_ms| Sample {
                timestamp_ms,
                values: vec![Some(1.0)],
            })
            .collect();
        let encoder = BlockEncoder::from_samples(1, &expected);
        let (_, decoded) = decode_block(&encoder.block_bytes()).expect("decodes");
        assert_same_samples(&decoded, &expected);
    }

    #[test]
    fn truncated_block_is_an_error() {
        let encoder = BlockEncoder::from_samples(9, &samples(20, 9));
        let bytes = encoder.block_bytes();
        for len in [0, HEADER_LEN - 1, HEADER_LEN, bytes.len() - 1] {
            assert!(decode_block(&bytes[..len]).is_err(), "length {len} decoded");
        }
    }
}
