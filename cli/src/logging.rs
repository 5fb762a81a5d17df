//! Log output in runc's two formats, so that engines that parse runc's log
//! file (containerd's shim, conmon) read ours too:
//!
//! - text: `time="2026-12-04T21:00:00Z" level=error msg="..."`
//! - json: `{"level":"error","msg":"...","time":"2026-12-04T21:00:00Z"}`
//!
//! Events are written synchronously, one `write` per line on a file opened
//! with O_APPEND: the runtime clones its init without threads, so a
//! background writer thread is not an option.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

enum Sink {
    File(Mutex<File>),
    Stderr,
}

struct RuncFormatLayer {
    sink: Sink,
    format: LogFormat,
    max_level: Level,
}

/// Collects an event's message and fields into one string.
#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Formats one log line (with its trailing newline) in `format`.
pub fn format_line(format: LogFormat, level: &str, message: &str, time: &str) -> String {
    match format {
        LogFormat::Json => {
            let line = serde_json::json!({ "level": level, "msg": message, "time": time });
            format!("{line}\n")
        }
        LogFormat::Text => {
            let quoted = serde_json::to_string(message).unwrap_or_default();
            format!("time=\"{time}\" level={level} msg={quoted}\n")
        }
    }
}

impl<S: Subscriber> Layer<S> for RuncFormatLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = event.metadata().level();
        if *level > self.max_level {
            return;
        }
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let message = format!("{}{}", visitor.message, visitor.fields);
        let line = format_line(self.format, level_name(level), &message, &runtime::state::now_rfc3339());
        match &self.sink {
            Sink::File(file) => {
                if let Ok(mut file) = file.lock() {
                    let _ = file.write_all(line.as_bytes());
                }
            }
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

/// The log destination chosen on the command line.
pub struct Logger {
    file: Option<File>,
    format: LogFormat,
}

impl Logger {
    /// Installs the global subscriber. With `path`, events at info level
    /// (debug with `debug`) go to that file. Without it, `--debug` sends
    /// every event to stderr, and otherwise events up to `stderr_level`
    /// (none when it is `None`) go there.
    pub fn init(
        path: Option<&Path>,
        format: LogFormat,
        debug: bool,
        stderr_level: Option<Level>,
    ) -> Result<Logger, String> {
        let mut max_level = if debug { Level::DEBUG } else { Level::INFO };
        let file = match path {
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|err| format!("open log file {}: {err}", path.display()))?,
            ),
            None => None,
        };
        let sink = match &file {
            Some(file) => Some(Sink::File(Mutex::new(
                file.try_clone().map_err(|err| format!("open log file: {err}"))?,
            ))),
            None if debug => Some(Sink::Stderr),
            None => stderr_level.map(|level| {
                max_level = level;
                Sink::Stderr
            }),
        };
        if let Some(sink) = sink {
            let layer = RuncFormatLayer { sink, format, max_level };
            let subscriber = tracing_subscriber::registry().with(layer);
            let _ = tracing::subscriber::set_global_default(subscriber);
        }
        Ok(Logger { file, format })
    }

    /// Reports a fatal error: one line on stderr, and in the log file at
    /// level error, where engines look for the reason of a failure.
    pub fn fatal(&mut self, program: &str, message: &str) {
        eprintln!("{program}: {message}");
        if let Some(file) = &mut self.file {
            let line = format_line(self.format, "error", message, &runtime::state::now_rfc3339());
            let _ = file.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_shape() {
        let line = format_line(LogFormat::Json, "error", "a \"b\"", "T");
        let value: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(value["level"], "error");
        assert_eq!(value["msg"], "a \"b\"");
        assert_eq!(value["time"], "T");
    }

    #[test]
    fn text_line_shape() {
        let line = format_line(LogFormat::Text, "info", "hello world", "T");
        assert_eq!(line, "time=\"T\" level=info msg=\"hello world\"\n");
    }
}
