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
#include <linux/pagemap.h>
#include <linux/wait_bit.h>
#include <linux/delay.h>
#include <linux/fiemap.h>
#include <linux/xattr.h>
#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <asm/cpufeature.h>

struct dax_device *ferrofs_dax_get(struct block_device *bdev, u64 *start_off, void *holder);
void ferrofs_dax_put(struct dax_device *dax, void *holder);
long ferrofs_dax_map(struct dax_device *dax, u64 start_off, long nr_pages,
		     void **kaddr, unsigned long *pfn, int *has_pages);
u64 ferrofs_bdev_bytes(struct block_device *bdev);
int ferrofs_dax_synchronous(struct dax_device *dax);
int ferrofs_fiemap_prep(struct inode *inode, struct fiemap_extent_info *fi, u64 start, u64 *len);
int ferrofs_fiemap_fill(struct fiemap_extent_info *fi, u64 logical, u64 phys, u64 len, u32 flags);
int ferrofs_flush_insn(void);
void ferrofs_init_inode_locks(struct mutex *sync, struct mutex *map, struct xarray *xa);
void ferrofs_init_huge(struct rw_semaphore *huge, struct xarray *xa);
void ferrofs_init_xattr_lock(struct rw_semaphore *sem);
int ferrofs_acl_from_xattr(const void *value, size_t size, struct posix_acl **out);
const struct xattr_handler **ferrofs_xattr_handlers(void);
int ferrofs_xattr_get_rs(int index, struct inode *inode, const char *name, void *buf,
			 size_t size);
int ferrofs_xattr_set_rs(int index, struct inode *inode, const char *name, const void *value,
			 size_t size, int flags);
long ferrofs_acl_xattr_size(const struct posix_acl *acl);
int ferrofs_acl_to_xattr(const struct posix_acl *acl, void *buf, size_t size);
void ferrofs_acl_release(struct posix_acl *acl);
int ferrofs_acl_create(struct inode *dir, umode_t *mode, struct posix_acl **def,
		       struct posix_acl **acl);
int ferrofs_acl_chmod(struct mnt_idmap *idmap, struct dentry *dentry, umode_t mode);
void ferrofs_set_cached_acl(struct inode *inode, int type, struct posix_acl *acl);
int ferrofs_acl_update_mode(struct mnt_idmap *idmap, struct inode *inode, umode_t *mode,
			    struct posix_acl **acl);
vm_fault_t ferrofs_insert_pmd(struct vm_fault *vmf, unsigned long pfn);
int ferrofs_pmd_mkwrite(struct vm_fault *vmf, unsigned long pfn, struct xarray *xa,
			unsigned long index);
int ferrofs_pmd_is_leaf(struct vm_fault *vmf);
int ferrofs_pmd_fits(struct vm_fault *vmf);
void ferrofs_vm_flags_set(struct vm_area_struct *vma, unsigned long flags);
size_t ferrofs_iov_count(const struct iov_iter *i);
void ferrofs_sb_start_pagefault(struct super_block *sb);
void ferrofs_sb_end_pagefault(struct super_block *sb);
struct fileattr;
unsigned int ferrofs_inode_fs_flags(struct inode *inode);
void ferrofs_fileattr_fill(struct fileattr *fa, unsigned int flags);
long ferrofs_fileattr_flags(const struct fileattr *fa);
void ferrofs_inode_set_fs_flags(struct inode *inode, unsigned int flags);
void ferrofs_sb_start_intwrite(struct super_block *sb);
void ferrofs_sb_end_intwrite(struct super_block *sb);

struct dax_device *ferrofs_dax_get(struct block_device *bdev, u64 *start_off, void *holder)
{
	return fs_dax_get_by_bdev(bdev, start_off, holder, NULL);
}

void ferrofs_dax_put(struct dax_device *dax, void *holder)
{
	fs_put_dax(dax, holder);
}

