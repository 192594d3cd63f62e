//! Text for people: ids shortened, durations and weights made short, and
//! text that came from the network made harmless to print on a terminal.

use std::time::Duration;

/// Ids longer than this show shortened (every shoal and node-discovery id
/// is 32 hex digits).
const SHORT_ID_ABOVE: usize = 12;
/// How many characters of a long id are shown: enough to tell a LAN's
/// nodes apart, and a prefix to grep the whole id with (the library's own
/// `Display` shortens them the same way).
pub const SHORT_ID_LEN: usize = 8;

/// `s` with everything a terminal would act on escaped: control
/// characters (ESC starts a sequence that could move the cursor, retitle
/// the window or worse) and the invisible format characters that reorder
/// or hide text (bidi overrides, zero-width spaces). A host name or an
/// advertisement is whatever a peer put in its hello, so every one of them
/// goes through here before it is drawn.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || is_format(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Unicode's invisible format characters that change how the text around
/// them reads: zero-width spaces and joiners, bidi marks, overrides and
/// isolates, the word joiner and invisible operators, and the BOM.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// An id as the table shows it: whole when short, else its first eight
/// characters and `…`; cleaned.
pub fn short_id(id: &str) -> String {
    if id.chars().count() > SHORT_ID_ABOVE {
        let head: String = id.chars().take(SHORT_ID_LEN).collect();
        format!("{}…", clean(&head))
    } else {
        clean(id)
    }
}

/// `s` cut to at most `width` characters, the last of them `…` when
/// something was cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// A short age: `0.4s`, `12s`, `3m05s`, `2h07m`.
pub fn ago(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

/// A weight with at most three decimals and no trailing zeros (`0.9`,
/// `12`, `-1.5`); very small or large ones in scientific notation.
pub fn weight(w: f64) -> String {
    let a = w.abs();
    if w != 0.0 && !(0.001..1e9).contains(&a) {
        return format!("{w:.2e}");
    }
    let s = format!("{w:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// `host:port`, with an IPv6 address in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{}]:{port}", clean(host))
    } else {
        format!("{}:{port}", clean(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_from_the_network_are_escaped() {
        assert_eq!(clean("web-1"), "web-1");
        assert_eq!(clean("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(clean("x\u{202E}y\n"), "x\\u{202e}y\\u{a}");
        assert_eq!(clean("héllo 世界"), "héllo 世界");
    }

    #[test]
    fn ids_shorten_as_the_library_prints_them() {
        assert_eq!(short_id("3f2a1b9c4d5e6f708192a3b4c5d6e7f8"), "3f2a1b9c…");
        assert_eq!(short_id("node-a"), "node-a");
        assert_eq!(
            short_id("\x1b\x1b\x1b\x1b\x1b\x1b\x1b\x1b\x1b\x1b\x1b\x1b\x1b")
                .chars()
                .filter(|&c| c == '\x1b')
                .count(),
            0
        );
    }

    #[test]
    fn fitting_cuts_with_an_ellipsis() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdefg", 6), "abcde…");
        assert_eq!(fit("abc", 0), "");
        assert_eq!(fit("日本語テキスト", 4), "日本語…");
    }

    #[test]
    fn ages_and_weights_are_short() {
        assert_eq!(ago(Duration::from_millis(420)), "0.4s");
        assert_eq!(ago(Duration::from_secs(12)), "12s");
        assert_eq!(ago(Duration::from_secs(185)), "3m05s");
        assert_eq!(ago(Duration::from_secs(7620)), "2h07m");
        assert_eq!(weight(0.9), "0.9");
        assert_eq!(weight(12.0), "12");
        assert_eq!(weight(-1.5), "-1.5");
        assert_eq!(weight(0.0), "0");
        assert_eq!(weight(0.123456), "0.123");
        assert_eq!(weight(1e-7), "1.00e-7");
        assert_eq!(host_port("10.0.0.5", 7000), "10.0.0.5:7000");
        assert_eq!(host_port("fe80::1", 7000), "[fe80::1]:7000");
    }
}
