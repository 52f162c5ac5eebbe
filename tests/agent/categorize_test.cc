// kube-proxy's TestCategorizeEndpoints (pkg/proxy/topology_test.go) as a table over
// categorize_endpoints(). Each row checks the cluster set, the local set (nullopt = the port
// never uses that set, kube-proxy's nil), all reachable endpoints and hasAnyEndpoints.
//
// Differences from the Go table, all because sluice follows kube-proxy >= 1.33:
// - rows with the topology annotation "disabled", empty or misspelt expected no filtering;
//   since KEP-4444 hints are honoured whatever the annotation says, so they filter here;
// - the rows with the ProxyTerminatingEndpoints gate off are left out (the gate is GA and
//   locked on);
// - the PreferSameNode rows at the end are ours, written from topologyModeFromHints.
// As in the Go table, a struct literal leaves `serving` false unless the row sets it.
#include <doctest/doctest.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/planner/topology.h"
#include "test_helpers.h"

namespace sluice {

namespace {

constexpr const char* this_node = "node-a";

struct ep_row {
  std::string addr_port;  // "10.1.2.3:80"
  std::vector<std::string> zones = {};
  std::vector<std::string> nodes = {};
  bool ready = false;
  bool serving = false;
  bool terminating = false;
  bool local = false;
};

using ep_set = std::set<std::string>;

struct categorize_row {
  const char* name;
  std::string zone;  // our node's zone label ("" = none)
  port_policy policy;
  std::vector<ep_row> endpoints;
  std::optional<ep_set> cluster;
  std::optional<ep_set> local;
  ep_set all = {};           // only read when both sets are used
  bool only_remote = false;  // hasAnyEndpoints although nothing is reachable from here
};

port_endpoint to_port_endpoint(const ep_row& row) {
  const size_t colon = row.addr_port.rfind(':');
  port_endpoint ep;
  ep.addr = test::ip(row.addr_port.substr(0, colon));
  ep.port = static_cast<uint16_t>(std::stoi(row.addr_port.substr(colon + 1)));
  ep.ready = row.ready;
  ep.serving = row.serving;
  ep.terminating = row.terminating;
  ep.local = row.local;
  ep.zone_hints = row.zones;
  ep.node_hints = row.nodes;
  return ep;
}

ep_set names(const std::vector<desired_backend>& backends) {
  ep_set out;
  for (const desired_backend& b : backends) {
    out.insert(format_ip(b.addr) + ":" + std::to_string(b.port));
  }
  return out;
}

const port_policy cluster_only{};
const port_policy itp_local{.internal_local = true};
const port_policy etp_local_np{.external_local = true, .externally_accessible = true};
const port_policy itp_local_np{.internal_local = true, .externally_accessible = true};
const port_policy both_local_np{
    .internal_local = true, .external_local = true, .externally_accessible = true};
const port_policy etp_local_internal_only{.external_local = true};

// Four ready endpoints hinted for zones a, b, c, a (the Go table's usual set).
std::vector<ep_row> abca() {
  return {{.addr_port = "10.1.2.3:80", .zones = {"zone-a"}, .ready = true},
          {.addr_port = "10.1.2.4:80", .zones = {"zone-b"}, .ready = true},
          {.addr_port = "10.1.2.5:80", .zones = {"zone-c"}, .ready = true},
          {.addr_port = "10.1.2.6:80", .zones = {"zone-a"}, .ready = true}};
}

const ep_set zone_a_of_abca{"10.1.2.3:80", "10.1.2.6:80"};
const ep_set all_of_abca{"10.1.2.3:80", "10.1.2.4:80", "10.1.2.5:80", "10.1.2.6:80"};

std::vector<categorize_row> rows() {
  return {
      {"hints enabled, hints annotation == auto", "zone-a", cluster_only, abca(), zone_a_of_abca,
       std::nullopt},
      {"hints annotation == disabled (1.33+: hints honoured)", "zone-a", cluster_only, abca(),
       zone_a_of_abca, std::nullopt},
      {"hints annotation == aUto (1.33+: hints honoured)", "zone-a", cluster_only, abca(),
       zone_a_of_abca, std::nullopt},
      {"hints annotation empty (1.33+: hints honoured)", "zone-a", cluster_only, abca(),
       zone_a_of_abca, std::nullopt},
      {"externalTrafficPolicy: Local, topology ignored for Local endpoints",
       "zone-a",
       etp_local_np,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-a"}, .ready = true, .local = true},
        {.addr_port = "10.1.2.4:80", .zones = {"zone-b"}, .ready = true, .local = true},
        {.addr_port = "10.1.2.5:80", .zones = {"zone-c"}, .ready = true},
        {.addr_port = "10.1.2.6:80", .zones = {"zone-a"}, .ready = true}},
       ep_set{"10.1.2.3:80", "10.1.2.6:80"},
       ep_set{"10.1.2.3:80", "10.1.2.4:80"},
       {"10.1.2.3:80", "10.1.2.4:80", "10.1.2.6:80"}},
      {"internalTrafficPolicy: Local, topology ignored for Local endpoints",
       "zone-a",
       itp_local_np,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-a"}, .ready = true, .local = true},
        {.addr_port = "10.1.2.4:80", .zones = {"zone-b"}, .ready = true, .local = true},
        {.addr_port = "10.1.2.5:80", .zones = {"zone-c"}, .ready = true},
        {.addr_port = "10.1.2.6:80", .zones = {"zone-a"}, .ready = true}},
       ep_set{"10.1.2.3:80", "10.1.2.6:80"},
       ep_set{"10.1.2.3:80", "10.1.2.4:80"},
       {"10.1.2.3:80", "10.1.2.4:80", "10.1.2.6:80"}},
      {"empty node labels",
       "",
       cluster_only,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-a"}, .ready = true}},
       ep_set{"10.1.2.3:80"},
       std::nullopt},
      {"node in different zone, no endpoint filtering",
       "zone-b",
       cluster_only,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-a"}, .ready = true}},
       ep_set{"10.1.2.3:80"},
       std::nullopt},
      {"normal endpoint filtering, auto annotation", "zone-a", cluster_only, abca(), zone_a_of_abca,
       std::nullopt},
      {"unready endpoint",
       "zone-a",
       cluster_only,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-a"}, .ready = true},
        {.addr_port = "10.1.2.4:80", .zones = {"zone-b"}, .ready = true},
        {.addr_port = "10.1.2.5:80", .zones = {"zone-c"}, .ready = true},
        {.addr_port = "10.1.2.6:80", .zones = {"zone-a"}, .ready = false}},
       ep_set{"10.1.2.3:80"},
       std::nullopt},
      {"only unready endpoints in same zone (should not filter)",
       "zone-a",
       cluster_only,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-a"}, .ready = false},
        {.addr_port = "10.1.2.4:80", .zones = {"zone-b"}, .ready = true},
        {.addr_port = "10.1.2.5:80", .zones = {"zone-c"}, .ready = true},
        {.addr_port = "10.1.2.6:80", .zones = {"zone-a"}, .ready = false}},
       ep_set{"10.1.2.4:80", "10.1.2.5:80"},
       std::nullopt},
      {"normal endpoint filtering, Auto annotation", "zone-a", cluster_only, abca(), zone_a_of_abca,
       std::nullopt},
      {"hintsAnnotation empty (1.33+: hints honoured)", "zone-a", cluster_only, abca(),
       zone_a_of_abca, std::nullopt},
      {"hintsAnnotation disabled (1.33+: hints honoured)", "zone-a", cluster_only, abca(),
       zone_a_of_abca, std::nullopt},
      {"missing hints, no filtering applied",
       "zone-a",
       cluster_only,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-a"}, .ready = true},
        {.addr_port = "10.1.2.4:80", .zones = {"zone-b"}, .ready = true},
        {.addr_port = "10.1.2.5:80", .ready = true},
        {.addr_port = "10.1.2.6:80", .zones = {"zone-a"}, .ready = true}},
       all_of_abca,
       std::nullopt},
      {"multiple hints per endpoint, filtering includes any endpoint with zone included",
       "zone-c",
       cluster_only,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-a", "zone-b", "zone-c"}, .ready = true},
        {.addr_port = "10.1.2.4:80", .zones = {"zone-b", "zone-c"}, .ready = true},
        {.addr_port = "10.1.2.5:80", .zones = {"zone-b", "zone-d"}, .ready = true},
        {.addr_port = "10.1.2.6:80", .zones = {"zone-c"}, .ready = true}},
       ep_set{"10.1.2.3:80", "10.1.2.4:80", "10.1.2.6:80"},
       std::nullopt},
      {"conflicting topology and localness require merging allEndpoints",
       "zone-a",
       etp_local_np,
       {{.addr_port = "10.0.0.0:80", .zones = {"zone-a"}, .ready = true, .local = true},
        {.addr_port = "10.0.0.1:80", .zones = {"zone-b"}, .ready = true, .local = true},
        {.addr_port = "10.0.0.2:80", .zones = {"zone-a"}, .ready = true},
        {.addr_port = "10.0.0.3:80", .zones = {"zone-b"}, .ready = true}},
       ep_set{"10.0.0.0:80", "10.0.0.2:80"},
       ep_set{"10.0.0.0:80", "10.0.0.1:80"},
       {"10.0.0.0:80", "10.0.0.1:80", "10.0.0.2:80"}},
      {"internalTrafficPolicy: Local, with empty endpoints",
       "",
       itp_local,
       {},
       std::nullopt,
       ep_set{}},
      {"internalTrafficPolicy: Local, but all endpoints are remote",
       "",
       itp_local,
       {{.addr_port = "10.0.0.0:80", .ready = true}, {.addr_port = "10.0.0.1:80", .ready = true}},
       std::nullopt,
       ep_set{},
       {},
       true},
      {"internalTrafficPolicy: Local, all endpoints are local",
       "",
       itp_local,
       {{.addr_port = "10.0.0.0:80", .ready = true, .local = true},
        {.addr_port = "10.0.0.1:80", .ready = true, .local = true}},
       std::nullopt,
       ep_set{"10.0.0.0:80", "10.0.0.1:80"}},
      {"internalTrafficPolicy: Local, some endpoints are local",
       "",
       itp_local,
       {{.addr_port = "10.0.0.0:80", .ready = true, .local = true},
        {.addr_port = "10.0.0.1:80", .ready = true}},
       std::nullopt,
       ep_set{"10.0.0.0:80"}},
      {"Cluster traffic policy, endpoints not Ready",
       "",
       cluster_only,
       {{.addr_port = "10.0.0.0:80"}, {.addr_port = "10.0.0.1:80"}},
       ep_set{},
       std::nullopt},
      {"Cluster traffic policy, some endpoints are Ready",
       "",
       cluster_only,
       {{.addr_port = "10.0.0.0:80"}, {.addr_port = "10.0.0.1:80", .ready = true}},
       ep_set{"10.0.0.1:80"},
       std::nullopt},
      {"Cluster traffic policy, PTE enabled, all endpoints are terminating",
       "",
       cluster_only,
       {{.addr_port = "10.0.0.0:80", .serving = true, .terminating = true, .local = true},
        {.addr_port = "10.0.0.1:80", .serving = true, .terminating = true}},
       ep_set{"10.0.0.0:80", "10.0.0.1:80"},
       std::nullopt},
      {"iTP: Local, eTP: Cluster, some endpoints local",
       "",
       itp_local_np,
       {{.addr_port = "10.0.0.0:80", .ready = true, .local = true},
        {.addr_port = "10.0.0.1:80", .ready = true}},
       ep_set{"10.0.0.0:80", "10.0.0.1:80"},
       ep_set{"10.0.0.0:80"},
       {"10.0.0.0:80", "10.0.0.1:80"}},
      {"iTP: Cluster, eTP: Local, some endpoints local",
       "",
       etp_local_np,
       {{.addr_port = "10.0.0.0:80", .ready = true, .local = true},
        {.addr_port = "10.0.0.1:80", .ready = true}},
       ep_set{"10.0.0.0:80", "10.0.0.1:80"},
       ep_set{"10.0.0.0:80"},
       {"10.0.0.0:80", "10.0.0.1:80"}},
      {"iTP: Local, eTP: Local, some endpoints local",
       "",
       both_local_np,
       {{.addr_port = "10.0.0.0:80", .ready = true, .local = true},
        {.addr_port = "10.0.0.1:80", .ready = true}},
       ep_set{"10.0.0.0:80", "10.0.0.1:80"},
       ep_set{"10.0.0.0:80"},
       {"10.0.0.0:80", "10.0.0.1:80"}},
      {"iTP: Local, eTP: Local, all endpoints remote",
       "",
       both_local_np,
       {{.addr_port = "10.0.0.0:80", .ready = true}, {.addr_port = "10.0.0.1:80", .ready = true}},
       ep_set{"10.0.0.0:80", "10.0.0.1:80"},
       ep_set{},
       {"10.0.0.0:80", "10.0.0.1:80"}},
      {"iTP: Local, eTP: Local, PTE enabled, all endpoints remote and terminating",
       "",
       both_local_np,
       {{.addr_port = "10.0.0.0:80", .serving = true, .terminating = true},
        {.addr_port = "10.0.0.1:80", .serving = true, .terminating = true}},
       ep_set{"10.0.0.0:80", "10.0.0.1:80"},
       ep_set{},
       {"10.0.0.0:80", "10.0.0.1:80"},
       true},
      {"iTP: Cluster, eTP: Local, PTE enabled, with terminating endpoints",
       "",
       etp_local_np,
       {{.addr_port = "10.0.0.0:80", .ready = true},
        {.addr_port = "10.0.0.1:80", .local = true},
        {.addr_port = "10.0.0.2:80", .serving = true, .terminating = true, .local = true},
        {.addr_port = "10.0.0.3:80", .serving = true, .terminating = true}},
       ep_set{"10.0.0.0:80"},
       ep_set{"10.0.0.2:80"},
       {"10.0.0.0:80", "10.0.0.2:80"}},
      {"externalTrafficPolicy ignored if not externally accessible",
       "",
       etp_local_internal_only,
       {{.addr_port = "10.0.0.0:80", .ready = true},
        {.addr_port = "10.0.0.1:80", .ready = true, .local = true}},
       ep_set{"10.0.0.0:80", "10.0.0.1:80"},
       std::nullopt},
      {"no cluster endpoints for iTP:Local internal-only service",
       "",
       itp_local,
       {{.addr_port = "10.0.0.0:80", .ready = true},
        {.addr_port = "10.0.0.1:80", .ready = true, .local = true}},
       std::nullopt,
       ep_set{"10.0.0.1:80"}},

      // PreferSameNode (trafficDistribution, KEP-3015): node hints win over zone hints.
      {"PreferSameNode: every ready endpoint has a node hint, one for this node",
       "zone-a",
       cluster_only,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-a"}, .nodes = {"node-a"}, .ready = true},
        {.addr_port = "10.1.2.4:80", .zones = {"zone-a"}, .nodes = {"node-b"}, .ready = true},
        {.addr_port = "10.1.2.5:80", .zones = {"zone-b"}, .nodes = {"node-c"}, .ready = true}},
       ep_set{"10.1.2.3:80"},
       std::nullopt},
      {"PreferSameNode: no node hint names this node, zone hints apply",
       "zone-a",
       cluster_only,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-a"}, .nodes = {"node-d"}, .ready = true},
        {.addr_port = "10.1.2.4:80", .zones = {"zone-a"}, .nodes = {"node-b"}, .ready = true},
        {.addr_port = "10.1.2.5:80", .zones = {"zone-b"}, .nodes = {"node-c"}, .ready = true}},
       ep_set{"10.1.2.3:80", "10.1.2.4:80"},
       std::nullopt},
      {"PreferSameNode: one ready endpoint without a node hint, zone hints apply",
       "zone-b",
       cluster_only,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-a"}, .nodes = {"node-a"}, .ready = true},
        {.addr_port = "10.1.2.4:80", .zones = {"zone-b"}, .ready = true}},
       ep_set{"10.1.2.4:80"},
       std::nullopt},
      {"PreferSameNode: unhinted endpoints that are not ready do not count",
       "zone-a",
       cluster_only,
       {{.addr_port = "10.1.2.3:80", .nodes = {"node-a"}, .ready = true},
        {.addr_port = "10.1.2.4:80", .nodes = {"node-b"}, .ready = true},
        {.addr_port = "10.1.2.5:80", .serving = true, .terminating = true}},
       ep_set{"10.1.2.3:80"},
       std::nullopt},
      {"PreferSameNode: the local set is not topology-filtered",
       "",
       etp_local_np,
       {{.addr_port = "10.1.2.3:80", .nodes = {"node-a"}, .ready = true},
        {.addr_port = "10.1.2.4:80", .nodes = {"node-b"}, .ready = true, .local = true}},
       ep_set{"10.1.2.3:80"},
       ep_set{"10.1.2.4:80"},
       {"10.1.2.3:80", "10.1.2.4:80"}},
      {"nothing ready: terminating fallback ignores topology",
       "zone-a",
       cluster_only,
       {{.addr_port = "10.1.2.3:80", .zones = {"zone-b"}, .serving = true, .terminating = true},
        {.addr_port = "10.1.2.4:80", .zones = {"zone-a"}, .serving = true, .terminating = true}},
       ep_set{"10.1.2.3:80", "10.1.2.4:80"},
       std::nullopt},
  };
}

}  // namespace

