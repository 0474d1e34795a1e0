//! Reading the daemon's log from tests and demos: its structured lines carry `key=value`
//! fields (`startup_ms`, `load_ms`, `restore_and_install_ms`, ...), possibly coloured.

/// `text` without ANSI escape sequences (the daemon's log may be coloured).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut it = text.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for d in it.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number after `key=` on the first line of `log` containing `marker`.
pub fn logged(log: &str, marker: &str, key: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let pat = format!(" {key}=");
    let i = line.find(&pat)? + pat.len();
    let rest = &line[i..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Where a node's start went, read from its log: the call-state store read, listening, and
/// the restore with the flow install.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StartSplit {
    /// Reading the stored calls (`load_ms`).
    pub load_ms: Option<f64>,
    /// Records read.
    pub records: Option<f64>,
    /// Process start to listening (`startup_ms`).
    pub startup_ms: Option<f64>,
    /// Restoring the calls and installing their flows (`restore_and_install_ms`).
    pub restore_ms: Option<f64>,
    /// Calls restored.
    pub restored: Option<f64>,
    /// Time since the process was executed when the calls were taken over (`since_exec_ms`).
    pub taken_over_since_exec_ms: Option<f64>,
}

impl StartSplit {
    /// The split from the text of a daemon's log.
    pub fn from_log(log: &str) -> StartSplit {
        let log = strip_ansi(log);
        StartSplit {
            load_ms: logged(&log, "call-state store read", "load_ms"),
            records: logged(&log, "call-state store read", "calls"),
            startup_ms: logged(&log, "started:", "startup_ms"),
            restore_ms: logged(&log, "taken over", "restore_and_install_ms"),
            restored: logged(&log, "taken over", "restored"),
            taken_over_since_exec_ms: logged(&log, "taken over", "since_exec_ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_of_coloured_lines() {
        let log = "\u{1b}[2m2026\u{1b}[0m INFO calls taken over from the call-state store \
                   restored=1000 restore_and_install_ms=41.5 since_exec_ms=230\n";
        let s = StartSplit::from_log(log);
        assert_eq!(s.restored, Some(1000.0));
        assert_eq!(s.restore_ms, Some(41.5));
        assert_eq!(s.taken_over_since_exec_ms, Some(230.0));
        assert_eq!(s.load_ms, None);
    }
}
