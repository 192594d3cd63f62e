//! node-discovery's cipher: what Node's `crypto.createCipher('aes256', key)` does.
//!
//! AES-256-CBC with PKCS#7 padding, key and IV derived from the key string by
//! OpenSSL's `EVP_BytesToKey(MD5, no salt, 1 iteration)`.
//!
//! **This is weak.** The IV is fixed per key, so equal payloads give equal
//! ciphertexts; there is no integrity check, so bits can be flipped; there is
//! no replay protection, so a captured packet can be sent again forever. It
//! exists only so that shoal can talk to node-discovery peers.

use super::super::wire::DecodeError;

/// A key derived the way node-discovery derives it.
#[derive(Clone)]
pub struct LegacyCipher {
    key: [u8; 32],
    iv: [u8; 16],
}

impl std::fmt::Debug for LegacyCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegacyCipher(..)")
    }
}

/// OpenSSL's `EVP_BytesToKey` with MD5, no salt and one iteration, for a
/// 32-byte key and a 16-byte IV.
pub fn evp_bytes_to_key(passphrase: &[u8]) -> ([u8; 32], [u8; 16]) {
    todo!()
}

impl LegacyCipher {
    /// Derives key and IV from the key string (its UTF-8 bytes, as Node uses them).
    pub fn new(passphrase: &[u8]) -> Self {
        todo!()
    }

    /// Encrypts with PKCS#7 padding.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        todo!()
    }

    /// Decrypts and strips the padding; a wrong key shows as [`DecodeError::Decrypt`].
    pub fn decrypt(&self, cipher: &[u8]) -> Result<Vec<u8>, DecodeError> {
        todo!()
    }
}
