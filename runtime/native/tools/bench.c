/*
 * bitat_bench: run a model.blob on this machine (or under qemu-user), for accuracy, latency and
 * instruction counts.
 *
 *   bitat_bench MODEL.blob [--images FILE] [--logits FILE] [--profile N] [--warmup W] [--runs R]
 *               [--windows K]
 *
 * --images   raw input tensors back to back (the model's input type, e.g. float32 NHWC)
 * --logits   write the outputs of every image back to back (raw)
 * --profile  for each of the first N inferences call bitat_marker() before the inference, before every
 *            op, after the last op and after the inference: ops + 3 hits (a QEMU plugin counts the
 *            instructions between hits; the function's address is in the ELF symbol table)
 * --runs     time R inferences per window (after W warm-up runs) on the first image, K windows
 *
 * Output (stdout), one record per line of key=value fields:
 *   engine kernel=... blob_format=...
 *   model input=<type>[dims] output=<type>[dims] arena=<bytes> ops=<n>
 *   op index=<i> name=<name> output=<type>[dims] macs=<n> binary_macs=<n>
 *   eval images=<n>
 *   window index=<k> runs=<r> us=<t1>,<t2>,... (each timed run in microseconds, in order)
 * Progress goes to stderr. Errors: one line on stderr, exit status 1 (2 for bad usage).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitat_engine.h"

__attribute__((noinline)) void bitat_marker(void);
__attribute__((noinline)) void bitat_marker(void) { __asm__ volatile("" ::: "memory"); }

static void marker_hook(void *context, int op_index) {
  (void)context;
  (void)op_index;
  bitat_marker();
}

static int die(const char *what, const char *detail) {
  fprintf(stderr, "bitat_bench: %s%s%s\n", what, detail[0] ? ": " : "", detail);
  return 1;
}

/* The whole file in a 16-byte aligned buffer (NULL on error). */
static void *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  void *data = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long end = ftell(f);
    if (end >= 0 && fseek(f, 0, SEEK_SET) == 0) {
      *size = (size_t)end;
      data = aligned_alloc(16, ((size_t)end + 16) / 16 * 16);
      if (data != NULL && fread(data, 1, *size, f) != *size) {
        free(data);
        data = NULL;
      }
    }
  }
  fclose(f);
  return data;
}

static const char *dtype_name(be_dtype t) { return t == BE_FLOAT32 ? "float32" : t == BE_INT32 ? "int32" : "int8"; }

