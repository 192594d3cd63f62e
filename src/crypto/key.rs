//! Secure-mode keys: a 32-byte [`Key`] and its public 4-byte [`KeyId`].
//!
//! A key is either random bytes or derived from a passphrase, and the two
//! are asked for by name, never guessed from the text:
//!
//! | given as | example | read by |
//! |---|---|---|
//! | 64 hex digits | `000102…1e1f` | [`Key::from_hex`] (or [`Key::parse`]) |
//! | 44 characters of standard base64 that decode to 32 bytes | `AAECAwQF…Hh8=` | [`Key::from_base64`] (or [`Key::parse`]) |
//! | a passphrase | `correct horse battery staple` | [`Key::from_passphrase`] (Argon2id) |
//!
//! A text meant as a key that is not one (63 hex digits, base64 that
//! decodes to 31 bytes) is an error, never quietly taken as a passphrase:
//! a node whose key was mistyped would otherwise run with a key no other
//! node has, and hear nothing.
//!
//! Random keys (for example from [`Key::generate`] and [`Key::to_base64`])
//! are the better choice: a passphrase is only as strong as it is hard to
//! guess, and anyone who captures one sealed packet can test guesses
//! offline (the key id, or an AEAD open, confirms a guess). Argon2id makes
//! each guess cost about as much as one start of a node.
//!
//! Every key has a [`KeyId`]: the first 4 bytes of
//! HKDF-SHA256(ikm = key, salt = none, info = `b"shoal key-id v1"`). It is
//! sent in the clear in every sealed packet so that a receiver holding
//! several keys (see [`crate::crypto::keyring`]) knows which to try, and it
//! is what a key's `Debug` output shows. It reveals nothing useful about the
//! key (HKDF is a PRF) beyond letting a passphrase guess be checked, which a
//! captured packet allows anyway.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;

/// HKDF info string for the key id (and the key's private fingerprint).
const KEY_ID_INFO: &[u8] = b"shoal key-id v1";

/// Argon2id salt for [`Key::from_passphrase`]. It is fixed on purpose: every
/// node must derive the same key from the same passphrase, with nothing to
/// exchange first. (A fixed salt lets an attacker precompute guesses for
/// shoal as a whole rather than for one cluster; a random key avoids that.)
pub const PASSPHRASE_SALT: &[u8] = b"shoal passphrase v1";

/// Argon2id memory cost of [`Key::from_passphrase`], in KiB (19 MiB, OWASP's
/// recommended minimum for Argon2id).
pub const PASSPHRASE_M_COST_KIB: u32 = 19 * 1024;

/// Argon2id iterations of [`Key::from_passphrase`].
pub const PASSPHRASE_T_COST: u32 = 2;

/// Argon2id parallelism of [`Key::from_passphrase`].
pub const PASSPHRASE_P_COST: u32 = 1;

/// Why a key, key id or keyring operation was refused.
///
/// Messages never include the key material that was given.
///
/// ```
/// use shoal::{Key, KeyError};
///
/// assert_eq!(Key::parse("").unwrap_err(), KeyError::Empty);
/// assert_eq!(Key::from_hex("abcd").unwrap_err(), KeyError::HexLength(4));
/// assert_eq!(Key::parse("hunter2").unwrap_err(), KeyError::NotAKey(7));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key string (or passphrase) is empty (or only whitespace, for
    /// [`Key::parse`]).
    #[error("the key is empty")]
    Empty,
    /// [`Key::parse`] was given text that is neither hex nor base64; holds
    /// its length in bytes. A passphrase is never read as a key: derive
    /// the key with [`Key::from_passphrase`] (or
    /// [`ConfigBuilder::passphrase`](crate::ConfigBuilder::passphrase)).
    #[error(
        "not a key ({0} characters): a key is 64 hex digits or 44 characters of \
         standard base64 (a passphrase is given as one: passphrase(..), \
         Key::from_passphrase)"
    )]
    NotAKey(usize),
    /// A hex key does not have 64 characters; holds the length given.
    #[error("a hex key has 64 hex digits, not {0} characters")]
    HexLength(usize),
    /// A hex key (or key id) contains a character that is not a hex digit.
    #[error("the key is not valid hex")]
    InvalidHex,
    /// A base64 key is not valid standard base64 (with padding).
    #[error("the key is not valid standard base64")]
    InvalidBase64,
    /// A base64 key decodes to the wrong number of bytes; holds that number.
    #[error("a base64 key decodes to 32 bytes, not {0}")]
    Base64Length(usize),
    /// A key id is not exactly 8 hex digits.
    #[error("a key id is 8 hex digits")]
    InvalidKeyId,
    /// No installed key has this id.
    #[error("no key with id {0} is installed")]
    UnknownKey(KeyId),
    /// The primary key cannot be removed; make another key primary first.
    #[error("key {0} is the primary key")]
    PrimaryKey(KeyId),
    /// A different key with the same id is already installed (a 1 in 2^32
    /// accident per pair of keys: generate another key).
    #[error("another key with id {0} is already installed")]
    IdCollision(KeyId),
    /// The keyring already holds its maximum number of keys.
    #[error("the keyring is full ({max} keys)")]
    KeyringFull {
        /// The maximum.
        max: usize,
    },
}

