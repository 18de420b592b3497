//! Compression of one metric field's successive values inside a history block.
//!
//! Each present value is coded against the field's previous present value in the same block,
//! with the cheapest of four codes. A value's *fixed-point form* is an integer `n` with
//! `value = n / d` exactly, for a divisor `d` from [`DIVISORS`].
//!
//! | prefix | code | suits |
//! |---|---|---|
//! | `0` | fixed-point delta: `n - n_prev`, same divisor | integers, decimals, MB from KB or bytes |
//! | `10` | same bits as the previous value | constants such as limits and totals |
//! | `110` | XOR of the float bits, Gorilla style | floats without a fixed-point form |
//! | `111` | new fixed-point form: divisor index and `n` in full | the first value, or a finer divisor |
//!
//! vSphere performance counters are integers, and the host derives percentages with a few
//! decimals and MB from KB (divided by 1024) or bytes (divided by 2^20), so most values have a
//! fixed-point form. Plain Gorilla XOR spends about 52 bits on a value like `12.34`, because its
//! mantissa has no trailing zeros. The XOR code stays for values without a fixed-point form.
//!
//! The fixed-point delta is the most frequent code, so it has the one-bit prefix. Its zigzag
//! value is Rice coded with a parameter that follows a moving mean of the field's recent
//! deltas: a noisy metric then costs about two bits more than the logarithm of its typical
//! change.
//!
//! The encoder and the decoder update [`FieldState`] with the same functions, so they stay in
//! step without storing the state in the stream.

use crate::bits::{BitReader, BitWriter, EndOfStream, low_mask};

/// Divisors of the fixed-point forms, tried in this order; the index is stored in 3 bits.
/// Decimal fractions up to 5 digits, then KB and bytes converted to MB. Every divisor is exact
/// in f64, so `n as f64 / d` is one correctly rounded division.
const DIVISORS: [f64; 8] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1024.0, 1_048_576.0];

const MAX_DIVISOR_INDEX: u8 = DIVISORS.len() as u8 - 1;

/// Bound on the integer of a fixed-point form.
///
/// Below 2^50 the product `value * d` lies within 0.25 of the integer it came from, so rounding
/// recovers exactly that integer. The encoder, the decoder and a restored state therefore
/// compute the same `n` for the same value.
const MAX_SCALED: f64 = (1u64 << 50) as f64;

/// Rice quotient from which a delta is written in full. Deltas that large are outliers, and
/// the escape bounds their cost to 26 bits plus the value.
const RICE_ESCAPE: u32 = 20;

/// Largest leading-zero count the XOR code stores; it is written in 5 bits.
const MAX_XOR_LEADING: u32 = 31;

/// Per-field coding state, carried from one value of a block to the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FieldState {
    /// Bits of the previous present value in this block.
    pub(crate) previous: Option<u64>,
    /// The previous value's fixed-point form, when it has one.
    pub(crate) fixed: Option<Fixed>,
    /// Four times the moving mean of the field's recent `zigzag(delta) - 1`; 0 before the
    /// first delta. It sets the Rice parameter of the next delta.
    pub(crate) delta_mean: u64,
    /// Leading and trailing zero counts of the last XOR window written in full.
    pub(crate) xor_window: Option<XorWindow>,
}

/// A float equal to `scaled / DIVISORS[divisor]`, bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fixed {
    /// Index into [`DIVISORS`].
    pub(crate) divisor: u8,
    pub(crate) scaled: i64,
}

/// The span of meaningful bits of an XOR, as Gorilla stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct XorWindow {
    pub(crate) leading: u8,
    pub(crate) trailing: u8,
}

impl XorWindow {
    fn meaningful_bits(self) -> u32 {
        64 - u32::from(self.leading) - u32::from(self.trailing)
    }
}

/// The code chosen for one value, with what the encoder needs to write it.
enum Code {
    Repeat,
    FixedDelta { fixed: Fixed, zigzag: u64 },
    NewFixed(Fixed),
    Xor(u64),
}

