// PMDK client for tests/26-pmdk.sh: libpmem and libpmemobj on a DAX file
// system. One binary, subcommands; any failed check prints "FAIL: ..." and
// exits 1 (a usage error exits 2). Built on the host by scripts/build.sh
// into tools/target/release/pmdk-client.
//
//   pmdk-client map FILE MIB         create FILE (must not exist) with
//                                    pmem_map_file; is_pmem must be 1 and the
//                                    mapping MAP_SYNC ("sf" in smaps); write
//                                    the pattern, pmem_persist it
//   pmdk-client verify-map FILE MIB  map it again (is_pmem 1), check the
//                                    pattern through the mapping and pread
//   pmdk-client obj-create POOL N    pmemobj_create a 32 MiB pool, N objects
//                                    allocated and then updated in
//                                    transactions, one aborted transaction
//   pmdk-client obj-verify POOL N    pmemobj_open (runs the bad-block
//                                    check), verify every object and that
//                                    the aborted transaction left no trace
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpmem.h>
#include <libpmemobj.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *cmd = "pmdk-client";

static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "FAIL: %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static size_t parse_size(const char *s, const char *what)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v == 0)
		fail("bad %s '%s'", what, s);
	return v;
}

/* ---- libpmem ---------------------------------------------------------- */

#define MAP_SEED 0x6665727266735f31ULL /* "ferrofs1" */

static uint64_t word(size_t k) { return mix(k ^ MAP_SEED); }

// The VmFlags line of the smaps entry that starts at addr: does it have
// "sf" (VM_SYNC, a MAP_SYNC mapping)?
static int mapping_is_sync(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int in = 0, sf = -1;
	if (!f)
		fail("open /proc/self/smaps: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)addr == lo;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0) {
			sf = strstr(line, " sf") != NULL;
			break;
		}
	}
	fclose(f);
	if (sf < 0)
		fail("no smaps entry with VmFlags at %p", addr);
	return sf;
}

static char *map_checked(const char *path, size_t len, int flags, size_t want)
{
	size_t mapped = 0;
	int is_pmem = -1;
	char *p = pmem_map_file(path, len, flags, 0644, &mapped, &is_pmem);
	if (!p)
		fail("pmem_map_file(%s): %s", path, pmem_errormsg());
	int sf = mapping_is_sync(p);
	printf("%s: pmem_map_file %s: mapped_len=%zu is_pmem=%d MAP_SYNC(sf)=%d\n", cmd, path,
	       mapped, is_pmem, sf);
	if (mapped != want)
		fail("mapped_len %zu, expected %zu", mapped, want);
	if (is_pmem != 1)
		fail("is_pmem=%d for %s (libpmem could not map it with MAP_SYNC: "
		     "pmem_persist would fall back to msync)", is_pmem, path);
	if (!sf)
		fail("is_pmem=1 but the mapping has no VmFlags 'sf' (not MAP_SYNC)");
	return p;
}

// First half: plain stores + pmem_persist. Second half: pmem_memcpy_persist
// (non-temporal stores) from a buffer, one MiB at a time.
static int cmd_map(const char *path, size_t mib)
{
	size_t len = mib << 20, n = len / 8, half = n / 2;
	uint64_t *p = (uint64_t *)map_checked(path, len, PMEM_FILE_CREATE | PMEM_FILE_EXCL, len);
	for (size_t k = 0; k < half; k++)
		p[k] = word(k);
	pmem_persist(p, half * 8);
	static uint64_t buf[(1 << 20) / 8];
	for (size_t k = half; k < n; k += sizeof(buf) / 8) {
		size_t m = n - k < sizeof(buf) / 8 ? n - k : sizeof(buf) / 8;
		for (size_t j = 0; j < m; j++)
			buf[j] = word(k + j);
		pmem_memcpy_persist(p + k, buf, m * 8);
	}
	for (size_t k = 0; k < n; k++)
		if (p[k] != word(k))
			fail("word %zu reads back %#" PRIx64 " right after the write", k, p[k]);
	if (pmem_unmap(p, len))
		fail("pmem_unmap: %s", strerror(errno));
	printf("%s: wrote and persisted %zu MiB\n", cmd, mib);
	return 0;
}

