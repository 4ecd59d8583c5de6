//! Test corpus writers for the pickle and PyTorch scanners: a pickle opcode writer, zip and tar
//! builders, and the shapes of real PyTorch checkpoints — all as bytes, nothing loaded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Emits pickle opcodes.
#[derive(Default, Clone)]
pub struct P(pub Vec<u8>);

impl P {
    pub fn new() -> P {
        P(Vec::new())
    }
    /// Starts with `PROTO v`.
    pub fn proto(v: u8) -> P {
        P(vec![0x80, v])
    }
    pub fn op(mut self, op: u8) -> P {
        self.0.push(op);
        self
    }
    pub fn raw(mut self, bytes: &[u8]) -> P {
        self.0.extend_from_slice(bytes);
        self
    }
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
    // Protocol 0 text opcodes.
    pub fn global(self, module: &str, name: &str) -> P {
        self.op(b'c').raw(module.as_bytes()).raw(b"\n").raw(name.as_bytes()).raw(b"\n")
    }
    pub fn inst(self, module: &str, name: &str) -> P {
        self.op(b'i').raw(module.as_bytes()).raw(b"\n").raw(name.as_bytes()).raw(b"\n")
    }
    /// `STRING` with the literal exactly as given (quotes and escapes included).
    pub fn string0(self, quoted: &str) -> P {
        self.op(b'S').raw(quoted.as_bytes()).raw(b"\n")
    }
    pub fn unicode0(self, s: &str) -> P {
        self.op(b'V').raw(s.as_bytes()).raw(b"\n")
    }
    pub fn int0(self, v: i64) -> P {
        self.op(b'I').raw(v.to_string().as_bytes()).raw(b"\n")
    }
    pub fn put(self, i: u32) -> P {
        self.op(b'p').raw(i.to_string().as_bytes()).raw(b"\n")
    }
    pub fn get(self, i: u32) -> P {
        self.op(b'g').raw(i.to_string().as_bytes()).raw(b"\n")
    }
    pub fn persid(self, id: &str) -> P {
        self.op(b'P').raw(id.as_bytes()).raw(b"\n")
    }
    // Binary opcodes.
    pub fn mark(self) -> P {
        self.op(b'(')
    }
    pub fn stop(self) -> P {
        self.op(b'.')
    }
    pub fn none(self) -> P {
        self.op(b'N')
    }
    pub fn newfalse(self) -> P {
        self.op(0x89)
    }
    pub fn newtrue(self) -> P {
        self.op(0x88)
    }
    pub fn tuple(self) -> P {
        self.op(b't')
    }
    pub fn tuple1(self) -> P {
        self.op(0x85)
    }
    pub fn tuple2(self) -> P {
        self.op(0x86)
    }
    pub fn tuple3(self) -> P {
        self.op(0x87)
    }
    pub fn empty_tuple(self) -> P {
        self.op(b')')
    }
    pub fn empty_dict(self) -> P {
        self.op(b'}')
    }
    pub fn empty_list(self) -> P {
        self.op(b']')
    }
    pub fn setitem(self) -> P {
        self.op(b's')
    }
    pub fn setitems(self) -> P {
        self.op(b'u')
    }
    pub fn appends(self) -> P {
        self.op(b'e')
    }
    pub fn reduce(self) -> P {
        self.op(b'R')
    }
    pub fn build(self) -> P {
        self.op(b'b')
    }
    pub fn newobj(self) -> P {
        self.op(0x81)
    }
    pub fn newobj_ex(self) -> P {
        self.op(0x92)
    }
    pub fn obj(self) -> P {
        self.op(b'o')
    }
    pub fn stack_global(self) -> P {
        self.op(0x93)
    }
    pub fn memoize(self) -> P {
        self.op(0x94)
    }
    pub fn binpersid(self) -> P {
        self.op(b'Q')
    }
    pub fn binput(self, i: u8) -> P {
        self.op(b'q').raw(&[i])
    }
    pub fn long_binput(self, i: u32) -> P {
        self.op(b'r').raw(&i.to_le_bytes())
    }
    pub fn binget(self, i: u8) -> P {
        self.op(b'h').raw(&[i])
    }
    pub fn long_binget(self, i: u32) -> P {
        self.op(b'j').raw(&i.to_le_bytes())
    }
    pub fn int(self, v: i64) -> P {
        match v {
            0..=0xFF => self.op(b'K').raw(&[v as u8]),
            0x100..=0xFFFF => self.op(b'M').raw(&(v as u16).to_le_bytes()),
            _ if i32::try_from(v).is_ok() => self.op(b'J').raw(&(v as i32).to_le_bytes()),
            _ => {
                let b = v.to_le_bytes();
                self.op(0x8a).raw(&[8]).raw(&b)
            }
        }
    }
    pub fn long1(self, le: &[u8]) -> P {
        self.op(0x8a).raw(&[le.len() as u8]).raw(le)
    }
    pub fn float(self, v: f64) -> P {
        self.op(b'G').raw(&v.to_be_bytes())
    }
    /// `SHORT_BINUNICODE` or `BINUNICODE`, by length.
    pub fn str(self, s: &str) -> P {
        if s.len() < 256 {
            self.op(0x8c).raw(&[s.len() as u8]).raw(s.as_bytes())
        } else {
            self.op(b'X').raw(&(s.len() as u32).to_le_bytes()).raw(s.as_bytes())
        }
    }
    /// `BINUNICODE` (protocol 1–3 strings).
    pub fn binunicode(self, s: &str) -> P {
        self.op(b'X').raw(&(s.len() as u32).to_le_bytes()).raw(s.as_bytes())
    }
    pub fn short_binstring(self, s: &[u8]) -> P {
        self.op(b'U').raw(&[s.len() as u8]).raw(s)
    }
    /// `SHORT_BINBYTES`, `BINBYTES` or `BINBYTES8`, by length.
    pub fn binbytes(self, b: &[u8]) -> P {
        if b.len() < 256 {
            self.op(b'C').raw(&[b.len() as u8]).raw(b)
        } else {
            self.op(b'B').raw(&(b.len() as u32).to_le_bytes()).raw(b)
        }
    }
    pub fn binbytes8(self, b: &[u8]) -> P {
        self.op(0x8e).raw(&(b.len() as u64).to_le_bytes()).raw(b)
    }
    pub fn bytearray8(self, b: &[u8]) -> P {
        self.op(0x96).raw(&(b.len() as u64).to_le_bytes()).raw(b)
    }
    pub fn frame(self, len: u64) -> P {
        self.op(0x95).raw(&len.to_le_bytes())
    }
    pub fn ext1(self, code: u8) -> P {
        self.op(0x82).raw(&[code])
    }
    pub fn ext2(self, code: u16) -> P {
        self.op(0x83).raw(&code.to_le_bytes())
    }
    pub fn ext4(self, code: u32) -> P {
        self.op(0x84).raw(&code.to_le_bytes())
    }
}

