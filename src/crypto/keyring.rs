//! A keyring for key rotation, modelled on HashiCorp memberlist's: one
//! *primary* key seals everything sent, and any installed key (primary or
//! secondary) opens what is received.
//!
//! Rotating a cluster's key without a flag day:
//!
//! 1. [`install`](Keyring::install) the new key on every node (they still
//!    send with the old one, and now accept both);
//! 2. [`use_key`](Keyring::use_key) the new key on every node (they send
//!    with it; nodes not yet switched still accept it);
//! 3. [`remove`](Keyring::remove) the old key everywhere.
//!
//! At most [`MAX_KEYS`] keys are held, so looking a key up by the id in a
//! packet is a short linear scan.

use super::key::{Key, KeyError, KeyId};

/// Most keys a [`Keyring`] holds, primary included.
pub const MAX_KEYS: usize = 16;

/// One primary key and up to `MAX_KEYS - 1` secondary keys, no two with the
/// same [`KeyId`].
///
/// ```
/// use shoal::crypto::key::Key;
/// use shoal::crypto::keyring::Keyring;
///
/// let old = Key::from_bytes([1; 32]);
/// let new = Key::from_bytes([2; 32]);
/// let mut ring = Keyring::new(old.clone());
/// ring.install(new.clone()).unwrap();
/// assert_eq!(ring.primary(), &old);
/// ring.use_key(new.id()).unwrap();
/// assert_eq!(ring.primary(), &new);
/// assert_eq!(ring.ids(), vec![new.id(), old.id()]);
/// ring.remove(old.id()).unwrap();
/// assert!(ring.get(old.id()).is_none());
/// ```
#[derive(Debug, Clone)]
pub struct Keyring {
    /// `keys[0]` is the primary; the rest are secondaries in install order.
    /// Never empty, never longer than [`MAX_KEYS`], ids distinct.
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring holding only `primary`.
    ///
    /// ```
    /// use shoal::crypto::key::Key;
    /// use shoal::crypto::keyring::Keyring;
    ///
    /// let ring = Keyring::new(Key::from_bytes([1; 32]));
    /// assert_eq!(ring.len(), 1);
    /// ```
    pub fn new(primary: Key) -> Keyring {
        let mut keys = Vec::with_capacity(4);
        keys.push(primary);
        Keyring { keys }
    }

    /// Adds `key` as a secondary key (accepted on receipt, not used to
    /// send). Installing a key already held, primary or not, changes
    /// nothing.
    ///
    /// Refused with [`KeyError::KeyringFull`] when [`MAX_KEYS`] are held,
    /// and with [`KeyError::IdCollision`] when a different key with the same
    /// id is held.
    ///
    /// ```
    /// use shoal::crypto::key::{Key, KeyError};
    /// use shoal::crypto::keyring::{Keyring, MAX_KEYS};
    ///
    /// let mut ring = Keyring::new(Key::from_bytes([0; 32]));
    /// ring.install(Key::from_bytes([0; 32])).unwrap(); // the primary: no change
    /// for i in 1..MAX_KEYS {
    ///     ring.install(Key::from_bytes([i as u8; 32])).unwrap();
    /// }
    /// assert_eq!(ring.len(), MAX_KEYS);
    /// assert_eq!(
    ///     ring.install(Key::from_bytes([99; 32])),
    ///     Err(KeyError::KeyringFull { max: MAX_KEYS })
    /// );
    /// ```
    pub fn install(&mut self, key: Key) -> Result<(), KeyError> {
        if let Some(held) = self.get(key.id()) {
            return if held == &key {
                Ok(())
            } else {
                Err(KeyError::IdCollision(key.id()))
            };
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(KeyError::KeyringFull { max: MAX_KEYS });
        }
        self.keys.push(key);
        Ok(())
    }

    /// Makes the installed key `id` the primary; the old primary stays as a
    /// secondary. [`KeyError::UnknownKey`] if no key has that id.
    ///
    /// ```
    /// use shoal::crypto::key::{Key, KeyError, KeyId};
    /// use shoal::crypto::keyring::Keyring;
    ///
    /// let mut ring = Keyring::new(Key::from_bytes([1; 32]));
    /// let missing = KeyId([0; 4]);
    /// assert_eq!(ring.use_key(missing), Err(KeyError::UnknownKey(missing)));
    /// ```
    pub fn use_key(&mut self, id: KeyId) -> Result<(), KeyError> {
        let at = self.position(id).ok_or(KeyError::UnknownKey(id))?;
        // Keep the secondaries in order: the old primary becomes the first.
        if let Some(slice) = self.keys.get_mut(..=at) {
            slice.rotate_right(1);
        }
        Ok(())
    }

    /// Removes the secondary key `id`. The primary cannot be removed
    /// ([`KeyError::PrimaryKey`]); an id not installed gives
    /// [`KeyError::UnknownKey`].
    ///
    /// ```
    /// use shoal::crypto::key::{Key, KeyError};
    /// use shoal::crypto::keyring::Keyring;
    ///
    /// let primary = Key::from_bytes([1; 32]);
    /// let mut ring = Keyring::new(primary.clone());
    /// assert_eq!(ring.remove(primary.id()), Err(KeyError::PrimaryKey(primary.id())));
    /// ```
    pub fn remove(&mut self, id: KeyId) -> Result<(), KeyError> {
        match self.position(id) {
            None => Err(KeyError::UnknownKey(id)),
            Some(0) => Err(KeyError::PrimaryKey(id)),
            Some(at) => {
                self.keys.remove(at);
                Ok(())
            }
        }
    }

