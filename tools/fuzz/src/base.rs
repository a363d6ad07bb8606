//! `make-base`: the base image, populated by the kernel module itself.
//!
//! mkfs-ferrofs formats an image file of `size` bytes; the image goes to
//! the start of the device, which is mounted and populated with the tree of
//! [`crate::layout`] through ordinary system calls; after umount the first
//! `size` bytes of the device are the base. So every structure in it is
//! one the module wrote.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::layout::{fill_byte, layout, Node};
use crate::model::Model;
use crate::sys::{self, errno_name, AlignedBuf};

pub struct BaseOpts {
    pub out: PathBuf,
    pub dev: PathBuf,
    pub mnt: PathBuf,
    pub mkfs: Option<PathBuf>,
    pub size: usize,
    /// Lay the tree out on the host instead (no device, no kernel).
    pub synthetic: bool,
}

/// The mkfs binary: next to this one (tools/target/release) by default.
fn mkfs_path(opt: &Option<PathBuf>) -> PathBuf {
    if let Some(p) = opt {
        return p.clone();
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("mkfs-ferrofs")))
        .unwrap_or_else(|| PathBuf::from("mkfs-ferrofs"))
}

pub fn make_base(o: &BaseOpts) -> Result<String, String> {
    let img = if o.synthetic {
        crate::synth::build((o.size / 4096) as u64)
    } else {
        populate_on_device(o)?
    };
    let model = Model::parse(&img).map_err(|e| format!("the base is not healthy: {e}"))?;
    fs::write(&o.out, &img).map_err(|e| format!("cannot write {}: {e}", o.out.display()))?;
    Ok(format!(
        "base {}: {} MiB, {} inodes, {} directory entries, {} indirect pointers, journal seq_done {}",
        o.out.display(),
        img.len() >> 20,
        model.inodes.len(),
        model.dirents.len(),
        model.ind_slots.len(),
        model.journal.seq_done
    ))
}

fn populate_on_device(o: &BaseOpts) -> Result<Vec<u8>, String> {
    let dev_bytes =
        sys::device_bytes(&o.dev).map_err(|e| format!("cannot open {}: {e}", o.dev.display()))?;
    if (dev_bytes as usize) < o.size {
        return Err(format!(
            "{} has {dev_bytes} bytes, less than the {} of the image",
            o.dev.display(),
            o.size
        ));
    }
    let tmp = std::env::temp_dir().join(format!("ferrofuzz-mkfs-{}.img", std::process::id()));
    let f = File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    f.set_len(o.size as u64)
        .map_err(|e| format!("cannot size {}: {e}", tmp.display()))?;
    drop(f);
    let mkfs = mkfs_path(&o.mkfs);
    let st = Command::new(&mkfs)
        .args(["-q", "-f", "-L", "fuzzbase"])
        .arg(&tmp)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", mkfs.display()))?;
    if !st.success() {
        return Err(format!("{} {} failed: {st}", mkfs.display(), tmp.display()));
    }
    let mut buf = AlignedBuf::new(o.size);
    File::open(&tmp)
        .and_then(|f| f.read_exact_at(&mut buf, 0))
        .map_err(|e| format!("cannot read {}: {e}", tmp.display()))?;
    let _ = fs::remove_file(&tmp);
    sys::write_device(&o.dev, &buf, 0)
        .map_err(|e| format!("cannot write {}: {e}", o.dev.display()))?;
    fs::create_dir_all(&o.mnt).map_err(|e| format!("cannot create {}: {e}", o.mnt.display()))?;
    sys::mount(&o.dev, &o.mnt, "ferrofs", "dax").map_err(|e| {
        format!(
            "mount -t ferrofs -o dax {} {}: {}",
            o.dev.display(),
            o.mnt.display(),
            errno_name(e)
        )
    })?;
    let r = populate(&o.mnt);
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    let u = sys::umount(&o.mnt, 0);
    r?;
    u.map_err(|e| format!("umount {}: {}", o.mnt.display(), errno_name(e)))?;
    let img = sys::read_device(&o.dev, o.size)
        .map_err(|e| format!("cannot read {} back: {e}", o.dev.display()))?;
    Ok(img.to_vec())
}

/// Create the layout under `root`.
pub fn populate(root: &Path) -> Result<(), String> {
    for n in layout() {
        let r = match &n {
            Node::Dir { path } => fs::create_dir(root.join(path)),
            Node::File { path, blocks, size } => (|| {
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(root.join(path))?;
                for &l in blocks {
                    f.write_all_at(&vec![fill_byte(path, l); 4096], l * 4096)?;
                }
                f.set_len(*size)?;
                f.sync_all()
            })(),
            Node::Symlink { path, target } => std::os::unix::fs::symlink(target, root.join(path)),
            Node::Link { path, to } => fs::hard_link(root.join(to), root.join(path)),
        };
        r.map_err(|e| format!("populating {n:?}: {e}"))?;
    }
    Ok(())
}