impl FieldState {
    /// Writes `value` with the cheapest code and advances the state.
    pub(crate) fn encode(&mut self, value: f64, out: &mut BitWriter) {
        let bits = value.to_bits();
        match self.cheapest_code(value) {
            Code::FixedDelta { fixed, zigzag } => {
                out.write_bit(false);
                self.write_delta(zigzag, out);
                self.fixed = Some(fixed);
            }
            Code::Repeat => out.write_bits(0b10, 2),
            Code::Xor(xor) => {
                out.write_bits(0b110, 3);
                self.write_xor(xor, out);
                self.fixed = next_fixed(self.fixed, value);
            }
            Code::NewFixed(fixed) => {
                out.write_bits(0b111, 3);
                write_new_fixed(fixed, out);
                self.fixed = Some(fixed);
            }
        }
        self.previous = Some(bits);
    }

    /// Reads one value written by [`FieldState::encode`] and advances the state the same way.
    pub(crate) fn decode(&mut self, input: &mut BitReader<'_>) -> Result<f64, CodecError> {
        let value = if !input.read_bit()? {
            let previous = self.fixed.ok_or(CodecError::DeltaWithoutFixed)?;
            let delta = unzigzag(self.read_delta(input)?);
            let scaled = previous
                .scaled
                .checked_add(delta)
                .ok_or(CodecError::FixedOutOfRange)?;
            let fixed = Fixed {
                divisor: previous.divisor,
                scaled,
            };
            self.fixed = Some(fixed);
            fixed_value(fixed)
        } else if !input.read_bit()? {
            f64::from_bits(self.previous.ok_or(CodecError::RepeatWithoutPrevious)?)
        } else if !input.read_bit()? {
            let xor = self.read_xor(input)?;
            let value = f64::from_bits(self.previous.unwrap_or(0) ^ xor);
            self.fixed = next_fixed(self.fixed, value);
            value
        } else {
            let fixed = read_new_fixed(input)?;
            self.fixed = Some(fixed);
            fixed_value(fixed)
        };
        self.previous = Some(value.to_bits());
        Ok(value)
    }

    fn cheapest_code(&self, value: f64) -> Code {
        let bits = value.to_bits();
        if self.previous == Some(bits) {
            return Code::Repeat;
        }

        let mut best: Option<(u32, Code)> = None;
        let mut consider = |cost: u32, code: Code| {
            if best.as_ref().is_none_or(|(best_cost, _)| cost < *best_cost) {
                best = Some((cost, code));
            }
        };
        if let Some(previous) = self.fixed
            && let Some(scaled) = scale_exactly(value, previous.divisor)
        {
            // Both magnitudes are below 2^50, so the difference cannot overflow.
            let zigzag = zigzag(scaled - previous.scaled);
            let fixed = Fixed {
                divisor: previous.divisor,
                scaled,
            };
            consider(
                1 + self.delta_cost(zigzag),
                Code::FixedDelta { fixed, zigzag },
            );
        }
        if let Some(fixed) = simplest_fixed(value) {
            consider(3 + new_fixed_cost(fixed), Code::NewFixed(fixed));
        }
        // Without a previous value the XOR is against zero. A zero XOR has no Gorilla form, but
        // then the value is +0.0, which the new fixed-point code always covers.
        let xor = self.previous.unwrap_or(0) ^ bits;
        if xor != 0 {
            consider(3 + self.xor_cost(xor), Code::Xor(xor));
        }
        best.expect("+0.0 has a fixed-point form and any other value a non-zero XOR")
            .1
    }

    /// Rice parameter for the next delta: the floor of log2 of the mean, 0 at first.
    fn rice_parameter(&self) -> u32 {
        significant_bits(self.delta_mean / 4).saturating_sub(1)
    }

