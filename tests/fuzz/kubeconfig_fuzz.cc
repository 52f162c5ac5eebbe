// parse_kubeconfig(): the kubeconfig file the agent reads at start-up (--kubeconfig,
// $KUBECONFIG), and base64_decode() of its *-data fields (agent/sources/kube/api_config.h).
//
// Input: the file's text.
//
// Properties, beyond "no crash, no sanitizer report":
// - the only exception is config_error (main() turns it into one line and exit code 1), its
//   message names the file and is one line;
// - a configuration that is accepted has a server, and a client certificate only with a key;
// - base64_decode() inverts base64 encoding of the input's bytes, with and without padding and
//   with line breaks every 76 characters (how kubectl and openssl write the data fields).
#include "agent/sources/kube/api_config.h"
#include "tests/fuzz/fuzz_support.h"

using namespace sluice;
using namespace sluice::fuzz;

namespace {

// A path that does not exist: relative certificate paths resolve below it and are missing.
constexpr std::string_view file = "/nonexistent-fuzz/kubeconfig";

std::string base64(std::string_view bytes, bool pad, std::size_t wrap) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t line = 0;
  const auto put = [&](char c) {
    if (wrap != 0 && line == wrap) {
      out += '\n';
      line = 0;
    }
    out += c;
    ++line;
  };
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const auto v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i]) << 16 |
                                              static_cast<unsigned char>(bytes[i + 1]) << 8 |
                                              static_cast<unsigned char>(bytes[i + 2]));
    for (int s = 18; s >= 0; s -= 6) {
      put(alphabet[(v >> s) & 63]);
    }
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i]) << 16);
    if (rest == 2) {
      v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1]) << 8);
    }
    put(alphabet[(v >> 18) & 63]);
    put(alphabet[(v >> 12) & 63]);
    if (rest == 2) {
      put(alphabet[(v >> 6) & 63]);
    }
    if (pad) {
      put('=');
      if (rest == 1) {
        put('=');
      }
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = as_text(data, size);
  try {
    const kube::api_config cfg = kube::parse_kubeconfig(text, std::string(file));
    FUZZ_ASSERT(!cfg.server.empty(), "accepted without a server");
    const bool cert = !cfg.client_cert_file.empty() || !cfg.client_cert_data.empty();
    const bool key = !cfg.client_key_file.empty() || !cfg.client_key_data.empty();
    FUZZ_ASSERT(cert == key, "accepted a certificate without a key or a key without one");
  } catch (const kube::config_error& e) {
    const std::string_view message = e.what();
    FUZZ_ASSERT(message.find(file) != std::string_view::npos, "message without the file: {}",
                message);
    FUZZ_ASSERT(one_line(message), "message is not one line: {}", message);
  }
  // Anything else thrown escapes: libFuzzer reports it as a crash.

  for (const bool pad : {true, false}) {
    for (const std::size_t wrap : {std::size_t{0}, std::size_t{76}}) {
      const std::string encoded = base64(text, pad, wrap);
      std::string decoded;
      try {
        decoded = kube::base64_decode(encoded);
      } catch (const kube::config_error& e) {
        FUZZ_ASSERT(false, "valid base64 rejected ({}): {}", e.what(), encoded);
      }
      FUZZ_ASSERT(decoded == text, "base64 round trip differs (pad {}, wrap {})", pad, wrap);
    }
  }
  return 0;
}
