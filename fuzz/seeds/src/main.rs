//! Writes the seed corpora, a few valid inputs per target, into `<dir>/<target>/`:
//! `fuzz/run.sh seeds`. The layouts are the ones
//! each target's header comment describes.

use std::fs;
use std::path::Path;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

/// Guest memory image with little-endian writes at addresses.
struct Image(Vec<u8>);

impl Image {
    fn new(len: usize) -> Self {
        Image(vec![0; len])
    }
    fn put(&mut self, at: usize, b: &[u8]) {
        self.0[at..at + b.len()].copy_from_slice(b);
    }
    fn desc(&mut self, table: usize, i: usize, addr: u64, len: u32, flags: u16, next: u16) {
        let at = table + 16 * i;
        self.put(at, &addr.to_le_bytes());
        self.put(at + 8, &len.to_le_bytes());
        self.put(at + 12, &flags.to_le_bytes());
        self.put(at + 14, &next.to_le_bytes());
    }
    /// Avail ring: flags 0, the heads, idx = heads.len().
    fn avail(&mut self, ring: usize, heads: &[u16]) {
        self.put(ring + 2, &(heads.len() as u16).to_le_bytes());
        for (i, h) in heads.iter().enumerate() {
            self.put(ring + 4 + 2 * i, &h.to_le_bytes());
        }
    }
}

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join(name), data).unwrap();
}

fn blk(dir: &Path) {
    // Queue of 16 (size byte 4), headers at 0xc00, data at 0xe00, status at 0xd00.
    let kinds: [(&str, u32, u32, bool); 6] = [
        ("read", 0, 1024, true),
        ("write", 1, 512, false),
        ("flush", 4, 0, false),
        ("get-id", 8, 20, true),
        ("discard", 11, 16, false),
        ("write-zeroes", 13, 16, false),
    ];
    for (flags, suffix) in [(0u8, ""), (1, "-event-idx"), (2, "-ro")] {
        for (name, kind, len, w) in kinds {
            let mut m = Image::new(0x1200);
            m.put(0xc00, &kind.to_le_bytes());
            m.put(0xc08, &2u64.to_le_bytes());
            // A discard / write-zeroes segment: sector 3, 2 sectors.
            m.put(0xe00, &3u64.to_le_bytes());
            m.put(0xe08, &2u32.to_le_bytes());
            if len > 0 {
                m.desc(0, 0, 0xc00, 16, F_NEXT, 1);
                m.desc(0, 1, 0xe00, len, F_NEXT | if w { F_WRITE } else { 0 }, 2);
                m.desc(0, 2, 0xd00, 1, F_WRITE, 0);
            } else {
                m.desc(0, 0, 0xc00, 16, F_NEXT, 1);
                m.desc(0, 1, 0xd00, 1, F_WRITE, 0);
            }
            m.avail(0x400, &[0]);
            let mut input = vec![flags, 4, 0, 0];
            input.extend(m.0);
            write(dir, "blk_request", &format!("{name}{suffix}"), &input);
        }
    }
}

fn net(dir: &Path) {
    // RX chains: two writable buffers of 2 KiB; TX: header + 60-byte frame.
    let mut m = Image::new(0x2200);
    for i in 0..2u16 {
        m.desc(
            0,
            usize::from(i),
            0x3000 + 0x800 * u64::from(i),
            2048,
            F_WRITE,
            0,
        );
    }
    m.avail(0x400, &[0, 1]);
    m.desc(0x1000, 0, 0x2000, 12, F_NEXT, 1);
    m.desc(0x1000, 1, 0x2010, 60, 0, 0);
    m.avail(0x1400, &[0]);
    m.put(0x2010, &[0xff; 6]);
    let image = m.0;
    for (features, name) in [
        (0u8, "plain"),
        (1, "mergeable"),
        (3, "mergeable-event-idx"),
        (0xd, "offloads"),
    ] {
        let mut input = vec![features, 4, 4];
        input.extend((image.len() as u16).to_le_bytes());
        input.extend(&image);
        input.push(0); // TX notify
        input.push(2); // a frame arrives: 12-byte header + 100 bytes
        input.extend(112u16.to_le_bytes());
        input.extend([0u8; 12]);
        input.extend([0x22u8; 100]);
        input.push(3); // the TAP is readable
        input.push(1); // RX notify
        input.push(2); // a big frame: more than one buffer
        input.extend(3000u16.to_le_bytes());
        input.extend(vec![0x33u8; 3000]);
        input.push(3);
        input.push(4); // reset, activate again
        input.push(0);
        write(dir, "net_tx_rx", name, &input);
    }
}

