//! Host tests of the mutator, on the synthetic base (the layout of
//! `make-base`, written without the kernel).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::OnceLock;

use ferrofs_format::{JournalState, Pod, Superblock, BLOCK_SIZE};
use ferrofs_fuzz::model::{FileKind, Model};
use ferrofs_fuzz::mutate::{
    allowed_ranges, generate, generate_kind, verify_checksums, Kind, Mutation, Target, KINDS,
};
use ferrofs_fuzz::rng::Rng;
use ferrofs_fuzz::synth;

fn base() -> &'static (Vec<u8>, Model) {
    static BASE: OnceLock<(Vec<u8>, Model)> = OnceLock::new();
    BASE.get_or_init(|| {
        let img = synth::default_base();
        let model = Model::parse(&img).expect("the synthetic base parses");
        (img, model)
    })
}

fn mutated(m: &Mutation) -> Vec<u8> {
    let mut img = base().0.clone();
    m.apply(&mut img);
    img
}

fn round(seed: u64, r: u64, kinds: &[Kind]) -> Mutation {
    let (img, model) = base();
    generate(
        model,
        img,
        &mut Rng::for_round(seed, r),
        kinds,
        Target::default(),
    )
    .expect("a mutation")
}

/// A scratch file holding `bytes`, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "ferrofuzz-test-{name}-{}-{:?}.img",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_synthetic_base_is_a_filesystem_fsck_accepts() {
    let (img, _) = base();
    let t = TempFile::new("base", img);
    let f = std::fs::File::open(&t.0).unwrap();
    let out = ferrofs_fsck::check::check(&f, false, false).expect("fsck runs");
    let problems: Vec<&str> = out.problems.iter().map(|p| p.text.as_str()).collect();
    assert!(problems.is_empty(), "fsck found: {problems:#?}");
    assert!(out.used_inodes > 50, "{} inodes", out.used_inodes);
}

#[test]
fn the_model_sees_every_shape_of_the_layout() {
    let (_, m) = base();
    let by_path = |p: &str| {
        m.inodes
            .iter()
            .find(|i| i.path == p)
            .unwrap_or_else(|| panic!("{p} in the model"))
    };
    for (p, n) in [
        ("/empty", 0),
        ("/one", 1),
        ("/five", 5),
        ("/twelve", 12),
        ("/thirteen", 13),
        ("/big", 1100),
    ] {
        assert_eq!(by_path(p).data_blocks.len(), n, "{p}");
    }
    assert_eq!(by_path("/thirteen").ind_blocks.len(), 1);
    // /big: the indirect block, the double indirect block and one below it.
    assert_eq!(by_path("/big").ind_blocks.len(), 3);
    assert_eq!(by_path("/sparse").data_blocks.len(), 5);
    assert_eq!(by_path("/one").inode.nlink.get(), 3);
    assert_eq!(by_path("/many").data_blocks.len(), 3);
    assert!(
        m.dirents
            .iter()
            .filter(|e| e.dir == by_path("/many").ino)
            .count()
            > 32
    );
    assert_eq!(m.of_kind(FileKind::Symlink).len(), 9);
    assert!(by_path("/long").inode.size.get() > 2000);
    assert!(by_path("/a/b/c/d/deep").ino > 1);
    assert!(m.ind_slots.iter().any(|s| s.value == 0), "holes of /sparse");
    assert!(!m.free_inos.is_empty() && !m.free_blocks.is_empty());
}

#[test]
fn every_mutated_image_keeps_its_checksums_and_changes_only_what_it_says() {
    let (img, model) = base();
    for &k in KINDS {
        for r in 0..80 {
            let m = round(11, r, &[k]);
            let out = mutated(&m);
            assert_ne!(&out, img, "{}: changes nothing", m.describe());
            if let Err(e) = verify_checksums(&out, model, &m) {
                panic!("round {r}: {}: bad {e}", m.describe());
            }
            let allowed = allowed_ranges(&m);
            for (b, (x, y)) in img
                .chunks(BLOCK_SIZE)
                .zip(out.chunks(BLOCK_SIZE))
                .enumerate()
            {
                if x == y {
                    continue;
                }
                for i in (0..BLOCK_SIZE).filter(|&i| x[i] != y[i]) {
                    let at = b * BLOCK_SIZE + i;
                    assert!(
                        allowed.iter().any(|&(a, e)| a <= at && at < e),
                        "round {r}: {}: byte {at} changed outside its patches",
                        m.describe()
                    );
                }
            }
        }
    }
}

#[test]
fn the_superblock_still_validates_unless_a_superblock_field_was_aimed_at() {
    let (_, model) = base();
    for r in 0..400 {
        let m = round(5, r, KINDS);
        let out = mutated(&m);
        let sb = Superblock::from_bytes(&out).unwrap();
        let ok = sb.validate(model.image_blocks).is_ok();
        let aimed = matches!(m.kind, Kind::SbCount | Kind::SbRegion | Kind::SbMisc);
        assert!(ok || aimed, "{}: superblock broken", m.describe());
    }
}

#[test]
fn the_same_seed_and_round_give_the_same_mutation() {
    for r in 0..200 {
        assert_eq!(round(99, r, KINDS), round(99, r, KINDS), "round {r}");
    }
    let differ = (0..50)
        .filter(|&r| round(1, r, KINDS) != round(2, r, KINDS))
        .count();
    assert!(
        differ > 40,
        "seeds 1 and 2 gave {differ}/50 different rounds"
    );
}

