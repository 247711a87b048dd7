//! Object UIDs and the random suffixes of generated names, from the kernel's random source
//! (never from the clock, which anyone can guess).

/// The characters Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A fresh random UID (RFC 9562 version 4), as the API server makes them.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// Whether `s` is a UID as the API server makes them (36 characters of hex digits and dashes),
/// and so safe to name a directory with.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes()
            .enumerate()
            .all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { b.is_ascii_hexdigit() })
}

/// A random number from the kernel's random source (ClusterIP and nodePort allocation).
pub fn random_u64() -> u64 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[8], b[9]])
}

/// A random `len`-character suffix from Kubernetes' alphabet, as `generateName` makes.
pub fn suffix(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in uuid::Uuid::new_v4().as_bytes() {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_version_4_and_do_not_repeat() {
        let uids: std::collections::HashSet<String> = (0..1000).map(|_| new_uid()).collect();
        assert_eq!(uids.len(), 1000);
        for u in &uids {
            assert!(is_uuid(u), "{u}");
            assert_eq!(&u[14..15], "4", "{u}");
            assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        }
    }

    #[test]
    fn suffixes_use_the_kubernetes_alphabet_at_any_length() {
        for len in [0, 5, 16, 40] {
            let s = suffix(len);
            assert_eq!(s.len(), len);
            assert!(s.bytes().all(|b| ALPHABET.contains(&b)), "{s}");
        }
        assert_ne!(suffix(10), suffix(10));
        assert!(!is_uuid("../../etc/passwd-0000-0000-0000-000000"));
    }
}
