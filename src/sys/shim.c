// SPDX-License-Identifier: GPL-2.0
/*
 * C shims for ferrofs: static inline functions and macros that Rust cannot
 * call through bindgen (linux/dax.h is not in the kernel crate's bindings,
 * lock initialisers are macros that create their lockdep class at the call
 * site). Each is a line or two of forwarding; all logic stays in Rust.
 */
#include <linux/module.h>
#include <linux/fs.h>
#include <linux/dax.h>
#include <linux/pfn_t.h>
#include <linux/mm.h>
#include <linux/uio.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>
#include <linux/blkdev.h>
#include <asm/cpufeature.h>

struct dax_device *ferrofs_dax_get(struct block_device *bdev, u64 *start_off, void *holder);
void ferrofs_dax_put(struct dax_device *dax, void *holder);
long ferrofs_dax_map(struct dax_device *dax, u64 start_off, long nr_pages,
		     void **kaddr, unsigned long *pfn);
u64 ferrofs_bdev_bytes(struct block_device *bdev);
int ferrofs_flush_insn(void);
void ferrofs_init_inode_locks(struct rw_semaphore *dirty, struct mutex *sync,
			      struct mutex *map, struct xarray *xa);
void ferrofs_init_sb_mutex(struct mutex *m);
void ferrofs_vm_flags_set(struct vm_area_struct *vma, unsigned long flags);
size_t ferrofs_iov_count(const struct iov_iter *i);
unsigned long ferrofs_zero_pfn(void);
void ferrofs_sb_start_pagefault(struct super_block *sb);
void ferrofs_sb_end_pagefault(struct super_block *sb);

struct dax_device *ferrofs_dax_get(struct block_device *bdev, u64 *start_off, void *holder)
{
	return fs_dax_get_by_bdev(bdev, start_off, holder, NULL);
}

void ferrofs_dax_put(struct dax_device *dax, void *holder)
{
	fs_put_dax(dax, holder);
}

/* Map nr_pages from the start of the partition; returns pages mapped or -errno. */
long ferrofs_dax_map(struct dax_device *dax, u64 start_off, long nr_pages,
		     void **kaddr, unsigned long *pfn)
{
	pfn_t p;
	long n;
	int id = dax_read_lock();

	n = dax_direct_access(dax, PHYS_PFN(start_off), nr_pages, DAX_ACCESS, kaddr, &p);
	dax_read_unlock(id);
	if (n > 0)
		*pfn = pfn_t_to_pfn(p);
	return n;
}

u64 ferrofs_bdev_bytes(struct block_device *bdev)
{
	return bdev_nr_bytes(bdev);
}

/* 2: clwb, 1: clflushopt, 0: clflush. */
int ferrofs_flush_insn(void)
{
	if (boot_cpu_has(X86_FEATURE_CLWB))
		return 2;
	if (boot_cpu_has(X86_FEATURE_CLFLUSHOPT))
		return 1;
	return 0;
}

void ferrofs_init_inode_locks(struct rw_semaphore *dirty, struct mutex *sync,
			      struct mutex *map, struct xarray *xa)
{
	init_rwsem(dirty);
	mutex_init(sync);
	mutex_init(map);
	xa_init(xa);
}

void ferrofs_init_sb_mutex(struct mutex *m)
{
	mutex_init(m);
}

void ferrofs_vm_flags_set(struct vm_area_struct *vma, unsigned long flags)
{
	vm_flags_set(vma, flags);
}

size_t ferrofs_iov_count(const struct iov_iter *i)
{
	return iov_iter_count(i);
}

unsigned long ferrofs_zero_pfn(void)
{
	return my_zero_pfn(0);
}

void ferrofs_sb_start_pagefault(struct super_block *sb)
{
	sb_start_pagefault(sb);
}

void ferrofs_sb_end_pagefault(struct super_block *sb)
{
	sb_end_pagefault(sb);
}

#include <linux/statfs.h>

void ferrofs_fill_statfs(struct kstatfs *buf, u64 magic, u64 blocks, u64 bfree,
			 u64 files, u64 ffree, u64 namelen, u64 fsid);

