#include "gateways/log.hpp"

#include <chrono>
#include <cstdio>
#include <string>

#include <fmt/chrono.h>

namespace dispatch::gateways {

namespace {
std::string& program() {
  static std::string name = "gateway";
  return name;
}
}  // namespace

void set_log_program(std::string_view name) { program() = std::string(name); }

void log_line(std::string_view message) {
  using namespace std::chrono;
  const auto now = floor<milliseconds>(system_clock::now());
  // One fwrite per line so that lines from different threads do not interleave.
  const auto line = fmt::format("{:%Y-%m-%dT%H:%M:%S}Z {}: {}\n", now, program(), message);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace dispatch::gateways
