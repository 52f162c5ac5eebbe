// api_config: kubeconfig parsing, in-cluster settings and the resolution order of the flags.
#include "agent/sources/kube/api_config.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <vector>

#include "tests/kube/harness.h"

using namespace sluice::kube;
using sluice::kube::test::read_file;
using sluice::kube::test::temp_dir;

namespace {

std::string b64(std::string_view in) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63], tbl[v & 63]};
  }
  if (i + 1 == in.size()) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += {tbl[v >> 18], tbl[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    const unsigned v =
        (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63], '='};
  }
  return out;
}

const char* two_contexts = R"(apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod-cluster
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: %CA%
    tls-server-name: api.prod.example
- name: dev-cluster
  cluster:
    server: https://dev.example:443
    certificate-authority: certs/ca.crt
    insecure-skip-tls-verify: true
contexts:
- name: prod
  context: {cluster: prod-cluster, user: prod-user, namespace: kube-system}
- name: dev
  context: {cluster: dev-cluster, user: dev-user}
users:
- name: prod-user
  user:
    client-certificate-data: %CERT%
    client-key-data: %KEY%
    token: static-token
- name: dev-user
  user:
    tokenFile: tokens/t
    client-certificate: certs/c.crt
    client-key: /abs/c.key
)";

std::string fill(std::string s) {
  const auto rep = [&](const std::string& from, const std::string& to) {
    s.replace(s.find(from), from.size(), to);
  };
  rep("%CA%", b64("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"));
  rep("%CERT%", b64("CERT PEM"));
  rep("%KEY%", b64("KEY PEM"));
  return s;
}

}  // namespace

TEST_CASE("base64_decode") {
  CHECK(base64_decode("") == "");
  CHECK(base64_decode("Zg==") == "f");
  CHECK(base64_decode("Zm8=") == "fo");
  CHECK(base64_decode("Zm9v") == "foo");
  CHECK(base64_decode("Zm9v\nYmFy") == "foobar");
  CHECK(base64_decode(b64(std::string("\x00\xff\x10", 3))) == std::string("\x00\xff\x10", 3));
  CHECK_THROWS_AS(base64_decode("Zm9v!"), config_error);
  CHECK_THROWS_AS(base64_decode("Z"), config_error);
}

TEST_CASE("kubeconfig: current-context with -data fields") {
  temp_dir d;
  const std::string path = d.write("kubeconfig", fill(two_contexts));
  const api_config c = load_kubeconfig(path);
  CHECK(c.server == "https://10.0.0.1:6443");
  CHECK(c.ca_data == "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n");
  CHECK(c.ca_file.empty());
  CHECK(c.tls_server_name == "api.prod.example");
  CHECK_FALSE(c.insecure_skip_tls_verify);
  CHECK(c.client_cert_data == "CERT PEM");
  CHECK(c.client_key_data == "KEY PEM");
  CHECK(c.token == "static-token");
  CHECK(c.token_file.empty());
}

TEST_CASE("kubeconfig: --kube-context and paths relative to the kubeconfig's directory") {
  temp_dir d;
  std::filesystem::create_directories(d.path() / "conf/certs");
  const std::string path = d.write("conf/kubeconfig", fill(two_contexts));
  d.write("conf/certs/ca.crt", "x");
  d.write("conf/certs/c.crt", "x");
  // An absolute client-key path must exist: point it into the temp dir.
  std::string text = read_file(path);
  const std::string key_path = d.write("c.key", "k");
  text.replace(text.find("/abs/c.key"), 10, key_path);
  d.write("conf/kubeconfig", text);
  const api_config c = load_kubeconfig(path, "dev");
  CHECK(c.server == "https://dev.example:443");
  CHECK(c.ca_file == (d.path() / "conf/certs/ca.crt").string());
  CHECK(c.insecure_skip_tls_verify);
  CHECK(c.token_file == (d.path() / "conf/tokens/t").string());
  CHECK(c.client_cert_file == (d.path() / "conf/certs/c.crt").string());
  CHECK(c.client_key_file == key_path);
  CHECK(c.token.empty());
}

TEST_CASE("kubeconfig: errors name the file and the problem") {
  temp_dir d;
  const auto expect_error = [&](const std::string& text, const std::string& needle,
                                const std::string& ctx = {}) {
    const std::string path = d.write("kc", text);
    try {
      load_kubeconfig(path, ctx);
      FAIL("no exception for: " << needle);
    } catch (const config_error& e) {
      const std::string msg = e.what();
      CHECK_MESSAGE(msg.find(needle) != std::string::npos, msg);
      CHECK_MESSAGE(msg.find(path) != std::string::npos, msg);
    }
  };
  const std::string base = R"(current-context: c
clusters: [{name: k, cluster: {server: "https://h:1"}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
)";
  expect_error(base + "users: [{name: u, user: {exec: {command: aws}}}]\n",
               "exec credential plugins are not supported");
  expect_error(base + "users: [{name: u, user: {username: a, password: b}}]\n",
               "username/password");
  expect_error(base + "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n", "auth-provider");
  expect_error(base + "users: [{name: u, user: {client-certificate-data: Zm9v}}]\n", "client key");
  expect_error(base + "users: [{name: u, user: {client-key-data: \"Zm9v!\"}}]\n",
               "client-key-data");
  expect_error(base + "users: []\n", "no users entry named \"u\"");
  expect_error(base + "users: [{name: u, user: {}}]\n", "no contexts entry named \"other\"",
               "other");
  expect_error("clusters: []\n", "no current-context");
  expect_error("a: [b\n", "kubeconfig");
  expect_error(R"(current-context: c
clusters: [{name: k, cluster: {server: "https://h:1", certificate-authority: missing.crt}}]
contexts: [{name: c, context: {cluster: k}}]
)",
               "missing.crt: no such file");
}

