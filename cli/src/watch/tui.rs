//! The live view's terminal: the alternate screen in raw mode, restored on
//! every way out (a return, an error, a panic, SIGINT, SIGTERM or SIGHUP),
//! and the loop that reads keys and news and redraws.
//!
//! A change is drawn within [`FRAME`] of its event, and a burst of events
//! costs one frame per [`FRAME`], not one per event. The ages in the table
//! refresh every [`TICK`]; the registrations' `lastKnown` is read from the
//! registry every [`REQUERY`].

use std::time::{Duration, Instant};

use crossterm::event::{
    Event as TermEvent, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use futures_util::{FutureExt, StreamExt};
use ratatui::DefaultTerminal;
use shoal::Discovery;

use super::sources::{Input, Sources};
use super::state::Model;
use super::view::{self, Header};
use super::Watcher;
use crate::error::CliError;
use crate::output;
use crate::signals::Signals;

/// The shortest time between two frames.
const FRAME: Duration = Duration::from_millis(50);
/// How often the ages redraw and old events fade.
const TICK: Duration = Duration::from_millis(250);
/// How often the registrations are read again (for `lastKnown`).
const REQUERY: Duration = Duration::from_secs(1);

/// The terminal in raw mode on the alternate screen; dropping it restores
/// the terminal. ratatui's init also installs a panic hook that restores
/// it before the panic message prints.
struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    fn enter() -> Result<Screen, CliError> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                ratatui::restore();
                Err(CliError::runtime(format!(
                    "cannot set up the terminal: {e}"
                )))
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Whether a key quits: q, Esc, or ^C (raw mode makes ^C a key, not a
/// SIGINT).
fn quits(key: &KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && match key.code {
            KeyCode::Char('q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

/// Runs the live view until q, Esc, ^C, SIGINT, SIGTERM or SIGHUP.
pub async fn run(
    discovery: &Discovery,
    watcher: &Watcher,
    mut sources: Sources,
    signals: &mut Signals,
    channel: Option<String>,
) -> Result<(), CliError> {
    let mut model = Model::new(
        watcher.selection.clone(),
        watcher.host_name.clone(),
        watcher.my_addr,
    );
    // The registrations a watch starts with are the table, not news.
    if let Some(watch) = sources.watch_mut() {
        while let Some(Some(event)) = watch.recv().now_or_never() {
            model.apply_registry(&event, Instant::now(), true);
        }
    }
    let header = Header {
        destination: watcher.destination.to_string(),
        channel,
    };
    let registry = discovery.registry();
    let filter = watcher.selection.registry_filter();

    // The terminal closing (SIGHUP, among `signals`) ends the view like a
    // quit: the node still says goodbye.
    let mut screen = Screen::enter()?;
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut requery = tokio::time::interval(REQUERY);
    requery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut last_frame: Option<Instant> = None;
    loop {
        let frame_due = async {
            match (dirty, last_frame) {
                (false, _) => std::future::pending().await,
                (true, None) => {}
                (true, Some(at)) => tokio::time::sleep_until((at + FRAME).into()).await,
            }
        };
        tokio::select! {
            _ = signals.recv() => return Ok(()),
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(key))) if quits(&key) => return Ok(()),
                Some(Ok(TermEvent::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(CliError::runtime(format!("reading the terminal: {e}"))),
                // The terminal is gone (its reader ended): nothing to draw on.
                None => return Ok(()),
            },
            input = sources.next() => {
                let now = Instant::now();
                match input {
                    None => return Ok(()),
                    Some(Input::Node(e)) => model.apply(&e, now),
                    Some(Input::Registry(e)) => {
                        if model.apply_registry(&e, now, false) {
                            requery.reset_immediately();
                        }
                    }
                    Some(Input::Message(m)) => model.apply_message(&m, now),
                    Some(Input::MissedMessages(n)) => model.missed_messages(n, now),
                }
                dirty = true;
            }
            _ = tick.tick() => {
                model.expire(Instant::now());
                dirty = true;
            }
            _ = requery.tick(), if filter.is_some() => {
                if let Some(filter) = &filter {
                    model.set_registrations(registry.query(filter).await?);
                    dirty = true;
                }
            }
            _ = frame_due => {
                model.sync_nodes(discovery.me(), discovery.nodes());
                let now = Instant::now();
                let now_ms = output::now_ms() as u64;
                screen
                    .terminal
                    .draw(|frame| view::draw(frame, &model, &header, now, now_ms))?;
                last_frame = Some(now);
                dirty = false;
            }
        }
    }
}
