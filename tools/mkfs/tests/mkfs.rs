//! Runs the built mkfs.ferrofs on image files and checks what it wrote (or
//! that it wrote nothing).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferrofs_format::*;
use ferrofs_image::{blocks_in, Image};

const MKFS: &str = env!("CARGO_BIN_EXE_mkfs-ferrofs");
const MIB: usize = 1 << 20;

/// A scratch file under cargo's per-target temp dir, removed on drop.
struct TempImage {
    path: PathBuf,
}

impl TempImage {
    /// A file of `len` bytes, each `fill`.
    fn new(name: &str, len: usize, fill: u8) -> TempImage {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mkfs-tests");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-{}.img", std::process::id()));
        fs::write(&path, vec![fill; len]).unwrap();
        TempImage { path }
    }

    fn bytes(&self) -> Vec<u8> {
        fs::read(&self.path).unwrap()
    }

    fn image(&self) -> Image<File> {
        Image::new(File::open(&self.path).unwrap())
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn mkfs(args: &[&str], img: &TempImage) -> Output {
    Command::new(MKFS)
        .args(args)
        .arg(&img.path)
        .output()
        .expect("run mkfs")
}

fn mkfs_args(args: &[&str]) -> Output {
    Command::new(MKFS).args(args).output().expect("run mkfs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn assert_success(o: &Output) {
    assert!(
        o.status.success(),
        "expected success, got {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

#[track_caller]
fn assert_exit_1(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit code 1\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    assert!(!stderr(o).trim().is_empty(), "no message on stderr");
}

/// Formats `img` quietly, asserting success.
fn format(img: &TempImage, extra: &[&str]) {
    let mut args = vec!["-q"];
    args.extend_from_slice(extra);
    assert_success(&mkfs(&args, img));
}

/// The validated superblock and geometry of a formatted image.
fn superblock(img: &TempImage) -> (Superblock, Geometry) {
    let mut im = img.image();
    im.validated_superblock()
        .unwrap_or_else(|e| panic!("superblock does not validate: {e}"))
}

/// A ferrofs superblock written at block 0 of a fresh image.
fn image_with_ferrofs(name: &str) -> TempImage {
    let img = TempImage::new(name, 4 * MIB, 0);
    format(&img, &[]);
    img
}

// ---- a successful format ---------------------------------------------------

#[test]
fn formatted_4mib_image_superblock_validates_against_file_size() {
    let img = TempImage::new("sb", 4 * MIB, 0xAA);
    format(&img, &[]);
    let (sb, geo) = superblock(&img);
    let blocks = (4 * MIB / BLOCK_SIZE) as u64;
    assert_eq!(geo, Geometry::for_blocks(blocks, None).unwrap());
    assert_eq!(sb.blocks_count.get(), blocks);
    assert_eq!(sb.root_ino.get(), ROOT_INO);
    assert_ne!(sb.uuid, [0; 16], "UUID not set");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = sb.mkfs_time.get();
    assert!(
        t <= now && now - t < 600,
        "mkfs_time {t} is not about now ({now})"
    );
    assert_eq!(img.bytes().len(), 4 * MIB, "image size changed");
}

#[test]
fn formatted_4mib_image_root_inode_is_valid_empty_directory() {
    let img = TempImage::new("root", 4 * MIB, 0xAA);
    format(&img, &[]);
    let (_, geo) = superblock(&img);
    let mut im = img.image();
    let root = im.inode(&geo, ROOT_INO).unwrap();
    assert_eq!(root.validate(ROOT_INO, geo.blocks_count), Ok(()));
    assert_eq!(root.mode.get() & S_IFMT, S_IFDIR, "root is not a directory");
    assert_eq!(root.mode.get(), S_IFDIR | 0o755);
    assert_eq!(root.nlink.get(), 2);
    assert_eq!((root.uid.get(), root.gid.get()), (0, 0));
    assert_eq!(root.size.get(), BLOCK_SIZE as u64);
    assert_eq!(root.blocks.get(), 1);
    assert_eq!(root.direct[0].get() as u64, geo.data_start);
    assert!(
        root.direct[1..].iter().all(|p| p.get() == 0),
        "more than one direct block"
    );
    assert_eq!(
        (
            root.indirect.get(),
            root.dindirect.get(),
            root.tindirect.get()
        ),
        (0, 0, 0)
    );
    assert_eq!(root.parent.get(), ROOT_INO);
    assert_eq!(root.generation.get(), 0);
    assert_eq!(root.mtime_sec.get(), root.ctime_sec.get());
    assert!(root.mtime_sec.get() > 0, "times not set");
    // Its one block holds no entries.
    let dir = im.read_block(geo.data_start).unwrap();
    for slot in 0..DIRENTS_PER_BLOCK {
        let d = Dirent::from_bytes(&dir[slot * DIRENT_SIZE..]).unwrap();
        assert_eq!(d.ino.get(), 0, "root dir slot {slot} is used");
    }
    assert!(dir.iter().all(|&b| b == 0), "root dir block not zeroed");
}

#[test]
fn formatted_image_has_every_other_inode_slot_free() {
    let img = TempImage::new("itable", 4 * MIB, 0xAA);
    format(&img, &[]);
    let (_, geo) = superblock(&img);
    let mut im = img.image();
    for ino in 2..=geo.inodes_count {
        let i = im.inode(&geo, ino).unwrap();
        assert!(i.is_free(), "inode {ino} is not free");
        assert!(
            i.as_bytes().iter().all(|&b| b == 0),
            "inode {ino} not zeroed"
        );
    }
}

#[test]
fn formatted_image_has_zeroed_journal() {
    let img = TempImage::new("journal", 4 * MIB, 0xAA);
    format(&img, &[]);
    let (_, geo) = superblock(&img);
    let j = img
        .image()
        .read_blocks(geo.journal_start, geo.journal_blocks as u64)
        .unwrap();
    assert!(j.iter().all(|&b| b == 0), "journal not zeroed");
}

#[test]
fn formatted_4mib_image_bitmap_marks_exactly_metadata_and_root_block() {
    let img = TempImage::new("bitmap", 4 * MIB, 0xAA);
    format(&img, &[]);
    let (_, geo) = superblock(&img);
    let bm = img.image().bitmap(&geo).unwrap();
    let used: Vec<u64> = (0..geo.blocks_count).filter(|&i| bm.get(i)).collect();
    let expected: Vec<u64> = (0..=geo.data_start).collect();
    assert_eq!(
        used, expected,
        "used blocks below blocks_count: expected 0..={}",
        geo.data_start
    );
    // Past the device's end, every bit of the last bitmap block is set.
    for i in geo.blocks_count..bm.len() {
        assert!(bm.get(i), "bit {i} past blocks_count is clear");
    }
}

#[test]
fn image_size_not_a_multiple_of_block_size_uses_whole_blocks() {
    let len = 1000 * BLOCK_SIZE + 100;
    let img = TempImage::new("odd", len, 0);
    format(&img, &[]);
    let (_, geo) = superblock(&img);
    assert_eq!(geo.blocks_count, 1000);
    assert_eq!(blocks_in(len as u64), 1000);
    let bm = img.image().bitmap(&geo).unwrap();
    assert_eq!(bm.count_set(0, 1000), geo.data_start + 1);
    assert_eq!(bm.count_set(1000, bm.len()), bm.len() - 1000);
    assert_eq!(img.bytes().len(), len, "image size changed");
}

#[test]
fn smallest_image_of_min_blocks_is_formatted() {
    let img = TempImage::new("min", MIN_BLOCKS as usize * BLOCK_SIZE, 0);
    format(&img, &[]);
    let (_, geo) = superblock(&img);
    assert_eq!(geo.blocks_count, MIN_BLOCKS);
}

#[test]
fn label_of_31_bytes_is_stored() {
    let img = TempImage::new("label31", 4 * MIB, 0);
    let label = "L".repeat(31);
    format(&img, &["-L", &label]);
    let (sb, _) = superblock(&img);
    assert_eq!(sb.label_str(), label.as_bytes());
}

#[test]
fn inode_count_option_is_rounded_up_to_a_whole_table_block() {
    let img = TempImage::new("inodes", 4 * MIB, 0);
    format(&img, &["-N", "100"]);
    let (_, geo) = superblock(&img);
    assert_eq!(geo.inodes_count, 112);
    assert_eq!(geo.itable_blocks, 7);
}

#[test]
fn summary_names_blocks_inodes_label_and_uuid() {
    let img = TempImage::new("summary", 4 * MIB, 0);
    let o = mkfs(&["-L", "scratch"], &img);
    assert_success(&o);
    let (sb, geo) = superblock(&img);
    let out = stdout(&o);
    let uuid: String = sb.uuid.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &uuid[0..8],
        &uuid[8..12],
        &uuid[12..16],
        &uuid[16..20],
        &uuid[20..]
    );
    for want in [
        geo.blocks_count.to_string(),
        geo.inodes_count.to_string(),
        (geo.blocks_count - geo.data_start - 1).to_string(),
        "scratch".to_string(),
        uuid,
    ] {
        assert!(out.contains(&want), "summary lacks {want:?}:\n{out}");
    }
}

#[test]
fn quiet_prints_nothing() {
    let img = TempImage::new("quiet", 4 * MIB, 0);
    let o = mkfs(&["-q"], &img);
    assert_success(&o);
    assert_eq!(stdout(&o), "", "stdout not empty");
    assert_eq!(stderr(&o), "", "stderr not empty");
}

#[test]
fn each_format_gets_a_new_uuid() {
    let img = image_with_ferrofs("uuid");
    let (first, _) = superblock(&img);
    format(&img, &["-f"]);
    let (second, _) = superblock(&img);
    assert_ne!(first.uuid, second.uuid);
}

// ---- refusals: exit 1, nothing written -------------------------------------

/// Runs mkfs with `args` on `img` and checks it failed without writing.
#[track_caller]
fn assert_refused_unchanged(args: &[&str], img: &TempImage) -> String {
    let before = img.bytes();
    let o = mkfs(args, img);
    assert_exit_1(&o);
    assert!(img.bytes() == before, "image changed by a refused mkfs");
    stderr(&o)
}

#[test]
fn image_of_256_kib_is_refused_as_too_small_and_left_unchanged() {
    let img = TempImage::new("small", 256 * 1024, 0x5A);
    let err = assert_refused_unchanged(&[], &img);
    assert!(err.contains("too small"), "stderr: {err}");
}

#[test]
fn image_one_block_below_min_blocks_is_refused_even_with_force() {
    let img = TempImage::new("small2", (MIN_BLOCKS as usize - 1) * BLOCK_SIZE, 0x5A);
    let err = assert_refused_unchanged(&["-f"], &img);
    assert!(err.contains("too small"), "stderr: {err}");
}

#[test]
fn too_many_inodes_for_the_device_is_refused_and_left_unchanged() {
    let img = TempImage::new("toomany", MIN_BLOCKS as usize * BLOCK_SIZE, 0x5A);
    let err = assert_refused_unchanged(&["-N", "100000"], &img);
    assert!(err.contains("cannot lay out"), "stderr: {err}");
}

#[test]
fn unknown_flag_is_refused_with_usage_and_nothing_written() {
    let img = TempImage::new("flag", 4 * MIB, 0x5A);
    let err = assert_refused_unchanged(&["-x"], &img);
    assert!(err.contains("usage:"), "no usage in stderr: {err}");
    let err = assert_refused_unchanged(&["--force"], &img);
    assert!(err.contains("usage:"), "no usage in stderr: {err}");
}

#[test]
fn missing_device_argument_is_refused_with_usage() {
    let o = mkfs_args(&["-q"]);
    assert_exit_1(&o);
    assert!(stderr(&o).contains("usage:"), "stderr: {}", stderr(&o));
}

#[test]
fn extra_argument_is_refused_with_usage_and_nothing_written() {
    let img = TempImage::new("extra", 4 * MIB, 0x5A);
    let other = TempImage::new("extra-other", 4 * MIB, 0x5A);
    let before = other.bytes();
    let err = assert_refused_unchanged(&[other.path.to_str().unwrap()], &img);
    assert!(err.contains("usage:"), "stderr: {err}");
    assert!(other.bytes() == before, "second image changed");
}

#[test]
fn label_of_32_bytes_is_refused_and_nothing_written() {
    let img = TempImage::new("label32", 4 * MIB, 0x5A);
    let label = "L".repeat(32);
    let err = assert_refused_unchanged(&["-L", &label], &img);
    assert!(err.contains("label"), "stderr: {err}");
}

#[test]
fn nonexistent_image_is_refused_and_not_created() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("mkfs-tests-missing-{}.img", std::process::id()));
    let o = mkfs_args(&[path.to_str().unwrap()]);
    assert_exit_1(&o);
    assert!(stderr(&o).contains("cannot open"), "stderr: {}", stderr(&o));
    assert!(!path.exists(), "mkfs created {}", path.display());
}

#[test]
fn directory_is_refused() {
    let o = mkfs_args(&[env!("CARGO_TARGET_TMPDIR")]);
    assert_exit_1(&o);
}

#[test]
fn help_prints_usage_and_succeeds() {
    let o = mkfs_args(&["-h"]);
    assert_success(&o);
    assert!(stdout(&o).contains("usage:"), "stdout: {}", stdout(&o));
}

// ---- existing filesystems --------------------------------------------------

#[test]
fn image_holding_ferrofs_is_refused_without_force() {
    let img = image_with_ferrofs("ferro");
    let err = assert_refused_unchanged(&[], &img);
    assert!(err.contains("ferrofs"), "stderr: {err}");
    assert!(err.contains("-f"), "no hint at -f: {err}");
}

#[test]
fn image_holding_ferrofs_is_reformatted_with_force() {
    let img = image_with_ferrofs("ferro-f");
    let o = mkfs(&["-f", "-q", "-L", "again"], &img);
    assert_success(&o);
    let (sb, _) = superblock(&img);
    assert_eq!(sb.label_str(), b"again");
}

/// Runs mkfs on `img` with `input` on its standard input.
fn mkfs_answering(args: &[&str], img: &TempImage, input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(MKFS)
        .args(args)
        .arg(&img.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mkfs");
    let mut stdin = child.stdin.take().expect("stdin");
    // mkfs may exit before reading (a broken pipe is then fine).
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("wait for mkfs")
}

#[test]
fn an_existing_filesystem_is_overwritten_when_the_answer_is_yes() {
    // fstests formats an unknown FSTYP with `yes | mkfs -t FSTYP -- DEV`.
    let img = image_with_ferrofs("ferro-yes");
    let o = mkfs_answering(&["-q", "-L", "yes"], &img, b"y\ny\ny\n");
    assert_success(&o);
    assert!(
        stderr(&o).contains("Proceed anyway? (y,N)"),
        "stderr: {}",
        stderr(&o)
    );
    assert_eq!(superblock(&img).0.label_str(), b"yes");

    let before = img.bytes();
    let o = mkfs_answering(&["-q", "-L", "no"], &img, b"n\n");
    assert_exit_1(&o);
    assert!(img.bytes() == before, "image changed by an answer of no");
}

#[test]
fn a_block_count_formats_only_the_first_blocks() {
    let img = TempImage::new("count", 8 * MIB, 0);
    format(&img, &["-b", "4096", "-f"]);
    assert_eq!(superblock(&img).1.blocks_count, 2048);
    format(&img, &["-f", "-b4k", "--"]);
    let o = mkfs(&["-q", "-f"], &img);
    assert_success(&o);
    let o = Command::new(MKFS)
        .args(["-q", "-f"])
        .arg(&img.path)
        .arg("1024")
        .output()
        .expect("run mkfs");
    assert_success(&o);
    assert_eq!(superblock(&img).1.blocks_count, 1024);
    let o = Command::new(MKFS)
        .args(["-q", "-f"])
        .arg(&img.path)
        .arg("4096")
        .output()
        .expect("run mkfs");
    assert_exit_1(&o);
    assert!(
        stderr(&o).contains("4096 were asked for"),
        "stderr: {}",
        stderr(&o)
    );
}

#[test]
fn image_with_only_ferrofs_magic_is_refused_without_force() {
    // A damaged superblock (bad checksum) still means "someone's data".
    let img = TempImage::new("ferro-magic", 4 * MIB, 0);
    let mut b = img.bytes();
    b[..8].copy_from_slice(&MAGIC);
    fs::write(&img.path, &b).unwrap();
    let err = assert_refused_unchanged(&[], &img);
    assert!(err.contains("ferrofs"), "stderr: {err}");
}

fn image_with_ext4_magic(name: &str) -> TempImage {
    let img = TempImage::new(name, 4 * MIB, 0);
    let mut b = img.bytes();
    b[1080] = 0x53;
    b[1081] = 0xEF;
    fs::write(&img.path, &b).unwrap();
    img
}

#[test]
fn image_holding_ext4_is_refused_without_force() {
    let img = image_with_ext4_magic("ext4");
    let err = assert_refused_unchanged(&[], &img);
    assert!(err.contains("ext"), "stderr: {err}");
    assert!(err.contains("-f"), "no hint at -f: {err}");
}

#[test]
fn image_holding_ext4_is_formatted_with_force_and_loses_its_signature() {
    let img = image_with_ext4_magic("ext4-f");
    format(&img, &["-f"]);
    superblock(&img);
    let b = img.bytes();
    assert_eq!(&b[1080..1082], &[0, 0], "ext magic survived mkfs -f");
}

#[test]
fn image_holding_xfs_is_refused_without_force() {
    let img = TempImage::new("xfs", 4 * MIB, 0);
    let mut b = img.bytes();
    b[..4].copy_from_slice(b"XFSB");
    fs::write(&img.path, &b).unwrap();
    let err = assert_refused_unchanged(&[], &img);
    assert!(err.contains("xfs"), "stderr: {err}");
    format(&img, &["-f"]);
    superblock(&img);
}
