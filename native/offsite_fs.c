/*
 * offsite_fs: the few Linux file calls Node.js does not expose.
 *
 *   fallocate(fd, mode, offset, length) -> Promise<void>   (punch hole, zero range)
 *   seek(fd, offset, whence)            -> Promise<number> (SEEK_DATA / SEEK_HOLE; -1 on ENXIO)
 *   fadvise(fd, offset, length, advice) -> Promise<void>   (NBD_CMD_CACHE -> WILLNEED)
 *   deviceSize(fd)                      -> number          (BLKGETSIZE64, or st_size)
 *   lock(fd)                            -> boolean         (flock LOCK_EX|LOCK_NB)
 *   preadNoWait(fd, buf, at, len, pos)  -> number          (bytes, or -1 if it would block)
 *   pwriteNoWait(fd, buf, at, len, pos) -> number          (bytes, -1 would block, -2 unsupported)
 *   tuneAllocator(mmapThreshold, arenas) -> boolean        (glibc mallopt; false elsewhere)
 *   pwriteBatch(fd, bufs, positions)    -> Promise<number[]> (each whole, in order, on one
 *                                          thread-pool job; per write 0 or the errno)
 *   pwritevThen(hfd, hpos, parts, fd, bufs, positions) -> Promise<number[]> (parts back to
 *                                          back at hpos, whole, then pwriteBatch's writes, in
 *                                          one job: [0 or the first write's errno, then per
 *                                          write 0, its errno, or -1 not tried as the first failed])
 *   crc32c(buf, initial), crc32cHardware() -> CRC32C with the SSE4.2 instruction (crc32c.c)
 *   pwritevDirectThen(dfd, hpos, prefix, parts, fd, bufs, positions) -> as pwritevThen, the
 *                                          first write through dfd (opened O_DIRECT): prefix
 *                                          (the bytes of hpos's block before hpos) and parts
 *                                          copied into an aligned buffer, padded with zeros to
 *                                          a whole block; bufs may be empty
 *
 * The NoWait calls are synchronous on purpose: preadv2/pwritev2 with RWF_NOWAIT
 * return at once with EAGAIN instead of waiting for the disk, so a page-cache hit
 * costs a syscall on the event loop instead of a round trip through the thread
 * pool, and a miss falls back to the thread pool. This is how QEMU and io_uring
 * servers keep small cached I/O cheap.
 *
 * Blocking calls run on the libuv thread pool (napi_async_work) so the event
 * loop never waits on the disk. Offsets arrive as doubles: the caller has
 * already checked them against the volume size, which is below 2^53.
 * Errors reject with an Error whose `code` is the errno name (e.g. "EOPNOTSUPP").
 */
#define _GNU_SOURCE
#include <errno.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <unistd.h>
#include "crc32c.h"

enum op { OP_FALLOCATE, OP_SEEK, OP_FADVISE };

struct job {
  napi_async_work work;
  napi_deferred deferred;
  enum op op;
  int fd;
  int mode;
  int64_t offset;
  int64_t length;
  int64_t result;
  int err;
};

static const char *errno_name(int e) {
  switch (e) {
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOSPC: return "ENOSPC";
    case EIO: return "EIO";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case ENXIO: return "ENXIO";
    case EPERM: return "EPERM";
    case EROFS: return "EROFS";
    case ENODEV: return "ENODEV";
    case EFBIG: return "EFBIG";
    case EINTR: return "EINTR";
    case EAGAIN: return "EAGAIN";
    default: return "EUNKNOWN";
  }
}

static void execute(napi_env env, void *data) {
  struct job *j = data;
  j->err = 0;
  switch (j->op) {
    case OP_FALLOCATE:
      if (fallocate(j->fd, j->mode, (off_t)j->offset, (off_t)j->length) != 0) j->err = errno;
      break;
    case OP_SEEK: {
      off_t r = lseek(j->fd, (off_t)j->offset, j->mode);
      if (r < 0) {
        if (errno == ENXIO) j->result = -1; else j->err = errno;
      } else {
        j->result = r;
      }
      break;
    }
    case OP_FADVISE: {
      int r = posix_fadvise(j->fd, (off_t)j->offset, (off_t)j->length, j->mode);
      if (r != 0) j->err = r;
      break;
    }
  }
}

