//! Floating-point text as kd prints it in `.formats`: the Microsoft C
//! runtime's `%g` (six significant digits, trailing zeros dropped, at least
//! three exponent digits) and its old spellings of infinities and NaNs
//! (`1.#INF`, `-1.#QNAN`, `-1.#IND`, `1.#SNAN`), which current kd still
//! prints (`Float: low 9.42983e-030 high -1.#QNAN`).

/// A single-precision value given by its bits.
#[must_use]
pub fn float_g(bits: u32) -> String {
    let exponent_all_ones = bits >> 23 & 0xff == 0xff;
    if exponent_all_ones {
        return special(bits >> 31 == 1, u64::from(bits & 0x7f_ffff), 1 << 22);
    }
    printf_g(f64::from(f32::from_bits(bits)))
}

/// A double-precision value given by its bits.
#[must_use]
pub fn double_g(bits: u64) -> String {
    let exponent_all_ones = bits >> 52 & 0x7ff == 0x7ff;
    if exponent_all_ones {
        return special(bits >> 63 == 1, bits & ((1 << 52) - 1), 1 << 51);
    }
    printf_g(f64::from_bits(bits))
}

/// Infinity or NaN as the pre-UCRT runtime spells them.
fn special(negative: bool, mantissa: u64, quiet_bit: u64) -> String {
    let sign = if negative { "-" } else { "" };
    let body = if mantissa == 0 {
        "1.#INF"
    } else if mantissa & quiet_bit == 0 {
        "1.#SNAN"
    } else if negative && mantissa == quiet_bit {
        // The x87 "indefinite" NaN.
        return "-1.#IND".to_owned();
    } else {
        "1.#QNAN"
    };
    format!("{sign}{body}")
}

/// C's `printf("%g", value)` for a finite value, with Microsoft's
/// three-digit exponent.
#[must_use]
pub fn printf_g(value: f64) -> String {
    const PRECISION: i32 = 6;
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // The exponent %e would print decides between %e and %f (C11 7.21.6.1).
    let scientific = format!("{value:.5e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..PRECISION).contains(&exponent) {
        let decimals = usize::try_from(PRECISION - 1 - exponent).unwrap_or(0);
        trim_zeros(&format!("{value:.decimals$}")).to_owned()
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:03}",
            trim_zeros(mantissa),
            exponent.unsigned_abs()
        )
    }
}

/// Drops trailing zeros after a decimal point, and the point if bare.
fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walkthrough_and_docs_values() {
        // .formats 64636261 in the walkthrough.
        assert_eq!(float_g(0x6463_6261), "1.6778e+022");
        assert_eq!(float_g(0), "0");
        assert_eq!(double_g(0x6463_6261), "8.32123e-315");
        // .formats 1c407e62 in Microsoft's docs.
        assert_eq!(float_g(0x1c40_7e62), "6.36908e-022");
        assert_eq!(double_g(0x1c40_7e62), "2.34182e-315");
        // Public x64 and x86 sessions.
        assert_eq!(float_g(0x0000_4700), "2.547e-041");
        assert_eq!(double_g(0x4700), "8.98014e-320");
        assert_eq!(float_g(0x5772_4231), "2.66366e+014");
        assert_eq!(float_g(0x8001_0033), "-9.1907e-041");
        assert_eq!(float_g(0x0f3f_4280), "9.42983e-030");
        assert_eq!(float_g(0x0388_0000), "7.99336e-037");
        assert_eq!(float_g(0x7453_6d4d), "6.70039e+031");
        assert_eq!(double_g(0x7453_6d4d_0388_0000), "2.22547e+252");
        assert_eq!(double_g(0x4c), "3.7549e-322");
    }

    #[test]
    fn specials() {
        assert_eq!(float_g(0xffff_f802), "-1.#QNAN");
        assert_eq!(float_g(0xffff_ffff), "-1.#QNAN");
        assert_eq!(double_g(0xffff_f802_0f3f_4280), "-1.#QNAN");
        assert_eq!(float_g(0x7f80_0000), "1.#INF");
        assert_eq!(float_g(0xff80_0000), "-1.#INF");
        assert_eq!(float_g(0xffc0_0000), "-1.#IND");
        assert_eq!(float_g(0x7fc0_0000), "1.#QNAN");
        assert_eq!(float_g(0x7f80_0001), "1.#SNAN");
        assert_eq!(double_g(0x7ff0_0000_0000_0000), "1.#INF");
        assert_eq!(double_g(0xfff8_0000_0000_0000), "-1.#IND");
    }

    #[test]
    fn printf_g_switches_between_forms() {
        assert_eq!(printf_g(1.0), "1");
        assert_eq!(printf_g(-0.0), "-0");
        assert_eq!(printf_g(0.5), "0.5");
        assert_eq!(printf_g(0.0001), "0.0001");
        assert_eq!(printf_g(0.000_012_345_6), "1.23456e-005");
        assert_eq!(printf_g(123_456.0), "123456");
        assert_eq!(printf_g(1_234_567.0), "1.23457e+006");
        assert_eq!(printf_g(999_999.5), "1e+006");
        assert_eq!(printf_g(1.234_567_8), "1.23457");
        assert_eq!(printf_g(-2.5e100), "-2.5e+100");
        assert_eq!(printf_g(f64::MAX), "1.79769e+308");
        assert_eq!(printf_g(5e-324), "4.94066e-324");
    }

    #[test]
    fn trim_zeros_keeps_integers() {
        assert_eq!(trim_zeros("100"), "100");
        assert_eq!(trim_zeros("1.500"), "1.5");
        assert_eq!(trim_zeros("2.000"), "2");
    }
}
