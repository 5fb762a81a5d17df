//! Container logs in the CRI log format that the kubelet and podman's
//! `k8s-file` driver use: one entry per line,
//!
//! ```text
//! 2026-12-04T23:49:05.123456789Z stdout F hello world
//! ```
//!
//! with the time in RFC 3339 (UTC, nanoseconds), the stream (`stdout` or
//! `stderr`), and `F` for an entry that ends a line or `P` for part of a
//! longer line (no newline follows it). The content itself never contains a
//! newline.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Maximum content length of one entry. Longer lines are split into `P` entries.
pub const MAX_ENTRY: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Returns the path of the log's rotated part: `ctr.log.1` for `ctr.log`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".1");
    path.with_file_name(name)
}

/// Writes a container's output to its log, keeping an unfinished line of
/// each stream until its newline arrives. With a maximum size, a log that
/// would grow past it is renamed to [`rotated_path`] (replacing the last
/// one) and a new one is started, so the two files together stay under
/// twice the maximum.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    max_size: Option<u64>,
    size: u64,
    pending: [Vec<u8>; 2],
    buffer: Vec<u8>,
}

impl LogWriter {
    /// Opens the log at `path` for appending.
    pub fn open(path: &Path, max_size: Option<u64>) -> io::Result<Self> {
        let file = fs::OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_owned(),
            file,
            max_size,
            size,
            pending: [Vec::new(), Vec::new()],
            buffer: Vec::with_capacity(64 * 1024),
        })
    }

    /// Appends whole entries, rotating the log before an entry that would
    /// take it past the maximum size. An entry longer than the maximum
    /// still goes into a file of its own.
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(max_size) = self.max_size else {
            return self.file.write_all(data);
        };
        let mut start = 0;
        let mut end = 0;
        for entry in data.split_inclusive(|&b| b == b'\n') {
            if self.size > 0 && self.size + entry.len() as u64 > max_size {
                self.file.write_all(&data[start..end])?;
                self.rotate()?;
                start = end;
            }
            end += entry.len();
            self.size += entry.len() as u64;
        }
        self.file.write_all(&data[start..end])
    }

    fn rotate(&mut self) -> io::Result<()> {
        fs::rename(&self.path, rotated_path(&self.path))?;
        self.file = fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Appends what one read from `stream` returned. All lines of one chunk
    /// share its arrival time.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let time = runtime::state::now_rfc3339();
        let pending = &mut self.pending[stream.index()];
        let buffer = &mut self.buffer;
        buffer.clear();
        let mut rest = data;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            pending.extend_from_slice(&rest[..end]);
            let last = split_long(buffer, &time, stream, pending);
            encode(buffer, &time, stream, last, false);
            pending.clear();
            rest = &rest[end + 1..];
        }
        pending.extend_from_slice(rest);
        let kept = split_long(buffer, &time, stream, pending).len();
        let written = pending.len() - kept;
        pending.drain(..written);
        let buffer = std::mem::take(&mut self.buffer);
        let result = self.append(&buffer);
        self.buffer = buffer;
        result
    }

    /// Writes the unfinished line of `stream`, when its pipe closed without
    /// a final newline, as a `P` entry.
    pub fn finish(&mut self, stream: Stream) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending[stream.index()]);
        if pending.is_empty() {
            return Ok(());
        }
        let mut buffer = Vec::new();
        encode(&mut buffer, &runtime::state::now_rfc3339(), stream, &pending, true);
        self.append(&buffer)
    }
}

/// Writes `P` entries of [`MAX_ENTRY`] bytes while more than that is in
/// `line`; returns the rest.
fn split_long<'a>(out: &mut Vec<u8>, time: &str, stream: Stream, line: &'a [u8]) -> &'a [u8] {
    let mut rest = line;
    while rest.len() > MAX_ENTRY {
        encode(out, time, stream, &rest[..MAX_ENTRY], true);
        rest = &rest[MAX_ENTRY..];
    }
    rest
}

fn encode(out: &mut Vec<u8>, time: &str, stream: Stream, content: &[u8], partial: bool) {
    out.extend_from_slice(time.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// One parsed log entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub time: &'a str,
    pub stream: Stream,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one line of the log, without its newline; `None` for a line that
/// is not in the CRI format.
pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let stream = match fields.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match fields.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Entry {
        time,
        stream,
        partial,
        content: fields.next().unwrap_or_default(),
    })
}

/// Options of `conman logs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrintOptions {
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// Print only the last N lines.
    pub tail: Option<usize>,
}

