//! The structural scan of a large safetensors and GGUF file against the time to SHA-256 the
//! same file (which the load gate does anyway). A structural scan reads the header and tensor
//! table, never the tensor data, so it should cost a small fraction of the hash; the target is
//! at most 1.2× the hash time.
//!
//! `cargo bench -p perimeter-scan --bench structural` builds two files of
//! `PERIMETER_BENCH_BYTES` (default 1 GiB) of pseudo-random tensor data in the temp directory,
//! times both, prints the figures and removes the files. The files were just written, so both
//! timings are warm-cache: the hash is CPU-bound, which is the stricter comparison.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use perimeter_scan::{Report, Source, SourceError, Verdict};
use sha2::{Digest, Sha256};

/// Each tensor: 1 Mi f32 values (4 MiB).
const TENSOR_ELEMENTS: u64 = 1 << 20;
const TENSOR_BYTES: u64 = TENSOR_ELEMENTS * 4;
const SCAN_RUNS: usize = 20;

struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    fn open(path: &Path) -> FileSource {
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        FileSource { file, len }
    }
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(&self.file, buf, offset);
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(&self.file, buf, offset);
        n.map_err(|e| SourceError(e.to_string()))
    }
}

/// Writes `len` bytes of cheap pseudo-random data (so nothing is sparse or compressible).
fn write_data(out: &mut impl Write, len: u64, seed: u64) {
    let mut state = seed | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
}

fn build_safetensors(path: &Path, tensors: u64) {
    let entries: Vec<String> = (0..tensors)
        .map(|i| {
            format!(
                r#""model.layers.{i}.weight":{{"dtype":"F32","shape":[1024,1024],"data_offsets":[{},{}]}}"#,
                i * TENSOR_BYTES,
                (i + 1) * TENSOR_BYTES
            )
        })
        .collect();
    let mut header = format!(r#"{{"__metadata__":{{"format":"pt"}},{}}}"#, entries.join(","));
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut out = BufWriter::new(File::create(path).unwrap());
    out.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    out.write_all(header.as_bytes()).unwrap();
    write_data(&mut out, tensors * TENSOR_BYTES, 0x5eed);
    out.flush().unwrap();
}

fn gstr(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF file with realistic metadata (a 32,000-token vocabulary, scores, a ChatML template)
/// and `tensors` F32 tensors.
fn build_gguf(path: &Path, tensors: u64) {
    let mut head = b"GGUF".to_vec();
    head.extend(3u32.to_le_bytes());
    head.extend(tensors.to_le_bytes());
    head.extend(4u64.to_le_bytes());
    gstr(&mut head, "general.architecture");
    head.extend(8u32.to_le_bytes());
    gstr(&mut head, "llama");
    gstr(&mut head, "tokenizer.ggml.tokens");
    head.extend(9u32.to_le_bytes());
    head.extend(8u32.to_le_bytes());
    head.extend(32_000u64.to_le_bytes());
    for i in 0..32_000 {
        gstr(&mut head, &format!("token{i}"));
    }
    gstr(&mut head, "tokenizer.ggml.scores");
    head.extend(9u32.to_le_bytes());
    head.extend(6u32.to_le_bytes());
    head.extend(32_000u64.to_le_bytes());
    head.extend(std::iter::repeat_n(0u8, 32_000 * 4));
    gstr(&mut head, "tokenizer.chat_template");
    head.extend(8u32.to_le_bytes());
    gstr(
        &mut head,
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    );
    for i in 0..tensors {
        gstr(&mut head, &format!("blk.{i}.ffn.weight"));
        head.extend(2u32.to_le_bytes());
        head.extend(1024u64.to_le_bytes());
        head.extend(1024u64.to_le_bytes());
        head.extend(0u32.to_le_bytes());
        head.extend((i * TENSOR_BYTES).to_le_bytes());
    }
    while !head.len().is_multiple_of(32) {
        head.push(0);
    }
    let mut out = BufWriter::new(File::create(path).unwrap());
    out.write_all(&head).unwrap();
    write_data(&mut out, tensors * TENSOR_BYTES, 0x9e37);
    out.flush().unwrap();
}

fn sha256(path: &Path) -> Duration {
    let start = Instant::now();
    let mut file = File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    std::hint::black_box(hasher.finalize());
    start.elapsed()
}

/// The median of `SCAN_RUNS` scans (each opens the file, as the CLI does).
fn scan(path: &Path, name: &str) -> (Duration, Report) {
    let mut times = Vec::with_capacity(SCAN_RUNS);
    let mut report = None;
    for _ in 0..SCAN_RUNS {
        let start = Instant::now();
        let source = FileSource::open(path);
        let r = perimeter_scan::scan(name, &source);
        times.push(start.elapsed());
        report = Some(r);
    }
    times.sort();
    (times[SCAN_RUNS / 2], report.unwrap())
}

fn bench(label: &str, path: &Path, name: &str) -> bool {
    let len = std::fs::metadata(path).unwrap().len();
    // Two hashes; the faster one is the warm-cache figure.
    let hash = sha256(path).min(sha256(path));
    let (scan_time, report) = scan(path, name);
    assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
    let ratio = scan_time.as_secs_f64() / hash.as_secs_f64();
    let ok = ratio <= 1.2;
    println!(
        "{label:<12} {:>6.0} MiB  sha256 {:>8.1} ms ({:>6.0} MiB/s)  structural scan {:>8.3} ms  ratio {:.5}  {}",
        len as f64 / (1 << 20) as f64,
        hash.as_secs_f64() * 1e3,
        len as f64 / (1 << 20) as f64 / hash.as_secs_f64(),
        scan_time.as_secs_f64() * 1e3,
        ratio,
        if ok { "ok (target <= 1.2)" } else { "OVER TARGET (1.2)" }
    );
    ok
}

fn main() {
    // `cargo test --benches` runs bench targets with no arguments as well; only `cargo bench`
    // (which passes `--bench`) builds the large files.
    if !std::env::args().any(|a| a == "--bench") {
        println!("structural: run with `cargo bench -p perimeter-scan --bench structural`");
        return;
    }
    let bytes: u64 = std::env::var("PERIMETER_BENCH_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 30);
    let tensors = (bytes / TENSOR_BYTES).max(1);
    let dir: PathBuf = std::env::temp_dir().join(format!("perimeter-scan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let st = dir.join("model.safetensors");
    let gg = dir.join("model.gguf");
    build_safetensors(&st, tensors);
    build_gguf(&gg, tensors);
    let ok = bench("safetensors", &st, "model.safetensors") & bench("gguf", &gg, "model.gguf");
    std::fs::remove_dir_all(&dir).unwrap();
    if !ok {
        std::process::exit(1);
    }
}
