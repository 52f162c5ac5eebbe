// What each command prints: a JSON document built from a snapshot (the -j output, keys in a
// fixed order) and the human table rendered from that same document, so both always agree.
// Pure: tested without root on snapshots built by hand.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "tools/ctl/args.h"
#include "tools/ctl/snapshot.h"
#include "tools/ctl/trace.h"

namespace sluice::ctl {

using json = nlohmann::ordered_json;

/// {"frontends": [...], "not_proxied": [...]}.
json service_list_json(const snapshot& s);
std::string service_list_table(const json& j);

/// [{"id", "address", "protocol", "state", "svc_id", "frontend", "service", "flows"}...];
/// flows counts FORWARD conntrack entries on the backend (the snapshot's ct must be read).
json backend_list_json(const snapshot& s);
std::string backend_list_table(const json& j);

/// Conntrack entries passing the filter (`svc_ids`: the resolved service), sorted by tuple.
json ct_list_json(const snapshot& s, const ct_filter& f, const std::set<uint32_t>* svc_ids);
std::string ct_list_table(const json& j);

/// {"verdicts": [{"reason", "drop", "packets", "bytes"}...], "services": [...]}.
json stats_json(const snapshot& s);
std::string stats_table(const json& j);

/// The trace's verdict, service, backend, conntrack decision and the rewritten packet; `s`
/// (services, backends, names) describes the ids the datapath recorded.
json trace_json(const trace_request& r, const trace_run& run, const snapshot& s);
std::string trace_table(const json& j);

/// Seconds from a CLOCK_MONOTONIC stamp to now, never negative.
uint64_t seconds_since(uint64_t now_ns, uint64_t stamp_ns);

}  // namespace sluice::ctl
