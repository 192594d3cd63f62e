//! Draws the [`Model`] with ratatui: a header line, the nodes table, the
//! registrations table, the channel's messages (with `--channel`) and the
//! recent events, each given the height it needs while the screen lasts
//! (the nodes first; a table cut short says how many rows it left out).

use std::time::Instant;

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;

use super::state::{Kind, Model, NodeRow, RegistrationRow};
use crate::text::{ago, fit};

/// Lines of recent events shown at most.
const FLASH_LINES: u16 = 5;
/// Lines of channel messages shown at most.
const MESSAGE_LINES: u16 = 6;
/// How a master's row is marked.
const MASTER_MARK: &str = "* master";
/// The widest a host name or address column grows (longer ones are cut).
const MAX_COLUMN: usize = 28;

/// What the header line says besides the counts: where the watcher
/// listens, and how to quit.
#[derive(Debug, Clone)]
pub struct Header {
    /// The cluster's destination (`127.255.255.255:47800`).
    pub destination: String,
    /// The channel watched, with `--channel`.
    pub channel: Option<String>,
}

/// Draws one frame: `now` for the ages, `now_ms` (since the Unix epoch)
/// for the registrations' `lastKnown`.
pub fn draw(frame: &mut Frame, model: &Model, header: &Header, now: Instant, now_ms: u64) {
    let area = frame.area();
    if area.height == 0 || area.width == 0 {
        return;
    }
    let flashes = model.flashes().count() as u16;
    let flash_h = if flashes == 0 {
        2
    } else {
        1 + flashes.min(FLASH_LINES)
    };
    let msg_h = if header.channel.is_some() {
        1 + MESSAGE_LINES
    } else {
        0
    };
    let avail = area.height.saturating_sub(1 + flash_h + msg_h);
    let nodes_want = 2 + model.node_count() as u16;
    let regs_want = if model.selection().shows_registrations() {
        2 + model.registration_count().min(u16::MAX as usize / 2) as u16
    } else {
        0
    };
    let nodes_h = nodes_want.min(avail.saturating_sub(regs_want.min(avail / 3)));
    let regs_h = regs_want.min(avail - nodes_h);

    let mut y = area.y;
    let mut take = |h: u16| {
        let h = h.min(area.bottom().saturating_sub(y));
        let r = Rect::new(area.x, y, area.width, h);
        y += h;
        r
    };
    let header_area = take(1);
    let nodes_area = take(nodes_h);
    let regs_area = take(regs_h);
    let msgs_area = take(msg_h);
    // The events sit at the bottom of the screen.
    let rest = take(u16::MAX);
    let flash_area = Rect::new(
        area.x,
        rest.bottom().saturating_sub(flash_h).max(rest.y),
        area.width,
        flash_h.min(rest.height),
    );

    draw_header(frame, model, header, header_area);
    draw_nodes(frame, model, now, nodes_area);
    if regs_area.height > 0 {
        draw_registrations(frame, model, now_ms, regs_area);
    }
    if msgs_area.height > 0 {
        draw_messages(frame, model, now, msgs_area);
    }
    draw_flashes(frame, model, now, flash_area);
}

fn draw_header(frame: &mut Frame, model: &Model, header: &Header, area: Rect) {
    let mut spans = vec![
        Span::styled("shoal watch", Style::new().bold()),
        // Early in the line: a narrow terminal cuts the end.
        Span::styled(" (q quits)", Style::new().dim()),
        Span::raw(format!(
            "  {}, {}",
            count(model.node_count(), "node"),
            count(model.master_count(), "master"),
        )),
    ];
    if model.selection().shows_registrations() {
        let registrations = count(model.registration_count(), "registration");
        spans.push(Span::raw(format!(", {registrations}")));
    }
    spans.push(Span::raw(format!("  on {}", header.destination)));
    if let Some(name) = &model.selection().name {
        spans.push(Span::raw(format!("  --name {}", crate::text::clean(name))));
    }
    if model.selection().master {
        spans.push(Span::raw("  --master"));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `1 node`, `3 nodes`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A section's title: `Nodes (3)`, or `Nodes (40, 12 not shown)`.
fn title(name: &str, total: usize, shown: usize) -> Line<'static> {
    let text = if shown < total {
        format!(" {name} ({total}, {} not shown) ", total - shown)
    } else {
        format!(" {name} ({total}) ")
    };
    Line::from(Span::styled(text, Style::new().bold()))
}

/// The width a column needs for `header` and `cells`, at most `max`.
fn width<'a>(header: &str, cells: impl Iterator<Item = &'a str>, max: usize) -> usize {
    cells
        .map(|c| c.chars().count())
        .chain([header.chars().count()])
        .max()
        .unwrap_or(0)
        .min(max)
}

