#include "geo/share_dir.hpp"

#include <system_error>

namespace dispatch::geo {

std::filesystem::path share_dir() {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec || exe.empty()) return {};
  const fs::path dir = exe.parent_path().parent_path() / "share" / "dispatch";
  if (!fs::is_directory(dir, ec)) return {};
  return dir.lexically_normal();
}

std::string shared_file(std::string_view relative) {
  const auto dir = share_dir();
  if (dir.empty()) return {};
  std::error_code ec;
  const auto p = dir / relative;
  return std::filesystem::exists(p, ec) ? p.string() : std::string();
}

}  // namespace dispatch::geo
