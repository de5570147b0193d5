//! The run's report key (SPEC §5): who may speak for a run's workers.
//!
//! Anyone who can write to a queue can write a report, and a run id is no
//! secret (it is in every pod's spec). So the master draws a fresh 256-bit
//! [`RunKey`] for each run, hands it only to the run's workers (`CND_RUN_KEY`,
//! from a Secret on Kubernetes), and takes into account only messages whose
//! [`SIGNATURE_ATTRIBUTE`] is the HMAC-SHA256 of the body's exact bytes under
//! that key.
//!
//! The master keeps that key to itself. Workers get keys derived from it
//! (HMAC-SHA256 of a label under the run key, so one cannot be turned into
//! another): [`RunKey::for_shard`] where each worker can be given its own (local
//! processes, bare pods), so a report can only speak for its sender's shard, and
//! [`RunKey::shared`] where one template serves every worker (an Indexed Job's
//! pods all mount the same Secret).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::puzzle::{parse_block_hex, to_hex};

/// The message attribute (and, where there are no attributes, the field) that
/// carries a report's signature: lowercase hex HMAC-SHA256 of the body.
pub const SIGNATURE_ATTRIBUTE: &str = "cnd-signature";

/// Why a run key could not be made or read. Never shows the key itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunKeyError {
    /// The text is not 64 hex digits.
    #[error("a run key is 64 hex digits (256 bits), not {0} characters of text")]
    Malformed(usize),
    /// The operating system's random source failed.
    #[error("could not draw a random run key: {0}")]
    Random(String),
}

/// A run's 256-bit report key. `Debug` does not show it.
///
/// ```
/// use cnd_core::{Report, ReportKind, RunKey, Uuid};
///
/// let key = RunKey::generate().unwrap();
/// let report = Report {
///     run_id: Uuid::new_v4(),
///     shard: 0,
///     worker: "worker-0".into(),
///     hashes: 1000,
///     elapsed_ms: 5,
///     kind: ReportKind::Exhausted,
/// };
/// // A worker signs the body's exact bytes; the master checks before parsing.
/// let body = report.to_json();
/// let signature = key.sign(&body);
/// assert!(key.verify(&body, &signature));
/// assert!(!RunKey::generate().unwrap().verify(&body, &signature));
/// assert_eq!(Report::from_json(&body).unwrap(), report);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RunKey([u8; 32]);

impl RunKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<RunKey, RunKeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| RunKeyError::Random(e.to_string()))?;
        Ok(RunKey(bytes))
    }

    /// The key with these bytes (tests, and keys kept elsewhere).
    pub fn from_bytes(bytes: [u8; 32]) -> RunKey {
        RunKey(bytes)
    }

    /// Reads the 64 hex digits of `CND_RUN_KEY` (spaces at either end ignored).
    pub fn parse_hex(text: &str) -> Result<RunKey, RunKeyError> {
        let text = text.trim();
        let bytes = parse_block_hex(text).map_err(|_| RunKeyError::Malformed(text.len()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| RunKeyError::Malformed(text.len()))?;
        Ok(RunKey(bytes))
    }

    /// The key as 64 lowercase hex digits, for `CND_RUN_KEY`.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// The key of shard `shard`'s worker: HMAC-SHA256 under this key of
    /// `"cnd shard key"` followed by the shard as 8 big-endian bytes. A report
    /// signed with it can only be the work of that shard's worker (or the master).
    pub fn for_shard(&self, shard: u64) -> RunKey {
        let mut mac = self.mac();
        mac.update(b"cnd shard key");
        mac.update(&shard.to_be_bytes());
        RunKey(mac.finalize().into_bytes().into())
    }

    /// The key every worker of the run shares, where one template serves them
    /// all (an Indexed Job): HMAC-SHA256 under this key of `"cnd shared key"`. A
    /// report signed with it is from *some* worker of the run, not necessarily
    /// of the shard it names.
    pub fn shared(&self) -> RunKey {
        let mut mac = self.mac();
        mac.update(b"cnd shared key");
        RunKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }

    /// The signature of `body`: lowercase hex HMAC-SHA256 of its bytes.
    pub fn sign(&self, body: &str) -> String {
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        to_hex(&mac.finalize().into_bytes())
    }

    /// Whether `signature` is `body`'s, compared in constant time. Only the exact
    /// form [`RunKey::sign`] writes (64 lowercase hex digits) is accepted.
    pub fn verify(&self, body: &str, signature: &str) -> bool {
        let canonical = signature.len() == 64
            && signature
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let Some(tag) = canonical.then(|| parse_block_hex(signature).ok()).flatten() else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&tag).is_ok()
    }
}