fn mmio(dir: &Path) {
    // Register offsets as the target draws them (index into its REGS table).
    const MAGIC: u16 = 0;
    const DEVICE_FEATURES_SEL: u16 = 5;
    const DEVICE_FEATURES: u16 = 4;
    const DRIVER_FEATURES: u16 = 6;
    const DRIVER_FEATURES_SEL: u16 = 7;
    const QUEUE_SEL: u16 = 8;
    const QUEUE_NUM_MAX: u16 = 9;
    const QUEUE_NUM: u16 = 10;
    const QUEUE_READY: u16 = 11;
    const QUEUE_NOTIFY: u16 = 12;
    const INTERRUPT_STATUS: u16 = 13;
    const INTERRUPT_ACK: u16 = 14;
    const STATUS: u16 = 15;
    const DESC_LOW: u16 = 16;
    const AVAIL_LOW: u16 = 18;
    const USED_LOW: u16 = 20;
    const CONFIG: u16 = 23;
    let mut ops: Vec<u8> = Vec::new();
    let w = |ops: &mut Vec<u8>, r: u16, v: u32| {
        ops.push(1 | (2 << 1)); // 4-byte write
        ops.extend(r.to_le_bytes());
        ops.extend(v.to_le_bytes());
    };
    let rd = |ops: &mut Vec<u8>, r: u16| {
        ops.push(2 << 1);
        ops.extend(r.to_le_bytes());
    };
    rd(&mut ops, MAGIC);
    w(&mut ops, STATUS, 0);
    w(&mut ops, STATUS, 1);
    w(&mut ops, STATUS, 3);
    for sel in 0..2 {
        w(&mut ops, DEVICE_FEATURES_SEL, sel);
        rd(&mut ops, DEVICE_FEATURES);
    }
    w(&mut ops, DRIVER_FEATURES_SEL, 0);
    w(&mut ops, DRIVER_FEATURES, 1 << 5 | 1 << 15);
    w(&mut ops, DRIVER_FEATURES_SEL, 1);
    w(&mut ops, DRIVER_FEATURES, 1); // VIRTIO_F_VERSION_1
    w(&mut ops, STATUS, 0xb);
    rd(&mut ops, STATUS);
    for (q, base) in [(0u32, 0u32), (1, 0x1000)] {
        w(&mut ops, QUEUE_SEL, q);
        rd(&mut ops, QUEUE_NUM_MAX);
        w(&mut ops, QUEUE_NUM, 16);
        w(&mut ops, DESC_LOW, base);
        w(&mut ops, AVAIL_LOW, base + 0x400);
        w(&mut ops, USED_LOW, base + 0x800);
        w(&mut ops, QUEUE_READY, 1);
    }
    // One byte of the MAC from the config space.
    ops.push(0);
    ops.extend((CONFIG | 3 << 8).to_le_bytes());
    w(&mut ops, STATUS, 0xf);
    w(&mut ops, QUEUE_NOTIFY, 1);
    ops.push(0x80 | 0x40 | (2 << 1)); // a frame arrives, the TAP is readable
    ops.extend(INTERRUPT_STATUS.to_le_bytes());
    w(&mut ops, QUEUE_NOTIFY, 0);
    rd(&mut ops, INTERRUPT_STATUS);
    w(&mut ops, INTERRUPT_ACK, 1);
    w(&mut ops, STATUS, 0);

    let mut m = Image::new(0x2200);
    for i in 0..2u16 {
        m.desc(
            0,
            usize::from(i),
            0x3000 + 0x800 * u64::from(i),
            2048,
            F_WRITE,
            0,
        );
    }
    m.avail(0x400, &[0, 1]);
    m.desc(0x1000, 0, 0x2000, 72, 0, 0);
    m.avail(0x1400, &[0]);
    for (name, image) in [("driver-init", &[][..]), ("driver-init-queues", &m.0[..])] {
        let mut input = (image.len() as u16).to_le_bytes().to_vec();
        input.extend(image);
        input.extend(&ops);
        write(dir, "mmio_transport", name, &input);
    }
}

