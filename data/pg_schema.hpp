// The PostgreSQL schema: the same tables and columns as SQLite's (data/schema.cpp) in
// PostgreSQL's types, the lease row of contract section 9, and the migrations, recorded
// in a schema_version table.
#pragma once

#include <string>

namespace dispatch::data::pg {
class Conn;
}

namespace dispatch::data::pg_schema {

// What dispatch_fence() raises when the lease's epoch is not the committer's.
inline constexpr const char* fenced_sqlstate = "DF001";

// Brings the database to schema::version under an advisory lock (several dispatchd may
// start at once): an empty database gets the whole schema, an older one is migrated
// step by step in one transaction, a newer one (or one that is not ours) is refused.
// Throws StoreError.
void prepare(pg::Conn& c, const std::string& where);

}  // namespace dispatch::data::pg_schema
