// dispatchd --check-config: reads every start-up file the options name (tokens, fleet,
// districts, places, insurers, the console's folder, the database's folder) the way the
// server would, and says per file what it found or what is wrong with it.
#pragma once

#include <ostream>
#include <string>

#include "net/server.hpp"

namespace dispatch::net {

// Writes one "ok: ..." line per file to `out` and one "error: ..." line per problem to
// `err`; returns the number of problems (0: the server would start with these files).
int check_config(const ServerOptions& options, const std::string& db_path, std::ostream& out, std::ostream& err);

}  // namespace dispatch::net
