//! `perimeter redact` on large inputs, run as the real binary: a 100 MB file is redacted in
//! bounded memory with nothing left behind, standard input goes through a private temporary file
//! that is gone when the run ends, invalid UTF-8 fails before any output, and empty input gives
//! empty output.
//!
//! Peak memory is read from `/proc/<pid>/status` (`VmHWM`) while the child runs, so these tests
//! are for Linux, where CI runs them.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The peak resident memory the child may reach, in KiB. The detector's tables alone are about
/// 50 MiB; a 4 MiB window and its redacted head add well under 30.
const MAX_PEAK_KIB: u64 = 100 << 10;

const EMAILS: usize = 40;
const CARDS: [&str; 3] = ["4111 1111 1111 1111", "5555 5555 5555 4444", "4012 8888 8888 1881"];
const IBANS: [&str; 3] =
    ["GB82 WEST 1234 5698 7654 32", "DE89 3704 0044 0532 0130 00", "FR14 2004 1010 0505 0001 3M02 606"];

fn email(i: usize) -> String {
    // Letters only before the `@`, so that digits and `@` in the output can only be leaks.
    let name: String = [b'a' + (i % 26) as u8, b'a' + (i / 26) as u8].iter().map(|&b| char::from(b)).collect();
    format!("{name}.customer@example.org")
}

/// About `bytes` of prose (no digits, no `@`) with the sensitive values above, each many times.
fn corpus(bytes: usize) -> String {
    let prose = [
        "The quarterly review covered logistics, vendor onboarding and the new archive policy. ",
        "Please find the summary of the meeting below; nothing in it needs action from the team. ",
        "Customer services noted a rise in questions about delivery times during the holidays. ",
    ];
    let mut text = String::with_capacity(bytes + 1024);
    let mut i = 0usize;
    while text.len() < bytes {
        text.push_str(prose[i % 3]);
        text.push_str(prose[(i + 1) % 3]);
        match i % 3 {
            0 => text.push_str(&format!("Write to {} about it.\n", email(i % EMAILS))),
            1 => text.push_str(&format!("The card {} was charged twice.\n", CARDS[(i / 3) % CARDS.len()])),
            _ => text.push_str(&format!("Pay to {} by the end of the week.\n", IBANS[(i / 3) % IBANS.len()])),
        }
        i += 1;
    }
    text
}

fn perimeter(data: &Path, tmp: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perimeter"));
    c.env("PERIMETER_LOG", "warn").env("TMPDIR", tmp).env_remove("PERIMETER_CONFIG").arg("--data-dir").arg(data);
    c
}

/// Samples the child's peak resident memory (`VmHWM`, a high-water mark, so a late sample sees
/// an earlier peak) until told to stop or the child is gone. `spawn` returns after `exec`, so
/// every sample is of the `perimeter` image.
struct PeakWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl PeakWatch {
    fn start(child: &Child) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let status = format!("/proc/{}/status", child.id());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                // A zombie's status has no memory lines: the child has exited.
                let Some(hwm) = std::fs::read_to_string(&status).ok().and_then(|s| vm_hwm_kib(&s)) else { break };
                peak = peak.max(hwm);
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        PeakWatch { stop, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
    peak_kib: u64,
    seconds: f64,
}

/// Runs `cmd` with stdout and stderr into files in `dir`, feeding `stdin` when given (in two
/// halves, calling `between` after the first), and measures its peak memory.
fn run(cmd: &mut Command, dir: &Path, stdin: Option<&[u8]>, between: impl FnOnce(&Child)) -> Run {
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    cmd.stdout(File::create(&out_path).unwrap()).stderr(File::create(&err_path).unwrap());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let watch = PeakWatch::start(&child);
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let (first, second) = input.split_at(input.len() / 2);
        pipe.write_all(first).unwrap();
        between(&child);
        pipe.write_all(second).unwrap();
    }
    let status = child.wait().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let peak_kib = watch.finish();
    let stdout = std::fs::read(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    Run { status, stdout, stderr, peak_kib, seconds }
}

/// What `restore` does, written here: every `<…>` (no `<` inside) that the mapping names becomes
/// its value.
fn restore(text: &str, mapping: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let after = &rest[open..];
        let close = after.find('>');
        let candidate = close.map(|c| &after[..=c]).filter(|c| !c[1..].contains('<'));
        match candidate.and_then(|c| mapping.get(c).map(|v| (c, v))) {
            Some((c, value)) => {
                out.push_str(&rest[..open]);
                out.push_str(value);
                rest = &rest[open + c.len()..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Fails if a digit or `@` occurs outside a `<KIND_n>` placeholder: in these inputs only the
/// sensitive values have them, so any such byte is (part of) a value that was not redacted.
fn assert_no_value_outside_placeholders(text: &str) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'<' {
            if let Some(len) = bytes[i..].iter().position(|&b| b == b'>') {
                let inner = &text[i + 1..i + len];
                let shaped = inner.rsplit_once('_').is_some_and(|(kind, n)| {
                    !kind.is_empty()
                        && kind.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                        && !n.is_empty()
                        && n.bytes().all(|b| b.is_ascii_digit())
                });
                if shaped {
                    i += len + 1;
                    continue;
                }
            }
        }
        assert!(
            !bytes[i].is_ascii_digit() && bytes[i] != b'@',
            "a value survived near byte {i}: {:?}",
            &text[i.saturating_sub(40)..(i + 40).min(text.len())]
        );
        i += 1;
    }
}

/// Checks a `--json` result against its input: every value redacted, each distinct value under
/// one placeholder of the right kind, and restoring gives the input back.
fn check_json(input: &str, stdout: &[u8]) {
    let v: Value = serde_json::from_slice(stdout).unwrap();
    let text = v["text"].as_str().unwrap();
    let entries = v["mapping"].as_array().unwrap();
    let mut mapping = HashMap::new();
    let mut by_value: HashMap<&str, (&str, &str)> = HashMap::new();
    for e in entries {
        let (p, kind, value) =
            (e["placeholder"].as_str().unwrap(), e["kind"].as_str().unwrap(), e["value"].as_str().unwrap());
        assert!(mapping.insert(p, value).is_none(), "{p} twice");
        assert!(by_value.insert(value, (p, kind)).is_none(), "{value:?} has two placeholders");
    }
    for i in 0..EMAILS {
        assert_eq!(by_value[email(i).as_str()].1, "EMAIL");
    }
    for card in CARDS {
        assert_eq!(by_value[card].1, "CREDIT_CARD");
    }
    for iban in IBANS {
        assert_eq!(by_value[iban].1, "IBAN");
    }
    assert_no_value_outside_placeholders(text);
    assert!(restore(text, &mapping) == input, "restoring does not give the input back");
}

#[test]
fn a_100_mb_file_is_redacted_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(100_000_000);
    let path = dir.path().join("input.txt");
    std::fs::write(&path, &input).unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let r = run(perimeter(dir.path(), tmp.path()).arg("redact").arg("--json").arg(&path), dir.path(), None, |_| {});
    assert!(r.status.success(), "{}: {}", r.status, r.stderr);
    let mb = input.len() as f64 / 1e6;
    eprintln!(
        "redact --json, {mb:.0} MB file: peak RSS {} KiB, {:.2} s, {:.0} MB/s",
        r.peak_kib,
        r.seconds,
        mb / r.seconds
    );
    assert!(r.peak_kib > 0, "no memory sample was taken");
    assert!(r.peak_kib < MAX_PEAK_KIB, "peak RSS {} KiB", r.peak_kib);
    check_json(&input, &r.stdout);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "a file needs no temporary copy");
}

#[test]
fn standard_input_is_spooled_to_a_private_file_that_does_not_outlive_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = corpus(20_000_000);
    let path = dir.path().join("input.txt");
    std::fs::write(&path, &input).unwrap();

