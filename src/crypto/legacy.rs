//! node-discovery's cipher: what Node's `crypto.createCipher('aes256', key)` does.
//!
//! AES-256-CBC with PKCS#7 padding, key and IV derived from the key string by
//! OpenSSL's `EVP_BytesToKey(MD5, no salt, 1 iteration)`.
//!
//! **This is weak.** The IV is fixed per key, so equal payloads give equal
//! ciphertexts; there is no integrity check, so bits can be flipped; there is
//! no replay protection, so a captured packet can be sent again forever. It
//! exists only so that shoal can talk to node-discovery peers.

use aes::{Aes256, Aes256Dec};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit, KeyIvInit};
use md5::{Digest, Md5};

/// AES block size: ciphertexts are a non-zero multiple of it.
const AES_BLOCK: usize = 16;

/// A key derived the way node-discovery derives it.
///
/// ```
/// use shoal::crypto::legacy::LegacyCipher;
///
/// let cipher = LegacyCipher::new(b"shoal-test-key");
/// let sealed = cipher.encrypt(br#"{"event":"hello"}"#);
/// assert_eq!(sealed.len(), 32); // PKCS#7 pads 17 bytes to two blocks
/// assert_eq!(cipher.decrypt(&sealed).unwrap(), br#"{"event":"hello"}"#);
/// assert!(LegacyCipher::new(b"other").decrypt(&sealed).is_err());
/// ```
#[derive(Clone)]
pub struct LegacyCipher {
    key: [u8; 32],
    iv: [u8; 16],
    /// The key's decryption schedule, expanded once: every received
    /// datagram is decrypted, and expanding it took a fifth of that.
    decryptor: Aes256Dec,
}

impl std::fmt::Debug for LegacyCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegacyCipher(..)")
    }
}

/// OpenSSL's `EVP_BytesToKey` with MD5, no salt and one iteration, for a
/// 32-byte key and a 16-byte IV.
pub fn evp_bytes_to_key(passphrase: &[u8]) -> ([u8; 32], [u8; 16]) {
    // D0 = MD5(pass), Di = MD5(D(i-1) || pass); key || iv = D0 || D1 || D2.
    let d0: [u8; 16] = Md5::new().chain_update(passphrase).finalize().into();
    let d1: [u8; 16] = Md5::new()
        .chain_update(d0)
        .chain_update(passphrase)
        .finalize()
        .into();
    let d2: [u8; 16] = Md5::new()
        .chain_update(d1)
        .chain_update(passphrase)
        .finalize()
        .into();
    let mut key = [0u8; 32];
    let (lo, hi) = key.split_at_mut(16);
    lo.copy_from_slice(&d0);
    hi.copy_from_slice(&d1);
    (key, d2)
}

impl LegacyCipher {
    /// Derives key and IV from the key string (its UTF-8 bytes, as Node uses them).
    pub fn new(passphrase: &[u8]) -> Self {
        let (key, iv) = evp_bytes_to_key(passphrase);
        let decryptor = Aes256Dec::new(&key.into());
        LegacyCipher { key, iv, decryptor }
    }

    /// Encrypts with PKCS#7 padding.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        cbc::Encryptor::<Aes256>::new(&self.key.into(), &self.iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plain)
    }

    /// Decrypts and strips the padding. A wrong key shows as [`DecryptError`]
    /// (bad padding) most of the time, and as garbage the rest of the time:
    /// this cipher has no integrity check.
    pub fn decrypt(&self, cipher: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if cipher.is_empty() || cipher.len() % AES_BLOCK != 0 {
            return Err(DecryptError);
        }
        cbc::Decryptor::<Aes256Dec>::inner_iv_init(self.decryptor.clone(), &self.iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(cipher)
            .map_err(|_| DecryptError)
    }
}