static int cmd_verify_map(const char *path, size_t mib)
{
	size_t len = mib << 20, n = len / 8;
	struct stat st;
	if (stat(path, &st))
		fail("stat %s: %s", path, strerror(errno));
	if ((size_t)st.st_size != len)
		fail("%s has size %lld, expected %zu", path, (long long)st.st_size, len);
	uint64_t *p = (uint64_t *)map_checked(path, 0, 0, len);
	size_t bad = 0;
	for (size_t k = 0; k < n; k++)
		if (p[k] != word(k) && bad++ < 5)
			fprintf(stderr, "%s: mapping: word %zu (byte %zu) is %#" PRIx64 ", expected %#" PRIx64 "\n",
				cmd, k, k * 8, p[k], word(k));
	if (bad)
		fail("%zu of %zu words differ through the mapping", bad, n);
	pmem_unmap(p, len);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	static uint64_t buf[(1 << 20) / 8];
	for (size_t k = 0; k < n; k += sizeof(buf) / 8) {
		ssize_t r = pread(fd, buf, sizeof(buf), k * 8);
		if (r != (ssize_t)sizeof(buf))
			fail("pread at %zu: %zd (%s)", k * 8, r, strerror(errno));
		for (size_t j = 0; j < sizeof(buf) / 8; j++)
			if (buf[j] != word(k + j))
				fail("pread: word %zu is %#" PRIx64 ", expected %#" PRIx64, k + j, buf[j],
				     word(k + j));
	}
	close(fd);
	printf("%s: %zu MiB match (mapping and pread)\n", cmd, mib);
	return 0;
}

/* ---- libpmemobj ------------------------------------------------------- */

#define LAYOUT "ferrofs-pmdk-test"
#define POOL_SIZE (32u << 20)
#define MAX_OBJS 10000
#define TX_BATCH 10
#define ROOT_MAGIC 0x66657272726f6f74ULL
#define OBJ_TYPE 7
#define ABORT_TYPE 8

struct item {
	uint64_t index;
	uint64_t gen;     // 1 after the allocation, 2 after the update
	uint64_t value;   // item_value(index, gen)
	uint64_t nwords;  // payload words
	uint64_t csum;    // item_csum() of everything above and the payload
	uint64_t payload[];
};

struct root {
	uint64_t magic;
	uint64_t count;
	uint64_t updated; // items updated to gen 2
	uint64_t aborted_marker; // an aborted transaction set it to 1
	PMEMoid objs[MAX_OBJS];
};

static uint64_t item_value(uint64_t i, uint64_t gen) { return mix(i * 31 + gen); }
static uint64_t item_words(uint64_t i) { return 4 + i % 61; } // 72..560 bytes

static uint64_t item_csum(const struct item *it)
{
	uint64_t h = mix(it->index) ^ mix(it->gen + 101) ^ mix(it->value + 202) ^ mix(it->nwords + 303);
	for (uint64_t k = 0; k < it->nwords; k++)
		h = mix(h ^ it->payload[k]);
	return h;
}

static void item_fill(struct item *it, uint64_t i, uint64_t gen)
{
	it->index = i;
	it->gen = gen;
	it->value = item_value(i, gen);
	it->nwords = item_words(i);
	for (uint64_t k = 0; k < it->nwords; k++)
		it->payload[k] = mix((i << 20) ^ (k << 4) ^ gen);
	it->csum = item_csum(it);
}

static size_t item_size(uint64_t i) { return sizeof(struct item) + item_words(i) * 8; }

static size_t check_n(const char *s)
{
	size_t n = parse_size(s, "object count");
	if (n < 3 || n > MAX_OBJS)
		fail("object count %zu not in 3..%d", n, MAX_OBJS);
	return n;
}

