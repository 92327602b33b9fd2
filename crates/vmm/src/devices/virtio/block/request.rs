//! virtio-blk requests (virtio 1.x, 5.2.6): parsing a descriptor chain and carrying it
//! out on a [`Disk`]. A request is a 16-byte header the device reads, data buffers, and a
//! status byte the device writes in the last descriptor. Anything malformed gets the
//! status the spec asks for; a chain without a usable status byte is returned unused.

use std::sync::atomic::{AtomicBool, Ordering};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    VIRTIO_BLK_T_WRITE_ZEROES,
};
use virtio_queue::desc::split::Descriptor;

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::disk::{Disk, ID_BYTES, SECTOR_SIZE};

/// Size of the request header: type, reserved, sector.
const HEADER_SIZE: u32 = 16;
/// Size of one discard / write-zeroes segment.
const SEGMENT_SIZE: u32 = 16;
/// Largest data a single request may move (guards the bounce buffer).
pub const MAX_REQUEST_BYTES: u64 = 1 << 30;
/// Write-zeroes segment flag: the range may be deallocated.
const WRITE_ZEROES_UNMAP: u32 = 1;

/// A request taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: u32,
    pub sector: u64,
    /// Data buffers: address, length, device-writable.
    pub data: Vec<(GuestAddress, u32, bool)>,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

/// What a processed chain tells the queue: bytes written into it.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Option<u8>,
    pub used_len: u32,
}

/// The limits the device advertises in its configuration space (virtio 1.2, 5.2.4), and
/// enforces on every request.
pub mod limits {
    /// `seg_max`: data descriptors in one request (header and status not counted).
    pub const SEG_MAX: u32 = 254;
    /// `max_discard_sectors`, `max_write_zeroes_sectors`: sectors in one segment.
    pub const MAX_DISCARD_SECTORS: u32 = u32::MAX >> 9;
    pub const MAX_WRITE_ZEROES_SECTORS: u32 = u32::MAX >> 9;
    /// `max_discard_seg`, `max_write_zeroes_seg`: segments in one request.
    pub const MAX_DISCARD_SEG: u32 = 1;
    pub const MAX_WRITE_ZEROES_SEG: u32 = 1;
    /// `discard_sector_alignment` (4 KiB). A hint for the driver's splitting (the spec
    /// lets a device fail unaligned discards but does not require it): not enforced.
    pub const DISCARD_SECTOR_ALIGNMENT: u32 = 8;
}

/// Most descriptors a request may have: a header, `seg_max` data descriptors, a status.
pub const MAX_DESCRIPTORS: usize = limits::SEG_MAX as usize + 2;

/// Most descriptors of one chain the parser reads to find its status byte (in the
/// chain's last descriptor). An indirect table may hold 65535 (virtio-queue follows
/// indirect tables whether or not the feature was offered); a pass may serve the whole
/// queue, so the walk is bounded here, well above any valid chain.
pub const MAX_WALK: usize = 4096;