static void print_tensor(const char *key, const be_tensor_info *t) {
  printf(" %s=%s[", key, dtype_name(t->dtype));
  for (int i = 0; i < t->rank; ++i) printf(i ? ",%d" : "%d", t->dims[i]);
  printf("]");
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int parse_count(const char *text, long *value) {
  char *end;
  *value = strtol(text, &end, 10);
  return *end == '\0' && *value >= 0;
}

int main(int argc, char **argv) {
  const char *blob_path = NULL, *images_path = NULL, *logits_path = NULL;
  long profile = 0, warmup = 0, runs = 0, windows = 1;
  for (int i = 1; i < argc; ++i) {
    long *number = NULL;
    const char **text = NULL;
    if (strcmp(argv[i], "--images") == 0) text = &images_path;
    else if (strcmp(argv[i], "--logits") == 0) text = &logits_path;
    else if (strcmp(argv[i], "--profile") == 0) number = &profile;
    else if (strcmp(argv[i], "--warmup") == 0) number = &warmup;
    else if (strcmp(argv[i], "--runs") == 0) number = &runs;
    else if (strcmp(argv[i], "--windows") == 0) number = &windows;
    else if (argv[i][0] != '-' && blob_path == NULL) {
      blob_path = argv[i];
      continue;
    } else {
      fprintf(stderr, "bitat_bench: unknown argument %s\n", argv[i]);
      return 2;
    }
    if (i + 1 >= argc || (number != NULL && !parse_count(argv[i + 1], number))) {
      fprintf(stderr, "bitat_bench: %s needs a %s\n", argv[i], number != NULL ? "non-negative number" : "path");
      return 2;
    }
    if (text != NULL) *text = argv[i + 1];
    ++i;
  }
  if (blob_path == NULL) {
    fprintf(stderr, "usage: bitat_bench MODEL.blob [--images FILE] [--logits FILE] [--profile N] [--warmup W] "
                    "[--runs R] [--windows K]\n");
    return 2;
  }

  size_t blob_size = 0;
  void *blob = read_file(blob_path, &blob_size);
  if (blob == NULL) return die("cannot read the blob", blob_path);
  size_t arena_size = be_arena_size(blob, blob_size);
  void *arena = malloc(arena_size ? arena_size : 1);
  be_engine engine;
  if (arena == NULL) return die("out of memory for the arena", "");
  if (be_init(&engine, blob, blob_size, arena, arena_size) != BE_OK) return die(blob_path, be_message(&engine));

  be_tensor_info in, out;
  be_input_info(&engine, &in);
  be_output_info(&engine, &out);
  printf("engine kernel=%s blob_format=%d\n", be_kernel_name(), BE_BLOB_FORMAT_VERSION);
  printf("model");
  print_tensor("input", &in);
  print_tensor("output", &out);
  printf(" arena=%lu ops=%d\n", (unsigned long)arena_size, be_op_count(&engine));
  for (int i = 0; i < be_op_count(&engine); ++i) {
    be_op_info op;
    be_op_describe(&engine, i, &op);
    printf("op index=%d name=%s", i, op.name);
    print_tensor("output", &op.output);
    printf(" macs=%llu binary_macs=%llu\n", (unsigned long long)op.macs, (unsigned long long)op.binary_macs);
  }
  fflush(stdout);

  uint8_t *images = NULL, *logits = calloc(1, out.bytes);
  size_t images_size = 0, count = 1;
  if (images_path != NULL) {
    images = read_file(images_path, &images_size);
    if (images == NULL) return die("cannot read the images", images_path);
    if (images_size == 0 || images_size % in.bytes != 0) {
      char detail[160];
      snprintf(detail, sizeof detail, "%s holds %lu bytes, not a multiple of the %lu-byte input", images_path,
               (unsigned long)images_size, (unsigned long)in.bytes);
      return die("bad images file", detail);
    }
    count = images_size / in.bytes;
  } else {
    images = calloc(1, in.bytes);
  }
  if (images == NULL || logits == NULL) return die("out of memory", "");

  if (images_path != NULL) {
    FILE *log = logits_path != NULL ? fopen(logits_path, "wb") : NULL;
    if (logits_path != NULL && log == NULL) return die("cannot write the logits", logits_path);
    const size_t step = count / 20 > 0 ? count / 20 : 1;
    for (size_t i = 0; i < count; ++i) {
      const be_op_hook hook = (long)i < profile ? marker_hook : NULL;
      if (hook != NULL) bitat_marker();
      if (be_invoke_hooked(&engine, images + i * in.bytes, in.bytes, logits, out.bytes, hook, NULL) != BE_OK) {
        return die("inference failed", be_message(&engine));
      }
      if (hook != NULL) bitat_marker();
      if (log != NULL && fwrite(logits, 1, out.bytes, log) != out.bytes) return die("cannot write the logits", logits_path);
      if ((i + 1) % step == 0 || i + 1 == count) fprintf(stderr, "progress %lu/%lu\n", (unsigned long)(i + 1), (unsigned long)count);
    }
    if (log != NULL && fclose(log) != 0) return die("cannot write the logits", logits_path);
    printf("eval images=%lu\n", (unsigned long)count);
  } else if (profile > 0) {
    for (long i = 0; i < profile; ++i) {
      bitat_marker();
      be_invoke_hooked(&engine, images, in.bytes, logits, out.bytes, marker_hook, NULL);
      bitat_marker();
    }
  }

  if (runs > 0) {
    double *times = malloc((size_t)runs * sizeof(double));
    if (times == NULL) return die("out of memory", "");
    for (long i = 0; i < warmup; ++i) be_invoke(&engine, images, in.bytes, logits, out.bytes);
    for (long k = 0; k < windows; ++k) {
      for (long r = 0; r < runs; ++r) {
        const double start = now_us();
        be_invoke(&engine, images, in.bytes, logits, out.bytes);
        times[r] = now_us() - start;
      }
      printf("window index=%ld runs=%ld us=", k, runs);
      for (long r = 0; r < runs; ++r) printf(r ? ",%.3f" : "%.3f", times[r]);
      printf("\n");
      fflush(stdout);
    }
    free(times);
  }
  free(images);
  free(logits);
  free(arena);
  free(blob);
  return 0;
}