    /// Cost of a delta's Rice code: `q` one bits, a zero, then `k` low bits, where
    /// `q = (zigzag - 1) >> k`. A quotient of [`RICE_ESCAPE`] or more is written as that many
    /// one bits, a 6-bit width and the value in full. The field's first delta, with no mean
    /// to choose `k` from, is written as a 6-bit width and the value.
    fn delta_cost(&self, zigzag: u64) -> u32 {
        let value = zigzag - 1;
        if self.delta_mean == 0 {
            return 6 + significant_bits(value);
        }
        let k = self.rice_parameter();
        let quotient = value >> k;
        if quotient < u64::from(RICE_ESCAPE) {
            quotient as u32 + 1 + k
        } else {
            RICE_ESCAPE + 6 + significant_bits(value)
        }
    }

    /// Writes a non-zero zigzag delta. A delta is never zero because that value would be a
    /// repeat, so `zigzag - 1` is coded.
    fn write_delta(&mut self, zigzag: u64, out: &mut BitWriter) {
        let value = zigzag - 1;
        let k = self.rice_parameter();
        let quotient = value >> k;
        if self.delta_mean == 0 {
            let width = significant_bits(value);
            out.write_bits(u64::from(width), 6);
            out.write_bits(value, width);
        } else if quotient < u64::from(RICE_ESCAPE) {
            out.write_bits(low_mask(quotient as u32 + 1) - 1, quotient as u32 + 1);
            out.write_bits(value, k);
        } else {
            let width = significant_bits(value);
            out.write_bits(low_mask(RICE_ESCAPE), RICE_ESCAPE);
            out.write_bits(u64::from(width), 6);
            out.write_bits(value, width);
        }
        self.update_delta_mean(value);
    }

    fn read_delta(&mut self, input: &mut BitReader<'_>) -> Result<u64, CodecError> {
        if self.delta_mean == 0 {
            let width = input.read_bits(6)? as u32;
            let value = input.read_bits(width)?;
            self.update_delta_mean(value);
            return value.checked_add(1).ok_or(CodecError::FixedOutOfRange);
        }
        let k = self.rice_parameter();
        let mut quotient = 0u32;
        while quotient < RICE_ESCAPE && input.read_bit()? {
            quotient += 1;
        }
        let value = if quotient < RICE_ESCAPE {
            (u64::from(quotient) << k) | input.read_bits(k)?
        } else {
            let width = input.read_bits(6)? as u32;
            input.read_bits(width)?
        };
        self.update_delta_mean(value);
        value.checked_add(1).ok_or(CodecError::FixedOutOfRange)
    }

    /// Moves the mean a quarter of the way towards `value`; the first delta sets it.
    fn update_delta_mean(&mut self, value: u64) {
        self.delta_mean = if self.delta_mean == 0 {
            value.saturating_mul(4).max(1)
        } else {
            (self.delta_mean - self.delta_mean / 4).saturating_add(value)
        };
    }

    /// Cost of a non-zero XOR: `0` + bits in the previous window, or `1` + 5-bit leading count
    /// + 6-bit length + the meaningful bits.
    fn xor_cost(&self, xor: u64) -> u32 {
        let window = xor_window(xor);
        let fresh = 1 + 5 + 6 + window.meaningful_bits();
        match self.xor_window {
            Some(previous) if fits_window(window, previous) => {
                fresh.min(1 + previous.meaningful_bits())
            }
            _ => fresh,
        }
    }

    fn write_xor(&mut self, xor: u64, out: &mut BitWriter) {
        let window = xor_window(xor);
        if let Some(previous) = self.xor_window
            && fits_window(window, previous)
            && previous.meaningful_bits() <= 11 + window.meaningful_bits()
        {
            out.write_bit(false);
            out.write_bits(xor >> previous.trailing, previous.meaningful_bits());
            return;
        }
        out.write_bit(true);
        out.write_bits(u64::from(window.leading), 5);
        out.write_bits(u64::from(window.meaningful_bits() - 1), 6);
        out.write_bits(xor >> window.trailing, window.meaningful_bits());
        self.xor_window = Some(window);
    }