/// Prints log entries to stdout and stderr, by their stream.
struct Printer<O: Write, E: Write> {
    stdout: O,
    stderr: E,
    timestamps: bool,
    /// Whether the next entry of each stream starts a line.
    at_line_start: [bool; 2],
}

impl<O: Write, E: Write> Printer<O, E> {
    fn print(&mut self, entry: &Entry) -> io::Result<()> {
        let index = entry.stream.index();
        let out: &mut dyn Write = match entry.stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        if self.timestamps && self.at_line_start[index] {
            out.write_all(entry.time.as_bytes())?;
            out.write_all(b" ")?;
        }
        out.write_all(entry.content)?;
        if !entry.partial {
            out.write_all(b"\n")?;
        }
        self.at_line_start[index] = !entry.partial;
        Ok(())
    }

    fn print_line(&mut self, line: &[u8]) -> io::Result<()> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        match parse(line) {
            Some(entry) => self.print(&entry),
            // NOTE: a line that is not in the CRI format cannot come from
            // the monitor; it is skipped rather than guessed at.
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdout.flush()?;
        self.stderr.flush()
    }
}

/// Prints the log at `path`, after its rotated part if there is one, to
/// `stdout` and `stderr`. With `follow`, keeps printing what is appended
/// (across rotations) until `running` returns false, then prints the rest
/// and returns.
pub fn print<O: Write, E: Write>(
    path: &Path,
    options: PrintOptions,
    stdout: O,
    stderr: E,
    follow: Option<&dyn Fn() -> bool>,
) -> io::Result<()> {
    let mut printer = Printer {
        stdout,
        stderr,
        timestamps: options.timestamps,
        at_line_start: [true, true],
    };

    let mut current = File::open(path)?;
    let rotated: Box<dyn Read> = match File::open(rotated_path(path)) {
        Ok(file) => Box::new(file),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Box::new(io::empty()),
        Err(err) => return Err(err),
    };
    // The clone shares the file offset, so following continues where the
    // first pass stopped.
    let mut reader = BufReader::with_capacity(256 * 1024, rotated.chain(current.try_clone()?));
    let mut line = Vec::new();
    if let Some(count) = options.tail {
        print_tail(&mut reader, &mut line, count, &mut printer)?;
    } else {
        read_complete_lines(&mut reader, &mut line, |line| printer.print_line(line))?;
    }
    printer.flush()?;

    let Some(running) = follow else {
        return Ok(());
    };
    let mut reader = BufReader::with_capacity(256 * 1024, current.try_clone()?);
    loop {
        // Read the state before the file, so that output written just
        // before the exit is read on the last pass.
        let still_running = running();
        read_complete_lines(&mut reader, &mut line, |line| printer.print_line(line))?;
        printer.flush()?;
        if fs::metadata(path).is_ok_and(|meta| meta.ino() != current.metadata().map(|m| m.ino()).unwrap_or(0)) {
            // Rotated: what is left of the old file was read above.
            current = File::open(path)?;
            reader = BufReader::with_capacity(256 * 1024, current.try_clone()?);
            continue;
        }
        if !still_running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Calls `each` for every complete line that can be read now. A line still
/// being written (no newline yet) stays in `line` for the next call.
fn read_complete_lines(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    loop {
        let n = reader.read_until(b'\n', line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(());
        }
        each(line)?;
        line.clear();
    }
}

/// Prints the last `count` lines: a line is every entry of one stream up
/// to and including an `F` entry. As with tail(1), an unfinished line at
/// the end of the log counts as a line.
fn print_tail<O: Write, E: Write>(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    count: usize,
    printer: &mut Printer<O, E>,
) -> io::Result<()> {
    if count == 0 {
        // Skip to the end, so that --follow prints only new lines.
        return read_complete_lines(reader, line, |_| Ok(()));
    }
    let mut lines: VecDeque<Vec<Vec<u8>>> = VecDeque::new();
    let mut open: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    read_complete_lines(reader, line, |raw| {
        let text = raw.strip_suffix(b"\n").unwrap_or(raw);
        if let Some(entry) = parse(text) {
            let index = entry.stream.index();
            open[index].push(raw.to_vec());
            if !entry.partial {
                lines.push_back(std::mem::take(&mut open[index]));
                if lines.len() > count {
                    lines.pop_front();
                }
            }
        }
        Ok(())
    })?;
    for unfinished in open.into_iter().filter(|parts| !parts.is_empty()) {
        lines.push_back(unfinished);
        if lines.len() > count {
            lines.pop_front();
        }
    }
    for parts in &lines {
        for raw in parts {
            printer.print_line(raw)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(chunks: &[(Stream, &[u8])], finish: bool) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut writer = LogWriter::open(&path, None).unwrap();
        for (stream, data) in chunks {
            writer.write(*stream, data).unwrap();
        }
        if finish {
            writer.finish(Stream::Stdout).unwrap();
            writer.finish(Stream::Stderr).unwrap();
        }
        fs::read_to_string(&path).unwrap()
    }

    /// Drops the time field, which differs on every run.
    fn without_times(log: &str) -> Vec<String> {
        log.lines().map(|l| l.split_once(' ').unwrap().1.to_owned()).collect()
    }

    #[test]
    fn lines_split_across_reads() {
        let log = written(&[(Stream::Stdout, b"hel"), (Stream::Stderr, b"oops\n"), (Stream::Stdout, b"lo\nx\n")], false);
        assert_eq!(without_times(&log), ["stderr F oops", "stdout F hello", "stdout F x"]);
    }

    #[test]
    fn unfinished_line_is_partial() {
        let log = written(&[(Stream::Stdout, b"a\nno newline")], true);
        assert_eq!(without_times(&log), ["stdout F a", "stdout P no newline"]);
    }

    #[test]
    fn long_line_split_into_partials() {
        let long = vec![b'x'; MAX_ENTRY * 2 + 10];
        let mut data = long.clone();
        data.push(b'\n');
        let log = written(&[(Stream::Stdout, &data)], false);
        let tags: Vec<String> = without_times(&log).iter().map(|l| l[..8].to_owned()).collect();
        assert_eq!(tags, ["stdout P", "stdout P", "stdout F"]);
    }

    #[test]
    fn time_field_is_rfc3339() {
        let log = written(&[(Stream::Stdout, b"x\n")], false);
        let entry = parse(log.trim_end().as_bytes()).unwrap();
        assert_eq!(entry.time.len(), "2026-12-04T23:49:05.123456789Z".len(), "{log}");
        assert!(entry.time.ends_with('Z'), "{log}");
    }

    fn printed(log: &str, options: PrintOptions) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        fs::write(&path, log).unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        print(&path, options, &mut out, &mut err, None).unwrap();
        (String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    const SAMPLE: &str = "T1 stdout F one\nT2 stderr F warn\nT3 stdout P tw\nT4 stdout F o\nT5 stdout P three\n";

    #[test]
    fn print_separates_streams() {
        let (out, err) = printed(SAMPLE, PrintOptions::default());
        assert_eq!(out, "one\ntwo\nthree");
        assert_eq!(err, "warn\n");
    }

    #[test]
    fn print_with_timestamps() {
        let (out, _) = printed(SAMPLE, PrintOptions { timestamps: true, tail: None });
        assert_eq!(out, "T1 one\nT3 two\nT5 three");
    }

    #[test]
    fn print_tail_counts_lines() {
        let (out, err) = printed(SAMPLE, PrintOptions { timestamps: false, tail: Some(1) });
        assert_eq!(out, "three");
        assert_eq!(err, "");
        let (out, err) = printed(SAMPLE, PrintOptions { timestamps: false, tail: Some(3) });
        assert_eq!(out, "two\nthree");
        assert_eq!(err, "warn\n");
        let (out, err) = printed(SAMPLE, PrintOptions { timestamps: false, tail: Some(0) });
        assert_eq!((out.as_str(), err.as_str()), ("", ""));
    }

    #[test]
    fn rotation_bounds_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut writer = LogWriter::open(&path, Some(200)).unwrap();
        for i in 0..40 {
            writer.write(Stream::Stdout, format!("line {i}\n").as_bytes()).unwrap();
        }

        let current = fs::read_to_string(&path).unwrap();
        let rotated = fs::read_to_string(rotated_path(&path)).unwrap();
        assert!(current.len() <= 200, "{}", current.len());
        assert!(rotated.len() <= 200, "{}", rotated.len());
        assert!(current.ends_with("stdout F line 39\n"), "{current}");
        let mut out = Vec::new();
        print(&path, PrintOptions::default(), &mut out, Vec::new(), None).unwrap();
        let printed = String::from_utf8(out).unwrap();
        let numbers: Vec<u32> = printed.lines().map(|l| l[5..].parse().unwrap()).collect();
        assert_eq!(numbers.last(), Some(&39));
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{printed}");
        assert!(numbers.len() > 5, "{printed}");
    }
}
