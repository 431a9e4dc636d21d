/*
 * bitat_fuzz: the loader against damaged blobs. Every truncation (as is, and with the header's size
 * and checksum patched so the structural checks run), then random byte flips (as is, and with the
 * checksum patched); whatever loads is also run once. Every failure must be a status with a
 * one-line message. Built with AddressSanitizer/UBSan in the tests, so an out-of-bounds access
 * fails loudly.
 *
 *   bitat_fuzz MODEL.blob [FLIPS] [SEED]   prints "fuzz truncations=... flips=... loaded=... ok", exit 0
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitat_engine.h"

static uint64_t state = 88172645463325252ull;

static uint32_t next(void) {
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return (uint32_t)((state * 2685821657736338717ull) >> 32);
}

static uint32_t crc32_of(const uint8_t *data, size_t size) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int b = 0; b < 8; ++b) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static void restamp(uint8_t *blob, size_t size) {
  if (size >= 16) {
    put32(blob + 8, (uint32_t)size);
    put32(blob + 12, crc32_of(blob + 16, size - 16));
  }
}

static uint8_t arena[1 << 24];
static long loaded = 0;

/* Load (and if it loads, run) one blob; exit on a contract violation. */
static void attempt(const uint8_t *blob, size_t size, const char *what, size_t where) {
  be_engine engine;
  be_status status = be_init(&engine, blob, size, arena, sizeof arena);
  const char *message = be_message(&engine);
  if (status != BE_OK) {
    if (message[0] == '\0' || strchr(message, '\n') != NULL) {
      fprintf(stderr, "fuzz: %s at %lu: status %d without a one-line message\n", what, (unsigned long)where, (int)status);
      exit(1);
    }
    return;
  }
  ++loaded;
  be_tensor_info in, out;
  be_input_info(&engine, &in);
  be_output_info(&engine, &out);
  uint8_t *x = malloc(in.bytes), *y = malloc(out.bytes);
  if (x == NULL || y == NULL) exit(1);
  for (size_t i = 0; i < in.bytes; ++i) x[i] = (uint8_t)next();
  if (be_invoke(&engine, x, in.bytes, y, out.bytes) != BE_OK) {
    fprintf(stderr, "fuzz: %s at %lu: loaded but failed to run: %s\n", what, (unsigned long)where, be_message(&engine));
    exit(1);
  }
  if (be_invoke(&engine, x, in.bytes - 1, y, out.bytes) != BE_ERR_ARGUMENT) {
    fprintf(stderr, "fuzz: a wrong input size was accepted\n");
    exit(1);
  }
  free(x);
  free(y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bitat_fuzz MODEL.blob [FLIPS] [SEED]\n");
    return 2;
  }
  const long flips = argc > 2 ? atol(argv[2]) : 2000;
  if (argc > 3) state = strtoull(argv[3], NULL, 10) * 2654435761u + 1u;
  FILE *f = fopen(argv[1], "rb");
  if (f == NULL) return 1;
  static uint8_t original[1 << 22];
  const size_t size = fread(original, 1, sizeof original, f);
  fclose(f);
  uint8_t *work = aligned_alloc(16, sizeof original);
  if (work == NULL) return 1;

  memcpy(work, original, size);
  attempt(work, size, "original", 0);
  if (loaded != 1) {
    fprintf(stderr, "fuzz: the original blob does not load\n");
    return 1;
  }
  for (size_t cut = 0; cut < size; ++cut) {
    memcpy(work, original, cut);
    attempt(work, cut, "truncation", cut);
    restamp(work, cut);
    attempt(work, cut, "restamped truncation", cut);
  }
  for (long i = 0; i < flips; ++i) {
    memcpy(work, original, size);
    const int n = 1 + (int)(next() % 4u);
    for (int k = 0; k < n; ++k) work[next() % size] ^= (uint8_t)(1u << (next() % 8u));
    attempt(work, size, "flip", (size_t)i);
    restamp(work, size);
    attempt(work, size, "restamped flip", (size_t)i);
  }
  printf("fuzz truncations=%lu flips=%ld loaded=%ld ok\n", (unsigned long)size, flips, loaded);
  free(work);
  return 0;
}