static void complete(napi_env env, napi_status status, void *data) {
  struct job *j = data;
  if (j->err != 0) {
    napi_value code, msg, error;
    napi_create_string_utf8(env, errno_name(j->err), NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, strerror(j->err), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &error);
    napi_value errnum;
    napi_create_int32(env, j->err, &errnum);
    napi_set_named_property(env, error, "errno", errnum);
    napi_reject_deferred(env, j->deferred, error);
  } else {
    napi_value v;
    if (j->op == OP_SEEK) napi_create_double(env, (double)j->result, &v);
    else napi_get_undefined(env, &v);
    napi_resolve_deferred(env, j->deferred, v);
  }
  napi_delete_async_work(env, j->work);
  free(j);
}

static int64_t arg_i64(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return (int64_t)d;
}

static napi_value start(napi_env env, napi_callback_info info, enum op op) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct job *j = calloc(1, sizeof *j);
  j->op = op;
  int32_t fd = -1, mode = 0;
  napi_get_value_int32(env, argv[0], &fd);
  j->fd = fd;
  if (op == OP_FALLOCATE) {
    napi_get_value_int32(env, argv[1], &mode);
    j->mode = mode;
    j->offset = arg_i64(env, argv[2]);
    j->length = arg_i64(env, argv[3]);
  } else if (op == OP_SEEK) {
    j->offset = arg_i64(env, argv[1]);
    napi_get_value_int32(env, argv[2], &mode);
    j->mode = mode;
  } else {
    j->offset = arg_i64(env, argv[1]);
    j->length = arg_i64(env, argv[2]);
    napi_get_value_int32(env, argv[3], &mode);
    j->mode = mode;
  }
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "offsite_fs", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

static napi_value js_fallocate(napi_env env, napi_callback_info info) { return start(env, info, OP_FALLOCATE); }
static napi_value js_seek(napi_env env, napi_callback_info info) { return start(env, info, OP_SEEK); }
static napi_value js_fadvise(napi_env env, napi_callback_info info) { return start(env, info, OP_FADVISE); }

static napi_value js_device_size(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  napi_get_value_int32(env, argv[0], &fd);
  struct stat st;
  double size = -1;
  if (fstat(fd, &st) == 0) {
    if (S_ISBLK(st.st_mode)) {
      uint64_t bytes = 0;
      if (ioctl(fd, BLKGETSIZE64, &bytes) == 0) size = (double)bytes;
    } else {
      size = (double)st.st_size;
    }
  }
  napi_value v;
  napi_create_double(env, size, &v);
  return v;
}

static napi_value js_lock(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  napi_get_value_int32(env, argv[0], &fd);
  napi_value v;
  napi_get_boolean(env, flock(fd, LOCK_EX | LOCK_NB) == 0, &v);
  return v;
}

static napi_value rw_nowait(napi_env env, napi_callback_info info, int write) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  void *data = NULL;
  size_t buflen = 0;
  double at = 0, len = 0, pos = 0;
  napi_get_value_int32(env, argv[0], &fd);
  napi_get_buffer_info(env, argv[1], &data, &buflen);
  napi_get_value_double(env, argv[2], &at);
  napi_get_value_double(env, argv[3], &len);
  napi_get_value_double(env, argv[4], &pos);
  double result;
  if (at < 0 || len < 0 || (size_t)at + (size_t)len > buflen) {
    napi_throw_range_error(env, "ERANGE", "buffer range out of bounds");
    return NULL;
  }
  struct iovec iov = { (char *)data + (size_t)at, (size_t)len };
  ssize_t n = write ? pwritev2(fd, &iov, 1, (off_t)pos, RWF_NOWAIT)
                    : preadv2(fd, &iov, 1, (off_t)pos, RWF_NOWAIT);
  if (n >= 0) {
    result = (double)n;
  } else if (errno == EAGAIN) {
    result = -1;
  } else if (errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS) {
    result = -2;
  } else {
    napi_throw_error(env, errno_name(errno), strerror(errno));
    return NULL;
  }
  napi_value v;
  napi_create_double(env, result, &v);
  return v;
}

