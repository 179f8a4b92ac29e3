//! A minimal BTF reader: just enough to find a kernel function's type id by name.
//!
//! Layout (`include/uapi/linux/btf.h`): a header (`magic 0xeB9F`, version, flags, `hdr_len`,
//! then the offsets and lengths of the type and string sections, relative to the end of the
//! header), a type section of variable-length records numbered from 1, and a string section
//! of NUL-terminated names. Each type record is `name_off: u32, info: u32, size_or_type: u32`
//! followed by kind-specific data whose length depends on the kind and on `vlen`
//! (the low 16 bits of `info`); the kind is bits 24..29 of `info`.

use std::fmt;

/// Where the running kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kfunc that reads a NIC's receive timestamp from an XDP frame's driver metadata.
pub const RX_TIMESTAMP_KFUNC: &str = "bpf_xdp_metadata_rx_timestamp";

const BTF_MAGIC: u16 = 0xeb9f;

/// BTF kinds (the ones whose trailing data matters for walking the section).
pub mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// Why a BTF blob could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtfError {
    /// Shorter than its header or sections claim.
    Truncated(&'static str),
    /// Wrong magic (or foreign byte order).
    BadMagic(u16),
    /// A kind this reader does not know how to skip.
    UnknownKind { type_id: u32, kind: u32 },
}

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BtfError::Truncated(what) => write!(f, "BTF data truncated ({what})"),
            BtfError::BadMagic(m) => write!(f, "not BTF data in host byte order (magic {m:#06x})"),
            BtfError::UnknownKind { type_id, kind } => {
                write!(f, "BTF type {type_id} has unknown kind {kind}")
            }
        }
    }
}

impl std::error::Error for BtfError {}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One type record's fixed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtfType {
    /// Type id (1-based).
    pub id: u32,
    /// BTF kind (see [`kind`]).
    pub kind: u32,
    /// Offset of the name in the string section.
    pub name_off: u32,
    /// `vlen` (member / parameter count).
    pub vlen: u32,
}

/// A parsed view over a BTF blob.
pub struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

impl<'a> Btf<'a> {
    /// Checks the header and slices the two sections.
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let magic = u16_at(data, 0).ok_or(BtfError::Truncated("header"))?;
        if magic != BTF_MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        let field = |at| u32_at(data, at).ok_or(BtfError::Truncated("header"));
        let hdr_len = field(4)? as usize;
        let (type_off, type_len) = (field(8)? as usize, field(12)? as usize);
        let (str_off, str_len) = (field(16)? as usize, field(20)? as usize);
        let section = |off: usize, len: usize, what| {
            let start = hdr_len.checked_add(off).ok_or(BtfError::Truncated(what))?;
            let end = start.checked_add(len).ok_or(BtfError::Truncated(what))?;
            data.get(start..end).ok_or(BtfError::Truncated(what))
        };
        Ok(Btf {
            types: section(type_off, type_len, "type section")?,
            strings: section(str_off, str_len, "string section")?,
        })
    }

    /// The NUL-terminated string at `off` in the string section.
    pub fn name(&self, off: u32) -> Option<&'a [u8]> {
        let rest = self.strings.get(off as usize..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(&rest[..end])
    }

    /// Walks every type record in id order, stopping early when `f` returns `Some`.
    pub fn find_map<T>(
        &self,
        mut f: impl FnMut(&BtfType) -> Option<T>,
    ) -> Result<Option<T>, BtfError> {
        let mut at = 0usize;
        let mut id = 1u32;
        while at < self.types.len() {
            let name_off = u32_at(self.types, at).ok_or(BtfError::Truncated("type record"))?;
            let info = u32_at(self.types, at + 4).ok_or(BtfError::Truncated("type record"))?;
            let vlen = info & 0xffff;
            let kind = (info >> 24) & 0x1f;
            let extra = match kind {
                kind::INT | kind::VAR | kind::DECL_TAG => 4,
                kind::ARRAY => 12,
                kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => 12 * vlen as usize,
                kind::ENUM | kind::FUNC_PROTO => 8 * vlen as usize,
                kind::PTR
                | kind::FWD
                | kind::TYPEDEF
                | kind::VOLATILE
                | kind::CONST
                | kind::RESTRICT
                | kind::FUNC
                | kind::FLOAT
                | kind::TYPE_TAG => 0,
                _ => return Err(BtfError::UnknownKind { type_id: id, kind }),
            };
            let ty = BtfType {
                id,
                kind,
                name_off,
                vlen,
            };
            if let Some(found) = f(&ty) {
                return Ok(Some(found));
            }
            at += 12 + extra;
            id += 1;
        }
        if at != self.types.len() {
            return Err(BtfError::Truncated("last type record"));
        }
        Ok(None)
    }

    /// The id of the `FUNC` named `name`, if any.
    pub fn find_func(&self, name: &str) -> Result<Option<u32>, BtfError> {
        self.find_map(|t| {
            (t.kind == kind::FUNC && self.name(t.name_off) == Some(name.as_bytes())).then_some(t.id)
        })
    }
}