/* Stores reach persistence once written back from the CPU caches (pmem),
 * as opposed to a device that needs a flush request (virtio-pmem). */
int ferrofs_dax_synchronous(struct dax_device *dax)
{
	return dax_synchronous(dax);
}

/* The values Rust uses for these bitwise-typed flags. */
static_assert((__force unsigned int)FOP_MMAP_SYNC == 1u << 2);
static_assert(FIEMAP_EXTENT_LAST == 1);
static_assert(FIEMAP_EXTENT_MERGED == 0x1000);

/* No FIEMAP flag is supported beyond what fiemap_prep allows itself (SYNC). */
int ferrofs_fiemap_prep(struct inode *inode, struct fiemap_extent_info *fi, u64 start, u64 *len)
{
	return fiemap_prep(inode, fi, start, len, 0);
}

/* 1: the user's array is full, stop; 0: go on; -errno (EFAULT). */
int ferrofs_fiemap_fill(struct fiemap_extent_info *fi, u64 logical, u64 phys, u64 len, u32 flags)
{
	return fiemap_fill_next_extent(fi, logical, phys, len, flags);
}

/*
 * Map nr_pages from the start of the partition; returns pages mapped or
 * -errno. *has_pages: the pfns have struct pages in a dev_pagemap
 * (PFN_DEV|PFN_MAP), so they can be mapped as devmap PTEs that
 * get_user_pages accepts.
 */