static napi_value js_pread_nowait(napi_env env, napi_callback_info info) { return rw_nowait(env, info, 0); }
static napi_value js_pwrite_nowait(napi_env env, napi_callback_info info) { return rw_nowait(env, info, 1); }

/*
 * glibc's malloc keeps what a daemon freed: its mmap threshold rises to the largest
 * block freed (up to 32 MiB), after which a 4 MiB batch comes from an arena and, freed,
 * stays in the process's RSS; and every thread that allocates may get an arena of its
 * own (8 per core). A fixed threshold sends every large buffer to mmap, so freeing it
 * returns it to the system at once; fewer arenas keep less behind.
 */
static napi_value js_tune_allocator(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double threshold = 0, arenas = 0;
  napi_get_value_double(env, argv[0], &threshold);
  napi_get_value_double(env, argv[1], &arenas);
  bool ok = false;
#if defined(__GLIBC__)
  ok = mallopt(M_MMAP_THRESHOLD, (int)threshold) == 1;
  ok = mallopt(M_TRIM_THRESHOLD, (int)threshold * 2) == 1 && ok;
  if (arenas > 0) ok = mallopt(M_ARENA_MAX, (int)arenas) == 1 && ok;
#endif
  napi_value v;
  napi_get_boolean(env, ok, &v);
  return v;
}

/*
 * Several writes in one thread-pool job: under a queue of small writes (32 host
 * commands in flight) each pwrite costs a few microseconds, and handing each to the
 * pool (a wake-up of a pool thread, a completion back to the loop) costs more than
 * the write. The buffers are kept alive until the job ends by one reference to each
 * array that holds them (a reference per buffer cost about 0.4 us each, more than a
 * 4 KiB write into the page cache): the caller makes the arrays for the call and
 * never changes them while it runs.
 */
struct batch {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  uint32_t n;
  /* The array of the buffers (each held by it until the job ends). */
  napi_ref bufs_ref;
  char **data;
  size_t *len;
  int64_t *pos;
  int *err;
  /* pwritevThen: the write that goes first (head_n parts at head_pos of head_fd). */
  int head_fd;
  int64_t head_pos;
  uint32_t head_n;
  struct iovec *head_iov;
  /* The array of the head's parts. */
  napi_ref head_parts_ref;
  int head_err;
  /* pwritevDirectThen: the head goes through an O_DIRECT descriptor, after these bytes. */
  int head_direct;
  napi_ref prefix_ref;
  const char *prefix;
  size_t prefix_len;
};

/*
 * O_DIRECT: the journal's appends skip the page cache. Each record would otherwise land
 * in a page that did not exist (allocated, copied into, written back by the kernel's
 * flusher, reclaimed): on a two-core machine that cost more than the disk write. The
 * buffer, file offset and length of a direct write must be whole blocks (DIRECT_ALIGN
 * covers 512-byte and 4 KiB sectors): the parts are copied into a block-aligned bounce
 * buffer, one per pool thread, and written a chunk at a time.
 */
#define DIRECT_ALIGN 4096
#define DIRECT_CHUNK (256 * 1024)
static __thread char *bounce;