TEST_CASE("kubeconfig: errors never quote a token or key material") {
  temp_dir d;
  const std::string token = "s3cr3t-T0KEN-value";
  const std::string key = b64("-----BEGIN PRIVATE KEY-----\nSECRETKEY\n");
  const std::string base = R"(current-context: c
clusters: [{name: k, cluster: {server: "https://h:1"}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
)";
  const std::vector<std::string> bad = {
      // Each fails after (or next to) the secrets have been read.
      base + "users: [{name: u, user: {token: " + token + ", exec: {command: aws}}}]\n",
      base + "users: [{name: u, user: {token: " + token + ", password: " + token + "}}]\n",
      base + "users: [{name: u, user: {token: " + token + ", client-key-data: \"" + key +
          "!!\"}}]\n",
      base + "users: [{name: u, user: {token: " + token + ", client-key-data: " + key + "}}]\n",
      base + "users: [{name: u, user: {token: [" + token + "]}}]\n",
      base + "users: [{name: u, user: {token: " + token + "}}]\ncontexts: {\n",
      base + "users: [{name: u, user: {token: \"" + token + "\n",
      "current-context: c\nusers: [{name: u, user: {token: " + token + "}}]\n",
  };
  for (const std::string& text : bad) {
    const std::string path = d.write("kc", text);
    try {
      load_kubeconfig(path);
      FAIL("no exception for: " << text);
    } catch (const config_error& e) {
      const std::string msg = e.what();
      CHECK_MESSAGE(msg.find(path) != std::string::npos, msg);
      CHECK_MESSAGE(msg.find(token) == std::string::npos, msg);
      CHECK_MESSAGE(msg.find("SECRETKEY") == std::string::npos, msg);
      CHECK_MESSAGE(msg.find(key.substr(0, 12)) == std::string::npos, msg);
    }
  }
}

TEST_CASE("in-cluster: host/port, IPv6 brackets, token and CA from the service-account dir") {
  temp_dir d;
  config_env env;
  env.service_account_dir = d.path();
  CHECK_FALSE(in_cluster_config(env).has_value());
  env.service_host = "10.96.0.1";
  env.service_port = "443";
  CHECK_THROWS_AS(in_cluster_config(env), config_error);  // no token file
  d.write("token", "tok\n");
  auto c = in_cluster_config(env);
  REQUIRE(c.has_value());
  CHECK(c->server == "https://10.96.0.1:443");
  CHECK(c->token_file == (d.path() / "token").string());
  CHECK(c->ca_file.empty());
  d.write("ca.crt", "pem");
  env.service_host = "fd00::1";
  c = in_cluster_config(env);
  REQUIRE(c.has_value());
  CHECK(c->server == "https://[fd00::1]:443");
  CHECK(c->ca_file == (d.path() / "ca.crt").string());
}

TEST_CASE("resolve_api_config: precedence of flag, kubeconfig, $KUBECONFIG, in-cluster") {
  temp_dir d;
  const std::string kc1 = d.write("kc1", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://one:6443"}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {token: t1}}]
)");
  const std::string kc2 = d.write("kc2", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://two:6443"}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {token: t2}}]
)");
  std::filesystem::create_directories(d.path() / "sa");
  d.write("sa/token", "sa-token");
  d.write("sa/ca.crt", "sa-ca");
  config_env env;
  env.service_account_dir = d.path() / "sa";
  env.service_host = "10.96.0.1";
  env.service_port = "443";

  // Nothing but in-cluster.
  CHECK(resolve_api_config({}, env).server == "https://10.96.0.1:443");
  // $KUBECONFIG beats in-cluster; the first existing file of the list is used.
  env.kubeconfig = (d.path() / "nope").string() + ":" + kc2 + ":" + kc1;
  CHECK(resolve_api_config({}, env).server == "https://two:6443");
  // --kubeconfig beats $KUBECONFIG.
  config_flags f;
  f.kubeconfig = kc1;
  auto c = resolve_api_config(f, env);
  CHECK(c.server == "https://one:6443");
  CHECK(c.token == "t1");
  // --k8s-api-server overrides the address, credentials stay the kubeconfig's.
  f.api_server = "https://192.168.1.10:6443";
  c = resolve_api_config(f, env);
  CHECK(c.server == "https://192.168.1.10:6443");
  CHECK(c.token == "t1");
  CHECK(c.token_file.empty());
  // Without a kubeconfig the flag takes the service-account token and CA.
  env.kubeconfig.reset();
  f.kubeconfig.clear();
  c = resolve_api_config(f, env);
  CHECK(c.server == "https://192.168.1.10:6443");
  CHECK(c.token_file == (d.path() / "sa/token").string());
  CHECK(c.ca_file == (d.path() / "sa/ca.crt").string());
  // unix:// reaches a kubectl proxy socket.
  f.api_server = "unix:///run/kube.sock";
  c = resolve_api_config(f, env);
  CHECK(c.server == "http://localhost");
  CHECK(c.unix_socket == "/run/kube.sock");
  f.api_server = "10.0.0.1:6443";
  CHECK_THROWS_AS(resolve_api_config(f, env), config_error);
  // Nothing at all.
  CHECK_THROWS_AS(resolve_api_config({}, config_env{.service_account_dir = d.path() / "none"}),
                  config_error);
  // $KUBECONFIG naming no existing file is an error, not a silent fallback.
  env.kubeconfig = (d.path() / "nope").string();
  CHECK_THROWS_AS(resolve_api_config({}, env), config_error);
}
