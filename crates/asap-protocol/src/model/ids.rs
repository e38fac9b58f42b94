//! Identifiers: ULIDs for envelopes and tasks (wire spec section 2).

use std::sync::{Mutex, OnceLock};

use ulid::{Generator, Ulid};

fn generator() -> &'static Mutex<Generator> {
    static GENERATOR: OnceLock<Mutex<Generator>> = OnceLock::new();
    GENERATOR.get_or_init(|| Mutex::new(Generator::new()))
}

/// A new ULID: 26 upper-case Crockford base32 characters, monotonic within one
/// millisecond across the whole process (as python-ulid generates them).
///
/// ```
/// let a = asap_protocol::model::generate_id();
/// let b = asap_protocol::model::generate_id();
/// assert_eq!(a.len(), 26);
/// assert!(a < b);
/// ```
pub fn generate_id() -> String {
    let mut generator = generator()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Overflow of the 80 random bits within one millisecond is practically impossible;
    // fall back to a fresh random ULID rather than fail.
    generator
        .generate()
        .unwrap_or_else(|_| Ulid::new())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_upper_case_ulids_and_strictly_increasing() {
        let ids: Vec<String> = (0..2000).map(|_| generate_id()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
        for id in &ids {
            assert_eq!(id.len(), 26);
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            );
            assert!(Ulid::from_string(id).is_ok());
        }
    }
}