impl fmt::Debug for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> RunKey {
        RunKey::from_bytes(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn signatures_match_python_hmac() {
        // python3 -c "import hmac,hashlib;print(hmac.new(bytes(range(32)),b'{\"v\":1}',hashlib.sha256).hexdigest())"
        assert_eq!(
            key().sign(r#"{"v":1}"#),
            "0eb532c50e075d71e18454cc33194be4df85629b9cd859abb198db2cee5adeb7"
        );
        // … and with b'' as the message.
        assert_eq!(
            key().sign(""),
            "d38b42096d80f45f826b44a9d5607de72496a415d3f4a1a8c88e3bb9da8dc1cb"
        );
    }

    #[test]
    fn derived_keys_match_python_hmac() {
        // python3 -c "import hmac,hashlib;r=bytes([7]*32);
        //   print(hmac.new(r,b'cnd shard key'+(3).to_bytes(8,'big'),hashlib.sha256).hexdigest());
        //   print(hmac.new(r,b'cnd shared key',hashlib.sha256).hexdigest())"
        let root = RunKey::from_bytes([7; 32]);
        assert_eq!(
            root.for_shard(3).to_hex(),
            "b63227dee47aa2b14b12b7f0964cf685cbeb1f94551da0c46dd6b0b984feda02"
        );
        assert_eq!(
            root.shared().to_hex(),
            "64b1dd8a397a321e5eab257b2eb317c750dcc080e6848c130cab92871a72ffa7"
        );
        // No shard's key is another's, the shared one, or the run's own.
        let keys: std::collections::HashSet<String> = (0..100)
            .map(|shard| root.for_shard(shard).to_hex())
            .chain([root.shared().to_hex(), root.to_hex()])
            .collect();
        assert_eq!(keys.len(), 102);
    }

    #[test]
    fn only_the_exact_signature_verifies() {
        let body = r#"{"v":1}"#;
        let good = key().sign(body);
        assert!(key().verify(body, &good));
        assert!(!key().verify(r#"{"v":1} "#, &good), "another body");
        assert!(!key().verify(body, &good.to_uppercase()), "not canonical");
        assert!(!key().verify(body, &good[..62]), "truncated");
        assert!(!key().verify(body, ""), "empty");
        let other = RunKey::from_bytes([7; 32]);
        assert!(!other.verify(body, &good), "another key");
    }

    #[test]
    fn keys_are_random_hex_and_never_printed() {
        let (a, b) = (RunKey::generate().unwrap(), RunKey::generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.to_hex().len(), 64);
        assert_eq!(RunKey::parse_hex(&a.to_hex()).unwrap(), a);
        assert!(!format!("{a:?}").contains(&a.to_hex()[..8]));
        assert_eq!(
            RunKey::parse_hex("abc"),
            Err(RunKeyError::Malformed(3)),
            "too short"
        );
        assert!(RunKey::parse_hex(&"zz".repeat(32)).is_err());
        assert!(RunKey::parse_hex(&"00".repeat(33)).is_err());
    }

    proptest! {
        #[test]
        fn a_changed_byte_never_verifies(body in ".{0,200}", at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let key = key();
            let signature = key.sign(&body);
            prop_assert!(key.verify(&body, &signature));
            if !body.is_empty() {
                let mut bytes = body.clone().into_bytes();
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
                if let Ok(changed) = String::from_utf8(bytes) {
                    prop_assert!(!key.verify(&changed, &signature));
                }
            }
        }
    }
}
