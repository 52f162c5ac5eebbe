// sluicectl trace: a described packet through the *loaded* program (pinned by the agent as
// <root>/prog_<name>) against the live maps, with BPF_PROG_TEST_RUN, marked as a dry run so
// that the datapath writes nothing but its decision (lb_trace_v1). See maps/sluice_abi.h.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>

#include "tools/ctl/args.h"
#include "tools/ctl/packet.h"

namespace sluice::ctl {

/// What one dry run gave.
struct trace_run {
  std::string program;       // program name
  uint32_t prog_id = 0;
  uint32_t ifindex = 0;      // the hook's device (0 = none)
  bytes in;                  // the frame fed in
  bytes out;                 // the frame after the program (XDP: without its metadata)
  uint32_t retval = 0;       // TC_ACT_* / XDP_*
  std::optional<lb_trace> record;  // the datapath's decision (nullopt: none was recorded)
  std::string out_dev;       // name of record->ifindex, when the packet leaves by a device
};

/// Builds the packet, runs it, reads the record. Refuses a program that has no lb_trace_v1
/// map: one built before dry runs existed would write to the live maps.
std::expected<trace_run, std::string> run_trace(const std::string& root, const trace_request& r);

}  // namespace sluice::ctl
