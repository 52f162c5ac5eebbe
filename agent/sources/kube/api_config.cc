// Kubeconfig / in-cluster / flag resolution into an api_config (see api_config.h).
#include "agent/sources/kube/api_config.h"

#include "agent/sources/decode.h"  // printable()

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <system_error>

namespace sluice::kube {

config_error::config_error(const std::string& what) : std::runtime_error(printable(what)) {}

namespace {

namespace fs = std::filesystem;

std::optional<std::string> getenv_opt(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    return std::nullopt;
  }
  return std::string(v);
}

// A kubeconfig string field; absent or null gives "". Non-scalar values are errors because a
// silently ignored mapping would hide a typo'd indentation.
std::string str_field(const YAML::Node& node, const char* key, const std::string& where) {
  const YAML::Node v = node[key];
  if (!v || v.IsNull()) {
    return {};
  }
  if (!v.IsScalar()) {
    throw config_error(fmt::format("{}: field {} must be a string", where, key));
  }
  return v.as<std::string>();
}

bool bool_field(const YAML::Node& node, const char* key, const std::string& where) {
  const YAML::Node v = node[key];
  if (!v || v.IsNull()) {
    return false;
  }
  try {
    return v.as<bool>();
  } catch (const YAML::Exception&) {
    throw config_error(fmt::format("{}: field {} must be true or false", where, key));
  }
}

// Finds `name` in a kubeconfig list (clusters, users, contexts) and returns its inner mapping
// (the value of `inner`, e.g. "cluster").
YAML::Node find_named(const YAML::Node& root, const char* list, const char* inner,
                      const std::string& name, const std::string& file) {
  const YAML::Node items = root[list];
  if (items && items.IsSequence()) {
    for (const YAML::Node& item : items) {
      if (item.IsMap() && item["name"] && item["name"].IsScalar() &&
          item["name"].as<std::string>() == name) {
        const YAML::Node v = item[inner];
        if (!v || !v.IsMap()) {
          throw config_error(
              fmt::format("{}: {} entry \"{}\" has no {} mapping", file, list, name, inner));
        }
        return v;
      }
    }
  }
  throw config_error(fmt::format("{}: no {} entry named \"{}\"", file, list, name));
}

std::string resolve_path(const std::string& p, const fs::path& base_dir) {
  if (p.empty() || fs::path(p).is_absolute()) {
    return p;
  }
  return (base_dir / p).lexically_normal().string();
}

void require_file(const std::string& p, const std::string& where, const char* field) {
  std::error_code ec;
  if (!p.empty() && !fs::is_regular_file(p, ec)) {
    throw config_error(fmt::format("{}: {} {}: no such file", where, field, p));
  }
}

}  // namespace

config_env config_env::from_process() {
  config_env env;
  env.kubeconfig = getenv_opt("KUBECONFIG");
  env.service_host = getenv_opt("KUBERNETES_SERVICE_HOST");
  env.service_port = getenv_opt("KUBERNETES_SERVICE_PORT");
  return env;
}

std::string base64_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 3 / 4);
  unsigned acc = 0;
  int bits = 0;
  bool padding = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else if (c == '=') {
      padding = true;
      continue;
    } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      continue;
    } else {
      // The offset, not the character: the text is key material.
      throw config_error(fmt::format("invalid base64 character at offset {}", i));
    }
    if (padding) {
      throw config_error("invalid base64: data after padding");
    }
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bits >= 6) {
    throw config_error("invalid base64: truncated input");
  }
  return out;
}

api_config load_kubeconfig(const fs::path& path, const std::string& context) {
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {
    throw config_error(fmt::format("kubeconfig {}: cannot read file", path.string()));
  }
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return parse_kubeconfig(text, path, context);
}