    fn read_xor(&mut self, input: &mut BitReader<'_>) -> Result<u64, CodecError> {
        let window = if !input.read_bit()? {
            self.xor_window.ok_or(CodecError::XorWithoutWindow)?
        } else {
            let leading = input.read_bits(5)? as u8;
            let meaningful = input.read_bits(6)? as u32 + 1;
            let trailing = 64u32
                .checked_sub(u32::from(leading) + meaningful)
                .ok_or(CodecError::XorWindowTooWide)?;
            let window = XorWindow {
                leading,
                trailing: trailing as u8,
            };
            self.xor_window = Some(window);
            window
        };
        Ok(input.read_bits(window.meaningful_bits())? << window.trailing)
    }
}

/// Reason a block's bit stream failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("bit stream ends early")]
    EndOfStream,
    #[error("repeat code without a previous value")]
    RepeatWithoutPrevious,
    #[error("fixed-point delta without a previous fixed-point form")]
    DeltaWithoutFixed,
    #[error("fixed-point value out of range")]
    FixedOutOfRange,
    #[error("XOR code reuses a window before any was set")]
    XorWithoutWindow,
    #[error("XOR window wider than 64 bits")]
    XorWindowTooWide,
    #[error("timestamps do not increase")]
    TimestampNotIncreasing,
    #[error("header is invalid: {0}")]
    InvalidHeader(&'static str),
}

impl From<EndOfStream> for CodecError {
    fn from(_: EndOfStream) -> Self {
        CodecError::EndOfStream
    }
}

fn write_new_fixed(fixed: Fixed, out: &mut BitWriter) {
    let zigzag = zigzag(fixed.scaled);
    let width = significant_bits(zigzag);
    out.write_bits(u64::from(fixed.divisor), 3);
    out.write_bits(u64::from(width), 6);
    out.write_bits(zigzag, width);
}

fn read_new_fixed(input: &mut BitReader<'_>) -> Result<Fixed, CodecError> {
    let divisor = input.read_bits(3)? as u8;
    let width = input.read_bits(6)? as u32;
    let scaled = unzigzag(input.read_bits(width)?);
    if scaled.unsigned_abs() as f64 > MAX_SCALED {
        return Err(CodecError::FixedOutOfRange);
    }
    Ok(Fixed { divisor, scaled })
}

/// Cost of a new fixed: 3-bit divisor, 6-bit width, then the zigzag bits. The width is at
/// most 51 because the scaled value is below 2^50.
fn new_fixed_cost(fixed: Fixed) -> u32 {
    3 + 6 + significant_bits(zigzag(fixed.scaled))
}

/// Returns the fixed-point form of a value coded with XOR: keep the previous divisor if
/// it still represents the value, else take the shortest form.
pub(crate) fn next_fixed(previous: Option<Fixed>, value: f64) -> Option<Fixed> {
    if let Some(previous) = previous
        && let Some(scaled) = scale_exactly(value, previous.divisor)
    {
        return Some(Fixed {
            divisor: previous.divisor,
            scaled,
        });
    }
    simplest_fixed(value)
}

/// Returns the fixed-point form with the first divisor that reproduces `value` bit for bit.
fn simplest_fixed(value: f64) -> Option<Fixed> {
    (0..=MAX_DIVISOR_INDEX)
        .find_map(|divisor| scale_exactly(value, divisor).map(|scaled| Fixed { divisor, scaled }))
}

/// Returns `n` with `n / DIVISORS[divisor] == value` bit for bit, if one below [`MAX_SCALED`]
/// exists.
///
/// The bit comparison rejects NaN, infinities and -0.0, which then take the XOR code.
pub(crate) fn scale_exactly(value: f64, divisor: u8) -> Option<i64> {
    let scaled = (value * DIVISORS[usize::from(divisor)]).round();
    if !scaled.is_finite() || scaled.abs() >= MAX_SCALED {
        return None;
    }
    let candidate = Fixed {
        divisor,
        scaled: scaled as i64,
    };
    (fixed_value(candidate).to_bits() == value.to_bits()).then_some(candidate.scaled)
}

fn fixed_value(fixed: Fixed) -> f64 {
    fixed.scaled as f64 / DIVISORS[usize::from(fixed.divisor)]
}