/// Protocol 4 framing: `PROTO 4`, `FRAME len`, then `body` (which must end with `STOP`).
pub fn framed(body: &[u8]) -> Vec<u8> {
    P::proto(4).frame(body.len() as u64).raw(body).bytes()
}

/// `os.system("id")` the classic way (protocol 0 text opcodes, as most payloads are).
pub fn os_system() -> Vec<u8> {
    P::new().global("os", "system").mark().string0("'id'").tuple().reduce().stop().bytes()
}

/// A PyTorch `state_dict` pickle (protocol 2, as `torch.save` writes it): an `OrderedDict`
/// of `_rebuild_tensor_v2` calls whose storages are persistent ids
/// `('storage', torch.FloatStorage, key, 'cpu', numel)`, with `_metadata` set by `BUILD`.
pub fn state_dict(tensors: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut p = P::proto(2).global("collections", "OrderedDict").binput(0).empty_tuple().reduce().binput(1).mark();
    let mut memo = 2u8;
    let mut rebuild = None;
    for (name, key, numel) in tensors {
        p = p.binunicode(name).binput(memo);
        memo += 1;
        p = match rebuild {
            None => {
                rebuild = Some(memo);
                memo += 1;
                p.global("torch._utils", "_rebuild_tensor_v2").binput(memo - 1)
            }
            Some(i) => p.binget(i),
        };
        p = p
            .mark()
            .mark()
            .binunicode("storage")
            .global("torch", "FloatStorage")
            .binunicode(key)
            .binunicode("cpu")
            .int(i64::from(*numel))
            .tuple()
            .binpersid()
            .int(0)
            .int(i64::from(*numel))
            .tuple1()
            .int(1)
            .tuple1()
            .newfalse()
            .global("collections", "OrderedDict")
            .empty_tuple()
            .reduce()
            .tuple()
            .reduce()
            .binput(memo);
        memo += 1;
    }
    p = p.setitems();
    // _metadata: {'': {'version': 1}}
    p.empty_dict()
        .binunicode("_metadata")
        .global("collections", "OrderedDict")
        .empty_tuple()
        .reduce()
        .binunicode("")
        .empty_dict()
        .binunicode("version")
        .int(1)
        .setitem()
        .setitem()
        .setitem()
        .build()
        .stop()
        .bytes()
}