/// Splits a chain into header, data and status. `Err(Some(addr))` means the chain is
/// malformed but has a status byte at `addr` (answer IOERR there); `Err(None)` means not
/// even a status byte can be found. A chain with more than `seg_max` data descriptors is
/// malformed: within [`MAX_WALK`] descriptors it gets IOERR at its status byte; longer,
/// it is answered like a chain without a status byte, returned unused (found by the
/// blk_request fuzz target: a table of 65535 was walked whole). Only the first
/// [`MAX_DESCRIPTORS`] - 1 descriptors and the last are kept.
pub fn parse(
    mem: &GuestMemoryMmap,
    chain: impl Iterator<Item = Descriptor>,
) -> Result<Request, Option<GuestAddress>> {
    let mut descs: Vec<Descriptor> = Vec::new();
    let mut last = None;
    let mut count = 0usize;
    for d in chain.take(MAX_WALK + 1) {
        if let Some(prev) = last.replace(d) {
            if descs.len() < MAX_DESCRIPTORS - 1 {
                descs.push(prev);
            }
        }
        count += 1;
    }
    if count > MAX_WALK {
        log::debug!("virtio-blk: chain longer than {MAX_WALK} descriptors");
        return Err(None);
    }
    if let Some(l) = last {
        descs.push(l);
    }
    let last = descs.pop().ok_or(None)?;
    if !last.is_write_only() || last.len() < 1 || descs.is_empty() {
        return Err(None);
    }
    let status = last.addr();
    // The status byte must be in guest memory, or we cannot answer at all.
    mem.read_obj::<u8>(status).map_err(|_| None)?;
    if count > MAX_DESCRIPTORS {
        return Err(Some(status));
    }
    let head = descs[0];
    if head.is_write_only() || head.len() < HEADER_SIZE {
        return Err(Some(status));
    }
    let kind: u32 = mem.read_obj(head.addr()).map_err(|_| Some(status))?;
    let sector_addr = head.addr().checked_add(8).ok_or(Some(status))?;
    let sector: u64 = mem.read_obj(sector_addr).map_err(|_| Some(status))?;
    let data = descs[1..]
        .iter()
        .map(|d| (d.addr(), d.len(), d.is_write_only()))
        .collect();
    Ok(Request {
        kind,
        sector,
        data,
        status,
    })
}

/// Parses and carries out one chain: what the device does for every request.
/// `abort` asks a long request to stop between two pieces (the device is being reset
/// or the VMM is stopping); the caller then drops the request unanswered.
pub fn process(
    mem: &GuestMemoryMmap,
    disk: &Disk,
    chain: impl Iterator<Item = Descriptor>,
    abort: &AtomicBool,
) -> Outcome {
    match parse(mem, chain) {
        Ok(req) => execute(mem, disk, &req, abort),
        Err(Some(status)) => match mem.write_obj(IOERR, status) {
            Ok(()) => Outcome {
                status: Some(IOERR),
                used_len: 1,
            },
            Err(_) => Outcome {
                status: None,
                used_len: 0,
            },
        },
        Err(None) => {
            log::debug!("virtio-blk: chain without a status byte");
            Outcome {
                status: None,
                used_len: 0,
            }
        }
    }
}

/// Carries out `req` on `disk`, writes the status byte, and returns what to report.
pub fn execute(mem: &GuestMemoryMmap, disk: &Disk, req: &Request, abort: &AtomicBool) -> Outcome {
    let (status, written) = match run(mem, disk, req, abort) {
        Ok(written) => (OK, written),
        Err(status) => (status, 0),
    };
    if mem.write_obj(status, req.status).is_err() {
        return Outcome {
            status: None,
            used_len: 0,
        };
    }
    Outcome {
        status: Some(status),
        used_len: written + 1,
    }
}

const OK: u8 = status_byte(VIRTIO_BLK_S_OK);
const IOERR: u8 = status_byte(VIRTIO_BLK_S_IOERR);
const UNSUPP: u8 = status_byte(VIRTIO_BLK_S_UNSUPP);

/// A virtio-blk status (0, 1, 2 in the bindings' u32) as the byte the device writes;
/// used in constants, so a value that does not fit fails the build.
#[allow(clippy::cast_possible_truncation)]
const fn status_byte(status: u32) -> u8 {
    assert!(status <= u8::MAX as u32);
    status as u8
}

/// Data buffers must all be of one direction for a request type.
fn buffers(req: &Request, writable: bool) -> Result<u64, u8> {
    let mut total = 0u64;
    for &(_, len, w) in &req.data {
        if w != writable {
            return Err(IOERR);
        }
        total += u64::from(len);
    }
    if total > MAX_REQUEST_BYTES {
        return Err(IOERR);
    }
    Ok(total)
}

/// The byte range `[sector * 512, + len)`, if it lies on the disk.
fn range(disk: &Disk, sector: u64, len: u64) -> Result<u64, u8> {
    let offset = sector.checked_mul(SECTOR_SIZE).ok_or(IOERR)?;
    let end = offset.checked_add(len).ok_or(IOERR)?;
    if end > disk.size() {
        return Err(IOERR);
    }
    Ok(offset)
}

