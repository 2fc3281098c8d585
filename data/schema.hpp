// The database schema and its migrations. The schema's version lives in
// PRAGMA user_version; every version is reached from the one before by one step.
#pragma once

#include <string>

#include "data/sqlite.hpp"

namespace dispatch::data::schema {

// The version this build writes and reads.
inline constexpr int version = 7;

// Brings the database on `db` to `version`: an empty file gets the whole schema, an older
// one is migrated step by step in one transaction, a newer one (or a file that is not
// ours) is refused. Sets WAL mode. Throws StoreError.
void prepare(sql::Db& db, const std::string& path);

// Registers the SQL functions the migrations use (trailing_number) on a connection.
void register_functions(sql::Db& db);

}  // namespace dispatch::data::schema
