#include "net/config.hpp"

#include <fmt/format.h>
#include "net/role.hpp"

#include <boost/json.hpp>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace json = boost::json;

namespace dispatch::net {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const engine::Principal* Tokens::find(const std::string& token) const {
  auto it = by_token.find(token);
  return it == by_token.end() ? nullptr : it->second.get();
}

std::shared_ptr<const engine::Principal> Tokens::share(const std::string& token) const {
  auto it = by_token.find(token);
  return it == by_token.end() ? nullptr : it->second;
}

namespace {
json::value parse_json(const std::string& text, const std::string& what) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) throw std::runtime_error(what + ": invalid JSON: " + ec.message());
  return v;
}
std::string str(const json::object& o, std::string_view k) {
  const json::value* v = o.if_contains(k);
  if (!v || !v->is_string()) return {};
  return std::string(v->get_string());
}
}  // namespace

std::string token_digest(std::string_view token) {
  // FNV-1a, 64 bits: enough to tell tokens apart in an audit trail, and it reveals
  // nothing usable of the token itself.
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : token) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return fmt::format("{:016x}", h);
}

Tokens parse_tokens(const std::string& text, const std::string& what) {
  const json::value v = parse_json(text, what);
  const json::value* list = v.is_object() ? v.get_object().if_contains("tokens") : nullptr;
  if (!list || !list->is_array()) throw std::runtime_error(what + ": expected {\"tokens\": [...]}");
  Tokens t;
  std::set<std::string> names;
  for (const auto& e : list->get_array()) {
    if (!e.is_object()) throw std::runtime_error(what + ": each token must be an object");
    const auto& o = e.get_object();
    auto p = std::make_shared<engine::Principal>();
    const std::string token = str(o, "token");
    p->role = str(o, "role");
    if (token.empty()) throw std::runtime_error(what + ": a token without \"token\"");
    if (!parse_role(p->role))
      throw std::runtime_error(what + ": token with unknown role '" + p->role + "'");
    p->name = str(o, "name");
    // An actor must be unambiguous (audit trail, report ids are scoped to the token): a
    // token without a name is named after a hash of the whole token, never a prefix of it.
    if (p->name.empty()) p->name = p->role + "-" + token_digest(token);
    if (!names.insert(p->role + ":" + p->name).second)
      throw std::runtime_error(what + ": two " + p->role + " tokens share the name '" + p->name +
                               "'; names must be unique");
    if (const json::value* us = o.if_contains("units"); us && us->is_array()) {
      for (const auto& u : us->get_array()) {
        if (!u.is_string()) throw std::runtime_error(what + ": units must be strings");
        if (u.get_string() == "*") p->all_units = true;
        else p->units.emplace_back(u.get_string());
      }
    }
    p->insurer = str(o, "insurer");
    if (p->role == "insurer" && p->insurer.empty())
      throw std::runtime_error(what + ": insurer token '" + p->name + "' names no insurer");
    p->station = str(o, "station");
    if (p->role == "station" && p->station.empty())
      throw std::runtime_error(what + ": station token '" + p->name + "' names no station");
    if ((p->role == "unit" || p->role == "gateway") && !p->all_units && p->units.empty())
      throw std::runtime_error(what + ": " + p->role + " token '" + p->name + "' lists no units");
    if (!t.by_token.emplace(token, std::move(p)).second)
      throw std::runtime_error(what + ": a token appears twice");
  }
  return t;
}

Tokens load_tokens(const std::string& path) { return parse_tokens(read_file(path), path); }

std::vector<engine::rec::Unit> parse_fleet(const std::string& text, const std::string& what) {
  const json::value v = parse_json(text, what);
  const json::value* list = v.is_object() ? v.get_object().if_contains("units") : nullptr;
  if (!list || !list->is_array()) throw std::runtime_error(what + ": expected {\"units\": [...]}");
  std::vector<engine::rec::Unit> out;
  std::set<std::string> seen;
  for (const auto& e : list->get_array()) {
    if (!e.is_object()) throw std::runtime_error(what + ": each unit must be an object");
    const auto& o = e.get_object();
    engine::rec::Unit u;
    u.id = str(o, "id");
    if (u.id.empty()) throw std::runtime_error(what + ": a unit without \"id\"");
    if (!seen.insert(u.id).second) throw std::runtime_error(what + ": unit " + u.id + " appears twice");
    auto kind = engine::parse_unit_kind(str(o, "kind"));
    if (!kind) throw std::runtime_error(what + ": unit " + u.id + " has an unknown kind");
    u.kind = *kind;
    u.callsign = str(o, "callsign");
    if (u.callsign.empty()) u.callsign = u.id;
    u.capcode = str(o, "capcode");
    if (const json::value* b = o.if_contains("base"); b && b->is_object()) {
      const auto& bo = b->get_object();
      const json::value* la = bo.if_contains("lat");
      const json::value* lo = bo.if_contains("lon");
      if (la && lo && la->is_number() && lo->is_number())
        u.base = geo::LatLon{la->to_number<double>(), lo->to_number<double>()};
    }
    out.push_back(std::move(u));
  }
  return out;
}

std::vector<engine::rec::Unit> load_fleet(const std::string& path) {
  return parse_fleet(read_file(path), path);
}

std::vector<Insurer> load_insurers(const std::string& path) {
  const json::value v = parse_json(read_file(path), path);
  const json::value* list = v.is_object() ? v.get_object().if_contains("insurers") : nullptr;
  if (!list || !list->is_array()) throw std::runtime_error(path + ": expected {\"insurers\": [...]}");
  std::vector<Insurer> out;
  for (const auto& e : list->get_array()) {
    if (!e.is_object()) throw std::runtime_error(path + ": each insurer must be an object");
    Insurer i;
    i.code = str(e.get_object(), "code");
    i.name = str(e.get_object(), "name");
    if (i.code.empty()) throw std::runtime_error(path + ": an insurer without \"code\"");
    if (const json::value* a = e.get_object().if_contains("aliases"); a && a->is_array())
      for (const auto& x : a->get_array())
        if (x.is_string()) i.aliases.emplace_back(x.get_string());
    out.push_back(std::move(i));
  }
  return out;
}

}  // namespace dispatch::net
