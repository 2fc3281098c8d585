#include "gateways/token.hpp"

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace dispatch::gateways {

std::optional<std::string> load_token(const std::string& token, const std::string& token_file,
                                      const char* env_name) {
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    std::string t;
    if (!in || !std::getline(in, t)) throw std::runtime_error("cannot read the token file " + token_file);
    while (!t.empty() && (t.back() == '\r' || t.back() == ' ')) t.pop_back();
    if (t.empty()) throw std::runtime_error("the token file " + token_file + " is empty");
    return t;
  }
  if (!token.empty()) return token;
  if (const char* e = std::getenv(env_name); e && *e) return std::string(e);
  return std::nullopt;
}

}  // namespace dispatch::gateways
