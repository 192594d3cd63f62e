//! What `--name` and `--master` let through: which nodes, which
//! registrations, and so which events. The live view, the JSON lines and
//! `--once` all ask this one place, so that they always agree.
//!
//! - `--name NAME` lets through a node whose host name is NAME; whose id
//!   is NAME, or starts with NAME when NAME has at least eight characters
//!   (the table shows ids as their first eight, so a shown id can be
//!   pasted); or that advertises an object whose `name` or `id` is the
//!   string NAME. It lets through the registrations named NAME.
//! - `--master` lets through nodes that are masters (an event about a node
//!   that leaves counts when it was master as it left), and no
//!   registrations: a registration has no master.
//! - Combined, both must hold. Channel messages (`--channel`) and the
//!   watcher's own warnings (`lagged`, `unauthenticated`, `data_error`)
//!   are never filtered out.

use shoal::registry::{Filter, Registration, RegistryEvent};
use shoal::{Event, LocalState, Peer};

use crate::text::SHORT_ID_LEN;

/// The `--name` and `--master` filters.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--name`: a host name, an id (or a prefix of one), or an advertised
    /// `name`/`id`; and a registration name.
    pub name: Option<String>,
    /// `--master`: masters only, no registrations.
    pub master: bool,
}

impl Selection {
    /// Whether a node with this id, host name, advertisement and master
    /// flag is let through.
    pub fn node(
        &self,
        id: &str,
        host_name: &str,
        info: Option<&serde_json::Value>,
        is_master: bool,
    ) -> bool {
        if self.master && !is_master {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        let advertised = |key: &str| {
            info.and_then(|i| i.get(key))
                .and_then(serde_json::Value::as_str)
                == Some(name.as_str())
        };
        host_name == name
            || id == name
            || (name.chars().count() >= SHORT_ID_LEN && id.starts_with(name.as_str()))
            || advertised("name")
            || advertised("id")
    }

    /// Whether `peer` is let through.
    pub fn peer(&self, peer: &Peer) -> bool {
        self.node(
            peer.id.as_str(),
            &peer.host_name,
            peer.info.as_ref(),
            peer.is_master,
        )
    }

    /// Whether this node (whose host name is `host_name`) is let through.
    pub fn me(&self, me: &LocalState, host_name: &str) -> bool {
        self.node(me.id.as_str(), host_name, me.info.as_ref(), me.is_master)
    }

    /// Whether registrations are shown at all (not with `--master`).
    pub fn shows_registrations(&self) -> bool {
        !self.master
    }

    /// The registry filter to watch and query with, `None` when no
    /// registration is shown.
    pub fn registry_filter(&self) -> Option<Filter> {
        if !self.shows_registrations() {
            return None;
        }
        Some(match &self.name {
            Some(name) => Filter::name(name.clone()),
            None => Filter::All,
        })
    }

    /// Whether `registration` is let through.
    pub fn registration(&self, registration: &Registration) -> bool {
        self.registry_filter()
            .is_some_and(|f| f.matches(registration))
    }

    /// Whether a node event is let through. `host_name` is this node's,
    /// for promotions and demotions.
    pub fn event(&self, event: &Event, host_name: &str) -> bool {
        match event {
            Event::Added(p) | Event::Updated(p) | Event::Removed(p, _) | Event::Master(p) => {
                self.peer(p)
            }
            Event::Promotion(me) => self.me(me, host_name),
            // Demoted, it is no master any more, but the demotion is news
            // about a master: judge it as it was.
            Event::Demotion(me) => self.node(me.id.as_str(), host_name, me.info.as_ref(), true),
            _ => true,
        }
    }

    /// Whether a registry event is let through.
    pub fn registry_event(&self, event: &RegistryEvent) -> bool {
        match event.registration() {
            Some(r) => self.registration(r),
            None => self.shows_registrations(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "3f2a1b9c4d5e6f708192a3b4c5d6e7f8";

    fn by_name(name: &str) -> Selection {
        Selection {
            name: Some(name.into()),
            master: false,
        }
    }

    #[test]
    fn name_matches_host_id_prefix_or_advertised_name() {
        let info = json!({"name": "web", "id": "a"});
        let m = |s: &Selection| s.node(ID, "box-1", Some(&info), false);
        assert!(m(&Selection::default()));
        assert!(m(&by_name("box-1")));
        assert!(m(&by_name(ID)));
        assert!(m(&by_name("3f2a1b9c")));
        assert!(!m(&by_name("3f2a")), "a short prefix could match by chance");
        assert!(m(&by_name("web")));
        assert!(m(&by_name("a")));
        assert!(!m(&by_name("box")));
        assert!(!s_node(&by_name("web"), None));
    }

    fn s_node(s: &Selection, info: Option<&serde_json::Value>) -> bool {
        s.node(ID, "box-1", info, false)
    }

    #[test]
    fn master_lets_only_masters_through_and_hides_registrations() {
        let s = Selection {
            name: None,
            master: true,
        };
        assert!(!s.node(ID, "h", None, false));
        assert!(s.node(ID, "h", None, true));
        let kv = Registration::builder("kv", "1", "h", 1).build().unwrap();
        assert!(!s.registration(&kv));
        assert!(s.registry_filter().is_none());
        assert!(!s.registry_event(&RegistryEvent::Lagged(1)));
    }

    #[test]
    fn name_picks_registrations_by_name() {
        let s = by_name("kv");
        let kv = Registration::builder("kv", "1", "h", 1).build().unwrap();
        let web = Registration::builder("web", "1", "h", 1).build().unwrap();
        assert!(s.registration(&kv));
        assert!(!s.registration(&web));
        assert_eq!(s.registry_filter(), Some(Filter::name("kv")));
    }
}