// parse_kubeconfig() without its last line of defence.
static api_config parse_kubeconfig_text(std::string_view text, const fs::path& path,
                                        const std::string& context) {
  const std::string file = path.string();
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw config_error(fmt::format("kubeconfig {}: {}", file, e.what()));
  }
  if (!root.IsMap()) {
    throw config_error(fmt::format("kubeconfig {}: not a YAML mapping", file));
  }
  const fs::path base_dir = fs::absolute(path).parent_path();

  std::string ctx_name = context;
  if (ctx_name.empty()) {
    ctx_name = str_field(root, "current-context", file);
    if (ctx_name.empty()) {
      throw config_error(
          fmt::format("kubeconfig {}: no current-context and no --kube-context given", file));
    }
  }
  const YAML::Node ctx = find_named(root, "contexts", "context", ctx_name, file);
  const std::string where_ctx = fmt::format("kubeconfig {} context \"{}\"", file, ctx_name);
  const std::string cluster_name = str_field(ctx, "cluster", where_ctx);
  if (cluster_name.empty()) {
    throw config_error(fmt::format("{}: no cluster", where_ctx));
  }
  const YAML::Node cluster = find_named(root, "clusters", "cluster", cluster_name, file);
  const std::string where_cl = fmt::format("kubeconfig {} cluster \"{}\"", file, cluster_name);

  api_config cfg;
  cfg.server = str_field(cluster, "server", where_cl);
  if (cfg.server.empty()) {
    throw config_error(fmt::format("{}: no server", where_cl));
  }
  cfg.ca_file = resolve_path(str_field(cluster, "certificate-authority", where_cl), base_dir);
  const std::string ca_data = str_field(cluster, "certificate-authority-data", where_cl);
  if (!ca_data.empty()) {
    try {
      cfg.ca_data = base64_decode(ca_data);
    } catch (const config_error& e) {
      throw config_error(fmt::format("{}: certificate-authority-data: {}", where_cl, e.what()));
    }
  }
  require_file(cfg.ca_file, where_cl, "certificate-authority");
  cfg.insecure_skip_tls_verify = bool_field(cluster, "insecure-skip-tls-verify", where_cl);
  cfg.tls_server_name = str_field(cluster, "tls-server-name", where_cl);
  if (!str_field(cluster, "proxy-url", where_cl).empty()) {
    throw config_error(fmt::format("{}: proxy-url is not supported", where_cl));
  }

  const std::string user_name = str_field(ctx, "user", where_ctx);
  if (!user_name.empty()) {
    const YAML::Node user = find_named(root, "users", "user", user_name, file);
    const std::string where_u = fmt::format("kubeconfig {} user \"{}\"", file, user_name);
    if (user["exec"]) {
      throw config_error(fmt::format(
          "{}: exec credential plugins are not supported; use a token, tokenFile or client "
          "certificate",
          where_u));
    }
    if (user["auth-provider"]) {
      throw config_error(fmt::format("{}: auth-provider plugins are not supported", where_u));
    }
    if (user["username"] || user["password"]) {
      throw config_error(
          fmt::format("{}: username/password (basic auth) is not supported; use a token or client "
                      "certificate",
                      where_u));
    }
    cfg.token = str_field(user, "token", where_u);
    cfg.token_file = resolve_path(str_field(user, "tokenFile", where_u), base_dir);
    cfg.client_cert_file = resolve_path(str_field(user, "client-certificate", where_u), base_dir);
    cfg.client_key_file = resolve_path(str_field(user, "client-key", where_u), base_dir);
    const auto decode = [&](const char* key) -> std::string {
      const std::string v = str_field(user, key, where_u);
      if (v.empty()) {
        return {};
      }
      try {
        return base64_decode(v);
      } catch (const config_error& e) {
        throw config_error(fmt::format("{}: {}: {}", where_u, key, e.what()));
      }
    };
    cfg.client_cert_data = decode("client-certificate-data");
    cfg.client_key_data = decode("client-key-data");
    require_file(cfg.client_cert_file, where_u, "client-certificate");
    require_file(cfg.client_key_file, where_u, "client-key");
    const bool has_cert = !cfg.client_cert_file.empty() || !cfg.client_cert_data.empty();
    const bool has_key = !cfg.client_key_file.empty() || !cfg.client_key_data.empty();
    if (has_cert != has_key) {
      throw config_error(
          fmt::format("{}: a client certificate needs a client key and vice versa", where_u));
    }
  }
  return cfg;
}