long ferrofs_dax_map(struct dax_device *dax, u64 start_off, long nr_pages,
		     void **kaddr, unsigned long *pfn, int *has_pages)
{
	pfn_t p;
	long n;
	int id = dax_read_lock();

	n = dax_direct_access(dax, PHYS_PFN(start_off), nr_pages, DAX_ACCESS, kaddr, &p);
	dax_read_unlock(id);
	if (n > 0) {
		*pfn = pfn_t_to_pfn(p);
		*has_pages = pfn_t_devmap(p);
	}
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

void ferrofs_init_inode_locks(struct mutex *sync, struct mutex *map, struct xarray *xa)
{
	mutex_init(sync);
	mutex_init(map);
	xa_init(xa);
}

/* Its own lockdep classes: the PMD fault lock and the PMD dirty XArray. */
void ferrofs_init_huge(struct rw_semaphore *huge, struct xarray *xa)
{
	init_rwsem(huge);
	xa_init(xa);
}

/* Its own lockdep class: the extended attribute lock. */
void ferrofs_init_xattr_lock(struct rw_semaphore *sem)
{
	init_rwsem(sem);
}

/*
 * A read-only devmap PMD for the 2 MiB extent at @pfn (aligned), unless the
 * PMD slot holds a page table already: then VM_FAULT_FALLBACK, as
 * dax_iomap_pmd_fault does. Never asks vmf_insert_pfn_pmd to write: with
 * write set it WARNs on a slot that filled meanwhile; without, it leaves a
 * filled slot alone (the caller's upgrade then finds no PMD of its pfn).
 * The caller serialises against PTE faults of the file (its huge lock), so
 * a page table cannot appear between this check and the insert.
 */
vm_fault_t ferrofs_insert_pmd(struct vm_fault *vmf, unsigned long pfn)
{
	pmd_t pmd = pmdp_get_lockless(vmf->pmd);

	if (!pmd_none(pmd) && !pmd_leaf(pmd))
		return VM_FAULT_FALLBACK;
	return vmf_insert_pfn_pmd(vmf, __pfn_to_pfn_t(pfn, PFN_DEV | PFN_MAP), false);
}

/*
 * The fault side of the upgrade protocol (src/dax.rs, "Marks and write
 * access without a lock"), called with the page-table lock of the PTE or
 * PMD about to become writable held: is entry @index of @xa still marked
 * dirty? The writeback walk clears the mark, then issues smp_mb(), then
 * zaps (which takes this lock if it finds the table). The full barrier
 * here pairs with that one: if the walk's zap found no table to lock (so
 * missed the PTE inserted since), this load sees the cleared mark; if it
 * took the lock before us, the lock orders the clear before this load; if
 * after, the zap removes what we make writable now.
 */
static bool ferrofs_still_marked(struct xarray *xa, unsigned long index)
{
	smp_mb();
	return xa_get_mark(xa, index, XA_MARK_0);
}

/*
 * The PMD twin of ferrofs_pte_mkwrite, under the PMD's lock: 1 if the PMD
 * at the fault address is a devmap leaf of @pfn and entry @index of @xa is
 * still marked dirty (the PMD is now writable, dirty, young), 2 if it is a
 * leaf of @pfn but the entry is no longer marked (a writeback walk claimed
 * it: mark again and retry), 0 if the slot is empty, -1 otherwise.
 */
int ferrofs_pmd_mkwrite(struct vm_fault *vmf, unsigned long pfn, struct xarray *xa,
			unsigned long index)
{
	struct vm_area_struct *vma = vmf->vma;
	unsigned long haddr = vmf->address & PMD_MASK;
	spinlock_t *ptl;
	pmd_t pmd, entry;
	int ret;

	if (!(vma->vm_flags & VM_WRITE) || !(vma->vm_flags & VM_SHARED))
		return -1;
	ptl = pmd_lock(vma->vm_mm, vmf->pmd);
	pmd = *vmf->pmd;
	if (pmd_none(pmd)) {
		ret = 0;
	} else if (!pmd_leaf(pmd) || !pmd_devmap(pmd) || pmd_pfn(pmd) != pfn) {
		/* (x86's pmd_trans_huge is false for a devmap PMD: pmd_leaf.) */
		ret = -1;
	} else if (!ferrofs_still_marked(xa, index)) {
		ret = 2;
	} else {
		entry = pmd_mkyoung(pmd_mkdirty(pmd_mkwrite_novma(pmd)));
		if (!pmd_same(pmd, entry)) {
			set_pmd_at(vma->vm_mm, haddr, vmf->pmd, entry);
			update_mmu_cache_pmd(vma, haddr, vmf->pmd);
		}
		ret = 1;
	}
	spin_unlock(ptl);
	return ret;
}

/*
 * Whether a PMD may map this fault (dax_fault_check_fallback's checks; the
 * core does not make them for DAX VMAs, __thp_vma_allowable_orders returns
 * early for them): the address and the file offset agree modulo 2 MiB, and
 * the whole aligned 2 MiB lies inside the VMA.
 */
int ferrofs_pmd_fits(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	unsigned long haddr = vmf->address & PMD_MASK;

	if ((vmf->pgoff & (HPAGE_PMD_NR - 1)) != ((vmf->address >> PAGE_SHIFT) & (HPAGE_PMD_NR - 1)))
		return 0;
	if (haddr < vma->vm_start || haddr + PMD_SIZE > vma->vm_end)
		return 0;
	return 1;
}

/* The fault address is mapped by a PMD leaf (a PTE fault raced with a PMD
 * fault and must be retried). */
int ferrofs_pmd_is_leaf(struct vm_fault *vmf)
{
	pmd_t pmd = pmdp_get_lockless(vmf->pmd);

	return pmd_leaf(pmd);
}

/* The allocator shards' mutexes: one lockdep class, never two held. */
void ferrofs_init_alloc_mutex(struct mutex *m);
void ferrofs_init_alloc_mutex(struct mutex *m)
{
	mutex_init(m);
}

unsigned int ferrofs_online_cpus(void);
unsigned int ferrofs_online_cpus(void)
{
	return num_online_cpus();
}

void ferrofs_vm_flags_set(struct vm_area_struct *vma, unsigned long flags)
{
	vm_flags_set(vma, flags);
}

size_t ferrofs_iov_count(const struct iov_iter *i)
{
	return iov_iter_count(i);
}

void ferrofs_sb_start_pagefault(struct super_block *sb)
{
	sb_start_pagefault(sb);
}

void ferrofs_sb_end_pagefault(struct super_block *sb)
{
	sb_end_pagefault(sb);
}

/* Internal writes (freeing an unlinked inode at eviction): wait for thaw. */
void ferrofs_sb_start_intwrite(struct super_block *sb)
{
	sb_start_intwrite(sb);
}

void ferrofs_sb_end_intwrite(struct super_block *sb)
{
	sb_end_intwrite(sb);
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

unsigned int ferrofs_cpu(void);
unsigned int ferrofs_current_pid(void);

unsigned int ferrofs_current_pid(void)
{
	return task_pid_nr(current);
}

unsigned int ferrofs_cpu(void)
{
	return raw_smp_processor_id();
}

void ferrofs_mutex_lock_nested(struct mutex *m, unsigned int sub);
void ferrofs_wait_var_ne(u64 *var, u64 v);
void ferrofs_set_var_wake(u64 *var, u64 v);

/* Quiescing the journal takes every area's mutex, one subclass each. */
void ferrofs_mutex_lock_nested(struct mutex *m, unsigned int sub)
{
	mutex_lock_nested(m, sub);
}

/* Sleep until *var no longer holds v (a journal area's running transaction
 * has finished). Not a lock: the waiter holds no lock the waited-for
 * transaction can need (see journal.rs, "Several transactions at once"). */
void ferrofs_wait_var_ne(u64 *var, u64 v)
{
	wait_var_event(var, READ_ONCE(*var) != v);
}

void ferrofs_set_var_wake(u64 *var, u64 v)
{
	WRITE_ONCE(*var, v);
	/* Orders the store before wake_up_var's waitqueue check. */
	smp_mb();
	wake_up_var(var);
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
	/*
	 * Already on a list (the mount's, or a sync's private one not yet
	 * popped): that sync walks the inode after popping it, and sees the
	 * caller's mark. The full barrier orders the caller's mark before this
	 * load; it pairs with the one after the pop, which orders the pop's
	 * list_del_init before the walk's loads: either this sees the link
	 * empty and adds it, or the walk sees the mark. No mount-wide lock in
	 * the common case of a fault marking a page of an inode already listed.
	 */
	smp_mb();
	if (!list_empty_careful(e))
		return;
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
	/* See ferrofs_sync_list_add. */
	smp_mb();
	return inode;
}

/*
 * get_user_pages on ferrofs mappings (see src/dax.rs, "Mapping types").
 *
 * Every ferrofs VMA is VM_MIXEDMAP. Pages of the file are mapped as devmap
 * PTEs (a pfn_t with PFN_DEV|PFN_MAP), which gup and gup-fast accept through
 * the device's dev_pagemap, the zero page as a special PTE. Both are
 * inserted read-only (vm_page_prot of a shared writable ferrofs VMA has no
 * write bit: we have pfn_mkwrite, so the VMA wants write notification); a
 * write fault makes the one PTE writable with ferrofs_pte_mkwrite, in the
 * fault handler, if its dirty entry is still marked (ferrofs_still_marked).
 */
vm_fault_t ferrofs_insert_page(struct vm_fault *vmf, unsigned long pfn);
void ferrofs_smp_mb(void);
void ferrofs_usleep(unsigned long us);
vm_fault_t ferrofs_insert_zero(struct vm_fault *vmf);
int ferrofs_pte_mkwrite(struct vm_fault *vmf, unsigned long pfn, struct xarray *xa,
			unsigned long index);
int ferrofs_page_refs(unsigned long pfn);
void ferrofs_page_associate(unsigned long pfn, struct address_space *mapping, pgoff_t index);
void ferrofs_page_disassociate(unsigned long pfn, struct address_space *mapping);
int ferrofs_wait_page_idle(unsigned long pfn, struct rw_semaphore *drop);
int ferrofs_wait_page_idle_final(unsigned long pfn, unsigned int msecs);

/* Trace mode's trace_tx_delay: a sleep before a commit. */
void ferrofs_usleep(unsigned long us)
{
	usleep_range(us, us + us / 4 + 1);
}

/* The writeback walk's side of ferrofs_still_marked: between clearing
 * marks and zapping. */
void ferrofs_smp_mb(void)
{
	smp_mb();
}

vm_fault_t ferrofs_insert_page(struct vm_fault *vmf, unsigned long pfn)
{
	return vmf_insert_mixed(vmf->vma, vmf->address, __pfn_to_pfn_t(pfn, PFN_DEV | PFN_MAP));
}

/* Allowed in a shared writable VMA only because the inode is S_DAX
 * (vm_mixed_zeropage_allowed: vma_is_fsdax). */
vm_fault_t ferrofs_insert_zero(struct vm_fault *vmf)
{
	return vmf_insert_mixed(vmf->vma, vmf->address,
				__pfn_to_pfn_t(my_zero_pfn(vmf->address), 0));
}

struct ferrofs_mkwrite_arg {
	struct vm_area_struct *vma;
	unsigned long pfn;
	struct xarray *xa;
	unsigned long index;
	int found;
};

/*
 * Called by apply_to_existing_page_range with the PTE table mapped and its
 * lock held, for a present PTE only. As wp_page_reuse does it: write, dirty
 * and young, no TLB flush (an upgrade never needs one: a stale read-only
 * TLB entry only causes a spurious fault, which the core fixes up).
 * Write before dirty: with user shadow stacks, a dirty read-only PTE would
 * become "saved dirty" instead.
 */
static int ferrofs_mkwrite_one(pte_t *ptep, unsigned long addr, void *data)
{
	struct ferrofs_mkwrite_arg *a = data;
	pte_t pte = ptep_get(ptep);
	pte_t entry;

	if (!pte_present(pte) || !pte_devmap(pte) || pte_pfn(pte) != a->pfn) {
		a->found = -1;
		return 0;
	}
	if (!ferrofs_still_marked(a->xa, a->index)) {
		a->found = 2;
		return 0;
	}
	entry = pte_mkyoung(pte_mkdirty(pte_mkwrite_novma(pte)));
	if (!pte_same(pte, entry)) {
		set_pte_at(a->vma->vm_mm, addr, ptep, entry);
		update_mmu_cache(a->vma, addr, ptep);
	}
	a->found = 1;
	return 0;
}

/*
 * Make the PTE at the fault address writable if it maps @pfn and entry
 * @index of @xa is still marked dirty. Returns 1 if it does (and is now
 * writable), 2 if it maps @pfn but the entry is no longer marked (a
 * writeback walk claimed it since the fault marked it: mark again and
 * retry), 0 if no PTE is there (zapped since the insert: MADV_DONTNEED
 * needs only the mmap lock shared), -1 if another pfn is mapped there or
 * the VMA is not writable.
 */
int ferrofs_pte_mkwrite(struct vm_fault *vmf, unsigned long pfn, struct xarray *xa,
			unsigned long index)
{
	struct ferrofs_mkwrite_arg a = { .vma = vmf->vma, .pfn = pfn, .xa = xa, .index = index,
					 .found = 0 };
	int err;

	if (!(vmf->vma->vm_flags & VM_WRITE) || !(vmf->vma->vm_flags & VM_SHARED))
		return -1;
	err = apply_to_existing_page_range(vmf->vma->vm_mm, vmf->address & PAGE_MASK,
					   PAGE_SIZE, ferrofs_mkwrite_one, &a);
	if (err)
		return -1;
	return a.found;
}

/* fsdax pages are 1-based: 1 means no one but the pagemap holds the page. */
int ferrofs_page_refs(unsigned long pfn)
{
	return page_ref_count(pfn_to_page(pfn));
}

/*
 * What fs/dax.c's dax_associate_entry does: a file page knows its file and
 * offset while it may be mapped. Shared futexes (get_futex_key) key on
 * folio->mapping->host and folio->index; unpin and /proc/pid/mem writes
 * call folio_mark_dirty, which goes to mapping->a_ops. A ferrofs block
 * belongs to one file at one offset until it is freed, and is freed only
 * after ferrofs_page_disassociate, so the two stores here are of the values
 * already there, or onto NULL.
 */
void ferrofs_page_associate(unsigned long pfn, struct address_space *mapping, pgoff_t index)
{
	struct page *page = pfn_to_page(pfn);

	if (READ_ONCE(page->mapping) == mapping && READ_ONCE(page->index) == index)
		return;
	WRITE_ONCE(page->index, index);
	WRITE_ONCE(page->mapping, mapping);
}

void ferrofs_page_disassociate(unsigned long pfn, struct address_space *mapping)
{
	struct page *page = pfn_to_page(pfn);

	if (READ_ONCE(page->mapping) == mapping) {
		WRITE_ONCE(page->mapping, NULL);
		WRITE_ONCE(page->index, 0);
	}
}

/*
 * Wait until no one but the pagemap holds the page (gup pins and
 * references gone; __put_devmap_managed_folio_refs wakes us at 1). @drop,
 * held for write, is released while sleeping, as ext4_break_layouts drops
 * the invalidate lock: the pin holder may need to fault. Interruptible:
 * returns -ERESTARTSYS on a signal, with @drop held again.
 */
int ferrofs_wait_page_idle(unsigned long pfn, struct rw_semaphore *drop)
{
	struct page *page = pfn_to_page(pfn);

	return ___wait_var_event(&page->_refcount, page_ref_count(page) == 1,
				 TASK_INTERRUPTIBLE, 0, 0,
				 up_write(drop); schedule(); down_write(drop));
}

/*
 * Eviction: no mapping is left and nothing is dropped; bounded, since a
 * reference can be held for as long as a pipe keeps a vmspliced page.
 * Returns whether the page is idle.
 */
int ferrofs_wait_page_idle_final(unsigned long pfn, unsigned int msecs)
{
	struct page *page = pfn_to_page(pfn);

	return wait_var_event_timeout(&page->_refcount, page_ref_count(page) == 1,
				      msecs_to_jiffies(msecs)) > 0 ||
	       page_ref_count(page) == 1;
}

bool ferrofs_dirty_folio(struct address_space *mapping, struct folio *folio);

bool ferrofs_dirty_folio(struct address_space *mapping, struct folio *folio)
{
	return noop_dirty_folio(mapping, folio);
}

#include <linux/fileattr.h>

/*
 * chattr/lsattr (FS_IOC_GETFLAGS/SETFLAGS) through ->fileattr_get/set.
 * ferrofs keeps FS_IMMUTABLE_FL and FS_APPEND_FL; in the VFS inode they
 * are S_IMMUTABLE and S_APPEND, which the VFS enforces.
 */
#define FERROFS_FL_USER (FS_IMMUTABLE_FL | FS_APPEND_FL)

unsigned int ferrofs_inode_fs_flags(struct inode *inode)
{
	unsigned int f = 0, i = READ_ONCE(inode->i_flags);

	if (i & S_IMMUTABLE)
		f |= FS_IMMUTABLE_FL;
	if (i & S_APPEND)
		f |= FS_APPEND_FL;
	return f;
}

void ferrofs_fileattr_fill(struct fileattr *fa, unsigned int flags)
{
	fileattr_fill_flags(fa, flags);
}

/* The FS_*_FL flags to set, or -EOPNOTSUPP for anything ferrofs lacks. */
long ferrofs_fileattr_flags(const struct fileattr *fa)
{
	if (fileattr_has_fsx(fa))
		return -EOPNOTSUPP;
	if (fa->flags & ~FERROFS_FL_USER)
		return -EOPNOTSUPP;
	return fa->flags;
}

void ferrofs_inode_set_fs_flags(struct inode *inode, unsigned int flags)
{
	unsigned int s = 0;

	if (flags & FS_IMMUTABLE_FL)
		s |= S_IMMUTABLE;
	if (flags & FS_APPEND_FL)
		s |= S_APPEND;
	inode_set_flags(inode, s, S_IMMUTABLE | S_APPEND);
}

/*
 * Extended attribute handlers, one per namespace; .flags is the namespace's
 * on-media index (format.rs: XATTR_USER, XATTR_TRUSTED, XATTR_SECURITY).
 * They forward to Rust (vfs.rs); bindgen sees struct xattr_handler as
 * opaque, so the tables live here.
 */
static int ferrofs_xattr_get(const struct xattr_handler *h, struct dentry *dentry,
			     struct inode *inode, const char *name, void *buf, size_t size)
{
	return ferrofs_xattr_get_rs(h->flags, inode, name, buf, size);
}

static int ferrofs_xattr_set(const struct xattr_handler *h, struct mnt_idmap *idmap,
			     struct dentry *dentry, struct inode *inode, const char *name,
			     const void *value, size_t size, int flags)
{
	return ferrofs_xattr_set_rs(h->flags, inode, name, value, size, flags);
}

static const struct xattr_handler ferrofs_xattr_user = {
	.prefix = XATTR_USER_PREFIX, .flags = 1,
	.get = ferrofs_xattr_get, .set = ferrofs_xattr_set,
};
static const struct xattr_handler ferrofs_xattr_trusted = {
	.prefix = XATTR_TRUSTED_PREFIX, .flags = 2,
	.get = ferrofs_xattr_get, .set = ferrofs_xattr_set,
};
static const struct xattr_handler ferrofs_xattr_security = {
	.prefix = XATTR_SECURITY_PREFIX, .flags = 3,
	.get = ferrofs_xattr_get, .set = ferrofs_xattr_set,
};
static const struct xattr_handler * const ferrofs_xattr_table[] = {
	&ferrofs_xattr_user, &ferrofs_xattr_trusted, &ferrofs_xattr_security, NULL,
};

const struct xattr_handler **ferrofs_xattr_handlers(void)
{
	return (const struct xattr_handler **)ferrofs_xattr_table;
}

/* POSIX ACLs: the xattr form of the VFS (posix_acl_xattr_header and
 * entries, ids in the initial namespace) is what ferrofs stores. */
static_assert(SB_POSIXACL == 1ul << 16);
static_assert(ACL_TYPE_ACCESS == 0x8000 && ACL_TYPE_DEFAULT == 0x4000);

/* 0 and *out (NULL for an empty value), or -errno. */
int ferrofs_acl_from_xattr(const void *value, size_t size, struct posix_acl **out)
{
	struct posix_acl *acl = posix_acl_from_xattr(&init_user_ns, value, size);

	if (IS_ERR(acl))
		return PTR_ERR(acl);
	*out = acl;
	return 0;
}

long ferrofs_acl_xattr_size(const struct posix_acl *acl)
{
	return posix_acl_xattr_size(acl->a_count);
}

/* Bytes written, or -errno (ERANGE: @size too small). */
int ferrofs_acl_to_xattr(const struct posix_acl *acl, void *buf, size_t size)
{
	return posix_acl_to_xattr(&init_user_ns, acl, buf, size);
}

void ferrofs_acl_release(struct posix_acl *acl)
{
	posix_acl_release(acl);
}

int ferrofs_acl_create(struct inode *dir, umode_t *mode, struct posix_acl **def,
		       struct posix_acl **acl)
{
	return posix_acl_create(dir, mode, def, acl);
}

int ferrofs_acl_chmod(struct mnt_idmap *idmap, struct dentry *dentry, umode_t mode)
{
	return posix_acl_chmod(idmap, dentry, mode);
}

void ferrofs_set_cached_acl(struct inode *inode, int type, struct posix_acl *acl)
{
	set_cached_acl(inode, type, acl);
}

int ferrofs_acl_update_mode(struct mnt_idmap *idmap, struct inode *inode, umode_t *mode,
			    struct posix_acl **acl)
{
	return posix_acl_update_mode(idmap, inode, mode, acl);
}

/*
 * The mount API (fs_context). The parameter table is macros, so it lives
 * here; what each parameter means, and every check, is in Rust
 * (ferrofs_param_rs, ferrofs_fill_super_rs, ferrofs_reconfigure_rs in
 * src/sys/vfs.rs). fs_private is the trace size in MiB (0: no trace).
 */
#include <linux/fs_context.h>
#include <linux/fs_parser.h>
#include <linux/slab.h>

enum { FERROFS_OPT_DAX, FERROFS_OPT_DAX_MODE, FERROFS_OPT_TRACE };
static_assert(SB_RDONLY == 1);
static_assert(FERROFS_OPT_DAX == 0 && FERROFS_OPT_DAX_MODE == 1 && FERROFS_OPT_TRACE == 2);

static const struct constant_table ferrofs_dax_modes[] = {
	{ "always", 0 },
	{ "never", 1 },
	{ "inode", 2 },
	{}
};

static const struct fs_parameter_spec ferrofs_params[] = {
	fsparam_flag("dax", FERROFS_OPT_DAX),
	fsparam_enum("dax", FERROFS_OPT_DAX_MODE, ferrofs_dax_modes),
	fsparam_u32("trace", FERROFS_OPT_TRACE),
	{}
};

int ferrofs_param_rs(u32 *trace_mib, int opt, u32 value);
int ferrofs_fill_super_rs(struct super_block *sb, u32 trace_mib);
int ferrofs_reconfigure_rs(struct super_block *sb, u32 trace_mib, unsigned int sb_flags,
			   unsigned int sb_flags_mask);
void ferrofs_fs_type_setup(struct file_system_type *t);

static int ferrofs_parse_param(struct fs_context *fc, struct fs_parameter *param)
{
	struct fs_parse_result result = {};
	int opt = fs_parse(fc, ferrofs_params, param, &result);

	if (opt < 0)
		return opt;
	return ferrofs_param_rs(fc->fs_private, opt, result.uint_32);
}

static int ferrofs_fill_super_fc(struct super_block *sb, struct fs_context *fc)
{
	return ferrofs_fill_super_rs(sb, *(u32 *)fc->fs_private);
}

static int ferrofs_get_tree(struct fs_context *fc)
{
	return get_tree_bdev(fc, ferrofs_fill_super_fc);
}

static int ferrofs_reconfigure(struct fs_context *fc)
{
	struct super_block *sb = fc->root->d_sb;

	/* As ext4 does: what is dirty now is durable before the flags change. */
	sync_filesystem(sb);
	return ferrofs_reconfigure_rs(sb, *(u32 *)fc->fs_private, fc->sb_flags,
				      fc->sb_flags_mask);
}

static void ferrofs_free_fc(struct fs_context *fc)
{
	kfree(fc->fs_private);
}

static const struct fs_context_operations ferrofs_fc_ops = {
	.parse_param = ferrofs_parse_param,
	.get_tree = ferrofs_get_tree,
	.reconfigure = ferrofs_reconfigure,
	.free = ferrofs_free_fc,
};

static int ferrofs_init_fs_context(struct fs_context *fc)
{
	fc->fs_private = kzalloc(sizeof(u32), GFP_KERNEL);
	if (!fc->fs_private)
		return -ENOMEM;
	fc->ops = &ferrofs_fc_ops;
	return 0;
}

void ferrofs_fs_type_setup(struct file_system_type *t)
{
	t->init_fs_context = ferrofs_init_fs_context;
	t->parameters = ferrofs_params;
}