    /// The key that seals what this node sends.
    ///
    /// ```
    /// use shoal::crypto::key::Key;
    /// use shoal::crypto::keyring::Keyring;
    ///
    /// let ring = Keyring::new(Key::from_bytes([1; 32]));
    /// assert_eq!(ring.primary(), &Key::from_bytes([1; 32]));
    /// ```
    pub fn primary(&self) -> &Key {
        // `keys` is never empty: `new` puts one in and `remove` keeps index 0.
        &self.keys[0]
    }

    /// The installed key with this id, primary or secondary.
    ///
    /// ```
    /// use shoal::crypto::key::{Key, KeyId};
    /// use shoal::crypto::keyring::Keyring;
    ///
    /// let key = Key::from_bytes([1; 32]);
    /// let ring = Keyring::new(key.clone());
    /// assert_eq!(ring.get(key.id()), Some(&key));
    /// assert_eq!(ring.get(KeyId([0; 4])), None);
    /// ```
    pub fn get(&self, id: KeyId) -> Option<&Key> {
        self.keys.iter().find(|k| k.id() == id)
    }

    /// The ids of all installed keys, primary first, then the secondaries in
    /// the order they were installed (a demoted primary comes first).
    ///
    /// ```
    /// use shoal::crypto::key::Key;
    /// use shoal::crypto::keyring::Keyring;
    ///
    /// let (a, b) = (Key::from_bytes([1; 32]), Key::from_bytes([2; 32]));
    /// let mut ring = Keyring::new(a.clone());
    /// ring.install(b.clone()).unwrap();
    /// assert_eq!(ring.ids(), vec![a.id(), b.id()]);
    /// ```
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(Key::id).collect()
    }

    /// How many keys are installed (at least 1).
    ///
    /// ```
    /// use shoal::crypto::key::Key;
    /// use shoal::crypto::keyring::Keyring;
    ///
    /// assert_eq!(Keyring::new(Key::from_bytes([1; 32])).len(), 1);
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    fn position(&self, id: KeyId) -> Option<usize> {
        self.keys.iter().position(|k| k.id() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key::from_bytes([n; 32])
    }

    #[test]
    fn install_is_idempotent() {
        let mut ring = Keyring::new(key(1));
        ring.install(key(2)).unwrap();
        ring.install(key(2)).unwrap();
        ring.install(key(1)).unwrap();
        assert_eq!(ring.ids(), vec![key(1).id(), key(2).id()]);
        assert_eq!(ring.primary(), &key(1));
    }

    #[test]
    fn use_and_remove() {
        let mut ring = Keyring::new(key(1));
        for n in 2..=4 {
            ring.install(key(n)).unwrap();
        }
        ring.use_key(key(3).id()).unwrap();
        assert_eq!(ring.primary(), &key(3));
        assert_eq!(
            ring.ids(),
            vec![key(3).id(), key(1).id(), key(2).id(), key(4).id()]
        );
        // Using the primary again is a no-op.
        ring.use_key(key(3).id()).unwrap();
        assert_eq!(ring.primary(), &key(3));
        assert_eq!(
            ring.remove(key(3).id()),
            Err(KeyError::PrimaryKey(key(3).id()))
        );
        ring.remove(key(1).id()).unwrap();
        assert_eq!(
            ring.remove(key(1).id()),
            Err(KeyError::UnknownKey(key(1).id()))
        );
        assert_eq!(
            ring.use_key(key(1).id()),
            Err(KeyError::UnknownKey(key(1).id()))
        );
        assert_eq!(ring.ids(), vec![key(3).id(), key(2).id(), key(4).id()]);
        for n in [2, 3, 4] {
            assert_eq!(ring.get(key(n).id()), Some(&key(n)));
        }
        assert_eq!(ring.get(key(1).id()), None);
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn bounded() {
        let mut ring = Keyring::new(key(0));
        for n in 1..MAX_KEYS as u8 {
            ring.install(key(n)).unwrap();
        }
        assert_eq!(
            ring.install(key(200)),
            Err(KeyError::KeyringFull { max: MAX_KEYS })
        );
        // Re-installing a held key is still fine when full.
        ring.install(key(5)).unwrap();
        ring.remove(key(5).id()).unwrap();
        ring.install(key(200)).unwrap();
        assert_eq!(ring.len(), MAX_KEYS);
    }

    #[test]
    fn id_collision_is_refused() {
        // Finding two real keys with colliding 32-bit ids takes ~2^16 keys;
        // fake one instead.
        let mut ring = Keyring::new(key(1));
        let a = key(1);
        let mut b = key(2);
        b.force_id_for_tests(a.id());
        assert_ne!(a, b);
        assert_eq!(ring.install(b), Err(KeyError::IdCollision(a.id())));
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn debug_hides_keys() {
        let ring = Keyring::new(key(0xab));
        let shown = format!("{ring:?}");
        assert!(shown.contains(&key(0xab).id().to_string()), "{shown}");
        assert!(!shown.contains("171, 171"), "{shown}");
    }
}
