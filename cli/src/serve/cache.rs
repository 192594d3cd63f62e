//! Recent answers to `GET /registrations[/{name}[/{version}]]`, kept as
//! their encoded bodies.
//!
//! A sidecar is read far more than it is written (clients poll it), and
//! an answer costs a copy of every registration it lists and its encoding:
//! about 3 µs per registration, which for a name with ten instances is
//! more than all the rest of the request. An answer is reused only while
//! both hold:
//!
//! * the registry index has not moved: any registration that comes, goes
//!   or changes anywhere on the LAN makes every kept answer stale, and a
//!   write through this sidecar empties the cache before it answers, so a
//!   client reads its own writes;
//! * it is younger than [`MAX_AGE`]: `lastKnown` (when the owner last
//!   confirmed a registration) moves with every hello of its owner
//!   without moving the index, so it may read up to that much older than
//!   an uncached answer would say. Hellos come every 400 ms by default, so
//!   `lastKnown` is never finer than that anyway.
//!
//! At most [`ENTRIES`] answers are kept, the least recently used going
//! first, so a client asking for many names costs bounded memory.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;

/// How long an answer may be reused while nothing changed.
pub const MAX_AGE: Duration = Duration::from_millis(100);

/// How many answers are kept.
pub const ENTRIES: usize = 256;

/// One kept answer.
struct Answer {
    index: u64,
    made: Instant,
    body: Bytes,
}

/// The kept answers, by the filter they answer.
pub struct Answers {
    kept: Mutex<LruCache<String, Answer>>,
}

impl Default for Answers {
    fn default() -> Self {
        Answers {
            kept: Mutex::new(LruCache::new(
                NonZeroUsize::new(ENTRIES).expect("ENTRIES is not zero"),
            )),
        }
    }
}

impl Answers {
    /// The body kept for `key` if it was made at `index` and is fresh.
    pub fn get(&self, key: &str, index: u64) -> Option<Bytes> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        match kept.get(key) {
            Some(a) if a.index == index && a.made.elapsed() < MAX_AGE => Some(a.body.clone()),
            _ => None,
        }
    }

    /// Keeps `body` as the answer for `key` at `index`.
    pub fn put(&self, key: String, index: u64, body: Bytes) {
        let answer = Answer {
            index,
            made: Instant::now(),
            body,
        };
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(key, answer);
    }

    /// Forgets every answer: this sidecar has just written to the registry.
    pub fn clear(&self) {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_reused_at_its_index_while_fresh_and_the_cache_is_bounded() {
        let answers = Answers::default();
        answers.put("a".into(), 7, Bytes::from_static(b"[1]"));
        assert_eq!(answers.get("a", 7).as_deref(), Some(&b"[1]"[..]));
        assert_eq!(answers.get("a", 8), None, "the index moved");
        assert_eq!(answers.get("b", 7), None);
        answers.clear();
        assert_eq!(answers.get("a", 7), None, "cleared by a write");
        answers.put("a".into(), 7, Bytes::from_static(b"[1]"));
        std::thread::sleep(MAX_AGE);
        assert_eq!(answers.get("a", 7), None, "too old");
        for i in 0..ENTRIES * 4 {
            answers.put(i.to_string(), 1, Bytes::new());
        }
        assert_eq!(answers.kept.lock().unwrap().len(), ENTRIES);
    }
}
