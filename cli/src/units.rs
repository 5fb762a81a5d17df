//! Sizes as the command lines of runc and podman accept them.

/// Parses a byte count with an optional k, m, g or t suffix (powers of
/// 1024, with an optional trailing `b` or `ib`); -1 means no limit.
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    let invalid = || format!("invalid size \"{text}\" (use a number of bytes, optionally with k, m, g or t)");
    let lower = text.trim().to_ascii_lowercase();
    if lower == "-1" {
        return Ok(-1);
    }
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, suffix) = lower.split_at(digits_end);
    let number: i64 = digits.parse().map_err(|_| invalid())?;
    let multiplier: i64 = match suffix.trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(invalid()),
    };
    number.checked_mul(multiplier).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64m"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("512kb"), Ok(512 << 10));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("-1"), Ok(-1));
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5x").is_err());
    }
}
