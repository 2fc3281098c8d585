// Start-up files: tokens.json (who may connect) and fleet.json (the roster).
// Both throw std::runtime_error with the file name and what is wrong.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/engine.hpp"

namespace dispatch::net {

struct Tokens {
  std::unordered_map<std::string, std::shared_ptr<const engine::Principal>> by_token;
  const engine::Principal* find(const std::string& token) const;
  std::shared_ptr<const engine::Principal> share(const std::string& token) const;
};

Tokens load_tokens(const std::string& path);
// The name a token without "name" gets after its role: 16 hex digits of a hash of it.
std::string token_digest(std::string_view token);
Tokens parse_tokens(const std::string& text, const std::string& what);
std::vector<engine::rec::Unit> load_fleet(const std::string& path);
std::vector<engine::rec::Unit> parse_fleet(const std::string& text, const std::string& what);

struct Insurer {
  std::string code;
  std::string name;
  std::vector<std::string> aliases;
};
// {"insurers": [{"code": "PICC", "name": "...", "aliases": [...]}, ...]}
std::vector<Insurer> load_insurers(const std::string& path);

std::string read_file(const std::string& path);

}  // namespace dispatch::net
