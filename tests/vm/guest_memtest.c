/* The guest's memory test (static, runs as the initramfs's /init helper): fills most of
 * the guest's RAM with a pattern derived from each word's offset and a seed, reads it
 * back in order and at random, rewrites half and checks again, and prints one marker
 * line on the serial console: "EMP-GUEST-MEMTEST OK <MiB>" or "EMP-GUEST-MEMTEST FAIL ...".
 *   guest_memtest MiB [corrupt]   ("corrupt": the negative control; flips one stored word
 *                                  the way a lost or stale page would and must FAIL) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t x) {
  x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; return x ^ (x >> 33);
}

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 256;
  int corrupt = argc > 2 && strcmp(argv[2], "corrupt") == 0;
  size_t words = mib * (1u << 20) / 8;
  uint64_t* p = calloc(words, 8);
  if (!p) { printf("EMP-GUEST-MEMTEST FAIL cannot allocate %zu MiB\n", mib); return 1; }
  for (size_t i = 0; i < words; ++i) p[i] = mix(i ^ 0x1111);
  if (corrupt) p[words / 3] ^= 1;  /* what a lost write would look like */
  size_t bad = 0;
  for (size_t i = 0; i < words; ++i) bad += p[i] != mix(i ^ 0x1111);
  uint64_t r = 88172645463325252ULL;
  for (size_t n = 0; n < 100000; ++n) {  /* random reads: enough to hit evicted blocks often */
    r ^= r << 13; r ^= r >> 7; r ^= r << 17;
    size_t i = r % words;
    bad += p[i] != mix(i ^ 0x1111);
  }
  for (size_t i = 0; i < words; i += 2) p[i] = mix(i ^ 0x2222);
  for (size_t i = 0; i < words; ++i) bad += p[i] != mix(i ^ ((i & 1) ? 0x1111 : 0x2222));
  if (bad) { printf("EMP-GUEST-MEMTEST FAIL %zu bad words in %zu MiB\n", bad, mib); return 1; }
  printf("EMP-GUEST-MEMTEST OK %zu\n", mib);
  return 0;
}
