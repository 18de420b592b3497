//! Bit-granular writer and reader for the compressed history blocks.
//!
//! Bits are packed most significant first, so a stream that ends mid-byte can be resumed by
//! OR-ing further bits into its last byte. The writer keeps the exact bit length because the
//! unused low bits of the last byte carry no meaning.

/// Appends bit fields to a growing byte vector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    bit_len: u64,
}

impl BitWriter {
    /// Resumes a stream previously produced by a writer.
    ///
    /// `bytes` must be exactly `bit_len.div_ceil(8)` bytes with the unused low bits of the last
    /// byte zero, as [`BitWriter::bytes`] and [`BitWriter::bit_len`] return them.
    pub(crate) fn resume(bytes: Vec<u8>, bit_len: u64) -> Self {
        debug_assert_eq!(bytes.len() as u64, bit_len.div_ceil(8));
        Self { bytes, bit_len }
    }

    pub(crate) fn bit_len(&self) -> u64 {
        self.bit_len
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Writes one bit.
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Writes the low `count` bits of `value`, most significant first. `count` is at most 64.
    pub(crate) fn write_bits(&mut self, value: u64, count: u32) {
        debug_assert!(count <= 64);
        let mut remaining = count;
        while remaining > 0 {
            let used = (self.bit_len % 8) as u32;
            if used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - used;
            let take = free.min(remaining);
            let chunk = (value >> (remaining - take)) & low_mask(take);
            let last = self.bytes.last_mut().expect("a byte was pushed above");
            *last |= (chunk as u8) << (free - take);
            self.bit_len += u64::from(take);
            remaining -= take;
        }
    }
}

/// Reads bit fields from a byte slice written by [`BitWriter`].
#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    bit_len: u64,
    position: u64,
}

/// The stream ended before the requested bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndOfStream;

impl<'a> BitReader<'a> {
    /// Reads the first `bit_len` bits of `bytes`; `bit_len` is capped at the slice length.
    pub(crate) fn new(bytes: &'a [u8], bit_len: u64) -> Self {
        let bit_len = bit_len.min(bytes.len() as u64 * 8);
        Self {
            bytes,
            bit_len,
            position: 0,
        }
    }

    /// Reads one bit.
    pub(crate) fn read_bit(&mut self) -> Result<bool, EndOfStream> {
        Ok(self.read_bits(1)? == 1)
    }

    /// Reads `count` bits (at most 64) as the low bits of the result.
    pub(crate) fn read_bits(&mut self, count: u32) -> Result<u64, EndOfStream> {
        debug_assert!(count <= 64);
        if self.position + u64::from(count) > self.bit_len {
            return Err(EndOfStream);
        }
        let mut value = 0u64;
        let mut remaining = count;
        while remaining > 0 {
            let byte = u64::from(self.bytes[(self.position / 8) as usize]);
            let available = 8 - (self.position % 8) as u32;
            let take = available.min(remaining);
            let chunk = (byte >> (available - take)) & low_mask(take);
            value = (value << take) | chunk;
            self.position += u64::from(take);
            remaining -= take;
        }
        Ok(value)
    }
}

/// Returns a mask of the low `count` bits, for `count` up to 64.
pub(crate) fn low_mask(count: u32) -> u64 {
    if count >= 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_across_byte_edges() {
        let fields: [(u64, u32); 7] = [
            (1, 1),
            (0b101, 3),
            (0x1234_5678_9abc_def0, 64),
            (0, 5),
            (u64::MAX, 64),
            (0x7f, 7),
            (0x3, 2),
        ];
        let mut writer = BitWriter::default();
        for (value, count) in fields {
            writer.write_bits(value, count);
        }
        let total: u32 = fields.iter().map(|(_, count)| count).sum();
        assert_eq!(writer.bit_len(), u64::from(total));

        let mut reader = BitReader::new(writer.bytes(), writer.bit_len());
        for (value, count) in fields {
            assert_eq!(reader.read_bits(count), Ok(value & low_mask(count)));
        }
        assert_eq!(reader.read_bit(), Err(EndOfStream));
    }

    #[test]
    fn resumed_writer_matches_uninterrupted_one() {
        let mut whole = BitWriter::default();
        whole.write_bits(0b1_0110, 5);
        whole.write_bits(0xabc, 12);

        let mut first = BitWriter::default();
        first.write_bits(0b1_0110, 5);
        let mut resumed = BitWriter::resume(first.bytes().to_vec(), first.bit_len());
        resumed.write_bits(0xabc, 12);

        assert_eq!(resumed, whole);
    }
}