// Checks the pool's contents; the same after create and after each reopen.
static void verify_pool(PMEMobjpool *pop, size_t n)
{
	PMEMoid roid = pmemobj_root(pop, 0);
	if (OID_IS_NULL(roid) || pmemobj_root_size(pop) != sizeof(struct root))
		fail("root object missing or of size %zu (expected %zu)", pmemobj_root_size(pop),
		     sizeof(struct root));
	struct root *r = pmemobj_direct(roid);
	if (r->magic != ROOT_MAGIC)
		fail("root magic %#" PRIx64, r->magic);
	if (r->count != n || r->updated != n)
		fail("root count %" PRIu64 " updated %" PRIu64 ", expected %zu", r->count, r->updated, n);
	if (r->aborted_marker != 0)
		fail("the aborted transaction's store to the root survived (marker %" PRIu64 ")",
		     r->aborted_marker);
	for (size_t i = 0; i < n; i++) {
		PMEMoid oid = r->objs[i];
		if (OID_IS_NULL(oid))
			fail("object %zu: null OID", i);
		if (pmemobj_type_num(oid) != OBJ_TYPE)
			fail("object %zu: type %" PRIu64, i, pmemobj_type_num(oid));
		if (pmemobj_alloc_usable_size(oid) < item_size(i))
			fail("object %zu: usable size %zu < %zu", i, pmemobj_alloc_usable_size(oid),
			     item_size(i));
		const struct item *it = pmemobj_direct(oid);
		if (it->index != i || it->gen != 2 || it->value != item_value(i, 2) ||
		    it->nwords != item_words(i))
			fail("object %zu: index %" PRIu64 " gen %" PRIu64 " value %#" PRIx64 " nwords %" PRIu64,
			     i, it->index, it->gen, it->value, it->nwords);
		if (it->csum != item_csum(it))
			fail("object %zu: checksum %#" PRIx64 ", computed %#" PRIx64, i, it->csum,
			     item_csum(it));
		for (uint64_t k = 0; k < it->nwords; k++)
			if (it->payload[k] != mix((i << 20) ^ (k << 4) ^ 2))
				fail("object %zu: payload word %" PRIu64, i, k);
	}
	// Every allocated object is one of the N: the aborted transaction's
	// allocation was rolled back and its free of object 2 undone.
	size_t seen = 0, other = 0;
	PMEMoid o;
	POBJ_FOREACH(pop, o) {
		if (pmemobj_type_num(o) == OBJ_TYPE)
			seen++;
		else
			other++;
	}
	if (seen != n || other != 0)
		fail("the heap holds %zu objects of the item type and %zu others, expected %zu and 0", seen,
		     other, n);
}

// One transaction: allocate items b..e-1 (generation 1), store their OIDs
// in the root and set its count to e.
static void tx_alloc_batch(PMEMobjpool *pop, PMEMoid roid, size_t b, size_t e)
{
	struct root *r = pmemobj_direct(roid);
	TX_BEGIN(pop) {
		pmemobj_tx_add_range(roid, offsetof(struct root, count), sizeof(r->count));
		pmemobj_tx_add_range(roid, offsetof(struct root, objs) + b * sizeof(PMEMoid),
				     (e - b) * sizeof(PMEMoid));
		for (size_t i = b; i < e; i++) {
			PMEMoid oid = pmemobj_tx_alloc(item_size(i), OBJ_TYPE);
			item_fill(pmemobj_direct(oid), i, 1);
			r->objs[i] = oid;
		}
		r->count = e;
	} TX_ONABORT {
		fail("allocation transaction %zu..%zu aborted: %s", b, e, pmemobj_errormsg());
	} TX_END
}

// One transaction: rewrite items b..e-1 as generation 2, root's updated = e.
static void tx_update_batch(PMEMobjpool *pop, PMEMoid roid, size_t b, size_t e)
{
	struct root *r = pmemobj_direct(roid);
	TX_BEGIN(pop) {
		pmemobj_tx_add_range(roid, offsetof(struct root, updated), sizeof(r->updated));
		for (size_t i = b; i < e; i++) {
			pmemobj_tx_add_range(r->objs[i], 0, item_size(i));
			item_fill(pmemobj_direct(r->objs[i]), i, 2);
		}
		r->updated = e;
	} TX_ONABORT {
		fail("update transaction %zu..%zu aborted: %s", b, e, pmemobj_errormsg());
	} TX_END
}

