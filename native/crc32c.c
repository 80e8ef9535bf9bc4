/*
 * CRC32C (Castagnoli, the checksum of every journal record, frame and state file),
 * with the SSE4.2 crc32 instruction in three streams at once.
 *
 *   crc32c(buf, initial = 0) -> number   (as @node-rs/crc32's crc32c: the finished CRC;
 *                                          pass one back as `initial` to continue it)
 *   crc32cHardware()         -> boolean  (false: this CPU lacks SSE4.2, and the caller
 *                                          keeps @node-rs/crc32, src/checksum/crc32c.ts)
 *
 * One crc32 instruction takes 8 bytes but has a latency of three cycles, so a single
 * chain of them runs at a third of what the core can issue (about 5.8 GB/s here, which
 * is what @node-rs/crc32 reaches). Three chains over three adjacent blocks keep it busy;
 * their CRCs are joined by "appending zeros" to the earlier ones: the CRC register's
 * update is linear over GF(2), so crc(A || B) = Z(|B|)(crc(A)) ^ crc0(B), where crc0
 * starts from a zero register and Z(n) is the update by n zero bytes, a 32x32 bit matrix
 * applied here through four tables of 256 entries, made once at load (by
 * running the instruction over zeros for each of the 32 single-bit registers).
 */
#include <node_api.h>
#include <stdint.h>
#include <string.h>
#include <stdbool.h>
#include <pthread.h>
#include "crc32c.h"

#define POLY 0x82f63b78u /* reflected */
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

static uint32_t byte_table[256];
static uint32_t long_join[4][256];
static uint32_t short_join[4][256];
static bool hardware;
/* The tables are made once, whichever thread (the event loop, a worker) asks first. */
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* The register updated by one byte, without the instruction. */
static uint32_t soft_byte(uint32_t crc, uint8_t b) {
  return (crc >> 8) ^ byte_table[(crc ^ b) & 0xff];
}

static uint32_t soft_update(uint32_t crc, const uint8_t *p, size_t n) {
  while (n--) crc = soft_byte(crc, *p++);
  return crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t hw_zeros(uint32_t crc, size_t n) {
  uint64_t c = crc;
  for (size_t i = 0; i < n / 8; i++) c = _mm_crc32_u64(c, 0);
  return (uint32_t)c;
}

static uint32_t join(uint32_t table[4][256], uint32_t crc) {
  return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^ table[3][crc >> 24];
}

static inline uint64_t load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

/* Three chains over blocks of `block` bytes while three fit, joined after each round. */
__attribute__((target("sse4.2"))) static uint64_t hw_rounds(uint64_t c0, const uint8_t **pp, size_t *np, size_t block,
  uint32_t table[4][256]) {
  const uint8_t *p = *pp;
  size_t n = *np;
  while (n >= 3 * block) {
    uint64_t c1 = 0, c2 = 0;
    const uint8_t *end = p + block;
    do {
      c0 = _mm_crc32_u64(c0, load64(p));
      c1 = _mm_crc32_u64(c1, load64(p + block));
      c2 = _mm_crc32_u64(c2, load64(p + 2 * block));
      p += 8;
    } while (p < end);
    c0 = join(table, (uint32_t)c0) ^ (uint32_t)c1;
    c0 = join(table, (uint32_t)c0) ^ (uint32_t)c2;
    p += 2 * block;
    n -= 3 * block;
  }
  *pp = p;
  *np = n;
  return c0;
}

__attribute__((target("sse4.2"))) static uint32_t hw_update(uint32_t crc, const uint8_t *p, size_t n) {
  while (n > 0 && ((uintptr_t)p & 7) != 0) {
    crc = _mm_crc32_u8(crc, *p++);
    n--;
  }
  uint64_t c = crc;
  c = hw_rounds(c, &p, &n, LONG_BLOCK, long_join);
  c = hw_rounds(c, &p, &n, SHORT_BLOCK, short_join);
  while (n >= 8) {
    c = _mm_crc32_u64(c, load64(p));
    p += 8;
    n -= 8;
  }
  uint32_t c32 = (uint32_t)c;
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}

/* The join tables for blocks of `n` bytes: entry k, b is Z(n) of the register b << 8k. */
static void make_join(uint32_t table[4][256], size_t n) {
  uint32_t bit[32];
  for (int i = 0; i < 32; i++) bit[i] = hw_zeros(1u << i, n);
  for (int k = 0; k < 4; k++) {
    for (int b = 0; b < 256; b++) {
      uint32_t v = 0;
      for (int i = 0; i < 8; i++) if (b & (1 << i)) v ^= bit[8 * k + i];
      table[k][b] = v;
    }
  }
}
#endif

static void make_tables(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ ((c & 1) ? POLY : 0);
    byte_table[i] = c;
  }
#if defined(__x86_64__)
  __builtin_cpu_init();
  hardware = __builtin_cpu_supports("sse4.2");
  if (hardware) {
    make_join(long_join, LONG_BLOCK);
    make_join(short_join, SHORT_BLOCK);
    /* The joined streams (both tables) must agree with one chain, or the instruction is not what we think. */
    static uint8_t probe[3 * LONG_BLOCK + 3 * SHORT_BLOCK + 13];
    for (size_t i = 0; i < sizeof probe; i++) probe[i] = (uint8_t)(i * 131 + 7);
    if (hw_update(0xffffffffu, probe, sizeof probe) != soft_update(0xffffffffu, probe, sizeof probe)) hardware = false;
  }
#endif
}

static void init_once(void) {
  pthread_once(&once, make_tables);
}

uint32_t offsite_crc32c(uint32_t initial, const uint8_t *p, size_t n) {
  init_once();
  uint32_t crc = ~initial;
#if defined(__x86_64__)
  if (hardware) return ~hw_update(crc, p, n);
#endif
  return ~soft_update(crc, p, n);
}

napi_value offsite_js_crc32c(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  size_t len = 0;
  bool isbuf = false;
  /* (Node.js says any typed array or DataView is a buffer: its bytes are summed.) */
  if (argc >= 1) napi_is_buffer(env, argv[0], &isbuf);
  if (!isbuf || napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "crc32c: a Buffer or Uint8Array");
    return NULL;
  }
  uint32_t initial = 0;
  if (argc >= 2) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t == napi_number) {
      napi_get_value_uint32(env, argv[1], &initial);
    } else if (t != napi_undefined) {
      napi_throw_type_error(env, "EINVAL", "crc32c: the initial CRC, a number");
      return NULL;
    }
  }
  napi_value out;
  napi_create_uint32(env, offsite_crc32c(initial, data, len), &out);
  return out;
}

napi_value offsite_js_crc32c_hardware(napi_env env, napi_callback_info info) {
  init_once();
  napi_value out;
  napi_get_boolean(env, hardware, &out);
  return out;
}