/// The public identifier of a [`Key`]: 4 bytes derived from it, shown as 8
/// lowercase hex digits.
///
/// ```
/// use shoal::crypto::key::{Key, KeyId};
///
/// let id = Key::from_bytes([7; 32]).id();
/// let shown = id.to_string();
/// assert_eq!(shown.len(), 8);
/// assert_eq!(shown.parse::<KeyId>().unwrap(), id);
/// assert_eq!(KeyId([0xde, 0xad, 0xbe, 0xef]).to_string(), "deadbeef");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 4]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    /// Parses 8 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 8 {
            return Err(KeyError::InvalidKeyId);
        }
        let mut id = [0u8; 4];
        hex::decode_to_slice(s, &mut id).map_err(|_| KeyError::InvalidKeyId)?;
        Ok(KeyId(id))
    }
}

/// A 32-byte secure-mode key.
///
/// Made from random bytes ([`Key::generate`], [`Key::from_bytes`]), from
/// their text ([`Key::from_hex`], [`Key::from_base64`], or [`Key::parse`]
/// for either), or from a passphrase ([`Key::from_passphrase`]). Text is
/// never guessed to be a passphrase: see the [module docs](self).
///
/// Random keys (hex or base64, from [`Key::generate`] and [`Key::to_base64`])
/// are the better choice: anyone who captures one sealed packet can test
/// passphrase guesses offline, and Argon2id only makes each guess cost about
/// as much as one start of a node.
///
/// The bytes are overwritten with zeros when the key is dropped (copies the
/// compiler makes when a `Key` is moved are not: this is best effort).
/// `Debug` shows only the [`KeyId`]. Two keys are equal when their bytes are
/// (compared through a 128-bit fingerprint derived like the id).
///
/// ```
/// use shoal::Key;
///
/// let key = Key::from_hex(&"2a".repeat(32)).unwrap();
/// assert_eq!(key, Key::from_bytes([0x2a; 32]));
/// let shown = format!("{key:?}");
/// assert_eq!(shown, format!("Key({})", key.id()));
/// assert!(!shown.contains("2a2a"));
/// ```
#[derive(Clone)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    /// The first 16 bytes of HKDF(key, "shoal key-id v1"); the id is its
    /// first 4. Used to tell keys apart in caches without copying them.
    fingerprint: [u8; 16],
}

impl Drop for Key {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl ZeroizeOnDrop for Key {}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id())
    }
}

