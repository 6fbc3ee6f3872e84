//! Numbers written into header values (`Server-Timing`, `x-model-version`, request ids)
//! without `fmt`, whose machinery (argument structs, padding, dynamic dispatch) cost about 2%
//! of a small model's request for the handful of integers each answer carries.
//!
//! Each number's digits are written into a buffer on the stack and appended to the string at
//! once: appending a character at a time checks the string's room for every one.

/// Appends `value` in decimal, with at least `width` digits (zeros in front). A `u64`: each
/// digit of a `u128` is two calls into the compiler's 128-bit division routines (writing a
/// request's `Server-Timing` took 2,330 instructions that way, 1,750 in `u64`).
pub(crate) fn push_decimal(out: &mut String, value: u64, width: usize) {
    // u64::MAX has 20 digits; the zeros the buffer starts with pad.
    let mut digits = [b'0'; 20];
    let start = write_decimal(&mut digits, value);
    out.extend(std::iter::repeat_n('0', width.saturating_sub(digits.len())));
    out.push_str(ascii(&digits[start.min(digits.len().saturating_sub(width))..]));
}

/// Appends `value` thousandths as a decimal number with three decimals: `31` is `0.031`.
pub(crate) fn push_thousandths(out: &mut String, value: u64) {
    // The whole part, at most 17 digits, ends at the point; the decimals follow it.
    let mut text = [b'0'; 21];
    text[17] = b'.';
    let start = write_decimal(&mut text[..17], value / 1000);
    write_decimal(&mut text[18..], value % 1000);
    out.push_str(ascii(&text[start..]));
}

/// Appends `value` as 16 lower-case hexadecimal digits.
pub(crate) fn push_hex16(out: &mut String, value: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits: [u8; 16] = std::array::from_fn(|i| HEX[(value >> (4 * (15 - i))) as usize & 15]);
    out.push_str(ascii(&digits));
}

/// Writes `value` in decimal at the end of `digits`, which is long enough for it; returns
/// where it starts.
fn write_decimal(digits: &mut [u8], value: u64) -> usize {
    let end = digits.len();
    let (mut rest, mut start) = (value, end);
    while rest > 0 || start == end {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    start
}

/// Digits as text.
fn ascii(digits: &[u8]) -> &str {
    std::str::from_utf8(digits).expect("digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_hexadecimals_read_as_fmt_writes_them() {
        for value in [0_u64, 7, 10, 999, 1_000, 123_456_789, u64::MAX] {
            for width in [0, 1, 3, 5, 45] {
                let mut ours = String::new();
                push_decimal(&mut ours, value, width);
                assert_eq!(ours, format!("{value:0width$}"), "{value} in {width} digits");
            }
        }
        for value in [0, 1, 0xdead_beef, u64::MAX] {
            let mut ours = String::new();
            push_hex16(&mut ours, value);
            assert_eq!(ours, format!("{value:016x}"));
        }
        for value in [0, 7, 31, 999, 1_000, 1_234_567, u64::MAX] {
            let mut ours = String::new();
            push_thousandths(&mut ours, value);
            assert_eq!(ours, format!("{}.{:03}", value / 1000, value % 1000));
        }
    }
}
