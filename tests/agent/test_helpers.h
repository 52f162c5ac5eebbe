// Small helpers shared by the agent unit tests: addresses, fixture paths, temp directories and
// builders for model objects.
#pragma once

#include <fmt/format.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "agent/model/model.h"
#include "agent/planner/desired.h"

namespace sluice::test {

/// Parses an address that the test knows is valid; throws (failing the test) otherwise.
inline ip_addr ip(std::string_view text) {
  const std::optional<ip_addr> addr = parse_ip(text);
  if (!addr) {
    throw std::invalid_argument("bad test address " + std::string(text));
  }
  return *addr;
}

/// tests/fixtures/manifests/<rel>.
inline std::filesystem::path fixture(std::string_view rel) {
  return std::filesystem::path(SLUICE_FIXTURES_DIR) / "manifests" / rel;
}

/// Whole contents of a file; throws if it cannot be opened.
inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) {
    throw std::runtime_error("cannot open " + path.string());
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Writes (creates or truncates) a file.
inline void write_text(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) {
    throw std::runtime_error("cannot write " + path.string());
  }
}

/// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class temp_dir {
 public:
  temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "sluice-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    path_ = pattern;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// A TCP/UDP/SCTP service port whose targetPort equals its port.
inline service_port svc_port(std::string name, uint16_t port, uint8_t proto = IPPROTO_TCP) {
  return service_port{.name = std::move(name),
                      .protocol = proto,
                      .port = port,
                      .target_port = port,
                      .node_port = 0};
}

/// A ClusterIP service with the given cluster IPs (one per family) and ports.
inline service make_service(std::string ns, std::string name, std::vector<std::string> ips,
                            std::vector<service_port> ports) {
  service svc;
  svc.namespace_ = std::move(ns);
  svc.name = std::move(name);
  for (const std::string& text : ips) {
    svc.cluster_ips.push_back(ip(text));
  }
  svc.ports = std::move(ports);
  return svc;
}

/// An endpoint with one address and the given (possibly nil) conditions.
inline endpoint make_endpoint(std::string_view addr, std::optional<bool> ready = std::nullopt,
                              std::optional<bool> serving = std::nullopt,
                              std::optional<bool> terminating = std::nullopt) {
  endpoint ep;
  ep.addresses.push_back(ip(addr));
  ep.ready = ready;
  ep.serving = serving;
  ep.terminating = terminating;
  return ep;
}

/// A slice port with a name and a port number.
inline endpoint_port slice_port(std::string name, uint16_t port, uint8_t proto = IPPROTO_TCP) {
  return endpoint_port{.name = std::move(name), .port = port, .protocol = proto};
}

/// An EndpointSlice owned by service `svc` (label kubernetes.io/service-name).
inline endpoint_slice make_slice(std::string ns, std::string name, std::string svc,
                                 slice_address_type type, std::vector<endpoint> endpoints,
                                 std::vector<endpoint_port> ports) {
  endpoint_slice slice;
  slice.namespace_ = std::move(ns);
  slice.name = std::move(name);
  slice.service_name = svc;
  slice.labels[std::string(label_service_name)] = svc;
  slice.address_type = type;
  slice.endpoints = std::move(endpoints);
  slice.ports = std::move(ports);
  return slice;
}

inline void add(cluster& state, service svc) {
  const object_key key = svc.key();
  state.services[key] = std::move(svc);
}

inline void add(cluster& state, endpoint_slice slice) {
  const object_key key = slice.key();
  state.endpoint_slices[key] = std::move(slice);
}

/// True if `text` contains every one of `parts`.
inline bool contains_all(std::string_view text, std::initializer_list<std::string_view> parts) {
  for (const std::string_view part : parts) {
    if (text.find(part) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

/// "10.244.1.7:8080" or "[fd00::1]:8080", with " (terminating)" when flagged.
inline std::string describe(const desired_backend& b) {
  const std::string addr =
      b.addr.family == ip_family::v6 ? "[" + format_ip(b.addr) + "]" : format_ip(b.addr);
  return fmt::format("{}:{}{}", addr, b.port, b.terminating ? " (terminating)" : "");
}

/// "10.96.0.10:53/UDP kube-system/kube-dns:dns affinity=0 -> a, b" (or "-> reject").
inline std::string describe(const desired_frontend& f) {
  const std::string vip =
      f.vip.family == ip_family::v6 ? "[" + format_ip(f.vip) + "]" : format_ip(f.vip);
  const std::string_view proto = f.proto == IPPROTO_TCP   ? "TCP"
                                 : f.proto == IPPROTO_UDP ? "UDP"
                                                          : "?";
  std::string backends;
  for (const desired_backend& b : f.backends) {
    backends += (backends.empty() ? "" : ", ") + describe(b);
  }
  return fmt::format("{}:{}/{} {} affinity={} -> {}", vip, f.port, proto, f.name,
                     f.affinity_timeout_s, backends.empty() ? "reject" : backends);
}

/// One describe() line per frontend, in the planner's order, each ending in a newline
/// (a std::string so that doctest prints both sides when a comparison fails).
inline std::string describe(const desired_state& state) {
  std::string out;
  for (const desired_frontend& f : state.frontends) {
    out += describe(f) + "\n";
  }
  return out;
}

}  // namespace sluice::test