api_config parse_kubeconfig(std::string_view text, const fs::path& path,
                            const std::string& context) {
  // A node of an unexpected shape somewhere yaml-cpp is asked for a key (found by fuzzing: a
  // list entry that is a scalar) is a bad file too, never an exception of another type.
  try {
    return parse_kubeconfig_text(text, path, context);
  } catch (const YAML::Exception& e) {
    throw config_error(fmt::format("kubeconfig {}: {}", path.string(), e.what()));
  }
}

std::optional<api_config> in_cluster_config(const config_env& env) {
  if (!env.service_host || !env.service_port) {
    return std::nullopt;
  }
  const std::string& host = *env.service_host;
  api_config cfg;
  // An IPv6 literal needs brackets in a URL (client-go uses net.JoinHostPort).
  if (host.find(':') != std::string::npos && host.front() != '[') {
    cfg.server = fmt::format("https://[{}]:{}", host, *env.service_port);
  } else {
    cfg.server = fmt::format("https://{}:{}", host, *env.service_port);
  }
  const fs::path token = env.service_account_dir / "token";
  std::error_code ec;
  if (!fs::exists(token, ec)) {
    throw config_error(fmt::format(
        "in-cluster configuration: KUBERNETES_SERVICE_HOST is set but {} does not exist",
        token.string()));
  }
  cfg.token_file = token.string();
  const fs::path ca = env.service_account_dir / "ca.crt";
  if (fs::exists(ca, ec)) {
    cfg.ca_file = ca.string();
  }
  return cfg;
}

api_config resolve_api_config(const config_flags& flags, const config_env& env) {
  std::string kubeconfig = flags.kubeconfig;
  if (kubeconfig.empty() && env.kubeconfig) {
    // $KUBECONFIG may list several files; kubectl merges them, we take the first that exists.
    std::string_view list = *env.kubeconfig;
    while (!list.empty()) {
      const std::size_t colon = list.find(':');
      const std::string item(list.substr(0, colon));
      list = colon == std::string_view::npos ? std::string_view{} : list.substr(colon + 1);
      std::error_code ec;
      if (!item.empty() && fs::exists(item, ec)) {
        kubeconfig = item;
        break;
      }
    }
    if (kubeconfig.empty()) {
      throw config_error(fmt::format("$KUBECONFIG={}: no such file", *env.kubeconfig));
    }
  }

  if (!flags.api_server.empty()) {
    api_config cfg;
    if (!kubeconfig.empty()) {
      cfg = load_kubeconfig(kubeconfig, flags.kube_context);
    } else {
      std::error_code ec;
      const fs::path token = env.service_account_dir / "token";
      if (fs::exists(token, ec)) {
        cfg.token_file = token.string();
        const fs::path ca = env.service_account_dir / "ca.crt";
        if (fs::exists(ca, ec)) {
          cfg.ca_file = ca.string();
        }
      }
    }
    const std::string& url = flags.api_server;
    if (url.starts_with("unix://")) {
      cfg.unix_socket = url.substr(7);
      if (cfg.unix_socket.empty()) {
        throw config_error("--k8s-api-server unix://: empty socket path");
      }
      cfg.server = "http://localhost";
    } else if (url.starts_with("https://") || url.starts_with("http://")) {
      cfg.server = url;
    } else {
      throw config_error(fmt::format(
          "--k8s-api-server {}: expected https://host:port, http://host:port or unix:///path",
          url));
    }
    return cfg;
  }
  if (!kubeconfig.empty()) {
    return load_kubeconfig(kubeconfig, flags.kube_context);
  }
  if (auto cfg = in_cluster_config(env)) {
    return *cfg;
  }
  throw config_error(
      "no API server configured: pass --k8s-api-server or --kubeconfig, set $KUBECONFIG, or run "
      "in a pod (KUBERNETES_SERVICE_HOST/PORT)");
}

}  // namespace sluice::kube