/// A legacy ciphertext that does not decrypt: a length that is not a
/// positive multiple of the AES block, or bad PKCS#7 padding.
///
/// ```
/// use shoal::crypto::legacy::{DecryptError, LegacyCipher};
/// assert_eq!(LegacyCipher::new(b"k").decrypt(&[0; 15]), Err(DecryptError));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("decryption failed")]
pub struct DecryptError;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"shoal-test-key";

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn evp_matches_openssl() {
        // `openssl enc -aes-256-cbc -nosalt -md md5 -k shoal-test-key -P`
        let (key, iv) = evp_bytes_to_key(KEY);
        assert_eq!(
            key.to_vec(),
            hex("b926677b02cc329e814da0ed134c85c68f6c7cc8f3b451501e3b98f0fa7f1618")
        );
        assert_eq!(iv.to_vec(), hex("9d9319bfa407ae74406cd6c0d46f8be8"));

        // Node uses the key string's UTF-8 bytes; so does openssl's -k.
        let (key, iv) = evp_bytes_to_key("clé-ünïcode".as_bytes());
        assert_eq!(
            key.to_vec(),
            hex("cdd91704cfa0cf9fb5e4c64fc422147349b9ccd0407ae31235c605277174e047")
        );
        assert_eq!(iv.to_vec(), hex("d1f50b6541389b890b6dd3ac7d67e45f"));
    }

    #[test]
    fn matches_node_create_cipher() {
        // crypto.createCipher('aes256', 'shoal-test-key') on Node 20.
        let c = LegacyCipher::new(KEY);
        let cases: [(&[u8], &str); 3] = [
            (
                b"node-discovery legacy cipher vector",
                "a390484c26d76fb1923a52675b578d61dcd7f38a12b1f5719a47edc59c394bed\
                 c376325f7e80fb99ab0271759dc3b1b9",
            ),
            (b"", "2f67561081256409d441024d0bfb9c7f"),
            (
                b"0123456789abcdef",
                "5cf3463e2eca134a99aeece7c6735c50dd1f2602cc973df02ecbd7dea25429ac",
            ),
        ];
        for (plain, cipher) in cases {
            assert_eq!(c.encrypt(plain), hex(cipher));
            assert_eq!(c.decrypt(&hex(cipher)).unwrap(), plain);
        }
    }

    #[test]
    fn bad_lengths_are_refused() {
        let c = LegacyCipher::new(KEY);
        assert_eq!(c.decrypt(&[]), Err(DecryptError));
        assert_eq!(c.decrypt(&[0u8; 15]), Err(DecryptError));
        assert_eq!(c.decrypt(&[0u8; 17]), Err(DecryptError));
        let mut good = c.encrypt(b"hello");
        good.pop();
        assert_eq!(c.decrypt(&good), Err(DecryptError));
    }

    #[test]
    fn wrong_key_is_refused() {
        let cipher = hex("2f67561081256409d441024d0bfb9c7f");
        assert_eq!(
            LegacyCipher::new(b"another key").decrypt(&cipher),
            Err(DecryptError)
        );
    }

    #[test]
    fn bad_padding_is_refused() {
        let c = LegacyCipher::new(KEY);
        let mut cipher = c.encrypt(b"0123456789abcdef");
        // Flip the last byte of the second-to-last block: that flips the
        // last plaintext byte, i.e. the padding byte (16 -> 17).
        cipher[15] ^= 0x01;
        assert_eq!(c.decrypt(&cipher), Err(DecryptError));
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", LegacyCipher::new(KEY)), "LegacyCipher(..)");
    }

    proptest! {
        #[test]
        fn round_trip(key in proptest::collection::vec(any::<u8>(), 0..40),
                      plain in proptest::collection::vec(any::<u8>(), 0..600)) {
            let c = LegacyCipher::new(&key);
            let cipher = c.encrypt(&plain);
            prop_assert_eq!(cipher.len(), (plain.len() / 16 + 1) * 16);
            prop_assert_eq!(c.decrypt(&cipher).unwrap(), plain);
        }

        #[test]
        fn random_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = LegacyCipher::new(KEY).decrypt(&bytes);
        }
    }
}
