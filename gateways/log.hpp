// One line per event on stderr: UTC time, program, message.
#pragma once

#include <string_view>

#include <fmt/format.h>

namespace dispatch::gateways {

void set_log_program(std::string_view name);
void log_line(std::string_view message);

template <typename... Args>
void log(fmt::format_string<Args...> f, Args&&... args) {
  log_line(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace dispatch::gateways