fn draw_nodes(frame: &mut Frame, model: &Model, now: Instant, area: Rect) {
    if area.height == 0 {
        return;
    }
    let total = model.node_count();
    let rows: Vec<NodeRow> = model.node_rows(now, area.height.saturating_sub(2) as usize);
    let w = [
        width("ID", rows.iter().map(|r| r.id.as_str()), 12),
        width(
            "HOST",
            rows.iter().map(|r| r.host.as_str()),
            MAX_COLUMN + 12,
        ),
        width("ADDRESS", rows.iter().map(|r| r.addr.as_str()), MAX_COLUMN),
        width("WEIGHT", rows.iter().map(|r| r.weight.as_str()), 10),
        MASTER_MARK.chars().count(),
        width("HEARD", rows.iter().map(|r| r.heard.as_str()), 8),
    ];
    let fixed: usize = w.iter().sum::<usize>() + w.len();
    let info_w = (area.width as usize).saturating_sub(fixed);
    let table_rows = rows.iter().map(|r| {
        let style = if r.me {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new()
        };
        let master = if r.master {
            Span::styled(MASTER_MARK, Style::new().bold().fg(Color::Yellow))
        } else {
            Span::raw("")
        };
        Row::new(vec![
            Line::from(r.id.clone()),
            Line::from(fit(&r.host, w[1])),
            Line::from(fit(&r.addr, w[2])),
            Line::from(r.weight.clone()),
            Line::from(master),
            Line::from(r.heard.clone()),
            Line::from(fit(&r.info, info_w)),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Length(w[0] as u16),
        Constraint::Length(w[1] as u16),
        Constraint::Length(w[2] as u16),
        Constraint::Length(w[3] as u16),
        Constraint::Length(w[4] as u16),
        Constraint::Length(w[5] as u16),
        Constraint::Fill(1),
    ];
    let header = Row::new([
        "ID",
        "HOST",
        "ADDRESS",
        "WEIGHT",
        "MASTER",
        "HEARD",
        "ADVERTISES",
    ])
    .style(Style::new().add_modifier(Modifier::UNDERLINED));
    let table = Table::new(table_rows, widths)
        .header(header)
        .column_spacing(1)
        .block(
            Block::new()
                .borders(Borders::TOP)
                .title(title("Nodes", total, rows.len())),
        );
    frame.render_widget(table, area);
}

fn draw_registrations(frame: &mut Frame, model: &Model, now_ms: u64, area: Rect) {
    let total = model.registration_count();
    let rows: Vec<RegistrationRow> =
        model.registration_rows(now_ms, area.height.saturating_sub(2) as usize);
    let w = [
        width("NAME", rows.iter().map(|r| r.name.as_str()), MAX_COLUMN),
        width("VERSION", rows.iter().map(|r| r.version.as_str()), 16),
        width(
            "ADDRESS",
            rows.iter().map(|r| r.addr.as_str()),
            MAX_COLUMN + 12,
        ),
        width("OWNER", rows.iter().map(|r| r.owner.as_str()), MAX_COLUMN),
    ];
    let table_rows = rows.iter().map(|r| {
        Row::new(vec![
            fit(&r.name, w[0]),
            fit(&r.version, w[1]),
            fit(&r.addr, w[2]),
            fit(&r.owner, w[3]),
            r.last_known.clone(),
        ])
    });
    let widths = [
        Constraint::Length(w[0] as u16),
        Constraint::Length(w[1] as u16),
        Constraint::Length(w[2] as u16),
        Constraint::Length(w[3] as u16),
        Constraint::Fill(1),
    ];
    let header = Row::new(["NAME", "VERSION", "ADDRESS", "OWNER", "LAST KNOWN"])
        .style(Style::new().add_modifier(Modifier::UNDERLINED));
    let table = Table::new(table_rows, widths)
        .header(header)
        .column_spacing(1)
        .block(
            Block::new()
                .borders(Borders::TOP)
                .title(title("Registrations", total, rows.len())),
        );
    frame.render_widget(table, area);
}

fn draw_messages(frame: &mut Frame, model: &Model, now: Instant, area: Rect) {
    let width = area.width as usize;
    let lines: Vec<Line> = model
        .messages()
        .take(area.height.saturating_sub(1) as usize)
        .map(|m| {
            let head = format!(
                "{:>6} {} ",
                ago(now.saturating_duration_since(m.at)),
                m.from
            );
            let body = fit(&m.data, width.saturating_sub(head.chars().count()));
            Line::from(vec![
                Span::styled(head, Style::new().dim()),
                Span::raw(body),
            ])
        })
        .collect();
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Line::from(Span::styled(
            " Messages (newest first) ",
            Style::new().bold(),
        )));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_flashes(frame: &mut Frame, model: &Model, now: Instant, area: Rect) {
    if area.height == 0 {
        return;
    }
    let width = area.width as usize;
    let mut lines: Vec<Line> = model
        .flashes()
        .take(area.height.saturating_sub(1) as usize)
        .map(|f| {
            let colour = match f.kind {
                Kind::Arrived => Color::Green,
                Kind::Departed => Color::Red,
                Kind::Master => Color::Yellow,
                Kind::Changed => Color::Blue,
                Kind::Warning => Color::Magenta,
            };
            let head = format!("{:>6} ", ago(now.saturating_duration_since(f.at)));
            let body = fit(&f.text, width.saturating_sub(head.chars().count()));
            Line::from(vec![
                Span::styled(head, Style::new().dim()),
                Span::styled(body, Style::new().fg(colour)),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::from(Span::styled(
            "nothing new in the last few seconds",
            Style::new().dim(),
        )));
    }
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Line::from(Span::styled(" Events ", Style::new().bold())));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use shoal::registry::{Registration, RegistryEvent};

    use crate::watch::select::Selection;

    fn screen(model: &Model, w: u16, h: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        let header = Header {
            destination: "127.255.255.255:47800".into(),
            channel: None,
        };
        terminal
            .draw(|f| draw(f, model, &header, Instant::now(), 0))
            .unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..h {
            for x in 0..w {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn a_long_advertisement_is_cut_with_an_ellipsis_and_the_master_marked() {
        let mut net = shoal::sim::SimNet::new(3);
        let long = "x".repeat(200);
        let config = shoal::Config::builder()
            .advertise(serde_json::json!({ "long": long }))
            .build()
            .unwrap();
        net.add_node(config);
        let watcher = net.add_node(
            shoal::Config::builder()
                .master_eligible(false)
                .build()
                .unwrap(),
        );
        net.run_for(std::time::Duration::from_secs(3));
        let mut model = Model::new(Selection::default(), "me".into(), None);
        let node = net.node(watcher);
        model.sync_nodes(
            node.protocol.local(),
            node.protocol.peers().cloned().collect(),
        );
        let text = screen(&model, 80, 24);
        let row = text
            .lines()
            .find(|l| l.contains("xxx"))
            .expect("the peer's row");
        assert!(row.ends_with("xx…"), "{text}");
        assert_eq!(row.chars().count(), 80);
        assert!(row.contains("* master"), "{text}");
        assert!(text.lines().next().unwrap().contains("(q quits)"), "{text}");
    }

    #[test]
    fn any_size_draws_without_panicking_and_cuts_tables_visibly() {
        let mut model = Model::new(Selection::default(), "h".into(), None);
        let now = Instant::now();
        for port in 1..=50 {
            let r = Registration::builder("kv", "1.0.0", "10.0.0.5", port)
                .build()
                .unwrap();
            model.apply_registry(&RegistryEvent::Online(r), now, false);
        }
        for (w, h) in [(0, 0), (1, 1), (10, 3), (80, 8), (140, 40), (400, 200)] {
            screen(&model, w, h);
        }
        let text = screen(&model, 100, 20);
        assert!(text.contains("Registrations (50, "), "{text}");
        assert!(text.contains("not shown"), "{text}");
        assert!(text.contains("online: kv@1.0.0 at 10.0.0.5:50"), "{text}");
        assert!(
            text.lines().next().unwrap().contains("50 registrations"),
            "{text}"
        );
    }
}