fn xor_window(xor: u64) -> XorWindow {
    XorWindow {
        leading: xor.leading_zeros().min(MAX_XOR_LEADING) as u8,
        trailing: xor.trailing_zeros() as u8,
    }
}

fn fits_window(window: XorWindow, previous: XorWindow) -> bool {
    window.leading >= previous.leading && window.trailing >= previous.trailing
}

fn significant_bits(value: u64) -> u32 {
    64 - value.leading_zeros()
}

pub(crate) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

pub(crate) fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[f64]) -> (Vec<f64>, u64) {
        let mut encoder = FieldState::default();
        let mut out = BitWriter::default();
        for &value in values {
            encoder.encode(value, &mut out);
        }
        let mut decoder = FieldState::default();
        let mut input = BitReader::new(out.bytes(), out.bit_len());
        let decoded = values
            .iter()
            .map(|_| decoder.decode(&mut input).expect("decodes"))
            .collect();
        assert_eq!(
            decoder, encoder,
            "decoder state diverged from encoder state"
        );
        (decoded, out.bit_len())
    }

    fn assert_bitwise_equal(decoded: &[f64], expected: &[f64]) {
        let decoded: Vec<u64> = decoded.iter().map(|v| v.to_bits()).collect();
        let expected: Vec<u64> = expected.iter().map(|v| v.to_bits()).collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn special_values_round_trip_bitwise() {
        let values = [
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            -1.5,
            1e300,
            0.1 + 0.2,
            12.34,
            12.345_678_9,
            (1u64 << 52) as f64,
            -((1u64 << 49) as f64),
        ];
        let (decoded, _) = round_trip(&values);
        assert_bitwise_equal(&decoded, &values);
    }

    #[test]
    fn percentages_with_two_decimals_stay_small() {
        let values: Vec<f64> = (0..200)
            .map(|i| f64::from(1_000 + (i * 37 % 61) - 30) / 100.0)
            .collect();
        let (decoded, bits) = round_trip(&values);
        assert_bitwise_equal(&decoded, &values);
        let bits_per_value = bits as f64 / values.len() as f64;
        assert!(bits_per_value < 12.0, "{bits_per_value} bits per value");
    }

    #[test]
    fn constant_costs_one_bit_after_the_first() {
        let values = [4096.0; 100];
        let (decoded, bits) = round_trip(&values);
        assert_bitwise_equal(&decoded, &values);
        // 3-bit prefix, 3-bit divisor, 6-bit width and 14 bits for zigzag(4096) = 8192, then
        // two bits per repeat.
        assert_eq!(bits, 26 + 99 * 2);
    }

    #[test]
    fn megabytes_from_kilobytes_stay_small() {
        let values: Vec<f64> = (0..200)
            .map(|i| f64::from(4_194_304 + (i * 7919 % 2000)) / 1024.0)
            .collect();
        let (decoded, bits) = round_trip(&values);
        assert_bitwise_equal(&decoded, &values);
        let bits_per_value = bits as f64 / values.len() as f64;
        assert!(bits_per_value < 14.0, "{bits_per_value} bits per value");
    }

    #[test]
    fn values_without_fixed_form_round_trip() {
        let values: Vec<f64> = (0..100)
            .map(|i| f64::from(5_000 + i * 13 % 97) / 1024.0 * 3.3)
            .collect();
        let (decoded, _) = round_trip(&values);
        assert_bitwise_equal(&decoded, &values);
    }

    #[test]
    fn scale_exactly_rejects_values_it_cannot_reproduce() {
        assert_eq!(scale_exactly(12.34, 2), Some(1234));
        assert_eq!(scale_exactly(12.34, 1), None);
        assert_eq!(scale_exactly(-0.0, 0), None);
        assert_eq!(scale_exactly(f64::NAN, 0), None);
        assert_eq!(scale_exactly(1e20, 0), None);
    }

    #[test]
    fn zigzag_round_trips_extremes() {
        for value in [0, 1, -1, i64::MAX, i64::MIN, 1 << 50, -(1 << 50)] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
    }
}
