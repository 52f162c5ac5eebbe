#include "agent/planner/maglev.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numeric>
#include <tuple>

#include "agent/model/model.h"

namespace sluice {

namespace {

// ---- MurmurHash3_x64_128 -------------------------------------------------------------------
// Constants and steps from SMHasher's MurmurHash3.cpp description: 16-byte blocks read as two
// little-endian 64-bit words, a tail of up to 15 bytes, then fmix64 on both halves.

constexpr uint64_t murmur_c1 = 0x87c37b91114253d5ULL;
constexpr uint64_t murmur_c2 = 0x4cf5ad432745937fULL;

uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | p[i];
  }
  return v;
}

uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

uint64_t mix_k1(uint64_t k1) { return std::rotl(k1 * murmur_c1, 31) * murmur_c2; }
uint64_t mix_k2(uint64_t k2) { return std::rotl(k2 * murmur_c2, 33) * murmur_c1; }

// ---- base64 (RFC 4648 §4, standard alphabet) -------------------------------------------------

constexpr std::string_view base64_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
  const size_t at = base64_alphabet.find(c);
  return at == std::string_view::npos ? -1 : static_cast<int>(at);
}

// Decodes strictly: length a multiple of 4, `=` only as the last one or two characters.
std::expected<std::vector<uint8_t>, std::string> decode_base64(std::string_view text) {
  if (text.size() % 4 != 0) {
    return std::unexpected(fmt::format("length {} is not a multiple of 4", text.size()));
  }
  size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') {
    ++padding;
  }
  const std::string_view body = text.substr(0, text.size() - padding);
  std::vector<uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  uint32_t bits = 0;
  int nbits = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    const int v = base64_value(body[i]);
    if (v < 0) {
      return std::unexpected(fmt::format("character {:?} at {} is not base64", body[i], i));
    }
    bits = (bits << 6) | static_cast<uint32_t>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<uint8_t>(bits >> nbits));
      bits &= (1u << nbits) - 1;
    }
  }
  // Leftover bits must be the zero fill of a padded group (one `=` leaves 2 bits, two leave 4).
  if (bits != 0 || (padding != 0 && nbits == 0)) {
    return std::unexpected(std::string("bad padding"));
  }
  return out;
}

// ---- table builder ---------------------------------------------------------------------------

constexpr uint32_t empty_slot = std::numeric_limits<uint32_t>::max();

// The stable bytes a backend is hashed over: address (4 or 16 bytes, network order), port
// (network order), protocol. Never a map id, so every node derives the same permutation.
struct identity_bytes {
  std::array<uint8_t, 16 + 2 + 1> bytes{};
  size_t size = 0;
};

identity_bytes backend_identity(const maglev_backend& b) {
  identity_bytes id;
  const size_t addr_len = b.addr.family == ip_family::v4 ? 4 : 16;
  std::memcpy(id.bytes.data(), b.addr.bytes.data(), addr_len);
  id.bytes[addr_len] = static_cast<uint8_t>(b.port >> 8);
  id.bytes[addr_len + 1] = static_cast<uint8_t>(b.port & 0xff);
  id.bytes[addr_len + 2] = b.proto;
  id.size = addr_len + 3;
  return id;
}

// Canonical order: (family, address bytes, port, proto), i.e. the identity, weight aside.
auto identity_tuple(const maglev_backend& b) { return std::tie(b.addr, b.port, b.proto); }

// One backend's walk through its permutation (offset + j·skip) mod M, §3.4's next[i] kept as
// the current position, so no N × M permutation matrix is stored.
struct walker {
  uint32_t pos = 0;
  uint32_t skip = 0;
  uint32_t weight = 0;
  uint64_t credit = 0;
  uint32_t index = 0;  // into the caller's span
};

}  // namespace

murmur3_128 murmur3_x64_128(std::span<const uint8_t> data, uint32_t seed) {
  const size_t len = data.size();
  const size_t nblocks = len / 16;
  uint64_t h1 = seed;
  uint64_t h2 = seed;

  for (size_t i = 0; i < nblocks; ++i) {
    const uint8_t* block = data.data() + i * 16;
    h1 ^= mix_k1(load_le64(block));
    h1 = std::rotl(h1, 27) + h2;
    h1 = h1 * 5 + 0x52dce729;
    h2 ^= mix_k2(load_le64(block + 8));
    h2 = std::rotl(h2, 31) + h1;
    h2 = h2 * 5 + 0x38495ab5;
  }

  const uint8_t* tail = data.data() + nblocks * 16;
  const size_t rest = len & 15;
  uint64_t k1 = 0;
  uint64_t k2 = 0;
  for (size_t i = rest; i > 8; --i) {
    k2 ^= uint64_t{tail[i - 1]} << ((i - 9) * 8);
  }
  for (size_t i = std::min<size_t>(rest, 8); i > 0; --i) {
    k1 ^= uint64_t{tail[i - 1]} << ((i - 1) * 8);
  }
  if (rest > 8) {
    h2 ^= mix_k2(k2);
  }
  if (rest > 0) {
    h1 ^= mix_k1(k1);
  }

  h1 ^= len;
  h2 ^= len;
  h1 += h2;
  h2 += h1;
  h1 = fmix64(h1);
  h2 = fmix64(h2);
  h1 += h2;
  h2 += h1;
  return {h1, h2};
}