    // Half the input is written, so the child is still copying it: its spool is open, private,
    // in the temporary directory given, and has no name there.
    let spool_seen = |child: &Child| {
        let fds = format!("/proc/{}/fd", child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spool = std::fs::read_dir(&fds)
                .unwrap()
                .flatten()
                .find(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(tmp.path())));
            if let Some(fd) = spool {
                let target = std::fs::read_link(fd.path()).unwrap();
                assert!(target.to_string_lossy().ends_with(" (deleted)"), "{}", target.display());
                let mode =
                    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(fd.path()).unwrap().permissions());
                assert_eq!(mode & 0o777, 0o600, "{mode:o}");
                assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
                return;
            }
            assert!(Instant::now() < deadline, "no spool file open in {}", tmp.path().display());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let piped = run(perimeter(dir.path(), tmp.path()).arg("redact"), dir.path(), Some(input.as_bytes()), spool_seen);
    assert!(piped.status.success(), "{}: {}", piped.status, piped.stderr);
    eprintln!("redact, 20 MB on stdin: peak RSS {} KiB, {:.2} s", piped.peak_kib, piped.seconds);
    assert!(piped.peak_kib < MAX_PEAK_KIB, "peak RSS {} KiB", piped.peak_kib);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    // The same bytes as from the file.
    let file = run(perimeter(dir.path(), tmp.path()).arg("redact").arg(&path), dir.path(), None, |_| {});
    assert!(file.status.success(), "{}", file.stderr);
    assert!(piped.stdout == file.stdout, "stdin and file outputs differ");
    assert_no_value_outside_placeholders(std::str::from_utf8(&piped.stdout).unwrap());
}

#[test]
fn invalid_utf8_is_refused_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // The bad byte is past the first two 4 MiB windows.
    let mut input = corpus(10_000_000).into_bytes();
    let at = input.len() - 10;
    let at = at + input[at..].iter().position(u8::is_ascii).unwrap();
    input.insert(at, 0xff);
    let path = dir.path().join("bad.txt");
    std::fs::write(&path, &input).unwrap();
    for json in [false, true] {
        let mut file = perimeter(dir.path(), tmp.path());
        file.arg("redact").arg(&path);
        let mut piped = perimeter(dir.path(), tmp.path());
        piped.arg("redact").arg("-");
        if json {
            file.arg("--json");
            piped.arg("--json");
        }
        for (cmd, stdin) in [(&mut file, None), (&mut piped, Some(input.as_slice()))] {
            let r = run(cmd, dir.path(), stdin, |_| {});
            assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
            assert!(r.stderr.contains("not valid UTF-8") && r.stderr.contains(&format!("offset {at}")), "{}", r.stderr);
            assert!(r.stdout.is_empty(), "{} bytes written", r.stdout.len());
            assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "the spool is gone after a failure");
        }
    }
}

#[test]
fn empty_input_gives_empty_output() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.txt");
    std::fs::write(&path, "").unwrap();
    for stdin in [None, Some(&b""[..])] {
        let target: &[&str] = if stdin.is_some() { &[] } else { &[path.to_str().unwrap()] };
        let r = run(perimeter(dir.path(), tmp.path()).arg("redact").args(target), dir.path(), stdin, |_| {});
        assert!(r.status.success() && r.stdout.is_empty(), "{}: {:?}", r.stderr, r.stdout);
        let r =
            run(perimeter(dir.path(), tmp.path()).args(["redact", "--json"]).args(target), dir.path(), stdin, |_| {});
        assert!(r.status.success(), "{}", r.stderr);
        let v: Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(v, serde_json::json!({"text": "", "mapping": []}));
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
