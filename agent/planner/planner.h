// The planner: model (Services, EndpointSlices) + node identity -> desired datapath state,
// following kube-proxy's semantics (reference/kube-semantics.md §1.2, §1.3). Pure: no I/O,
// no clock, no logging; the same input always gives the same output.
#pragma once

#include <string>

#include "agent/model/model.h"
#include "agent/planner/desired.h"

namespace sluice {

/// Identity of the node the agent runs on.
struct plan_options {
  std::string node_name;  ///< our Node's name (for Local traffic policies; not used yet)
};

/// Computes the ClusterIP frontends and their usable backends.
///
/// Services skipped: type ExternalName, headless (clusterIP None), no cluster IP, and those
/// labelled service.kubernetes.io/service-proxy-name or service.kubernetes.io/headless.
/// For each remaining service, each of its cluster IPs (one per family) and each TCP or UDP
/// port (SCTP is not handled yet) gives one frontend named "namespace/service:portname".
///
/// Backends come from the service's EndpointSlices (same namespace, label
/// kubernetes.io/service-name, addressType of the frontend's family, no proxy-name/headless
/// label), joined on (port name, protocol); slice ports with a nil name or nil/0 port are
/// ignored. Each endpoint contributes addresses[0] (endpoints without addresses are skipped),
/// deduplicated by (address, port) across slices, preferring a non-terminating copy. The
/// usable set is the ready endpoints; if there are none, the serving && terminating ones,
/// flagged terminating. A frontend with no usable backend is kept with an empty list (the
/// datapath rejects its traffic).
///
/// Frontends are sorted by (vip, port, proto), backends are sorted. If two services claim the
/// same (vip, port, proto), which the API server would never allow but manifests can, the
/// first in (namespace, name) order wins and the other frontend is dropped.
desired_state plan(const cluster& state, const plan_options& options);

}  // namespace sluice
