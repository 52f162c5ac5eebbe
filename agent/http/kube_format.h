// The exact bytes kube-proxy answers with (pkg/proxy/healthcheck): Go's time.Time String() for
// UTC, Go's %q quoting, the per-service health check body and the proxier /healthz and /livez
// bodies. Pure functions, so the formats are tested without sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::http {

using time_point = std::chrono::system_clock::time_point;

/// What Go's time.Time.String() prints for a UTC time:
/// "2025-03-04 10:25:41.5 +0000 UTC" (fraction without trailing zeros, omitted when zero).
/// std::nullopt is Go's zero time.Time: "0001-01-01 00:00:00 +0000 UTC".
/// Go appends " m=+<seconds>" when the value carries a monotonic clock reading (kube-proxy's
/// time.Now() values do); that suffix is a Go runtime detail and is not reproduced.
std::string go_time_string(std::optional<time_point> t);

/// Go's %q (strconv.Quote) for the strings kube-proxy quotes: double quotes around; quote,
/// backslash and control bytes escaped as Go does (\n, \t, ..., \x1f). Bytes >= 0x80 are
/// copied as they are (Kubernetes names are ASCII DNS labels).
std::string go_quote(std::string_view s);

/// Body of a healthCheckNodePort answer (service_health.go): tab-indented JSON, no trailing
/// newline.
std::string service_health_body(std::string_view namespace_, std::string_view name,
                                uint32_t local_endpoints, bool proxy_healthy);

/// Body of the proxier /healthz answer (proxier_health.go):
/// {"lastUpdated": "...","currentTime": "...", "nodeEligible": true}
std::string proxier_healthz_body(std::optional<time_point> last_updated, time_point current_time,
                                 bool node_eligible);

/// Body of the proxier /livez answer: /healthz without nodeEligible.
std::string proxier_livez_body(std::optional<time_point> last_updated, time_point current_time);

}  // namespace sluice::http
