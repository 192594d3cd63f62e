//! Master election by weight, as node-discovery does it, with two corrections:
//! candidates are ranked by a total order (weight, then id), so equal weights
//! never flap; and when there are too many masters (after a partition heals,
//! for instance) only those outside the top `masters_required` step down.

use std::cmp::Ordering;

/// A candidate's rank: higher weight wins, the larger id breaks ties.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rank<'a> {
    pub weight: f64,
    pub id: &'a str,
}

impl Rank<'_> {
    /// Total order: weight (IEEE total order), then id.
    pub(crate) fn cmp(&self, other: &Rank<'_>) -> Ordering {
        self.weight
            .total_cmp(&other.weight)
            .then_with(|| self.id.cmp(other.id))
    }

    pub(crate) fn outranks(&self, other: &Rank<'_>) -> bool {
        self.cmp(other) == Ordering::Greater
    }
}

/// Whether a non-master, eligible node should promote itself.
///
/// `masters` counts the masters it knows (a just-removed master still within
/// `master_timeout` included); `higher_candidates` counts the live, eligible,
/// non-master nodes that outrank it. It promotes when the masters plus the
/// better-placed candidates cannot fill the `required` seats. With one seat
/// this is node-discovery's rule: no master, and nobody eligible outranks us.
pub(crate) fn should_promote(masters: usize, higher_candidates: usize, required: usize) -> bool {
    masters.saturating_add(higher_candidates) < required
}

/// Whether a master should step down, given the other masters it knows,
/// highest rank first.
///
/// It stays if it is among the top `required` of all masters, itself included.
/// In rank order those above it come first, so the walk stops at the first
/// master that does not outrank it, or once `required` do: it reads at
/// most `required + 1` masters, however many there are.
pub(crate) fn should_demote<'a>(
    me: Rank<'_>,
    other_masters_by_rank: impl Iterator<Item = Rank<'a>>,
    required: usize,
) -> bool {
    let above = other_masters_by_rank
        .take_while(|m| m.outranks(&me))
        .take(required)
        .count();
    above >= required
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(weight: f64, id: &str) -> Rank<'_> {
        Rank { weight, id }
    }

    #[test]
    fn rank_is_total() {
        assert!(r(0.6, "a").outranks(&r(0.5, "z")));
        assert!(r(0.5, "b").outranks(&r(0.5, "a")));
        assert!(!r(0.5, "a").outranks(&r(0.5, "a")));
        assert!(r(1e308, "a").outranks(&r(0.9, "a")));
    }

    #[test]
    fn promote_fills_empty_seats_only() {
        assert!(should_promote(0, 0, 1));
        assert!(!should_promote(1, 0, 1));
        assert!(!should_promote(0, 1, 1));
        assert!(should_promote(1, 0, 2));
        assert!(!should_promote(1, 1, 2));
    }

    #[test]
    fn demote_only_outside_the_top_seats() {
        // Highest rank first, as the peer table's master index lists them.
        let others = [r(0.9, "a"), r(0.1, "b")];
        assert!(should_demote(r(0.5, "m"), others.iter().copied(), 1));
        assert!(!should_demote(r(0.5, "m"), others.iter().copied(), 2));
        assert!(!should_demote(r(0.95, "m"), others.iter().copied(), 1));
        // Equal weights: the id decides, so exactly one of the two steps down.
        let a = r(0.5, "a");
        let b = r(0.5, "b");
        assert!(should_demote(a, [b].into_iter(), 1));
        assert!(!should_demote(b, [a].into_iter(), 1));
    }

    proptest::proptest! {
        /// Reading ranked masters only until the answer is known gives what
        /// counting every master above us would.
        #[test]
        fn the_ranked_walk_equals_a_full_count(
            me in 0u8..8,
            others in proptest::collection::vec((0u8..8, 0u8..3), 0..20),
            required in 1usize..5,
        ) {
            let ids = ["a", "b", "c"];
            let me = r(f64::from(me) / 4.0, "b");
            let mut others: Vec<Rank<'_>> = others
                .iter()
                .map(|(w, id)| r(f64::from(*w) / 4.0, ids[usize::from(*id)]))
                .collect();
            let counted = others.iter().filter(|m| m.outranks(&me)).count() >= required;
            others.sort_by(|a, b| b.cmp(a));
            proptest::prop_assert_eq!(
                should_demote(me, others.iter().copied(), required),
                counted
            );
        }
    }
}
