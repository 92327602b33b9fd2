//! The disk image behind a virtio-blk device: a raw file, locked so that two VMs cannot
//! write the same image, with its size, identity and the host operations requests need.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use vmm_sys_util::fallocate::{fallocate, FallocateMode};

/// Bytes per sector.
pub const SECTOR_SIZE: u64 = 512;
/// Length of the device ID string (`VIRTIO_BLK_ID_BYTES`).
pub const ID_BYTES: usize = 20;

/// Opening a disk failed; the message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open disk {path}: {source}; check the --disk path")]
    Open { path: PathBuf, source: io::Error },
    #[error("disk {0} is a directory; give an image file (e.g. made with mkfs.ext4)")]
    Directory(PathBuf),
    #[error("disk {0} is not a regular file or block device")]
    NotAFile(PathBuf),
    #[error("disk {0} is in use by another process (locked); stop that VM or give it a copy")]
    Busy(PathBuf),
    #[error("disk {path} is {size} bytes, not a whole number of 512-byte sectors; resize it (truncate -s)")]
    Size { path: PathBuf, size: u64 },
}

/// What a snapshot records of a disk file to know it again: the file (device and
/// inode), its size and its last modification. A restore refuses a disk whose size or
/// mtime differ (it was written since, or is another file); dev and inode are checked
/// only when the disk is re-opened at its recorded path (a copy given with `--disk` has
/// its own; `cp -p` keeps the mtime).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
}

impl Identity {
    /// A file's identity from its metadata (a block device's size is its length).
    pub fn of(meta: &std::fs::Metadata) -> io::Result<Identity> {
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }

    /// How `now` differs from `self`, the recorded identity, if it does; `same_file`
    /// also compares device and inode.
    pub fn differs(&self, now: &Identity, same_file: bool) -> Option<String> {
        if same_file && (self.dev, self.ino) != (now.dev, now.ino) {
            return Some(format!(
                "it is another file (device {:#x} inode {} at the snapshot, now {:#x} inode {})",
                self.dev, self.ino, now.dev, now.ino
            ));
        }
        if self.size != now.size {
            return Some(format!(
                "it was {} bytes at the snapshot, it is {} now",
                self.size, now.size
            ));
        }
        if (self.mtime_sec, self.mtime_nsec) != (now.mtime_sec, now.mtime_nsec) {
            return Some(format!(
                "it was modified since the snapshot (mtime {}.{:09}, now {}.{:09})",
                self.mtime_sec, self.mtime_nsec, now.mtime_sec, now.mtime_nsec
            ));
        }
        None
    }
}

/// An open, locked disk image.
pub struct Disk {
    file: File,
    size: u64,
    read_only: bool,
    id: [u8; ID_BYTES],
}

impl Disk {
    /// Opens and locks the image at `path` (shared lock when read-only, else exclusive).
    pub fn open(path: &Path, read_only: bool) -> Result<Disk, Error> {
        let open_err = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(open_err)?;
        if meta.is_dir() {
            return Err(Error::Directory(path.to_owned()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(open_err)?;
        let lock = if read_only {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match lock {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Busy(path.to_owned())),
            Err(TryLockError::Error(e)) => return Err(open_err(e)),
        }
        let size = if meta.is_file() {
            meta.len()
        } else {
            use std::io::Seek;
            let mut f = &file;
            f.seek(io::SeekFrom::End(0)).map_err(open_err)?
        };
        if !meta.is_file() && size == 0 {
            return Err(Error::NotAFile(path.to_owned()));
        }
        if size % SECTOR_SIZE != 0 {
            return Err(Error::Size {
                path: path.to_owned(),
                size,
            });
        }
        let mut id = [0u8; ID_BYTES];
        let text = format!("{:x}{:x}{:x}", meta.dev(), meta.ino(), meta.mtime());
        let n = text.len().min(ID_BYTES);
        id[..n].copy_from_slice(&text.as_bytes()[..n]);
        Ok(Disk {
            file,
            size,
            read_only,
            id,
        })
    }

    /// A second descriptor of the image file.
    pub fn try_clone_file(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// The open file's identity now.
    pub fn identity(&self) -> io::Result<Identity> {
        Identity::of(&self.file.metadata()?)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether writes are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The device ID returned by GET_ID.
    pub fn id(&self) -> &[u8; ID_BYTES] {
        &self.id
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Writes `buf` at `offset`.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// Makes written data durable.
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Deallocates a range (reads then return zeroes).
    pub fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        fallocate(&self.file, FallocateMode::PunchHole, true, offset, len)
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))
    }

    /// Zeroes a range, by the filesystem if it can, else by writing zeroes.
    pub fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if fallocate(&self.file, FallocateMode::ZeroRange, true, offset, len).is_ok() {
            return Ok(());
        }
        const ZEROES: usize = 64 * 1024;
        let zeroes = vec![0u8; ZEROES];
        let mut done = 0u64;
        while done < len {
            // At most ZEROES bytes: fits usize.
            let n = usize::try_from(len - done).map_or(ZEROES, |left| left.min(ZEROES));
            self.write_at(&zeroes[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(len: u64) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk.img");
        File::create(&p).unwrap().set_len(len).unwrap();
        (d, p)
    }

    #[test]
    fn opens_and_reports_size() {
        let (_d, p) = image(8192);
        let disk = Disk::open(&p, false).unwrap();
        assert_eq!(disk.size(), 8192);
        assert!(!disk.read_only());
        assert!(disk.id().iter().any(|&b| b != 0));
    }

    #[test]
    fn a_second_writer_is_refused() {
        let (_d, p) = image(4096);
        let _first = Disk::open(&p, false).unwrap();
        let e = Disk::open(&p, false).err().unwrap();
        assert!(matches!(e, Error::Busy(_)), "{e}");
        assert!(e.to_string().contains("in use"));
        assert!(matches!(Disk::open(&p, true), Err(Error::Busy(_))));
    }

    #[test]
    fn readers_share() {
        let (_d, p) = image(4096);
        let _a = Disk::open(&p, true).unwrap();
        let _b = Disk::open(&p, true).unwrap();
        assert!(matches!(Disk::open(&p, false), Err(Error::Busy(_))));
    }

    #[test]
    fn bad_paths() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            Disk::open(d.path(), false),
            Err(Error::Directory(_))
        ));
        assert!(matches!(
            Disk::open(&d.path().join("nope"), false),
            Err(Error::Open { .. })
        ));
        let odd = d.path().join("odd");
        std::fs::write(&odd, b"abc").unwrap();
        assert!(matches!(Disk::open(&odd, false), Err(Error::Size { .. })));
    }

    #[test]
    fn zeroes_and_discard() {
        let (_d, p) = image(0);
        std::fs::write(&p, vec![0xffu8; 8192]).unwrap();
        let disk = Disk::open(&p, false).unwrap();
        disk.write_zeroes(512, 1024).unwrap();
        disk.discard(4096, 4096).unwrap();
        let mut buf = vec![0u8; 8192];
        disk.read_at(&mut buf, 0).unwrap();
        assert!(buf[..512].iter().all(|&b| b == 0xff));
        assert!(buf[512..1536].iter().all(|&b| b == 0));
        assert!(buf[1536..4096].iter().all(|&b| b == 0xff));
        assert!(buf[4096..].iter().all(|&b| b == 0));
    }
}
