//! The vault's stack use, measured (issue 12 sizes the stack by it): on plain SVM the HV
//! fills every stack with [`STACK_FILL`] before the vault first runs; the deepest word that
//! no longer holds it marks how far the stack has grown.
//!
//! A lower bound in one corner: a word the vault wrote with the fill value itself would not
//! count — the fill is a value no pointer, counter or AES state of the vault takes on in
//! practice, not a guarantee.

/// What an unused stack word holds.
pub const STACK_FILL: u64 = 0x5AFE_57AC_C0DE_F111;

/// Bytes of a stack, given as its 8-byte words from the lowest address up, that the vault
/// has used: from the lowest word that differs from the fill to the top.
pub fn used_bytes(words: impl IntoIterator<Item = u64>) -> usize {
    let mut len = 0;
    let mut first_used = None;
    for (i, word) in words.into_iter().enumerate() {
        if first_used.is_none() && word != STACK_FILL {
            first_used = Some(i);
        }
        len = i + 1;
    }
    first_used.map_or(0, |i| (len - i) * 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_water_mark() {
        let mut stack = vec![STACK_FILL; 2048];
        assert_eq!(used_bytes(stack.iter().copied()), 0, "untouched");
        // The vault pushed three words below the top (the stack grows down).
        stack[2045..].copy_from_slice(&[1, 2, 3]);
        assert_eq!(used_bytes(stack.iter().copied()), 24);
        // A zero written deeper still counts, and so does everything above it.
        stack[1000] = 0;
        assert_eq!(used_bytes(stack.iter().copied()), (2048 - 1000) * 8);
        assert_eq!(used_bytes(core::iter::empty()), 0);
    }
}