void ferrofs_fill_statfs(struct kstatfs *buf, u64 magic, u64 blocks, u64 bfree,
			 u64 files, u64 ffree, u64 namelen, u64 fsid)
{
	buf->f_type = magic;
	buf->f_bsize = PAGE_SIZE;
	buf->f_frsize = PAGE_SIZE;
	buf->f_blocks = blocks;
	buf->f_bfree = bfree;
	buf->f_bavail = bfree;
	buf->f_files = files;
	buf->f_ffree = ffree;
	buf->f_namelen = namelen;
	buf->f_fsid = u64_to_fsid(fsid);
}

void ferrofs_file_accessed(struct file *file);

void ferrofs_file_accessed(struct file *file)
{
	file_accessed(file);
}

#include <linux/sched/mm.h>

void ferrofs_init_journal_mutex(struct mutex *m);
unsigned int ferrofs_nofs_save(void);
void ferrofs_nofs_restore(unsigned int flags);

/* Its own call site: the journal mutex gets its own lockdep class. */
void ferrofs_init_journal_mutex(struct mutex *m)
{
	mutex_init(m);
}

/* A transaction must not recurse into the filesystem through reclaim. */
unsigned int ferrofs_nofs_save(void)
{
	return memalloc_nofs_save();
}

void ferrofs_nofs_restore(unsigned int flags)
{
	memalloc_nofs_restore(flags);
}

unsigned long ferrofs_copy_mc(void *dst, const void *src, size_t n);
size_t ferrofs_copy_mc_to_iter(const void *src, size_t n, struct iov_iter *i);

/* Machine-check-safe reads of pmem: a poisoned line ends the copy short. */
unsigned long ferrofs_copy_mc(void *dst, const void *src, size_t n)
{
	return copy_mc_to_kernel(dst, src, n);
}

size_t ferrofs_copy_mc_to_iter(const void *src, size_t n, struct iov_iter *i)
{
	return _copy_mc_to_iter(src, n, i);
}

/*
 * The per-mount list of inodes that may hold dirty marks, for sync_fs. An
 * inode's link is on it (or on a sync_fs's private list) from its first
 * mark until a sync_fs takes it off to write it back, or it is evicted.
 * All under the list's spinlock; igrab nests i_lock inside it.
 */
void ferrofs_sync_list_init(spinlock_t *lock, struct list_head *head);
void ferrofs_list_init(struct list_head *e);
void ferrofs_sync_list_add(spinlock_t *lock, struct list_head *head, struct list_head *e);
void ferrofs_sync_list_del(spinlock_t *lock, struct list_head *e);
void ferrofs_sync_list_splice(spinlock_t *lock, struct list_head *head, struct list_head *priv);
struct inode *ferrofs_sync_list_pop(spinlock_t *lock, struct list_head *priv, size_t link_off);

void ferrofs_sync_list_init(spinlock_t *lock, struct list_head *head)
{
	spin_lock_init(lock);
	INIT_LIST_HEAD(head);
}

void ferrofs_list_init(struct list_head *e)
{
	INIT_LIST_HEAD(e);
}

void ferrofs_sync_list_add(spinlock_t *lock, struct list_head *head, struct list_head *e)
{
	spin_lock(lock);
	if (list_empty(e))
		list_add_tail(e, head);
	spin_unlock(lock);
}

void ferrofs_sync_list_del(spinlock_t *lock, struct list_head *e)
{
	spin_lock(lock);
	list_del_init(e);
	spin_unlock(lock);
}

void ferrofs_sync_list_splice(spinlock_t *lock, struct list_head *head, struct list_head *priv)
{
	spin_lock(lock);
	list_splice_init(head, priv);
	spin_unlock(lock);
}

/*
 * Take the first inode off @priv with a reference, skipping inodes being
 * freed (their eviction writes them back). NULL when @priv is empty.
 */
struct inode *ferrofs_sync_list_pop(spinlock_t *lock, struct list_head *priv, size_t link_off)
{
	struct inode *inode = NULL;

	spin_lock(lock);
	while (!list_empty(priv)) {
		struct list_head *e = priv->next;

		list_del_init(e);
		inode = igrab((struct inode *)((char *)e - link_off));
		if (inode)
			break;
	}
	spin_unlock(lock);
	return inode;
}