/* Writes the head through the direct descriptor; 0 or the errno. */
static int head_write_direct(struct batch *b) {
  if (!bounce && posix_memalign((void **)&bounce, DIRECT_ALIGN, DIRECT_CHUNK) != 0) {
    bounce = NULL;
    return ENOMEM;
  }
  int64_t pos = b->head_pos - (int64_t)b->prefix_len;
  if (pos % DIRECT_ALIGN != 0 || b->prefix_len >= DIRECT_ALIGN) return EINVAL;
  /* The source: the prefix, then each part, read in order. */
  const char *src = b->prefix;
  size_t src_left = b->prefix_len;
  uint32_t part = 0;
  int done = 0;
  while (!done) {
    size_t fill = 0;
    while (fill < DIRECT_CHUNK) {
      if (src_left == 0) {
        if (part == b->head_n) { done = 1; break; }
        src = b->head_iov[part].iov_base;
        src_left = b->head_iov[part].iov_len;
        part++;
        continue;
      }
      size_t n = src_left < DIRECT_CHUNK - fill ? src_left : DIRECT_CHUNK - fill;
      memcpy(bounce + fill, src, n);
      fill += n; src += n; src_left -= n;
    }
    if (fill == 0) break;
    size_t padded = (fill + DIRECT_ALIGN - 1) & ~(size_t)(DIRECT_ALIGN - 1);
    memset(bounce + fill, 0, padded - fill);
    size_t off = 0;
    while (off < padded) {
      ssize_t w = pwrite(b->head_fd, bounce + off, padded - off, (off_t)(pos + (int64_t)off));
      if (w < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      if (w == 0) return ENOSPC;
      /* (A short direct write ends on a block; the rest goes on from there. One that does not: the disk filled mid-block.) */
      if (w % DIRECT_ALIGN != 0) return ENOSPC;
      off += (size_t)w;
    }
    pos += (int64_t)padded;
  }
  return 0;
}

/* Writes the head's parts whole (short writes continued, IOV_MAX at a time); 0 or the errno. */
static int head_write(struct batch *b) {
  struct iovec *iov = b->head_iov;
  uint32_t left = b->head_n;
  int64_t pos = b->head_pos;
  while (left > 0) {
    int cnt = left > IOV_MAX ? IOV_MAX : (int)left;
    ssize_t w = pwritev(b->head_fd, iov, cnt, (off_t)pos);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return ENOSPC;
    pos += w;
    while (w > 0 && left > 0) {
      if ((size_t)w >= iov->iov_len) {
        w -= (ssize_t)iov->iov_len;
        iov++;
        left--;
      } else {
        iov->iov_base = (char *)iov->iov_base + w;
        iov->iov_len -= (size_t)w;
        w = 0;
      }
    }
    while (left > 0 && iov->iov_len == 0) { iov++; left--; }
  }
  return 0;
}

static void batch_execute(napi_env env, void *arg) {
  struct batch *b = arg;
  if (b->head_n > 0) {
    b->head_err = b->head_direct ? head_write_direct(b) : head_write(b);
    if (b->head_err != 0) {
      for (uint32_t i = 0; i < b->n; i++) b->err[i] = -1;
      return;
    }
  }
  for (uint32_t i = 0; i < b->n; i++) {
    size_t done = 0;
    b->err[i] = 0;
    while (done < b->len[i]) {
      ssize_t w = pwrite(b->fd, b->data[i] + done, b->len[i] - done, (off_t)(b->pos[i] + (int64_t)done));
      if (w < 0) {
        if (errno == EINTR) continue;
        b->err[i] = errno;
        break;
      }
      if (w == 0) { b->err[i] = EIO; break; }
      done += (size_t)w;
    }
  }
}

static void batch_free(napi_env env, struct batch *b) {
  if (b->bufs_ref) napi_delete_reference(env, b->bufs_ref);
  if (b->head_parts_ref) napi_delete_reference(env, b->head_parts_ref);
  if (b->prefix_ref) napi_delete_reference(env, b->prefix_ref);
  free(b->data); free(b->len); free(b->pos); free(b->err);
  free(b->head_iov);
  free(b);
}

static void batch_complete(napi_env env, napi_status status, void *arg) {
  struct batch *b = arg;
  napi_value out;
  uint32_t k = b->head_n > 0 ? 1 : 0;
  napi_create_array_with_length(env, b->n + k, &out);
  if (k) {
    napi_value e;
    napi_create_int32(env, b->head_err, &e);
    napi_set_element(env, out, 0, e);
  }
  for (uint32_t i = 0; i < b->n; i++) {
    napi_value e;
    napi_create_int32(env, b->err[i], &e);
    napi_set_element(env, out, i + k, e);
  }
  napi_resolve_deferred(env, b->deferred, out);
  napi_delete_async_work(env, b->work);
  batch_free(env, b);
}

static napi_value batch_start(napi_env env, napi_value *argv, struct batch *head);

static napi_value js_pwrite_batch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return batch_start(env, argv, NULL);
}