impl Key {
    /// A key made of these 32 bytes.
    ///
    /// ```
    /// use shoal::Key;
    ///
    /// let key = Key::from_bytes([1; 32]);
    /// assert_eq!(key.id(), Key::from_bytes([1; 32]).id());
    /// ```
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        let mut fingerprint = [0u8; 16];
        Hkdf::<Sha256>::new(None, &bytes)
            .expand(KEY_ID_INFO, &mut fingerprint)
            .expect("16 bytes is a valid HKDF-SHA256 output length");
        Key { bytes, fingerprint }
    }

    /// A fresh random key from `rng` (use a cryptographic one, such as
    /// `rand::rngs::OsRng`).
    ///
    /// ```
    /// use shoal::Key;
    ///
    /// let key = Key::generate(&mut rand::rngs::OsRng);
    /// let text = key.to_base64();
    /// assert_eq!(Key::parse(&text).unwrap(), key);
    /// ```
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Key {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(&mut bytes[..]);
        Key::from_bytes(*bytes)
    }

    /// Parses exactly 64 hex digits (either case).
    ///
    /// ```
    /// use shoal::{Key, KeyError};
    ///
    /// let key = Key::from_hex(&"AB".repeat(32)).unwrap();
    /// assert_eq!(key, Key::from_bytes([0xab; 32]));
    /// assert_eq!(Key::from_hex(&"zz".repeat(32)).unwrap_err(), KeyError::InvalidHex);
    /// ```
    pub fn from_hex(s: &str) -> Result<Key, KeyError> {
        if s.len() != 2 * KEY_LEN {
            return Err(KeyError::HexLength(s.len()));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(s, &mut bytes[..]).map_err(|_| KeyError::InvalidHex)?;
        Ok(Key::from_bytes(*bytes))
    }

    /// Parses standard base64 (RFC 4648 alphabet, with padding) of exactly
    /// 32 bytes, i.e. 44 characters ending in `=`.
    ///
    /// ```
    /// use shoal::{Key, KeyError};
    ///
    /// let key = Key::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    /// let mut bytes = [0u8; 32];
    /// for (i, b) in bytes.iter_mut().enumerate() { *b = i as u8; }
    /// assert_eq!(key, Key::from_bytes(bytes));
    /// assert_eq!(Key::from_base64("AAEC").unwrap_err(), KeyError::Base64Length(3));
    /// ```
    pub fn from_base64(s: &str) -> Result<Key, KeyError> {
        // 32 bytes need 44 characters; refuse long input before decoding it.
        if s.len() > 4 * KEY_LEN.div_ceil(3) {
            return Err(KeyError::Base64Length(s.len() / 4 * 3));
        }
        let decoded = Zeroizing::new(STANDARD.decode(s).map_err(|_| KeyError::InvalidBase64)?);
        if decoded.len() != KEY_LEN {
            return Err(KeyError::Base64Length(decoded.len()));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(&decoded);
        Ok(Key::from_bytes(*bytes))
    }

    /// Derives a key from a passphrase with Argon2id (version 0x13), salt
    /// `"shoal passphrase v1"`, m = 19 MiB, t = 2, p = 1, over the passphrase's
    /// UTF-8 bytes exactly as given (no trimming, no normalisation). (A
    /// passphrase of 4 GiB or more, beyond Argon2's limit, is first hashed
    /// with SHA-256.)
    ///
    /// Every node derives the same key from the same passphrase. It is meant
    /// to run once, at start: it takes about 35 ms of one core and 19 MiB of
    /// memory (measured on a 2-vCPU x86-64 Xeon, optimised build; shoal's
    /// dev profile optimises dependencies, so debug builds are about as
    /// fast). Each guess at a passphrase costs an attacker as much.
    ///
    /// ```
    /// use shoal::Key;
    ///
    /// let key = Key::from_passphrase("correct horse battery staple");
    /// assert_eq!(key.id().to_string().len(), 8);
    /// ```
    pub fn from_passphrase(passphrase: &str) -> Key {
        let params = Params::new(
            PASSPHRASE_M_COST_KIB,
            PASSPHRASE_T_COST,
            PASSPHRASE_P_COST,
            Some(KEY_LEN),
        )
        .expect("the fixed Argon2 parameters are valid");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        // Argon2 refuses passwords of 4 GiB or more; hash such an absurd
        // passphrase down first rather than fail or panic.
        let digest;
        let password = if u32::try_from(passphrase.len()).is_ok() {
            passphrase.as_bytes()
        } else {
            digest = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(passphrase.as_bytes())));
            &digest[..]
        };
        argon
            .hash_password_into(password, PASSPHRASE_SALT, &mut bytes[..])
            .expect("Argon2 accepts every password under 4 GiB with these parameters");
        Key::from_bytes(*bytes)
    }

    /// Reads a key given as text, hex or base64 (the same as
    /// `text.parse::<Key>()`):
    ///
    /// 1. surrounding whitespace is removed (keys often come from files
    ///    and environment variables with a trailing newline); nothing left
    ///    → [`KeyError::Empty`];
    /// 2. only hex digits → [`Key::from_hex`], which refuses any length but
    ///    64 ([`KeyError::HexLength`]);
    /// 3. 40 or more characters of the base64 alphabet → [`Key::from_base64`],
    ///    which refuses anything that does not decode to 32 bytes;
    /// 4. anything else → [`KeyError::NotAKey`].
    ///
    /// It never derives a key from a passphrase: that is
    /// [`Key::from_passphrase`], asked for by name.
    ///
    /// ```
    /// use shoal::{Key, KeyError};
    ///
    /// let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    /// let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    /// assert_eq!(Key::parse(hex)?, Key::parse(b64)?);
    /// assert_eq!(Key::parse(&format!("{hex}\n"))?, Key::from_hex(hex)?);
    /// // Mistyped keys are refused, not taken for passphrases:
    /// assert_eq!(Key::parse(&hex[1..]).unwrap_err(), KeyError::HexLength(63));
    /// assert_eq!(Key::parse(&b64[4..]).unwrap_err(), KeyError::Base64Length(29));
    /// assert_eq!(Key::parse("deadbeef").unwrap_err(), KeyError::HexLength(8));
    /// assert_eq!(Key::parse("correct horse").unwrap_err(), KeyError::NotAKey(13));
    /// assert_eq!(Key::parse(" \n").unwrap_err(), KeyError::Empty);
    /// # Ok::<(), KeyError>(())
    /// ```
    pub fn parse(s: &str) -> Result<Key, KeyError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(KeyError::Empty);
        }
        if s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Key::from_hex(s);
        }
        let base64_alphabet = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
        if s.len() >= 40 && s.bytes().all(base64_alphabet) {
            return Key::from_base64(s);
        }
        Err(KeyError::NotAKey(s.len()))
    }

    /// The key's public identifier.
    ///
    /// ```
    /// use shoal::Key;
    ///
    /// assert_eq!(Key::from_bytes([0; 32]).id().to_string(), "2b62c58c");
    /// ```
    pub fn id(&self) -> KeyId {
        let [a, b, c, d, ..] = self.fingerprint;
        KeyId([a, b, c, d])
    }

    /// The key as standard base64 (44 characters), a form [`Key::parse`]
    /// and [`Key::from_base64`] read back. The string is zeroed when dropped. Treat it as a secret.
    ///
    /// ```
    /// use shoal::Key;
    ///
    /// let text = Key::from_bytes([0; 32]).to_base64();
    /// assert_eq!(&*text, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    /// ```
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.bytes))
    }

    /// The secret bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// A 128-bit value that tells keys apart (its first 4 bytes are the id).
    pub(crate) fn fingerprint(&self) -> &[u8; 16] {
        &self.fingerprint
    }

    /// Gives this key another id (and so another fingerprint), to test
    /// what happens on an id collision.
    #[cfg(test)]
    pub(crate) fn force_id_for_tests(&mut self, id: KeyId) {
        self.fingerprint[..4].copy_from_slice(&id.0);
    }
}

