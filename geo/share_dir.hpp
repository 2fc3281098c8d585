// Where the files the project ships are found at run time (the console, the maps, the
// example configuration): <the program's prefix>/share/dispatch, i.e. the folder
// ../share/dispatch beside the directory of the running executable (/proc/self/exe).
// An installed program finds <prefix>/share/dispatch; a program in the build tree finds
// <build>/share/dispatch, which the build stages (cmake/StageShare.cmake). Nothing of the
// source tree is compiled in.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace dispatch::geo {

// The folder, or empty when it does not exist.
std::filesystem::path share_dir();
// share_dir()/relative when that file or folder exists, else "".
std::string shared_file(std::string_view relative);

}  // namespace dispatch::geo