// A transaction that changes everything it can (root fields, an OID, an
// allocation, an object's contents, a free) and is aborted: all of it must
// be rolled back, in memory now and in the pool after a reopen.
static void tx_aborted(PMEMobjpool *pop, PMEMoid roid)
{
	struct root *r = pmemobj_direct(roid);
	PMEMoid keep0 = r->objs[0], keep2 = r->objs[2];
	uint64_t before_csum = ((struct item *)pmemobj_direct(r->objs[1]))->csum;
	volatile int aborted = 0, committed = 0;
	TX_BEGIN(pop) {
		pmemobj_tx_add_range(roid, 0, offsetof(struct root, objs) + 3 * sizeof(PMEMoid));
		r->count = 999999;
		r->aborted_marker = 1;
		PMEMoid extra = pmemobj_tx_alloc(4096, ABORT_TYPE);
		memset(pmemobj_direct(extra), 0xab, 4096);
		r->objs[0] = extra;
		pmemobj_tx_add_range(r->objs[1], 0, item_size(1));
		item_fill(pmemobj_direct(r->objs[1]), 1, 3);
		pmemobj_tx_free(r->objs[2]);
		r->objs[2] = OID_NULL;
		pmemobj_tx_abort(ECANCELED);
	} TX_ONCOMMIT {
		committed = 1;
	} TX_ONABORT {
		aborted = 1;
	} TX_END
	if (!aborted || committed)
		fail("pmemobj_tx_abort: aborted=%d committed=%d", aborted, committed);
	if (errno != ECANCELED)
		fail("errno after the aborted transaction is %d, expected ECANCELED", errno);
	if (!OID_EQUALS(r->objs[0], keep0) || !OID_EQUALS(r->objs[2], keep2) ||
	    ((struct item *)pmemobj_direct(r->objs[1]))->csum != before_csum)
		fail("the aborted transaction's changes to the OIDs or object 1 were not rolled back");
}

static int cmd_obj_create(const char *path, size_t n)
{
	PMEMobjpool *pop = pmemobj_create(path, LAYOUT, POOL_SIZE, 0600);
	if (!pop)
		fail("pmemobj_create(%s): %s", path, pmemobj_errormsg());
	PMEMoid roid = pmemobj_root(pop, sizeof(struct root));
	if (OID_IS_NULL(roid))
		fail("pmemobj_root: %s", pmemobj_errormsg());
	struct root *r = pmemobj_direct(roid);
	TX_BEGIN(pop) {
		pmemobj_tx_add_range(roid, 0, offsetof(struct root, objs));
		r->magic = ROOT_MAGIC;
	} TX_ONABORT {
		fail("root transaction aborted: %s", pmemobj_errormsg());
	} TX_END

	// Allocations, then updates to generation 2, TX_BATCH per transaction.
	size_t txs = 0;
	for (size_t b = 0; b < n; b += TX_BATCH, txs++)
		tx_alloc_batch(pop, roid, b, b + TX_BATCH < n ? b + TX_BATCH : n);
	for (size_t b = 0; b < n; b += TX_BATCH, txs++)
		tx_update_batch(pop, roid, b, b + TX_BATCH < n ? b + TX_BATCH : n);

	tx_aborted(pop, roid);
	verify_pool(pop, n);
	pmemobj_close(pop);
	printf("%s: created %s: %zu objects in %zu transactions, one aborted transaction rolled back\n",
	       cmd, path, n, txs);
	return 0;
}

static int cmd_obj_verify(const char *path, size_t n)
{
	PMEMobjpool *pop = pmemobj_open(path, LAYOUT);
	if (!pop)
		fail("pmemobj_open(%s): %s", path, pmemobj_errormsg());
	verify_pool(pop, n);
	pmemobj_close(pop);
	int c = pmemobj_check(path, LAYOUT);
	if (c != 1)
		fail("pmemobj_check(%s) = %d: %s", path, c, pmemobj_errormsg());
	printf("%s: %s: reopened, %zu objects verified, pmemobj_check consistent\n", cmd, path, n);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pmdk-client map FILE MIB | verify-map FILE MIB |\n"
			"       obj-create POOL N | obj-verify POOL N\n");
	exit(2);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 4)
		usage();
	cmd = argv[1];
	if (!strcmp(argv[1], "map"))
		return cmd_map(argv[2], parse_size(argv[3], "MiB"));
	if (!strcmp(argv[1], "verify-map"))
		return cmd_verify_map(argv[2], parse_size(argv[3], "MiB"));
	if (!strcmp(argv[1], "obj-create"))
		return cmd_obj_create(argv[2], check_n(argv[3]));
	if (!strcmp(argv[1], "obj-verify"))
		return cmd_obj_verify(argv[2], check_n(argv[3]));
	usage();
}
