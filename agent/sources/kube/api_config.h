// Where the Kubernetes API server is and how to authenticate to it: the resolution of
// --k8s-api-server / --kubeconfig / $KUBECONFIG / in-cluster service-account settings into one
// api_config that the HTTP layer (http_client.h) consumes.
//
// Resolution order (first match wins; see resolve_api_config):
//  1. --k8s-api-server URL. Credentials come from the kubeconfig (--kubeconfig, else
//     $KUBECONFIG) when one is given, else from the service-account directory when it holds a
//     token (token file + ca.crt), else none (plain http, e.g. `kubectl proxy`). The URL may be
//     `unix:///path/to.sock` to reach a `kubectl proxy -u` socket (plain HTTP over the socket).
//     The flag exists because the in-cluster address is the `kubernetes` ClusterIP that this
//     agent implements itself.
//  2. --kubeconfig PATH (context: --kube-context, else current-context).
//  3. $KUBECONFIG (the first existing file of a colon-separated list; files are not merged).
//  4. In-cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT (IPv6 hosts are
//     bracketed), token file and ca.crt from the service-account directory.
// Kubeconfig fields supported: clusters[].cluster.{server, certificate-authority(-data),
// insecure-skip-tls-verify, tls-server-name}, users[].user.{token, tokenFile,
// client-certificate(-data), client-key(-data)}, contexts[].context.{cluster, user},
// current-context. Relative file paths are relative to the kubeconfig's directory. exec and
// auth-provider plugins, username/password and proxy-url are rejected with a config_error.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sluice::kube {

/// A bad or missing configuration, found at start-up. The message names the file and field; it
/// quotes names from the file, so its control characters are escaped (printable()): one line.
class config_error : public std::runtime_error {
 public:
  explicit config_error(const std::string& what);
};

/// Everything needed to open connections to one API server.
struct api_config {
  std::string server;       ///< base URL, "https://host:port" (a path prefix is kept)
  std::string unix_socket;  ///< connect through this Unix socket instead of TCP (optional)
  std::string ca_file;      ///< PEM bundle to verify the server with (path)
  std::string ca_data;      ///< PEM bundle to verify the server with (contents)
  bool insecure_skip_tls_verify = false;
  std::string tls_server_name;  ///< SNI and certificate name to expect, if not the URL's host
  std::string client_cert_file, client_cert_data;  ///< PEM client certificate (mTLS)
  std::string client_key_file, client_key_data;    ///< PEM private key of the certificate
  std::string token;                               ///< static bearer token
  std::string token_file;  ///< bearer token file; re-read periodically and wins over `token`
  std::string user_agent = "sluice-agent";
};

/// The command-line inputs of the resolution.
struct config_flags {
  std::string api_server;    ///< --k8s-api-server
  std::string kubeconfig;    ///< --kubeconfig
  std::string kube_context;  ///< --kube-context (empty: the kubeconfig's current-context)
};

/// The process environment inputs of the resolution (a parameter so tests need no real env).
struct config_env {
  std::optional<std::string> kubeconfig;    ///< $KUBECONFIG
  std::optional<std::string> service_host;  ///< $KUBERNETES_SERVICE_HOST
  std::optional<std::string> service_port;  ///< $KUBERNETES_SERVICE_PORT
  std::filesystem::path service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";

  /// Reads the three variables from the process environment; default service-account dir.
  static config_env from_process();
};

/// Applies the resolution order documented above. Throws config_error when nothing is
/// configured (not in a cluster and no flag/kubeconfig) or when the chosen source is invalid.
api_config resolve_api_config(const config_flags& flags, const config_env& env);

/// Reads one kubeconfig file; `context` empty means current-context. Throws config_error.
api_config load_kubeconfig(const std::filesystem::path& path, const std::string& context = {});

/// The same for the file's contents `text`; `path` names the file in messages and is where
/// relative certificate and token paths start from. Throws config_error, nothing else.
api_config parse_kubeconfig(std::string_view text, const std::filesystem::path& path,
                            const std::string& context = {});

/// Builds the in-cluster configuration, or nullopt when KUBERNETES_SERVICE_HOST or _PORT is
/// unset. Throws config_error when the variables are set but the token file is missing.
std::optional<api_config> in_cluster_config(const config_env& env);

/// Standard base64 (RFC 4648, padding optional, whitespace ignored). Throws config_error.
std::string base64_decode(std::string_view text);

}  // namespace sluice::kube
