// The gateway token: from --token-file (kept out of `ps`), --token, or the environment.
#pragma once

#include <optional>
#include <string>

namespace dispatch::gateways {

// Throws std::runtime_error (start-up) when a file is named but unreadable or empty.
std::optional<std::string> load_token(const std::string& token, const std::string& token_file,
                                      const char* env_name);

}  // namespace dispatch::gateways
