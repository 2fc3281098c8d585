// A SQLite VFS over the default one that gathers a transaction's WAL writes into one
// write: SQLite writes each WAL frame as two pwrite calls (its 24-byte header, then the
// page), so a commit of 30 pages took 60 system calls on the writer thread before its
// fdatasync; through this VFS it takes one (docs/performance.md, "One write a commit").
//
// Only files SQLite opens as a WAL are gathered, and only appends and rewrites of what is
// gathered; everything else passes straight through. What is gathered reaches the file
// before SQLite syncs, truncates, reads (where the read overlaps it), sizes or closes it,
// and before any file control or unlock. With synchronous=FULL every commit syncs the WAL
// before the wal-index makes its frames visible to other connections, so no connection can
// read a frame that is not in the file yet. With NORMAL a commit is published without a
// sync, and gathered frames could be published before they are written: the store uses
// this VFS for its write connection with FULL only.
#pragma once

#include <cstdint>

namespace dispatch::data::sql {

// Registers the VFS (once; thread-safe) and returns its name for sqlite3_open_v2.
const char* wal_batch_vfs();

// Counters over every WAL file opened through it since the process started: the writes
// SQLite made and the writes that reached the file (tests, benchmarks).
struct WalBatchStats {
  std::uint64_t writes_in = 0;
  std::uint64_t writes_out = 0;
};
WalBatchStats wal_batch_stats();

}  // namespace dispatch::data::sql