/* The head of pwritevThen (argv: hfd, hpos, parts) into `head`; false (thrown) if bad. */
static bool head_take(napi_env env, napi_value *argv, struct batch *head, const char *what) {
  char msg[96];
  if (napi_get_value_int32(env, argv[0], &head->head_fd) != napi_ok || head->head_fd < 0) {
    snprintf(msg, sizeof msg, "%s: a file descriptor first", what);
    napi_throw_type_error(env, "EINVAL", msg);
    return false;
  }
  head->head_pos = arg_i64(env, argv[1]);
  if (napi_get_array_length(env, argv[2], &head->head_n) != napi_ok || head->head_n == 0) {
    snprintf(msg, sizeof msg, "%s: at least one part", what);
    napi_throw_range_error(env, "ERANGE", msg);
    return false;
  }
  head->head_iov = calloc(head->head_n, sizeof *head->head_iov);
  if (!head->head_iov) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return false;
  }
  for (uint32_t i = 0; i < head->head_n; i++) {
    napi_value buf;
    void *data = NULL;
    size_t len = 0;
    bool isbuf = false;
    napi_get_element(env, argv[2], i, &buf);
    napi_is_buffer(env, buf, &isbuf);
    if (!isbuf || napi_get_buffer_info(env, buf, &data, &len) != napi_ok) {
      free(head->head_iov);
      head->head_iov = NULL;
      snprintf(msg, sizeof msg, "%s: not a Buffer", what);
      napi_throw_type_error(env, "EINVAL", msg);
      return false;
    }
    head->head_iov[i].iov_base = data;
    head->head_iov[i].iov_len = len;
  }
  if (napi_create_reference(env, argv[2], 1, &head->head_parts_ref) != napi_ok) {
    free(head->head_iov);
    head->head_iov = NULL;
    napi_throw_error(env, "ENOMEM", "out of memory");
    return false;
  }
  return true;
}

/*
 * pwritevThen(hfd, hpos, parts, fd, bufs, positions), or with `direct`
 * pwritevDirectThen(dfd, hpos, prefix, parts, fd, bufs, positions).
 */
