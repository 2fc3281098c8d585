#include "data/wal_batch_vfs.hpp"

#include <sqlite3.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <mutex>

namespace dispatch::data::sql {
namespace {

// Gathered at most this much before it is written: the largest write the unix VFS makes
// in one call (its seekAndWrite() takes the size modulo 128 KiB). 31 frames of a 4 KiB
// page; a larger commit goes in several writes.
constexpr int capacity = 0x1ffff;

std::atomic<std::uint64_t> g_writes_in{0}, g_writes_out{0};
sqlite3_vfs* g_base = nullptr;  // the default VFS, which does the work
sqlite3_vfs g_vfs;

// Ours, then the base VFS's own file object (g_base->szOsFile bytes) at `real_offset`.
struct File {
  sqlite3_file base;
  sqlite3_file* real;
  bool wal;
  unsigned char* buf;    // capacity bytes once a WAL write came
  int len;               // gathered bytes, for the file at [off, off + len)
  sqlite3_int64 off;
};
constexpr std::size_t real_offset = (sizeof(File) + 15) & ~std::size_t{15};

File* of(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
const sqlite3_io_methods& real_methods(File* f) { return *f->real->pMethods; }

int flush(File* f) {
  if (f->len == 0) return SQLITE_OK;
  const int n = f->len;
  f->len = 0;
  g_writes_out.fetch_add(1, std::memory_order_relaxed);
  return real_methods(f).xWrite(f->real, f->buf, n, f->off);
}

int x_close(sqlite3_file* file) {
  File* f = of(file);
  const int rc_flush = flush(f);
  const int rc = real_methods(f).xClose(f->real);
  sqlite3_free(f->buf);
  f->buf = nullptr;
  return rc_flush != SQLITE_OK ? rc_flush : rc;
}

int x_read(sqlite3_file* file, void* p, int amt, sqlite3_int64 ofst) {
  File* f = of(file);
  if (f->len > 0 && ofst < f->off + f->len && f->off < ofst + amt) {
    if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  }
  return real_methods(f).xRead(f->real, p, amt, ofst);
}

int x_write(sqlite3_file* file, const void* p, int amt, sqlite3_int64 ofst) {
  File* f = of(file);
  if (!f->wal) return real_methods(f).xWrite(f->real, p, amt, ofst);
  g_writes_in.fetch_add(1, std::memory_order_relaxed);
  if (f->len > 0) {
    if (ofst >= f->off && ofst + amt <= f->off + f->len) {  // a frame written again
      std::memcpy(f->buf + (ofst - f->off), p, static_cast<std::size_t>(amt));
      return SQLITE_OK;
    }
    if (ofst == f->off + f->len && f->len + amt <= capacity) {  // the next frame
      std::memcpy(f->buf + f->len, p, static_cast<std::size_t>(amt));
      f->len += amt;
      return SQLITE_OK;
    }
    if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  }
  if (amt > capacity) {
    g_writes_out.fetch_add(1, std::memory_order_relaxed);
    return real_methods(f).xWrite(f->real, p, amt, ofst);
  }
  if (!f->buf) {
    f->buf = static_cast<unsigned char*>(sqlite3_malloc(capacity));
    if (!f->buf) return SQLITE_IOERR_NOMEM;
  }
  std::memcpy(f->buf, p, static_cast<std::size_t>(amt));
  f->len = amt;
  f->off = ofst;
  return SQLITE_OK;
}

int x_truncate(sqlite3_file* file, sqlite3_int64 size) {
  File* f = of(file);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xTruncate(f->real, size);
}

int x_sync(sqlite3_file* file, int flags) {
  File* f = of(file);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xSync(f->real, flags);
}

int x_file_size(sqlite3_file* file, sqlite3_int64* size) {
  File* f = of(file);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xFileSize(f->real, size);
}

int x_lock(sqlite3_file* file, int lock) { return real_methods(of(file)).xLock(of(file)->real, lock); }

int x_unlock(sqlite3_file* file, int lock) {
  File* f = of(file);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xUnlock(f->real, lock);
}

int x_check_reserved_lock(sqlite3_file* file, int* out) {
  return real_methods(of(file)).xCheckReservedLock(of(file)->real, out);
}

int x_file_control(sqlite3_file* file, int op, void* arg) {
  File* f = of(file);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xFileControl(f->real, op, arg);
}

int x_sector_size(sqlite3_file* file) { return real_methods(of(file)).xSectorSize(of(file)->real); }

int x_device_characteristics(sqlite3_file* file) {
  return real_methods(of(file)).xDeviceCharacteristics(of(file)->real);
}

int x_shm_map(sqlite3_file* file, int page, int page_size, int extend, void volatile** p) {
  File* f = of(file);
  if (real_methods(f).iVersion < 2) return SQLITE_IOERR_SHMMAP;
  return real_methods(f).xShmMap(f->real, page, page_size, extend, p);
}

int x_shm_lock(sqlite3_file* file, int offset, int n, int flags) {
  File* f = of(file);
  if (real_methods(f).iVersion < 2) return SQLITE_IOERR_SHMLOCK;
  return real_methods(f).xShmLock(f->real, offset, n, flags);
}

void x_shm_barrier(sqlite3_file* file) {
  File* f = of(file);
  if (real_methods(f).iVersion >= 2) real_methods(f).xShmBarrier(f->real);
}

int x_shm_unmap(sqlite3_file* file, int delete_flag) {
  File* f = of(file);
  if (real_methods(f).iVersion < 2) return SQLITE_OK;
  return real_methods(f).xShmUnmap(f->real, delete_flag);
}

int x_fetch(sqlite3_file* file, sqlite3_int64 ofst, int amt, void** pp) {
  File* f = of(file);
  if (real_methods(f).iVersion < 3) {
    *pp = nullptr;
    return SQLITE_OK;
  }
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xFetch(f->real, ofst, amt, pp);
}

int x_unfetch(sqlite3_file* file, sqlite3_int64 ofst, void* p) {
  File* f = of(file);
  if (real_methods(f).iVersion < 3) return SQLITE_OK;
  return real_methods(f).xUnfetch(f->real, ofst, p);
}

const sqlite3_io_methods g_methods = {
    3,          x_close,     x_read,       x_write,       x_truncate,    x_sync,
    x_file_size, x_lock,     x_unlock,     x_check_reserved_lock, x_file_control, x_sector_size,
    x_device_characteristics, x_shm_map, x_shm_lock, x_shm_barrier, x_shm_unmap, x_fetch,
    x_unfetch,
};

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  File* f = of(file);
  std::memset(static_cast<void*>(f), 0, real_offset);
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + real_offset);
  f->real->pMethods = nullptr;
  f->wal = (flags & SQLITE_OPEN_WAL) != 0;
  const int rc = g_base->xOpen(g_base, name, f->real, flags, out_flags);
  // SQLite closes a file whose pMethods is set, even when opening it failed.
  f->base.pMethods = f->real->pMethods ? &g_methods : nullptr;
  return rc;
}

}  // namespace

const char* wal_batch_vfs() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_base = sqlite3_vfs_find(nullptr);
    // Everything but opening a file is the default VFS's own (its methods use neither the
    // VFS object's identity nor anything in it but pAppData, which is copied).
    g_vfs = *g_base;
    g_vfs.pNext = nullptr;
    g_vfs.zName = "dispatch-walbatch";
    g_vfs.szOsFile = static_cast<int>(real_offset) + g_base->szOsFile;
    g_vfs.xOpen = x_open;
    sqlite3_vfs_register(&g_vfs, 0);
  });
  return g_vfs.zName;
}

WalBatchStats wal_batch_stats() {
  return {g_writes_in.load(std::memory_order_relaxed), g_writes_out.load(std::memory_order_relaxed)};
}

}  // namespace dispatch::data::sql