/// Reads `/sys/kernel/btf/vmlinux` and returns the BTF id of the function `name`
/// (`Ok(None)` when the kernel has BTF but no such function).
pub fn vmlinux_func_id(name: &str) -> Result<Option<u32>, crate::Error> {
    let data = std::fs::read(VMLINUX_BTF).map_err(|e| crate::Error::Io {
        op: "read /sys/kernel/btf/vmlinux",
        source: e,
    })?;
    Ok(Btf::parse(&data)?.find_func(name)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny BTF blob: int, a struct with 2 members, a func_proto with 1 param,
    /// then a FUNC named "hello".
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0s\0hello\0";
        let mut types = Vec::new();
        let mut rec = |name: u32, kind: u32, vlen: u32, sz: u32, extra: usize| {
            types.extend_from_slice(&name.to_ne_bytes());
            types.extend_from_slice(&((kind << 24) | vlen).to_ne_bytes());
            types.extend_from_slice(&sz.to_ne_bytes());
            types.extend(std::iter::repeat_n(0u8, extra));
        };
        rec(1, kind::INT, 0, 4, 4); // id 1
        rec(5, kind::STRUCT, 2, 8, 24); // id 2
        rec(0, kind::FUNC_PROTO, 1, 1, 8); // id 3
        rec(7, kind::FUNC, 0, 3, 0); // id 4
        let mut blob = Vec::new();
        blob.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
        blob.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            blob.extend_from_slice(&v.to_ne_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(strings);
        blob
    }

    #[test]
    fn finds_func_in_handmade_blob() {
        let blob = sample();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.find_func("hello").unwrap(), Some(4));
        assert_eq!(btf.find_func("int").unwrap(), None, "INT is not a FUNC");
        assert_eq!(btf.find_func("nope").unwrap(), None);
    }

    #[test]
    fn rejects_bad_magic_and_truncation() {
        let mut blob = sample();
        blob[0] ^= 0xff;
        assert!(matches!(Btf::parse(&blob), Err(BtfError::BadMagic(_))));
        let blob = sample();
        assert!(Btf::parse(&blob[..30]).is_err());
    }

    #[test]
    fn finds_rx_timestamp_kfunc_in_running_kernel() {
        let Ok(data) = std::fs::read(VMLINUX_BTF) else {
            meridian_testkit::skip_notice(&format!("{VMLINUX_BTF} is not readable here"));
            return;
        };
        let btf = Btf::parse(&data).expect("vmlinux BTF parses");
        // Every type must be walkable (no unknown kinds, exact section end).
        let mut count = 0u32;
        btf.find_map::<()>(|_| {
            count += 1;
            None
        })
        .expect("walks every type");
        assert!(count > 1000, "vmlinux has many types, saw {count}");
        match btf.find_func(RX_TIMESTAMP_KFUNC).unwrap() {
            Some(id) => assert!(id > 0 && id <= count),
            None => eprintln!("NOTE: this kernel has no {RX_TIMESTAMP_KFUNC} (before 6.3)"),
        }
    }
}