#[test]
fn every_kind_is_reachable_from_the_full_set_and_alone() {
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for r in 0..2000 {
        *seen.entry(round(3, r, KINDS).kind.name()).or_default() += 1;
    }
    for &k in KINDS {
        assert!(
            seen.get(k.name()).copied().unwrap_or(0) > 20,
            "{}: {seen:?}",
            k.name()
        );
    }
    let (img, model) = base();
    for &k in KINDS {
        for r in 0..50 {
            let m = generate_kind(k, model, img, &mut Rng::for_round(8, r), Target::default());
            assert_eq!(m.map(|m| m.kind), Some(k), "{} round {r}", k.name());
        }
    }
}

#[test]
fn kinds_parse_from_their_names() {
    for &k in KINDS {
        assert_eq!(Kind::parse(k.name()), Some(k));
    }
    assert_eq!(Kind::parse("no-such-kind"), None);
}

#[test]
fn the_crafted_transaction_is_a_true_undo_log_of_the_base() {
    let (img, model) = base();
    let m = round(1, 0, &[Kind::JournalValid]);
    let mut out = mutated(&m);
    let (js, je) = model.journal_range();
    let st = JournalState::parse(&out[js..je], &model.geo).unwrap();
    assert_eq!(st.pending, 3, "{}", m.describe());
    assert_eq!(
        ferrofs_image::rollback_in_memory(&mut out, &model.geo),
        Ok(3)
    );
    // Rolled back, only the journal differs from the base (header seq_done
    // advanced, records written).
    let diff: Vec<usize> = (0..img.len()).filter(|&i| img[i] != out[i]).collect();
    assert!(
        diff.iter().all(|&i| i >= js && i < je),
        "rollback left changes outside the journal"
    );
}

#[test]
fn journal_fill_leaves_the_asked_tail_and_every_record_pending() {
    let (_, model) = base();
    let (js, je) = model.journal_range();
    let mut tails = std::collections::BTreeSet::new();
    for r in 0..60 {
        let m = round(4, r, &[Kind::JournalFill]);
        let out = mutated(&m);
        let st = JournalState::parse(&out[js..je], &model.geo).unwrap();
        assert!(st.pending > 60, "{}: {} pending", m.describe(), st.pending);
        assert!(
            je - js - st.end < 40,
            "{}: {} bytes left",
            m.describe(),
            je - js - st.end
        );
        tails.insert(je - js - st.end);
    }
    assert!(
        tails.contains(&0),
        "a record ends at the region's end: {tails:?}"
    );
}

#[test]
fn journal_seq_near_u64_max_is_reached_and_refused() {
    // seq_done = 2^64-1 once overflowed seq_done + 1 in the module; the
    // format now refuses any seq_done above JOURNAL_SEQ_MAX.
    let (_, model) = base();
    let (js, je) = model.journal_range();
    let found = (0..400).any(|r| {
        let m = round(6, r, &[Kind::JournalSeq]);
        let out = mutated(&m);
        let h = ferrofs_format::JournalHeader::from_bytes(&out[js..je]).unwrap();
        h.seq_done.get() == u64::MAX
            && JournalState::parse(&out[js..je], &model.geo)
                == Err(ferrofs_format::FormatError::BadJournal(
                    "journal sequence number out of range",
                ))
    });
    assert!(found, "seq_done 2^64-1 is reached and refused");
}

/// fsck is the other reader of hostile images: it must report, never panic.
#[test]
fn fsck_survives_every_mutation() {
    for r in 0..300 {
        let m = round(21, r, KINDS);
        let out = mutated(&m);
        let t = TempFile::new("fsck", &out);
        let f = std::fs::File::open(&t.0).unwrap();
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ferrofs_fsck::check::check(&f, false, false).map(|o| o.problems.len())
        }));
        assert!(res.is_ok(), "round {r}: fsck panicked on {}", m.describe());
    }
}

/// Two bases made by `make-base` differ in their uuid, times and
/// checksums, never in their structure: a round must aim at the same field
/// with the same value on both, so a replay on another base made the same
/// way reproduces the round.
#[test]
fn a_round_depends_on_the_structure_not_on_times_or_uuid() {
    let (img, model) = base();
    let mut other = img.clone();
    let mut sb = Superblock::from_bytes(&other).unwrap();
    sb.uuid = [0x42; 16];
    sb.mkfs_time.set(1_234_567_890);
    sb.update_checksum();
    other[..512].copy_from_slice(sb.as_bytes());
    for i in &model.inodes {
        let mut d = ferrofs_format::Inode::from_bytes(&other[i.off..]).unwrap();
        d.mtime_sec.set(d.mtime_sec.get() + 1000 + i.ino as u64);
        d.ctime_nsec.set(12345);
        d.update_checksum(i.ino);
        other[i.off..i.off + 256].copy_from_slice(d.as_bytes());
    }
    let model2 = Model::parse(&other).unwrap();
    for r in 0..400 {
        let t = Target::default();
        let a = generate(model, img, &mut Rng::for_round(60609, r), KINDS, t).unwrap();
        let b = generate(&model2, &other, &mut Rng::for_round(60609, r), KINDS, t).unwrap();
        assert_eq!(
            (a.kind, &a.field, &a.new),
            (b.kind, &b.field, &b.new),
            "round {r}"
        );
        let offs = |m: &Mutation| {
            m.patches
                .iter()
                .map(|(o, b)| (*o, b.len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(offs(&a), offs(&b), "round {r}: {}", a.describe());
    }
}
