//! The UMEM: one anonymous mapping cut into equal frames that the kernel and the worker pass
//! back and forth by address (fill → RX → TX → completion → fill). The worker owns a frame
//! between taking it from the RX or completion ring and handing it to the fill or TX ring, and
//! touches frame bytes only then, through [`Umem::frame_mut`].

use std::io;

use super::ring::Mmap;

/// Frame size: a power of two the kernel accepts (2048..=page size), holding the 256 bytes of
/// XDP headroom (where the program's metadata and our TX metadata live) and a 1500-byte-MTU
/// frame with a VLAN tag.
pub const FRAME_SIZE: u32 = 2048;

/// The size of `struct xsk_tx_metadata` (flags, then a 16-byte union of the request and the
/// completion): reserved in front of every TX frame when TX metadata is on.
pub const TX_METADATA_LEN: u32 = 24;

/// The TX metadata area in front of a frame (`struct xsk_tx_metadata`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TxMetadata {
    /// `XDP_TXMD_FLAGS_*` asked for.
    pub flags: u64,
    /// Union: the request (checksum offsets, launch time) before sending, the completion
    /// (`tx_timestamp`) in its first 8 bytes afterwards.
    pub union0: u64,
    pub union1: u64,
}

pub(super) struct Umem {
    map: Mmap,
    frames: u32,
}

impl Umem {
    pub fn new(frames: u32) -> io::Result<Umem> {
        let len = frames as usize * FRAME_SIZE as usize;
        Ok(Umem {
            map: Mmap::new(None, len, 0)?,
            frames,
        })
    }

    /// The registration for XDP_UMEM_REG, with or without TX metadata.
    pub fn registration(&self, tx_metadata: bool) -> libc::xdp_umem_reg {
        libc::xdp_umem_reg {
            addr: self.map.as_ptr() as u64,
            len: self.map.len() as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: if tx_metadata {
                libc::XDP_UMEM_TX_METADATA_LEN
            } else {
                0
            },
            tx_metadata_len: if tx_metadata { TX_METADATA_LEN } else { 0 },
        }
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// The base address (UMEM offset) of the frame holding `addr`.
    pub fn frame_base(addr: u64) -> u64 {
        addr & !(u64::from(FRAME_SIZE) - 1)
    }

    /// The frame holding UMEM offset `addr`, as bytes, or `None` if `addr` is outside the
    /// UMEM. The caller must own the frame (see the module docs).
    pub fn frame_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let base = Self::frame_base(addr);
        if base >= u64::from(self.frames) * u64::from(FRAME_SIZE) {
            return None;
        }
        // SAFETY: the frame [base, base + FRAME_SIZE) lies inside the mapping (checked above);
        // the worker owns it (the kernel neither reads nor writes a frame between handing it
        // to us on the RX/completion ring and getting it back on the fill/TX ring), and the
        // `&mut self` borrow keeps a second slice from being made while this one lives.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.map.as_ptr().add(base as usize),
                FRAME_SIZE as usize,
            )
        })
    }
}

impl TxMetadata {
    /// Reads the TX metadata from the `TX_METADATA_LEN` bytes ending at `offset` in `frame`.
    pub fn read(frame: &[u8], offset: usize) -> Option<TxMetadata> {
        let start = offset.checked_sub(TX_METADATA_LEN as usize)?;
        let b = frame.get(start..offset)?;
        let word = |i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().expect("8"));
        Some(TxMetadata {
            flags: word(0),
            union0: word(1),
            union1: word(2),
        })
    }

    /// Writes it into the `TX_METADATA_LEN` bytes ending at `offset` in `frame`.
    pub fn write(&self, frame: &mut [u8], offset: usize) -> bool {
        let Some(start) = offset.checked_sub(TX_METADATA_LEN as usize) else {
            return false;
        };
        let Some(b) = frame.get_mut(start..offset) else {
            return false;
        };
        b[0..8].copy_from_slice(&self.flags.to_ne_bytes());
        b[8..16].copy_from_slice(&self.union0.to_ne_bytes());
        b[16..24].copy_from_slice(&self.union1.to_ne_bytes());
        true
    }

    /// The completion timestamp the kernel wrote (0 = none).
    pub fn tx_timestamp(&self) -> u64 {
        self.union0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_kernel_struct() {
        assert_eq!(std::mem::size_of::<TxMetadata>(), TX_METADATA_LEN as usize);
        // (libc's copy of the struct predates `launch_time` (Linux 6.14) and is 16 bytes; the
        // kernel's is 24, and reserving 24 is right for either.)
        assert!(std::mem::size_of::<libc::xsk_tx_metadata>() <= TX_METADATA_LEN as usize);
        assert_eq!(TX_METADATA_LEN % 8, 0, "the kernel wants a multiple of 8");
    }

    #[test]
    fn metadata_round_trips_and_is_bounds_checked() {
        let mut frame = vec![0u8; FRAME_SIZE as usize];
        let m = TxMetadata {
            flags: u64::from(libc::XDP_TXMD_FLAGS_TIMESTAMP),
            union0: 42,
            union1: 0,
        };
        assert!(m.write(&mut frame, 256));
        assert_eq!(TxMetadata::read(&frame, 256), Some(m));
        assert_eq!(TxMetadata::read(&frame, 256).unwrap().tx_timestamp(), 42);
        assert!(!m.write(&mut frame, 10));
        assert!(TxMetadata::read(&frame, 10).is_none());
        assert!(TxMetadata::read(&frame, FRAME_SIZE as usize + 1).is_none());
    }

    #[test]
    fn frames_are_bounded() {
        let mut u = Umem::new(4).unwrap();
        assert_eq!(Umem::frame_base(2048 + 256 + 7), 2048);
        assert_eq!(
            u.frame_mut(3 * 2048 + 300).unwrap().len(),
            FRAME_SIZE as usize
        );
        assert!(u.frame_mut(4 * 2048).is_none());
        let reg = u.registration(true);
        assert_eq!(reg.len, 4 * 2048);
        assert_eq!(reg.tx_metadata_len, TX_METADATA_LEN);
        assert_eq!(u.registration(false).flags, 0);
    }
}
