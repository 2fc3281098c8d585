// Some tests also read a larger set of real public data (gpsd's NMEA captures, DataV's
// district outlines) from a `shared/data` folder beside the checkout (DISPATCH_SHARED_DIR,
// a CMake cache variable). A plain clone has none: those tests check for their file first
// and skip, saying what is missing; everything else runs on what the repository holds.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>

namespace dispatch::test {

inline bool shared_data_present(const std::filesystem::path& p) {
  std::error_code ec;
  if (std::filesystem::exists(p, ec)) return true;
  MESSAGE("SKIPPED: needs " << p.string()
                            << ", from the shared data set beside the checkout, which this machine does not have "
                               "(a plain clone has none; -DDISPATCH_SHARED_DIR=... points the tests at it)");
  return false;
}

}  // namespace dispatch::test

// Ends the current test case or subcase (as passed, with the message above) when `path` is absent.
#define DISPATCH_NEEDS_SHARED_DATA(path) \
  if (!::dispatch::test::shared_data_present(path)) return
