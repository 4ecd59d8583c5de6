//! Pickle scanner throughput on large benign checkpoints; the target is ≥ 100 MB/s.
//!
//! `cargo bench -p perimeter-scan --bench pickle` builds three inputs in memory (about
//! `PERIMETER_BENCH_MB` MB each, default 100) and prints MB/s (10^6 bytes per second) for each:
//!
//! - `blobs`: a state dict of numpy arrays whose data are 1 MiB `BINBYTES` literals, each
//!   wrapped in `torch._utils._rebuild_tensor_v2`-style calls (the common case: data bytes
//!   dominate, opcodes are few);
//! - `opcodes`: the same size made of 255-byte `SHORT_BINBYTES` items, one tensor rebuild call
//!   and memo entries per item (the adversarial case for the opcode loop);
//! - `zip`: a PyTorch zip of one `data.pkl` and stored tensor data members, whose every byte
//!   is CRC-checked and sniffed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use perimeter_scan::{pickle, torch, Report, Verdict};

const RUNS: usize = 5;
/// Memo slots of the two globals, far from the ones `MEMOIZE` fills.
const REBUILD: u32 = 1 << 30;
const ORDERED_DICT: u32 = (1 << 30) + 1;

fn target_bytes() -> usize {
    std::env::var("PERIMETER_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(100usize) * 1_000_000
}

fn put(out: &mut Vec<u8>, op: u8, bytes: &[u8]) {
    out.push(op);
    out.extend_from_slice(bytes);
}

fn global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(b'c');
    out.extend_from_slice(module.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
}

fn short_str(out: &mut Vec<u8>, s: &str) {
    out.push(0x8c);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// `_rebuild_tensor_v2(<value>, 0, (n,), (1,), False, OrderedDict())` around the value on top.
fn rebuild_call(out: &mut Vec<u8>, n: u32) {
    // Stack: ..., rebuild (memo 1), MARK, value.
    out.push(b'K');
    out.push(0);
    put(out, b'J', &n.to_le_bytes());
    out.push(0x85);
    out.extend_from_slice(b"K\x01\x85");
    out.push(0x89);
    put(out, b'j', &ORDERED_DICT.to_le_bytes());
    out.extend_from_slice(b")R");
    out.push(b't');
    out.push(b'R');
}

/// The `blobs` input: numpy arrays with 1 MiB data literals, wrapped in tensor rebuilds.
fn blobs(total: usize) -> Vec<u8> {
    let mut out = vec![0x80, 4];
    for (module, name, slot) in [
        ("torch._utils", "_rebuild_tensor_v2", 1u8),
        ("numpy.core.multiarray", "_reconstruct", 3),
        ("numpy", "ndarray", 4),
        ("numpy", "dtype", 5),
    ] {
        global(&mut out, module, name);
        put(&mut out, b'q', &[slot]);
        out.push(b'0');
    }
    global(&mut out, "collections", "OrderedDict");
    put(&mut out, b'r', &ORDERED_DICT.to_le_bytes());
    out.extend_from_slice(b")R(");
    let data = vec![0x3cu8; 1 << 20];
    let mut i = 0u32;
    while out.len() < total {
        short_str(&mut out, &format!("layer{i}.weight"));
        put(&mut out, b'h', &[1]);
        out.push(b'(');
        // _reconstruct(ndarray, (0,), b'b'), then BUILD with (1, shape, dtype('f4'), False, data).
        put(&mut out, b'h', &[3]);
        put(&mut out, b'h', &[4]);
        out.extend_from_slice(b"K\x00\x85C\x01b\x87R(K\x01J\x00\x00\x04\x00\x85");
        put(&mut out, b'h', &[5]);
        out.extend_from_slice(b"\x8c\x02f4\x89\x88\x87R\x89");
        put(&mut out, b'B', &(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        out.extend_from_slice(b"tb");
        rebuild_call(&mut out, 1 << 18);
        i += 1;
    }
    out.extend_from_slice(b"u.");
    out
}

/// The `opcodes` input: 255-byte literals, one rebuild call and a memo entry each.
fn opcodes(total: usize) -> Vec<u8> {
    let mut out = vec![0x80, 4];
    global(&mut out, "torch._utils", "_rebuild_tensor_v2");
    put(&mut out, b'r', &REBUILD.to_le_bytes());
    global(&mut out, "collections", "OrderedDict");
    put(&mut out, b'r', &ORDERED_DICT.to_le_bytes());
    out.extend_from_slice(b")R(");
    let data = [0x41u8; 255];
    let mut i = 0u32;
    while out.len() < total {
        put(&mut out, b'J', &i.to_le_bytes());
        put(&mut out, b'j', &REBUILD.to_le_bytes());
        out.push(b'(');
        put(&mut out, b'C', &[255]);
        out.extend_from_slice(&data);
        out.push(0x94); // MEMOIZE
        rebuild_call(&mut out, 64);
        if i % 1000 == 999 {
            // Keep the stack shallow like a pickler's batches do.
            out.extend_from_slice(b"u(");
        }
        i += 1;
    }
    out.extend_from_slice(b"u.");
    out
}

fn zip_checkpoint(total: usize) -> Vec<u8> {
    // data.pkl, then stored data members of 4 MiB (CRC computed by the writer below).
    let pkl = {
        let mut p = vec![0x80, 2];
        global(&mut p, "collections", "OrderedDict");
        p.extend_from_slice(b")R.");
        p
    };
    let mut members: Vec<(String, Vec<u8>)> = vec![("archive/data.pkl".into(), pkl)];
    let mut seed = 0x1234_5678u32;
    let mut n = 0;
    while members.iter().map(|m| m.1.len()).sum::<usize>() < total {
        let data: Vec<u8> = (0..4 << 20)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        members.push((format!("archive/data/{n}"), data));
        n += 1;
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in &members {
        let mut h = crc32fast::Hasher::new();
        h.update(data);
        let crc = h.finalize();
        let offset = out.len() as u32;
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        out.extend(crc.to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend((name.len() as u16).to_le_bytes());
        out.extend([0, 0]);
        out.extend(name.as_bytes());
        out.extend(data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        central.extend(crc.to_le_bytes());
        central.extend((data.len() as u32).to_le_bytes());
        central.extend((data.len() as u32).to_le_bytes());
        central.extend((name.len() as u16).to_le_bytes());
        central.extend([0u8; 12]);
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend([0, 0]);
    out
}

fn measure(name: &str, bytes: &[u8], scan: impl Fn(&Vec<u8>) -> Report) {
    let v = bytes.to_vec();
    let first = scan(&v);
    assert_eq!(first.verdict, Verdict::Clean, "{name}: {first:#?}");
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        let t = Instant::now();
        black_box(scan(black_box(&v)));
        best = best.min(t.elapsed());
    }
    let mb = v.len() as f64 / 1e6;
    println!(
        "{name:8} {mb:8.1} MB  best of {RUNS}: {:8.2} ms  {:10.0} MB/s",
        best.as_secs_f64() * 1e3,
        mb / best.as_secs_f64()
    );
}

fn main() {
    let total = target_bytes();
    measure("blobs", &blobs(total), |v| pickle::scan_source(v));
    measure("opcodes", &opcodes(total), |v| pickle::scan_source(v));
    measure("zip", &zip_checkpoint(total), |v| torch::scan_zip(v));
}