fn kernel(dir: &Path) {
    // A bzImage: 4 setup sectors, boot protocol 2.15, loaded high, 1 KiB of "kernel".
    let mut bz = vec![0u8; 5 * 512 + 1024];
    bz[0x1f1] = 4; // setup_sects
    bz[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    bz[0x211] = 1; // loadflags: LOADED_HIGH
    bz[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    bz[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes()); // kernel_alignment
    bz[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes()); // cmdline_size
    bz[0x260..0x264].copy_from_slice(&0x40_0000u32.to_le_bytes()); // init_size
    for (flags, name) in [(0u8, "bzimage"), (1, "bzimage-initrd"), (6, "bzimage-256m")] {
        let mut input = vec![flags];
        input.extend(&bz);
        write(dir, "kernel_load", name, &input);
    }
    // An ELF vmlinux: one PT_LOAD at 1 MiB and a PT_NOTE with the Xen PVH entry.
    let mut elf = vec![0u8; 0x200];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // 64-bit
    elf[5] = 1; // little-endian
    elf[6] = 1;
    elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes()); // e_entry
    elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    elf[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let ph = |elf: &mut Vec<u8>, at: usize, kind: u32, off: u64, addr: u64, size: u64| {
        elf[at..at + 4].copy_from_slice(&kind.to_le_bytes());
        elf[at + 4..at + 8].copy_from_slice(&5u32.to_le_bytes());
        elf[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        elf[at + 16..at + 24].copy_from_slice(&addr.to_le_bytes());
        elf[at + 24..at + 32].copy_from_slice(&addr.to_le_bytes());
        elf[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
        elf[at + 40..at + 48].copy_from_slice(&size.to_le_bytes());
        elf[at + 48..at + 56].copy_from_slice(&4u64.to_le_bytes());
    };
    ph(&mut elf, 64, 1, 0x180, 0x10_0000, 0x80);
    ph(&mut elf, 120, 4, 0x100, 0, 24);
    // Note: namesz 4, descsz 4, type 18 (XEN_ELFNOTE_PHYS32_ENTRY), "Xen\0", entry.
    elf[0x100..0x104].copy_from_slice(&4u32.to_le_bytes());
    elf[0x104..0x108].copy_from_slice(&4u32.to_le_bytes());
    elf[0x108..0x10c].copy_from_slice(&18u32.to_le_bytes());
    elf[0x10c..0x110].copy_from_slice(b"Xen\0");
    elf[0x110..0x114].copy_from_slice(&0x10_0000u32.to_le_bytes());
    for (flags, name) in [(0u8, "elf-pvh"), (1, "elf-pvh-initrd")] {
        let mut input = vec![flags];
        input.extend(&elf);
        write(dir, "kernel_load", name, &input);
    }
    // The same without the note: entered at e_entry through the 64-bit protocol.
    let mut plain = elf.clone();
    plain[56..58].copy_from_slice(&1u16.to_le_bytes());
    let mut input = vec![0u8];
    input.extend(&plain);
    write(dir, "kernel_load", "elf", &input);
}

fn config(dir: &Path) {
    let configs = [
        ("minimal", r#"{"kernel": "/boot/vmlinuz"}"#),
        (
            "full",
            r#"{"kernel": "/k", "initrd": "/i", "cmdline": "quiet", "mem-mib": 256, "vcpus": 2, "hugepages": true,
"disks": [{"path": "/d.img", "read-only": true}], "root": "/dev/vda",
"nets": [{"tap": "tap0", "mac": "02:00:00:00:00:01", "guest-ip": "169.254.100.2/30", "host-ip": "169.254.100.1/30"}],
"command": ["/bin/sh", "-c", "echo 'hi there'"]}"#,
        ),
        (
            "image",
            r#"{"kernel": "/k", "image": "alpine:latest", "container": true, "store": "/var/lib/minnow", "command": ["sh"]}"#,
        ),
        ("bad-field", r#"{"kernel": "/k", "memory": 12}"#),
    ];
    for (name, text) in configs {
        write(dir, "vm_config", name, text.as_bytes());
    }
}

/// OCI runtime configs: `runc spec`, `runc spec --rootless` (runc 1.1.5) and
/// `minnow-runc spec` output as written, a minimal one minnow plans, and one with
/// mounts through the target's symlinks, hooks, a namespace path, resources, devices,
/// sysctls, rlimits, ambient capabilities and a seccomp profile with argument rules.
fn oci_configs(dir: &Path) {
    let configs: [(&str, &[u8]); 5] = [
        ("runc-spec", include_bytes!("../config_json/runc-spec.json")),
        (
            "runc-spec-rootless",
            include_bytes!("../config_json/runc-spec-rootless.json"),
        ),
        (
            "minnow-runc-spec",
            include_bytes!("../config_json/minnow-runc-spec.json"),
        ),
        ("minimal", include_bytes!("../config_json/minimal.json")),
        ("full", include_bytes!("../config_json/full.json")),
    ];
    for (name, text) in configs {
        write(dir, "config_json", name, text);
    }
}

fn tar_header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn layers(dir: &Path) {
    use tar::EntryType as E;
    // An ordinary layer: directories, a file, links, a fifo, whiteouts, an opaque marker.
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut tar_header(E::Directory, 0, 0o755), "etc/", &b""[..])
        .unwrap();
    b.append_data(
        &mut tar_header(E::Regular, 6, 0o644),
        "etc/hostname",
        &b"minnow"[..],
    )
    .unwrap();
    b.append_link(
        &mut tar_header(E::Symlink, 0, 0o777),
        "etc/alias",
        "hostname",
    )
    .unwrap();
    b.append_link(
        &mut tar_header(E::Link, 0, 0o644),
        "etc/hard",
        "etc/hostname",
    )
    .unwrap();
    b.append_data(&mut tar_header(E::Fifo, 0, 0o600), "etc/pipe", &b""[..])
        .unwrap();
    b.append_data(
        &mut tar_header(E::Regular, 0, 0o644),
        "etc/.wh.old",
        &b""[..],
    )
    .unwrap();
    b.append_data(&mut tar_header(E::Directory, 0, 0o755), "var/", &b""[..])
        .unwrap();
    b.append_data(
        &mut tar_header(E::Regular, 0, 0o644),
        "var/.wh..wh..opq",
        &b""[..],
    )
    .unwrap();
    b.append_data(&mut tar_header(E::Char, 0, 0o666), "dev-null", &b""[..])
        .unwrap();
    // A PAX header with an xattr and a long name.
    let mut pax = tar::Builder::new(Vec::new());
    pax.append_pax_extensions([
        ("SCHILY.xattr.user.minnow", &b"1"[..]),
        ("uid", &b"1000"[..]),
    ])
    .unwrap();
    let long = format!("{}/file", "d".repeat(120));
    pax.append_data(&mut tar_header(E::Regular, 3, 0o600), long, &b"abc"[..])
        .unwrap();
    let ordinary = b.into_inner().unwrap();
    let paxed = pax.into_inner().unwrap();
    // A hostile layer: a symlink out of the root, then entries beneath it.
    let mut h = tar::Builder::new(Vec::new());
    h.append_link(
        &mut tar_header(E::Symlink, 0, 0o777),
        "out",
        "../canary/dir",
    )
    .unwrap();
    h.append_data(
        &mut tar_header(E::Regular, 0, 0o644),
        "out/.wh.victim",
        &b""[..],
    )
    .unwrap();
    h.append_data(
        &mut tar_header(E::Regular, 0, 0o644),
        "out/.wh..wh..opq",
        &b""[..],
    )
    .unwrap();
    h.append_data(
        &mut tar_header(E::Regular, 4, 0o644),
        "out/new",
        &b"evil"[..],
    )
    .unwrap();
    h.append_link(
        &mut tar_header(E::Symlink, 0, 0o777),
        "abs",
        "/proc/self/root",
    )
    .unwrap();
    h.append_data(
        &mut tar_header(E::Regular, 4, 0o644),
        "abs/tmp/x",
        &b"evil"[..],
    )
    .unwrap();
    let hostile = h.into_inner().unwrap();
    for (mode, suffix) in [
        (0u8, ""),
        (1, "-gzip"),
        (0x10, "-merge"),
        (0x31, "-gzip-verbatim"),
    ] {
        for (name, t) in [
            ("ordinary", &ordinary),
            ("pax", &paxed),
            ("hostile", &hostile),
        ] {
            let mut input = vec![mode];
            input.extend(t.iter());
            write(dir, "layer_unpack", &format!("{name}{suffix}"), &input);
        }
    }
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let dir = Path::new(&dir);
    blk(dir);
    net(dir);
    mmio(dir);
    kernel(dir);
    config(dir);
    layers(dir);
    oci_configs(dir);
}
