//! Bounded reassembly of messages that arrive in pieces: the limits, the
//! memory accounting and the timeouts shared by `WRAP` blocks
//! ([`crate::wire::framing`]) and sealed fragments ([`crate::crypto::secure`]).
//!
//! Each format keeps its own checks (offsets and checksums, or fragment
//! indexes and counts) and tells [`Reassembly::admit`] whether a piece
//! completes its message; this module decides whether the piece may be held,
//! holds it, hands back the whole message, and drops what times out.
//!
//! Deadlines live in an ordered index beside the messages, so finding the
//! next one is a lookup and [`Reassembly::expire`] visits only the messages
//! that are due: a flood of incomplete messages makes a wake-up no dearer.
//! Each source's count of incomplete messages is kept too, so admitting a
//! new message never scans the others.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// From which piece an incomplete message's timeout runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// From its first piece: trickling pieces cannot keep a message alive.
    AfterFirstPiece,
    /// From its latest accepted piece: a slow but steady sender's message
    /// survives.
    AfterLastPiece,
}

/// What a [`Reassembly`] may hold, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most data bytes one message may gather.
    pub(crate) max_message: usize,
    /// Most incomplete messages held at once.
    pub(crate) max_pending: usize,
    /// Most bytes charged for incomplete messages: each piece's length plus
    /// [`piece_cost`](Self::piece_cost).
    pub(crate) max_pending_bytes: usize,
    /// Most incomplete messages from one source, so that one sender cannot
    /// take the whole budget from the others.
    pub(crate) max_pending_per_source: usize,
    /// Bytes charged per held piece on top of its length, for the memory a
    /// piece takes beyond its data (0 where the format already refuses
    /// small pieces).
    pub(crate) piece_cost: usize,
    /// How long an incomplete message is held.
    pub(crate) timeout: Duration,
    /// From which piece [`timeout`](Self::timeout) runs.
    pub(crate) expiry: Expiry,
}

/// Why [`Reassembly::admit`] refused a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused<E> {
    /// The format's check refused it; nothing changed.
    Format(E),
    /// Holding it would exceed [`Limits::max_pending`],
    /// [`Limits::max_pending_per_source`] or [`Limits::max_pending_bytes`];
    /// whatever was held is kept.
    Full,
    /// Its message would gather more than [`Limits::max_message`]: the
    /// message is dropped.
    TooLarge,
}

/// An incomplete message, as a format sees it to check a new piece
/// against the pieces already held.
#[derive(Debug)]
pub(crate) struct Partial<M, P> {
    /// What the format recorded from the message's first piece.
    meta: M,
    /// The data held, by position; a position is held at most once.
    pieces: BTreeMap<P, Vec<u8>>,
    /// Sum of the pieces' lengths.
    data: usize,
    /// Where the deadline index files it; `None` when the timeout reaches
    /// beyond what an [`Instant`] can hold (it is then never dropped).
    deadline: Option<Instant>,
}

impl<M, P> Partial<M, P> {
    /// What the format recorded from the first piece.
    pub(crate) fn meta(&self) -> &M {
        &self.meta
    }

    /// The pieces held, by position.
    pub(crate) fn pieces(&self) -> &BTreeMap<P, Vec<u8>> {
        &self.pieces
    }

    /// Data bytes held.
    pub(crate) fn data_len(&self) -> usize {
        self.data
    }

    /// What this message is charged against [`Limits::max_pending_bytes`].
    fn charge(&self, piece_cost: usize) -> usize {
        self.data + self.pieces.len() * piece_cost
    }
}

impl<M, P: Ord> Partial<M, P> {
    /// The whole message: the held pieces with `piece` at `at`, in order.
    fn assemble(self, at: &P, piece: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data + piece.len());
        let mut piece = Some(piece);
        for (position, held) in self.pieces {
            if position > *at {
                if let Some(p) = piece.take() {
                    out.extend_from_slice(p);
                }
            }
            out.extend_from_slice(&held);
        }
        if let Some(p) = piece {
            out.extend_from_slice(p);
        }
        out
    }
}

/// Incomplete messages keyed by (source, id), with `M` what the format
/// records of each and `P` the position of a piece within its message.
///
/// Memory held is bounded by [`Limits`], and nothing is ever allocated from
/// a declared length, only from piece data actually received.
pub(crate) struct Reassembly<S, I, M, P> {
    limits: Limits,
    partials: HashMap<(S, I), Partial<M, P>>,
    /// Incomplete messages per source (entries are never 0).
    per_source: HashMap<S, usize>,
    /// Every partial with a deadline, in deadline order.
    deadlines: BTreeSet<(Instant, (S, I))>,
    /// Sum of the partials' charges.
    charged: usize,
    /// Index entries [`expire`](Self::expire) has looked at, so a test can
    /// check that it looks at no more than the due ones and one more.
    #[cfg(test)]
    examined: usize,
}

