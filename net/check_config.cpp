#include "net/check_config.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "net/config.hpp"
#include "net/geography.hpp"

namespace dispatch::net {

namespace fs = std::filesystem;

namespace {

// The local files index.html loads (<script src>, <link href>): all must be there.
std::vector<std::string> page_references(const std::string& html) {
  std::vector<std::string> refs;
  static const std::regex attr(R"re(<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["'])re",
                               std::regex::icase);
  for (auto it = std::sregex_iterator(html.begin(), html.end(), attr); it != std::sregex_iterator(); ++it) {
    std::string ref = (*it)[1];
    if (ref.starts_with("data:") || ref.find("://") != std::string::npos || ref.starts_with("//")) continue;
    if (const auto q = ref.find_first_of("?#"); q != std::string::npos) ref.resize(q);
    while (ref.starts_with("./")) ref.erase(0, 2);
    while (ref.starts_with("/")) ref.erase(0, 1);
    if (!ref.empty()) refs.push_back(ref);
  }
  return refs;
}

}  // namespace

int check_config(const ServerOptions& o, const std::string& db_path, std::ostream& out, std::ostream& err) {
  int problems = 0;
  auto ok = [&](const std::string& s) { out << "ok: " << s << '\n'; };
  auto bad = [&](const std::string& s) {
    err << "error: " << s << '\n';
    ++problems;
  };
  auto warn = [&](const std::string& s) { out << "warning: " << s << '\n'; };

  Tokens tokens;
  bool tokens_ok = false;
  if (o.tokens_path.empty()) {
    bad("no --tokens file");
  } else {
    try {
      tokens = load_tokens(o.tokens_path);
      tokens_ok = true;
      std::map<std::string, int> roles;
      for (const auto& [_, p] : tokens.by_token) ++roles[p->role];
      std::string by_role;
      for (const auto& [r, n] : roles) by_role += fmt::format("{}{} {}", by_role.empty() ? "" : ", ", n, r);
      if (tokens.by_token.empty()) bad(o.tokens_path + ": no tokens: nobody could connect");
      else ok(fmt::format("tokens {}: {} ({})", o.tokens_path, tokens.by_token.size(), by_role));
      if (!roles.count("console")) warn(o.tokens_path + ": no console token: nobody can open the console");
    } catch (const std::exception& e) {
      bad(std::string("tokens: ") + e.what());
    }
  }

  if (!o.fleet_path.empty()) {
    try {
      const auto fleet = load_fleet(o.fleet_path);
      ok(fmt::format("fleet {}: {} units", o.fleet_path, fleet.size()));
      if (tokens_ok) {
        std::set<std::string> ids;
        for (const auto& u : fleet) ids.insert(u.id);
        for (const auto& [_, p] : tokens.by_token)
          for (const auto& u : p->units)
            if (!ids.count(u))
              warn(fmt::format("{} token '{}' names unit {}, which {} does not list", p->role, p->name, u,
                               o.fleet_path));
      }
    } catch (const std::exception& e) {
      bad(std::string("fleet: ") + e.what());
    }
  }

  if (!o.zones_path.empty()) {
    try {
      std::vector<std::string> warnings;
      MapGeography g(o.zones_path, o.zones_gcj02, o.urban, "", warnings);
      for (const auto& w : warnings) warn(o.zones_path + ": " + w);
      if (g.zone_count() == 0) bad(o.zones_path + ": no districts in the file");
      else ok(fmt::format("zones {}: {} districts", o.zones_path, g.zone_count()));
    } catch (const std::exception& e) {
      bad(std::string("zones: ") + e.what());
    }
  } else {
    warn("no --zones: incidents get no district, no urban/rural rescue decision");
  }

  if (!o.places_path.empty()) {
    try {
      std::vector<std::string> warnings;
      MapGeography g("", o.zones_gcj02, {}, o.places_path, warnings);
      for (const auto& w : warnings) warn(o.places_path + ": " + w);
      ok(fmt::format("places {}: {} places", o.places_path, g.place_count()));
      // A station token must name a station of the places (dispatchd refuses to start).
      if (tokens_ok)
        for (const auto& [_, p] : tokens.by_token)
          if (p->role == "station" && !g.station(p->station))
            bad(fmt::format("station token '{}' names station '{}', which is not a place of kind station in {}",
                            p->name, p->station, o.places_path));
    } catch (const std::exception& e) {
      bad(std::string("places: ") + e.what());
    }
  } else if (tokens_ok) {
    for (const auto& [_, p] : tokens.by_token)
      if (p->role == "station")
        bad(fmt::format("station token '{}' names station '{}', but no --places are loaded", p->name, p->station));
  }

  if (!o.insurers_path.empty()) {
    try {
      const auto insurers = load_insurers(o.insurers_path);
      std::set<std::string> codes;
      for (const auto& i : insurers)
        if (!codes.insert(i.code).second) bad(o.insurers_path + ": insurer " + i.code + " appears twice");
      ok(fmt::format("insurers {}: {}", o.insurers_path, insurers.size()));
    } catch (const std::exception& e) {
      bad(std::string("insurers: ") + e.what());
    }
  }

  if (o.web_root.empty()) {
    warn("no --web-root: no console at /");
  } else {
    std::error_code ec;
    const fs::path index = fs::path(o.web_root) / "index.html";
    if (!fs::is_regular_file(index, ec)) {
      bad("web root " + o.web_root + ": no index.html");
    } else {
      try {
        int missing = 0;
        const auto refs = page_references(read_file(index.string()));
        for (const auto& ref : refs)
          if (!fs::is_regular_file(fs::path(o.web_root) / ref, ec)) {
            bad(fmt::format("web root {}: index.html loads {}, which is missing", o.web_root, ref));
            ++missing;
          }
        if (!missing) ok(fmt::format("web root {}: index.html and the {} files it loads", o.web_root, refs.size()));
      } catch (const std::exception& e) {
        bad(std::string("web root: ") + e.what());
      }
    }
  }

  if (!db_path.empty()) {
    std::error_code ec;
    const fs::path parent = fs::absolute(db_path, ec).parent_path();
    if (!fs::is_directory(parent, ec)) bad("database " + db_path + ": folder " + parent.string() + " does not exist");
    else ok("database " + db_path + (fs::exists(db_path, ec) ? " (exists)" : " (to be created)"));
  }
  return problems;
}

}  // namespace dispatch::net
