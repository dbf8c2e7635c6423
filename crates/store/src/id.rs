//! Execution ids: time-ordered, 16 Crockford base32 characters (48-bit ms + 32 random bits).

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

pub fn new_id() -> String {
    let mut rand = [0u8; 4];
    // Without randomness the clock still orders ids; collisions are then caught by the primary key.
    let _ = getrandom::fill(&mut rand);
    let ms = u128::try_from(crate::now_ms().max(0)).unwrap_or(0) & ((1 << 48) - 1);
    let mut n: u128 = (ms << 32) | u128::from(u32::from_be_bytes(rand));
    let mut out = [0u8; 16];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n & 31) as usize];
        n >>= 5;
    }
    String::from_utf8(out.to_vec()).expect("alphabet is ASCII")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_ordered_and_distinct() {
        let a = super::new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::new_id();
        assert_eq!(a.len(), 16);
        assert!(a < b, "{a} < {b}");
    }
}