/// Shows the limits and what is pending, not the data held.
impl<S, I, M, P> fmt::Debug for Reassembly<S, I, M, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reassembly")
            .field("limits", &self.limits)
            .field("pending", &(self.partials.len(), self.charged))
            .finish_non_exhaustive()
    }
}

impl<S, I, M, P> Reassembly<S, I, M, P>
where
    S: Copy + Eq + Hash + Ord,
    I: Copy + Eq + Hash + Ord,
    P: Ord,
{
    /// An empty reassembly.
    pub(crate) fn new(limits: Limits) -> Self {
        Reassembly {
            limits,
            partials: HashMap::new(),
            per_source: HashMap::new(),
            deadlines: BTreeSet::new(),
            charged: 0,
            #[cfg(test)]
            examined: 0,
        }
    }

    /// The limits it was made with.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The incomplete message `key`, if held.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &(S, I)) -> Option<&Partial<M, P>> {
        self.partials.get(key)
    }

    /// Takes one piece of message `key`, at position `at`.
    ///
    /// If the message is held, `check` first compares the piece with it
    /// (the format's own rules) and says whether the piece makes it whole;
    /// otherwise the piece starts it, recording `meta`. A message's first
    /// piece never completes it: formats hand back single-piece messages
    /// themselves (WRAP without copying).
    ///
    /// Then, in order: a piece at a position already held is ignored
    /// (`Ok(None)`); one that would make its message larger than
    /// [`Limits::max_message`] is refused and the message dropped
    /// ([`Refused::TooLarge`]); a completing piece hands back the whole
    /// message, needing no room since it frees its message's; any other is
    /// refused ([`Refused::Full`]) if it starts a message beyond
    /// [`Limits::max_pending`] or [`Limits::max_pending_per_source`], or if
    /// its charge would exceed [`Limits::max_pending_bytes`].
    ///
    /// One hash lookup of `key` whatever happens; the piece is copied (when
    /// given as a slice) only once it is held.
    pub(crate) fn admit<B, E>(
        &mut self,
        now: Instant,
        key: (S, I),
        meta: M,
        at: P,
        piece: B,
        check: impl FnOnce(&Partial<M, P>) -> Result<bool, E>,
    ) -> Result<Option<Vec<u8>>, Refused<E>>
    where
        B: AsRef<[u8]> + Into<Vec<u8>>,
    {
        let limits = self.limits;
        let len = piece.as_ref().len();
        let cost = len.saturating_add(limits.piece_cost);
        let fits = |charged: usize| charged.saturating_add(cost) <= limits.max_pending_bytes;
        let pending = self.partials.len();
        let deadline = now.checked_add(limits.timeout);
        let partial = match self.partials.entry(key) {
            Entry::Occupied(held) => {
                let completes = check(held.get()).map_err(Refused::Format)?;
                let p = held.get();
                if p.pieces.contains_key(&at) {
                    return Ok(None);
                }
                if p.data.saturating_add(len) > limits.max_message {
                    let p = held.remove();
                    self.forget(&key, &p);
                    return Err(Refused::TooLarge);
                }
                if completes {
                    let p = held.remove();
                    self.forget(&key, &p);
                    return Ok(Some(p.assemble(&at, piece.as_ref())));
                }
                if !fits(self.charged) {
                    return Err(Refused::Full);
                }
                let p = held.into_mut();
                if limits.expiry == Expiry::AfterLastPiece && p.deadline != deadline {
                    if let Some(old) = p.deadline {
                        self.deadlines.remove(&(old, key));
                    }
                    if let Some(new) = deadline {
                        self.deadlines.insert((new, key));
                    }
                    p.deadline = deadline;
                }
                p
            }
            Entry::Vacant(slot) => {
                if len > limits.max_message {
                    return Err(Refused::TooLarge);
                }
                if pending >= limits.max_pending || !fits(self.charged) {
                    return Err(Refused::Full);
                }
                match self.per_source.entry(key.0) {
                    Entry::Occupied(mut n) if *n.get() < limits.max_pending_per_source => {
                        *n.get_mut() += 1;
                    }
                    Entry::Vacant(n) if limits.max_pending_per_source > 0 => {
                        n.insert(1);
                    }
                    _ => return Err(Refused::Full),
                }
                if let Some(due) = deadline {
                    self.deadlines.insert((due, key));
                }
                slot.insert(Partial {
                    meta,
                    pieces: BTreeMap::new(),
                    data: 0,
                    deadline,
                })
            }
        };
        partial.pieces.insert(at, piece.into());
        partial.data += len;
        self.charged += cost;
        Ok(None)
    }

    /// Drops the incomplete messages whose deadline is `now` or earlier, in
    /// deadline order; returns how many. Looks at the due ones only (and at
    /// the first one not due).
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some(&(due, key)) = self.deadlines.first() {
            #[cfg(test)]
            {
                self.examined += 1;
            }
            if due > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(p) = self.partials.remove(&key) {
                self.release(&key, &p);
            }
            dropped += 1;
        }
        dropped
    }

    /// The earliest deadline of an incomplete message; `None` when nothing
    /// is pending (or every deadline is beyond what an [`Instant`] can hold).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(due, _)| due)
    }

    /// Incomplete messages held, and the bytes charged for them.
    pub(crate) fn pending(&self) -> (usize, usize) {
        (self.partials.len(), self.charged)
    }

    /// Sources with at least one incomplete message.
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.per_source.len()
    }

    /// Takes a partial removed from the table out of the deadline index
    /// and the accounting.
    fn forget(&mut self, key: &(S, I), p: &Partial<M, P>) {
        if let Some(due) = p.deadline {
            self.deadlines.remove(&(due, *key));
        }
        self.release(key, p);
    }

    /// Takes a partial removed from the table and the index out of the
    /// accounting.
    fn release(&mut self, key: &(S, I), p: &Partial<M, P>) {
        self.charged -= p.charge(self.limits.piece_cost);
        if let Entry::Occupied(mut n) = self.per_source.entry(key.0) {
            if *n.get() > 1 {
                *n.get_mut() -= 1;
            } else {
                n.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Core = Reassembly<u8, u8, (), u16>;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn limits() -> Limits {
        Limits {
            max_message: 1000,
            max_pending: 8,
            max_pending_bytes: 10_000,
            max_pending_per_source: 4,
            piece_cost: 0,
            timeout: TIMEOUT,
            expiry: Expiry::AfterFirstPiece,
        }
    }

    impl<S, I, M, P> Reassembly<S, I, M, P>
    where
        S: Copy + Eq + Hash + Ord + fmt::Debug,
        I: Copy + Eq + Hash + Ord + fmt::Debug,
        P: Ord,
    {
        /// Panics unless the accounting agrees with what is held.
        fn check(&self) {
            let mut charged = 0;
            let mut per_source: HashMap<S, usize> = HashMap::new();
            let mut indexed = BTreeSet::new();
            for (key, p) in &self.partials {
                let data: usize = p.pieces.values().map(Vec::len).sum();
                assert_eq!(p.data, data);
                assert!(!p.pieces.is_empty());
                assert!(p.data <= self.limits.max_message);
                charged += data + p.pieces.len() * self.limits.piece_cost;
                *per_source.entry(key.0).or_insert(0) += 1;
                if let Some(due) = p.deadline {
                    indexed.insert((due, *key));
                }
            }
            assert_eq!(self.charged, charged);
            assert_eq!(self.per_source, per_source);
            assert_eq!(self.deadlines, indexed);
            assert!(self.partials.len() <= self.limits.max_pending);
            assert!(self.charged <= self.limits.max_pending_bytes);
            assert!(per_source
                .values()
                .all(|&n| n <= self.limits.max_pending_per_source));
        }
    }

    /// What the tests' format refuses.
    type Outcome = Result<Option<Vec<u8>>, Refused<&'static str>>;

    /// Admits `piece`, the format saying that it `completes` its message.
    fn admit<S, I>(
        c: &mut Reassembly<S, I, (), u16>,
        now: Instant,
        key: (S, I),
        at: u16,
        piece: impl AsRef<[u8]> + Into<Vec<u8>>,
        completes: bool,
    ) -> Outcome
    where
        S: Copy + Eq + Hash + Ord,
        I: Copy + Eq + Hash + Ord,
    {
        c.admit(now, key, (), at, piece, |_| Ok(completes))
    }

    /// Admits `len` bytes at `at`, not completing.
    fn put(
        c: &mut Core,
        now: Instant,
        key: (u8, u8),
        at: u16,
        len: usize,
    ) -> Result<(), Refused<&'static str>> {
        admit(c, now, key, at, vec![at as u8; len], false).map(|whole| assert_eq!(whole, None))
    }

    #[test]
    fn assembles_in_position_order_and_accounting_returns_to_zero() {
        let mut c = Core::new(Limits {
            piece_cost: 10,
            ..limits()
        });
        let now = Instant::now();
        put(&mut c, now, (1, 1), 2, 3).unwrap();
        put(&mut c, now, (1, 1), 0, 3).unwrap();
        assert_eq!(c.pending(), (1, 2 * (3 + 10)));
        assert_eq!(c.get(&(1, 1)).map(Partial::data_len), Some(6));
        // A held position is ignored, whatever `completes` says.
        assert_eq!(admit(&mut c, now, (1, 1), 0, &[9u8; 3][..], true), Ok(None));
        c.check();
        let whole = admit(&mut c, now, (1, 1), 1, &[1u8; 3][..], true).unwrap();
        assert_eq!(whole, Some(vec![0, 0, 0, 1, 1, 1, 2, 2, 2]));
        assert_eq!(
            (c.pending(), c.next_deadline(), c.sources()),
            ((0, 0), None, 0)
        );
        c.check();
        // A first piece never completes its message.
        assert_eq!(admit(&mut c, now, (1, 2), 0, vec![7; 5], true), Ok(None));
        assert_eq!(c.pending(), (1, 5 + 10));
        c.check();
    }

    #[test]
    fn the_format_check_sees_the_message_and_may_refuse() {
        let mut c = Reassembly::<u8, u8, u32, u16>::new(limits());
        let now = Instant::now();
        let refuse = |_: &Partial<u32, u16>| Err::<bool, _>("no");
        let never = |_: &Partial<u32, u16>| -> Result<bool, &str> { unreachable!() };
        // Not called for a first piece, whose meta is recorded.
        assert_eq!(c.admit(now, (1, 1), 7, 3, vec![3; 4], never), Ok(None));
        let check = |p: &Partial<u32, u16>| {
            assert_eq!((*p.meta(), p.data_len()), (7, 4));
            assert_eq!(p.pieces().keys().collect::<Vec<_>>(), [&3]);
            Ok::<_, &str>(false)
        };
        assert_eq!(c.admit(now, (1, 1), 8, 4, vec![4; 4], check), Ok(None));
        // A refusal changes nothing, even for a piece already held.
        assert_eq!(
            c.admit(now, (1, 1), 9, 3, vec![3; 4], refuse),
            Err(Refused::Format("no"))
        );
        assert_eq!(
            c.admit(now, (1, 1), 9, 5, vec![5; 4], refuse),
            Err(Refused::Format("no"))
        );
        assert_eq!(c.pending(), (1, 8));
        let whole = c.admit(now, (1, 1), 9, 5, vec![5; 4], |p| {
            Ok::<_, &str>(*p.meta() == 7)
        });
        assert_eq!(whole, Ok(Some(vec![3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5])));
        c.check();
    }

    #[test]
    fn count_limits_and_the_per_source_share() {
        let mut c = Core::new(Limits {
            max_pending: 5,
            max_pending_per_source: 2,
            ..limits()
        });
        let now = Instant::now();
        put(&mut c, now, (1, 1), 0, 1).unwrap();
        put(&mut c, now, (1, 2), 0, 1).unwrap();
        assert_eq!(put(&mut c, now, (1, 3), 0, 1), Err(Refused::Full));
        // The source's held messages still take pieces.
        put(&mut c, now, (1, 2), 1, 1).unwrap();
        // Other sources get their share, up to the total.
        for key in [(2, 1), (2, 2), (3, 1)] {
            put(&mut c, now, key, 0, 1).unwrap();
        }
        assert_eq!(put(&mut c, now, (4, 1), 0, 1), Err(Refused::Full));
        assert_eq!(c.pending(), (5, 6));
        c.check();
        // Completing one frees a slot for its source, and in the total.
        assert!(admit(&mut c, now, (1, 1), 1, vec![0], true)
            .unwrap()
            .is_some());
        put(&mut c, now, (1, 3), 0, 1).unwrap();
        assert_eq!(put(&mut c, now, (4, 1), 0, 1), Err(Refused::Full));
        c.check();
        // A completing piece needs no slot.
        put(&mut c, now, (1, 3), 1, 1).unwrap();
        assert!(admit(&mut c, now, (1, 3), 2, vec![0], true)
            .unwrap()
            .is_some());
        let mut c = Core::new(Limits {
            max_pending_per_source: 0,
            ..limits()
        });
        assert_eq!(put(&mut c, now, (1, 1), 0, 1), Err(Refused::Full));
        assert_eq!((c.pending(), c.sources()), ((0, 0), 0));
    }

    #[test]
    fn byte_limits_count_the_piece_cost() {
        let mut c = Core::new(Limits {
            max_pending_bytes: 100,
            piece_cost: 20,
            ..limits()
        });
        let now = Instant::now();
        put(&mut c, now, (1, 1), 0, 30).unwrap();
        put(&mut c, now, (1, 1), 1, 30).unwrap();
        assert_eq!(c.pending(), (1, 100));
        // Nothing more fits, not even an empty piece or a new message...
        assert_eq!(put(&mut c, now, (1, 1), 2, 0), Err(Refused::Full));
        assert_eq!(put(&mut c, now, (2, 1), 0, 0), Err(Refused::Full));
        assert_eq!(c.pending(), (1, 100));
        // ...but a completing piece does.
        let whole = admit(&mut c, now, (1, 1), 2, vec![2; 30], true).unwrap();
        assert_eq!(whole.map(|w| w.len()), Some(90));
        assert_eq!(c.pending(), (0, 0));
        c.check();
    }

    #[test]
    fn a_message_too_large_is_dropped() {
        let mut c = Core::new(Limits {
            max_message: 100,
            ..limits()
        });
        let now = Instant::now();
        assert_eq!(put(&mut c, now, (1, 1), 0, 101), Err(Refused::TooLarge));
        put(&mut c, now, (1, 1), 0, 60).unwrap();
        put(&mut c, now, (1, 2), 0, 60).unwrap();
        assert_eq!(
            admit(&mut c, now, (1, 1), 1, vec![0; 41], true),
            Err(Refused::TooLarge)
        );
        assert_eq!((c.pending(), c.sources()), ((1, 60), 1));
        assert!(c.get(&(1, 1)).is_none());
        c.check();
        // Exactly the limit is fine.
        assert_eq!(
            admit(&mut c, now, (1, 2), 1, vec![0; 40], true)
                .unwrap()
                .map(|w| w.len()),
            Some(100)
        );
    }

    #[test]
    fn expiry_after_the_first_piece_is_exactly_at_the_deadline() {
        let mut c = Core::new(limits());
        let t0 = Instant::now();
        assert_eq!((c.next_deadline(), c.expire(t0)), (None, 0));
        put(&mut c, t0, (1, 1), 0, 10).unwrap();
        put(&mut c, t0 + Duration::from_secs(1), (2, 1), 0, 10).unwrap();
        // A later piece does not move the deadline.
        put(&mut c, t0 + Duration::from_secs(4), (1, 1), 1, 10).unwrap();
        assert_eq!(c.next_deadline(), Some(t0 + TIMEOUT));
        assert_eq!(c.expire(t0 + TIMEOUT - Duration::from_nanos(1)), 0);
        assert_eq!(c.pending(), (2, 30));
        assert_eq!(c.expire(t0 + TIMEOUT), 1);
        assert_eq!(c.pending(), (1, 10));
        assert_eq!(
            c.next_deadline(),
            Some(t0 + Duration::from_secs(1) + TIMEOUT)
        );
        c.check();
        assert_eq!(c.expire(t0 + TIMEOUT * 10), 1);
        assert_eq!(
            (c.pending(), c.next_deadline(), c.sources()),
            ((0, 0), None, 0)
        );
        c.check();
    }

    #[test]
    fn expiry_after_the_last_piece_follows_it_both_ways() {
        let mut c = Core::new(Limits {
            expiry: Expiry::AfterLastPiece,
            ..limits()
        });
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        put(&mut c, t0, (1, 1), 0, 10).unwrap();
        put(&mut c, t1, (2, 1), 0, 10).unwrap();
        put(&mut c, t0 + Duration::from_secs(3), (1, 1), 1, 10).unwrap();
        assert_eq!(c.next_deadline(), Some(t1 + TIMEOUT));
        c.check();
        // An earlier `now` (the caller's clock is its own business) moves
        // the deadline back, and the index with it.
        put(&mut c, t0, (1, 1), 2, 10).unwrap();
        assert_eq!(c.next_deadline(), Some(t0 + TIMEOUT));
        c.check();
        assert_eq!(c.expire(t0 + TIMEOUT), 1);
        assert_eq!(c.pending(), (1, 10));
        assert!(c.get(&(1, 1)).is_none());
        c.check();
    }

    #[test]
    fn expire_looks_only_at_what_is_due() {
        let mut c = Reassembly::<u16, u16, (), u16>::new(Limits {
            max_pending: 10_000,
            max_pending_per_source: 10_000,
            max_pending_bytes: usize::MAX,
            ..limits()
        });
        let t0 = Instant::now();
        for n in 0..1000u16 {
            let now = t0 + Duration::from_millis(u64::from(n));
            admit(&mut c, now, (n % 7, n), 0, vec![0; 3], false).unwrap();
        }
        let before = c.examined;
        // Nothing due: one look.
        for _ in 0..100 {
            assert_eq!(c.expire(t0 + TIMEOUT - Duration::from_millis(1)), 0);
        }
        assert_eq!(c.examined - before, 100);
        // Ten due: eleven looks, and they go in deadline order.
        let before = c.examined;
        assert_eq!(c.expire(t0 + TIMEOUT + Duration::from_millis(9)), 10);
        assert_eq!(c.examined - before, 11);
        assert!((0..10).all(|n| c.get(&(n % 7, n)).is_none()));
        assert!(c.get(&(10 % 7, 10)).is_some());
        assert_eq!(
            c.next_deadline(),
            Some(t0 + TIMEOUT + Duration::from_millis(10))
        );
        assert_eq!(c.pending(), (990, 990 * 3));
        c.check();
    }

    #[test]
    fn a_timeout_beyond_instant_never_expires() {
        let mut c = Core::new(Limits {
            timeout: Duration::MAX,
            expiry: Expiry::AfterLastPiece,
            ..limits()
        });
        let t0 = Instant::now();
        put(&mut c, t0, (1, 1), 0, 10).unwrap();
        put(&mut c, t0, (1, 1), 1, 10).unwrap();
        assert_eq!((c.next_deadline(), c.expire(t0 + TIMEOUT)), (None, 0));
        assert_eq!(c.pending(), (1, 20));
        c.check();
        assert!(admit(&mut c, t0, (1, 1), 2, vec![0], true)
            .unwrap()
            .is_some());
        c.check();
    }

    /// One operation of the property test.
    #[derive(Debug, Clone)]
    enum Op {
        Admit {
            key: (u8, u8),
            at: u16,
            len: usize,
            completes: bool,
            after_ms: u64,
        },
        Expire {
            after_ms: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => ((0u8..4, 0u8..6), 0u16..6, 0usize..300, proptest::bool::weighted(0.15), 0u64..3000)
                .prop_map(|(key, at, len, completes, after_ms)| Op::Admit { key, at, len, completes, after_ms }),
            1 => (0u64..3000).prop_map(|after_ms| Op::Expire { after_ms }),
        ]
    }

    proptest! {
        #[test]
        fn pending_bytes_always_equal_what_is_held(
            ops in proptest::collection::vec(op(), 1..200),
            piece_cost in 0usize..100,
            last in any::<bool>(),
        ) {
            let lim = Limits {
                max_message: 800,
                max_pending: 6,
                max_pending_bytes: 2000,
                max_pending_per_source: 3,
                piece_cost,
                timeout: TIMEOUT,
                expiry: if last { Expiry::AfterLastPiece } else { Expiry::AfterFirstPiece },
            };
            let mut c = Core::new(lim);
            let mut now = Instant::now();
            for op in ops {
                match op {
                    Op::Admit { key, at, len, completes, after_ms } => {
                        now += Duration::from_millis(after_ms);
                        let held = c.get(&key).map(Partial::data_len);
                        let piece = vec![at as u8; len];
                        if let Ok(Some(whole)) = admit(&mut c, now, key, at, &piece[..], completes) {
                            prop_assert!(completes);
                            prop_assert_eq!(whole.len(), held.unwrap_or(0) + len);
                            prop_assert!(c.get(&key).is_none());
                        }
                    }
                    Op::Expire { after_ms } => {
                        now += Duration::from_millis(after_ms);
                        let due = c.deadlines.range(..=(now, (u8::MAX, u8::MAX))).count();
                        prop_assert_eq!(c.expire(now), due);
                        prop_assert!(!matches!(c.next_deadline(), Some(d) if d <= now));
                    }
                }
                c.check();
            }
            c.expire(now + TIMEOUT);
            prop_assert_eq!((c.pending(), c.sources()), ((0, 0), 0));
        }
    }
}