/// Bounce-buffer size: requests move data in pieces of at most this many bytes, so a
/// guest cannot make the VMM allocate much.
const CHUNK: u64 = 64 * 1024;
const CHUNK_BYTES: usize = 64 * 1024;

/// Walks the data buffers in chunks, calling `f(buffer, disk offset, guest address)`.
fn copy_chunks(
    req: &Request,
    mut offset: u64,
    abort: &AtomicBool,
    mut f: impl FnMut(&mut [u8], u64, GuestAddress) -> Result<(), u8>,
) -> Result<(), u8> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    for &(addr, len, _) in &req.data {
        let mut done = 0u64;
        while done < u64::from(len) {
            if abort.load(Ordering::Relaxed) {
                return Err(IOERR);
            }
            // At most CHUNK bytes: the cast keeps the value.
            let n = (u64::from(len) - done).min(CHUNK) as usize;
            let guest = addr.checked_add(done).ok_or(IOERR)?;
            f(&mut buf[..n], offset, guest)?;
            let n = n as u64;
            offset += n;
            done += n;
        }
    }
    Ok(())
}

/// Returns the bytes written into the chain's data buffers.
fn run(mem: &GuestMemoryMmap, disk: &Disk, req: &Request, abort: &AtomicBool) -> Result<u32, u8> {
    match req.kind {
        VIRTIO_BLK_T_IN => {
            let total = buffers(req, true)?;
            if total % SECTOR_SIZE != 0 {
                return Err(IOERR);
            }
            let offset = range(disk, req.sector, total)?;
            copy_chunks(req, offset, abort, |buf, disk_off, addr| {
                disk.read_at(buf, disk_off).map_err(|_| IOERR)?;
                mem.write_slice(buf, addr).map_err(|_| IOERR)
            })?;
            // total <= MAX_REQUEST_BYTES (1 GiB), so it fits.
            u32::try_from(total).map_err(|_| IOERR)
        }
        VIRTIO_BLK_T_OUT => {
            let total = buffers(req, false)?;
            if disk.read_only() || total % SECTOR_SIZE != 0 {
                return Err(IOERR);
            }
            let offset = range(disk, req.sector, total)?;
            copy_chunks(req, offset, abort, |buf, disk_off, addr| {
                mem.read_slice(buf, addr).map_err(|_| IOERR)?;
                disk.write_at(buf, disk_off).map_err(|_| IOERR)
            })?;
            Ok(0)
        }
        VIRTIO_BLK_T_FLUSH => {
            disk.flush().map_err(|_| IOERR)?;
            Ok(0)
        }
        VIRTIO_BLK_T_GET_ID => {
            buffers(req, true)?;
            let &(addr, len, _) = req.data.first().ok_or(IOERR)?;
            let n = usize::try_from(len).unwrap_or(usize::MAX).min(ID_BYTES);
            mem.write_slice(&disk.id()[..n], addr).map_err(|_| IOERR)?;
            // n <= ID_BYTES (20).
            u32::try_from(n).map_err(|_| IOERR)
        }
        VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
            let total = buffers(req, false)?;
            if disk.read_only() {
                return Err(IOERR);
            }
            let discard = req.kind == VIRTIO_BLK_T_DISCARD;
            let (max_seg, max_sectors) = if discard {
                (limits::MAX_DISCARD_SEG, limits::MAX_DISCARD_SECTORS)
            } else {
                (
                    limits::MAX_WRITE_ZEROES_SEG,
                    limits::MAX_WRITE_ZEROES_SECTORS,
                )
            };
            // Whole segments, at least one, at most what the device advertises; each
            // segment in one descriptor.
            let segments = total / u64::from(SEGMENT_SIZE);
            if total % u64::from(SEGMENT_SIZE) != 0
                || segments == 0
                || segments > u64::from(max_seg)
                || req.data.iter().any(|&(_, len, _)| len % SEGMENT_SIZE != 0)
            {
                return Err(IOERR);
            }
            for &(addr, len, _) in &req.data {
                for i in 0..len / SEGMENT_SIZE {
                    let seg = addr.checked_add(u64::from(i * SEGMENT_SIZE)).ok_or(IOERR)?;
                    let mut raw = [0u8; SEGMENT_SIZE as usize];
                    mem.read_slice(&mut raw, seg).map_err(|_| IOERR)?;
                    let sector = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
                    let count = u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default());
                    let flags = u32::from_le_bytes(raw[12..16].try_into().unwrap_or_default());
                    if count > max_sectors {
                        return Err(IOERR);
                    }
                    let bytes = u64::from(count) * SECTOR_SIZE;
                    let offset = range(disk, sector, bytes)?;
                    let result = if discard {
                        if flags != 0 {
                            return Err(UNSUPP);
                        }
                        disk.discard(offset, bytes)
                    } else if flags & !WRITE_ZEROES_UNMAP != 0 {
                        return Err(UNSUPP);
                    } else {
                        disk.write_zeroes(offset, bytes)
                    };
                    result.map_err(|e| {
                        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                            UNSUPP
                        } else {
                            IOERR
                        }
                    })?;
                }
            }
            Ok(0)
        }
        _ => Err(UNSUPP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use virtio_queue::desc::split::Descriptor as D;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueT};

    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;
    const HDR: u64 = 0x1000;
    const DATA: u64 = 0x2000;
    const STATUS: u64 = 0x3000;

    struct Fx {
        mem: GuestMemoryMmap,
        disk: Disk,
        path: PathBuf,
        _dir: tempfile::TempDir,
    }

    fn fx(read_only: bool) -> Fx {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.img");
        let content: Vec<u8> = (0..8192u32)
            .map(|i| u8::try_from(i / 512).unwrap() + 1)
            .collect();
        std::fs::write(&path, content).unwrap();
        let disk = Disk::open(&path, read_only).unwrap();
        Fx {
            mem,
            disk,
            path,
            _dir: dir,
        }
    }

    fn header(mem: &GuestMemoryMmap, kind: u32, sector: u64) {
        mem.write_obj(kind, GuestAddress(HDR)).unwrap();
        mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
        mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
    }

    /// Runs one chain of descriptors through a mock queue: parse + execute.
    fn submit(f: &Fx, descs: &[RawDescriptor]) -> Outcome {
        let mq = MockSplitQueue::new(&f.mem, 16);
        mq.build_desc_chain(descs).unwrap();
        let mut q: Queue = mq.create_queue().unwrap();
        let chain = q.pop_descriptor_chain(&f.mem).expect("a chain");
        process(&f.mem, &f.disk, chain, &AtomicBool::new(false))
    }

    fn d(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(D::new(addr, len, flags, 0))
    }

    fn rw_chain(len: u32, data_write: bool) -> Vec<RawDescriptor> {
        vec![
            d(HDR, 16, F_NEXT),
            d(DATA, len, F_NEXT | if data_write { F_WRITE } else { 0 }),
            d(STATUS, 1, F_WRITE),
        ]
    }

    #[test]
    fn read_returns_disk_data() {
        let f = fx(false);
        header(&f.mem, VIRTIO_BLK_T_IN, 2);
        let out = submit(&f, &rw_chain(1024, true));
        assert_eq!(
            out,
            Outcome {
                status: Some(0),
                used_len: 1025
            }
        );
        let mut buf = [0u8; 1024];
        f.mem.read_slice(&mut buf, GuestAddress(DATA)).unwrap();
        assert!(buf[..512].iter().all(|&b| b == 3) && buf[512..].iter().all(|&b| b == 4));
    }

    #[test]
    fn write_reaches_the_file() {
        let f = fx(false);
        header(&f.mem, VIRTIO_BLK_T_OUT, 1);
        f.mem.write_slice(&[0xab; 512], GuestAddress(DATA)).unwrap();
        let out = submit(&f, &rw_chain(512, false));
        assert_eq!(out.status, Some(0));
        let file = std::fs::read(&f.path).unwrap();
        assert!(file[512..1024].iter().all(|&b| b == 0xab));
        assert!(file[..512].iter().all(|&b| b == 1));
    }

    #[test]
    fn read_only_disk_refuses_writes_with_ioerr() {
        let f = fx(true);
        let before = std::fs::read(&f.path).unwrap();
        for kind in [
            VIRTIO_BLK_T_OUT,
            VIRTIO_BLK_T_WRITE_ZEROES,
            VIRTIO_BLK_T_DISCARD,
        ] {
            header(&f.mem, kind, 0);
            f.mem.write_obj(0u64, GuestAddress(DATA)).unwrap();
            f.mem.write_obj(1u32, GuestAddress(DATA + 8)).unwrap();
            let len = if kind == VIRTIO_BLK_T_OUT { 512 } else { 16 };
            let out = submit(&f, &rw_chain(len, false));
            assert_eq!(out.status, Some(IOERR), "type {kind}");
        }
        assert_eq!(std::fs::read(&f.path).unwrap(), before);
    }

    #[test]
    fn out_of_range_and_misaligned_are_ioerr() {
        let f = fx(false);
        header(&f.mem, VIRTIO_BLK_T_IN, 16); // one past the end
        assert_eq!(submit(&f, &rw_chain(512, true)).status, Some(IOERR));
        header(&f.mem, VIRTIO_BLK_T_IN, u64::MAX / 2);
        assert_eq!(submit(&f, &rw_chain(512, true)).status, Some(IOERR));
        header(&f.mem, VIRTIO_BLK_T_IN, 0);
        assert_eq!(submit(&f, &rw_chain(100, true)).status, Some(IOERR));
    }

    #[test]
    fn wrong_buffer_direction_is_ioerr() {
        let f = fx(false);
        header(&f.mem, VIRTIO_BLK_T_IN, 0);
        // A read whose data buffer the device may not write.
        assert_eq!(submit(&f, &rw_chain(512, false)).status, Some(IOERR));
    }

    #[test]
    fn unknown_type_is_unsupp() {
        let f = fx(false);
        header(&f.mem, 0x7777, 0);
        assert_eq!(submit(&f, &rw_chain(512, true)).status, Some(UNSUPP));
    }

    #[test]
    fn get_id_and_flush() {
        let f = fx(false);
        header(&f.mem, VIRTIO_BLK_T_GET_ID, 0);
        let out = submit(&f, &rw_chain(20, true));
        assert_eq!(
            out,
            Outcome {
                status: Some(0),
                used_len: 21
            }
        );
        let mut id = [0u8; 20];
        f.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id, f.disk.id());
        header(&f.mem, VIRTIO_BLK_T_FLUSH, 0);
        let chain = vec![d(HDR, 16, F_NEXT), d(STATUS, 1, F_WRITE)];
        assert_eq!(submit(&f, &chain).status, Some(0));
    }

    #[test]
    fn write_zeroes_and_discard_segments() {
        let f = fx(false);
        header(&f.mem, VIRTIO_BLK_T_WRITE_ZEROES, 0);
        f.mem.write_obj(3u64, GuestAddress(DATA)).unwrap();
        f.mem.write_obj(2u32, GuestAddress(DATA + 8)).unwrap();
        f.mem.write_obj(0u32, GuestAddress(DATA + 12)).unwrap();
        let out = submit(&f, &rw_chain(16, false));
        assert_eq!(out.status, Some(0));
        let file = std::fs::read(&f.path).unwrap();
        assert!(file[3 * 512..5 * 512].iter().all(|&b| b == 0));
        assert!(file[5 * 512..6 * 512].iter().all(|&b| b == 6));
        // A segment past the end of the disk.
        f.mem.write_obj(15u64, GuestAddress(DATA)).unwrap();
        assert_eq!(submit(&f, &rw_chain(16, false)).status, Some(IOERR));
    }

    #[test]
    fn chains_without_status_byte_are_not_answered() {
        let f = fx(false);
        header(&f.mem, VIRTIO_BLK_T_IN, 0);
        // Last descriptor not writable.
        let chain = vec![d(HDR, 16, F_NEXT), d(STATUS, 1, 0)];
        assert_eq!(
            submit(&f, &chain),
            Outcome {
                status: None,
                used_len: 0
            }
        );
        // Status outside guest memory.
        let chain = vec![d(HDR, 16, F_NEXT), d(0xffff_0000, 1, F_WRITE)];
        assert_eq!(
            submit(&f, &chain),
            Outcome {
                status: None,
                used_len: 0
            }
        );
        // A lone descriptor.
        assert_eq!(submit(&f, &[d(STATUS, 1, F_WRITE)]).status, None);
    }

    #[test]
    fn bad_header_gets_ioerr() {
        let f = fx(false);
        let short = vec![d(HDR, 8, F_NEXT), d(STATUS, 1, F_WRITE)];
        assert_eq!(submit(&f, &short).status, Some(IOERR));
        let outside = vec![d(0xffff_0000, 16, F_NEXT), d(STATUS, 1, F_WRITE)];
        assert_eq!(submit(&f, &outside).status, Some(IOERR));
    }

    /// A chain of one indirect descriptor whose table, at 0x10_0000, holds a header,
    /// `data` data descriptors and a status byte; run through `process`, counting the
    /// descriptors the parser takes from the chain.
    fn submit_indirect(f: &Fx, mem: &GuestMemoryMmap, kind: u32, data: u16) -> (Outcome, usize) {
        const TABLE: u64 = 0x10_0000;
        header(mem, kind, 0);
        let n = data + 2;
        let mut table = Vec::with_capacity(usize::from(n) * 16);
        for i in 0..n {
            let (addr, len, flags) = match i {
                0 => (HDR, 16, F_NEXT),
                _ if i == n - 1 => (STATUS, 1, F_WRITE),
                _ => (DATA, 512, F_NEXT | F_WRITE),
            };
            table.extend_from_slice(&addr.to_le_bytes());
            table.extend_from_slice(&u32::to_le_bytes(len));
            table.extend_from_slice(&flags.to_le_bytes());
            table.extend_from_slice(&(i + 1).to_le_bytes());
        }
        mem.write_slice(&table, GuestAddress(TABLE)).unwrap();
        let len = u32::from(n) * 16;
        let mq = MockSplitQueue::new(mem, 16);
        mq.build_desc_chain(&[d(TABLE, len, 4)]).unwrap(); // VIRTQ_DESC_F_INDIRECT
        let mut q: Queue = mq.create_queue().unwrap();
        let chain = q.pop_descriptor_chain(mem).expect("a chain");
        let taken = std::cell::Cell::new(0usize);
        let chain = chain.inspect(|_| taken.set(taken.get() + 1));
        let out = process(mem, &f.disk, chain, &AtomicBool::new(false));
        (out, taken.get())
    }

    /// The blk_request fuzz finding: an indirect table of 65535 descriptors was walked
    /// whole to find its status byte. The parser now reads at most `MAX_WALK`
    /// descriptors and returns a longer chain unused (its status byte, past what was
    /// read, untouched); one data descriptor too many gets IOERR; a chain of exactly
    /// seg_max data descriptors is still served.
    #[test]
    fn over_long_indirect_chain_is_not_walked_whole() {
        let f = fx(false);
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap();
        let seg_max = u16::try_from(limits::SEG_MAX).unwrap();

        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let (out, taken) = submit_indirect(&f, &mem, VIRTIO_BLK_T_FLUSH, u16::MAX - 2);
        assert_eq!(
            out,
            Outcome {
                status: None,
                used_len: 0
            }
        );
        assert!(taken <= MAX_WALK + 1, "{taken} descriptors read");
        assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 0xff);

        // One data descriptor too many: IOERR at its status byte.
        let (out, taken) = submit_indirect(&f, &mem, VIRTIO_BLK_T_FLUSH, seg_max + 1);
        assert_eq!(out.status, Some(IOERR));
        assert_eq!(taken, MAX_DESCRIPTORS + 1);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), IOERR);
        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();

        // Exactly seg_max: a request like any other.
        let (out, taken) = submit_indirect(&f, &mem, VIRTIO_BLK_T_FLUSH, seg_max);
        assert_eq!(
            out,
            Outcome {
                status: Some(0),
                used_len: 1
            }
        );
        assert_eq!(taken, MAX_DESCRIPTORS);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 0);
    }

    #[test]
    fn data_outside_memory_is_ioerr_not_a_crash() {
        let f = fx(false);
        header(&f.mem, VIRTIO_BLK_T_IN, 0);
        let chain = vec![
            d(HDR, 16, F_NEXT),
            d(0xfff_f000, 4096, F_NEXT | F_WRITE),
            d(STATUS, 1, F_WRITE),
        ];
        assert_eq!(submit(&f, &chain).status, Some(IOERR));
    }
}

