// sluicectl: see into the sluice datapath and explain any packet. The commands live in
// tools/ctl/ (a library, so tests run them in-process); this is only the process boundary.
#include <cstdio>
#include <string>
#include <vector>

#include "tools/ctl/commands.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const sluice::ctl::output o = sluice::ctl::run(args);
  std::fwrite(o.out.data(), 1, o.out.size(), stdout);
  std::fwrite(o.err.data(), 1, o.err.size(), stderr);
  return o.code;
}
