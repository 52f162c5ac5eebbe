// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, §3.4): the lookup table a frontend's flows are hashed into, so that a flow
// lands on the same backend whichever node receives it. Pure code, no I/O; the map writer
// (agent/datapath/map_writer) maps a table's indices to backend ids and swaps it into
// lb_maglev_v2 as a per-frontend inner ARRAY whose one element holds the M entries
// (reference/cilium.md §2.1; maps/sluice_abi.h).
//
// Every node must compute the same table from the same backend set, so nothing here depends on
// map-assigned ids, input order or the host: backends are identified by their bytes (address and
// port in network order, protocol), hashed with a seed shared by all nodes, and sorted into a
// canonical order before the population loop.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/planner/desired.h"

namespace sluice {

/// The table sizes Cilium accepts (`maglev.tableSize`): primes, each ≈2^k, so that any backend's
/// permutation (offset + j·skip mod M) visits every slot. The paper wants M > 100·N for ≤1%
/// imbalance: 16381 suits ≈160 backends, 65521 ≈650.
inline constexpr std::array<uint32_t, 10> maglev_table_sizes = {
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071};

/// LB_MAGLEV_DEFAULT_SIZE of maps/sluice_abi.h (checked where both are seen, reconcile.cc). Not
/// Cilium's 16381: at 100 backends that moves up to 1.51% of the other backends' flows when one
/// goes, above the 1.5% sluice promises (tests/agent/maglev_test.cc); 32749 stays below 1%.
/// Costs M × 4 bytes of kernel memory per Maglev frontend (one array element holds the table):
/// 128 KiB.
inline constexpr uint32_t maglev_default_table_size = 32749;

/// The seed every node must share. Represented as Cilium represents `maglev.hashSeed`: 12 bytes,
/// written as 16 characters of standard base64 (e.g. `head -c12 /dev/urandom | base64 -w0`).
/// Bytes 0..3 (big-endian) seed the table builder's MurmurHash3; bytes 4..11 are reserved for the
/// datapath's per-flow hash (Cilium's SeedJhash0/1), so one value configures both.
struct maglev_seed {
  std::array<uint8_t, 12> bytes{};

  uint32_t murmur() const { return be32(0); }
  uint32_t flow_hash0() const { return be32(4); }
  uint32_t flow_hash1() const { return be32(8); }

  bool operator==(const maglev_seed&) const = default;

 private:
  uint32_t be32(size_t at) const {
    return uint32_t{bytes[at]} << 24 | uint32_t{bytes[at + 1]} << 16 |
           uint32_t{bytes[at + 2]} << 8 | uint32_t{bytes[at + 3]};
  }
};

/// Cilium's DefaultHashSeed, so an operator who knows Cilium's flag finds the same default. The
/// tables are not Cilium-compatible (Cilium hashes a backend string, we hash its bytes).
inline constexpr std::string_view maglev_default_seed_text = "JLfvgnHc2kaSUFaI";
inline constexpr maglev_seed maglev_default_seed{
    {0x24, 0xb7, 0xef, 0x82, 0x71, 0xdc, 0xda, 0x46, 0x92, 0x50, 0x56, 0x88}};

/// Parses the base64 seed text (standard alphabet, `=` padding allowed); it must decode to
/// exactly 12 bytes.
std::expected<maglev_seed, std::string> parse_maglev_seed(std::string_view text);

/// The seed as 16 base64 characters (parse_maglev_seed's inverse).
std::string format_maglev_seed(const maglev_seed& seed);

struct maglev_options {
  uint32_t table_size = maglev_default_table_size;  ///< M: one of maglev_table_sizes
  maglev_seed seed = maglev_default_seed;
};

/// Ok when table_size is one of maglev_table_sizes; the error says why not and lists them.
std::expected<void, std::string> validate_maglev_options(const maglev_options& options);

/// One backend of a frontend. Its identity for hashing and ordering is (addr, port, proto).
struct maglev_backend {
  ip_addr addr;
  uint16_t port = 0;  ///< host order (hashed in network order)
  uint8_t proto = 0;  ///< IPPROTO_TCP / IPPROTO_UDP
  /// Relative share of the slots, as Cilium's per-backend weight: 0 = not in the table.
  uint32_t weight = 1;

  bool operator==(const maglev_backend&) const = default;
};

/// MurmurHash3_x64_128 (Austin Appleby, SMHasher), written from the algorithm's description; the
/// same function Cilium's `pkg/murmur3` implements. h1 and h2 are the two 64-bit output words.
struct murmur3_128 {
  uint64_t h1 = 0;
  uint64_t h2 = 0;
  bool operator==(const murmur3_128&) const = default;
};
murmur3_128 murmur3_x64_128(std::span<const uint8_t> data, uint32_t seed);

/// Builds the Maglev lookup table: for each of the M slots, the index into `backends` of the
/// backend that owns it.
///
/// - Input order does not matter: backends are sorted by (family, address, port, proto) first;
///   the returned indices still refer to positions in `backends`.
/// - Each backend's permutation is offset = h1 mod M, skip = h2 mod (M−1) + 1 over
///   murmur3_x64_128(address ‖ port ‖ proto, seed.murmur()) — Cilium's getOffsetAndSkip.
/// - Weights: a backend takes a turn in a round of the population loop in proportion to
///   weight / max weight, so slot counts follow the weights; with equal weights this is the
///   paper's loop and counts differ by at most 1. Weight 0 backends are left out.
/// - No backend with a non-zero weight → empty table (the datapath treats it as "no backend").
/// - Errors: invalid options, a duplicate (addr, port, proto), or more weighted backends than
///   slots (some would never be chosen; pick a larger table).
///
/// Cost: O(N) scratch besides the M × 4-byte result (no N × M permutation matrix, unlike
/// Cilium's Go builder); O(M log M) probes for equal weights (0.3 ms for M=16381/N=100, 1.6 ms
/// for 65521/1000, tests/agent/maglev_test.cc). Skewed weights add up to M rounds of N credit
/// checks each.
std::expected<std::vector<uint32_t>, std::string> build_maglev_table(
    std::span<const maglev_backend> backends, const maglev_options& options);

}  // namespace sluice
