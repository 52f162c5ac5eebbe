// Decoder for Kubernetes manifests (YAML or JSON): the file source of standalone mode
// (`sluice-agent --manifests DIR`) and of the tests. Objects are decoded by decode_object()
// (agent/sources/decode.h), the same decoder the API source uses; this file only reads files,
// turns YAML into JSON and reports errors with file and line.
//
// What is accepted:
// - YAML or JSON (JSON is read as YAML), several documents separated by `---`. Plain scalars
//   follow the YAML 1.2 core schema (null, true/false, integers, floats), plus yes/no/on/off as
//   booleans as kubectl reads them; quoted scalars are always strings;
// - kinds Service, Endpoints, Pod, Node (apiVersion v1) and EndpointSlice (discovery.k8s.io/v1);
// - kind List and the typed lists ServiceList / EndpointSliceList / EndpointsList / PodList /
//   NodeList with `items` (items of a typed list may omit kind and apiVersion, as the API
//   server's list responses do).
// Other kinds (and kinds of the same name in other API groups, e.g. Knative's Service) are
// ignored and counted. EndpointSlices without the kubernetes.io/service-name label are ignored
// and counted, as kube-proxy ignores them. Unset namespaces become "default".
//
// A malformed object (wrong type, bad IP, port out of range, missing name, unknown protocol,
// ...) yields one error naming the source, line, kind, namespace/name and field, and is skipped;
// the other objects of the same file still load. A file that is not valid YAML yields one error
// and contributes nothing. An object defined twice (same kind and namespace/name) keeps its
// first definition (files are read in name order) and the later one is an error.
//
// What controllers would add in a cluster (slices for selectors and legacy Endpoints, cluster
// IPs, node ports) is not done here: see derive.h.
#pragma once

#include <cstddef>
#include <expected>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "agent/model/model.h"

namespace sluice {

/// Objects decoded from one manifest file or a directory of them, plus what went wrong.
struct decode_result {
  /// Services, EndpointSlices, Pods and legacy Endpoints that decoded cleanly (self_node is
  /// left unset: the caller picks its own Node from `nodes`).
  cluster objects;
  std::map<std::string, node> nodes;  ///< every Node that decoded cleanly, by name
  std::vector<std::string> errors;    ///< one human-readable line per rejected object or file
  std::size_t loaded = 0;             ///< objects now in `objects`
  std::size_t ignored = 0;            ///< objects of other kinds, slices without a service name
  std::size_t rejected = 0;           ///< malformed or duplicate objects (each has an error)
};

/// Decodes one manifest text. `source_name` (usually the file path) prefixes every error.
/// Never throws; parse failures become entries in `errors`.
decode_result decode_manifest(std::string_view text, std::string_view source_name);

/// True if a directory entry with this name is read as a manifest: it ends in ".yaml",
/// ".yml" or ".json" and is not hidden (leading '.', which also covers editor swap and lock
/// files such as ".web.yaml.swp" and ".#web.yaml"). Backups such as "web.yaml~" do not match.
bool is_manifest_file_name(std::string_view file_name);

/// Reads every manifest file (is_manifest_file_name, regular file or symlink to one) directly in
/// `dir`, in byte-wise name order, and merges them into one result. Subdirectories are not
/// entered. A file that cannot be read is an error entry; the other files still load.
/// Returns an error code only when the directory itself cannot be listed, so that a caller can
/// tell "directory gone" from "directory empty" (and keep the last good state).
std::expected<decode_result, std::error_code> load_manifest_dir(const std::filesystem::path& dir);

}  // namespace sluice