static napi_value pwritev_then(napi_env env, napi_callback_info info, int direct) {
  const char *what = direct ? "pwritevDirectThen" : "pwritevThen";
  char msg[96];
  size_t want = direct ? 7 : 6, argc = 7;
  napi_value argv[7], hargs[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct batch head;
  memset(&head, 0, sizeof head);
  if (argc < want) {
    snprintf(msg, sizeof msg, "%s: %zu arguments", what, want);
    napi_throw_type_error(env, "EINVAL", msg);
    return NULL;
  }
  void *data = NULL;
  size_t len = 0;
  if (direct) {
    bool isbuf = false;
    napi_is_buffer(env, argv[2], &isbuf);
    if (!isbuf || napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok || len >= DIRECT_ALIGN) {
      napi_throw_type_error(env, "EINVAL", "pwritevDirectThen: the prefix, a Buffer shorter than a block");
      return NULL;
    }
  }
  hargs[0] = argv[0]; hargs[1] = argv[1]; hargs[2] = argv[direct ? 3 : 2];
  if (!head_take(env, hargs, &head, what)) return NULL;
  if (direct) {
    head.head_direct = 1;
    head.prefix = data;
    head.prefix_len = len;
    napi_create_reference(env, argv[2], 1, &head.prefix_ref);
  }
  return batch_start(env, argv + (direct ? 4 : 3), &head);
}

static napi_value js_pwritev_then(napi_env env, napi_callback_info info) { return pwritev_then(env, info, 0); }
static napi_value js_pwritev_direct_then(napi_env env, napi_callback_info info) { return pwritev_then(env, info, 1); }

/* Drops what a pwritevThen call took for its first write (a call refused before its batch owns it). */
static void head_drop(napi_env env, struct batch *head) {
  if (!head) return;
  if (head->head_parts_ref) napi_delete_reference(env, head->head_parts_ref);
  if (head->prefix_ref) napi_delete_reference(env, head->prefix_ref);
  free(head->head_iov);
}

static napi_value batch_start(napi_env env, napi_value *argv, struct batch *head) {
  const char *what = !head ? "pwriteBatch" : head->head_direct ? "pwritevDirectThen" : "pwritevThen";
  char msg[96];
  int32_t fd = -1;
  uint32_t n = 0, m = 0;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    head_drop(env, head);
    snprintf(msg, sizeof msg, "%s: a file descriptor for the writes", what);
    napi_throw_type_error(env, "EINVAL", msg);
    return NULL;
  }
  if (napi_get_array_length(env, argv[1], &n) != napi_ok || napi_get_array_length(env, argv[2], &m) != napi_ok || n != m || (n == 0 && !head)) {
    head_drop(env, head);
    snprintf(msg, sizeof msg, "%s: as many buffers as positions, at least one", what);
    napi_throw_range_error(env, "ERANGE", msg);
    return NULL;
  }
  struct batch *b = calloc(1, sizeof *b);
  if (!b) {
    head_drop(env, head);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (head) *b = *head;
  b->fd = fd;
  b->n = n;
  /* (At least one slot each: calloc(0) may answer NULL.) */
  size_t slots = n > 0 ? n : 1;
  b->data = calloc(slots, sizeof *b->data);
  b->len = calloc(slots, sizeof *b->len);
  b->pos = calloc(slots, sizeof *b->pos);
  b->err = calloc(slots, sizeof *b->err);
  if (!b->data || !b->len || !b->pos || !b->err) {
    batch_free(env, b);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value buf, at;
    napi_get_element(env, argv[1], i, &buf);
    napi_get_element(env, argv[2], i, &at);
    void *data = NULL;
    size_t len = 0;
    bool isbuf = false;
    napi_is_buffer(env, buf, &isbuf);
    if (!isbuf || napi_get_buffer_info(env, buf, &data, &len) != napi_ok) {
      batch_free(env, b);
      snprintf(msg, sizeof msg, "%s: not a Buffer", what);
      napi_throw_type_error(env, "EINVAL", msg);
      return NULL;
    }
    b->data[i] = data;
    b->len[i] = len;
    b->pos[i] = arg_i64(env, at);
  }
  if (napi_create_reference(env, argv[1], 1, &b->bufs_ref) != napi_ok) {
    batch_free(env, b);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  napi_value promise, name;
  napi_create_promise(env, &b->deferred, &promise);
  napi_create_string_utf8(env, "offsite_fs_batch", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, batch_execute, batch_complete, b, &b->work);
  napi_queue_async_work(env, b->work);
  return promise;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"fallocate", NULL, js_fallocate, NULL, NULL, NULL, napi_default, NULL},
    {"seek", NULL, js_seek, NULL, NULL, NULL, napi_default, NULL},
    {"fadvise", NULL, js_fadvise, NULL, NULL, NULL, napi_default, NULL},
    {"deviceSize", NULL, js_device_size, NULL, NULL, NULL, napi_default, NULL},
    {"lock", NULL, js_lock, NULL, NULL, NULL, napi_default, NULL},
    {"preadNoWait", NULL, js_pread_nowait, NULL, NULL, NULL, napi_default, NULL},
    {"pwriteNoWait", NULL, js_pwrite_nowait, NULL, NULL, NULL, napi_default, NULL},
    {"pwritevThen", NULL, js_pwritev_then, NULL, NULL, NULL, napi_default, NULL},
    {"pwritevDirectThen", NULL, js_pwritev_direct_then, NULL, NULL, NULL, napi_default, NULL},
    {"tuneAllocator", NULL, js_tune_allocator, NULL, NULL, NULL, napi_default, NULL},
    {"pwriteBatch", NULL, js_pwrite_batch, NULL, NULL, NULL, napi_default, NULL},
    {"crc32c", NULL, offsite_js_crc32c, NULL, NULL, NULL, napi_default, NULL},
    {"crc32cHardware", NULL, offsite_js_crc32c_hardware, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