/// `numpy.array([1.0, 2.0, 3.0])` pickled at protocol 2: `_reconstruct`, `_codecs.encode` for
/// the shape placeholder, a `dtype`, and the data as a `BINSTRING`-free `_codecs.encode`.
pub fn numpy_array_proto2() -> Vec<u8> {
    let data: Vec<u8> = [1.0f64, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let latin: String = data.iter().map(|&b| b as char).collect();
    P::proto(2)
        .global("numpy.core.multiarray", "_reconstruct")
        .binput(0)
        .global("numpy", "ndarray")
        .binput(1)
        .int(0)
        .tuple1()
        .global("_codecs", "encode")
        .binput(2)
        .binunicode("b")
        .binunicode("latin1")
        .tuple2()
        .reduce()
        .tuple3()
        .reduce()
        .binput(3)
        .mark()
        .int(1)
        .int(3)
        .tuple1()
        .global("numpy", "dtype")
        .binunicode("f8")
        .newfalse()
        .newtrue()
        .tuple3()
        .reduce()
        .mark()
        .int(3)
        .binunicode("<")
        .none()
        .none()
        .none()
        .int(-1)
        .int(-1)
        .int(0)
        .tuple()
        .build()
        .newfalse()
        .binget(2)
        .binunicode(&latin)
        .binunicode("latin1")
        .tuple2()
        .reduce()
        .tuple()
        .build()
        .stop()
        .bytes()
}

/// The same array at protocol 4 (framed, `MEMOIZE`, `STACK_GLOBAL`): the data is a
/// `SHORT_BINBYTES` literal.
pub fn numpy_array_proto4() -> Vec<u8> {
    let data: Vec<u8> = [1.0f64, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let body = P::new()
        .str("numpy.core.multiarray")
        .memoize()
        .str("_reconstruct")
        .memoize()
        .stack_global()
        .memoize()
        .str("numpy")
        .memoize()
        .str("ndarray")
        .memoize()
        .stack_global()
        .memoize()
        .int(0)
        .tuple1()
        .memoize()
        .binbytes(b"b")
        .memoize()
        .tuple3()
        .memoize()
        .reduce()
        .memoize()
        .mark()
        .int(1)
        .int(3)
        .tuple1()
        .memoize()
        .binget(3) // "numpy", from the memo
        .str("dtype")
        .memoize()
        .stack_global()
        .memoize()
        .str("f8")
        .memoize()
        .newfalse()
        .newtrue()
        .tuple3()
        .memoize()
        .reduce()
        .memoize()
        .mark()
        .int(3)
        .str("<")
        .memoize()
        .none()
        .none()
        .none()
        .int(-1)
        .int(-1)
        .int(0)
        .tuple()
        .memoize()
        .build()
        .newfalse()
        .binbytes(&data)
        .memoize()
        .tuple()
        .memoize()
        .build()
        .stop()
        .bytes();
    framed(&body)
}

// ---------------------------------------------------------------------------------------------
// Zip.

pub fn crc32(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b);
    h.finalize()
}

/// One member of a test zip, with knobs for the tricks.
#[derive(Clone)]
pub struct ZipMember {
    pub name: String,
    pub data: Vec<u8>,
    pub deflate: bool,
    pub flags: u16,
    /// A different name in the local header.
    pub local_name: Option<String>,
    /// A CRC-32 to write instead of the real one.
    pub crc: Option<u32>,
    /// Write a data descriptor (flag bit 3), with this CRC instead of the real one if given.
    pub descriptor: bool,
    pub descriptor_crc: Option<u32>,
    /// Extra field in the local header only (PyTorch pads to 64 bytes this way).
    pub local_extra: Vec<u8>,
}

impl ZipMember {
    pub fn stored(name: &str, data: &[u8]) -> ZipMember {
        ZipMember {
            name: name.into(),
            data: data.to_vec(),
            deflate: false,
            flags: 0,
            local_name: None,
            crc: None,
            descriptor: false,
            descriptor_crc: None,
            local_extra: Vec::new(),
        }
    }
    pub fn deflated(name: &str, data: &[u8]) -> ZipMember {
        ZipMember { deflate: true, ..ZipMember::stored(name, data) }
    }
}

/// Builds a zip. `aliases` adds central entries named `.0` that point at member `.1`'s local
/// header (overlapping members).
pub fn build_zip(members: &[ZipMember], aliases: &[(&str, usize)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let mut records = Vec::new();
    for m in members {
        let payload = if m.deflate { miniz_oxide::deflate::compress_to_vec(&m.data, 6) } else { m.data.clone() };
        let crc = m.crc.unwrap_or_else(|| crc32(&m.data));
        let flags = m.flags | if m.descriptor { 8 } else { 0 };
        let method: u16 = if m.deflate { 8 } else { 0 };
        let offset = out.len() as u32;
        let local_name = m.local_name.clone().unwrap_or_else(|| m.name.clone());
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
        let (lc, lcs, ls) = if m.descriptor { (0, 0, 0) } else { (crc, payload.len() as u32, m.data.len() as u32) };
        out.extend_from_slice(&lc.to_le_bytes());
        out.extend_from_slice(&lcs.to_le_bytes());
        out.extend_from_slice(&ls.to_le_bytes());
        out.extend_from_slice(&(local_name.len() as u16).to_le_bytes());
        out.extend_from_slice(&(m.local_extra.len() as u16).to_le_bytes());
        out.extend_from_slice(local_name.as_bytes());
        out.extend_from_slice(&m.local_extra);
        out.extend_from_slice(&payload);
        if m.descriptor {
            out.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
            out.extend_from_slice(&m.descriptor_crc.unwrap_or(crc).to_le_bytes());
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&(m.data.len() as u32).to_le_bytes());
        }
        records.push((m.name.clone(), flags, method, crc, payload.len() as u32, m.data.len() as u32, offset));
    }
    for (name, i) in aliases {
        let r = records[*i].clone();
        records.push((name.to_string(), r.1, r.2, r.3, r.4, r.5, r.6));
    }
    let cd_offset = out.len() as u32;
    for (name, flags, method, crc, csize, size, offset) in &records {
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&flags.to_le_bytes());
        central.extend_from_slice(&method.to_le_bytes());
        central.extend_from_slice(&[0, 0, 0x21, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&csize.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// PyTorch pads every member's data to 64 bytes with a local-only extra field `FB`.
pub fn torch_padding(name_len: usize, offset: usize) -> Vec<u8> {
    let start = offset + 30 + name_len + 4;
    let pad = (64 - start % 64) % 64;
    let mut e = b"FB".to_vec();
    e.extend_from_slice(&(pad as u16).to_le_bytes());
    e.extend(std::iter::repeat_n(b'Z', pad));
    e
}

/// A real-shaped `torch.save` zip: `archive/data.pkl`, `archive/data/0` (raw floats),
/// `archive/version`, `archive/byteorder`, padded like PyTorch's writer pads.
pub fn torch_zip_members(data_pkl: &[u8]) -> Vec<ZipMember> {
    let floats: Vec<u8> = [0.5f32, -1.25, 3.0, 4.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    vec![
        ZipMember::stored("archive/data.pkl", data_pkl),
        ZipMember::stored("archive/byteorder", b"little"),
        ZipMember::stored("archive/data/0", &floats),
        ZipMember::stored("archive/version", b"3\n"),
        ZipMember::stored("archive/.data/serialization_id", b"1234567890123456789012345678901234567890"),
    ]
}

pub fn torch_zip(data_pkl: &[u8]) -> Vec<u8> {
    let mut members = torch_zip_members(data_pkl);
    // Compute PyTorch-style alignment padding member by member.
    let mut offset = 0usize;
    for m in &mut members {
        m.local_extra = torch_padding(m.name.len(), offset);
        offset += 30 + m.name.len() + m.local_extra.len() + m.data.len();
    }
    build_zip(&members, &[])
}

// ---------------------------------------------------------------------------------------------
// Tar and the legacy format.

/// One ustar header block (+ data, padded). `typeflag` b'0' for a file.
pub fn tar_member(name: &str, data: &[u8], typeflag: u8) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    let size = format!("{:011o}\0", data.len());
    h[124..136].copy_from_slice(size.as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let chk = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(chk.as_bytes());
    let mut out = h;
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

pub fn tar(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in members {
        out.extend(tar_member(name, data, b'0'));
    }
    out.extend(vec![0u8; 1024]);
    out
}

/// The members of an old `torch.save` tar: one float storage of 4 elements, no tensors.
pub fn torch_tar_members(main: Vec<u8>) -> Vec<(&'static str, Vec<u8>)> {
    let sys_info = P::proto(2)
        .empty_dict()
        .binunicode("protocol_version")
        .int(1001)
        .setitem()
        .binunicode("little_endian")
        .newtrue()
        .setitem()
        .stop()
        .bytes();
    let mut storages = P::proto(2).int(1).stop().bytes();
    storages
        .extend(P::proto(2).binunicode("0").binunicode("cpu").global("torch", "FloatStorage").tuple3().stop().bytes());
    storages.extend(4u64.to_le_bytes());
    storages.extend([0u8; 16]);
    storages.extend(P::proto(2).empty_list().stop().bytes()); // storage views
    let tensors = P::proto(2).int(0).stop().bytes();
    vec![("sys_info", sys_info), ("pickle", main), ("storages", storages), ("tensors", tensors)]
}

/// The legacy (non-zip) format: magic, protocol version, sys_info, the object, storage keys,
/// then raw storage data.
pub fn torch_legacy(main: &[u8]) -> Vec<u8> {
    let magic = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    let mut out = P::proto(2).long1(&magic).stop().bytes();
    out.extend(P::proto(2).int(1001).stop().bytes());
    out.extend(
        P::proto(2)
            .mark()
            .binunicode("protocol_version")
            .int(1001)
            .binunicode("little_endian")
            .newtrue()
            .binunicode("type_sizes")
            .mark()
            .binunicode("short")
            .int(2)
            .binunicode("int")
            .int(4)
            .binunicode("long")
            .int(4)
            .op(b'd')
            .op(b'd')
            .stop()
            .bytes(),
    );
    out.extend_from_slice(main);
    out.extend(P::proto(2).mark().binunicode("0").op(b'l').stop().bytes());
    out.extend(4u64.to_le_bytes());
    out.extend([0u8; 16]);
    out
}