/// Property test: random descriptor chains (random addresses, lengths, flags, `next`
/// links including loops, random headers) never panic, and every answer is a status the
/// spec allows, written where the chain said.
#[cfg(test)]
mod random_chains {
    use super::*;
    use virtio_queue::desc::split::Descriptor as D;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueT};

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_chains_get_valid_answers() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.img");
        std::fs::write(&path, vec![1u8; 64 * 512]).unwrap();
        let disks = [Disk::open(&path, false).unwrap()];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let kinds = [0u32, 1, 4, 8, 11, 13, 2, 0xffff_ffff];
        for round in 0..3000 {
            let n = 1 + u16::try_from(rng.below(6)).unwrap();
            let mut descs = Vec::new();
            for i in 0..n {
                // Mostly plausible addresses, sometimes outside memory or at the edge.
                let addr = match rng.below(8) {
                    0 => 0xffff_ffff_ffff_f000 + rng.below(0x1000),
                    1 => 0x10_0000 - rng.below(64),
                    _ => 0x4_0000 + rng.below(0x8_0000),
                };
                let len = match rng.below(4) {
                    0 => u32::try_from(rng.below(0x1_0000)).unwrap(),
                    1 => 16,
                    2 => 1,
                    _ => 512 * (1 + u32::try_from(rng.below(4)).unwrap()),
                };
                let mut flags = u16::try_from(rng.below(4)).unwrap() & 0x3; // NEXT and WRITE bits
                if i + 1 < n {
                    flags |= 1;
                }
                let next = if rng.below(10) == 0 {
                    u16::try_from(rng.below(16)).unwrap()
                } else {
                    i + 1
                };
                descs.push(RawDescriptor::from(D::new(addr, len, flags, next)));
            }
            // Plant a header at a plausible place.
            let hdr = GuestAddress((0x4_0000 + rng.below(0x8_0000)) & !0xf);
            let _ = mem.write_obj(
                kinds[usize::try_from(rng.below(kinds.len() as u64)).unwrap()],
                hdr,
            );
            let _ = mem.write_obj(rng.below(80), hdr.unchecked_add(8));
            let mq = MockSplitQueue::new(&mem, 16);
            if mq.build_desc_chain(&descs).is_err() {
                continue;
            }
            let mut q: Queue = mq.create_queue().unwrap();
            let Some(chain) = q.pop_descriptor_chain(&mem) else {
                continue;
            };
            let out = process(&mem, &disks[0], chain, &AtomicBool::new(false));
            match out.status {
                None => assert_eq!(out.used_len, 0, "round {round}"),
                Some(s) => {
                    assert!(
                        s == 0 || s == IOERR || s == UNSUPP,
                        "round {round}: status {s}"
                    );
                    assert!(out.used_len >= 1, "round {round}");
                }
            }
        }
    }
}