TEST_CASE("categorize_endpoints: kube-proxy's TestCategorizeEndpoints table") {
  const std::vector<categorize_row> table = rows();
  CHECK(table.size() == 38);
  for (const categorize_row& row : table) {
    CAPTURE(row.name);
    std::vector<port_endpoint> endpoints;
    for (const ep_row& ep : row.endpoints) {
      endpoints.push_back(to_port_endpoint(ep));
    }
    const categorized_endpoints got =
        categorize_endpoints(endpoints, row.policy, this_node, row.zone);

    REQUIRE(got.cluster.has_value() == row.cluster.has_value());
    if (row.cluster) {
      CHECK(names(*got.cluster) == *row.cluster);
    }
    REQUIRE(got.local.has_value() == row.local.has_value());
    if (row.local) {
      CHECK(names(*got.local) == *row.local);
    }
    const ep_set want_all = row.cluster && !row.local   ? *row.cluster
                            : row.local && !row.cluster ? *row.local
                                                        : row.all;
    CHECK(names(got.all_reachable) == want_all);
    CHECK(got.has_any == (!want_all.empty() || row.only_remote));
  }
}

TEST_CASE("categorize_endpoints: fallback endpoints are flagged terminating") {
  const std::vector<ep_row> rows_in = {
      {.addr_port = "10.0.0.1:80", .serving = true, .terminating = true, .local = true}};
  std::vector<port_endpoint> endpoints;
  for (const ep_row& ep : rows_in) {
    endpoints.push_back(to_port_endpoint(ep));
  }
  const categorized_endpoints got = categorize_endpoints(endpoints, both_local_np, this_node, "");
  REQUIRE(got.cluster);
  REQUIRE(got.local);
  CHECK(*got.cluster == std::vector<desired_backend>{{test::ip("10.0.0.1"), 80, true}});
  CHECK(*got.local == std::vector<desired_backend>{{test::ip("10.0.0.1"), 80, true}});
  CHECK(got.all_reachable == std::vector<desired_backend>{{test::ip("10.0.0.1"), 80, true}});
}

TEST_CASE("topology_mode_from_hints: picks node, then zone, then none") {
  const std::vector<std::string> node_a{"node-a"};
  const std::vector<std::string> zone_a{"zone-a"};
  port_endpoint hinted;
  hinted.node_hints = node_a;
  hinted.zone_hints = zone_a;
  const std::vector<port_endpoint> one{hinted};
  CHECK(topology_mode_from_hints(one, "node-a", "zone-a") == topology_mode::prefer_same_node);
  CHECK(topology_mode_from_hints(one, "node-b", "zone-a") == topology_mode::prefer_same_zone);
  CHECK(topology_mode_from_hints(one, "node-b", "zone-b") == topology_mode::none);
  CHECK(topology_mode_from_hints(one, "node-b", "") == topology_mode::none);
  CHECK(topology_mode_from_hints({}, "node-a", "zone-a") == topology_mode::none);
}

}  // namespace sluice
