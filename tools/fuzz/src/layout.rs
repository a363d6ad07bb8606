//! The tree of the base image: one description, populated for real in the
//! guest (`make-base`, through the mounted module) and laid out directly in
//! a host-made image by [`crate::synth`] (for the host tests).
//!
//! It covers every shape of block map (no blocks; direct only; exactly the
//! 12 direct pointers; the first indirect block; the double indirect tree),
//! a sparse file, a file of holes only, a directory of more than one block
//! (41 entries: 16 slots a block), nested directories, short and long
//! symlinks (one dangling), and hard links.

/// One object of the tree, created in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        path: String,
    },
    /// A regular file: `blocks` are the logical blocks written (each filled
    /// with [`fill_byte`]), then the size set to `size`.
    File {
        path: String,
        blocks: Vec<u64>,
        size: u64,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// A hard link `path` to the existing file `to`.
    Link {
        path: String,
        to: String,
    },
}

const B: u64 = 4096;

/// The byte stored in every byte of logical block `lblk` of the file at
/// `path`.
pub fn fill_byte(path: &str, lblk: u64) -> u8 {
    let h = path
        .bytes()
        .fold(0u8, |h, c| h.wrapping_mul(31).wrapping_add(c));
    h.wrapping_add(lblk as u8) | 1
}

fn file(path: &str, blocks: impl IntoIterator<Item = u64>, size: u64) -> Node {
    Node::File {
        path: path.into(),
        blocks: blocks.into_iter().collect(),
        size,
    }
}

fn dir(path: &str) -> Node {
    Node::Dir { path: path.into() }
}

fn symlink(path: &str, target: &str) -> Node {
    Node::Symlink {
        path: path.into(),
        target: target.into(),
    }
}

fn link(path: &str, to: &str) -> Node {
    Node::Link {
        path: path.into(),
        to: to.into(),
    }
}

/// The base tree. Paths are relative to the filesystem root.
pub fn layout() -> Vec<Node> {
    let mut v = vec![
        dir("a"),
        dir("a/b"),
        dir("a/b/c"),
        dir("a/b/c/d"),
        file("empty", [], 0),
        file("one", [0], B),
        file("five", 0..5, 5 * B - 100),
        file("twelve", 0..12, 12 * B),
        file("thirteen", 0..13, 13 * B),
        file("big", 0..1100, 1100 * B),
        // Direct, single indirect and double indirect blocks, holes between.
        file("sparse", [0, 7, 20, 1040, 1041], 1042 * B + 100),
        file("holes-only", [], 10 * B),
        file("a/b/c/d/deep", [0], 10),
        dir("many"),
    ];
    for i in 0..30 {
        let blocks: Vec<u64> = if i % 2 == 1 { vec![0] } else { vec![] };
        let size = if i % 2 == 1 { 100 + i } else { 0 };
        v.push(file(&format!("many/e{i:02}"), blocks, size));
    }
    for i in 0..5 {
        v.push(dir(&format!("many/s{i:02}")));
        v.push(symlink(&format!("many/l{i:02}"), &format!("e{i:02}")));
    }
    let long = format!("{}one", "./".repeat(1498));
    v.extend([
        symlink("short", "one"),
        symlink("long", &long),
        symlink("a/dangling", "nowhere"),
        symlink("a/up", "../five"),
        link("a/one.link", "one"),
        link("many/one.link2", "one"),
        link("a/b/five.link", "five"),
    ]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_every_shape_asked_for() {
        let l = layout();
        let files: Vec<(&str, usize)> = l
            .iter()
            .filter_map(|n| match n {
                Node::File { path, blocks, .. } => Some((path.as_str(), blocks.len())),
                _ => None,
            })
            .collect();
        for n in [0, 1, 5, 12, 13, 1100] {
            assert!(files.iter().any(|f| f.1 == n), "a file of {n} blocks");
        }
        let in_many = l
            .iter()
            .filter(|n| match n {
                Node::File { path, .. }
                | Node::Dir { path }
                | Node::Symlink { path, .. }
                | Node::Link { path, .. } => path.starts_with("many/"),
            })
            .count();
        assert!(in_many > 32, "a directory of more than two blocks");
        assert!(l
            .iter()
            .any(|n| matches!(n, Node::Symlink { target, .. } if target.len() > 2000)));
    }
}
