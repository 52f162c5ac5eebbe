// sluicectl's command line: `sluicectl [--bpffs-root DIR] [-j] [-p] OBJECT COMMAND [ARGS]`, run
// in-process with the output captured, so tests drive exactly what the binary does.
#pragma once

#include <string>
#include <vector>

namespace sluice::ctl {

inline constexpr int exit_ok = 0;
inline constexpr int exit_error = 1;  // the command failed (maps missing, bad service, ...)
inline constexpr int exit_usage = 2;  // the command line is wrong

struct output {
  int code = exit_ok;
  std::string out;  // stdout: the table or JSON (JSON errors too)
  std::string err;  // stderr: errors without -j
};

/// Runs one command line (without argv[0]).
output run(const std::vector<std::string>& args);

}  // namespace sluice::ctl
