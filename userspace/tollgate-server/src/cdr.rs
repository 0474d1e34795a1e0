//! Call detail records: one JSON object per line, appended to the configured file.

use std::io::Write;
use std::path::Path;

/// An append-only CDR file.
#[derive(Debug)]
pub struct CdrWriter {
    file: Option<std::fs::File>,
}

impl CdrWriter {
    /// Opens (creating) the file for appending; `None` writes nothing.
    pub fn open(path: Option<&Path>) -> std::io::Result<CdrWriter> {
        let file = match path {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)?,
                )
            }
            None => None,
        };
        Ok(CdrWriter { file })
    }

    /// Writes one record as a line.
    pub fn write(&mut self, record: &serde_json::Value) {
        if let Some(f) = self.file.as_mut() {
            let mut line = record.to_string();
            line.push('\n');
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::error!(error = %e, "cannot write CDR");
            }
        }
    }
}