std::expected<maglev_seed, std::string> parse_maglev_seed(std::string_view text) {
  auto decoded = decode_base64(text);
  if (!decoded) {
    return std::unexpected(
        fmt::format("maglev hash seed {:?} is not base64: {}", text, decoded.error()));
  }
  maglev_seed seed;
  if (decoded->size() != seed.bytes.size()) {
    return std::unexpected(fmt::format(
        "maglev hash seed {:?} decodes to {} bytes, want 12 (16 base64 characters, e.g. "
        "`head -c12 /dev/urandom | base64 -w0`)",
        text, decoded->size()));
  }
  std::copy(decoded->begin(), decoded->end(), seed.bytes.begin());
  return seed;
}

std::string format_maglev_seed(const maglev_seed& seed) {
  std::string out;
  out.reserve(16);
  for (size_t i = 0; i < seed.bytes.size(); i += 3) {
    const uint32_t group = uint32_t{seed.bytes[i]} << 16 | uint32_t{seed.bytes[i + 1]} << 8 |
                           uint32_t{seed.bytes[i + 2]};
    for (int shift = 18; shift >= 0; shift -= 6) {
      out.push_back(base64_alphabet[(group >> shift) & 63]);
    }
  }
  return out;
}

std::expected<void, std::string> validate_maglev_options(const maglev_options& options) {
  if (std::ranges::find(maglev_table_sizes, options.table_size) != maglev_table_sizes.end()) {
    return {};
  }
  // Only Cilium's list: primes (so every permutation covers the table) of bounded size (the
  // datapath allocates M × 4 bytes per frontend).
  return std::unexpected(fmt::format("maglev table size {} is not one of {}",
                                     options.table_size, fmt::join(maglev_table_sizes, ", ")));
}

std::expected<std::vector<uint32_t>, std::string> build_maglev_table(
    std::span<const maglev_backend> backends, const maglev_options& options) {
  if (auto ok = validate_maglev_options(options); !ok) {
    return std::unexpected(ok.error());
  }
  const uint32_t m = options.table_size;

  // Canonical order, so the table does not depend on the order the backends were listed in
  // (Cilium sorts its backend strings for the same reason).
  std::vector<uint32_t> order(backends.size());
  std::iota(order.begin(), order.end(), 0u);
  std::ranges::sort(order, [&](uint32_t a, uint32_t b) {
    return identity_tuple(backends[a]) < identity_tuple(backends[b]);
  });
  for (size_t i = 1; i < order.size(); ++i) {
    if (identity_tuple(backends[order[i - 1]]) == identity_tuple(backends[order[i]])) {
      const maglev_backend& b = backends[order[i]];
      return std::unexpected(fmt::format("duplicate maglev backend {} port {} proto {}",
                                         format_ip(b.addr), b.port, b.proto));
    }
  }

  std::vector<walker> walkers;
  walkers.reserve(order.size());
  uint32_t max_weight = 0;
  const uint32_t seed = options.seed.murmur();
  for (const uint32_t i : order) {
    const maglev_backend& b = backends[i];
    if (b.weight == 0) {
      continue;
    }
    const identity_bytes id = backend_identity(b);
    const murmur3_128 h = murmur3_x64_128(std::span(id.bytes.data(), id.size), seed);
    walkers.push_back({.pos = static_cast<uint32_t>(h.h1 % m),
                       .skip = static_cast<uint32_t>(h.h2 % (m - 1) + 1),
                       .weight = b.weight,
                       .credit = 0,
                       .index = i});
    max_weight = std::max(max_weight, b.weight);
  }
  if (walkers.empty()) {
    return std::vector<uint32_t>{};
  }
  if (walkers.size() > m) {
    return std::unexpected(fmt::format(
        "{} maglev backends do not fit a table of {} slots; use a table size above {}",
        walkers.size(), m, 100 * walkers.size()));
  }

  // §3.4's population loop. Each round every backend earns `weight` credit and takes a turn
  // (claims its next preferred free slot) per `max_weight` credit, so the heaviest backend takes
  // a turn every round and all of them do when weights are equal: the paper's loop exactly.
  std::vector<uint32_t> table(m, empty_slot);
  uint32_t filled = 0;
  for (;;) {
    for (walker& w : walkers) {
      w.credit += w.weight;
      if (w.credit < max_weight) {
        continue;
      }
      w.credit -= max_weight;
      // Terminates: M is prime, so the walk visits every slot and one is still free.
      while (table[w.pos] != empty_slot) {
        w.pos += w.skip;
        if (w.pos >= m) {
          w.pos -= m;
        }
      }
      table[w.pos] = w.index;
      if (++filled == m) {
        return table;
      }
    }
  }
}

}  // namespace sluice