impl FromStr for Key {
    type Err = KeyError;

    /// [`Key::parse`]: 64 hex digits or base64 of 32 bytes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Key::parse(s)
    }
}

/// [`Key::parse`], so that [`ConfigBuilder::secret_key`](crate::ConfigBuilder::secret_key)
/// takes key text as well as a [`Key`].
impl TryFrom<&str> for Key {
    type Error = KeyError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Key::parse(s)
    }
}

/// [`Key::parse`]; the string is zeroed once read.
impl TryFrom<String> for Key {
    type Error = KeyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Key::parse(&Zeroizing::new(s))
    }
}

/// A [`Key`] always converts to itself; this lets a function take either a
/// key or its text (`impl TryInto<Key, Error: Into<KeyError>>`).
impl From<Infallible> for KeyError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// Secret text (a passphrase, node-discovery's key string): zeroed when
/// dropped, and `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretText(Zeroizing<String>);

impl SecretText {
    pub(crate) fn new(text: String) -> Self {
        SecretText(Zeroizing::new(text))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn counting() -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8;
        }
        b
    }

    #[test]
    fn key_id_vectors() {
        // Independently: python3 -c "import hmac,hashlib;
        //   prk=hmac.new(b'\0'*32, key, hashlib.sha256).digest();
        //   print(hmac.new(prk, b'shoal key-id v1\x01', hashlib.sha256).hexdigest()[:8])"
        assert_eq!(
            Key::from_bytes([0; 32]).id(),
            KeyId([0x2b, 0x62, 0xc5, 0x8c])
        );
        assert_eq!(Key::from_bytes(counting()).id().to_string(), "f418c63e");
        // Stable across calls and clones.
        let k = Key::from_bytes(counting());
        assert_eq!(k.id(), k.clone().id());
        assert_ne!(k.id(), Key::from_bytes([0; 32]).id());
    }

    #[test]
    fn hex_and_base64_forms() {
        let want = Key::from_bytes(counting());
        assert_eq!(Key::from_hex(HEX).unwrap(), want);
        assert_eq!(Key::from_hex(&HEX.to_uppercase()).unwrap(), want);
        assert_eq!(Key::from_base64(B64).unwrap(), want);
        assert_eq!(Key::parse(HEX).unwrap(), want);
        assert_eq!(Key::parse(B64).unwrap(), want);
        assert_eq!(Key::parse(&format!("  {B64}\r\n")).unwrap(), want);
        assert_eq!(&*want.to_base64(), B64);
    }

    #[test]
    fn errors() {
        assert_eq!(Key::from_hex("").unwrap_err(), KeyError::HexLength(0));
        assert_eq!(
            Key::from_hex(&HEX[..62]).unwrap_err(),
            KeyError::HexLength(62)
        );
        assert_eq!(
            Key::from_hex(&format!("{HEX}00")).unwrap_err(),
            KeyError::HexLength(66)
        );
        let mut bad = HEX.to_string();
        bad.replace_range(10..11, "g");
        assert_eq!(Key::from_hex(&bad).unwrap_err(), KeyError::InvalidHex);
        // A multi-byte character at a byte length of 64 is not hex, not a panic.
        let odd = format!("é{}", &HEX[..62]);
        assert_eq!(odd.len(), 64);
        assert_eq!(Key::from_hex(&odd).unwrap_err(), KeyError::InvalidHex);

        assert_eq!(Key::from_base64("").unwrap_err(), KeyError::Base64Length(0));
        assert_eq!(
            Key::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==").unwrap_err(),
            KeyError::Base64Length(31)
        );
        assert_eq!(
            Key::from_base64(&"A".repeat(1000)).unwrap_err(),
            KeyError::Base64Length(750)
        );
        assert_eq!(
            Key::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap_err(),
            KeyError::InvalidBase64 // no padding
        );
        assert_eq!(
            Key::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh-=").unwrap_err(),
            KeyError::InvalidBase64 // URL-safe alphabet
        );
        assert_eq!(Key::parse("").unwrap_err(), KeyError::Empty);
        assert_eq!(Key::parse(" \t\n").unwrap_err(), KeyError::Empty);

        for s in ["", "1234567", "123456789", "1234567g", "é1234567"] {
            assert_eq!(
                s.parse::<KeyId>().unwrap_err(),
                KeyError::InvalidKeyId,
                "{s}"
            );
        }
        assert_eq!(
            "DEADBEEF".parse::<KeyId>().unwrap(),
            KeyId([0xde, 0xad, 0xbe, 0xef])
        );
    }

    /// Text is a key or an error: never a passphrase, whatever it looks like.
    #[test]
    fn parse_never_guesses_a_passphrase() {
        let cases = [
            (&HEX[1..], KeyError::HexLength(63)),
            (&HEX[..32], KeyError::HexLength(32)),
            ("deadbeef", KeyError::HexLength(8)),
            ("0", KeyError::HexLength(1)),
            (&B64[..43], KeyError::InvalidBase64),
            (&B64[4..], KeyError::Base64Length(29)),
            (
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
                KeyError::Base64Length(31),
            ),
            ("correct horse battery staple", KeyError::NotAKey(28)),
            ("s3cret", KeyError::NotAKey(6)),
            ("é", KeyError::NotAKey(2)),
        ];
        for (text, want) in cases {
            assert_eq!(Key::parse(text).unwrap_err(), want, "{text:?}");
            assert_eq!(text.parse::<Key>().unwrap_err(), want, "{text:?}");
            assert_eq!(Key::try_from(text).unwrap_err(), want, "{text:?}");
            assert_eq!(
                Key::try_from(text.to_owned()).unwrap_err(),
                want,
                "{text:?}"
            );
        }
        let want = Key::from_bytes(counting());
        assert_eq!(HEX.parse::<Key>().unwrap(), want);
        assert_eq!(Key::try_from(B64.to_owned()).unwrap(), want);
        let message = KeyError::NotAKey(28).to_string();
        assert!(message.contains("64 hex digits"), "{message}");
    }

    #[test]
    fn secret_text_debug_hides_it() {
        let secret = SecretText::new("s3cret".into());
        assert_eq!(secret.as_str(), "s3cret");
        assert_eq!(format!("{secret:?}"), "SecretText(..)");
    }

    #[test]
    fn messages_do_not_leak_input() {
        let e = Key::from_hex(&"zz".repeat(32)).unwrap_err();
        assert!(!e.to_string().contains("zz"));
        let id = KeyId([1, 2, 3, 4]);
        assert_eq!(
            KeyError::UnknownKey(id).to_string(),
            "no key with id 01020304 is installed"
        );
        assert_eq!(format!("{id:?}"), "KeyId(01020304)");
    }

    #[test]
    fn debug_shows_only_the_id() {
        let k = Key::from_bytes([0xab; 32]);
        let shown = format!("{k:?}");
        assert_eq!(shown, format!("Key({})", k.id()));
        assert!(!shown.contains("abab"));
    }

    #[test]
    fn generate_is_random() {
        let a = Key::generate(&mut rand::rngs::OsRng);
        let b = Key::generate(&mut rand::rngs::OsRng);
        assert_ne!(a, b);
    }

    /// Two Argon2 derivations in all (each ~35 ms optimised).
    #[test]
    fn passphrase_is_deterministic() {
        // Same passphrase, same key: pinned, so a change of parameters or
        // salt (which would split a cluster of mixed versions) fails here.
        // The vector is from the reference C implementation (libargon2,
        // argon2id_hash_raw(t=2, m=19456, p=1, pwd, salt, 32 bytes)).
        let k = Key::from_passphrase("shoal test passphrase");
        assert_eq!(
            &*k.to_base64(),
            "ruQp+c3UWMVNhKicWbeTP09CEtcGrj/dgKpHH3ITp2Q="
        );
        // A passphrase is taken exactly as given (no trimming), and a
        // different passphrase gives a different key.
        let other = Key::from_passphrase("shoal test passphrase\n");
        assert_ne!(other, k);
        assert_ne!(other.id(), k.id());
    }

    proptest! {
        #[test]
        fn hex_round_trip(bytes in any::<[u8; 32]>()) {
            let k = Key::from_bytes(bytes);
            prop_assert_eq!(Key::from_hex(&hex::encode(bytes)).unwrap(), k.clone());
            prop_assert_eq!(Key::parse(&hex::encode_upper(bytes)).unwrap(), k.clone());
            prop_assert_eq!(Key::parse(&k.to_base64()).unwrap(), k.clone());
            prop_assert_eq!(k.id().to_string().parse::<KeyId>().unwrap(), k.id());
        }

        #[test]
        fn from_functions_never_panic(s in ".{0,80}") {
            let _ = Key::parse(&s);
            let _ = Key::from_hex(&s);
            let _ = Key::from_base64(&s);
            let _ = s.parse::<KeyId>();
        }
    }
}
