/*
 * Picks the XXH3 variant for record checksums once, on first use, and
 * calls it through a pointer: one predictable branch and an indirect call
 * per checksum. (A GNU ifunc would spare the branch, but its resolver runs
 * before the sanitizers' runtime is up, which crashes the ASan build.)
 */
#include "hashing/sum.h"

typedef uint64_t (*sum_fn)(const void *, size_t);

static sum_fn chosen;

static sum_fn resolve_sum(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		return embkv_sum_avx512;
	if (__builtin_cpu_supports("avx2"))
		return embkv_sum_avx2;
	return embkv_sum_sse2;
}

uint64_t embkv_sum(const void *p, size_t n)
{
	sum_fn f = __atomic_load_n(&chosen, __ATOMIC_RELAXED);

	if (__builtin_expect(f == NULL, 0)) {
		f = resolve_sum(); /* racing threads pick the same one */
		__atomic_store_n(&chosen, f, __ATOMIC_RELAXED);
	}
	return f(p, n);
}

const char *embkv_sum_impl(void)
{
	sum_fn f = resolve_sum();

	return f == embkv_sum_avx512 ? "avx512"
	       : f == embkv_sum_avx2 ? "avx2" : "sse2";
}
